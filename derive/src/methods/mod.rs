//! `#[grad]` on an `impl` block: methods and associated functions.
//!
//! What `#[grad]` generates beside a function (the gradient struct, the rule companion
//! `struct f {}`) are items an `impl` cannot hold, and an attribute on a method can
//! only put impl items where the method was. So the attribute goes on the impl too:
//!
//! ```text
//! #[grad]
//! impl Model {
//!     #[grad]
//!     fn loss(&self, x: &Array2<f64>, y: &[usize]) -> f64 { .. self.w .. self.layer(x) .. }
//! }
//! ```
//!
//! The impl-level expansion sees the whole impl. Each `#[grad]` method is rewritten
//! into a free function, `fn __Model_loss(self_: &Model, x: .., y: ..) -> f64`, with
//! `self` renamed `self_`, `Self` replaced by the self type, the impl's generics added
//! to the function's, and calls of the impl's other `#[grad]` functions (`self.layer(x)`,
//! `Self::norm(&h)`) turned into calls of their free functions (`__Model_layer(self_,
//! x)`), which have rules. That function goes through the ordinary pipeline, and its
//! companions are emitted at module level beside the impl. The impl keeps every method
//! as written (minus the inner `#[grad]`) and gains thin methods that forward to the
//! companions: `loss_grad` (or `loss_vjp` for an array result), `loss_forward`, and the
//! associated `loss_backward`. The gradient struct is named after both
//! (`ModelLossGrad`), and its field for `self` is `self_`, a value of the self type.

mod forwarding;
mod rewrite;

use crate::context::Block;
use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote};
use syn::visit_mut::VisitMut;
use syn::{FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, Pat, ReturnType, Type};

use crate::names::SELF_ARG;
use forwarding::forwarding_methods;
use rewrite::Rewrite;

/// The attribute `#[grad]` / `#[grad(x)]` / `#[backprop::grad]` on a method.
fn is_grad_attr(a: &syn::Attribute) -> bool {
    a.path().segments.last().is_some_and(|s| s.ident == "grad")
}

/// `#[grad] impl Model { .. }`.
pub fn grad_impl(attr: TokenStream, mut item_impl: ItemImpl) -> TokenStream {
    let mut errors: Vec<syn::Error> = Vec::new();
    if !attr.is_empty() {
        errors.push(syn::Error::new_spanned(
            &attr,
            "`#[grad]` on an `impl` takes no arguments: name the differentiated arguments on each method (`#[grad(x)]`)",
        ));
    }
    // The `#[grad]` functions of the impl, with their attribute's arguments.
    let mut marked: Vec<(usize, TokenStream)> = Vec::new();
    for (k, it) in item_impl.items.iter_mut().enumerate() {
        if let ImplItem::Fn(f) = it
            && let Some(pos) = f.attrs.iter().position(is_grad_attr)
        {
            let a = f.attrs.remove(pos);
            // `#[grad(self, x)]` names the receiver by its keyword.
            let args = match a.meta {
                syn::Meta::List(l) => l
                    .tokens
                    .into_iter()
                    .map(|t| match t {
                        TokenTree::Ident(i) if i == "self" => {
                            TokenTree::Ident(syn::Ident::new(SELF_ARG, i.span()))
                        }
                        t => t,
                    })
                    .collect(),
                _ => TokenStream::new(),
            };
            marked.push((k, args));
        }
    }
    let refuse = |errors: Vec<syn::Error>, item_impl: &ItemImpl| {
        let errors = errors.into_iter().map(|e| e.to_compile_error());
        quote!(#(#errors)* #item_impl)
    };
    if let Some((_, path, _)) = &item_impl.trait_ {
        errors.push(syn::Error::new_spanned(
            path,
            "`#[grad]` goes on an inherent `impl` (`impl Model { .. }`), not on a trait's: the methods it adds (`loss_grad`, ..) are not the trait's; differentiate the method in an inherent `#[grad] impl` and call it from the trait's method",
        ));
        return refuse(errors, &item_impl);
    }
    let self_name = match &*item_impl.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(self_name) = self_name else {
        errors.push(syn::Error::new_spanned(
            &item_impl.self_ty,
            "`#[grad]` on an `impl` needs the self type to be a named struct (`impl Model { .. }`, `impl<T> Model<T> { .. }`)",
        ));
        return refuse(errors, &item_impl);
    };
    if marked.is_empty() {
        errors.push(syn::Error::new_spanned(
            item_impl.impl_token,
            "`#[grad]` on an `impl` differentiates the functions marked `#[grad]` inside it, and this one has none",
        ));
    }
    // Every `#[grad]` function of the impl, and whether it takes `self`: calls of them
    // in the others are calls of their free functions.
    let siblings: Vec<(syn::Ident, bool)> = marked
        .iter()
        .filter_map(|(k, _)| match &item_impl.items[*k] {
            ImplItem::Fn(f) => Some((f.sig.ident.clone(), f.sig.receiver().is_some())),
            _ => None,
        })
        .collect();
    let mut free_items = TokenStream::new();
    let mut thin: Vec<ImplItem> = Vec::new();
    let mut emitted: Vec<usize> = Vec::new();
    for (k, args) in &marked {
        let ImplItem::Fn(method) = &item_impl.items[*k] else {
            continue;
        };
        let (free, receiver_error) = free_fn(&item_impl, &self_name, method, &siblings);
        let (expansion, api) = match receiver_error {
            // A refused receiver: stubs, the one error, and nothing from the body.
            Some(e) => {
                let active = crate::attr::parse(args.clone()).ok().and_then(|a| a.active);
                crate::fallback::expand(&free, active.as_deref(), vec![e])
            }
            None => crate::expand::grad_fn(args.clone(), &free),
        };
        free_items.extend(expansion);
        thin.extend(forwarding_methods(&free, method, &api, &item_impl));
        if api.emitted {
            emitted.push(*k);
        }
    }
    // The methods as written run their matrix products where their free functions do
    // (`plain.rs`).
    let mut rewritten = false;
    for k in emitted {
        if let ImplItem::Fn(method) = &mut item_impl.items[k] {
            rewritten |= crate::plain::rewrite(&mut method.block);
        }
    }
    // (A sibling called as `self.dot(x)` is a free call in the free function, so its
    // expansion may not bring the import this method's rewrite needs.)
    let import = rewritten.then(crate::plain::import);
    item_impl.items.extend(thin);
    let errors = errors.into_iter().map(|e| e.to_compile_error());
    quote! {
        #(#errors)*
        #import
        #item_impl
        #free_items
    }
}

/// The free function a `#[grad]` method or associated function stands for, and the error
/// of a receiver other than `&self`.
fn free_fn(
    item_impl: &ItemImpl,
    self_name: &syn::Ident,
    method: &ImplItemFn,
    siblings: &[(syn::Ident, bool)],
) -> (ItemFn, Option<syn::Error>) {
    let self_ty = &*item_impl.self_ty;
    let mut sig = method.sig.clone();
    let mut receiver_error = None;
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        let by_ref = matches!(&*r.ty, Type::Reference(t) if t.mutability.is_none()
            && matches!(&*t.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self")));
        if !by_ref {
            receiver_error = Some(syn::Error::new_spanned(
                r,
                format!(
                    "`#[grad]` differentiates methods that take `&self`: the gradient is a value of the self type, and `{}` would hand the method a value it may move or change",
                    r.to_token_stream().to_string().replace("& ", "&")
                ),
            ));
        }
        let lifetime = match &*r.ty {
            Type::Reference(t) => t.lifetime.clone(),
            _ => None,
        };
        let name = syn::Ident::new(SELF_ARG, r.self_token.span);
        let arg: FnArg = syn::parse_quote_spanned!(r.self_token.span=> #name: &#lifetime #self_ty);
        *sig.inputs.first_mut().expect("a receiver") = arg;
    }
    sig.ident = free_name(self_name, &method.sig.ident);
    // The impl's generics come first, then the function's own.
    let mut generics = item_impl.generics.clone();
    generics.params.extend(sig.generics.params.iter().cloned());
    if let Some(w) = &sig.generics.where_clause {
        generics
            .make_where_clause()
            .predicates
            .extend(w.predicates.iter().cloned());
    }
    // A lifetime parameter must come before types and consts.
    let (lifetimes, others): (Vec<_>, Vec<_>) = generics
        .params
        .into_iter()
        .partition(|p| matches!(p, syn::GenericParam::Lifetime(_)));
    generics.params = lifetimes.into_iter().chain(others).collect();
    sig.generics = generics;
    let mut attrs: Vec<syn::Attribute> = method
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc"))
        .cloned()
        .collect();
    attrs.push(syn::parse_quote!(#[doc(hidden)]));
    attrs.push(syn::parse_quote!(
        #[allow(non_snake_case, dead_code, private_interfaces, private_bounds, clippy::multiple_bound_locations)]
    ));
    let mut item = ItemFn {
        attrs,
        vis: method.vis.clone(),
        sig,
        block: Box::new(method.block.clone()),
    };
    // Arguments of the self type (`m: &Self`, `other: &Model`): `m.loss(x)` on them is a
    // call of the `#[grad]` method too.
    let self_text = self_ty.to_token_stream().to_string();
    let receivers: Vec<syn::Ident> = method
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(pt) => match (&*pt.pat, &*pt.ty) {
                (Pat::Ident(pi), Type::Reference(r))
                    if r.mutability.is_none()
                        && (matches!(&*r.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
                            || r.elem.to_token_stream().to_string() == self_text) =>
                {
                    Some(pi.ident.clone())
                }
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    let mut rewrite = Rewrite {
        self_ty,
        self_name,
        siblings,
        receivers: &receivers,
    };
    rewrite.visit_signature_mut(&mut item.sig);
    rewrite.visit_block_mut(&mut item.block);
    (item, receiver_error)
}

/// `Model`, `loss` → `__Model_loss`.
fn free_name(self_name: &syn::Ident, method: &syn::Ident) -> syn::Ident {
    let m = method.to_string();
    format_ident!(
        "__{}_{}",
        self_name,
        m.trim_start_matches("r#"),
        span = method.span()
    )
}

/// The arguments after the receiver, each with a name (`__arg1` for a pattern).
fn named_inputs(sig: &syn::Signature) -> Vec<(syn::Ident, Type)> {
    sig.inputs
        .iter()
        .enumerate()
        .filter_map(|(k, a)| match a {
            FnArg::Receiver(_) => None,
            FnArg::Typed(pt) => {
                let name = match &*pt.pat {
                    Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                        pi.ident.clone()
                    }
                    _ => format_ident!("__arg{}", k),
                };
                Some((name, (*pt.ty).clone()))
            }
        })
        .collect()
}

/// `#[grad]` on a method, or on an associated function, whose `impl` has no `#[grad]`:
/// one error, and stub methods (`loss_grad`, `loss_forward`) whose result type is that
/// error, so call sites add none (rustc reports an error type once and accepts any use
/// of it).
pub fn refuse_without_impl_attr(item_fn: &ItemFn, context: Option<Block>) -> TokenStream {
    let name = &item_fn.sig.ident;
    if matches!(context, Some(Block::Trait | Block::TraitImpl)) {
        let err = syn::Error::new_spanned(
            name,
            "`#[grad]` does not differentiate a function of a `trait` or of a trait's `impl`: what it adds (`loss_grad`, ..) are not the trait's; differentiate it in an inherent `impl` with `#[grad]` on the impl (`#[grad] impl Model { #[grad] fn loss(&self, ..) .. }`) and call that from the trait's method",
        )
        .to_compile_error();
        return quote!(#err #item_fn);
    }
    let err = syn::Error::new_spanned(
        name,
        format!(
            "`#[grad]` on a function inside an `impl` needs `#[grad]` on the `impl` as well: `#[grad] impl Model {{ #[grad] fn {name}(..) .. }}` (what it generates beside `{name}`, the gradient struct and the rule companion, cannot sit inside an `impl`)"
        ),
    )
    .to_compile_error();
    // An array whose length is the error: rustc reports it once (the copies share a
    // span and a message) and treats the type as an error, so `g.self_` at a call site
    // adds nothing. (`compile_error!` as a type would be `()`.)
    let err = quote!([(); #err]);
    let ret: Type = match &item_fn.sig.output {
        ReturnType::Type(_, t) => (**t).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    let span = name.span();
    let generics = &item_fn.sig.generics;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let params: Vec<&FnArg> = item_fn.sig.inputs.iter().collect();
    let vis = &item_fn.vis;
    let stub = quote!(::backprop::__private::rejected());
    let attrs = quote! {
        #[allow(dead_code, unused_variables, clippy::type_complexity, clippy::too_many_arguments)]
    };
    let f_forward = format_ident!("{}_forward", name, span = span);
    let f_backward = format_ident!("{}_backward", name, span = span);
    let first = if crate::ir::is_owned_array_type(&ret) {
        let f_vjp = format_ident!("{}_vjp", name, span = span);
        quote! {
            #attrs
            #vis fn #f_vjp #impl_generics (#(#params,)* d_out: #ret) -> (#ret, #err) #where_clause { #stub }
        }
    } else {
        let f_grad = format_ident!("{}_grad", name, span = span);
        quote! {
            #attrs
            #vis fn #f_grad #impl_generics (#(#params),*) -> (#ret, #err) #where_clause { #stub }
        }
    };
    quote! {
        #item_fn
        #first
        #attrs
        #vis fn #f_forward #impl_generics (#(#params),*) -> (#ret, #err) #where_clause { #stub }
        #attrs
        #vis fn #f_backward #impl_generics (tape: #err, d_out: #ret) -> #err #where_clause { #stub }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_of(src: &str) -> String {
        let item_impl: ItemImpl = syn::parse_str(src).expect("an impl");
        let name = match &*item_impl.self_ty {
            Type::Path(p) => p.path.segments.last().unwrap().ident.clone(),
            _ => unreachable!(),
        };
        let siblings: Vec<(syn::Ident, bool)> = item_impl
            .items
            .iter()
            .filter_map(|i| match i {
                ImplItem::Fn(f) => Some((f.sig.ident.clone(), f.sig.receiver().is_some())),
                _ => None,
            })
            .collect();
        let ImplItem::Fn(m) = &item_impl.items[0] else {
            unreachable!()
        };
        let (f, err) = free_fn(&item_impl, &name, m, &siblings);
        assert!(err.is_none());
        f.sig.to_token_stream().to_string() + " " + &f.block.to_token_stream().to_string()
    }

    #[test]
    fn a_method_becomes_a_free_function_of_self_() {
        let s = free_of(
            "impl<T: Float> Model<T> {
                fn loss(&self, x: T) -> T { let n = Self::norm(x); self.layer(x) * self.w + n }
                fn layer(&self, x: T) -> T { x }
                fn norm(x: T) -> T { x }
            }",
        );
        assert_eq!(
            s,
            "fn __Model_loss < T : Float > (self_ : & Model < T > , x : T) -> T \
             { let n = __Model_norm (x) ; __Model_layer (self_ , x) * self_ . w + n }"
        );
    }

    #[test]
    fn self_in_types_paths_and_macros() {
        let s = free_of(
            "impl<'a> Wrap<'a> {
                fn f<U>(&'a self, x: f64) -> f64 where U: Copy {
                    let z: Self = Self::new(); assert!(self.w > 0.0); let m = self::helper(x); x
                }
            }",
        );
        assert_eq!(
            s,
            "fn __Wrap_f < 'a , U > (self_ : & 'a Wrap < 'a > , x : f64) -> f64 where U : Copy \
             { let z : Wrap < 'a > = Wrap :: < 'a > :: new () ; assert ! (self_ . w > 0.0) ; \
             let m = self :: helper (x) ; x }"
        );
    }
}
