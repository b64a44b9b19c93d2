//! The reverse of buffer operations: element reads and writes, sub-slices, and the
//! adjoint place (`d_x[i]`, a field of a struct's adjoint) a contribution goes to.

use super::Line;
use crate::emit::context::Emitter;
use crate::ir::{BufOp, Operand, Rhs, Stmt, VarId};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use std::collections::HashMap;

/// `target += d`, or `target = target + d` in a function generic over its float type
/// (`T: Float` has no `+=`).
pub(super) fn add_assign(
    cx: &Emitter<'_>,
    target: &TokenStream,
    d: &Ident,
    span: Span,
) -> TokenStream {
    let generic = !crate::ir::lower::float_type_params(&cx.item_generics()).is_empty();
    if generic {
        quote_spanned!(span=> #target = #target + #d;)
    } else {
        quote_spanned!(span=> #target += #d;)
    }
}

/// A struct argument, a field view or a call of another function's gradient: its
/// adjoint is a place updated in place.
pub(super) fn is_place(cx: &Emitter<'_>, v: VarId) -> bool {
    cx.func.is_field_view(v)
        || cx.func.grad_calls.contains(&v)
        || cx
            .func
            .params
            .iter()
            .any(|p| p.var == v && p.kind == crate::ir::ParamKind::Struct)
}

/// `d_x[off + i]`: the adjoint element of element `i` of buffer `buf` (a view adds its
/// offset into the buffer that owns the elements).
pub(super) fn buffer_elem(cx: &mut Emitter<'_>, buf: VarId, index: &Operand) -> TokenStream {
    let (root, offsets) = cx.func.buffer_root(buf);
    let mut d = adjoint_place(cx, root);
    if cx.func.is_field_view(root) {
        // A struct's adjoint starts with its arrays unallocated (`lazy_zero`): an element
        // of an ndarray field needs zeros of the primal's shape first.
        let primal = primal_place(cx, root);
        d = quote!((*::backprop::__private::elements_of(&mut #d, &#primal)));
    }
    let i = cx.read_operand(index);
    let offs: Vec<TokenStream> = offsets.iter().map(|o| cx.read_operand(o)).collect();
    quote!(#d[#(#offs +)* #i])
}

/// `&mut d_x[off..]`: the adjoint elements of buffer (or view) `buf`.
pub(super) fn buffer_slice(cx: &mut Emitter<'_>, buf: VarId) -> TokenStream {
    let (root, offsets) = cx.func.buffer_root(buf);
    let d = adjoint_place(cx, root);
    if offsets.is_empty() {
        quote!(&mut #d[..])
    } else {
        let offs: Vec<TokenStream> = offsets.iter().map(|o| cx.read_operand(o)).collect();
        quote!(&mut #d[#(#offs)+*..])
    }
}

/// The reverse of a buffer operation:
/// - `t = x[i]`: `d_x[i] += d_t;` (a read adds to the element's adjoint);
/// - `x[i] = v`: `let d_v = d_x[i]; d_x[i] = 0;` (the old element no longer reaches the result);
/// - `h = vec![v; n]`: `d_v = Σ d_h`; `h = x.to_vec()`: `d_x += d_h`;
/// - views and borrows: nothing (their adjoint *is* a part of the owner's).
pub(super) fn buffer_lines(
    cx: &mut Emitter<'_>,
    s: &Stmt,
    op: &BufOp,
    args: &[Operand],
    count: &HashMap<VarId, usize>,
    lines: &mut Vec<Line>,
) {
    let activity = &cx.plan.activity;
    let span = s.span;
    let active = |o: &Operand| o.var().filter(|v| activity.is_active(*v));
    match op {
        BufOp::Read => {
            if cx.plan.in_place_reads.contains(&s.def) {
                return;
            }
            if cx.accumulated_reads.contains(&s.def) {
                // Summed over the iterations by the loop (`build_loop_reverse`).
                return;
            }
            if activity.is_active(s.def) && count.contains_key(&s.def) {
                let buf = args[0].var().expect("a buffer");
                let elem = buffer_elem(cx, buf, &args[1]);
                let d = cx.adjoint(s.def);
                lines.push(Line::Raw(add_assign(cx, &elem, &d, span)));
            }
        }
        BufOp::Write => {
            let Some(buf) = active(&args[0]) else { return };
            let elem = buffer_elem(cx, buf, &args[1]);
            if let Some(v) = active(&args[2]) {
                lines.push(Line::Contrib {
                    target: v,
                    expr: elem.clone(),
                    span,
                });
            }
            if cx.plan.in_place_writes.contains(&s.def) {
                // `x[i] = x[i] ± e`: the old element reaches the result through the new
                // one, so its adjoint stays (no zeroing, and its read adds nothing back).
                return;
            }
            lines.push(Line::Raw(
                quote_spanned!(span=> #elem = ::backprop::__private::zero();),
            ));
        }
        BufOp::Fill | BufOp::FillArray => {
            if let Some(v) = active(&args[0])
                && activity.is_active(s.def)
            {
                let d = cx.adjoint(s.def);
                lines.push(Line::Contrib {
                    target: v,
                    expr: quote_spanned!(span=> ::backprop::__private::sum_of(&#d)),
                    span,
                });
            }
        }
        BufOp::ToVec => {
            if let Some(src) = active(&args[0])
                && activity.is_active(s.def)
            {
                let d = cx.adjoint(s.def);
                let target = buffer_slice(cx, src);
                lines.push(Line::Raw(
                    quote_spanned!(span=> ::backprop::__private::add_into(#target, &#d);),
                ));
            }
        }
        BufOp::FieldRead(m) => {
            if activity.is_active(s.def) && count.contains_key(&s.def) {
                let base = args[0].var().expect("a struct");
                let place = adjoint_place(cx, base);
                let d = cx.adjoint(s.def);
                let target = quote!(#place.#m);
                if cx.plan.kinds.scalar[s.def.0] {
                    lines.push(Line::Raw(add_assign(cx, &target, &d, span)));
                } else {
                    // An array field (of another function's gradient, `g.x`).
                    lines.push(Line::Raw(quote_spanned!(span=>
                        ::backprop::__private::accumulate(&mut #target, #d);
                    )));
                }
            }
        }
        BufOp::Push => {
            let Some(buf) = active(&args[0]) else { return };
            let d = adjoint_place(cx, buf);
            let popped = quote_spanned!(span=> ::backprop::__private::pop_last(&mut #d));
            match active(&args[1]) {
                Some(v) => lines.push(Line::Contrib {
                    target: v,
                    expr: popped,
                    span,
                }),
                None => lines.push(Line::Raw(quote_spanned!(span=> #popped;))),
            }
        }
        BufOp::View
        | BufOp::Alias
        | BufOp::Borrow
        | BufOp::Field(_)
        | BufOp::Elem
        | BufOp::NewVec => {}
    }
}

/// The place a field view names, spelled from its root: `root` names the struct
/// argument (its primal or its adjoint), and the fields and elements follow
/// (`p.layers[i].w`, `d_p.layers[i].w`).
fn place_path(
    cx: &mut Emitter<'_>,
    v: VarId,
    root: fn(&mut Emitter<'_>, VarId) -> TokenStream,
) -> TokenStream {
    match cx.func.def_of(v) {
        Some(Stmt {
            rhs:
                Rhs::Buffer {
                    op: BufOp::Field(m),
                    args,
                },
            ..
        }) => {
            let base = args[0].var().expect("a struct");
            let m = m.clone();
            let place = place_path(cx, base, root);
            quote!(#place.#m)
        }
        Some(Stmt {
            rhs: Rhs::Buffer {
                op: BufOp::Elem,
                args,
            },
            ..
        }) => {
            let base = args[0].var().expect("a collection of structs");
            let i = cx.read_operand(&args[1]);
            let place = place_path(cx, base, root);
            quote!(#place[#i])
        }
        Some(Stmt {
            rhs:
                Rhs::Buffer {
                    op: BufOp::Alias | BufOp::Borrow,
                    args,
                },
            ..
        }) => {
            let base = args[0].var().expect("a struct");
            place_path(cx, base, root)
        }
        _ => root(cx, v),
    }
}

/// The primal place a field view names, spelled from the struct argument
/// (`p.layers[i].w`), which the tape holds.
fn primal_place(cx: &mut Emitter<'_>, v: VarId) -> TokenStream {
    place_path(cx, v, |cx, v| {
        let p = cx.read(v);
        quote!(#p)
    })
}

/// The adjoint of a struct argument or of a field view of one: `d_p`, `d_p.layer1.w`.
pub fn adjoint_place(cx: &mut Emitter<'_>, v: VarId) -> TokenStream {
    place_path(cx, v, |cx, v| {
        let d = cx.adjoint(v);
        quote!(#d)
    })
}
