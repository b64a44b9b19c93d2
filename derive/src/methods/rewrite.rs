//! The rewriting of a `#[grad]` method's body into a free function's: `self` →
//! `self_`, `Self` → the self type, calls of the impl's other `#[grad]` functions → calls
//! of their free functions.

use super::free_name;
use crate::names::SELF_ARG;
use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote_spanned};
use syn::Type;
use syn::visit_mut::VisitMut;

/// `self` → `self_`, `Self` → the self type, calls of the impl's `#[grad]` functions →
/// calls of their free functions.
pub(super) struct Rewrite<'a> {
    pub self_ty: &'a Type,
    pub self_name: &'a syn::Ident,
    pub siblings: &'a [(syn::Ident, bool)],
    /// Arguments of type `&Self`: method calls on them are calls like `self.f(..)`.
    pub receivers: &'a [syn::Ident],
}

impl Rewrite<'_> {
    /// `self`, or an argument of type `&Self` (possibly in parentheses).
    fn is_receiver(&self, e: &syn::Expr) -> bool {
        match e {
            syn::Expr::Path(p) => {
                p.qself.is_none()
                    && p.path
                        .get_ident()
                        .is_some_and(|i| i == "self" || self.receivers.iter().any(|r| r == i))
            }
            syn::Expr::Paren(p) => self.is_receiver(&p.expr),
            _ => false,
        }
    }

    /// The self type as a path usable in expressions too (`Model::<T>`).
    fn self_path(&self) -> Option<syn::Path> {
        let Type::Path(p) = self.self_ty else {
            return None;
        };
        let mut path = p.path.clone();
        for seg in &mut path.segments {
            if let syn::PathArguments::AngleBracketed(a) = &mut seg.arguments {
                a.colon2_token = Some(Default::default());
            }
        }
        Some(path)
    }

    /// `Self::f` or `Model::f` (no generic arguments on `f`) naming a `#[grad]` function
    /// of the impl: its free function.
    fn sibling_path(&self, path: &syn::ExprPath) -> Option<syn::Ident> {
        if path.qself.is_some() || path.path.leading_colon.is_some() {
            return None;
        }
        let segs = &path.path.segments;
        if segs.len() != 2 || !segs[1].arguments.is_none() {
            return None;
        }
        let owner = &segs[0].ident;
        if owner != "Self" && owner != self.self_name {
            return None;
        }
        let name = &segs[1].ident;
        self.siblings
            .iter()
            .any(|(s, _)| s == name)
            .then(|| free_name(self.self_name, name))
    }

    /// `loss_grad` of a `#[grad]` function `loss` of the impl (with a receiver when
    /// `method`): the free function's `__Model_loss_grad`, whose value and gradient
    /// another `#[grad]` function may differentiate.
    fn sibling_grad(&self, name: &syn::Ident, method: bool) -> Option<syn::Ident> {
        let n = name.to_string();
        let base = n.strip_suffix("_grad")?;
        self.siblings
            .iter()
            .any(|(s, r)| s == base && (*r || !method))
            .then(|| {
                let free = free_name(self.self_name, &syn::Ident::new(base, name.span()));
                quote::format_ident!("{}_grad", free, span = name.span())
            })
    }
}

impl VisitMut for Rewrite<'_> {
    fn visit_expr_mut(&mut self, e: &mut syn::Expr) {
        match e {
            // `self.loss_grad(x)` → `__Model_loss_grad(self, x)`: a gradient the caller
            // differentiates (`ir::lower::nested`).
            syn::Expr::MethodCall(m)
                if m.turbofish.is_none()
                    && self.is_receiver(&m.receiver)
                    && self.sibling_grad(&m.method, true).is_some() =>
            {
                let f = self.sibling_grad(&m.method, true).expect("checked");
                let receiver = &m.receiver;
                let args = m.args.iter();
                let attrs = &m.attrs;
                let span = m.method.span();
                *e = syn::parse_quote_spanned!(span=> #(#attrs)* #f(#receiver, #(#args),*));
            }
            // `self.layer(x)` → `__Model_layer(self, x)` (then `self` → `self_`).
            syn::Expr::MethodCall(m)
                if m.turbofish.is_none()
                    && self.is_receiver(&m.receiver)
                    && self.siblings.iter().any(|(s, r)| *r && *s == m.method) =>
            {
                let f = free_name(self.self_name, &m.method);
                let receiver = &m.receiver;
                let args = m.args.iter();
                let attrs = &m.attrs;
                let span = m.method.span();
                *e = syn::parse_quote_spanned!(span=> #(#attrs)* #f(#receiver, #(#args),*));
            }
            // `Self::norm(&h)`, `Model::layer(self, x)` → `__Model_norm(&h)`, ...
            syn::Expr::Call(c) => {
                if let syn::Expr::Path(p) = &*c.func
                    && let Some(f) = self.sibling_path(p)
                {
                    *c.func = syn::parse_quote_spanned!(f.span()=> #f);
                } else if let syn::Expr::Path(p) = &*c.func
                    && p.qself.is_none()
                    && p.path.segments.len() == 2
                    && p.path.segments[1].arguments.is_none()
                    && (p.path.segments[0].ident == "Self"
                        || p.path.segments[0].ident == *self.self_name)
                    && let Some(f) = self.sibling_grad(&p.path.segments[1].ident, false)
                {
                    // `Self::norm_grad(&h)` → `__Model_norm_grad(&h)`.
                    *c.func = syn::parse_quote_spanned!(f.span()=> #f);
                }
            }
            _ => {}
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }

    fn visit_type_mut(&mut self, t: &mut Type) {
        if let Type::Path(p) = t
            && p.qself.is_none()
            && p.path.leading_colon.is_none()
            && p.path.segments.first().is_some_and(|s| s.ident == "Self")
        {
            if p.path.segments.len() == 1 {
                *t = self.self_ty.clone();
                return;
            }
            // `Self::Assoc` → `<Model<T>>::Assoc`.
            let rest: Vec<_> = p.path.segments.iter().skip(1).cloned().collect();
            let ty = self.self_ty;
            *t = syn::parse_quote!(<#ty>::#(#rest)::*);
            return;
        }
        syn::visit_mut::visit_type_mut(self, t);
    }

    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        if path.leading_colon.is_none() {
            let first = path.segments.first().map(|s| s.ident.to_string());
            match first.as_deref() {
                // `self` (a value); `self::m::f` is a module path and stays.
                Some("self") if path.segments.len() == 1 => {
                    let span = path.segments[0].ident.span();
                    path.segments[0].ident = syn::Ident::new(SELF_ARG, span);
                }
                // `Self::new()`, `Self { .. }` → `Model::<T>::new()`, `Model::<T> { .. }`.
                Some("Self") => {
                    if let Some(mut p) = self.self_path() {
                        p.segments.extend(path.segments.iter().skip(1).cloned());
                        *path = p;
                    }
                }
                _ => {}
            }
        }
        syn::visit_mut::visit_path_mut(self, path);
    }

    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        m.tokens = self.rewrite_tokens(m.tokens.clone());
        syn::visit_mut::visit_macro_mut(self, m);
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {
        // An item declared in the body has its own `self`/`Self` (or none).
    }
}

impl Rewrite<'_> {
    /// In a macro's tokens (`assert!(self.w > 0.0)`): `self` → `self_` and `Self` → the
    /// self type, unless a path continues after them.
    fn rewrite_tokens(&self, tokens: TokenStream) -> TokenStream {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut out = TokenStream::new();
        for (k, t) in trees.iter().enumerate() {
            let path_follows = matches!(
                (trees.get(k + 1), trees.get(k + 2)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':'
            );
            match t {
                TokenTree::Ident(i) if i == "self" && !path_follows => {
                    out.extend(syn::Ident::new(SELF_ARG, i.span()).into_token_stream());
                }
                TokenTree::Ident(i) if i == "Self" => {
                    let ty = self.self_ty;
                    out.extend(if path_follows {
                        quote_spanned!(i.span()=> <#ty>)
                    } else {
                        quote_spanned!(i.span()=> #ty)
                    });
                }
                TokenTree::Group(g) => {
                    let mut ng =
                        proc_macro2::Group::new(g.delimiter(), self.rewrite_tokens(g.stream()));
                    ng.set_span(g.span());
                    out.extend(TokenTree::Group(ng).into_token_stream());
                }
                other => out.extend(other.to_token_stream()),
            }
        }
        out
    }
}
