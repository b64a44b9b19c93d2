//! Assembles the companions of a `#[grad]` function `f`:
//!
//! ```text
//! fn f(..) -> R                          unchanged: the inference path, saves nothing
//! struct FGrad { a, b, .. }              one field per active argument, same types
//! fn f_grad(..) -> (R, FGrad)            value and gradient in one call
//! fn f_forward(..) -> (R, impl Pullback<R, Grad = FGrad>)   value and tape
//! fn f_backward(tape, d_out: R) -> FGrad                     the reverse pass
//! struct f {}  +  impl f { forward, grad }                   the rule companion: how
//!     other `#[grad]` functions call `f` (positional cotangents, one per argument)
//! ```

pub mod companions;
pub mod context;
pub mod forward;
pub mod prepass;
pub mod reverse;

use crate::analysis::Plan;
use crate::ir::Func;
use crate::names::Names;
use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};
use syn::ItemFn;

/// `loss_fn` → `LossFnGrad`.
pub fn grad_struct_ident(item: &ItemFn) -> syn::Ident {
    let camel: String = item
        .sig
        .ident
        .to_string()
        .trim_start_matches("r#")
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format_ident!("{}Grad", camel, span = item.sig.ident.span())
}

/// One argument as the companions see it.
pub struct ShapeParam {
    pub name: syn::Ident,
    pub ty: syn::Type,
    pub active: bool,
    /// An ndarray array: its gradient is an owned array of the same dimension.
    pub tensor: bool,
    /// A buffer of floats (`&[f64]`, `Vec<f32>`, `[f64; N]`): its gradient is a
    /// `Vec` of this element type.
    pub elem: Option<syn::Type>,
    /// A struct of parameters: its gradient is a value of the struct's type.
    pub strukt: bool,
}

/// The shared shape of the companions, used by both the real expansion and the
/// fallback stubs.
pub struct Shape<'a> {
    pub item: &'a ItemFn,
    pub params: Vec<ShapeParam>,
    pub ret_ty: syn::Type,
    /// Whether any rule takes the tensor path: generic floats then also need
    /// `T: backprop::Real` (`f32` or `f64`), which the tensor rules are written for.
    pub tensor: bool,
}

/// Every lifetime in `ty` made `'static` (a gradient type has no borrows).
pub fn strip_lifetimes(ty: &mut syn::Type) {
    *ty = with_static_lifetimes(ty);
}

/// `&'a ArrayView2<'b, f32>` → `&'static ArrayView2<'static, f32>`: the gradient type of
/// an array argument does not depend on its lifetimes, and the gradient struct has none.
fn with_static_lifetimes(ty: &syn::Type) -> syn::Type {
    use syn::visit_mut::VisitMut;
    struct Static;
    impl VisitMut for Static {
        fn visit_lifetime_mut(&mut self, l: &mut syn::Lifetime) {
            l.ident = syn::Ident::new("static", l.ident.span());
        }
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.is_none() {
                r.lifetime = Some(syn::parse_quote!('static));
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
    }
    let mut ty = ty.clone();
    Static.visit_type_mut(&mut ty);
    ty
}

impl ShapeParam {
    /// The type of this argument's gradient (its cotangent).
    pub fn grad_ty(&self) -> TokenStream {
        if self.strukt {
            let ty = match &self.ty {
                // `&[Layer]`: its gradient is a `Vec<Layer>`.
                syn::Type::Reference(r) => match &*r.elem {
                    syn::Type::Slice(s) => {
                        let elem = &s.elem;
                        syn::parse_quote!(::std::vec::Vec<#elem>)
                    }
                    other => other.clone(),
                },
                other => other.clone(),
            };
            let ty = with_static_lifetimes(&ty);
            return quote!(#ty);
        }
        if let Some(elem) = &self.elem {
            return quote!(::std::vec::Vec<#elem>);
        }
        if self.tensor {
            let ty = with_static_lifetimes(&self.ty);
            quote!(<#ty as ::backprop::__private::tensor::Value>::Cot)
        } else {
            self.ty.to_token_stream()
        }
    }
}

impl Shape<'_> {
    pub fn grad_ty(&self) -> TokenStream {
        let ident = grad_struct_ident(self.item);
        let used = self.used_type_params();
        if used.is_empty() {
            quote!(#ident)
        } else {
            quote!(#ident<#(#used),*>)
        }
    }

    /// Type parameters of the function that appear in an active argument's type.
    fn used_type_params(&self) -> Vec<syn::Ident> {
        self.item
            .sig
            .generics
            .type_params()
            .filter(|tp| {
                self.params.iter().any(|p| {
                    p.active
                        && crate::ir::idents(&p.ty.to_token_stream())
                            .contains(&tp.ident.to_string())
                })
            })
            .map(|tp| tp.ident.clone())
            .collect()
    }

    /// The gradient struct's bounds, where a field's type needs them to be well-formed: a
    /// generic array's cotangent (`<Array1<T> as Value>::Cot` needs `T: Real`) or a
    /// generic struct (`Scale<T>` declared with `T: Real`). The function's own trait
    /// bounds on the struct's parameters, and `T: Real` for tensor code. Empty (no `where`
    /// at all) otherwise, as before.
    fn grad_struct_where(&self, used: &[syn::Ident]) -> TokenStream {
        let needs = self
            .params
            .iter()
            .any(|p| p.active && (p.tensor || p.strukt));
        if used.is_empty() || !(needs || self.tensor) {
            return quote!();
        }
        let generics = self.generics();
        let mut preds: Vec<TokenStream> = Vec::new();
        if self.tensor {
            preds.extend(used.iter().map(|t| quote!(#t: ::backprop::__private::Real)));
        }
        let traits_only = |bounds: &mut dyn Iterator<Item = &syn::TypeParamBound>| {
            bounds
                .filter(|b| matches!(b, syn::TypeParamBound::Trait(_)))
                .cloned()
                .collect::<Vec<_>>()
        };
        for tp in generics.type_params().filter(|tp| used.contains(&tp.ident)) {
            let bounds = traits_only(&mut tp.bounds.iter());
            if !bounds.is_empty() {
                let t = &tp.ident;
                preds.push(quote!(#t: #(#bounds)+*));
            }
        }
        if let Some(w) = &generics.where_clause {
            for pred in &w.predicates {
                if let syn::WherePredicate::Type(pt) = pred
                    && let syn::Type::Path(p) = &pt.bounded_ty
                    && p.path.get_ident().is_some_and(|i| used.contains(i))
                {
                    let bounds = traits_only(&mut pt.bounds.iter());
                    if !bounds.is_empty() {
                        let t = &pt.bounded_ty;
                        preds.push(quote!(#t: #(#bounds)+*));
                    }
                }
            }
        }
        if preds.is_empty() {
            quote!()
        } else {
            quote!(where #(#preds),*)
        }
    }

    /// The positional cotangent tuple: the argument's type if active, `Inactive` if not.
    pub fn tuple_ty(&self) -> TokenStream {
        let tys = self.params.iter().map(|p| {
            if p.active {
                p.grad_ty()
            } else {
                quote!(::backprop::__private::Inactive)
            }
        });
        quote!((#(#tys,)*))
    }

    pub fn inputs(&self) -> TokenStream {
        let inputs = self.params.iter().map(|p| {
            let (name, ty) = (&p.name, &p.ty);
            quote!(#name: #ty)
        });
        quote!(#(#inputs),*)
    }

    /// Whether `f_grad` may run the forward pass a second time (for the strong-zero
    /// fallback): every argument is `Copy` (a reference, a primitive number, an array of
    /// floats, or a type parameter bounded by `Float`, `Real` or `Copy`), and every
    /// gradient is a float or a buffer of floats (whose NaNs it can test).
    /// Whether the function returns an owned ndarray array (a layer) rather than a loss:
    /// it then has a VJP (`f_vjp(.., d_out)`) instead of a gradient (`f_grad`).
    pub fn returns_array(&self) -> bool {
        crate::ir::is_owned_array_type(&self.ret_ty)
    }

    pub fn plain_first(&self) -> bool {
        if self.tensor
            || self
                .params
                .iter()
                .any(|p| p.active && (p.tensor || p.strukt))
        {
            return false;
        }
        let copy_params: Vec<String> = self
            .item
            .sig
            .generics
            .type_params()
            .filter(|tp| {
                let mut bounds: Vec<&syn::TypeParamBound> = tp.bounds.iter().collect();
                if let Some(w) = &self.item.sig.generics.where_clause {
                    for pred in &w.predicates {
                        if let syn::WherePredicate::Type(pt) = pred
                            && tp.ident == pt.bounded_ty.to_token_stream().to_string()
                        {
                            bounds.extend(pt.bounds.iter());
                        }
                    }
                }
                bounds.iter().any(|b| match b {
                    syn::TypeParamBound::Trait(t) => t.path.segments.last().is_some_and(|s| {
                        s.ident == "Float" || s.ident == "Real" || s.ident == "Copy"
                    }),
                    _ => false,
                })
            })
            .map(|tp| tp.ident.to_string())
            .collect();
        let is_copy = |ty: &syn::Type| -> bool {
            match ty {
                syn::Type::Reference(r) => r.mutability.is_none(),
                syn::Type::Path(p) if p.qself.is_none() => p.path.get_ident().is_some_and(|i| {
                    let i = i.to_string();
                    crate::ir::op::is_integer_type_name(&i)
                        || matches!(i.as_str(), "f32" | "f64" | "bool" | "char")
                        || copy_params.contains(&i)
                }),
                syn::Type::Array(a) => {
                    matches!(&*a.elem, syn::Type::Path(p) if p.path.is_ident("f32") || p.path.is_ident("f64"))
                }
                _ => false,
            }
        };
        self.params.iter().all(|p| is_copy(&p.ty))
    }

    pub fn arg_names(&self) -> Vec<&syn::Ident> {
        self.params.iter().map(|p| &p.name).collect()
    }

    /// The function's generics, plus `T: backprop::Real` on its float type parameters
    /// when a tensor rule may see them, or a generic struct of parameters holds them
    /// (`p: &Layer<T>` needs `Layer<T>: Differentiable`, which needs `T`'s).
    fn generics(&self) -> syn::Generics {
        let mut generics = self.item.sig.generics.clone();
        let strukt = self.params.iter().any(|p| p.active && p.strukt);
        if self.tensor || strukt {
            let floats = crate::ir::lower::float_type_params(&self.item.sig.generics);
            let used: Vec<syn::Ident> = self
                .used_type_params()
                .into_iter()
                .filter(|t| self.tensor || floats.contains(&t.to_string()))
                .collect();
            // Beside the parameter's own bounds: inline if it has them there, in the
            // where clause if it is bounded there (bounds in both places are clippy's
            // `multiple_bound_locations`, reported on the user's `T`).
            let bound: syn::TypeParamBound = syn::parse_quote!(::backprop::__private::Real);
            for t in used {
                let in_where = generics.where_clause.as_mut().and_then(|wc| {
                    wc.predicates.iter_mut().find_map(|pred| match pred {
                        syn::WherePredicate::Type(pt)
                            if matches!(&pt.bounded_ty, syn::Type::Path(p) if p.path.is_ident(&t)) =>
                        {
                            Some(pt)
                        }
                        _ => None,
                    })
                });
                if let Some(pt) = in_where {
                    pt.bounds.push(bound.clone());
                } else if let Some(tp) = generics.type_params_mut().find(|tp| tp.ident == t) {
                    tp.bounds.push(bound.clone());
                }
            }
        }
        generics
    }

    /// Attributes that must follow the function to its companions: `#[cfg]` (they
    /// exist exactly when it does), lint levels (`#[allow(clippy::too_many_arguments)]`
    /// on `f` must cover `f_grad`'s identical signature) and `#[deprecated]`.
    pub fn carried_attrs(&self) -> Vec<&syn::Attribute> {
        const CARRIED: &[&str] = &[
            "cfg",
            "allow",
            "warn",
            "deny",
            "forbid",
            "expect",
            "deprecated",
        ];
        self.item
            .attrs
            .iter()
            .filter(|a| CARRIED.iter().any(|c| a.path().is_ident(c)))
            .collect()
    }

    /// `::<T, N>` for calls between the companions: type and const parameters that the
    /// arguments may not determine (a const generic never is). Empty when an argument
    /// is `impl Trait`, which forbids explicit generic arguments.
    pub fn turbofish(&self) -> TokenStream {
        let explicit: Vec<TokenStream> = self
            .item
            .sig
            .generics
            .params
            .iter()
            .filter_map(|p| match p {
                syn::GenericParam::Type(t) => Some(t.ident.to_token_stream()),
                syn::GenericParam::Const(c) => Some(c.ident.to_token_stream()),
                syn::GenericParam::Lifetime(_) => None,
            })
            .collect();
        let impl_trait_arg = self.item.sig.inputs.iter().any(
            |i| matches!(i, syn::FnArg::Typed(pt) if matches!(*pt.ty, syn::Type::ImplTrait(_))),
        );
        if explicit.is_empty() || impl_trait_arg {
            quote!()
        } else {
            quote!(::<#(#explicit),*>)
        }
    }

    /// Everything but the forward body: the gradient struct, `f_grad`, `f_forward`,
    /// `f_backward`, and the rule companion whose `forward` body is `forward_body`.
    pub fn companions(
        &self,
        forward_body: TokenStream,
        grad_bodies: Option<(TokenStream, TokenStream, TokenStream, TokenStream)>,
        plain_first: bool,
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
        let before = local("__value");
        let rebuild_inputs = if self.params.is_empty() {
            quote!(#before: #ret)
        } else {
            quote!(#inputs, #before: #ret)
        };
        let d_vjp = local("__d_out");
        let vjp_inputs = if self.params.is_empty() {
            quote!(#d_vjp: #ret)
        } else {
            quote!(#inputs, #d_vjp: #ret)
        };
        let args = self.arg_names();
        let generics = self.generics();
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let attrs = self.carried_attrs();
        let used = self.used_type_params();
        // A tensor cotangent (`<&Array2<T> as Value>::Cot`) is a type only for the
        // floats the tensor rules take: the struct carries the bound its companions do,
        // or it would not be well-formed under the user's own bounds (`T: Float +
        // LinalgScalar`).
        let struct_generics = if used.is_empty() {
            quote!()
        } else {
            quote!(<#(#used),*>)
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
            // (`rebuild`'s parameter and this local are in different functions.)
            let (value, tape, grad, seen) = (
                before.clone(),
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
                /// Forward pass with one cotangent per argument (`Inactive` for constants).
                #[inline]
                // The forward pass repeats the user's statements (linted already, on `f`)
                // and the reverse pass is machine-written: lints on either are noise here.
                #[allow(unused_variables, unused_assignments, unused_mut, unused_parens, unreachable_code, clippy::all)]
                #vis fn forward #impl_generics (#inputs) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #tuple_ty>) #where_clause {
                    #forward_body
                }

                /// The tape of a call made before, from copies of its arguments: the
                /// forward pass runs again (a checkpoint); the value it returned
                /// before is not needed.
                #[inline]
                #[allow(unused_variables, clippy::too_many_arguments)]
                #vis fn rebuild #impl_generics (#rebuild_inputs) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #tuple_ty>) #where_clause {
                    #name::forward #tf (#(#args),*)
                }

                #grad_method

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

            #[doc = #doc_fwd]
            #(#attrs)*
            #[inline]
            #[allow(unused_variables, unused_parens, unreachable_code, non_snake_case, clippy::too_many_arguments)]
            #vis fn #f_forward #impl_generics (#inputs) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #grad_ty>) #where_clause {
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

/// Whether the function calls code no rule covers (`rand::random()`, a counter, a
/// macro) on constants. Such a call may have effects or differ from one run to the
/// next, so `f_grad` does not run the forward pass twice for it: no plain pass first.
fn calls_outside_rules(func: &Func) -> bool {
    // Constructors of constants (`T::zero()`, `T::from(0.5).unwrap()`), the op table's
    // methods and unwrapping are pure; any other call or macro might not be.
    const PURE_CALLS: &[&str] = &[
        "zero",
        "one",
        "from",
        "from_f64",
        "from_f32",
        "nan",
        "infinity",
        "neg_infinity",
        "epsilon",
        "max_value",
        "min_value",
        "min_positive_value",
        "cast",
    ];
    fn pure_method(name: &str, arity: usize) -> bool {
        matches!(name, "unwrap" | "expect" | "into" | "clone")
            || !matches!(
                crate::ir::op::method(name, arity),
                crate::ir::op::MethodKind::Unknown
            )
    }
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
            let pure = matches!(&*c.func, syn::Expr::Path(p)
                if p.path.segments.last().is_some_and(|s| PURE_CALLS.contains(&s.ident.to_string().as_str())));
            self.0 |= !pure;
            syn::visit::visit_expr_call(self, c);
        }
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            self.0 |= !pure_method(&m.method.to_string(), m.args.len() + 1);
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_macro(&mut self, _: &'ast syn::ExprMacro) {
            self.0 = true;
        }
    }
    let mut found = false;
    crate::ir::walk(&func.body, &mut |s| {
        // An operation without a rule on constants: operators, casts and indexing are
        // pure; a method or a function might not be. (Operations with derivative 0,
        // `len()`, `floor()`, comparisons, are the op table's, all pure.)
        if let crate::ir::Rhs::NoRule { spelling, .. } = &s.rhs {
            use crate::ir::Spelling as Sp;
            found |= match spelling {
                Sp::Operator(_)
                | Sp::Unary(_)
                | Sp::Cast(_)
                | Sp::Ref
                | Sp::Index
                | Sp::RefIndex
                | Sp::TupleField(_)
                | Sp::Matches(_) => false,
                // (A method reaches `NoRule` only when the op table does not know it.)
                Sp::Method(_) | Sp::MethodUnwrap(..) | Sp::MethodTurbofish(_) | Sp::Join(..) => {
                    true
                }
                Sp::Path(p) => !p
                    .path
                    .segments
                    .last()
                    .is_some_and(|seg| PURE_CALLS.contains(&seg.ident.to_string().as_str())),
            };
        }
        for o in s.rhs.operands() {
            if let crate::ir::Operand::Const(e) = o {
                let mut f = Finder(false);
                syn::visit::Visit::visit_expr(&mut f, e);
                found |= f.0;
            }
        }
    });
    found
}

/// What methods that forward to the companions (`#[grad]` on an `impl`, `methods.rs`)
/// need to spell their signatures.
pub struct Api {
    /// The gradient struct's type, with its generic arguments (`ModelLossGrad<T>`).
    pub grad_ty: TokenStream,
    /// The bounds the companions add to the function's own (`T: Real` for tensor code).
    pub bounds: Vec<syn::WherePredicate>,
}

impl Shape<'_> {
    pub fn api(&self) -> Api {
        let own = self
            .item
            .sig
            .generics
            .where_clause
            .as_ref()
            .map_or(0, |w| w.predicates.len());
        let bounds = self
            .generics()
            .where_clause
            .map(|w| w.predicates.into_iter().skip(own).collect())
            .unwrap_or_default();
        Api {
            grad_ty: self.grad_ty(),
            bounds,
        }
    }
}

/// The full expansion of a function that passed every check, and the signature facts
/// methods forwarding to its companions need.
pub fn emit(item: &ItemFn, func: &Func, plan: &Plan) -> (TokenStream, Api) {
    let mut names = Names::new(item.to_token_stream());
    for v in &func.vars {
        names.reserve(&v.name.to_string());
    }
    let is_tensor = |p: &crate::ir::Param| p.kind == crate::ir::ParamKind::Tensor;
    let shape = Shape {
        item,
        params: func
            .params
            .iter()
            .map(|p| ShapeParam {
                name: p.ident.clone(),
                ty: p.ty.clone(),
                active: p.active,
                tensor: is_tensor(p),
                elem: p.elem.clone(),
                strukt: p.kind == crate::ir::ParamKind::Struct,
            })
            .collect(),
        ret_ty: func.ret_ty.clone(),
        tensor: plan.kinds.any_tensor() || func.params.iter().any(|p| p.active && is_tensor(p)),
    };
    // Mention `f` itself, so a user who only calls `f_grad` gets no "never used"
    // warning on `f` (its companions replace it, they do not abandon it).
    let fn_name = &item.sig.ident;
    let has_impl_trait_arg =
        item.sig.inputs.iter().any(
            |i| matches!(i, syn::FnArg::Typed(pt) if matches!(*pt.ty, syn::Type::ImplTrait(_))),
        );
    let tf = shape.turbofish();
    let keep_used = if has_impl_trait_arg {
        quote!()
    } else {
        quote!(#[allow(deprecated)] let _ = #fn_name #tf;)
    };
    let mut ctx = context::Emitter::new(func, plan, names);
    let forward = ctx.forward();
    let (pullback, dual) = reverse::pullback(&mut ctx, &shape.tuple_ty());
    let tape_ty = if dual { quote!(DualTape) } else { quote!(Tape) };
    // Loops' stacks count their heap into `tape_heap` (declared below).
    if !ctx.stacks.is_empty() {
        let _ = ctx.heap_name();
    }
    let pullback_name = ctx.names.fresh("pullback", proc_macro2::Span::call_site());
    let items = &func.items;
    let ret = ctx.operand(&func.ret);
    // An array result the tape also reads (`z.tanh()` saves its output) is returned as
    // a copy: the pullback owns the original.
    let (ret_copy, ret) = match func.ret.var() {
        Some(v) if shape.returns_array() && ctx.captured.borrow().contains(&v) => {
            let copy = ctx.names.fresh("value", proc_macro2::Span::call_site());
            (
                quote!(let #copy = ::core::clone::Clone::clone(&#ret);),
                quote!(#copy),
            )
        }
        _ => (quote!(), ret),
    };
    // The tape's size: the closure's own bytes are measured by the runtime; what its
    // captured arrays and nested tapes own on the heap is added here. Scalar code has
    // nothing on the heap and keeps the plain constructor.
    let mut has_calls = false;
    crate::ir::walk(&func.body, &mut |s| {
        has_calls |= matches!(
            s.rhs,
            crate::ir::Rhs::Call { .. } | crate::ir::Rhs::If(_) | crate::ir::Rhs::Loop(_)
        )
    });
    let (heap, tape) = if shape.tensor || has_calls {
        // Only values in scope at the top of the forward pass: a branch's own values
        // live in that branch's pullback, which its tape (counted here) holds.
        let mut visible: std::collections::HashSet<crate::ir::VarId> =
            func.params.iter().map(|p| p.var).collect();
        for s in &func.body {
            visible.insert(s.def);
            match &s.rhs {
                crate::ir::Rhs::If(node) => visible.extend(node.outs.iter().map(|o| o.def)),
                crate::ir::Rhs::Loop(node) => visible.extend(node.carried.iter().map(|c| c.out)),
                _ => {}
            }
        }
        // A float owns no heap: no probe for it (which also keeps a failed call's result,
        // whose type rustc no longer knows, from adding a second error to the first).
        let heapless = |v: &crate::ir::VarId| {
            plan.kinds.scalar[v.0]
                && !func.is_buffer(*v)
                && !func
                    .params
                    .iter()
                    .any(|p| p.var == *v && p.kind == crate::ir::ParamKind::Struct)
        };
        let mut names: Vec<syn::Ident> = ctx
            .captured
            .borrow()
            .iter()
            .filter(|v| visible.contains(v) && !heapless(v))
            .map(|v| ctx.var(*v).clone())
            .collect();
        // Loops count their stacks themselves (`tape_heap`), nested runs included.
        let tapes: Vec<crate::ir::VarId> = ctx
            .captured_tapes
            .borrow()
            .iter()
            .copied()
            .filter(|v| visible.contains(v))
            .filter(|v| {
                !matches!(
                    func.def_of(*v),
                    Some(crate::ir::Stmt {
                        rhs: crate::ir::Rhs::Loop(_),
                        ..
                    })
                )
            })
            .collect();
        names.extend(tapes.into_iter().map(|v| ctx.tape(v)));
        let mut captured: Vec<TokenStream> = names
            .iter()
            .map(|x| quote!((&::backprop::__private::Probe(&#x)).heap_bytes()))
            .collect();
        if let Some(h) = &ctx.heap {
            captured.push(quote!(#h));
        }
        let sum = if captured.is_empty() {
            quote!(0)
        } else {
            quote!(#(#captured)+*)
        };
        let heap_name = ctx
            .names
            .fresh("heap_bytes", proc_macro2::Span::call_site());
        (
            quote! {
                let #heap_name = {
                    use ::backprop::__private::{HeapOfOther as _, HeapOfOwned as _};
                    #sum
                };
            },
            quote!(::backprop::__private::#tape_ty::with_heap_bytes(#heap_name, #pullback_name)),
        )
    } else {
        (
            quote!(),
            quote!(::backprop::__private::#tape_ty::new(#pullback_name)),
        )
    };
    // Each loop's stack, for the whole forward pass.
    let stacks: Vec<syn::Ident> = ctx
        .stacks
        .clone()
        .into_iter()
        .map(|v| ctx.tape(v))
        .collect();
    let heap_decl = ctx.heap.as_ref().map(|h| quote!(let mut #h: usize = 0;));
    let stack_decls = stacks
        .iter()
        .map(|t| quote!(let mut #t = ::backprop::__private::Stack::new();));
    let stack_heap: Vec<TokenStream> = match &ctx.heap {
        Some(h) => stacks
            .iter()
            .map(|t| quote!(#h += ::backprop::__private::HeapOfOwned::heap_bytes(&::backprop::__private::Probe(&#t));))
            .collect(),
        None => Vec::new(),
    };
    let body = quote! {
        #keep_used
        #(#items)*
        #heap_decl
        #(#stack_decls)*
        #forward
        #(#stack_heap)*
        #heap
        #ret_copy
        let #pullback_name = #pullback;
        (#ret, #tape)
    };
    let plain_first = dual && shape.plain_first() && !calls_outside_rules(func);
    let companions = shape.companions(body, None, plain_first);
    let out = quote! {
        #item
        #companions
    };
    (out, shape.api())
}
