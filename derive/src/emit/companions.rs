//! How a call names another function's rule companion (`g::forward`, `g::rebuild`).

use proc_macro2::TokenStream;
use quote::quote;

/// `backprop::sigmoid::<f64>` → `backprop::sigmoid::forward::<f64>`: the rule
/// companion lives in the type namespace under the function's own name, so it follows
/// the function through `use` and paths.
pub fn companion_path(path: &syn::ExprPath) -> TokenStream {
    companion_fn(path, "forward")
}

/// `helper::rebuild` (with its turbofish): a checkpointed call's tape, made again in
/// the reverse pass from the copies of its arguments and the value it returned.
pub fn rebuild_path(path: &syn::ExprPath) -> TokenStream {
    companion_fn(path, "rebuild")
}

fn companion_fn(path: &syn::ExprPath, name: &str) -> TokenStream {
    let name = syn::Ident::new(name, proc_macro2::Span::call_site());
    let mut path = path.clone();
    let mut turbofish = quote!();
    if let Some(last) = path.path.segments.last_mut()
        && let syn::PathArguments::AngleBracketed(args) =
            std::mem::replace(&mut last.arguments, syn::PathArguments::None)
    {
        let args = args.args;
        turbofish = quote!(::<#args>);
    }
    quote!(#path::#name #turbofish)
}
