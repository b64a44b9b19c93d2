//! Second order: `f_hvp(args.., v_args..) -> (value, gradient, H·v)` and the rule
//! companion's `tangent_forward`, both the reverse pass of the tangent program
//! (`ir::tangent`), emitted by the same forward and reverse emitters as `f`'s own pass.
//!
//! `tangent_forward(args.., tangents..)` is how another tangent program calls `f`: its
//! value is the tangent of `f`'s result, and its tape pulls a cotangent back to both the
//! arguments and the tangents (one slot each, `Inactive` where `f` does not
//! differentiate). A float's tangent is any `ScalarSlot` (the caller's tangent, or
//! `NoTangent` for a constant); a buffer's is a slice, a struct's a reference.

use super::{Shape, ShapeParam, forward_body, grad_struct_ident};
use crate::analysis::Plan;
use crate::ir::{Func, ParamKind};
use crate::names::Names;
use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ItemFn;

/// What second order adds to a function's expansion.
pub struct Hvp {
    /// `f_hvp`, free beside `f_grad`.
    pub free: TokenStream,
    /// `tangent_forward` and `tangent_rebuild`, in the rule companion's `impl`.
    pub methods: TokenStream,
    /// The rule companion of `f_grad` (`emit::nested`), whose pullback is `f_hvp`.
    pub nested: TokenStream,
    /// Whether `f` has a tangent program (`tangent_program` in its companion).
    pub program: bool,
}

/// Why a function has no tangent program, for the stubs' messages.
/// Why a function that calls another's gradient has none: it would be a third derivative.
const THIRD_ORDER: &str = "calls another function's gradient (`f_grad`), so its Hessian-vector product would need third derivatives, which `#[grad]` does not compute";

pub const NOT_YET: &str = "has no Hessian-vector product yet: second order covers floats, buffers of floats, ndarray arrays and structs of them, loops, branches, calls of other `#[grad]` functions (layers, helpers, methods), the array operations and runtime ops with a tangent rule (README, \"Second order\"); a constant view or field of a struct that meets a varying one in a branch has none yet";

pub fn emit(item: &ItemFn, func: &Func, plan: &Plan, names: &Names, shape: &Shape) -> Hvp {
    // A function returning an array (a layer) has no `f_hvp` of its own, only the
    // `tangent_forward` through which a caller's tangent program calls it.
    let layer = shape.returns_array();
    let program = (super::tangent::supported_on_scalars(func, plan)
        || super::tangent::supported_on_arrays(func, plan))
    .then(|| crate::ir::tangent::program(func, plan, names))
    .flatten()
    .and_then(|program| {
        let cx = crate::diag::Ctxt::new();
        let tplan = crate::analysis::analyse(&cx, &program);
        // Built from a function that passed every check, the program is refused
        // only where the builder has a gap; `f` then keeps the stubs.
        cx.check().ok().map(|()| (program, tplan))
    });
    let Some((program, tplan)) = program else {
        let why = if func.grad_calls.is_empty() {
            NOT_YET
        } else {
            THIRD_ORDER
        };
        if layer {
            return Hvp {
                free: quote!(),
                methods: shape.tangent_stub(why, false),
                nested: quote!(),
                program: false,
            };
        }
        return Hvp {
            free: shape.hvp_stub(None, why),
            methods: shape.tangent_stub(why, true),
            nested: shape.grad_companion(Some(why), false),
            program: false,
        };
    };

    // The tangent program's signature: `f`'s arguments, then one tangent per active one.
    let mut sig_item = item.clone();
    let tangents: Vec<&crate::ir::Param> = program.params[func.params.len()..].iter().collect();
    for p in &tangents {
        let (ident, ty) = (&p.ident, &p.ty);
        sig_item.sig.inputs.push(syn::parse_quote!(#ident: #ty));
    }
    let tshape = Shape {
        item: &sig_item,
        params: program
            .params
            .iter()
            .map(|p| ShapeParam {
                name: p.ident.clone(),
                ty: p.ty.clone(),
                active: p.active,
                tensor: p.kind == ParamKind::Tensor,
                elem: p.elem.clone(),
                strukt: p.kind == ParamKind::Struct,
            })
            .collect(),
        ret_ty: func.ret_ty.clone(),
        tensor: tplan.kinds.any_tensor(),
    };
    let body = |extra: Option<&crate::ir::Operand>| {
        let mut body_names = Names::new(sig_item.to_token_stream());
        for v in &program.vars {
            body_names.reserve(&v.name.to_string());
        }
        forward_body(&program, &tplan, body_names, &tshape, quote!(), extra).0
    };

    let mut own = Names::new(sig_item.to_token_stream());
    let mut local = |base: &str| own.fresh(base, proc_macro2::Span::call_site());
    let bare = |i: &syn::Ident| i.to_string().trim_start_matches("r#").to_string();
    let name = &item.sig.ident;
    let ret = &func.ret_ty;
    let generics = shape.generics();
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    // The functions that return a tape: one lifetime for the arguments' borrows.
    let tape_generics = super::shape::tape_generics(&generics);
    let (tape_impl_generics, _, _) = tape_generics.split_for_impl();
    let attrs = shape.carried_attrs();
    let vis = &item.vis;

    // f_hvp: value, then the pullback of the tangent at 1: ∂/∂x = H·v, ∂/∂v = ∇f.
    let (value, tangent, tape) = (local("__value"), local("__tangent"), local("__tape"));
    let mut slots = Vec::new();
    let mut hv_fields = Vec::new();
    let mut grad_fields = Vec::new();
    for p in &func.params {
        if p.active {
            let d = local(&format!("__hv_{}", bare(&p.ident)));
            slots.push(quote!(#d));
            let field = &p.ident;
            hv_fields.push(quote!(#field: #d));
        } else {
            slots.push(quote!(_));
        }
    }
    for (p, t) in func.params.iter().filter(|p| p.active).zip(&tangents) {
        let d = local(&format!("__grad_{}", bare(&t.ident)));
        slots.push(quote!(#d));
        let field = &p.ident;
        grad_fields.push(quote!(#field: #d));
    }
    let inputs = tshape.inputs();
    let inputs_hvp = inputs.clone();
    let inputs_taped = tshape.tape_signature().1;
    let hvp_args: Vec<syn::Ident> = program.params.iter().map(|p| p.ident.clone()).collect();
    let grad_ident = grad_struct_ident(item);
    let grad_ty = shape.grad_ty();
    let tangent_names: Vec<String> = tangents.iter().map(|p| format!("`{}`", p.ident)).collect();
    let doc = format!(
        "Value, gradient and Hessian-vector product of `{name}` along the direction {} (generated by `#[grad]`): `(f, ∇f, ∇²f·v)`, each of the gradient's type, by the reverse pass of `f`'s tangent program.",
        tangent_names.join(", ")
    );
    // Each direction has its argument's shape (a buffer's length, a struct's buffers,
    // arrays and lists), or `f_hvp` panics naming both, as `f_jvp` does.
    let checks: Vec<TokenStream> = func
        .params
        .iter()
        .filter(|p| p.active)
        .zip(&tangents)
        .filter_map(|(p, t)| {
            let (x, v) = (&p.ident, &t.ident);
            let (xs, vs) = (bare(x), bare(v));
            match p.kind {
                ParamKind::Buffer => Some(quote! {
                    ::backprop::__private::jvp::check_direction_len(#vs, #xs, #v.len(), #x.len());
                }),
                ParamKind::Tensor => {
                    let what = format!("hvp: the direction `{vs}` of `{xs}`");
                    Some(quote! {
                        ::backprop::__private::tangent::check_same(#what, #x.shape(), #v.shape());
                    })
                }
                ParamKind::Struct => {
                    let (arg, dir, list) = match &p.ty {
                        syn::Type::Reference(r) => (
                            quote!(#x),
                            quote!(#v),
                            matches!(*r.elem, syn::Type::Slice(_)),
                        ),
                        _ => (quote!(&#x), quote!(&#v), false),
                    };
                    // The reverse pass's checker, made by the same call on the same span
                    // (a struct that is not `Differentiable` is still one error).
                    let make = if list {
                        quote_spanned!(x.span()=> ::backprop::__private::zero_like_slice(#arg))
                    } else {
                        quote_spanned!(x.span()=> ::backprop::__private::zero_like(#arg))
                    };
                    Some(quote! {{
                        let (_, _, __backprop_check) = #make;
                        ::backprop::__private::jvp::direction_mismatch(#vs, #xs, __backprop_check(#dir, #arg, ""));
                    }})
                }
                _ => None,
            }
        })
        .collect();
    let program_body = body(Some(&func.ret));
    let program_tuple = tshape.tuple_ty();
    let tf = shape.turbofish();
    let f_hvp = format_ident!("{}_hvp", name, span = name.span());
    let free = quote! {
        #[doc = #doc]
        #(#attrs)*
        #[inline]
        #[allow(unused_variables, unused_assignments, unused_mut, unused_parens, unreachable_code, non_snake_case, clippy::all)]
        #vis fn #f_hvp #impl_generics (#inputs) -> (#ret, #grad_ty, #grad_ty) #where_clause {
            #(#checks)*
            let (#value, #tangent, #tape) = #name::tangent_program #tf (#(#hvp_args),*);
            let (#(#slots,)*) = ::backprop::__private::Pullback::backward(#tape, ::backprop::__private::one());
            (#value, #grad_ident { #(#grad_fields),* }, #grad_ident { #(#hv_fields),* })
        }
    };

    // tangent_forward: one tangent slot per argument (`impl` arguments, so a caller's
    // turbofish names the function's own generics only).
    let mut slot_inputs = Vec::new();
    let mut slot_names = Vec::new();
    let mut prologue = Vec::new();
    let mut widen_in = Vec::new();
    let mut widen_out = Vec::new();
    let mut tangent_iter = tangents.iter();
    for p in &func.params {
        let d = local(&format!("__d_{}", bare(&p.ident)));
        widen_in.push(quote!(#d));
        widen_out.push(quote!(#d));
        if !p.active {
            let slot = local("__slot");
            slot_inputs.push(quote!(#slot: impl ::core::marker::Sized));
            slot_names.push(quote!(#slot));
            continue;
        }
        let t = tangent_iter
            .next()
            .expect("one tangent per active argument");
        let (ident, ty) = (&t.ident, &t.ty);
        slot_names.push(quote!(#ident));
        if p.kind == ParamKind::Scalar {
            slot_inputs.push(quote!(#ident: impl ::backprop::__private::jvp::ScalarSlot<#ty>));
            prologue.push(
                quote!(let #ident: #ty = ::backprop::__private::jvp::ScalarSlot::tangent(#ident);),
            );
        } else {
            slot_inputs.push(quote!(#ident: #ty));
        }
    }
    for (k, p) in func.params.iter().enumerate() {
        if p.active {
            let d = local(&format!("__d_v{k}"));
            widen_in.push(quote!(#d));
            widen_out.push(quote!(#d));
        } else {
            widen_out.push(quote!(::backprop::__private::Inactive));
        }
    }
    let mut all_inputs = shape.named_inputs();
    all_inputs.extend(slot_inputs);
    let all_inputs = super::shape::taped_inputs(&all_inputs);
    let args = shape.arg_names();
    let grad_tuple = shape.tangent_grad_tuple();
    let before = local("__value");
    let primal = local("__primal");
    let hvp_doc = format!("Value, gradient and Hessian-vector product: `{name}_hvp`.");
    let hvp_method = (!layer).then(|| {
        quote! {
            #[doc = #hvp_doc]
            #[inline]
            #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
            #vis fn hvp #impl_generics (#inputs_hvp) -> (#ret, #grad_ty, #grad_ty) #where_clause {
                #f_hvp #tf (#(#hvp_args),*)
            }
        }
    });
    let methods = quote! {
        #hvp_method

        /// The tangent program's forward pass: the value, its tangent along the
        /// tangents `v..`, and the tape of the tangent (for `f_hvp` and
        /// `tangent_forward`). The value is typed as the result: that pins the type of
        /// a local only the tangent reads.
        #[inline]
        #[allow(unused_variables, unused_assignments, unused_mut, unused_parens, unreachable_code, non_snake_case, clippy::all)]
        #vis fn tangent_program #tape_impl_generics (#inputs_taped) -> (#ret, #ret, impl ::backprop::__private::Pullback<#ret, Grad = #program_tuple>) #where_clause {
            let (#primal, #value, #tape): (#ret, #ret, _) = { #program_body };
            (#primal, #value, #tape)
        }

        /// The tangent program: the tangent of the value along the given tangents,
        /// and its tape (how another function's `f_hvp` calls this one).
        #[inline]
        #[allow(unused_variables, unused_assignments, unused_mut, unused_parens, unreachable_code, non_snake_case, clippy::all)]
        #vis fn tangent_forward #tape_impl_generics (#(#all_inputs),*) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #grad_tuple>) #where_clause {
            #(#prologue)*
            let (#primal, #value, #tape) = #name::tangent_program #tf (#(#hvp_args),*);
            (#value, ::backprop::__private::map_grad(#tape, |(#(#widen_in,)*)| (#(#widen_out,)*)))
        }

        /// `tangent_forward` again from copies of its arguments (a checkpoint).
        #[inline]
        #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
        #vis fn tangent_rebuild #tape_impl_generics (#(#all_inputs,)* #before: #ret) -> (#ret, impl ::backprop::__private::Pullback<#ret, Grad = #grad_tuple>) #where_clause {
            #name::tangent_forward #tf (#(#args,)* #(#slot_names),*)
        }
    };
    if layer {
        return Hvp {
            free: quote!(),
            methods,
            nested: quote!(),
            program: true,
        };
    }
    let nested = shape.grad_companion(None, false);
    Hvp {
        free,
        methods,
        nested,
        program: true,
    }
}

impl Shape<'_> {
    /// `name: ty` per argument.
    fn named_inputs(&self) -> Vec<TokenStream> {
        self.params
            .iter()
            .map(|p| {
                let (n, ty) = (&p.name, &p.ty);
                quote!(#n: #ty)
            })
            .collect()
    }

    /// `f_hvp`'s inputs: the arguments, then `v_x: ty` per differentiated one.
    fn hvp_inputs(&self) -> Vec<TokenStream> {
        let mut inputs = self.named_inputs();
        for p in self.params.iter().filter(|p| p.active) {
            let v = format_ident!("v_{}", p.name.to_string().trim_start_matches("r#"));
            let ty = &p.ty;
            inputs.push(quote!(#v: #ty));
        }
        inputs
    }

    /// The cotangents `tangent_forward`'s tape returns: one per argument, then one per
    /// tangent slot (`Inactive` where the function does not differentiate).
    pub fn tangent_grad_tuple(&self) -> TokenStream {
        let args = self.params.iter().map(|p| {
            if p.active {
                p.grad_ty()
            } else {
                quote!(::backprop::__private::Inactive)
            }
        });
        let slots = self.params.iter().map(|p| {
            if p.active {
                p.grad_ty()
            } else {
                quote!(::backprop::__private::Inactive)
            }
        });
        quote!((#(#args,)* #(#slots,)*))
    }

    /// `tangent_forward` of a function with no tangent program: it panics, saying why
    /// (reached only from another function's `f_hvp`).
    /// With `hvp`, also the companion's `hvp` (a function returning a float).
    pub fn tangent_stub(&self, why: &str, hvp: bool) -> TokenStream {
        let name = &self.item.sig.ident;
        let vis = &self.item.vis;
        let ret = &self.ret_ty;
        let generics = self.generics();
        let mut inputs = self.named_inputs();
        for k in 0..self.params.len() {
            let slot = format_ident!("__slot{}", k);
            inputs.push(quote!(#slot: impl ::core::marker::Sized));
        }
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let grad_tuple = self.tangent_grad_tuple();
        let grad_ty = self.grad_ty();
        let hvp_inputs = self.hvp_inputs();
        let before = format_ident!("__value");
        let message = format!("`f_hvp`: `{name}` {why}");
        let hvp = hvp.then(|| {
            quote! {
                /// No Hessian-vector product: panics (see the message).
                #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
                #vis fn hvp #impl_generics (#(#hvp_inputs),*) -> (#ret, #grad_ty, #grad_ty) #where_clause {
                    ::core::panic!(#message)
                }
            }
        });
        quote! {
            /// No tangent program: panics (see the message).
            #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
            #vis fn tangent_forward #impl_generics (#(#inputs),*) -> (#ret, ::backprop::__private::Tape<fn(#ret) -> #grad_tuple>) #where_clause {
                ::core::panic!(#message)
            }

            #hvp

            /// No tangent program: panics (see the message).
            #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
            #vis fn tangent_rebuild #impl_generics (#(#inputs,)* #before: #ret) -> (#ret, ::backprop::__private::Tape<fn(#ret) -> #grad_tuple>) #where_clause {
                ::core::panic!(#message)
            }
        }
    }

    /// `f_hvp` of a function with no tangent program: deprecated (so a call says why at
    /// compile time), and it panics with the same sentence.
    /// With `body`, neither: the stub of a rejected function, whose error is reported.
    pub fn hvp_stub(&self, body: Option<TokenStream>, why: &str) -> TokenStream {
        let item = self.item;
        let name = &item.sig.ident;
        let f_hvp = format_ident!("{}_hvp", name, span = name.span());
        let vis = &item.vis;
        let ret = &self.ret_ty;
        let generics = self.generics();
        let (impl_generics, _, where_clause) = generics.split_for_impl();
        let inputs = self.hvp_inputs();
        let grad_ty = self.grad_ty();
        let attrs = self.carried_attrs();
        let message = format!("`{name}` {why}");
        let (deprecated, body) = match body {
            Some(body) => (quote!(), body),
            None => (
                quote!(#[deprecated(note = #message)]),
                quote!(::core::panic!(#message)),
            ),
        };
        quote! {
            /// Not available for this function (see the deprecation note).
            #(#attrs)*
            #deprecated
            #[allow(unused_variables, non_snake_case, clippy::too_many_arguments)]
            #vis fn #f_hvp #impl_generics (#(#inputs),*) -> (#ret, #grad_ty, #grad_ty) #where_clause {
                #body
            }
        }
    }
}
