//! Forward mode's companions: `f_jvp(args.., t_args..) -> (value, tangent)` and the rule
//! companion's `f::jvp(args.., tangents)`, through which other functions' forward mode
//! calls `f`.
//!
//! The companion takes one `Option` per argument (`None`: the caller holds a constant
//! there, whose tangent is zero), a buffer's tangent as a slice and a struct's by
//! reference: the caller then needs to know only what kind of value it passes. Its body
//! is the tangent pass `emit::tangent` builds from the IR where every operation has a
//! tangent rule, and otherwise the gradient paired with the tangents, `⟨∇f, t⟩`: exact
//! for any function that returns a float, at the cost of a reverse pass.

use super::shape::{Shape, ShapeParam};
use crate::names::Names;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// How an argument's tangent travels between companions.
pub enum TangentKind {
    /// A float (or anything but the three below): `Option<P>`, by value.
    Value,
    /// A buffer of floats: `Option<&[E]>`.
    Buffer(syn::Type),
    /// A struct of parameters: `Option<&S>` (`S` the argument's type without its `&`).
    Struct(syn::Type),
    /// An ndarray array: `Option<P>`, as the argument.
    Array,
}

impl ShapeParam {
    pub fn tangent_kind(&self) -> TangentKind {
        if let Some(e) = &self.elem {
            return TangentKind::Buffer(e.clone());
        }
        if self.strukt {
            return TangentKind::Struct(self.deref_ty());
        }
        if self.tensor {
            return TangentKind::Array;
        }
        TangentKind::Value
    }

    /// The argument's type without its outer `&`.
    fn deref_ty(&self) -> syn::Type {
        match &self.ty {
            syn::Type::Reference(r) => (*r.elem).clone(),
            other => other.clone(),
        }
    }

    fn is_ref(&self) -> bool {
        matches!(self.ty, syn::Type::Reference(_))
    }

    /// The companion's slot type for this argument's tangent.
    pub fn tangent_slot_ty(&self) -> TokenStream {
        let ty = &self.ty;
        // An `impl Trait` argument (a closure `act: impl Fn(f64) -> f64`) has no tangent,
        // and inside the slot's `Option` it would be a type no caller could name.
        if !self.active && contains_impl_trait(ty) {
            return quote!(::core::option::Option<::backprop::__private::Inactive>);
        }
        match self.tangent_kind() {
            TangentKind::Value | TangentKind::Array => quote!(::core::option::Option<#ty>),
            TangentKind::Buffer(e) => quote!(::core::option::Option<&[#e]>),
            TangentKind::Struct(s) => quote!(::core::option::Option<&#s>),
        }
    }

    /// `Some(..)` of the tangent `t`, given in the argument's own type, as the slot takes
    /// it.
    fn tangent_slot(&self, t: &syn::Ident) -> TokenStream {
        match self.tangent_kind() {
            TangentKind::Value | TangentKind::Array => quote!(::core::option::Option::Some(#t)),
            TangentKind::Buffer(_) => quote!(::core::option::Option::Some(&#t[..])),
            TangentKind::Struct(_) if self.is_ref() => quote!(::core::option::Option::Some(#t)),
            TangentKind::Struct(_) => quote!(::core::option::Option::Some(&#t)),
        }
    }
}

impl Shape<'_> {
    /// The companion's tangent tuple type: one slot per argument.
    pub fn tangents_ty(&self) -> TokenStream {
        let slots = self.params.iter().map(ShapeParam::tangent_slot_ty);
        quote!((#(#slots,)*))
    }

    /// `f::jvp` (in the rule companion's `impl`) and `f_jvp` beside `f`, for a function
    /// that returns a float. `native` is the tangent pass's body, when the IR has one;
    /// it reads the arguments and `tangents` (the slot tuple).
    pub fn jvp_companions(
        &self,
        own: &mut Names,
        native: Option<(syn::Ident, TokenStream)>,
    ) -> (TokenStream, TokenStream) {
        let item = self.item;
        let vis = &item.vis;
        let name = &item.sig.ident;
        let span = name.span();
        let f_jvp = format_ident!("{}_jvp", name, span = span);
        let ret = &self.ret_ty;
        let inputs = self.inputs();
        let generics = self.generics();
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let attrs = self.carried_attrs();
        let tf = self.turbofish();
        let args = self.arg_names();
        let (tangents, body) = match native {
            Some(n) => n,
            None => {
                let tangents = own.fresh("__tangents", proc_macro2::Span::call_site());
                let body = self.jvp_through_gradient(own, &tangents);
                (tangents, body)
            }
        };
        let tangents_ty = self.tangents_ty();
        let companion_inputs = if self.params.is_empty() {
            quote!(#tangents: #tangents_ty)
        } else {
            quote!(#inputs, #tangents: #tangents_ty)
        };
        let method = quote! {
            /// Value and directional derivative, one tangent slot per argument (`None`:
            /// a constant there).
            #[inline]
            #[allow(unused_variables, unused_mut, unused_assignments, unused_parens, unreachable_code, non_snake_case, clippy::all)]
            #vis fn jvp #impl_generics (#companion_inputs) -> (#ret, #ret) #where_clause {
                #body
            }
        };
        // `f_jvp(args.., t_a, t_b)`: one tangent per differentiated argument, of the
        // argument's own type.
        let mut t_inputs = Vec::new();
        let mut slots = Vec::new();
        for p in &self.params {
            if p.active {
                let t = own.fresh(
                    &format!("t_{}", p.name.to_string().trim_start_matches("r#")),
                    p.name.span(),
                );
                let ty = &p.ty;
                t_inputs.push(quote!(#t: #ty));
                slots.push(p.tangent_slot(&t));
            } else {
                slots.push(quote!(::core::option::Option::None));
            }
        }
        let all_inputs = if self.params.is_empty() {
            quote!()
        } else {
            quote!(#inputs, #(#t_inputs),*)
        };
        let doc = format!(
            "Value of `{name}` and its directional derivative along the tangents given for its differentiated arguments (forward mode; generated by `#[grad]`). A tangent has its argument's type; the result equals the gradient paired with the tangents, `Σ ∂{name}/∂x · t_x`."
        );
        let free = quote! {
            #[doc = #doc]
            #(#attrs)*
            #[inline]
            #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
            #vis fn #f_jvp #impl_generics (#all_inputs) -> (#ret, #ret) #where_clause {
                #name::jvp #tf (#(#args,)* (#(#slots,)*))
            }
        };
        (method, free)
    }

    /// `f_jvp` of a function that returns an array through an operation without a
    /// tangent rule: a stub whose first tangent cannot be given, so a call is one error
    /// saying so (rustc would otherwise suggest `f_vjp`, the transposed product).
    pub fn jvp_refusal(&self, own: &mut Names) -> TokenStream {
        if self.item.sig.receiver().is_some() || !self.params.iter().any(|p| p.active) {
            return quote!();
        }
        let item = self.item;
        let vis = &item.vis;
        let name = &item.sig.ident;
        let f_jvp = format_ident!("{}_jvp", name, span = name.span());
        let ret = &self.ret_ty;
        let generics = self.generics();
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let attrs = self.carried_attrs();
        let mut inputs = vec![self.inputs()];
        let mut first = true;
        for p in self.params.iter().filter(|p| p.active) {
            let t = own.fresh(
                &format!("t_{}", p.name.to_string().trim_start_matches("r#")),
                p.name.span(),
            );
            if first {
                inputs.push(quote!(#t: impl ::backprop::__private::NoForwardModeOfArrays));
                first = false;
            } else {
                inputs.push(quote!(#t: impl ::core::marker::Sized));
            }
        }
        let doc = format!(
            "Not available: `{name}` returns an array through an operation without a tangent rule (README's \"Forward mode\" lists those with one), so it has no forward mode yet (a call is a compile error saying so)."
        );
        quote! {
            #[doc = #doc]
            #(#attrs)*
            #[allow(unused_variables, non_snake_case, clippy::too_many_arguments, dead_code)]
            #vis fn #f_jvp #impl_generics (#(#inputs),*) -> (#ret, #ret) #where_clause {
                ::core::unreachable!("`NoForwardModeOfArrays` has no implementation")
            }
        }
    }

    /// The tangent as the gradient paired with the tangents, `Σ ⟨∂f/∂x, t_x⟩`: the body
    /// of `jvp` for a function whose operations do not all have tangent rules yet.
    fn jvp_through_gradient(&self, own: &mut Names, tangents: &syn::Ident) -> TokenStream {
        let name = &self.item.sig.ident;
        let tf = self.turbofish();
        let args = self.arg_names();
        let ret = &self.ret_ty;
        let (value, grad, tangent) = (
            own.fresh("__value", proc_macro2::Span::call_site()),
            own.fresh("__grad", proc_macro2::Span::call_site()),
            own.fresh("__tangent", proc_macro2::Span::call_site()),
        );
        let mut slots = Vec::new();
        let mut terms = Vec::new();
        for p in &self.params {
            let slot = own.fresh("__slot", proc_macro2::Span::call_site());
            slots.push(slot.clone());
            if !p.active {
                continue;
            }
            let field = &p.name;
            let dot = match p.tangent_kind() {
                TangentKind::Value => {
                    quote!(::backprop::__private::jvp::dot_scalar(#grad.#field, #slot))
                }
                TangentKind::Buffer(_) => {
                    quote!(::backprop::__private::jvp::dot_buffer(&#grad.#field[..], #slot))
                }
                TangentKind::Struct(_) => {
                    quote!(::backprop::__private::jvp::dot_params::<#ret, _, _>(&#grad.#field, #slot))
                }
                TangentKind::Array if p.is_ref() => {
                    quote!(::backprop::__private::jvp::dot_array(&#grad.#field, &*#slot))
                }
                TangentKind::Array => {
                    quote!(::backprop::__private::jvp::dot_array(&#grad.#field, &#slot))
                }
            };
            terms.push(quote! {
                if let ::core::option::Option::Some(#slot) = #slot {
                    #tangent = #tangent + #dot;
                }
            });
        }
        quote! {
            let (#(#slots,)*) = #tangents;
            let (#value, #grad) = #name::grad #tf (#(#args),*);
            let mut #tangent: #ret = ::backprop::__private::zero();
            #(#terms)*
            (#value, #tangent)
        }
    }
}

/// Whether `ty` names an `impl Trait` anywhere (`impl Fn(f64) -> f64`, `&impl Sized`).
fn contains_impl_trait(ty: &syn::Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut f = Finder(false);
    syn::visit::Visit::visit_type(&mut f, ty);
    f.0
}

impl Shape<'_> {
    /// The companion's `jvp` body of a function returning an array whose tangent pass
    /// has an operation without a forward-mode rule but that has a tangent program
    /// (`emit::hvp`): the program's value and tangent, its tape dropped. A constant's
    /// slot (`None`) becomes zeros of its argument's shape. `None` where an argument's
    /// tangent cannot be passed so (a buffer that is not a `&[E]`, a struct by value).
    pub fn jvp_through_tangent_program(
        &self,
        own: &mut Names,
    ) -> Option<(syn::Ident, TokenStream)> {
        let name = &self.item.sig.ident;
        let tf = self.turbofish();
        let args = self.arg_names();
        let tangents = own.fresh("__tangents", proc_macro2::Span::call_site());
        let mut slots = Vec::new();
        let mut prologue = Vec::new();
        let mut passed = Vec::new();
        for p in &self.params {
            if !p.active {
                slots.push(quote!(_));
                continue;
            }
            let bare = p.name.to_string().trim_start_matches("r#").to_string();
            let slot = own.fresh(&format!("__slot_{bare}"), proc_macro2::Span::call_site());
            let t = own.fresh(&format!("__t_{bare}"), proc_macro2::Span::call_site());
            let z = own.fresh(&format!("__zeros_{bare}"), proc_macro2::Span::call_site());
            let (x, ty) = (&p.name, &p.ty);
            slots.push(quote!(#slot));
            let zero = match p.tangent_kind() {
                TangentKind::Value => quote!(::backprop::__private::zero()),
                TangentKind::Array => {
                    let zeros = quote!(::backprop::__private::tensor::zeros_like(&#x));
                    match ty {
                        syn::Type::Reference(_) => quote!({ #z = #zeros; &#z }),
                        syn::Type::Path(tp)
                            if tp
                                .path
                                .segments
                                .last()
                                .is_some_and(|s| s.ident.to_string().starts_with("ArrayView")) =>
                        {
                            quote!({ #z = #zeros; #z.view() })
                        }
                        _ => zeros,
                    }
                }
                TangentKind::Buffer(_) => match ty {
                    syn::Type::Reference(r) if matches!(*r.elem, syn::Type::Slice(_)) => quote!({
                        #z = ::std::vec![::backprop::__private::zero(); #x.len()];
                        &#z[..]
                    }),
                    _ => return None,
                },
                TangentKind::Struct(s) => match ty {
                    syn::Type::Reference(_) if !matches!(s, syn::Type::Slice(_)) => quote!({
                        #z = ::backprop::Differentiable::zero_like(#x);
                        &#z
                    }),
                    _ => return None,
                },
            };
            prologue.push(quote! {
                let #z;
                let #t: #ty = match #slot {
                    ::core::option::Option::Some(t) => t,
                    ::core::option::Option::None => #zero,
                };
            });
            passed.push(t);
        }
        let (value, tangent) = (
            own.fresh("__value", proc_macro2::Span::call_site()),
            own.fresh("__tangent", proc_macro2::Span::call_site()),
        );
        let body = quote! {
            let (#(#slots,)*) = #tangents;
            #(#prologue)*
            let (#value, #tangent, _) = #name::tangent_program #tf (#(#args,)* #(#passed),*);
            (#value, #tangent)
        };
        Some((tangents, body))
    }
}
