//! The pullback closure as a whole: seeds, adjoint buffers of buffer arguments,
//! the gradient tuple, and the second reverse body without strong zeros.

use super::reverse_block;
use crate::emit::context::Emitter;
use crate::ir::{BufOp, Rhs, Stmt, VarId};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

/// The gradient of every argument, and the adjoint buffers of the buffer arguments.
/// The pullback closure, and whether it has two reverse bodies (with and without strong
/// zeros; see `plain_body`).
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
                quote_spanned!(x.span()=> let (mut #d, #fill) = ::backprop::__private::zero_like_slice(#arg);)
            } else {
                quote_spanned!(x.span()=> let (mut #d, #fill) = ::backprop::__private::zero_like(#arg);)
            }
        })
        .collect();
    let buffers: Vec<TokenStream> = buffers.into_iter().chain(structs).collect();
    let (out, defined, count) = reverse_block(cx, &func.body, &seeds, Vec::new());
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
    let mentioned = crate::ir::idents(&body);
    let view_stmts: Vec<&Stmt> = func
        .body
        .iter()
        .filter(|s| {
            matches!(
                &s.rhs,
                Rhs::Buffer {
                    op: BufOp::View | BufOp::Borrow,
                    ..
                }
            ) && mentioned.contains(&func.name(s.def).to_string())
                && !func
                    .params
                    .iter()
                    .any(|p| p.var == func.buffer_root(s.def).0)
                && !func.is_field_view(func.buffer_root(s.def).0)
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
        .map(|p| &p.ident)
        .filter(|x| mentioned.contains(&x.to_string()))
        .collect();
    // The loops' stacks likewise: a pop then keeps the stack's length in a register
    // instead of storing it back to the closure's state every iteration.
    let stacks: Vec<Ident> = cx
        .stacks
        .clone()
        .into_iter()
        .map(|v| cx.tape(v).clone())
        .filter(|t| mentioned.contains(&t.to_string()))
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
    // expansion stays one derivation to read.
    let (plain, rewritten) = if tensor || !loops {
        (quote!(), 0)
    } else {
        plain_body(body.clone())
    };
    if rewritten == 0 {
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
    (
        quote! {
            move |#param: #ret_ty, #strong: bool| -> #tuple_ty {
                #(#buffers)*
                let (#(#results,)*) = if #strong {
                    #body
                    (#(#results,)*)
                } else {
                    #plain
                    (#(#results,)*)
                };
                (#(#grads,)*)
            }
        },
        true,
    )
}

/// The reverse body without strong zeros: each scalar rule `::backprop::__private::r`
/// becomes `::backprop::__private::plain::r` (the same formula with `d · local` a
/// plain product) and each nested pullback runs its own plain body
/// (`Pullback::backward_unguarded`). Returns the body and how many paths it changed
/// (none: the function has no scalar rule, and keeps one body).
///
/// Why the gradient is the same when it has no NaN: `backprop::rules::scalar::plain`.
fn plain_body(body: TokenStream) -> (TokenStream, usize) {
    use proc_macro2::{Group, TokenTree};
    fn is_rule(name: &str) -> bool {
        name.ends_with("_vjp") || name.contains("_vjp_")
    }
    fn is_colon(t: Option<&TokenTree>) -> bool {
        matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == ':')
    }
    fn rewrite(ts: TokenStream, count: &mut usize) -> TokenStream {
        let tokens: Vec<TokenTree> = ts.into_iter().collect();
        let mut out: Vec<TokenTree> = Vec::with_capacity(tokens.len() + 8);
        let mut k = 0;
        while k < tokens.len() {
            let tt = &tokens[k];
            k += 1;
            if let TokenTree::Group(g) = tt {
                let mut inner = Group::new(g.delimiter(), rewrite(g.stream(), count));
                inner.set_span(g.span());
                out.push(TokenTree::Group(inner));
                continue;
            }
            out.push(tt.clone());
            // `__private ::` then a rule's name, or `Pullback :: backward`.
            let after_private = matches!(tt, TokenTree::Ident(i) if i == "__private")
                && is_colon(tokens.get(k))
                && is_colon(tokens.get(k + 1));
            if !after_private {
                continue;
            }
            let colons = [tokens[k].clone(), tokens[k + 1].clone()];
            match tokens.get(k + 2) {
                // `__private::rule` → `__private::plain::rule`
                Some(TokenTree::Ident(name)) if is_rule(&name.to_string()) => {
                    out.extend(colons.iter().cloned());
                    out.push(TokenTree::Ident(Ident::new("plain", name.span())));
                    out.extend(colons);
                    out.push(TokenTree::Ident(name.clone()));
                    *count += 1;
                    k += 3;
                }
                // `__private::Pullback::backward` → `...::backward_unguarded`
                Some(TokenTree::Ident(name))
                    if name == "Pullback"
                        && is_colon(tokens.get(k + 3))
                        && is_colon(tokens.get(k + 4))
                        && matches!(tokens.get(k + 5), Some(TokenTree::Ident(m)) if m == "backward") =>
                {
                    out.extend(tokens[k..k + 5].iter().cloned());
                    out.push(TokenTree::Ident(Ident::new(
                        "backward_unguarded",
                        tokens[k + 5].span(),
                    )));
                    *count += 1;
                    k += 6;
                }
                _ => {}
            }
        }
        out.into_iter().collect()
    }
    let mut count = 0;
    let body = rewrite(body, &mut count);
    (body, count)
}
