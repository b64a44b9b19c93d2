//! The companions' view of a function's signature (`Shape`, one `ShapeParam` per
//! argument), shared by the real expansion and the fallback stubs: the gradient struct's
//! name, type and bounds, the cotangent tuple, the generics the companions add, the
//! attributes they carry, and the `Api` methods forwarding to them need.

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
    name_lifetimes(ty, "static", true)
}

/// `ty` with every elided or `'_` reference lifetime named `'__tape` (see
/// [`Shape::tape_signature`]).
fn with_tape_lifetime(ty: &syn::Type) -> syn::Type {
    name_lifetimes(ty, "__tape", false)
}

/// `ty` with its elided reference lifetimes and `'_` named `'name`, and, with `all`,
/// its named lifetimes too.
fn name_lifetimes(ty: &syn::Type, name: &str, all: bool) -> syn::Type {
    use syn::visit_mut::VisitMut;
    struct Namer<'n>(&'n str, bool);
    impl VisitMut for Namer<'_> {
        fn visit_lifetime_mut(&mut self, l: &mut syn::Lifetime) {
            if self.1 || l.ident == "_" {
                l.ident = syn::Ident::new(self.0, l.ident.span());
            }
        }
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.is_none() {
                r.lifetime = Some(syn::Lifetime::new(
                    &format!("'{}", self.0),
                    r.and_token.span,
                ));
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
        // ndarray's view aliases with their lifetime elided (`ArrayView2<f64>`), which
        // a signature with a returned `impl Trait` or a `'static` field cannot leave out.
        fn visit_path_segment_mut(&mut self, seg: &mut syn::PathSegment) {
            if is_view_alias(&seg.ident)
                && let syn::PathArguments::AngleBracketed(args) = &mut seg.arguments
                && !args
                    .args
                    .iter()
                    .any(|a| matches!(a, syn::GenericArgument::Lifetime(_)))
            {
                let l = syn::Lifetime::new(&format!("'{}", self.0), seg.ident.span());
                args.args.insert(0, syn::GenericArgument::Lifetime(l));
            }
            syn::visit_mut::visit_path_segment_mut(self, seg);
        }
    }
    let mut ty = ty.clone();
    Namer(name, all).visit_type_mut(&mut ty);
    ty
}

/// The type and const parameters of `generics` as arguments (`T, N`), in order, without
/// the lifetimes: what a turbofish or a `use<..>` bound names.
pub fn type_and_const_args(generics: &syn::Generics) -> Vec<TokenStream> {
    generics
        .params
        .iter()
        .filter_map(|p| match p {
            syn::GenericParam::Type(t) => Some(t.ident.to_token_stream()),
            syn::GenericParam::Const(c) => Some(c.ident.to_token_stream()),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect()
}

/// ndarray's type aliases whose first generic argument is a lifetime.
pub(super) fn is_view_alias(ident: &syn::Ident) -> bool {
    let name = ident.to_string();
    let rest = name
        .strip_prefix("ArrayViewMut")
        .or_else(|| name.strip_prefix("ArrayView"))
        .or_else(|| name.strip_prefix("CowArray"));
    rest.is_some_and(|r| matches!(r, "" | "0" | "1" | "2" | "3" | "4" | "5" | "6" | "D"))
}

/// `generics` with a first lifetime `'__tape` that each of its own lifetimes outlives:
/// the generics of a function that returns a tape, whose inputs are
/// [`taped_inputs`]. Every borrow the arguments hold is then `'__tape` or longer. A tape
/// that keeps a call's copies (`__private::Kept`) has in its type the lifetimes of the
/// call's other arguments, and an opaque `impl Pullback` may hold only lifetimes its
/// function names: an intersection of several elided ones is none of them, `'__tape` is.
pub fn tape_generics(generics: &syn::Generics) -> syn::Generics {
    let mut generics = generics.clone();
    let tape: syn::Lifetime = syn::parse_quote!('__tape);
    for l in generics.lifetimes_mut() {
        l.bounds.push(tape.clone());
    }
    generics.params.insert(
        0,
        syn::GenericParam::Lifetime(syn::LifetimeParam::new(tape)),
    );
    generics
}

/// Inputs (`name: ty`, `&self`) with every elided or `'_` reference lifetime named
/// `'__tape` (see [`tape_generics`]).
pub fn taped_inputs(inputs: &[TokenStream]) -> Vec<TokenStream> {
    inputs
        .iter()
        .map(|input| match syn::parse2::<syn::FnArg>(input.clone()) {
            Ok(syn::FnArg::Typed(mut pt)) => {
                *pt.ty = with_tape_lifetime(&pt.ty);
                pt.to_token_stream()
            }
            Ok(syn::FnArg::Receiver(mut r)) => {
                if let Some((and, lifetime @ None)) = &mut r.reference {
                    *lifetime = Some(syn::Lifetime::new("'__tape", and.span));
                }
                *r.ty = with_tape_lifetime(&r.ty);
                r.to_token_stream()
            }
            Err(_) => input.clone(),
        })
        .collect()
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
        let consts: Vec<&syn::Ident> = self
            .used_const_params()
            .into_iter()
            .map(|c| &c.ident)
            .collect();
        if used.is_empty() && consts.is_empty() {
            quote!(#ident)
        } else {
            quote!(#ident<#(#used,)* #(#consts,)*>)
        }
    }

    /// Const parameters of the function that appear in an active argument's type
    /// (`p: &S<N>`): the gradient struct's type names them too.
    pub(super) fn used_const_params(&self) -> Vec<&syn::ConstParam> {
        self.item
            .sig
            .generics
            .const_params()
            .filter(|cp| self.in_active_argument(&cp.ident))
            .collect()
    }

    /// Whether an active argument's type names `ident`.
    fn in_active_argument(&self, ident: &syn::Ident) -> bool {
        self.params.iter().any(|p| {
            p.active && crate::ir::idents(&p.ty.to_token_stream()).contains(&ident.to_string())
        })
    }

    /// Type parameters of the function that appear in an active argument's type.
    pub(super) fn used_type_params(&self) -> Vec<syn::Ident> {
        self.item
            .sig
            .generics
            .type_params()
            .filter(|tp| self.in_active_argument(&tp.ident))
            .map(|tp| tp.ident.clone())
            .collect()
    }

    /// The gradient struct's bounds, where a field's type needs them to be well-formed: a
    /// generic array's cotangent (`<Array1<T> as Value>::Cot` needs `T: Real`) or a
    /// generic struct (`Scale<T>` declared with `T: Real`). The function's own trait
    /// bounds on the struct's parameters, and `T: Real` for tensor code. Empty (no `where`
    /// at all) otherwise, as before.
    pub(super) fn grad_struct_where(&self, used: &[syn::Ident]) -> TokenStream {
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
            let dims = crate::ir::lower::dimension_type_params(&self.item.sig.generics);
            preds.extend(
                used.iter()
                    .filter(|t| !dims.contains(&t.to_string()))
                    .map(|t| quote!(#t: ::backprop::__private::Real)),
            );
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
    /// The generics and inputs of the companions that return a tape (`forward`,
    /// `f_forward`): see [`tape_generics`].
    pub(super) fn tape_signature(&self) -> (syn::Generics, TokenStream) {
        let inputs: Vec<TokenStream> = self
            .params
            .iter()
            .map(|p| {
                let (name, ty) = (&p.name, &p.ty);
                quote!(#name: #ty)
            })
            .collect();
        let inputs = taped_inputs(&inputs);
        (tape_generics(&self.generics()), quote!(#(#inputs),*))
    }

    pub(super) fn generics(&self) -> syn::Generics {
        let mut generics = self.item.sig.generics.clone();
        let strukt = self.params.iter().any(|p| p.active && p.strukt);
        if self.tensor || strukt {
            let floats = crate::ir::lower::float_type_params(&self.item.sig.generics);
            // A layer generic over its array's rank (`D: Dimension`): `D` is no float.
            let dims = crate::ir::lower::dimension_type_params(&self.item.sig.generics);
            let used: Vec<syn::Ident> = self
                .used_type_params()
                .into_iter()
                .filter(|t| {
                    (self.tensor || floats.contains(&t.to_string()))
                        && !dims.contains(&t.to_string())
                })
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
        let explicit = type_and_const_args(&self.item.sig.generics);
        let impl_trait_arg = self.item.sig.inputs.iter().any(
            |i| matches!(i, syn::FnArg::Typed(pt) if matches!(*pt.ty, syn::Type::ImplTrait(_))),
        );
        if explicit.is_empty() || impl_trait_arg {
            quote!()
        } else {
            quote!(::<#(#explicit),*>)
        }
    }
}

/// What methods that forward to the companions (`#[grad]` on an `impl`, `methods.rs`)
/// need to spell their signatures.
pub struct Api {
    /// The gradient struct's type, with its generic arguments (`ModelLossGrad<T>`).
    pub grad_ty: TokenStream,
    /// The bounds the companions add to the function's own (`T: Real` for tensor code).
    pub bounds: Vec<syn::WherePredicate>,
    /// The differentiated arguments, by name and type: `f_jvp` takes a tangent of each.
    pub active: Vec<(syn::Ident, syn::Type)>,
    /// Whether `f_jvp` is a real function (a layer's is refused where no operation
    /// order gives it a tangent), so a method may forward to it.
    pub jvp: bool,
    /// Whether the function passed every check, so the method as written gets the same
    /// rewrite as `f` (`plain.rs`).
    pub emitted: bool,
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
            active: self
                .params
                .iter()
                .filter(|p| p.active)
                .map(|p| (p.name.clone(), p.ty.clone()))
                .collect(),
            jvp: true,
            emitted: false,
        }
    }
}
