//! The signature: which arguments are floats, arrays, buffers or structs of
//! parameters (`ParamKind`), their element types, the return type, and the checks on the
//! function's qualifiers. The type-name predicates here are shared with the fallback
//! expansion and `#[custom_vjp]`.

use super::{Lowerer, pretty_type};
use crate::attr::GradArgs;
use crate::diag::Ctxt;
use crate::ir::{Param, ParamKind};
use proc_macro2::Ident;
use quote::ToTokens;
use std::collections::HashSet;
use syn::{BinOp, Expr, FnArg, ItemFn, Pat, ReturnType, Type};

pub(super) fn check_signature(cx: &Ctxt, item: &ItemFn) {
    let sig = &item.sig;
    let why = "`#[grad]` differentiates a plain free function (`fn f(a: f64, ...) -> f64`)";
    if let Some(t) = &sig.asyncness {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate an `async fn`: {why}"),
        );
    }
    if let Some(t) = &sig.unsafety {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate an `unsafe fn`: {why}"),
        );
    }
    if let Some(t) = &sig.abi {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate an `extern` function: {why}"),
        );
    }
    if let Some(t) = &sig.constness {
        cx.error_spanned_by(
            t,
            format!("`#[grad]` cannot differentiate a `const fn`: {why}"),
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(
            v,
            format!("`#[grad]` cannot differentiate a variadic function: {why}"),
        );
    }
}

impl Lowerer<'_> {
    fn is_float_type(&self, ty: &Type) -> bool {
        self.param_kind(ty) == ParamKind::Scalar && !matches!(ty, Type::Reference(_))
    }

    /// Classifies an argument's type by its spelling: floats, ndarray arrays (and
    /// references to them), everything else.
    fn param_kind(&self, ty: &Type) -> ParamKind {
        match ty {
            Type::Path(p) if p.qself.is_none() => {
                if let Some(i) = p.path.get_ident()
                    && (i == "f32" || i == "f64" || self.generics.contains(&i.to_string()))
                {
                    return ParamKind::Scalar;
                }
                let last = p
                    .path
                    .segments
                    .last()
                    .map(|s| s.ident.to_string())
                    .unwrap_or_default();
                if is_array_type_name(&last) {
                    // Token ids, labels, masks (`&Array2<usize>`, `Array1<bool>`): data.
                    if array_of_integers(p) {
                        ParamKind::Other
                    } else {
                        ParamKind::Tensor
                    }
                } else if last == "Vec" && self.buffer_elem(ty).is_some() {
                    ParamKind::Buffer
                } else if last == "Vec" && self.struct_elem(ty) {
                    // `Vec<Layer>`: a collection of structs of parameters.
                    ParamKind::Struct
                } else if is_struct_type_name(&last) && !self.type_params.contains(&last) {
                    ParamKind::Struct
                } else {
                    ParamKind::Other
                }
            }
            Type::Reference(r) if r.mutability.is_none() => match self.param_kind(&r.elem) {
                ParamKind::Tensor => ParamKind::Tensor,
                ParamKind::Buffer => ParamKind::Buffer,
                ParamKind::Struct => ParamKind::Struct,
                _ if matches!(&*r.elem, Type::Slice(_)) && self.buffer_elem(ty).is_some() => {
                    ParamKind::Buffer
                }
                _ if matches!(&*r.elem, Type::Slice(_)) && self.struct_elem(ty) => {
                    ParamKind::Struct
                }
                _ => ParamKind::Other,
            },
            Type::Array(_) if self.buffer_elem(ty).is_some() => ParamKind::Buffer,
            Type::Array(_) if self.struct_elem(ty) => ParamKind::Struct,
            Type::Paren(p) => self.param_kind(&p.elem),
            Type::Group(g) => self.param_kind(&g.elem),
            _ => ParamKind::Other,
        }
    }

    /// Whether `ty` is a collection of structs of parameters: `&[Layer]`, `Vec<Layer>`,
    /// `[Layer; N]` (and references to them).
    fn struct_elem(&self, ty: &Type) -> bool {
        collection_elem(ty).is_some_and(|e| self.param_kind(e) == ParamKind::Struct)
    }

    /// The float element type of a buffer type: `f64` for `&[f64]`, `&Vec<f64>`,
    /// `[f64; N]`, `Vec<f64>`.
    fn buffer_elem(&self, ty: &Type) -> Option<Type> {
        collection_elem(ty)
            .filter(|e| self.is_float_type(e))
            .cloned()
    }

    pub(super) fn return_type(&self, item: &ItemFn) -> Option<Type> {
        match &item.sig.output {
            ReturnType::Default => {
                self.cx.error_at(
                    item.sig.ident.span(),
                    "`#[grad]` differentiates a function that returns one float (`f32`, `f64` or a generic `T: Float`); this one returns nothing",
                );
                None
            }
            ReturnType::Type(_, ty) if self.is_float_type(ty) || is_primitive_float_path(ty) => {
                Some((**ty).clone())
            }
            // A layer: an owned ndarray array of floats (`Array2<f64>`, `Array<T, Ix3>`).
            ReturnType::Type(_, ty) if self.owned_array_elem(ty).is_some() => Some((**ty).clone()),
            ReturnType::Type(_, ty) => {
                self.cx.error_spanned_by(
                    ty,
                    format!(
                        "`#[grad]` differentiates a function that returns one float (`f32`, `f64` or a generic `T: Float`), the loss, or an owned ndarray array of floats (`Array2<f64>`, a layer); this one returns `{}`",
                        pretty_type(&ty.to_token_stream())
                    ),
                );
                None
            }
        }
    }

    /// The element type of an owned ndarray array of floats (`f64` for `Array2<f64>`,
    /// `T` for `Array<T, Ix2>`); `None` for anything else (views and references too).
    pub(super) fn owned_array_elem(&self, ty: &Type) -> Option<Type> {
        let Type::Path(p) = ty else { return None };
        let last = p.path.segments.last()?;
        let name = last.ident.to_string();
        if !(name == "Array"
            || name == "ArrayD"
            || name.starts_with("Array") && name[5..].parse::<u8>().is_ok())
        {
            return None;
        }
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        match args.args.first()? {
            syn::GenericArgument::Type(t) if self.is_float_type(t) => Some(t.clone()),
            _ => None,
        }
    }

    pub(super) fn params(&mut self, item: &ItemFn, args: &GradArgs) -> Vec<Param> {
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            let pt = match input {
                FnArg::Receiver(r) => {
                    self.cx.error_spanned_by(
                        r,
                        "`#[grad]` cannot differentiate a method taking `self`: write a free function and pass the value as an argument",
                    );
                    continue;
                }
                FnArg::Typed(pt) => pt,
            };
            let ident = match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
                other => {
                    self.cx.error_spanned_by(
                        other,
                        "`#[grad]` needs each argument to be a plain name (`x: f64` or `mut x: f64`); destructure inside the body",
                    );
                    continue;
                }
            };
            let kind = self.param_kind(&pt.ty);
            if let Type::Reference(r) = &*pt.ty
                && r.mutability.is_none()
                && self.is_float_type(&r.elem)
            {
                self.cx.error_spanned_by(
                    &pt.ty,
                    format!(
                        "`#[grad]` differentiates floats taken by value: write `{ident}: {}`; a `{}` argument would silently get no gradient",
                        r.elem.to_token_stream(),
                        pretty_type(&pt.ty.to_token_stream())
                    ),
                );
            }
            let var = self.new_var(ident.clone());
            self.param_vars.insert(var);
            self.claimed.insert(ident.to_string());
            self.scopes[0].insert(ident.to_string(), var);
            let elem = self
                .buffer_elem(&pt.ty)
                .filter(|_| kind == ParamKind::Buffer);
            if kind == ParamKind::Buffer {
                self.buffers.insert(var);
            }
            if kind == ParamKind::Struct {
                self.places.insert(var);
                self.struct_params.insert(var);
            }
            if kind == ParamKind::Tensor {
                self.tensor_params.insert(var);
            }
            if kind == ParamKind::Buffer && matches!(&*pt.ty, Type::Array(_)) {
                self.array_params.insert(var);
            }
            params.push(Param {
                ident,
                ty: (*pt.ty).clone(),
                kind,
                active: false,
                var,
                elem,
            });
        }
        // `x: &mut [f64]` would be data, silently: refused unless left out by name.
        let named: Option<Vec<String>> = args
            .active
            .as_ref()
            .map(|list| list.iter().map(|n| n.to_string()).collect());
        for p in &params {
            if named
                .as_ref()
                .is_none_or(|n| n.contains(&p.ident.to_string()))
                && self.mut_numeric(&p.ty)
                && let Type::Reference(r) = &p.ty
            {
                let elem = r.elem.to_token_stream().to_string().replace(' ', "");
                let x = &p.ident;
                let (take, copy) = if self.is_float_type(&r.elem) {
                    (format!("{x}: {elem}"), format!("`let mut h = {x};`"))
                } else if self.param_kind(&r.elem) == ParamKind::Tensor {
                    (
                        format!("{x}: &{elem}"),
                        format!("`let mut h = {x}.to_owned();`"),
                    )
                } else {
                    (
                        format!("{x}: &{elem}"),
                        format!("`let mut h = {x}.to_vec();`"),
                    )
                };
                self.cx.error_spanned_by(
                    &p.ty,
                    format!(
                        "`#[grad]` does not differentiate a `&mut` argument (a write into the caller's value has no gradient it can return): take `{take}`, copy it into a local to write to ({copy}), and return what the function computes; or leave `{x}` out of `#[grad(...)]` to keep it as data"
                    ),
                );
            }
        }
        match &args.active {
            None => {
                for p in &mut params {
                    p.active = p.kind != ParamKind::Other;
                    // A type the macro cannot see into is differentiated as a struct of
                    // parameters, unless the body treats it as data: an enum matched on
                    // or compared (`match mode { .. }`, `mode == Mode::Train`).
                    if p.kind == ParamKind::Struct && used_as_data(&item.block, &p.ident) {
                        p.active = false;
                    }
                    // A buffer of buffers would silently stay data.
                    let inner = match &p.ty {
                        Type::Reference(r) => &*r.elem,
                        other => other,
                    };
                    let nested = match inner {
                        Type::Slice(sl) => self.buffer_elem(&sl.elem).is_some(),
                        Type::Array(a) => self.buffer_elem(&a.elem).is_some(),
                        _ => false,
                    };
                    if nested {
                        self.cx.error_spanned_by(
                            &p.ty,
                            format!(
                                "`#[grad]` does not differentiate nested buffers (`{}`) yet: flatten it into one `&[f64]` (row-major), or name the differentiated arguments in `#[grad(...)]` to keep `{}` as data",
                                p.ty.to_token_stream().to_string().replace(' ', ""),
                                p.ident
                            ),
                        );
                    }
                }
            }
            Some(list) => {
                let mut seen: HashSet<String> = HashSet::new();
                for name in list {
                    if !seen.insert(name.to_string()) {
                        self.cx.error_spanned_by(
                            name,
                            format!("`{name}` is named twice in `#[grad(...)]`"),
                        );
                        continue;
                    }
                    match params.iter_mut().find(|p| p.ident == *name) {
                        None => {
                            let all: Vec<String> =
                                params.iter().map(|p| format!("`{}`", p.ident)).collect();
                            self.cx.error_spanned_by(
                                name,
                                format!(
                                    "`{name}` is not an argument of `{}`; `#[grad(...)]` names the arguments to differentiate, which are among: {}",
                                    item.sig.ident,
                                    if all.is_empty() { String::from("(none)") } else { all.join(", ") }
                                ),
                            );
                        }
                        Some(p) if self.mut_numeric(&p.ty) => {}
                        Some(p) if p.kind == ParamKind::Other => {
                            self.cx.error_spanned_by(
                                name,
                                format!(
                                    "`{name}` has type `{}`, which `#[grad]` cannot differentiate: active arguments are floats (`f32`, `f64` or a generic `T: Float`), buffers of floats (`&[f64]`, `&Vec<f32>`, `[f64; N]`) and ndarray arrays (`&Array2<f32>`, `ArrayView1<f64>`, ...); integers, bools and other data stay constants",
                                    p.ty.to_token_stream()
                                ),
                            );
                        }
                        Some(p) => p.active = true,
                    }
                }
            }
        }
        params
    }
}

impl Lowerer<'_> {
    /// `&mut` of a float, a buffer of floats or an ndarray array.
    fn mut_numeric(&self, ty: &Type) -> bool {
        let Type::Reference(r) = ty else { return false };
        if r.mutability.is_none() {
            return false;
        }
        let mut shared = r.clone();
        shared.mutability = None;
        matches!(
            self.param_kind(&Type::Reference(shared)),
            ParamKind::Buffer | ParamKind::Tensor
        ) || self.is_float_type(&r.elem)
    }
}

/// ndarray's array types, by the last segment of their path.
pub(crate) fn is_array_type_name(name: &str) -> bool {
    matches!(
        name,
        "Array"
            | "Array0"
            | "Array1"
            | "Array2"
            | "Array3"
            | "Array4"
            | "Array5"
            | "Array6"
            | "ArrayD"
            | "ArrayBase"
            | "ArrayView"
            | "ArrayView0"
            | "ArrayView1"
            | "ArrayView2"
            | "ArrayView3"
            | "ArrayView4"
            | "ArrayView5"
            | "ArrayView6"
            | "ArrayViewD"
            | "CowArray"
            | "ArcArray"
            | "ArcArray1"
            | "ArcArray2"
    )
}

/// `std::primitive::f64`, `core::primitive::f32`.
pub(super) fn is_primitive_float_path(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.len() > 1
        && p.path.segments.last().is_some_and(|s| s.arguments.is_empty() && (s.ident == "f32" || s.ident == "f64"))
        && p.path.segments.iter().rev().nth(1).is_some_and(|s| s.ident == "primitive"))
}

/// The type parameters that are floats: those bounded by a trait named `Float`, `Real`
/// or `Scalar` (`T: num_traits::Float`, `T: backprop::Real`), inline or in the where
/// clause. Other type parameters (labels, integers, containers) are data.
pub fn float_type_params(generics: &syn::Generics) -> HashSet<String> {
    type_params_bounded_by(generics, &["Float", "Real", "Scalar"])
}

/// The type parameters that are ndarray dimensions (`D: Dimension`, inline or in the
/// where clause): a layer generic over its array's rank. They are not floats, and get
/// no float bound.
pub fn dimension_type_params(generics: &syn::Generics) -> HashSet<String> {
    type_params_bounded_by(generics, &["Dimension"])
}

/// The type parameters bounded (inline or in the where clause) by a trait whose path
/// ends in one of `traits`.
fn type_params_bounded_by(generics: &syn::Generics, traits: &[&str]) -> HashSet<String> {
    let bounded = |b: &syn::TypeParamBound| match b {
        syn::TypeParamBound::Trait(t) => t
            .path
            .segments
            .last()
            .is_some_and(|s| traits.iter().any(|t| s.ident == t)),
        _ => false,
    };
    let mut out = HashSet::new();
    for tp in generics.type_params() {
        if tp.bounds.iter().any(bounded) {
            out.insert(tp.ident.to_string());
        }
    }
    if let Some(wc) = &generics.where_clause {
        for pred in &wc.predicates {
            if let syn::WherePredicate::Type(pt) = pred
                && let Type::Path(p) = &pt.bounded_ty
                && let Some(i) = p.path.get_ident()
                && pt.bounds.iter().any(bounded)
            {
                out.insert(i.to_string());
            }
        }
    }
    out
}

/// A type that names a struct of parameters: capitalised, and not one of the
/// standard containers or ndarray types `#[grad]` knows otherwise.
pub(crate) fn is_struct_type_name(name: &str) -> bool {
    name.starts_with(char::is_uppercase)
        && !is_array_type_name(name)
        && !matches!(
            name,
            "Vec"
                | "Option"
                | "Result"
                | "String"
                | "Box"
                | "Rc"
                | "Arc"
                | "HashMap"
                | "BTreeMap"
                | "HashSet"
                | "BTreeSet"
                | "VecDeque"
                | "Cow"
                | "Range"
                | "PhantomData"
                | "Self"
        )
}

/// Whether the body matches on `x` or compares it (`match x`, `matches!(x, ..)`,
/// `if let P = x`, `x == y`, `x != y`): what a program does with an enum or other data,
/// never with a struct of parameters.
pub(crate) fn used_as_data(body: &syn::Block, x: &Ident) -> bool {
    use syn::visit::Visit;
    struct Find<'a> {
        x: &'a Ident,
        found: bool,
    }
    impl Find<'_> {
        fn is_x(&self, e: &Expr) -> bool {
            match e {
                Expr::Path(p) => p.path.is_ident(self.x),
                Expr::Reference(r) => self.is_x(&r.expr),
                Expr::Paren(p) => self.is_x(&p.expr),
                Expr::Unary(u) if matches!(u.op, syn::UnOp::Deref(_)) => self.is_x(&u.expr),
                _ => false,
            }
        }
    }
    impl<'a> Visit<'a> for Find<'_> {
        fn visit_expr(&mut self, e: &'a Expr) {
            match e {
                Expr::Match(m) if self.is_x(&m.expr) => self.found = true,
                Expr::Let(l) if self.is_x(&l.expr) => self.found = true,
                Expr::Binary(b)
                    if matches!(b.op, BinOp::Eq(_) | BinOp::Ne(_))
                        && (self.is_x(&b.left) || self.is_x(&b.right)) =>
                {
                    self.found = true
                }
                Expr::Macro(m) if m.mac.path.is_ident("matches") => {
                    let first = m.mac.parse_body_with(|input: syn::parse::ParseStream<'_>| {
                        let e: Expr = input.parse()?;
                        let _: proc_macro2::TokenStream = input.parse()?;
                        Ok(e)
                    });
                    if first.is_ok_and(|e| self.is_x(&e)) {
                        self.found = true;
                    }
                }
                _ => {}
            }
            syn::visit::visit_expr(self, e);
        }
    }
    let mut f = Find { x, found: false };
    f.visit_block(body);
    f.found
}

/// The element type of a slice, array or `Vec` type (through references, parentheses
/// and invisible groups): `Layer` for `&[Layer]`, `f64` for `Vec<f64>`.
pub(crate) fn collection_elem(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => collection_elem(&r.elem),
        Type::Paren(p) => collection_elem(&p.elem),
        Type::Group(g) => collection_elem(&g.elem),
        Type::Slice(s) => Some(&s.elem),
        Type::Array(a) => Some(&a.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "Vec" {
                return None;
            }
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            match args.args.first()? {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether an array type's element type is an integer or `bool` (`Array2<usize>`,
/// `ArrayView1<'_, i64>`, `Array<u8, Ix2>`): ids and masks, never differentiated.
pub(crate) fn array_of_integers(p: &syn::TypePath) -> bool {
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(Type::Path(t)) => Some(
            t.path
                .get_ident()
                .is_some_and(|i| crate::ir::op::is_integer_type_name(&i.to_string())),
        ),
        syn::GenericArgument::Type(_) => Some(false),
        _ => None,
    }) == Some(true)
}
