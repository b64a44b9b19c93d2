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

mod branch;
mod buffers;
mod loops;
mod materialize;
mod pullback;

pub use pullback::pullback;

use super::context::{Emitter, Mode};
use crate::ir::op::{Need, Vjp};
use crate::ir::{BufOp, Operand, Rhs, Stmt, VarId};
use branch::branch_line;
use buffers::{adjoint_place, buffer_lines, buffer_slice, is_place};
use loops::loop_line;
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
    /// `let (d_x, _, d_y) = <invoke>`: cotangents for several values at once, from a
    /// call's tape (one per argument) or a branch's (one per outer value it reads).
    Many {
        invoke: TokenStream,
        slots: Vec<Option<VarId>>,
        span: Span,
        check: bool,
    },
    /// A statement on adjoint buffers (`d_x[i] += d_t;`), emitted as it is.
    Raw(TokenStream),
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
    // The adjoint of each buffer this block creates, zero until the reverse pass
    // reaches back to its reads and writes.
    let ret_ty = func.float_ty.clone();
    for s in stmts {
        if let Rhs::Buffer {
            op: op @ (BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec),
            args,
        } = &s.rhs
            && activity.is_active(s.def)
        {
            let d = cx.adjoint(s.def);
            // A buffer built by `push` has its final length when the reverse pass
            // reaches the end of its block.
            let n = if *op == BufOp::NewVec {
                let h = cx.read(s.def);
                quote!(#h.len())
            } else {
                cx.read_operand(&args[1])
            };
            lines.push(Line::Raw(
                quote_spanned!(s.span=> let mut #d: ::std::vec::Vec<#ret_ty> = ::std::vec![::backprop::__private::zero(); #n];),
            ));
        }
    }
    // The adjoint of each call of another function's gradient, `(d_value, d_grad)`,
    // zeros of the value's shape: its fields are places the reverse pass adds into.
    for s in stmts {
        if let Rhs::Call { path, .. } = &s.rhs
            && func.grad_calls.contains(&s.def)
            && activity.is_active(s.def)
        {
            let d = cx.adjoint(s.def);
            let t = cx.read(s.def);
            let zero = super::companions::companion_method(path, "zero_like");
            lines.push(Line::Raw(quote_spanned!(s.span=> let mut #d = #zero(&#t);)));
            count.insert(s.def, 1);
        }
    }
    for s in stmts.iter().rev() {
        let first_new = lines.len();
        let active = |o: &Operand| o.var().filter(|v| activity.is_active(*v));
        if let Rhs::If(node) = &s.rhs {
            if activity.is_active(s.def)
                && (node.outs.iter().any(|o| count.contains_key(&o.def))
                    || activity.touches_buffers(s.def))
            {
                lines.push(branch_line(cx, s.def, node, &count, s.span));
            }
            count_contributions(&lines[first_new..], &mut count);
            continue;
        }
        if let Rhs::Loop(node) = &s.rhs {
            if activity.is_active(s.def)
                && (node.carried.iter().any(|c| count.contains_key(&c.out))
                    || activity.touches_buffers(s.def))
            {
                lines.push(loop_line(cx, s.def, node, &count, s.span));
            }
            count_contributions(&lines[first_new..], &mut count);
            continue;
        }
        if let Rhs::Buffer { op, args } = &s.rhs {
            buffer_lines(cx, s, op, args, &count, &mut lines);
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
            // `a₁ = a₀ with [idx] = v`: both cotangents from `d_a₁`, which the rule
            // takes (no other rule reads it) and updates in place.
            Rhs::Prim { prim, .. } if crate::ir::op::is_element_write(prim) => {
                let slots = vec![active(&args[0]), active(&args[1])];
                let d = cx.adjoint(s.def);
                let idx: Vec<TokenStream> = args[2..].iter().map(|a| cx.read_operand(a)).collect();
                let rule = syn::Ident::new(&format!("{}_vjp", prim.name), s.span);
                lines.push(Line::Many {
                    invoke: quote_spanned!(s.span=> ::backprop::__private::tensor::#rule(#d #(, #idx)*)),
                    slots,
                    span: s.span,
                    check: false,
                });
            }
            // `a ± b` of two arrays on the tensor path: both cotangents from one call that
            // takes `d` by value (these rules are its only readers), so the operand of the
            // full shape gets `d` itself and only the other one is copied or summed.
            Rhs::Prim { prim, .. }
                if matches!(prim.name, "+" | "-")
                    && !cx.plan.kinds.scalar_path(s.def)
                    && args.len() == 2
                    && active(&args[0])
                        .zip(active(&args[1]))
                        .is_some_and(|(a, b)| {
                            a != b
                                && !cx.plan.in_place_reads.contains(&a)
                                && !cx.plan.in_place_reads.contains(&b)
                        }) =>
            {
                let d = cx.adjoint(s.def);
                let shapes: Vec<syn::Ident> = args
                    .iter()
                    .map(|a| {
                        let v = a.var().expect("both operands are active variables");
                        let shape = cx.stmt_shape(s.def, v);
                        cx.read_name(&shape);
                        shape
                    })
                    .collect();
                let (sa, sb) = (&shapes[0], &shapes[1]);
                let rule = if prim.name == "+" {
                    quote_spanned!(s.span=> add_vjp_pair)
                } else {
                    quote_spanned!(s.span=> sub_vjp_pair)
                };
                lines.push(Line::Many {
                    invoke: quote_spanned!(s.span=> ::backprop::__private::tensor::#rule(&#sa, &#sb, #d)),
                    slots: vec![active(&args[0]), active(&args[1])],
                    span: s.span,
                    check: false,
                });
            }
            Rhs::Prim { prim, .. } => {
                let scalar_path = cx.plan.kinds.scalar_path(s.def);
                let single = prim.arity() == 1;
                let vjps = prim.vjps_on(scalar_path);
                for (k, vjp) in vjps.iter().enumerate() {
                    let Some(t) = active(&args[k]) else { continue };
                    if cx.plan.in_place_reads.contains(&t) {
                        // The old element of an in-place update: see `in_place_updates`.
                        continue;
                    }
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
                            // A name, or a path below `__private` (`second::sin_vjp::d0`,
                            // the tangent program's second-order rules).
                            let rule: syn::Path =
                                syn::parse_str(name).expect("a rule's name is a path");
                            let rule = quote_spanned!(s.span=> #rule);
                            let needs: Vec<TokenStream> = needs
                                .iter()
                                .map(|n| {
                                    let value = match n {
                                        // A float constant on the tensor path takes the
                                        // element type of the cotangent (`x / 3.0` on f32
                                        // arrays); an input nothing flows to is data (the
                                        // `i32` exponent of `powi`) and stays as written.
                                        Need::In(j)
                                            if !scalar_path
                                                && args[*j].var().is_none()
                                                && vjps[*j] != Vjp::Zero =>
                                        {
                                            let c = cx.read_operand(&args[*j]);
                                            let d = cx.adjoint(s.def);
                                            return quote!(&::backprop::__private::tensor::like(&#d, #c));
                                        }
                                        Need::In(j) => cx.saved_operand(&args[*j]),
                                        Need::Out => {
                                            cx.captured.borrow_mut().insert(s.def);
                                            let out = cx.read(s.def);
                                            quote!(#out)
                                        }
                                        Need::Shape(j) => {
                                            let v = args[*j]
                                                .var()
                                                .expect("shapes are saved for active operands");
                                            let shape = cx.stmt_shape(s.def, v);
                                            cx.read_name(&shape);
                                            quote!(#shape)
                                        }
                                    };
                                    if scalar_path { value } else { quote!(&#value) }
                                })
                                .collect();
                            if scalar_path {
                                cx.sensitive += 1;
                                match cx.mode {
                                    Mode::Strong => {
                                        quote_spanned!(s.span=> ::backprop::__private::#rule(#(#needs,)* #d))
                                    }
                                    Mode::Plain => {
                                        quote_spanned!(s.span=> ::backprop::__private::plain::#rule(#(#needs,)* #d))
                                    }
                                }
                            } else if crate::ir::op::ELEMENTWISE_WITH_FLOATS.contains(&prim.name) {
                                // Elementwise on an array receiver: the scalar rule at every
                                // element; a float argument's cotangent is the sum.
                                let each = quote_spanned!(s.span=> ::backprop::__private::elementwise::#rule(#(#needs,)* &#d));
                                if cx.plan.kinds.scalar[t.0] {
                                    quote_spanned!(s.span=> ::backprop::__private::elementwise::sum(#each))
                                } else {
                                    each
                                }
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
            Rhs::Call { path, .. } => {
                let slots: Vec<Option<VarId>> = args.iter().map(active).collect();
                let tape = cx.tape(s.def);
                let d_def = cx.adjoint(s.def);
                // A gradient's adjoint may have arrays no contribution reached: zeros now.
                let grad_call = func.grad_calls.contains(&s.def);
                let d_def = if grad_call {
                    let fill = super::companions::companion_method(path, "fill");
                    let t = cx.read(s.def);
                    quote_spanned!(s.span=> #fill(#d_def, &#t))
                } else {
                    quote!(#d_def)
                };
                cx.sensitive += 1;
                let backward = match cx.mode {
                    Mode::Strong => syn::Ident::new("backward", s.span),
                    Mode::Plain => syn::Ident::new("backward_unguarded", s.span),
                };
                let invoke = if let Some(snaps) = cx.snapshots.get(&s.def).cloned() {
                    // A call of `f_hvp`'s tangent program on copies (see
                    // `emit::forward::kept`): its forward runs again on them.
                    let call_args: Vec<TokenStream> = args
                        .iter()
                        .zip(&snaps)
                        .map(|(a, snap)| match snap {
                            Some((copy, pass)) => {
                                cx.read_name(copy);
                                pass.clone()
                            }
                            None => cx.read_operand(a),
                        })
                        .collect();
                    // `tangent_rebuild` gets the value the call returned too: a
                    // hand-written rule's pullback needs only that and the arguments.
                    let rebuild = super::companions::companion_method(path, "tangent_rebuild");
                    cx.captured.borrow_mut().insert(s.def);
                    let value = cx.read(s.def);
                    quote_spanned!(s.span=> {
                        let (_, #tape) = #rebuild(#(#call_args,)* #value);
                        ::backprop::__private::Pullback::#backward(#tape, #d_def)
                    })
                } else {
                    cx.captured_tapes.borrow_mut().insert(s.def);
                    cx.read_name(&tape);
                    quote_spanned!(s.span=> ::backprop::__private::Pullback::#backward(#tape, #d_def))
                };
                lines.push(Line::Many {
                    invoke,
                    slots,
                    span: s.span,
                    check: true,
                });
            }
            Rhs::ZeroDerivative { .. }
            | Rhs::NoRule { .. }
            | Rhs::If(_)
            | Rhs::Loop(_)
            | Rhs::Buffer { .. } => {}
        }
        count_contributions(&lines[first_new..], &mut count);
    }

    let concrete = |ty: &syn::Type| matches!(ty, syn::Type::Path(t) if t.path.get_ident().is_some_and(|i| i == "f32" || i == "f64"));
    let generic = !concrete(&func.float_ty)
        || func
            .params
            .iter()
            .any(|p| p.kind == crate::ir::ParamKind::Scalar && !concrete(&p.ty));
    let mut defined: HashSet<VarId> = seeds.iter().copied().collect();
    let mut out = Vec::new();
    for line in &lines {
        match line {
            Line::Contrib { target, expr, span } if is_place(cx, *target) => {
                let place = adjoint_place(cx, *target);
                out.push(
                    quote_spanned!(*span=> ::backprop::__private::accumulate(&mut #place, #expr);),
                );
            }
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
            Line::Raw(ts) => out.push(ts.clone()),
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
                        // A struct's (or a field's) cotangent: added into its place.
                        Some(t) if is_place(cx, *t) && !func.is_buffer(*t) => {
                            let part = cx.names.fresh("d_part", *span);
                            pats.push(quote!(#part));
                            let place = adjoint_place(cx, *t);
                            accum.push(quote_spanned!(*span=> ::backprop::__private::accumulate(&mut #place, #part);));
                        }
                        // A buffer argument's cotangent is a `Vec`: added into the
                        // adjoint of the buffer it views, in place.
                        Some(t) if func.is_buffer(*t) => {
                            let part = cx.names.fresh("d_part", *span);
                            pats.push(quote!(#part));
                            let target = buffer_slice(cx, *t);
                            // A part of a field: its elements may be structs (`&p.blocks[1..]`).
                            accum.push(if func.is_field_view(func.buffer_root(*t).0) {
                                quote_spanned!(*span=> ::backprop::__private::add_into_field(#target, #part);)
                            } else {
                                quote_spanned!(*span=> ::backprop::__private::add_into(#target, &#part);)
                            });
                        }
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
                    let plain: Vec<VarId> = slots
                        .iter()
                        .flatten()
                        .copied()
                        .filter(|t| !func.is_buffer(*t) && !is_place(cx, *t))
                        .collect();
                    for slot in &plain {
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
            Line::Raw(_) => {}
        }
    }
}
