//! On rejection, still emit a plausible expansion: the original function, stub
//! companions with the right signatures, and the errors. Call sites of `f_grad` and
//! friends then type-check, so the user sees only the real error, not a cascade of
//! "cannot find function `f_grad`".

use crate::emit::{Shape, ShapeParam};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use syn::{FnArg, ItemFn, Pat, ReturnType};

/// The stub expansion, and the signature facts methods forwarding to the stubs need.
pub fn expand(
    item: &ItemFn,
    active: Option<&[syn::Ident]>,
    errors: Vec<syn::Error>,
) -> (TokenStream, crate::emit::Api) {
    let errors = errors.into_iter().map(|e| e.to_compile_error());
    let params: Vec<ShapeParam> = item
        .sig
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(k, input)| match input {
            FnArg::Receiver(_) => None,
            FnArg::Typed(pt) => {
                let (name, plain) = match &*pt.pat {
                    Pat::Ident(pi) => (pi.ident.clone(), true),
                    _ => (format_ident!("arg{}", k), false),
                };
                let is_float = is_float(item, &pt.ty);
                // A struct of parameters (`p: &Mlp`, a method's `self_`): its stub
                // gradient keeps the field call sites read (`g.p`), as lowering decides
                // (a type that is matched on or compared is data).
                let receiver = plain
                    && is_struct(item, &pt.ty)
                    && (name == crate::names::SELF_ARG
                        || !crate::ir::lower::used_as_data(&item.block, &name));
                // A buffer of floats (`&[f64]`): its stub gradient is the `Vec` call
                // sites index (`g.x[0]`). An array: its owned array (for a generic float
                // type, the stub companions then carry `T: backprop::Real`, as an
                // accepted function's do).
                let elem = buffer_elem(item, &pt.ty).filter(|_| plain);
                let tensor = plain && is_array(&pt.ty);
                let differentiable = is_float || receiver || elem.is_some() || tensor;
                let is_active = plain
                    && match active {
                        Some(list) => differentiable && list.contains(&name),
                        None => differentiable,
                    };
                Some(ShapeParam {
                    name,
                    ty: (*pt.ty).clone(),
                    active: is_active,
                    tensor,
                    elem,
                    strukt: receiver,
                })
            }
        })
        .collect();
    let ret_ty: syn::Type = match &item.sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => syn::parse_quote!(()),
    };
    let tensor = params.iter().any(|p| p.active && p.tensor);
    let shape = Shape {
        item,
        params,
        ret_ty,
        tensor,
    };
    let r = &shape.ret_ty;
    let grad_ty = shape.grad_ty();
    let tuple_ty = shape.tuple_ty();
    let stub = quote!(::backprop::__private::rejected());
    // `!` coerces to every return type, `impl Pullback` included (it names a concrete
    // tape type so the opaque type has a defining use).
    let forward_body = quote! {
        if true { #stub } else { (#stub, ::backprop::__private::Tape::new(|_: #r| -> #tuple_ty { #stub })) }
    };
    let fwd_pub = quote! {
        if true { #stub } else { (#stub, ::backprop::__private::Tape::new(|_: #r| -> #grad_ty { #stub })) }
    };
    let (tangent_methods, hvp) = if shape.returns_array() {
        (
            shape.tangent_stub("has an error, reported where it is", false),
            quote!(),
        )
    } else {
        (
            shape.tangent_stub("has an error, reported where it is", true),
            shape.hvp_stub(Some(stub.clone()), ""),
        )
    };
    let companions = shape.companions(
        forward_body,
        Some((stub.clone(), fwd_pub, stub.clone(), stub.clone())),
        false,
        Some((
            syn::Ident::new("__tangents", proc_macro2::Span::call_site()),
            stub,
        )),
        tangent_methods,
    );
    let nested = shape.grad_companion(Some("has an error, reported where it is"), true);
    // The stubs cannot use the arguments: silence that, only the real errors remain.
    let out = quote! {
        #(#errors)*
        #item
        #companions
        #hvp
        #nested
    };
    (out, shape.api())
}

fn is_float(item: &ItemFn, ty: &syn::Type) -> bool {
    let floats = crate::ir::lower::float_type_params(&item.sig.generics);
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p
            .path
            .get_ident()
            .is_some_and(|i| i == "f32" || i == "f64" || floats.contains(&i.to_string())),
        _ => false,
    }
}

/// `Mlp`, `&Mlp`, `&nn::Model<T>`: a named type that is not a float, an array, a `Vec` or
/// a type parameter (lowering's `ParamKind::Struct`).
fn is_struct(item: &ItemFn, ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => is_struct(item, &r.elem),
        syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last().is_some_and(|s| {
            let name = s.ident.to_string();
            crate::ir::lower::is_struct_type_name(&name)
                && !item.sig.generics.type_params().any(|t| t.ident == name)
        }),
        _ => false,
    }
}

/// The float element of `&[f64]`, `&Vec<f32>`, `[f64; N]`, `Vec<T>` (T a float).
fn buffer_elem(item: &ItemFn, ty: &syn::Type) -> Option<syn::Type> {
    crate::ir::lower::collection_elem(ty)
        .filter(|e| is_float(item, e))
        .cloned()
}

/// An ndarray array, view or a reference to one, of floats (an array of integers or
/// `bool` is data, as lowering decides).
fn is_array(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => is_array(&r.elem),
        syn::Type::Path(p) if p.qself.is_none() => {
            p.path
                .segments
                .last()
                .is_some_and(|s| crate::ir::lower::is_array_type_name(&s.ident.to_string()))
                && !crate::ir::lower::array_of_integers(p)
        }
        _ => false,
    }
}
