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
            // A function or an `impl` with a syntax error inside: rustc reports it on the
            // item given back as written; the `#[grad]` on its methods is taken off, so
            // that they add no error about a missing `#[grad]` on the `impl`.
            if is_fn_or_impl(&item) {
                return without_grad_attrs(item);
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

/// Whether the item's tokens are a function or an `impl` (after its attributes and
/// qualifiers), whatever their body holds.
fn is_fn_or_impl(item: &TokenStream) -> bool {
    use proc_macro2::TokenTree;
    for tt in item.clone() {
        match tt {
            TokenTree::Ident(i) if i == "fn" || i == "impl" => return true,
            TokenTree::Ident(i)
                if matches!(
                    i.to_string().as_str(),
                    "pub" | "unsafe" | "async" | "const" | "extern" | "default" | "crate"
                ) => {}
            TokenTree::Punct(p) if p.as_char() == '#' => {}
            TokenTree::Group(_) | TokenTree::Literal(_) => {}
            _ => return false,
        }
    }
    false
}

/// `tokens` without `#[grad]` / `#[grad(..)]` / `#[backprop::grad]` attributes, at any depth.
fn without_grad_attrs(tokens: TokenStream) -> TokenStream {
    use proc_macro2::{Group, TokenTree};
    let toks: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(toks.len());
    let mut k = 0;
    while k < toks.len() {
        if let (TokenTree::Punct(p), Some(TokenTree::Group(g))) = (&toks[k], toks.get(k + 1))
            && p.as_char() == '#'
            && g.delimiter() == proc_macro2::Delimiter::Bracket
        {
            let idents: Vec<String> = g
                .stream()
                .into_iter()
                .take_while(|t| !matches!(t, TokenTree::Group(_)))
                .filter_map(|t| match t {
                    TokenTree::Ident(i) => Some(i.to_string()),
                    _ => None,
                })
                .collect();
            if idents.last().is_some_and(|i| i == "grad") {
                k += 2;
                continue;
            }
        }
        out.push(match &toks[k] {
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), without_grad_attrs(g.stream()));
                ng.set_span(g.span());
                TokenTree::Group(ng)
            }
            other => other.clone(),
        });
        k += 1;
    }
    out.into_iter().collect()
}
