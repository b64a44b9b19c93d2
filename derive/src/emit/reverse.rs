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
use crate::ir::{IfNode, LoopNode, Operand, Rhs, Stmt, VarId};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::{BTreeSet, HashMap, HashSet};

/// One step of the reverse pass.
enum Line {
    /// `d_target (+)= expr`.
    Contrib {
        target: VarId,
        expr: TokenStream,
        span: Span,
    },
    /// `let (d_x, _, d_y) = <invoke>`: cotangents for several values at once, from a
    /// call's tape (one per argument) or a branch's (one per outer value it reads).
    Many {
        invoke: TokenStream,
        slots: Vec<Option<VarId>>,
        span: Span,
        check: bool,
    },
}

/// A branch's two pullback closures and the outer values they return cotangents for.
pub struct BranchPullbacks {
    pub then_closure: TokenStream,
    pub else_closure: TokenStream,
    pub outer: Vec<VarId>,
}

/// The reverse pass over `stmts`, in reverse order. `seeds` already have their adjoint
/// bound (closure parameters); `initial` are contributions made before the first
/// statement is undone (a branch's outputs flowing into its values). Returns the
/// statements and the set of values whose adjoint it defined.
fn reverse_block(
    cx: &mut Emitter<'_>,
    stmts: &[Stmt],
    seeds: &[VarId],
    initial: Vec<(VarId, TokenStream)>,
) -> (Vec<TokenStream>, HashSet<VarId>, HashMap<VarId, usize>) {
    let func = cx.func;
    let activity = &cx.plan.activity;
    let mut count: HashMap<VarId, usize> = seeds.iter().map(|v| (*v, 1)).collect();
    let mut lines: Vec<Line> = initial
        .into_iter()
        .map(|(target, expr)| Line::Contrib {
            target,
            expr,
            span: Span::call_site(),
        })
        .collect();
    count_contributions(&lines, &mut count);
    for s in stmts.iter().rev() {
        let first_new = lines.len();
        let active = |o: &Operand| o.var().filter(|v| activity.is_active(*v));
        if let Rhs::If(node) = &s.rhs {
            if activity.is_active(s.def) && node.outs.iter().any(|o| count.contains_key(&o.def)) {
                lines.push(branch_line(cx, s.def, node, &count, s.span));
            }
            count_contributions(&lines[first_new..], &mut count);
            continue;
        }
        if let Rhs::Loop(node) = &s.rhs {
            if activity.is_active(s.def) && node.carried.iter().any(|c| count.contains_key(&c.out))
            {
                lines.push(loop_line(cx, s.def, node, &count, s.span));
            }
            count_contributions(&lines[first_new..], &mut count);
            continue;
        }
        if !activity.is_active(s.def) || !count.contains_key(&s.def) {
            continue;
        }
        let args = s.rhs.operands();
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
                let scalar_path = cx.plan.kinds.scalar_path(s.def);
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
                                        // A constant on the tensor path takes the element
                                        // type of the cotangent (`x / 3.0` on f32 arrays).
                                        Need::In(j) if !scalar_path && args[*j].var().is_none() => {
                                            let c = cx.operand(&args[*j]);
                                            let d = cx.adjoint(s.def);
                                            return quote!(&::backprop::__private::tensor::like(&#d, #c));
                                        }
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
                let tape = cx.tape(s.def);
                cx.captured_tapes.borrow_mut().insert(s.def);
                let d_def = cx.adjoint(s.def);
                let invoke = quote_spanned!(s.span=> ::backprop::__private::Pullback::backward(#tape, #d_def));
                lines.push(Line::Many {
                    invoke,
                    slots,
                    span: s.span,
                    check: true,
                });
            }
            Rhs::ZeroDerivative { .. } | Rhs::NoRule { .. } | Rhs::If(_) | Rhs::Loop(_) => {}
        }
        count_contributions(&lines[first_new..], &mut count);
    }

    let generic = func.params.iter().any(|p| {
        p.kind == crate::ir::ParamKind::Scalar
            && !matches!(&p.ty, syn::Type::Path(t) if t.path.get_ident().is_some_and(|i| i == "f32" || i == "f64"))
    });
    let mut defined: HashSet<VarId> = seeds.iter().copied().collect();
    let mut out = Vec::new();
    for line in &lines {
        match line {
            Line::Contrib { target, expr, span } => {
                let d = cx.adjoint(*target);
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
            Line::Many {
                invoke,
                slots,
                span,
                check,
            } => {
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
                out.push(quote_spanned!(*span=> let (#(#pats,)*) = #invoke;));
                // An active value passed where the callee takes a constant would get an
                // `Inactive` slot: say so at the call, not where the types clash later.
                // (Only for concrete float types: the check's trait cannot name a generic
                // `T: Float` without overlapping its array impl.)
                if *check && !generic {
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
    (out, defined, count)
}

/// The values a block defines (its statements and its branches' outputs).
fn defined_in(stmts: &[Stmt]) -> HashSet<VarId> {
    let mut set = HashSet::new();
    crate::ir::walk(stmts, &mut |s| {
        set.insert(s.def);
        match &s.rhs {
            Rhs::If(node) => set.extend(node.outs.iter().map(|o| o.def)),
            Rhs::Loop(node) => set.extend(node.carried.iter().flat_map(|c| [c.entry, c.out])),
            _ => {}
        }
    });
    set
}

/// Before (forward):
/// ```text
/// let (y, branch) = if c { let t = x * x; (t, Then(pullback_then)) } else { (x, Else(pullback_else)) };
/// ```
/// After (reverse): the branch taken is the one whose pullback the tape holds.
/// ```text
/// let (d_x,) = match branch { Then(pb) => pb(d_y), Else(pb) => pb(d_y) };
/// ```
fn branch_line(
    cx: &mut Emitter<'_>,
    def: VarId,
    node: &IfNode,
    count: &HashMap<VarId, usize>,
    span: Span,
) -> Line {
    let pullbacks = cx.branch_pullbacks(def, node);
    let activity = &cx.plan.activity;
    let args: Vec<TokenStream> = node
        .outs
        .iter()
        .filter(|o| activity.is_active(o.def))
        .map(|o| {
            if count.contains_key(&o.def) {
                let d = cx.adjoint(o.def);
                quote!(#d)
            } else {
                quote!(::backprop::__private::zero())
            }
        })
        .collect();
    let tape = cx.tape(def);
    cx.captured_tapes.borrow_mut().insert(def);
    let invoke = quote_spanned! {span=>
        match #tape {
            ::backprop::__private::Branch::Then(pullback) => pullback(#(#args),*),
            ::backprop::__private::Branch::Else(pullback) => pullback(#(#args),*),
        }
    };
    Line::Many {
        invoke,
        slots: pullbacks.outer.iter().map(|v| Some(*v)).collect(),
        span,
        check: false,
    }
}

/// The pullback closures of both branches of an `if` (built once, by the forward pass
/// that places them in the tape, and read again by the reverse pass).
pub fn build_branch_pullbacks(cx: &mut Emitter<'_>, node: &IfNode) -> BranchPullbacks {
    let activity = &cx.plan.activity;
    let ret_ty = cx.func.ret_ty.clone();
    let active_outs: Vec<&crate::ir::IfOut> = node
        .outs
        .iter()
        .filter(|o| activity.is_active(o.def))
        .collect();
    let params: Vec<TokenStream> = active_outs
        .iter()
        .map(|o| {
            let d = cx.adjoint(o.def);
            quote!(#d: #ret_ty)
        })
        .collect();
    let mut sides = Vec::new();
    for (body, pick) in [(&node.then_body, true), (&node.else_body, false)] {
        let initial: Vec<(VarId, TokenStream)> = active_outs
            .iter()
            .filter_map(|o| {
                let val = if pick { &o.then_val } else { &o.else_val };
                let v = val.var().filter(|v| activity.is_active(*v))?;
                let d = cx.adjoint(o.def);
                Some((v, quote!(#d)))
            })
            .collect();
        let (stmts, defined, _) = reverse_block(cx, body, &[], initial);
        let local = defined_in(body);
        let reaches: BTreeSet<VarId> = defined.into_iter().filter(|v| !local.contains(v)).collect();
        sides.push((stmts, reaches));
    }
    let outer: Vec<VarId> = sides[0].1.union(&sides[1].1).copied().collect();
    let tuple_ty: Vec<TokenStream> = outer.iter().map(|_| quote!(#ret_ty)).collect();
    let mut closures = Vec::new();
    for (stmts, reaches) in sides {
        let values: Vec<TokenStream> = outer
            .iter()
            .map(|v| {
                if reaches.contains(v) {
                    let d = cx.adjoint(*v);
                    quote!(#d)
                } else {
                    quote!(::backprop::__private::zero())
                }
            })
            .collect();
        closures.push(quote! {
            move |#(#params),*| -> (#(#tuple_ty,)*) {
                #(#stmts)*
                (#(#values,)*)
            }
        });
    }
    let else_closure = closures.pop().expect("two sides");
    let then_closure = closures.pop().expect("two sides");
    BranchPullbacks {
        then_closure,
        else_closure,
        outer,
    }
}

pub fn pullback(cx: &mut Emitter<'_>, tuple_ty: &TokenStream) -> TokenStream {
    let func = cx.func;
    let seed = func.ret.var().filter(|v| cx.plan.activity.is_active(*v));
    let seeds: Vec<VarId> = seed.into_iter().collect();
    let (out, defined, count) = reverse_block(cx, &func.body, &seeds, Vec::new());
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
            Line::Many { slots, .. } => {
                for t in slots.iter().flatten() {
                    *count.entry(*t).or_insert(0) += 1;
                }
            }
        }
    }
}

/// A loop's per-iteration pullback closure, the carried values it differentiates, and
/// the outer values it returns cotangents for.
pub struct LoopPullback {
    pub closure: TokenStream,
    /// Indices into `carried` of the carried values with an adjoint.
    pub active: Vec<usize>,
    pub outer: Vec<VarId>,
}

/// The pullback of one iteration: from the cotangents of the carried values at the end
/// of the iteration to those at its start, plus what flows to values read from outside
/// the loop.
pub fn build_loop_pullback(cx: &mut Emitter<'_>, node: &LoopNode) -> LoopPullback {
    let activity = &cx.plan.activity;
    let ret_ty = cx.func.ret_ty.clone();
    let active: Vec<usize> = (0..node.carried.len())
        .filter(|k| {
            activity.is_active(node.carried[*k].entry) || activity.is_active(node.carried[*k].out)
        })
        .collect();
    let mut params = Vec::new();
    let mut initial = Vec::new();
    for &k in &active {
        let c = &node.carried[k];
        let name = format!(
            "d_{}_next",
            cx.var(c.out).to_string().trim_start_matches("r#")
        );
        let p = cx.names.fresh(&name, Span::call_site());
        params.push(quote!(#p: #ret_ty));
        if let Some(v) = c.exit.var().filter(|v| activity.is_active(*v)) {
            initial.push((v, quote!(#p)));
        }
    }
    let (stmts, defined, _) = reverse_block(cx, &node.body, &[], initial);
    let mut local = defined_in(&node.body);
    local.extend(node.carried.iter().map(|c| c.entry));
    let outer: Vec<VarId> = defined
        .iter()
        .filter(|v| !local.contains(v))
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut values = Vec::new();
    for &k in &active {
        let e = node.carried[k].entry;
        if defined.contains(&e) {
            let d = cx.adjoint(e);
            values.push(quote!(#d));
        } else {
            values.push(quote!(::backprop::__private::zero()));
        }
    }
    for v in &outer {
        let d = cx.adjoint(*v);
        values.push(quote!(#d));
    }
    let tys: Vec<TokenStream> = values.iter().map(|_| quote!(#ret_ty)).collect();
    let closure = quote! {
        move |#(#params),*| -> (#(#tys,)*) {
            #(#stmts)*
            (#(#values,)*)
        }
    };
    LoopPullback {
        closure,
        active,
        outer,
    }
}

/// Before (forward): every iteration pushes its pullback.
/// ```text
/// let mut v_1 = v;
/// let mut iterations = Vec::new();
/// for _ in 0..n { let v_2 = v_1; let v_3 = v_2 * v_2; iterations.push(move |d_v_1_next| ..); v_1 = v_3; }
/// ```
/// After (reverse): the pullbacks run last-in first-out.
/// ```text
/// let (d_v,) = { let mut d_v_1_carry = d_v_1;
///     for pullback in iterations.into_iter().rev() { let (d,) = pullback(d_v_1_carry); d_v_1_carry = d; }
///     (d_v_1_carry,) };
/// ```
fn loop_line(
    cx: &mut Emitter<'_>,
    def: VarId,
    node: &LoopNode,
    count: &HashMap<VarId, usize>,
    span: Span,
) -> Line {
    let pb = cx.loop_pullback(def, node);
    let ret_ty = cx.func.ret_ty.clone();
    let activity = &cx.plan.activity;
    let tape = cx.tape(def);
    cx.captured_tapes.borrow_mut().insert(def);
    let mut carry_names = Vec::new();
    let mut inits = Vec::new();
    for &k in &pb.active {
        let c = &node.carried[k];
        let name = cx.names.fresh(
            &format!(
                "d_{}_carry",
                cx.var(c.out).to_string().trim_start_matches("r#")
            ),
            span,
        );
        let start = if count.contains_key(&c.out) {
            let d = cx.adjoint(c.out);
            quote!(#d)
        } else {
            quote!(::backprop::__private::zero())
        };
        inits.push(quote!(let mut #name: #ret_ty = #start;));
        carry_names.push(name);
    }
    let outer_names: Vec<proc_macro2::Ident> = pb
        .outer
        .iter()
        .map(|v| {
            cx.names.fresh(
                &format!("d_{}_sum", cx.var(*v).to_string().trim_start_matches("r#")),
                span,
            )
        })
        .collect();
    let step_names: Vec<proc_macro2::Ident> = (0..carry_names.len() + outer_names.len())
        .map(|k| cx.names.fresh(&format!("step_{k}"), span))
        .collect();
    let (carry_steps, outer_steps) = step_names.split_at(carry_names.len());
    let invoke = quote_spanned! {span=>
        {
            #(#inits)*
            #(let mut #outer_names: #ret_ty = ::backprop::__private::zero();)*
            for pullback in ::core::iter::IntoIterator::into_iter(#tape).rev() {
                let (#(#step_names,)*) = pullback(#(#carry_names),*);
                #(#carry_names = #carry_steps;)*
                #(#outer_names = #outer_names + #outer_steps;)*
            }
            (#(#carry_names,)* #(#outer_names,)*)
        }
    };
    let mut slots: Vec<Option<VarId>> = pb
        .active
        .iter()
        .map(|&k| {
            node.carried[k]
                .init
                .var()
                .filter(|v| activity.is_active(*v))
        })
        .collect();
    slots.extend(pb.outer.iter().map(|v| Some(*v)));
    Line::Many {
        invoke,
        slots,
        span,
        check: false,
    }
}
