//! `#[cfg(..)]` inside a `#[grad]` body.
//!
//! rustc strips a statement under a false `#[cfg]` from `f` *after* the macro ran, so
//! the macro sees every statement and cannot tell which ones `f` will keep. Instead of
//! guessing, it expands once per combination of the body's distinct conditions: each
//! expansion is the body with exactly the statements that combination keeps, and its
//! companions carry `#[cfg(all(c1, not(c2), ..))]`, so rustc compiles the one that
//! matches `f`. With no `#[cfg]` in the body nothing changes (one expansion, no
//! attribute).
//!
//! Covered: statements (`let`, expressions, items, macros) in any block of the body,
//! and `match` arms. The other places stable Rust takes a `#[cfg]` (an array or tuple
//! element, an argument, a field of a struct literal) are refused with an error there.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Attribute, Expr, Stmt};

/// At most this many distinct conditions (2⁴ = 16 expansions); more is refused.
pub const MAX_CONDITIONS: usize = 4;

/// The distinct `#[cfg(..)]` conditions of the body, in order of first appearance, or
/// the error on the first `#[cfg]` the macro cannot honour.
pub fn conditions(block: &syn::Block) -> Result<Vec<TokenStream>, syn::Error> {
    let mut c = Collect {
        conds: Vec::new(),
        error: None,
    };
    c.visit_block(block);
    if let Some(e) = c.error {
        return Err(e);
    }
    Ok(c.conds.into_iter().map(|(_, t)| t).collect())
}

/// The body as the combination `keep` sees it: statements and arms whose conditions
/// are all true stay (their `#[cfg]` removed), the others go.
pub fn prune(item: &syn::ItemFn, conds: &[TokenStream], keep: &[bool]) -> syn::ItemFn {
    let mut item = item.clone();
    Prune { conds, keep }.visit_block_mut(&mut item.block);
    item
}

/// `all(c1, not(c2), ..)` for the combination `keep`.
pub fn predicate(conds: &[TokenStream], keep: &[bool]) -> TokenStream {
    let parts = conds
        .iter()
        .zip(keep)
        .map(|(c, k)| if *k { quote!(#c) } else { quote!(not(#c)) });
    quote!(all(#(#parts),*))
}

/// Puts `#[cfg(pred)]` on every item of `tokens` except the function `skip` (the
/// original `f`, emitted once by the caller as written).
pub fn guard(tokens: TokenStream, pred: &TokenStream, skip: &syn::Ident) -> TokenStream {
    let file: syn::File = match syn::parse2(tokens.clone()) {
        Ok(f) => f,
        // Every expansion is a list of items; keep it visible rather than lose it.
        Err(e) => return e.to_compile_error(),
    };
    let attr: Attribute = syn::parse_quote!(#[cfg(#pred)]);
    let mut out = TokenStream::new();
    for mut item in file.items {
        if let syn::Item::Fn(f) = &item
            && f.sig.ident == *skip
        {
            continue;
        }
        match item_attrs_mut(&mut item) {
            Some(attrs) => {
                attrs.insert(0, attr.clone());
                item.to_tokens(&mut out);
            }
            None => out.extend(quote!(#[cfg(#pred)] const _: () = { #item };)),
        }
    }
    out
}

fn cfg_of(attr: &Attribute) -> Option<TokenStream> {
    if !attr.path().is_ident("cfg") {
        return None;
    }
    match &attr.meta {
        syn::Meta::List(l) => Some(l.tokens.clone()),
        _ => None,
    }
}

fn has_cfg(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg"))
}

struct Collect {
    conds: Vec<(String, TokenStream)>,
    error: Option<syn::Error>,
}

impl Collect {
    fn refuse_in<'e>(&mut self, elems: impl IntoIterator<Item = &'e Expr>) {
        for e in elems {
            let attrs = expr_attrs(e).map(Vec::as_slice).unwrap_or_default();
            if let Some(a) = attrs.iter().find(|a| a.path().is_ident("cfg")) {
                self.fail(
                    a,
                    "`#[cfg]` inside a `#[grad]` body is supported on statements and `match` arms: put the condition on the whole statement",
                );
            }
        }
    }

    fn add(&mut self, attrs: &[Attribute]) {
        for a in attrs {
            if !a.path().is_ident("cfg") {
                continue;
            }
            let Some(t) = cfg_of(a) else {
                self.fail(a, "`#[cfg]` takes a condition: `#[cfg(feature = \"x\")]`");
                continue;
            };
            let key = t.to_string();
            if self.conds.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if self.conds.len() == MAX_CONDITIONS {
                self.fail(
                    a,
                    format!(
                        "`#[grad]` expands once per combination of the body's `#[cfg]` conditions, and takes at most {MAX_CONDITIONS} distinct ones: move code under the others into helper functions (a `#[grad]` helper may have `#[cfg]` of its own)"
                    ),
                );
                continue;
            }
            self.conds.push((key, t));
        }
    }

    fn fail<T: ToTokens, M: std::fmt::Display>(&mut self, at: T, msg: M) {
        if self.error.is_none() {
            self.error = Some(syn::Error::new_spanned(at, msg));
        }
    }
}

impl<'a> Visit<'a> for Collect {
    fn visit_stmt(&mut self, s: &'a Stmt) {
        if let Some(attrs) = stmt_attrs(s) {
            self.add(attrs);
        }
        syn::visit::visit_stmt(self, s);
    }

    fn visit_arm(&mut self, arm: &'a syn::Arm) {
        self.add(&arm.attrs);
        syn::visit::visit_arm(self, arm);
    }

    // Where stable Rust accepts a `#[cfg]` on an expression that is not a statement
    // (an element, an argument), removing it would need a second kind of pruning.
    fn visit_expr_array(&mut self, e: &'a syn::ExprArray) {
        self.refuse_in(&e.elems);
        syn::visit::visit_expr_array(self, e);
    }

    fn visit_expr_tuple(&mut self, e: &'a syn::ExprTuple) {
        self.refuse_in(&e.elems);
        syn::visit::visit_expr_tuple(self, e);
    }

    fn visit_expr_call(&mut self, e: &'a syn::ExprCall) {
        self.refuse_in(&e.args);
        syn::visit::visit_expr_call(self, e);
    }

    fn visit_expr_method_call(&mut self, e: &'a syn::ExprMethodCall) {
        self.refuse_in(&e.args);
        syn::visit::visit_expr_method_call(self, e);
    }

    fn visit_field_value(&mut self, fv: &'a syn::FieldValue) {
        if let Some(a) = fv.attrs.iter().find(|a| a.path().is_ident("cfg")) {
            self.fail(
                a,
                "`#[cfg]` on a field of a struct literal is not supported inside a `#[grad]` body: put the condition on the whole statement",
            );
        }
        syn::visit::visit_field_value(self, fv);
    }
}

struct Prune<'c> {
    conds: &'c [TokenStream],
    keep: &'c [bool],
}

impl Prune<'_> {
    /// Whether all `#[cfg]`s in `attrs` hold under this combination.
    fn holds(&self, attrs: &[Attribute]) -> bool {
        attrs.iter().filter_map(cfg_of).all(|t| {
            let key = t.to_string();
            self.conds
                .iter()
                .position(|c| c.to_string() == key)
                .is_none_or(|k| self.keep[k])
        })
    }
}

impl VisitMut for Prune<'_> {
    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        b.stmts.retain_mut(|s| match stmt_attrs_mut(s) {
            Some(attrs) if has_cfg(attrs) => {
                let keep = self.holds(attrs);
                attrs.retain(|a| !a.path().is_ident("cfg"));
                keep
            }
            _ => true,
        });
        syn::visit_mut::visit_block_mut(self, b);
    }

    fn visit_expr_match_mut(&mut self, m: &mut syn::ExprMatch) {
        m.arms.retain_mut(|arm| {
            let keep = self.holds(&arm.attrs);
            arm.attrs.retain(|a| !a.path().is_ident("cfg"));
            keep
        });
        syn::visit_mut::visit_expr_match_mut(self, m);
    }
}

fn stmt_attrs(s: &Stmt) -> Option<&Vec<Attribute>> {
    match s {
        Stmt::Local(l) => Some(&l.attrs),
        Stmt::Macro(m) => Some(&m.attrs),
        Stmt::Item(i) => item_attrs(i),
        Stmt::Expr(e, _) => expr_attrs(e),
    }
}

fn stmt_attrs_mut(s: &mut Stmt) -> Option<&mut Vec<Attribute>> {
    match s {
        Stmt::Local(l) => Some(&mut l.attrs),
        Stmt::Macro(m) => Some(&mut m.attrs),
        Stmt::Item(i) => item_attrs_mut(i),
        Stmt::Expr(e, _) => expr_attrs_mut(e),
    }
}

/// syn has no accessor for the attributes of an item or an expression: one list of
/// variants each, read by both the shared and the mutable accessor.
macro_rules! attrs_accessors {
    ($ty:ident, $get:ident, $get_mut:ident, [$($v:ident),* $(,)?]) => {
        fn $get(x: &syn::$ty) -> Option<&Vec<Attribute>> {
            match x {
                $(syn::$ty::$v(x) => Some(&x.attrs),)*
                _ => None,
            }
        }
        fn $get_mut(x: &mut syn::$ty) -> Option<&mut Vec<Attribute>> {
            match x {
                $(syn::$ty::$v(x) => Some(&mut x.attrs),)*
                _ => None,
            }
        }
    };
}

attrs_accessors!(
    Item,
    item_attrs,
    item_attrs_mut,
    [
        Const,
        Enum,
        ExternCrate,
        Fn,
        ForeignMod,
        Impl,
        Macro,
        Mod,
        Static,
        Struct,
        Trait,
        TraitAlias,
        Type,
        Union,
        Use,
    ]
);

attrs_accessors!(
    Expr,
    expr_attrs,
    expr_attrs_mut,
    [
        Array, Assign, Async, Await, Binary, Block, Break, Call, Cast, Closure, Const, Continue,
        Field, ForLoop, Group, If, Index, Infer, Let, Lit, Loop, Macro, Match, MethodCall, Paren,
        Path, Range, RawAddr, Reference, Repeat, Return, Struct, Try, TryBlock, Tuple, Unary,
        Unsafe, While, Yield,
    ]
);
