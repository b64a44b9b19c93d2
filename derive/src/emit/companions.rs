//! The companions of a `#[grad]` function (the gradient struct, `f_grad`, `f_forward`,
//! `f_backward` and the rule companion `struct f {}`), and how a call names another
//! function's rule companion (`g::forward`).

use super::shape::{Shape, grad_struct_ident};
use crate::names::Names;
use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};

impl Shape<'_> {
    /// A function named like one of `backprop::ops`' (`gelu`, `softmax`, `layer_norm`):
    /// a caller emits a bare call of that name as the runtime op's, without keeping
    /// the arrays it lends (the runtime's tapes own what they keep). So its `forward`
    /// does the same: it copies what it borrows (`&T` cloned, `&[T]` to a `Vec`, a
    /// view to an owned array) and runs the borrowing forward pass,
    /// `forward_borrowing`, on the copies, whose tape it keeps with them
    /// (`__private::keep`). Other functions' `forward` is the borrowing one itself.
    fn owning_forward(
        &self,
        tape_generics: &syn::Generics,
        tape_inputs: &TokenStream,
        tuple_ty: &TokenStream,
    ) -> (TokenStream, syn::Ident) {
        let name = &self.item.sig.ident;
        let span = name.span();
        if !crate::ir::op::shares_runtime_name(name) || self.item.sig.receiver().is_some() {
            return (quote!(), format_ident!("forward", span = span));
        }
        let borrowing = format_ident!("forward_borrowing", span = span);
        let (mut copies, mut lent_values, mut args) = (Vec::new(), Vec::new(), Vec::new());
        for p in &self.params {
            let x = &p.name;
            let view = matches!(&p.ty, syn::Type::Path(tp)
                if tp.path.segments.last().is_some_and(|s| super::shape::is_view_alias(&s.ident)));
            let i = syn::Index::from(copies.len());
            match &p.ty {
                syn::Type::Reference(r) if matches!(&*r.elem, syn::Type::Slice(_)) => {
                    copies.push(quote!(<[_]>::to_vec(#x)));
                    args.push(quote!(&kept.#i[..]));
                }
                syn::Type::Reference(_) => {
                    copies.push(quote!(::core::clone::Clone::clone(#x)));
                    args.push(quote!(&kept.#i));
                }
                _ if view => {
                    copies.push(quote!(::backprop::__private::tensor::owned_view(&#x)));
                    args.push(quote!(kept.#i.view()));
                }
                _ => {
                    let j = syn::Index::from(lent_values.len());
                    lent_values.push(quote!(#x));
                    args.push(quote!(lent.#j));
                }
            }
        }
        let (tape_impl_generics, _, where_clause) = tape_generics.split_for_impl();
        let captured = super::shape::type_and_const_args(tape_generics);
        let ret = &self.ret_ty;
        let turbofish = if captured.is_empty() {
            quote!()
        } else {
            quote!(::<#(#captured),*>)
        };
        let vis = &self.item.vis;
        let forward = quote! {
            /// Forward pass whose tape owns copies of what it borrows (this function
            /// shares its name with one of `backprop::ops`', whose calls lend arrays
            /// of the caller's forward pass as they are).
            #[inline]
            #[allow(clippy::all)]
            #vis fn forward #tape_impl_generics (#tape_inputs) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #tuple_ty> + use<#(#captured),*>) #where_clause {
                ::backprop::__private::keep((#(#copies,)*), (#(#lent_values,)*), |kept, lent, _| {
                    let (value, tape) = Self::#borrowing #turbofish (#(#args),*);
                    (value, ::backprop::__private::boxed(tape))
                })
            }
        };
        (forward, borrowing)
    }

    /// Everything but the forward body: the gradient struct, `f_grad`, `f_forward`,
    /// `f_backward`, and the rule companion whose `forward` body is `forward_body`.
    pub fn companions(
        &self,
        forward_body: TokenStream,
        grad_bodies: Option<(TokenStream, TokenStream, TokenStream, TokenStream)>,
        plain_first: bool,
        jvp_body: Option<(syn::Ident, TokenStream)>,
        tangent_methods: TokenStream,
    ) -> TokenStream {
        let item = self.item;
        let vis = &item.vis;
        let name = &item.sig.ident;
        let span = name.span();
        let f_grad = format_ident!("{}_grad", name, span = span);
        let f_forward = format_ident!("{}_forward", name, span = span);
        let f_backward = format_ident!("{}_backward", name, span = span);
        let grad_ident = grad_struct_ident(item);
        let grad_ty = self.grad_ty();
        let tuple_ty = self.tuple_ty();
        let ret = &self.ret_ty;
        let inputs = self.inputs();
        // The companions' own locals, named apart from every identifier of the function
        // (they must not shadow an argument they pass on).
        let mut own = Names::new(item.to_token_stream());
        let mut local = |base: &str| own.fresh(base, proc_macro2::Span::call_site());
        let d_vjp = local("__d_out");
        let vjp_inputs = if self.params.is_empty() {
            quote!(#d_vjp: #ret)
        } else {
            quote!(#inputs, #d_vjp: #ret)
        };
        let args = self.arg_names();
        let generics = self.generics();
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let (tape_generics, tape_inputs) = self.tape_signature();
        let (tape_impl_generics, _, _) = tape_generics.split_for_impl();
        let attrs = self.carried_attrs();
        let (owning_forward, borrowing_forward) =
            self.owning_forward(&tape_generics, &tape_inputs, &tuple_ty);
        let used = self.used_type_params();
        // A tensor cotangent (`<&Array2<T> as Value>::Cot`) is a type only for the
        // floats the tensor rules take: the struct carries the bound its companions do,
        // or it would not be well-formed under the user's own bounds (`T: Float +
        // LinalgScalar`).
        // Const parameters an active argument's type names (`p: &S<N>`) too.
        let consts = self.used_const_params();
        let struct_generics = if used.is_empty() && consts.is_empty() {
            quote!()
        } else {
            quote!(<#(#used,)* #(#consts,)*>)
        };
        let struct_where = self.grad_struct_where(&used);
        let fields = self.params.iter().filter(|p| p.active).map(|p| {
            let n = &p.name;
            let ty = p.grad_ty();
            let doc = format!("∂{name}/∂{n}");
            quote!(#[doc = #doc] pub #n: #ty)
        });
        // Arrays and `Vec`s are not `Copy`; scalar gradients are.
        let copy = if self
            .params
            .iter()
            .any(|p| p.active && (p.tensor || p.elem.is_some() || p.strukt))
        {
            quote!()
        } else {
            quote!(Copy,)
        };
        // A struct argument's gradient is the user's own type, which need not be
        // `Clone`/`Debug`/`PartialEq`; the gradient struct then derives nothing (its
        // fields still do whatever their types do).
        let derives = if self.params.iter().any(|p| p.active && p.strukt) {
            quote!()
        } else {
            quote!(#[derive(Clone, #copy Debug, PartialEq)])
        };
        let grad_doc = format!(
            "Gradient of `{name}` with respect to its active arguments (generated by `#[grad]`)."
        );
        let slots: Vec<TokenStream> = self
            .params
            .iter()
            .map(|p| {
                if p.active {
                    p.name.to_token_stream()
                } else {
                    quote!(_)
                }
            })
            .collect();
        let field_names: Vec<&syn::Ident> = self
            .params
            .iter()
            .filter(|p| p.active)
            .map(|p| &p.name)
            .collect();
        let tf = self.turbofish();
        // `f_grad` tries the reverse pass without strong zeros first, and runs both
        // passes again with them only if the gradient has a NaN (the two agree
        // otherwise: see `backprop::rules::scalar::plain`). That needs the arguments
        // twice, so only functions whose arguments are all `Copy` do it.
        let grad_default = if plain_first {
            let (value, tape, grad, seen) = (
                local("__value"),
                local("__tape"),
                local("__grad"),
                local("__nan_seen"),
            );
            let checks: Vec<TokenStream> = self
                .params
                .iter()
                .enumerate()
                .filter(|(_, p)| p.active)
                .map(|(k, p)| {
                    let k = syn::Index::from(k);
                    if p.elem.is_some() {
                        quote!(::backprop::__private::any_nan(&#grad.#k[..]))
                    } else {
                        quote!(::backprop::__private::is_nan(&#grad.#k))
                    }
                })
                .collect();
            quote! {
                let (#value, #tape) = #name::forward #tf (#(#args),*);
                let (#grad, #seen) = ::backprop::__private::plain_pass(|| {
                    ::backprop::__private::Pullback::backward_unguarded(#tape, ::backprop::__private::one())
                });
                // A NaN: both passes again, with strong zeros (where `0 · ∞` is 0). The
                // value returned is the second forward pass's, so the two match.
                let (#value, #grad) = if #seen #(|| #checks)* {
                    let (#value, #tape) = #name::forward #tf (#(#args),*);
                    (#value, ::backprop::__private::Pullback::backward(#tape, ::backprop::__private::one()))
                } else {
                    (#value, #grad)
                };
                let (#(#slots,)*) = #grad;
                (#value, #grad_ident { #(#field_names),* })
            }
        } else {
            quote! {
                let (value, tape) = #f_forward #tf (#(#args),*);
                (value, ::backprop::__private::Pullback::backward(tape, ::backprop::__private::one()))
            }
        };
        let (grad_body, forward_pub_body, backward_body, grad_free_body) = grad_bodies.unwrap_or_else(|| {
            (
                grad_default,
                quote! {
                    let (value, tape) = #name::forward #tf (#(#args),*);
                    (value, ::backprop::__private::map_grad(tape, |(#(#slots,)*)| #grad_ident { #(#field_names),* }))
                },
                quote!(::backprop::__private::Pullback::backward(tape, d_out)),
                quote!(#name::grad #tf (#(#args),*)),
            )
        });
        let doc_grad = format!("Value and gradient of `{name}` (generated by `#[grad]`).");
        // A function returning an array (a layer) has no gradient of its own: its VJP
        // pulls an output cotangent of the result's shape back to its arguments.
        let (grad_method, grad_free) = if self.returns_array() {
            let f_vjp = format_ident!("{}_vjp", name, span = span);
            let doc_vjp = format!(
                "Value of `{name}` and the vector-Jacobian product of `d_out` (the output cotangent, shaped like the result) with respect to its active arguments (generated by `#[grad]`)."
            );
            (
                quote!(),
                quote! {
                    #[doc = #doc_vjp]
                    #(#attrs)*
                    #[inline]
                    #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
                    #vis fn #f_vjp #impl_generics (#vjp_inputs) -> (#ret, #grad_ty) #where_clause {
                        #name::vjp #tf (#(#args,)* #d_vjp)
                    }
                },
            )
        } else {
            (
                quote! {
                    /// Value and gradient.
                    #[inline]
                    #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
                    #vis fn grad #impl_generics (#inputs) -> (#ret, #grad_ty) #where_clause {
                        #grad_body
                    }
                },
                quote! {
                    #[doc = #doc_grad]
                    #(#attrs)*
                    #[inline]
                    #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
                    #vis fn #f_grad #impl_generics (#inputs) -> (#ret, #grad_ty) #where_clause {
                        #grad_free_body
                    }
                },
            )
        };
        // A function returning an array has forward mode where every operation has a
        // tangent rule (there is no gradient to pair with the tangents otherwise).
        let (jvp_method, jvp_free) = if self.returns_array() && jvp_body.is_none() {
            (quote!(), self.jvp_refusal(&mut own))
        } else {
            self.jvp_companions(&mut own, jvp_body)
        };
        let doc_fwd = format!(
            "Forward pass of `{name}`: its value and the tape its reverse pass needs (generated by `#[grad]`)."
        );
        let doc_bwd = format!(
            "Reverse pass of `{name}`: the gradient from a tape and the output cotangent (generated by `#[grad]`)."
        );
        quote! {
            #[doc = #grad_doc]
            #(#attrs)*
            #derives
            #vis struct #grad_ident #struct_generics #struct_where { #(#fields,)* }

            /// The rule companion of a `#[grad]` function: how other differentiated code calls it.
            #(#attrs)*
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            #vis struct #name {}

            #(#attrs)*
            #[allow(dead_code)]
            impl #name {
                #owning_forward

                /// Forward pass with one cotangent per argument (`Inactive` for constants).
                #[inline]
                // The forward pass repeats the user's statements (linted already, on `f`)
                // and the reverse pass is machine-written: lints on either are noise here.
                #[allow(unused_variables, unused_assignments, unused_mut, unused_parens, unreachable_code, clippy::all)]
                #vis fn #borrowing_forward #tape_impl_generics (#tape_inputs) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #tuple_ty>) #where_clause {
                    #forward_body
                }

                #grad_method

                #jvp_method

                #tangent_methods

                /// Value and the reverse pass with an output cotangent (what
                /// `f_backward` gives after `f_forward`: strong zeros): `gradcheck!`
                /// checks it with random cotangents.
                #[inline]
                #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
                #vis fn vjp #impl_generics (#vjp_inputs) -> (#ret, #grad_ty) #where_clause {
                    let (value, tape) = #f_forward #tf (#(#args),*);
                    (value, ::backprop::__private::Pullback::backward(tape, #d_vjp))
                }
            }

            #grad_free

            #jvp_free

            #[doc = #doc_fwd]
            #(#attrs)*
            #[inline]
            #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
            #vis fn #f_forward #tape_impl_generics (#tape_inputs) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #grad_ty>) #where_clause {
                #forward_pub_body
            }

            #[doc = #doc_bwd]
            #(#attrs)*
            #[inline]
            #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
            #vis fn #f_backward #impl_generics (tape: impl ::backprop::__private::Pullback<#ret, Grad = #grad_ty>, d_out: #ret) -> #grad_ty #where_clause {
                #backward_body
            }
        }
    }
}

/// `backprop::sigmoid::<f64>` → `backprop::sigmoid::forward::<f64>`: the rule
/// companion lives in the type namespace under the function's own name, so it follows
/// the function through `use` and paths.
pub fn companion_path(path: &syn::ExprPath) -> TokenStream {
    companion_fn(path, "forward")
}

/// `g::jvp` (with its turbofish): a call's tangent, in another function's tangent pass.
pub fn jvp_path(path: &syn::ExprPath) -> TokenStream {
    companion_fn(path, "jvp")
}

/// `g::NAME` (with its turbofish): another of the companion's methods.
pub fn companion_method(path: &syn::ExprPath, name: &str) -> TokenStream {
    companion_fn(path, name)
}

fn companion_fn(path: &syn::ExprPath, name: &str) -> TokenStream {
    // Spanned on the call as written, so that a note on the companion (a deprecation
    // saying why a gradient of a gradient cannot be taken) points there.
    let span = path
        .path
        .segments
        .last()
        .map_or_else(proc_macro2::Span::call_site, |s| s.ident.span());
    let name = syn::Ident::new(name, span);
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
