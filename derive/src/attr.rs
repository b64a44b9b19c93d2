//! `#[grad]` / `#[grad(a, b)]`: which arguments are active.
//!
//! With no list, every float argument (`f32`, `f64`, or a generic type parameter) is
//! active. A list names the active ones; every other argument is a constant (data,
//! labels, sizes). Integer and bool arguments are never active.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Ident, Token};

/// The parsed attribute: `None` = all float arguments.
pub struct GradArgs {
    pub active: Option<Vec<Ident>>,
}

pub fn parse(attr: TokenStream) -> syn::Result<GradArgs> {
    if attr.is_empty() {
        return Ok(GradArgs { active: None });
    }
    let parser = Punctuated::<Ident, Token![,]>::parse_terminated;
    match parser.parse2(attr.clone()) {
        Ok(list) => Ok(GradArgs {
            active: Some(list.into_iter().collect()),
        }),
        Err(err) => Err(syn::Error::new(
            err.span(),
            "expected `#[grad]` (differentiate every float argument) or `#[grad(a, b)]` naming the arguments to differentiate",
        )),
    }
}
