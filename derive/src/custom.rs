//! `#[custom_vjp(pullback)]`: a function whose pullback the user writes by hand (a
//! stable formula, a call into foreign code, a faster gradient). It gets the same rule
//! companion as a `#[grad]` function, so `#[grad]` code calls it the same way.
//!
//! Before:
//! ```text
//! #[custom_vjp(log1pexp_vjp)]
//! fn log1pexp(x: f64) -> f64 { .. }
//! fn log1pexp_vjp(x: f64, y: f64, d: f64) -> (f64,) { (d * sigmoid(x),) }
//! ```
//! After (besides the function, unchanged):
//! ```text
//! struct log1pexp {}
//! impl log1pexp {
//!     fn forward(x: f64) -> (f64, impl Pullback<f64, Grad = (f64,)>) {
//!         let y = log1pexp(x);
//!         (y, Tape::new(move |d: f64| log1pexp_vjp(x, y, d)))
//!     }
//! }
//! ```

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use std::collections::HashSet;
use syn::{FnArg, ItemFn, Pat, ReturnType};

pub fn custom_vjp(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[custom_vjp(pullback)]` goes on a function of floats",
            )
            .to_compile_error();
            return quote!(#err #item);
        }
    };
    let pullback: syn::Path = match syn::parse2(attr.clone()) {
        Ok(p) => p,
        Err(_) => {
            let err = syn::Error::new_spanned(
                &item_fn.sig.ident,
                "`#[custom_vjp(pullback)]` names the function that computes the pullback: it takes the arguments, the value and the output cotangent, and returns one cotangent per argument as a tuple",
            )
            .to_compile_error();
            return quote!(#err #item_fn);
        }
    };
    let mut errors = Vec::new();
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut cotangents = Vec::new();
    let floats = crate::ir::lower::float_type_params(&item_fn.sig.generics);
    for input in &item_fn.sig.inputs {
        match input {
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    names.push(pi.ident.clone());
                    types.push((*pt.ty).clone());
                    cotangents.push(cotangent_type(&pt.ty, &floats));
                }
                other => errors.push(syn::Error::new_spanned(
                    other,
                    "`#[custom_vjp]` needs each argument to be a plain name",
                )),
            },
            FnArg::Receiver(r) => errors.push(syn::Error::new_spanned(
                r,
                "`#[custom_vjp]` cannot declare a rule for a method taking `self`",
            )),
        }
    }
    let ret = match &item_fn.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => {
            errors.push(syn::Error::new_spanned(
                &item_fn.sig.ident,
                "`#[custom_vjp]` needs a function that returns a float",
            ));
            syn::parse_quote!(())
        }
    };
    if !errors.is_empty() {
        let errors = errors.into_iter().map(|e| e.to_compile_error());
        return quote!(#(#errors)* #item_fn);
    }
    let name = &item_fn.sig.ident;
    let vis = &item_fn.vis;
    let (impl_generics, _, where_clause) = item_fn.sig.generics.split_for_impl();
    let inputs: Vec<TokenStream> = names
        .iter()
        .zip(&types)
        .map(|(n, t)| quote!(#n: #t))
        .collect();
    // The companions' own locals, named apart from every identifier of the function.
    let mut own = crate::names::Names::new(item_fn.to_token_stream());
    let span = proc_macro2::Span::call_site();
    let (value, d_out, strong, kept) = (
        own.fresh("__value", span),
        own.fresh("__d_out", span),
        own.fresh("__strong", span),
        own.fresh("__kept", span),
    );
    let (tangents, tape, tangent) = (
        own.fresh("__tangents", span),
        own.fresh("__tape", span),
        own.fresh("__tangent", span),
    );
    let mut slots = Vec::new();
    let mut cot_names = Vec::new();
    let mut slot_names = Vec::new();
    let mut terms = Vec::new();
    for ty in &types {
        let (slot, dot) = tangent_slot(ty, &floats);
        let (c, t) = (own.fresh("__cot", span), own.fresh("__slot", span));
        slots.push(slot);
        if let Some(dot) = dot {
            terms.push(quote! {
                if let ::core::option::Option::Some(#t) = #t {
                    #tangent = #tangent + (#dot)(&#c, #t);
                }
            });
        }
        cot_names.push(c);
        slot_names.push(t);
    }
    // A function returning an array has no directional derivative of one number.
    let returns_float = matches!(&ret, syn::Type::Path(p) if p.path.get_ident().is_some_and(|i| i == "f32" || i == "f64" || floats.contains(&i.to_string())));
    let jvp = if returns_float {
        quote! {
            /// Forward mode: the value and the pullback's cotangents paired with the
            /// tangents given (`None`: a constant there), `Σ ⟨∂y/∂xₖ, tₖ⟩`.
            #[inline]
            #[allow(unused_variables, non_snake_case, clippy::all)]
            #vis fn jvp #impl_generics (#(#inputs,)* #tangents: (#(#slots,)*)) -> (#ret, #ret) #where_clause {
                let (#value, #tape) = #name::forward(#(#names),*);
                let (#(#cot_names,)*) = ::backprop::__private::Pullback::backward(#tape, ::backprop::__private::one());
                let (#(#slot_names,)*) = #tangents;
                let mut #tangent: #ret = ::backprop::__private::zero();
                #(#terms)*
                (#value, #tangent)
            }
        }
    } else {
        quote!()
    };
    // A hand-written rule declares no second derivative: another function's `f_hvp`
    // that reaches it panics, saying so (a float's rule or an array's, a layer's).
    let tangent_stub = {
        let mut slot_inputs = Vec::new();
        for _ in 0..types.len() {
            let slot = own.fresh("__slot", span);
            slot_inputs.push(quote!(#slot: impl ::core::marker::Sized));
        }
        let message = format!(
            "`f_hvp`: `{name}` is a `#[custom_vjp]` rule, which declares no second derivative; write it with `#[grad]` to have one"
        );
        quote! {
            /// No second derivative: panics (see the message).
            #[allow(unused_variables, non_snake_case, clippy::all)]
            #vis fn tangent_forward #impl_generics (#(#inputs,)* #(#slot_inputs),*) -> (#ret, ::backprop::__private::Tape<fn(#ret) -> (#(#cotangents,)* #(#cotangents,)*)>) #where_clause {
                ::core::panic!(#message)
            }

            /// No second derivative: panics (see the message).
            #[allow(unused_variables, non_snake_case, clippy::all)]
            #vis fn tangent_rebuild #impl_generics (#(#inputs,)* #(#slot_inputs,)* #value: #ret) -> (#ret, ::backprop::__private::Tape<fn(#ret) -> (#(#cotangents,)* #(#cotangents,)*)>) #where_clause {
                ::core::panic!(#message)
            }
        }
    };
    let cfgs = item_fn.attrs.iter().filter(|a| a.path().is_ident("cfg"));
    let cfgs2 = item_fn.attrs.iter().filter(|a| a.path().is_ident("cfg"));
    let doc = format!(
        "Forward pass of `{name}` with its hand-written pullback `{}`.",
        pullback.to_token_stream().to_string().replace(' ', "")
    );
    quote! {
        #item_fn

        /// The rule companion of a `#[custom_vjp]` function: how differentiated code calls it.
        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis struct #name {}

        #(#cfgs2)*
        #[allow(dead_code)]
        impl #name {
            #[doc = #doc]
            #[inline]
            #vis fn forward #impl_generics (#(#inputs),*) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = (#(#cotangents,)*)>) #where_clause {
                let #value = #name(#(#names),*);
                #name::rebuild(#(#names,)* #value)
            }

            #jvp

            #tangent_stub

            /// The tape of a call made before, from its arguments (copies kept by the
            /// caller) and the value it returned: the pullback needs nothing else, so
            /// nothing is computed again.
            #[inline]
            #vis fn rebuild #impl_generics (#(#inputs,)* #value: #ret) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = (#(#cotangents,)*)>) #where_clause {
                // In a plain pass (`f_grad`'s first try), a NaN cotangent is noted:
                // this pullback may not carry it through (see `note_plain_nan`).
                // The pullback reads the value too: an array result is copied for it
                // (a float is a copy anyway).
                let #kept = ::core::clone::Clone::clone(&#value);
                (#value, ::backprop::__private::DualTape::new(move |#d_out: #ret, #strong: bool| -> (#(#cotangents,)*) {
                    if !#strong {
                        ::backprop::__private::note_plain_nan(&#d_out);
                    }
                    #pullback(#(#names,)* #kept, #d_out)
                }))
            }
        }
    }
}

/// The cotangent type of an argument: a float's own type; `Vec<T>` for a buffer of
/// floats (`&[T]`, `&Vec<T>`, `[T; N]`); an ndarray array's owned array; `Inactive` for
/// anything else (sizes, labels), which the pullback returns as `backprop::Inactive`.
fn cotangent_type(ty: &syn::Type, floats: &HashSet<String>) -> TokenStream {
    let is_float = |t: &syn::Type| matches!(t, syn::Type::Path(p) if p.path.get_ident().is_some_and(|i| i == "f32" || i == "f64" || floats.contains(&i.to_string())));
    if is_float(ty) {
        return quote!(#ty);
    }
    let inner = match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => &*r.elem,
        other => other,
    };
    let elem = crate::ir::lower::collection_elem(inner);
    if let Some(e) = elem.filter(|e| is_float(e)) {
        return quote!(::std::vec::Vec<#e>);
    }
    let is_array = matches!(inner, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| {
        let n = s.ident.to_string();
        n.starts_with("Array") || n == "CowArray" || n.starts_with("ArcArray")
    }));
    if is_array {
        let mut owned = inner.clone();
        crate::emit::strip_lifetimes(&mut owned);
        return quote!(<#owned as ::backprop::__private::tensor::Value>::Cot);
    }
    quote!(::backprop::__private::Inactive)
}

/// An argument's tangent slot in the companion's `jvp` (as `f::jvp` of a `#[grad]`
/// function takes it: a float by value, a buffer as a slice, an array as it is passed)
/// and the function pairing its cotangent with that tangent (`None`: not a float).
fn tangent_slot(ty: &syn::Type, floats: &HashSet<String>) -> (TokenStream, Option<TokenStream>) {
    let is_float = |t: &syn::Type| matches!(t, syn::Type::Path(p) if p.path.get_ident().is_some_and(|i| i == "f32" || i == "f64" || floats.contains(&i.to_string())));
    if is_float(ty) {
        return (
            quote!(::core::option::Option<#ty>),
            Some(quote!(|c: &#ty, t: #ty| ::backprop::__private::jvp::dot_scalar(*c, t))),
        );
    }
    let (inner, by_ref) = match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => (&*r.elem, true),
        other => (other, false),
    };
    if let Some(e) = crate::ir::lower::collection_elem(inner).filter(|e| is_float(e)) {
        return (
            quote!(::core::option::Option<&[#e]>),
            Some(
                quote!(|c: &::std::vec::Vec<#e>, t: &[#e]| ::backprop::__private::jvp::dot_buffer(&c[..], t)),
            ),
        );
    }
    if matches!(cotangent_type(ty, floats).to_string().as_str(), s if s.contains("Inactive")) {
        return (quote!(::core::option::Option<#ty>), None);
    }
    let deref = if by_ref { quote!(&*) } else { quote!(&) };
    (
        quote!(::core::option::Option<#ty>),
        Some(quote!(|c, t: #ty| ::backprop::__private::jvp::dot_array(c, #deref t))),
    )
}
