//! ndarray methods that need more than a table entry: a data argument written with a
//! macro (`s![..]`) or mentioning locals (`(b, t * d)`), a closure argument
//! (`fold_axis`, `map_axis`; `mapv` is in `mapv.rs`), a fused `.unwrap()`
//! (`into_shape_with_order`, `to_shape`, `ndarray::concatenate`/`stack`), the
//! `concatenate!`/`stack!` macros, and the refusal of writes through mutable views.

use super::{Lowerer, dummy};
use crate::ir::op::{self, MethodKind};
use crate::ir::{Operand, Rhs, Spelling};
use proc_macro2::{Group, Ident, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Expr, Pat};

/// ndarray's mutable views and in-place writes through them (refused, one message).
const MUT_VIEWS: &[&str] = &[
    "slice_mut",
    "slice_axis_mut",
    "index_axis_mut",
    "row_mut",
    "column_mut",
    "view_mut",
    "diag_mut",
    "axis_iter_mut",
    "lanes_mut",
    "rows_mut",
    "columns_mut",
    "iter_mut",
    "assign",
    "zip_mut_with",
    "mapv_inplace",
    "map_inplace",
];

const FOLD_FORMS: &str = "`#[grad]` differentiates `fold_axis`/`map_axis` only when they compute a max or a min along the axis: `x.fold_axis(Axis(k), f64::NEG_INFINITY, |&a, &b| a.max(b))` (with `f64::INFINITY` and `min` for a min), or `x.map_axis(Axis(k), |r| r.fold(f64::NEG_INFINITY, |a, &b| a.max(b)))`; for a sum or mean along an axis use `sum_axis`/`mean_axis(..).unwrap()`";

impl Lowerer<'_> {
    /// The ndarray methods lowered here, or `None` for the generic method path.
    pub(super) fn array_method(
        &mut self,
        m: &syn::ExprMethodCall,
        want: Option<&Ident>,
    ) -> Option<Operand> {
        if m.turbofish.is_some() {
            return None;
        }
        let name = m.method.to_string();
        if MUT_VIEWS.contains(&name.as_str()) {
            // Before the arguments are lowered: `s![..]` in them is fine, the write is not.
            self.cx.error_spanned_by(
                &m.method,
                format!(
                    "`.{name}()` writes into an array through a mutable view, which `#[grad]` does not differentiate; write elements of an array the function owns (`a[[i, j]] = v`, `a[[i, j]] += v`, `a.fill(v)`, in loops), or build the result from pieces (`concatenate`, `stack`, `select`, arithmetic with a mask array)"
                ),
            );
            return Some(dummy());
        }
        if let Some(zip) = zip_root(m)
            && self.mentions_active_param(m)
        {
            self.cx.error_spanned_by(
                zip,
                "`#[grad]` does not differentiate `ndarray::Zip`, whose closures write through references; write the elementwise computation on whole arrays: arithmetic with broadcasting (`&a * &b + &c`), `a.mapv(|v| ..)`, or element writes into an array the function owns in a loop (`out[[i, j]] = a[[i, j]] * b[[i, j]]`)",
            );
            return Some(dummy());
        }
        match (name.as_str(), m.args.len()) {
            ("unwrap" | "expect", _) => self.unwrapped(m, want),
            ("mapv", 1) => Some(self.mapv(m, want)),
            // The consuming forms are the view's copy: `x.slice_move(s![..])` is
            // `x.slice(s![..]).to_owned()`, `x.index_axis_move(a, i)` likewise.
            ("slice_move", 1) | ("index_axis_move", 2) => {
                let mut view = m.clone();
                let base = name.trim_end_matches("_move");
                view.method = Ident::new(base, m.method.span());
                let owned: Expr = syn::parse_quote_spanned!(m.span()=> #view.to_owned());
                Some(self.expr(&owned, want))
            }
            // ndarray's `map` hands the closure `&v`: the same as `mapv` with the
            // reference taken off (`|&v| ..`, or `*v` in the body).
            ("map", 1)
                if self.is_ndarray_expr(&m.receiver) || self.is_field_of_place(&m.receiver) =>
            {
                let as_mapv = map_as_mapv(m)?;
                Some(self.mapv(&as_mapv, want))
            }
            ("fold_axis", 3) => {
                Some(self.extreme_axis(m, &m.args[0], &m.args[1], &m.args[2], want))
            }
            ("map_axis", 2) => {
                let Some((init, f)) = map_axis_fold(&m.args[1]) else {
                    self.cx.error_spanned_by(&m.args[1], FOLD_FORMS);
                    return Some(dummy());
                };
                Some(self.extreme_axis(m, &m.args[0], init, f, want))
            }
            (
                "slice" | "slice_axis" | "index_axis" | "select" | "row" | "column" | "insert_axis"
                | "remove_axis" | "permuted_axes" | "var_axis" | "std_axis",
                _,
            ) if m.args.iter().any(|a| self.needs_data_lowering(a)) => {
                let MethodKind::Prim(prim) = op::method(&name, m.args.len() + 1) else {
                    return None;
                };
                let mut args = vec![self.receiver(&m.receiver, &m.method)];
                for a in &m.args {
                    args.push(self.data_arg(a));
                }
                Some(self.define(
                    want,
                    Rhs::Prim {
                        prim,
                        spelling: Spelling::Method(m.method.clone()),
                        args,
                    },
                    m.span(),
                ))
            }
            _ => None,
        }
    }

    /// Whether a method argument is data the generic path cannot lower: a macro
    /// (`s![..]`), or an expression other than a name that mentions a local.
    fn needs_data_lowering(&self, e: &Expr) -> bool {
        match e {
            Expr::Macro(_) => true,
            Expr::Path(p) if p.path.get_ident().is_some() => false,
            Expr::Lit(_) => false,
            _ => self.mentions_local(e),
        }
    }

    /// A data argument (an axis, an index, a slice, ids, a shape): a name is its value;
    /// anything else is kept as written, with the locals it reads renamed to their
    /// current versions, and evaluated again where a rule reads it (these are cheap
    /// and pure: `s![.., a..b]`, `Axis(k)`, `(n, d)`, `&ids`).
    pub(super) fn data_arg(&mut self, e: &Expr) -> Operand {
        match e {
            Expr::Path(p) if p.path.get_ident().is_some() => self.expr(e, None),
            Expr::Lit(_) => Operand::Const(e.clone()),
            _ if !self.mentions_local(e) => match e {
                Expr::Macro(_) => Operand::Const(e.clone()),
                _ => self.expr(e, None),
            },
            _ => {
                let ts = self.renamed(e.to_token_stream());
                match syn::parse2::<Expr>(ts) {
                    Ok(e) => Operand::Const(e),
                    Err(_) => {
                        self.cx
                            .error_spanned_by(e, "`#[grad]` could not read this argument");
                        dummy()
                    }
                }
            }
        }
    }

    /// `ts` with every local it names replaced by that local's current version.
    fn renamed(&self, ts: TokenStream) -> TokenStream {
        let toks: Vec<TokenTree> = ts.into_iter().collect();
        let punct = |k: usize, c: char| matches!(toks.get(k), Some(TokenTree::Punct(p)) if p.as_char() == c);
        let mut out = Vec::with_capacity(toks.len());
        for (k, tt) in toks.iter().enumerate() {
            match tt {
                TokenTree::Ident(i) => {
                    // `.len()` follows a dot; `..t` (a range) does not.
                    let after_dot = k >= 1 && punct(k - 1, '.') && !(k >= 2 && punct(k - 2, '.'));
                    let after_path = k >= 2 && punct(k - 1, ':') && punct(k - 2, ':');
                    let before_path = punct(k + 1, ':') || punct(k + 1, '!');
                    match self.lookup(&i.to_string()) {
                        Some(v) if !after_dot && !after_path && !before_path => {
                            let mut name = self.vars[v.0].name.clone();
                            name.set_span(i.span());
                            out.push(TokenTree::Ident(name));
                        }
                        _ => out.push(tt.clone()),
                    }
                }
                TokenTree::Group(g) => {
                    let mut ng = Group::new(g.delimiter(), self.renamed(g.stream()));
                    ng.set_span(g.span());
                    out.push(TokenTree::Group(ng));
                }
                _ => out.push(tt.clone()),
            }
        }
        out.into_iter().collect()
    }

    /// `x.into_shape_with_order(s).unwrap()`, `x.to_shape(s).unwrap()`, and
    /// `ndarray::concatenate(axis, &[..]).unwrap()` / `stack(..)`: one operation each.
    fn unwrapped(&mut self, m: &syn::ExprMethodCall, want: Option<&Ident>) -> Option<Operand> {
        let tail = {
            let method = &m.method;
            let margs = &m.args;
            quote!(.#method(#margs))
        };
        match &*m.receiver {
            Expr::MethodCall(inner)
                if inner.turbofish.is_none()
                    && inner.args.len() == 1
                    && (inner.method == "into_shape_with_order" || inner.method == "to_shape") =>
            {
                let shape = &inner.args[0];
                if let Some(order) = column_major(shape) {
                    self.cx.error_spanned_by(
                        order,
                        format!("`#[grad]` differentiates `.{}(..)` in row-major order only (the default, `Order::RowMajor`); reshape a `.t()` or `.permuted_axes(..)` view instead", inner.method),
                    );
                    return Some(dummy());
                }
                let name = format!("{}_unwrap", inner.method);
                let MethodKind::Prim(prim) = op::method(&name, 2) else {
                    unreachable!("reshapes are in the table")
                };
                let args = vec![
                    self.receiver(&inner.receiver, &inner.method),
                    self.data_arg(shape),
                ];
                Some(self.define(
                    want,
                    Rhs::Prim {
                        prim,
                        spelling: Spelling::MethodUnwrap(inner.method.clone(), tail),
                        args,
                    },
                    m.span(),
                ))
            }
            Expr::Call(c) => {
                let stack = join_kind(c)?;
                if c.args.len() != 2 {
                    return None;
                }
                let arrays = match &c.args[1] {
                    Expr::Reference(r) => match &*r.expr {
                        Expr::Array(a) => a.elems.iter().cloned().collect::<Vec<_>>(),
                        _ => {
                            self.cx.error_spanned_by(&c.args[1], JOIN_FORMS);
                            return Some(dummy());
                        }
                    },
                    _ => {
                        self.cx.error_spanned_by(&c.args[1], JOIN_FORMS);
                        return Some(dummy());
                    }
                };
                Some(self.join(stack, &c.args[0], &arrays, m.span(), want))
            }
            _ => None,
        }
    }

    /// `ndarray::concatenate(..)` / `stack(..)` called without `.unwrap()`.
    pub(super) fn bare_join(&mut self, c: &syn::ExprCall) -> Option<Operand> {
        join_kind(c)?;
        self.cx.error_spanned_by(c, JOIN_FORMS);
        Some(dummy())
    }

    /// `concatenate![axis, a, b]`, `stack![axis, a, b]`.
    pub(super) fn join_macro(
        &mut self,
        m: &syn::ExprMacro,
        want: Option<&Ident>,
    ) -> Option<Operand> {
        let last = m.mac.path.segments.last()?.ident.to_string();
        let stack = match last.as_str() {
            "concatenate" => false,
            "stack" => true,
            _ => return None,
        };
        let parsed = m
            .mac
            .parse_body_with(syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated);
        let Ok(list) = parsed else {
            self.cx.error_spanned_by(m, JOIN_FORMS);
            return Some(dummy());
        };
        let list: Vec<Expr> = list.into_iter().collect();
        if list.len() < 2 {
            self.cx.error_spanned_by(m, JOIN_FORMS);
            return Some(dummy());
        }
        Some(self.join(stack, &list[0], &list[1..], m.span(), want))
    }

    fn join(
        &mut self,
        stack: bool,
        axis: &Expr,
        arrays: &[Expr],
        span: proc_macro2::Span,
        want: Option<&Ident>,
    ) -> Operand {
        let Some(prim) = op::join(stack, arrays.len()) else {
            self.cx.error_spanned_by(
                axis,
                format!(
                    "`#[grad]` joins 1 to {} arrays with `concatenate`/`stack`; this call joins {}: join in steps",
                    op::MAX_JOIN,
                    arrays.len()
                ),
            );
            return dummy();
        };
        let mut args = vec![self.data_arg(axis)];
        for a in arrays {
            args.push(self.expr(a, None));
        }
        let (path, what) = if stack {
            (quote!(::backprop::__private::tensor::stack), "stack")
        } else {
            (
                quote!(::backprop::__private::tensor::concatenate),
                "concatenate",
            )
        };
        self.define(
            want,
            Rhs::Prim {
                prim,
                spelling: Spelling::Join(path, what.to_string()),
                args,
            },
            span,
        )
    }

    /// `fold_axis`/`map_axis` computing a max or a min: `max_axis(&x, axis)`.
    fn extreme_axis(
        &mut self,
        m: &syn::ExprMethodCall,
        axis: &Expr,
        init: &Expr,
        f: &Expr,
        want: Option<&Ident>,
    ) -> Operand {
        let Some(kind) = extreme_kind(init, f) else {
            self.cx.error_spanned_by(quote!(#init, #f), FOLD_FORMS);
            return dummy();
        };
        let x = self.receiver(&m.receiver, &m.method);
        let span = m.span();
        let r = self.define(
            None,
            Rhs::Prim {
                prim: op::REF,
                spelling: Spelling::Ref,
                args: vec![x],
            },
            span,
        );
        let axis = self.data_arg(axis);
        let MethodKind::Prim(prim) = op::method(kind, 2) else {
            unreachable!("max_axis and min_axis are in the table")
        };
        let path = syn::Ident::new(kind, span);
        self.define(
            want,
            Rhs::Prim {
                prim,
                spelling: Spelling::Path(syn::parse_quote!(::backprop::__private::tensor::#path)),
                args: vec![r, axis],
            },
            span,
        )
    }
}

const JOIN_FORMS: &str = "`#[grad]` differentiates `ndarray::concatenate(axis, &[a.view(), b.view()]).unwrap()`, `ndarray::stack(axis, &[..]).unwrap()` and the macros `concatenate![axis, a, b]`, `stack![axis, a, b]`, with the arrays listed in the call";

impl Lowerer<'_> {
    /// Whether `m` names a differentiated argument anywhere in it.
    fn mentions_active_param(&self, m: &syn::ExprMethodCall) -> bool {
        super::any_ident(m.to_token_stream(), &mut |i| {
            self.active_params.contains(&i.to_string())
        })
    }
}

/// The `Zip::from(..)`/`Zip::indexed(..)` call a method chain starts from, if it does.
fn zip_root(m: &syn::ExprMethodCall) -> Option<&syn::ExprCall> {
    let mut e = &*m.receiver;
    loop {
        match strip(e) {
            Expr::MethodCall(inner) => e = &inner.receiver,
            Expr::Call(c) => {
                let Expr::Path(p) = &*c.func else { return None };
                let segs = &p.path.segments;
                return (segs.len() >= 2 && segs[segs.len() - 2].ident == "Zip").then_some(c);
            }
            _ => return None,
        }
    }
}

/// `x.map(|&v| body)` or `x.map(|v| body)` reading `*v`, as `x.mapv(|v| body)` with the
/// dereferences taken off; `None` (the generic path, which refuses it) for any other
/// argument.
fn map_as_mapv(m: &syn::ExprMethodCall) -> Option<syn::ExprMethodCall> {
    use syn::visit_mut::VisitMut;
    let Expr::Closure(c) = strip(&m.args[0]) else {
        return None;
    };
    if c.inputs.len() != 1 {
        return None;
    }
    let pat = match &c.inputs[0] {
        Pat::Type(pt) => &*pt.pat,
        other => other,
    };
    let param = match pat {
        Pat::Reference(r) => match &*r.pat {
            Pat::Ident(i) if i.by_ref.is_none() && i.subpat.is_none() => i.ident.clone(),
            _ => return None,
        },
        Pat::Ident(i) if i.by_ref.is_none() && i.subpat.is_none() => i.ident.clone(),
        _ => return None,
    };
    struct Deref<'a>(&'a Ident);
    impl VisitMut for Deref<'_> {
        fn visit_expr_mut(&mut self, e: &mut Expr) {
            if let Expr::Unary(u) = e
                && matches!(u.op, syn::UnOp::Deref(_))
                && matches!(strip(&u.expr), Expr::Path(p) if p.path.is_ident(self.0))
            {
                *e = (*u.expr).clone();
                return;
            }
            syn::visit_mut::visit_expr_mut(self, e);
        }
    }
    let mut body = (*c.body).clone();
    Deref(&param).visit_expr_mut(&mut body);
    // Only arithmetic on the element is `mapv`'s; a cast, a comparison, a branch, the
    // element itself or a constant stay ndarray's `map` (data, or refused by the
    // generic path).
    if !super::mapv::is_elementwise_arithmetic(&body, &param) {
        return None;
    }
    let mut out = m.clone();
    out.method = Ident::new("mapv", m.method.span());
    out.args =
        std::iter::once::<Expr>(syn::parse_quote_spanned!(c.span()=> |#param| #body)).collect();
    Some(out)
}

pub(super) fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

/// `concatenate`/`stack` called by a path naming ndarray's (`ndarray::stack`, or a bare
/// name): `Some(is_stack)`.
fn join_kind(c: &syn::ExprCall) -> Option<bool> {
    let Expr::Path(p) = &*c.func else { return None };
    let segs = op::segments(&p.path);
    let last = segs.last()?;
    if segs.len() > 1 && segs[segs.len() - 2] != "ndarray" {
        return None;
    }
    match last.as_str() {
        "concatenate" => Some(false),
        "stack" => Some(true),
        _ => None,
    }
}

/// `(shape, Order::ColumnMajor)`: the order argument, if it is not row-major.
fn column_major(shape: &Expr) -> Option<&Expr> {
    let Expr::Tuple(t) = strip(shape) else {
        return None;
    };
    if t.elems.len() != 2 {
        return None;
    }
    let Expr::Path(p) = strip(&t.elems[1]) else {
        return None;
    };
    let segs = op::segments(&p.path);
    let last = segs.last()?.as_str();
    let is_order = segs.len() >= 2 && segs[segs.len() - 2] == "Order";
    (is_order && !matches!(last, "RowMajor" | "C")).then_some(&t.elems[1])
}

/// `|r| r.fold(init, f)` (also over `r.iter()`, `.copied()`, `.cloned()`).
fn map_axis_fold(arg: &Expr) -> Option<(&Expr, &Expr)> {
    let Expr::Closure(c) = strip(arg) else {
        return None;
    };
    if c.inputs.len() != 1 {
        return None;
    }
    let r = match &c.inputs[0] {
        Pat::Ident(i) => i.ident.to_string(),
        Pat::Type(pt) => match &*pt.pat {
            Pat::Ident(i) => i.ident.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    let body = match strip(&c.body) {
        Expr::Block(b) if b.block.stmts.len() == 1 => match &b.block.stmts[0] {
            syn::Stmt::Expr(e, None) => e,
            _ => return None,
        },
        e => e,
    };
    let Expr::MethodCall(fold) = strip(body) else {
        return None;
    };
    if fold.method != "fold" || fold.args.len() != 2 {
        return None;
    }
    let mut recv = strip(&fold.receiver);
    while let Expr::MethodCall(inner) = recv {
        if !inner.args.is_empty()
            || !matches!(
                inner.method.to_string().as_str(),
                "iter" | "copied" | "cloned" | "into_iter"
            )
        {
            return None;
        }
        recv = strip(&inner.receiver);
    }
    let Expr::Path(p) = recv else { return None };
    if !p.path.is_ident(&r) {
        return None;
    }
    Some((&fold.args[0], &fold.args[1]))
}

/// `"max_axis"` for `(−∞, |a, b| a.max(b))`, `"min_axis"` for `(∞, |a, b| a.min(b))`.
fn extreme_kind(init: &Expr, f: &Expr) -> Option<&'static str> {
    let Expr::Closure(c) = strip(f) else {
        return None;
    };
    if c.inputs.len() != 2 {
        return None;
    }
    fn name(p: &Pat) -> Option<String> {
        match p {
            Pat::Ident(i) => Some(i.ident.to_string()),
            Pat::Reference(r) => name(&r.pat),
            Pat::Type(t) => name(&t.pat),
            _ => None,
        }
    }
    let (a, b) = (name(&c.inputs[0])?, name(&c.inputs[1])?);
    let body: String = c
        .body
        .to_token_stream()
        .to_string()
        .chars()
        .filter(|ch| !ch.is_whitespace() && *ch != '*')
        .collect();
    let body = body.trim_start_matches('{').trim_end_matches('}');
    let kind = ["max", "min"].into_iter().find(|k| {
        let forms = [
            format!("{a}.{k}({b})"),
            format!("{b}.{k}({a})"),
            format!("({a}).{k}({b})"),
        ];
        forms.iter().any(|f| body == f)
            || ["f64", "f32", "Float", "T", "A"].iter().any(|o| {
                body == format!("{o}::{k}({a},{b})") || body == format!("{o}::{k}({b},{a})")
            })
    })?;
    let init: String = init
        .to_token_stream()
        .to_string()
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    let negative = init.ends_with("NEG_INFINITY")
        || init.ends_with("neg_infinity()")
        || (init.starts_with('-') && (init.ends_with("INFINITY") || init.ends_with("infinity()")));
    let positive = !negative && (init.ends_with("::INFINITY") || init.ends_with("::infinity()"));
    match kind {
        "max" if negative => Some("max_axis"),
        "min" if positive => Some("min_axis"),
        _ => None,
    }
}
