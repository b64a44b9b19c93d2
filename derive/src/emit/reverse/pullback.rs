//! The pullback closure as a whole: seeds, adjoint buffers of buffer arguments,
//! the gradient tuple, and the second reverse body without strong zeros.

use super::reverse_block;
use crate::emit::context::{Emitter, Mode};
use crate::ir::{BufOp, Rhs, Stmt, VarId};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

/// The gradient of every argument, and the adjoint buffers of the buffer arguments.
/// The pullback closure, and whether it has two reverse bodies: with strong zeros and
/// plain (`Mode`), the same reverse pass emitted twice from the IR.
pub fn pullback(cx: &mut Emitter<'_>, tuple_ty: &TokenStream) -> (TokenStream, bool) {
    let func = cx.func;
    let seed = func.ret.var().filter(|v| cx.plan.activity.is_active(*v));
    let seeds: Vec<VarId> = seed.into_iter().collect();
    // `let mut d_w = vec![0.0; w.len()];` for each active buffer argument: reads add
    // into it in place.
    let buffers: Vec<TokenStream> = func
        .params
        .iter()
        .filter(|p| p.kind == crate::ir::ParamKind::Buffer && cx.plan.activity.is_active(p.var))
        .map(|p| {
            let d = cx.adjoint(p.var);
            let x = &p.ident;
            let elem = p.elem.as_ref().expect("a buffer's element type");
            quote!(let mut #d: ::std::vec::Vec<#elem> = ::std::vec![::backprop::__private::zero(); #x.len()];)
        })
        .collect();
    // `let mut d_p = zero_like(p);` for each struct argument: its fields' contributions
    // are added in place.
    let structs: Vec<TokenStream> = func
        .params
        .iter()
        .filter(|p| p.kind == crate::ir::ParamKind::Struct && p.active)
        .map(|p| {
            let d = cx.adjoint(p.var);
            let x = &p.ident;
            let arg = if matches!(p.ty, syn::Type::Reference(_)) {
                quote!(#x)
            } else {
                quote!(&#x)
            };
            let slice = matches!(&p.ty, syn::Type::Reference(r) if matches!(*r.elem, syn::Type::Slice(_)));
            let fill = format_ident!("fill_{}", d);
            if slice {
                quote_spanned!(x.span()=> let (mut #d, #fill, _) = ::backprop::__private::zero_like_slice(#arg);)
            } else {
                quote_spanned!(x.span()=> let (mut #d, #fill, _) = ::backprop::__private::zero_like(#arg);)
            }
        })
        .collect();
    let buffers: Vec<TokenStream> = buffers.into_iter().chain(structs).collect();
    let names_before = cx.names.clone();
    cx.sensitive = 0;
    let ((out, defined, count), reads) =
        cx.recording(|cx| reverse_block(cx, &func.body, &seeds, Vec::new()));
    let sensitive = cx.sensitive;
    // The gradient: one slot per argument.
    let grads: Vec<TokenStream> = func
        .params
        .iter()
        .map(|p| {
            if !p.active {
                quote!(::backprop::__private::Inactive)
            } else if p.kind == crate::ir::ParamKind::Struct {
                // Arrays no cotangent reached were left unallocated: zeros now.
                let d = cx.adjoint(p.var);
                let x = &p.ident;
                let by_ref = matches!(p.ty, syn::Type::Reference(_));
                let arg = if by_ref { quote!(#x) } else { quote!(&#x) };
                let fill = format_ident!("fill_{}", d);
                quote!(#fill(#d, #arg))
            } else if p.kind == crate::ir::ParamKind::Buffer {
                if cx.plan.activity.is_active(p.var) {
                    let d = cx.adjoint(p.var);
                    quote!(#d)
                } else {
                    let x = &p.ident;
                    quote!(::std::vec![::backprop::__private::zero(); #x.len()])
                }
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
    // A view of a buffer this function owns (`let tail = &v[1..];`) borrows a local of
    // the forward pass: the pullback takes the buffer and makes the view again.
    let body = quote!(#(#out)*);
    // The parts of another function's gradient the reverse pass reads, with the parts
    // they are made from (`g = &t.1` for `&g.w`).
    let mut gradient_parts = std::collections::HashSet::new();
    for &v in &reads.values {
        if func.grad_call_root(v).is_some() {
            let mut cur = Some(v);
            while let Some(c) = cur.filter(|c| !func.grad_calls.contains(c)) {
                gradient_parts.insert(c);
                cur = match func.def_of(c) {
                    Some(Stmt {
                        rhs: Rhs::Buffer { args, .. },
                        ..
                    }) => args[0].var(),
                    _ => None,
                };
            }
        }
    }
    let view_stmts: Vec<&Stmt> = func
        .body
        .iter()
        .filter(|s| {
            let local_view = matches!(
                &s.rhs,
                Rhs::Buffer {
                    op: BufOp::View | BufOp::Borrow,
                    ..
                }
            ) && !func
                .params
                .iter()
                .any(|p| p.var == func.buffer_root(s.def).0)
                && !func.is_field_view(func.buffer_root(s.def).0);
            // A part of another function's gradient (`g = &t.1`, `&g.w`) borrows the
            // call's value, which the tape owns: made again from it.
            let part_of_gradient = matches!(
                &s.rhs,
                Rhs::Buffer {
                    op: BufOp::View | BufOp::Borrow | BufOp::Field(_) | BufOp::Elem,
                    ..
                }
            ) && func.grad_call_root(s.def).is_some();
            (reads.values.contains(&s.def) && local_view)
                || (part_of_gradient && gradient_parts.contains(&s.def))
        })
        .collect();
    let views: Vec<TokenStream> = view_stmts.into_iter().map(|s| cx.simple_stmt(s)).collect();
    // Loops (and calls, whose callees may loop) are where the reverse pass's speed is:
    // only there is it worth the two rewrites below, which make the expansion longer.
    let mut loops = false;
    crate::ir::walk(&func.body, &mut |s| {
        loops |= matches!(s.rhs, Rhs::Loop(_) | Rhs::Call { .. });
    });
    // The arguments the reverse pass reads, moved out of the closure's state into
    // locals first: a slice or number read through the closure's state is loaded
    // again after every store to an adjoint (the compiler cannot tell the two apart),
    // a local stays in registers.
    let read_args: Vec<&Ident> = func
        .params
        .iter()
        .filter(|p| reads.values.contains(&p.var))
        .map(|p| &p.ident)
        .collect();
    // The loops' stacks likewise: a pop then keeps the stack's length in a register
    // instead of storing it back to the closure's state every iteration.
    let stacks: Vec<Ident> = cx
        .stacks
        .clone()
        .into_iter()
        .map(|v| cx.tape(v).clone())
        .filter(|t| reads.names.contains(&t.to_string()))
        .collect();
    let rebind = if (read_args.is_empty() && stacks.is_empty()) || !loops {
        quote!()
    } else {
        quote!(let (#(#read_args,)* #(mut #stacks,)*) = (#(#read_args,)* #(#stacks,)*);)
    };
    let buffers: Vec<TokenStream> = std::iter::once(rebind)
        .chain(buffers)
        .chain(views)
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
    // Tensor code keeps one body: its rules are kernels with their own zero handling,
    // so a second body would only double its size.
    let tensor = cx.plan.kinds.any_tensor()
        || func
            .params
            .iter()
            .any(|p| p.kind == crate::ir::ParamKind::Tensor);
    // Straight-line code keeps one body too: its few products cost little, and its
    // expansion stays one derivation to read. So does a body with no scalar rule and
    // no nested pullback: its plain twin would be the same.
    if tensor || !loops || sensitive == 0 || cx.one_body {
        return (
            quote! {
                move |#param: #ret_ty| -> #tuple_ty {
                    #(#buffers)*
                    #body
                    (#(#grads,)*)
                }
            },
            false,
        );
    }
    // The second body, from the same state of the name generator (the two are
    // separate blocks, so they may use the same names).
    let names_after = std::mem::replace(&mut cx.names, names_before);
    cx.mode = Mode::Plain;
    let (plain_out, plain_defined, _) = reverse_block(cx, &func.body, &seeds, Vec::new());
    cx.mode = Mode::Strong;
    cx.names.absorb(names_after);
    assert_eq!(
        plain_defined, defined,
        "both bodies define the same adjoints"
    );
    let plain = quote!(#(#plain_out)*);
    // Two reverse bodies: the closure's second argument picks one. The adjoints of
    // the arguments each body defines leave it as a tuple; buffers' and structs'
    // adjoints are declared above both and filled in place.
    let results: Vec<Ident> = func
        .params
        .iter()
        .filter(|p| {
            p.active
                && defined.contains(&p.var)
                && !matches!(
                    p.kind,
                    crate::ir::ParamKind::Buffer | crate::ir::ParamKind::Struct
                )
        })
        .map(|p| cx.adjoint(p.var).clone())
        .collect();
    let strong = cx.names.fresh("strong_zeros", Span::call_site());
    let bodies = if results.is_empty() {
        // Every gradient is added into adjoint buffers: the bodies are statements.
        quote! {
            if #strong {
                #body
            } else {
                #plain
            }
        }
    } else {
        quote! {
            let (#(#results,)*) = if #strong {
                #body
                (#(#results,)*)
            } else {
                #plain
                (#(#results,)*)
            };
        }
    };
    (
        quote! {
            move |#param: #ret_ty, #strong: bool| -> #tuple_ty {
                #(#buffers)*
                #bodies
                (#(#grads,)*)
            }
        },
        true,
    )
}
