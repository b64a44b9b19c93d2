//! The reverse pass: the pullback closure. One line per contribution, in reverse
//! program order, adjoints named `d_<x>`; the first contribution to an adjoint
//! defines it, later ones add to it.
//!
//! Before (forward):
//! ```text
//! let t0 = a * b;
//! let e = t0 + c;
//! let t1 = e * e;
//! ```
//! After:
//! ```text
//! move |d_t1: f64| {
//!     let mut d_e = mul_vjp_lhs(e, d_t1);     // t1 = e * e
//!     d_e = d_e + mul_vjp_rhs(e, d_t1);
//!     let d_t0 = d_e;                         // e = t0 + c
//!     let d_c = d_e;
//!     let d_a = mul_vjp_lhs(b, d_t0);         // t0 = a * b
//!     let d_b = mul_vjp_rhs(a, d_t0);
//!     (d_a, d_b, d_c)
//! }
//! ```
//! The closure captures exactly the values its rule calls read (`a`, `b`, `e`): that
//! capture *is* the tape (see `analysis::record`).

use super::forward::Emitter;
use crate::ir::op::{Need, Vjp};
use crate::ir::{Operand, Rhs, VarId};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::{HashMap, HashSet};

/// One step of the reverse pass.
enum Line {
    /// `d_target (+)= expr`.
    Contrib {
        target: VarId,
        expr: TokenStream,
        span: Span,
    },
    /// `let (d_x, _, d_y) = backward(tape, d_def)`: a call's cotangents, one per argument.
    Call {
        def: VarId,
        slots: Vec<Option<VarId>>,
        span: Span,
    },
}

pub fn pullback(cx: &mut Emitter<'_>, tuple_ty: &TokenStream) -> TokenStream {
    let func = cx.func;
    let activity = &cx.plan.activity;
    // Which values get an adjoint, and how many contributions each receives.
    let mut count: HashMap<VarId, usize> = HashMap::new();
    let seed = func.ret.var().filter(|v| activity.is_active(*v));
    if let Some(v) = seed {
        count.insert(v, 1);
    }
    let mut lines = Vec::new();
    for (i, s) in func.body.iter().enumerate().rev() {
        if !activity.is_active(s.def) || !count.contains_key(&s.def) {
            continue;
        }
        let first_new = lines.len();
        let args = s.rhs.operands();
        let active = |o: &Operand| o.var().filter(|v| activity.is_active(*v));
        match &s.rhs {
            Rhs::Copy(o) => {
                if let Some(t) = active(o) {
                    let d = cx.adjoint(s.def);
                    lines.push(Line::Contrib {
                        target: t,
                        expr: quote!(#d),
                        span: s.span,
                    });
                }
            }
            Rhs::Prim { prim, .. } => {
                let scalar_path = cx.plan.kinds.scalar_path[i];
                let single = prim.arity() == 1;
                for (k, vjp) in prim.vjps_on(scalar_path).iter().enumerate() {
                    let Some(t) = active(&args[k]) else { continue };
                    let d = cx.adjoint(s.def);
                    let expr = match vjp {
                        // A one-input op is the only reader of its cotangent: move it.
                        Vjp::Identity if scalar_path || single => quote!(#d),
                        Vjp::Identity => {
                            quote_spanned!(s.span=> ::backprop::__private::tensor::identity_vjp(&#d))
                        }
                        Vjp::Negate if scalar_path || single => quote!(-#d),
                        Vjp::Negate => {
                            quote_spanned!(s.span=> ::backprop::__private::tensor::neg_vjp(&#d))
                        }
                        Vjp::Zero => continue,
                        Vjp::Rule(name, needs) => {
                            let rule = syn::Ident::new(name, s.span);
                            let needs: Vec<TokenStream> = needs
                                .iter()
                                .map(|n| {
                                    let value = match n {
                                        Need::In(j) => cx.saved_operand(&args[*j]),
                                        Need::Out => {
                                            cx.captured.borrow_mut().insert(s.def);
                                            let out = cx.var(s.def);
                                            quote!(#out)
                                        }
                                        Need::Shape(j) => {
                                            let v = args[*j]
                                                .var()
                                                .expect("shapes are saved for active operands");
                                            let shape = cx.shape(v);
                                            quote!(#shape)
                                        }
                                    };
                                    if scalar_path { value } else { quote!(&#value) }
                                })
                                .collect();
                            if scalar_path {
                                quote_spanned!(s.span=> ::backprop::__private::#rule(#(#needs,)* #d))
                            } else {
                                quote_spanned!(s.span=> ::backprop::__private::tensor::#rule(#(#needs,)* &#d))
                            }
                        }
                    };
                    lines.push(Line::Contrib {
                        target: t,
                        expr,
                        span: s.span,
                    });
                }
            }
            Rhs::Call { .. } => {
                let slots: Vec<Option<VarId>> = args.iter().map(active).collect();
                lines.push(Line::Call {
                    def: s.def,
                    slots,
                    span: s.span,
                });
            }
            Rhs::ZeroDerivative { .. } | Rhs::NoRule { .. } => {}
        }
        count_contributions(&lines[first_new..], &mut count);
    }

    let generic = func.params.iter().any(|p| {
        p.kind == crate::ir::ParamKind::Scalar
            && !matches!(&p.ty, syn::Type::Path(t) if t.path.get_ident().is_some_and(|i| i == "f32" || i == "f64"))
    });
    // Emit.
    let mut defined: HashSet<VarId> = HashSet::new();
    if let Some(v) = seed {
        defined.insert(v);
    }
    let mut out = Vec::new();
    let mut emitted: HashMap<VarId, usize> = HashMap::new();
    if let Some(v) = seed {
        emitted.insert(v, 1);
    }
    for line in &lines {
        match line {
            Line::Contrib { target, expr, span } => {
                let d = cx.adjoint(*target);
                let n = emitted.entry(*target).or_insert(0);
                *n += 1;
                if defined.insert(*target) {
                    let mutability = if count[target] > 1 {
                        quote!(mut)
                    } else {
                        quote!()
                    };
                    out.push(quote_spanned!(*span=> let #mutability #d = #expr;));
                } else {
                    out.push(quote_spanned!(*span=> #d = #d + #expr;));
                }
            }
            Line::Call { def, slots, span } => {
                let tape = cx.tape(*def);
                cx.captured_tapes.borrow_mut().insert(*def);
                let d_def = cx.adjoint(*def);
                let mut pats = Vec::new();
                let mut accum = Vec::new();
                for slot in slots {
                    match slot {
                        None => pats.push(quote!(_)),
                        Some(t) => {
                            let d = cx.adjoint(*t);
                            if defined.insert(*t) {
                                let mutability = if count[t] > 1 { quote!(mut) } else { quote!() };
                                pats.push(quote!(#mutability #d));
                            } else {
                                let part = cx.names.fresh(&format!("{d}_part"), *span);
                                pats.push(quote!(#part));
                                accum.push(quote_spanned!(*span=> #d = #d + #part;));
                            }
                        }
                    }
                }
                out.push(quote_spanned!(*span=> let (#(#pats,)*) = ::backprop::__private::Pullback::backward(#tape, #d_def);));
                // An active value passed where the callee takes a constant would get an
                // `Inactive` slot: say so at the call, not where the types clash later.
                // (Only for concrete float types: the check's trait cannot name a generic
                // `T: Float` without overlapping its array impl.)
                if !generic {
                    for slot in slots.iter().flatten() {
                        let d = cx.adjoint(*slot);
                        out.push(
                            quote_spanned!(*span=> ::backprop::__private::expect_cotangent(&#d);),
                        );
                    }
                }
                out.extend(accum);
            }
        }
    }

    // The gradient: one slot per argument.
    let grads: Vec<TokenStream> = func
        .params
        .iter()
        .map(|p| {
            if !p.active {
                quote!(::backprop::__private::Inactive)
            } else if defined.contains(&p.var) {
                let d = cx.adjoint(p.var);
                quote!(#d)
            } else if p.kind == crate::ir::ParamKind::Tensor {
                let x = &p.ident;
                quote!(::backprop::__private::tensor::zeros_like(&#x))
            } else {
                quote!(::backprop::__private::zero())
            }
        })
        .collect();
    let ret_ty = &func.ret_ty;
    let param = match seed {
        Some(v) => {
            let d = cx.adjoint(v);
            if count[&v] > 1 {
                quote!(mut #d)
            } else {
                quote!(#d)
            }
        }
        None => {
            let unused = cx.names.fresh("_d_out", Span::call_site());
            quote!(#unused)
        }
    };
    quote! {
        move |#param: #ret_ty| -> #tuple_ty {
            #(#out)*
            (#(#grads,)*)
        }
    }
}

/// Adds the contributions in `lines` to each adjoint's count.
fn count_contributions(lines: &[Line], count: &mut HashMap<VarId, usize>) {
    for l in lines {
        match l {
            Line::Contrib { target, .. } => *count.entry(*target).or_insert(0) += 1,
            Line::Call { slots, .. } => {
                for t in slots.iter().flatten() {
                    *count.entry(*t).or_insert(0) += 1;
                }
            }
        }
    }
}
