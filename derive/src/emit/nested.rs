//! Gradients of gradients: the rule companion of `f_grad`, `struct f_grad {}`, beside
//! `f`'s own, so that another `#[grad]` function can call `f_grad(x)` and use the
//! gradient's fields (`let (l, g) = f_grad(x); g.x * g.x`; lowering in
//! `ir::lower::nested`).
//!
//! Its forward is `f_grad` itself, and its tape keeps the arguments. Its pullback at a
//! cotangent `(d_l, d_g)` of `(f(x), ∇f(x))` is `d_l · ∇f(x) + ∇²f(x) · d_g`: one call of
//! `f_hvp` along `d_g` (which also gives `∇f`), so a gradient penalty, a MAML inner step
//! or a double-backprop regulariser costs one `f_grad` forward and one `f_hvp` reverse.
//! An ndarray argument's part is `combine_array` of the arrays. A function without a
//! Hessian-vector product (an op without second order, `#[custom_vjp]` rules reached)
//! gets a companion that panics saying why, and whose `forward` is deprecated
//! with that note, so the caller's build says it too.

use super::Shape;
use super::shape::grad_struct_ident;
use crate::names::Names;
use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};

impl Shape<'_> {
    /// `struct f_grad {}` and its `forward`, `zero_like` and `fill`. With
    /// `hvp`, the real pullback (through `f::hvp`); without, one that panics with that
    /// sentence.
    ///
    /// `rejected`: `f` itself was refused (its error is reported); every body is the
    /// fallback's stub, so the signature's own problem (a tuple result) adds nothing.
    pub fn grad_companion(&self, no_hvp: Option<&str>, rejected: bool) -> TokenStream {
        if self.returns_array() {
            return quote!();
        }
        let item = self.item;
        let vis = &item.vis;
        let name = &item.sig.ident;
        let f_grad = format_ident!("{}_grad", name, span = name.span());
        let ret = &self.ret_ty;
        let grad_ty = self.grad_ty();
        let grad_ident = grad_struct_ident(item);
        let tuple_ty = self.tuple_ty();
        let inputs = self.inputs();
        let args = self.arg_names();
        let tf = self.turbofish();
        // A struct argument's traits, as higher-ranked bounds: checked where a caller
        // uses this companion, not here, so a struct that is not `Differentiable` stays
        // the one error `f`'s own reverse pass reports.
        let mut generics = self.generics();
        for p in self.params.iter().filter(|p| p.active && p.strukt) {
            let ty = p.grad_ty();
            generics.make_where_clause().predicates.push(syn::parse_quote!(
                for<'__nested> #ty: ::backprop::Differentiable + ::backprop::params::Params<#ret>
            ));
        }
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let attrs = self.carried_attrs();
        let mut own = Names::new(item.to_token_stream());
        let mut local = |base: &str| own.fresh(base, proc_macro2::Span::call_site());
        let (out, d, d_value, d_grad, g, hv) = (
            local("__out"),
            local("__d"),
            local("__d_value"),
            local("__d_grad"),
            local("__g"),
            local("__hv"),
        );
        let out_ty = quote!((#ret, #grad_ty));
        let active: Vec<_> = self.params.iter().filter(|p| p.active).collect();
        // Zeros of the gradient's shape (a float, a buffer's length, a struct's
        // `lazy_zero`), and the arrays a struct's zero left unallocated.
        let zeros = active.iter().map(|p| {
            let f = &p.name;
            if p.strukt || p.tensor {
                quote!(#f: ::backprop::Differentiable::lazy_zero(&#out.1.#f))
            } else if p.elem.is_some() {
                quote!(#f: ::std::vec![::backprop::__private::zero(); #out.1.#f.len()])
            } else {
                quote!(#f: ::backprop::__private::zero())
            }
        });
        let fills = active.iter().filter(|p| p.strukt || p.tensor).map(|p| {
            let f = &p.name;
            quote!(::backprop::Differentiable::fill_missing(&mut #d.1.#f, &#out.1.#f);)
        });
        let (zero_body, fill_body) = if rejected {
            let stub = quote!(::backprop::__private::rejected());
            (stub.clone(), stub)
        } else {
            (
                quote!((::backprop::__private::zero(), #grad_ident { #(#zeros),* })),
                quote!(#(#fills)* #d),
            )
        };
        let shapes = quote! {
            /// Zeros shaped like a value `(f, ∇f)` this call returned: the adjoint the
            /// caller's reverse pass adds into.
            #[inline]
            #[allow(unused_variables, non_snake_case)]
            #vis fn zero_like #impl_generics (#out: &#out_ty) -> #out_ty #where_clause {
                #zero_body
            }

            /// The adjoint with zeros where no contribution reached an array.
            #[inline]
            #[allow(unused_variables, unused_mut, non_snake_case)]
            #vis fn fill #impl_generics (mut #d: #out_ty, #out: &#out_ty) -> #out_ty #where_clause {
                #fill_body
            }
        };
        let tape_ty = quote!(impl ::backprop::__private::Pullback<#out_ty, Grad = #tuple_ty>);
        // The arguments serve twice (the gradient now, the tape later): references and
        // numbers are copied, buffers by value cloned; anything else makes the stub.
        let reuse: Option<Vec<TokenStream>> = self
            .params
            .iter()
            .map(|p| {
                let x = &p.name;
                reuse(&p.ty, &item.sig.generics).map(|clone| {
                    if clone {
                        quote!(::core::clone::Clone::clone(&#x))
                    } else {
                        quote!(#x)
                    }
                })
            })
            .collect();
        let why = match (no_hvp, &reuse) {
            (Some(why), _) => Some(format!(
                "`{name}_grad` inside a `#[grad]` function is differentiated through `{name}`'s Hessian-vector product, and `{name}` {why}"
            )),
            (None, None) => Some(format!(
                "`{name}_grad` inside a `#[grad]` function keeps `{name}`'s arguments for its reverse pass, and one of them is taken by value with a type it cannot copy: take it by reference (`&T`)"
            )),
            (None, Some(_)) => None,
        };
        let doc = format!(
            "The rule companion of `{name}_grad`: how another `#[grad]` function calls it (its pullback is `{name}`'s Hessian-vector product)."
        );
        if let Some(why) = why {
            return quote! {
                #[doc = #doc]
                #(#attrs)*
                #[doc(hidden)]
                #[allow(non_camel_case_types)]
                #vis struct #f_grad {}

                #(#attrs)*
                #[allow(dead_code)]
                impl #f_grad {
                    /// Not available (see the deprecation note).
                    #[deprecated(note = #why)]
                    #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
                    #vis fn forward #impl_generics (#inputs) -> (#out_ty, ::backprop::__private::Tape<fn(#out_ty) -> #tuple_ty>) #where_clause {
                        ::core::panic!(#why)
                    }

                    #shapes
                }
            };
        }
        let reuse = reuse.expect("checked above");
        // `f_hvp`'s direction: the gradient's cotangent, passed as the argument is.
        let directions = active.iter().map(|p| {
            let f = &p.name;
            let field = quote!(#d_grad.#f);
            direction(&p.ty, field)
        });
        let slots = self.params.iter().map(|p| {
            let f = &p.name;
            if !p.active {
                quote!(::backprop::__private::Inactive)
            } else if p.strukt {
                quote!(::backprop::__private::nested::combine_params::<#ret, _>(#d_value, #g.#f, #hv.#f))
            } else if p.tensor {
                quote!(::backprop::__private::nested::combine_array(#d_value, #g.#f, #hv.#f))
            } else if p.elem.is_some() {
                quote!(::backprop::__private::nested::combine_slice(#d_value, #g.#f, #hv.#f))
            } else {
                quote!(::backprop::__private::nested::combine_scalar(#d_value, #g.#f, #hv.#f))
            }
        });
        quote! {
            #[doc = #doc]
            #(#attrs)*
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            #vis struct #f_grad {}

            #(#attrs)*
            #[allow(dead_code)]
            impl #f_grad {
                /// `(f, ∇f)` and the tape of the call: the arguments.
                #[inline]
                #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
                #vis fn forward #impl_generics (#inputs) -> (#out_ty, #tape_ty) #where_clause {
                    let #out = #name::grad #tf (#(#reuse),*);
                    (#out, #f_grad::tape #tf (#(#args),*))
                }

                /// The pullback: `d_l · ∇f + ∇²f · d_g` per argument, from one `f_hvp`.
                #[inline]
                #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
                #vis fn tape #impl_generics (#inputs) -> #tape_ty #where_clause {
                    ::backprop::__private::Tape::new(move |#d: #out_ty| {
                        let (#d_value, #d_grad) = #d;
                        let (_, #g, #hv) = #name::hvp #tf (#(#args,)* #(#directions),*);
                        (#(#slots,)*)
                    })
                }

                #shapes
            }
        }
    }
}

/// Whether an argument of type `ty` can be used twice: `Some(false)` as it is (a
/// reference, a number, a type parameter, an array of numbers), `Some(true)` by a
/// clone (a `Vec` of numbers), `None` neither (a struct by value, which need not be
/// `Clone`).
fn reuse(ty: &syn::Type, generics: &syn::Generics) -> Option<bool> {
    let number = |ty: &syn::Type| match ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.get_ident().is_some_and(|i| {
            let n = i.to_string();
            (n == "f32" || n == "f64" || crate::ir::op::is_integer_type_name(&n))
                || generics.type_params().any(|t| t.ident == *i)
        }),
        _ => false,
    };
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => Some(false),
        syn::Type::Paren(p) => reuse(&p.elem, generics),
        syn::Type::Array(a) if number(&a.elem) => Some(false),
        syn::Type::Path(p) if number(ty) => {
            let _ = p;
            Some(false)
        }
        syn::Type::Path(p) => {
            let last = p.path.segments.last()?;
            let syn::PathArguments::AngleBracketed(a) = &last.arguments else {
                return None;
            };
            let elem = a.args.iter().find_map(|g| match g {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })?;
            // A `Vec` of numbers, an ndarray array or view (`Array2<f64>`,
            // `ArrayView1<T>`): a clone.
            ((last.ident == "Vec" || last.ident.to_string().starts_with("Array")) && number(elem))
                .then_some(true)
        }
        _ => None,
    }
}

/// The direction `f_hvp` takes for an argument of type `ty`, from the gradient's
/// cotangent `field` (a float, a `Vec`, or the struct's own type): borrowed where the
/// argument is a reference, converted where it is an array.
fn direction(ty: &syn::Type, field: TokenStream) -> TokenStream {
    match ty {
        syn::Type::Reference(r) => match &*r.elem {
            syn::Type::Array(a) => {
                quote!(&<#a as ::core::convert::TryFrom<_>>::try_from(#field).expect("a direction of the argument's length"))
            }
            _ => quote!(&#field),
        },
        syn::Type::Array(a) => {
            quote!(<#a as ::core::convert::TryFrom<_>>::try_from(#field).expect("a direction of the argument's length"))
        }
        // An array view argument: a view of the (owned) cotangent.
        syn::Type::Path(p)
            if p.path
                .segments
                .last()
                .is_some_and(|s| s.ident.to_string().starts_with("ArrayView")) =>
        {
            quote!(#field.view())
        }
        _ => field,
    }
}
