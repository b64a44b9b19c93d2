//! The `#[grad]` attribute's entry point: a free function goes through the pipeline
//! (`expand`), an `impl` block through `methods`, and a method of an `impl` without the
//! attribute gets one error (`methods::refuse_without_impl_attr`).

use proc_macro2::TokenStream;
use quote::quote;

pub fn grad(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item_fn: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            // `#[grad] impl Model { #[grad] fn loss(&self, ..) .. }`: see `methods.rs`.
            if let Ok(item_impl) = syn::parse2::<syn::ItemImpl>(item.clone()) {
                return crate::methods::grad_impl(attr, item_impl);
            }
            let err = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[grad]` goes on a free function of floats, such as `fn loss(w: f64, x: f64) -> f64 { ... }`",
            )
            .to_compile_error();
            return quote!(#err #item);
        }
    };
    // A method or an associated function without `#[grad]` on its `impl`: the
    // companions (structs, free functions) cannot go in the impl block. One error, and
    // stub methods so that call sites add none (see `methods.rs`).
    let receiver = matches!(item_fn.sig.inputs.first(), Some(syn::FnArg::Receiver(_)));
    let context = crate::context::enclosing_block(item_fn.sig.fn_token.span);
    if receiver || context.is_some_and(|c| c != crate::context::Block::Other) {
        return crate::methods::refuse_without_impl_attr(&item_fn, context);
    }
    crate::expand::grad_fn(attr, &item_fn).0
}
