//! `#[derive(Differentiable)]`: a struct of parameters as one differentiable value.
//!
//! Emits `backprop::Differentiable` (`zero_like`: every field's own `zero_like`),
//! `Accumulate` (field by field), `gradcheck::GradValue` (the fields' elements in
//! declaration order), `backprop::params::Params<F>` (visit the fields in declaration
//! order under their names, `layer1.w`) and `params::ListItem<F>` (a `Vec` or array of
//! the struct is a list of sets, `layers.0.w`), so the struct `#[grad]` differentiates
//! is the struct the optimizers step. On a generic struct each impl is bounded by the
//! fields' types (`Array2<T>: Differentiable`), so it holds for the `T`s the fields
//! allow (docs/DESIGN.md, "Structs of parameters").

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
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
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
    // Fields with no gradient, by the spelling of their type: one error on each. The
    // impls are still emitted without them (such a field's place in a new value is
    // never reached), so the struct's uses add no trait errors of their own.
    let mut errors = TokenStream::new();
    let mut skipped: Vec<syn::Member> = Vec::new();
    let members: Vec<(syn::Member, String, &syn::Type)> = members
        .into_iter()
        .filter(|(m, n, ty)| match refused_field(n, ty) {
            Some(e) => {
                errors.extend(e.to_compile_error());
                skipped.push(m.clone());
                false
            }
            None => true,
        })
        .collect();
    let never: Vec<TokenStream> = skipped
        .iter()
        .map(|m| quote!(#m: ::core::unreachable!()))
        .collect();
    let zero_fields = members
        .iter()
        .map(|(m, _, _)| quote!(#m: ::backprop::Differentiable::zero_like(&self.#m)))
        .chain(never.iter().cloned());
    let zero = match &data.fields {
        Fields::Unit => quote!(#name),
        _ => quote!(#name { #(#zero_fields),* }),
    };
    let lazy_fields = members
        .iter()
        .map(|(m, _, _)| quote!(#m: ::backprop::Differentiable::lazy_zero(&self.#m)))
        .chain(never.iter().cloned());
    let lazy = match &data.fields {
        Fields::Unit => quote!(#name),
        _ => quote!(#name { #(#lazy_fields),* }),
    };
    let fills: Vec<TokenStream> = members
        .iter()
        .map(|(m, _, _)| quote!(::backprop::Differentiable::fill_missing(&mut self.#m, &like.#m);))
        .collect();
    let mismatches: Vec<TokenStream> = members
        .iter()
        .map(|(m, n, _)| {
            quote! {
                if let ::core::option::Option::Some(e) = ::backprop::Differentiable::shape_mismatch(
                    &self.#m,
                    &like.#m,
                    &::backprop::differentiable::child_path(path, #n),
                ) {
                    return ::core::option::Option::Some(e);
                }
            }
        })
        .collect();
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
    let flat_lens = members
        .iter()
        .map(|(m, _, _)| quote!(+ ::backprop::gradcheck::GradValue::flat_len(&self.#m)));
    let rebuilt = members
        .iter()
        .map(|(m, _, _)| {
            quote!(#m: {
                let n = ::backprop::gradcheck::GradValue::flat_len(&self.#m);
                let v = ::backprop::gradcheck::GradValue::with_flat(&self.#m, &flat[k..k + n]);
                k += n;
                v
            })
        })
        .chain(never.iter().cloned());
    let rebuilt = match &data.fields {
        Fields::Unit => quote!(#name),
        _ => quote!(#name { #(#rebuilt),* }),
    };
    // A generic struct (`Layer<T>` with `w: Array2<T>`) holds what its fields' types do
    // only for some `T`: each impl requires the trait of every field's type, so it
    // exists exactly where the fields have it (`Layer<f32>`, `Layer<f64>`). A struct
    // without type parameters keeps its own where clause: a field without the trait is
    // then an error at the field's use, not a false bound on the impl.
    let field_bounds = |trait_path: TokenStream| -> Option<syn::WhereClause> {
        if input.generics.type_params().next().is_none() {
            return input.generics.where_clause.clone();
        }
        let mut wc = input
            .generics
            .where_clause
            .clone()
            .unwrap_or_else(|| syn::parse_quote!(where));
        for (_, _, ty) in &members {
            wc.predicates.push(syn::parse_quote!(#ty: #trait_path));
        }
        Some(wc)
    };
    let grad_value_where = field_bounds(quote!(::backprop::gradcheck::GradValue));
    let accumulate_where = field_bounds(quote!(::backprop::__private::Accumulate));
    let differentiable_where = field_bounds(quote!(::backprop::Differentiable));
    let mut list_where = input
        .generics
        .where_clause
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(where));
    list_where
        .predicates
        .push(syn::parse_quote!(#name #ty_generics: ::backprop::params::Params<#float>));
    quote! {
        #errors

        impl #impl_generics ::backprop::gradcheck::GradValue for #name #ty_generics #grad_value_where {
            fn to_flat(&self) -> ::std::vec::Vec<f64> {
                let mut out = ::std::vec::Vec::new();
                #(#flat_parts)*
                out
            }
            fn flat_len(&self) -> usize {
                0 #(#flat_lens)*
            }
            #[allow(unused_assignments, unused_mut, unused_variables, unreachable_code)]
            fn with_flat(&self, flat: &[f64]) -> Self {
                let mut k = 0usize;
                #rebuilt
            }
        }

        impl #impl_generics ::backprop::__private::Accumulate for #name #ty_generics #accumulate_where {
            fn accumulate(&mut self, rhs: Self) {
                #(#accumulate)*
            }
        }

        impl #impl_generics ::backprop::Differentiable for #name #ty_generics #differentiable_where {
            #[allow(unreachable_code)]
            fn zero_like(&self) -> Self {
                #zero
            }
            #[allow(unreachable_code)]
            fn lazy_zero(&self) -> Self {
                #lazy
            }
            fn fill_missing(&mut self, like: &Self) {
                #(#fills)*
            }
            fn shape_mismatch(&self, like: &Self, path: &str) -> ::core::option::Option<::std::string::String> {
                #(#mismatches)*
                ::core::option::Option::None
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

        // A list of these structs (`Vec<Layer>`, `[Layer; 3]`) is a list of sets:
        // `layers.0.w`, `layers.1.w`.
        impl #params_impl_generics ::backprop::params::ListItem<#float> for #name #ty_generics #list_where {
            fn visit_list<'a>(list: &'a [Self], prefix: &str, f: &mut dyn FnMut(::backprop::params::BufferRef<'a, #float>)) {
                ::backprop::params::visit_each(list, prefix, f)
            }
            fn visit_list_mut<'a>(list: &'a mut [Self], prefix: &str, f: &mut dyn FnMut(::backprop::params::BufferMut<'a, #float>)) {
                ::backprop::params::visit_each_mut(list, prefix, f)
            }
        }
    }
}

/// A field whose type has no gradient: integers, `bool`, `char`, strings, `Option`s and
/// maps (by the last segment of the type's path), with what to write instead.
fn refused_field(name: &str, ty: &syn::Type) -> Option<syn::Error> {
    // A tuple, or a list or `Box` of them (`Vec<(f64, f64)>`, `[(f64, f64); 2]`).
    let mut inner = ty;
    loop {
        match inner {
            syn::Type::Array(a) => inner = &a.elem,
            syn::Type::Path(tp)
                if tp
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "Vec" || s.ident == "Box") =>
            {
                let syn::PathArguments::AngleBracketed(args) =
                    &tp.path.segments.last().expect("checked").arguments
                else {
                    break;
                };
                match args.args.first() {
                    Some(syn::GenericArgument::Type(t)) => inner = t,
                    _ => break,
                }
            }
            _ => break,
        }
    }
    if let syn::Type::Tuple(t) = inner
        && !t.elems.is_empty()
    {
        return Some(syn::Error::new_spanned(
            ty,
            format!(
                "`#[derive(Differentiable)]`: field `{name}` is a tuple or holds tuples, which have no names for their parameters; make it a struct of its own with `#[derive(Differentiable)]` (a tuple struct `struct Norm(Array1<f64>, Array1<f64>);` or named fields), or give each part a field"
            ),
        ));
    }
    let syn::Type::Path(tp) = ty else {
        return None;
    };
    let last = tp.path.segments.last()?.ident.to_string();
    const DATA: &[&str] = &[
        "usize", "isize", "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128",
        "bool", "char", "String", "str",
    ];
    let why = if DATA.contains(&last.as_str()) {
        format!("has type `{last}`, which has no gradient")
    } else if last == "Option" {
        "is an `Option`, which has no fixed shape to take a gradient of (keep the parameter always present, e.g. a zero bias, or hold it in a struct of its own)".to_string()
    } else if matches!(
        last.as_str(),
        "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet"
    ) {
        format!("is a `{last}`, which has no fixed order of parameters")
    } else {
        return None;
    };
    Some(syn::Error::new_spanned(
        ty,
        format!(
            "`#[derive(Differentiable)]`: field `{name}` {why}. A struct of parameters holds floats, buffers of floats (`Vec<f64>`, `[f32; N]`), ndarray arrays, and `Box`es and lists of other such structs; keep hyperparameters and flags (`n_head`, `causal`) in a struct of their own passed as data: `#[grad(p)] fn loss(p: &Model, cfg: &Config, ..)`"
        ),
    ))
}
