//! `#[derive(Differentiable)]`: a struct of parameters as one differentiable value.
//!
//! Emits `backprop::Differentiable` (`zero_like`: every field's own `zero_like`) and
//! `backprop::params::Params<F>` (visit the fields in declaration order under their
//! names, `layer1.w`), so the struct `#[grad]` differentiates is the struct the
//! optimizers step.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields};

pub fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let Data::Struct(data) = &input.data else {
        return syn::Error::new_spanned(
            &input.ident,
            "`#[derive(Differentiable)]` is for structs of parameters (floats, buffers of floats, ndarray arrays, other `Differentiable` structs); an enum has no single shape to take a gradient of",
        )
        .to_compile_error();
    };
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let members: Vec<(syn::Member, String, &syn::Type)> = data
        .fields
        .iter()
        .enumerate()
        .map(|(k, f)| match &f.ident {
            Some(i) => (
                syn::Member::Named(i.clone()),
                i.to_string().trim_start_matches("r#").to_string(),
                &f.ty,
            ),
            None => (syn::Member::Unnamed(k.into()), k.to_string(), &f.ty),
        })
        .collect();
    let zero_fields = members
        .iter()
        .map(|(m, _, _)| quote!(#m: ::backprop::Differentiable::zero_like(&self.#m)));
    let zero = match &data.fields {
        Fields::Unit => quote!(#name),
        _ => quote!(#name { #(#zero_fields),* }),
    };
    let float = format_ident!("__BackpropFloat");
    let mut params_generics = input.generics.clone();
    params_generics.params.push(syn::parse_quote!(#float));
    let (params_impl_generics, _, _) = params_generics.split_for_impl();
    let mut params_where = input
        .generics
        .where_clause
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(where));
    for (_, _, ty) in &members {
        params_where
            .predicates
            .push(syn::parse_quote!(#ty: ::backprop::params::Params<#float>));
    }
    let visits = members
        .iter()
        .map(|(m, n, _)| quote!(::backprop::params::Named(#n, &self.#m).visit(prefix, f);));
    let visits_mut = members
        .iter()
        .map(|(m, n, _)| quote!(::backprop::params::Named(#n, &mut self.#m).visit_mut(prefix, f);));
    let accumulate = members.iter().map(
        |(m, _, _)| quote!(::backprop::__private::Accumulate::accumulate(&mut self.#m, rhs.#m);),
    );
    // `gradcheck!` perturbs a struct argument through its fields, in declaration order.
    let flat_parts = members
        .iter()
        .map(|(m, _, _)| quote!(out.extend(::backprop::gradcheck::GradValue::to_flat(&self.#m));));
    let rebuilt = members.iter().map(|(m, _, _)| {
        quote!(#m: {
            let n = ::backprop::gradcheck::GradValue::to_flat(&self.#m).len();
            let v = ::backprop::gradcheck::GradValue::with_flat(&self.#m, &flat[k..k + n]);
            k += n;
            v
        })
    });
    let rebuilt = match &data.fields {
        Fields::Unit => quote!(#name),
        _ => quote!(#name { #(#rebuilt),* }),
    };
    // A generic struct (`Model<T> { w: Array1<T> }`): each impl holds when its fields'
    // types implement the trait, as the derive of std's traits would bound them. A
    // struct without type parameters keeps the plain impls.
    let bounded = |tr: TokenStream| -> TokenStream {
        if input.generics.type_params().next().is_none() {
            return quote!(#where_clause);
        }
        let mut w = input
            .generics
            .where_clause
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(where));
        for (_, _, ty) in &members {
            w.predicates.push(syn::parse_quote!(#ty: #tr));
        }
        quote!(#w)
    };
    let where_grad_value = bounded(quote!(::backprop::gradcheck::GradValue));
    let where_accumulate = bounded(quote!(::backprop::__private::Accumulate));
    let where_differentiable = bounded(quote!(::backprop::Differentiable));
    quote! {
        impl #impl_generics ::backprop::gradcheck::GradValue for #name #ty_generics #where_grad_value {
            fn to_flat(&self) -> ::std::vec::Vec<f64> {
                let mut out = ::std::vec::Vec::new();
                #(#flat_parts)*
                out
            }
            #[allow(unused_assignments, unused_mut, unused_variables)]
            fn with_flat(&self, flat: &[f64]) -> Self {
                let mut k = 0usize;
                #rebuilt
            }
        }

        impl #impl_generics ::backprop::__private::Accumulate for #name #ty_generics #where_accumulate {
            fn accumulate(&mut self, rhs: Self) {
                #(#accumulate)*
            }
        }

        impl #impl_generics ::backprop::Differentiable for #name #ty_generics #where_differentiable {
            fn zero_like(&self) -> Self {
                #zero
            }
        }

        impl #params_impl_generics ::backprop::params::Params<#float> for #name #ty_generics #params_where {
            fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(::backprop::params::BufferRef<'a, #float>)) {
                #(#visits)*
            }
            fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(::backprop::params::BufferMut<'a, #float>)) {
                #(#visits_mut)*
            }
        }
    }
}
