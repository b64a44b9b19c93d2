//! Iterator chains over buffers (`x.iter().zip(&y).enumerate()`): recognised as
//! a `Chain`, then lowered as an index loop whose pattern is bound to the elements.

use super::Lowerer;
use proc_macro2::{Ident, Span};
use syn::{Expr, Pat};

impl Lowerer<'_> {
    /// An iterator over buffers: `x.iter()`, `x.iter().copied()`, `.enumerate()`,
    /// `.zip(y.iter())`, `.map(|v| ...)`. `bare` also accepts a buffer itself (`for v in
    /// x`, `for v in &x`).
    pub(super) fn chain(&self, e: &Expr, bare: bool) -> Option<Chain> {
        match e {
            Expr::Paren(p) => self.chain(&p.expr, bare),
            Expr::MethodCall(m) => match (m.method.to_string().as_str(), m.args.len()) {
                ("iter" | "into_iter", 0)
                    if self.is_buffer_expr(&m.receiver)
                        || self.is_local_path(&m.receiver)
                        || self.is_ndarray_expr(&m.receiver) =>
                {
                    Some(Chain::Elems((*m.receiver).clone()))
                }
                ("copied" | "cloned", 0) => self.chain(&m.receiver, false),
                ("enumerate", 0) => {
                    Some(Chain::Enumerate(Box::new(self.chain(&m.receiver, false)?)))
                }
                ("rev", 0) => Some(Chain::Rev(Box::new(self.chain(&m.receiver, false)?))),
                ("zip", 1) => Some(Chain::Zip(
                    Box::new(self.chain(&m.receiver, false)?),
                    Box::new(self.chain(&m.args[0], true)?),
                )),
                ("map", 1) => match &m.args[0] {
                    Expr::Closure(c) if c.inputs.len() == 1 => Some(Chain::Map(
                        Box::new(self.chain(&m.receiver, false)?),
                        c.clone(),
                    )),
                    _ => None,
                },
                _ => None,
            },
            _ if bare && (self.is_buffer_expr(e) || self.is_local_path(e)) => {
                Some(Chain::Elems(e.clone()))
            }
            // `for k in [1.0, 2.0, 3.0]`: the literal is bound to a local first.
            Expr::Array(_) | Expr::Repeat(_) if bare => Some(Chain::Elems(e.clone())),
            _ => None,
        }
    }

    /// In `x.iter().skip(1).sum()`, the first adaptor (from `iter`) that `chain` does
    /// not know, to name it in the error.
    pub(super) fn unsupported_adaptor<'m>(
        &self,
        m: &'m syn::ExprMethodCall,
    ) -> Option<&'m syn::ExprMethodCall> {
        let mut calls = vec![m];
        let mut cur = m;
        while let Expr::MethodCall(inner) = &*cur.receiver {
            calls.push(inner);
            cur = inner;
        }
        // The innermost call must be `iter`/`into_iter` on a buffer.
        let bottom = calls.pop()?;
        if !matches!(bottom.method.to_string().as_str(), "iter" | "into_iter")
            || !(self.is_buffer_expr(&bottom.receiver) || self.is_local_path(&bottom.receiver))
        {
            return None;
        }
        const ADAPTORS: &[&str] = &["copied", "cloned", "rev", "enumerate", "zip", "map"];
        // From `iter` outwards: adaptors, then a consumer ends the iterator (what comes
        // after works on its float result).
        for c in calls.into_iter().rev() {
            let name = c.method.to_string();
            if matches!(name.as_str(), "sum" | "product" | "fold") {
                return None;
            }
            if !ADAPTORS.contains(&name.as_str()) {
                return Some(c);
            }
        }
        None
    }

    /// Whether `v` (named `name`) is an ndarray array: an argument of an ndarray type,
    /// or a local last bound to an ndarray expression ([`Self::is_ndarray_expr`]).
    fn is_ndarray_var(&self, v: crate::ir::VarId, name: &str) -> bool {
        self.tensor_params.contains(&v)
            || !self.param_vars.contains(&v) && self.ndarray_names.contains(name)
    }

    /// Records whether local `name` is now bound to an ndarray array.
    pub(super) fn note_ndarray(&mut self, name: &str, array: bool) {
        if array {
            self.ndarray_names.insert(name.to_string());
        } else {
            self.ndarray_names.remove(name);
        }
    }

    /// Whether `e` is, by its syntax, an ndarray array: an ndarray argument or a local
    /// known as one; a method that makes an array (`dot`, `mapv`, `t`, `to_owned`, a
    /// view or reshape, `sum_axis`, ...), or an elementwise float method or arithmetic
    /// on such a value; a call of a `backprop::ops` function that returns one. Only
    /// what is surely an array: anything else (data slices, scalars, unknown calls) is
    /// left as it was.
    pub(super) fn is_ndarray_expr(&self, e: &Expr) -> bool {
        const MAKES_ARRAY: &[&str] = &[
            "dot",
            "mapv",
            "t",
            "reversed_axes",
            "select",
            "slice",
            "slice_axis",
            "index_axis",
            "row",
            "column",
            "insert_axis",
            "remove_axis",
            "permuted_axes",
            "into_shape_with_order",
            "to_shape",
            "sum_axis",
            "mean_axis",
            "var_axis",
            "std_axis",
            "fold_axis",
            "map_axis",
            "as_standard_layout",
        ];
        const KEEPS_ARRAY: &[&str] = &[
            "map",
            "to_owned",
            "clone",
            "view",
            "into_owned",
            "unwrap",
            "expect",
            "exp",
            "ln",
            "tanh",
            "sqrt",
            "abs",
            "powi",
            "powf",
            "clamp",
            "recip",
            "sin",
            "cos",
            "exp_m1",
            "ln_1p",
            "log2",
            "log10",
            "hypot",
            "log",
        ];
        const OPS: &[&str] = &[
            "layer_norm",
            "rms_norm",
            "softmax",
            "log_softmax",
            "softmax_causal",
            "softmax_masked",
            "attention",
            "embedding",
            "relu",
            "gelu",
            "gelu_exact",
            "silu",
            "sigmoid",
            "softplus",
            "dropout",
            "matmul",
        ];
        match e {
            Expr::Paren(p) => self.is_ndarray_expr(&p.expr),
            Expr::Group(g) => self.is_ndarray_expr(&g.expr),
            Expr::Reference(r) => self.is_ndarray_expr(&r.expr),
            Expr::Path(p) => p.path.get_ident().is_some_and(|i| {
                let name = i.to_string();
                self.lookup(&name)
                    .is_some_and(|v| self.is_ndarray_var(v, &name))
            }),
            Expr::MethodCall(m) => {
                let name = m.method.to_string();
                MAKES_ARRAY.contains(&name.as_str())
                    || KEEPS_ARRAY.contains(&name.as_str()) && self.is_ndarray_expr(&m.receiver)
            }
            Expr::Binary(b) => {
                use syn::BinOp::{Add, Div, Mul, Sub};
                matches!(b.op, Add(_) | Sub(_) | Mul(_) | Div(_))
                    && (self.is_ndarray_expr(&b.left) || self.is_ndarray_expr(&b.right))
            }
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => self.is_ndarray_expr(&u.expr),
            Expr::Call(c) => match &*c.func {
                Expr::Path(p) => p
                    .path
                    .segments
                    .last()
                    .is_some_and(|s| OPS.contains(&s.ident.to_string().as_str())),
                _ => false,
            },
            _ => false,
        }
    }

    fn is_local_path(&self, e: &Expr) -> bool {
        matches!(e, Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some_and(|i| self.lookup(&i.to_string()).is_some()))
    }

    /// `for pat in chain { body }` as the loop over indices it is:
    /// `for k in 0..x.len() { let pat = x[k]; body }`.
    pub(super) fn for_over_chain(
        &mut self,
        chain: Chain,
        pat: &Pat,
        body: &[syn::Stmt],
        span: Span,
    ) {
        // The elements of a buffer or an array are floats; one used as a collection is
        // an element of a list of buffers (`for row in &p.rows` of a `Vec<Vec<f64>>`).
        if let Pat::Ident(pi) = pat
            && let Some(at) = used_as_collection(&pi.ident, body)
        {
            let name = &pi.ident;
            self.cx.error_spanned_by(
                at,
                format!(
                    "`{name}` is used as a buffer, but the loop walks a buffer or an array of floats: `#[grad]` does not read a list of buffers (a `Vec<Vec<f64>>`) element by element; hold the rows in an ndarray array (`w: Array2<f64>`: `w.row(i)`, `w.dot(x)`), or make each row a struct with a `Vec<f64>` field (`rows: Vec<Row>`, then `for r in &p.rows {{ r.v.iter() .. }}`)"
                ),
            );
            return;
        }
        let chain = self.bind_sources(chain, span);
        let k = self.names.fresh("k", span);
        let len = chain.len();
        let elem = chain.elem(&syn::parse_quote!(#k));
        let Some(mut stmts) = bind_pattern(pat, &elem) else {
            self.cx.error_spanned_by(
                pat,
                "`#[grad]` supports a name (`v`, `&v`), `_` or a tuple of those (`(i, v)`, `(a, b)`) as the pattern of a loop over a buffer",
            );
            return;
        };
        stmts.extend(body.iter().cloned());
        let f: syn::ExprForLoop =
            syn::parse_quote_spanned!(span=> for #k in 0..#len { #(#stmts)* });
        self.for_loop(&f);
    }

    /// Binds every source of the chain that is not a plain name (`&z[a..b]`, `&x`) to
    /// a local, so the loop evaluates it once.
    fn bind_sources(&mut self, chain: Chain, span: Span) -> Chain {
        match chain {
            // `for v in a` over an array iterates a copy of it (the body may write `a`).
            Chain::Elems(Expr::Path(p))
                if p.path.get_ident().is_some_and(|i| {
                    self.lookup(&i.to_string())
                        .is_some_and(|v| self.is_array_valued(v))
                }) =>
            {
                let src = self.names.fresh("src", span);
                let local: syn::Stmt = syn::parse_quote_spanned!(span=> let #src = #p;);
                let syn::Stmt::Local(local) = local else {
                    unreachable!("a let")
                };
                self.local(&local);
                Chain::Elems(syn::parse_quote!(#src))
            }
            // An ndarray array (an array argument, or a local that is no buffer, such as
            // `let h = x.dot(w);`) is walked in row-major order through a flat 1-D copy
            // (`to_shape(..).unwrap().to_owned()`, whose rules put the cotangent back in
            // the array's shape), so `h.iter()` over a 2-D array reads `src[k]` as it does
            // over a buffer.
            Chain::Elems(Expr::Path(p))
                if p.path.get_ident().is_some_and(|i| {
                    let name = i.to_string();
                    self.lookup(&name)
                        .is_some_and(|v| self.is_ndarray_var(v, &name))
                }) =>
            {
                let src = self.names.fresh("src", span);
                let local: syn::Stmt = syn::parse_quote_spanned!(span=> let #src = #p.to_shape(#p.len()).unwrap().to_owned(););
                let syn::Stmt::Local(local) = local else {
                    unreachable!("a let")
                };
                self.local(&local);
                Chain::Elems(syn::parse_quote!(#src))
            }
            Chain::Elems(e) if matches!(e, Expr::Path(_)) => Chain::Elems(e),
            // `&x` of a named buffer iterates `x` itself: a local reference to an owned
            // argument would be captured beside the argument it borrows.
            Chain::Elems(Expr::Reference(r))
                if r.mutability.is_none() && matches!(&*r.expr, Expr::Path(_)) =>
            {
                self.bind_sources(Chain::Elems(*r.expr), span)
            }
            Chain::Elems(e) => {
                let src = self.names.fresh("src", span);
                let local: syn::Stmt =
                    if matches!(e, Expr::Reference(_)) || !self.is_buffer_expr(&e) {
                        syn::parse_quote_spanned!(span=> let #src = #e;)
                    } else {
                        syn::parse_quote_spanned!(span=> let #src = &#e;)
                    };
                let syn::Stmt::Local(local) = local else {
                    unreachable!("a let")
                };
                self.local(&local);
                // An array expression (`h.t().iter()`) is walked as the local it is
                // now bound to: through a flat copy.
                let src: Expr = syn::parse_quote!(#src);
                match self.is_ndarray_expr(&src) {
                    true => self.bind_sources(Chain::Elems(src), span),
                    false => Chain::Elems(src),
                }
            }
            Chain::Enumerate(c) => Chain::Enumerate(Box::new(self.bind_sources(*c, span))),
            Chain::Zip(a, b) => Chain::Zip(
                Box::new(self.bind_sources(*a, span)),
                Box::new(self.bind_sources(*b, span)),
            ),
            Chain::Map(c, f) => Chain::Map(Box::new(self.bind_sources(*c, span)), f),
            Chain::Rev(c) => Chain::Rev(Box::new(self.bind_sources(*c, span))),
        }
    }
}

/// An iterator over buffers, as `for` loops and `sum`/`fold` see it.
pub(super) enum Chain {
    /// The elements of a buffer (an expression naming it).
    Elems(Expr),
    /// `(index, element)`.
    Enumerate(Box<Chain>),
    /// `(a, b)`, as long as the shorter.
    Zip(Box<Chain>, Box<Chain>),
    /// The closure applied to each element.
    Map(Box<Chain>, syn::ExprClosure),
    /// Back to front.
    Rev(Box<Chain>),
}

impl Chain {
    fn len(&self) -> Expr {
        match self {
            Chain::Elems(e) => syn::parse_quote!(#e.len()),
            Chain::Enumerate(c) | Chain::Map(c, _) | Chain::Rev(c) => c.len(),
            Chain::Zip(a, b) => {
                let (a, b) = (a.len(), b.len());
                syn::parse_quote!(#a.min(#b))
            }
        }
    }

    /// The element at index `k`, as an expression (tuples for `enumerate`/`zip`).
    fn elem(&self, k: &Expr) -> Expr {
        match self {
            Chain::Elems(e) => syn::parse_quote!(#e[#k]),
            Chain::Rev(c) => {
                let len = c.len();
                c.elem(&syn::parse_quote!((#len - 1 - #k)))
            }
            Chain::Enumerate(c) => {
                let v = c.elem(k);
                syn::parse_quote!((#k, #v))
            }
            Chain::Zip(a, b) => {
                let (a, b) = (a.elem(k), b.elem(k));
                syn::parse_quote!((#a, #b))
            }
            Chain::Map(c, f) => {
                let v = c.elem(k);
                let body = &f.body;
                match bind_pattern(&f.inputs[0], &v) {
                    Some(stmts) => syn::parse_quote!({ #(#stmts)* #body }),
                    // Reported by the caller's pattern check on the same closure.
                    None => syn::parse_quote!({ #body }),
                }
            }
        }
    }
}

/// `let pat = value;` as `let`s of plain names: `&v` binds `v`, `(a, b)` against a
/// tuple expression binds each part, `_` binds nothing. `None` for other patterns.
pub(super) fn bind_pattern(pat: &Pat, value: &Expr) -> Option<Vec<syn::Stmt>> {
    // Every part is read before any name is bound, so a pattern `(y, x)` over elements
    // of buffers named `x` and `y` reads the buffers, not the new bindings.
    let mut leaves = Vec::new();
    pattern_leaves(pat, value, &mut leaves)?;
    if leaves.len() <= 1 {
        return Some(
            leaves
                .into_iter()
                .map(|(i, v)| syn::parse_quote!(let #i = #v;))
                .collect(),
        );
    }
    let temps: Vec<Ident> = leaves
        .iter()
        .map(|(i, _)| {
            quote::format_ident!("__backprop_elem_{}", i.to_string().trim_start_matches("r#"))
        })
        .collect();
    let mut out: Vec<syn::Stmt> = leaves
        .iter()
        .zip(&temps)
        .map(|((_, v), t)| syn::parse_quote!(let #t = #v;))
        .collect();
    out.extend(
        leaves
            .iter()
            .zip(&temps)
            .map(|((i, _), t)| -> syn::Stmt { syn::parse_quote!(let #i = #t;) }),
    );
    Some(out)
}

/// The names a pattern binds, each with the part of `value` it binds.
fn pattern_leaves(pat: &Pat, value: &Expr, out: &mut Vec<(Ident, Expr)>) -> Option<()> {
    match pat {
        Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
            out.push((pi.ident.clone(), value.clone()));
            Some(())
        }
        Pat::Reference(r) => pattern_leaves(&r.pat, value, out),
        Pat::Type(t) => pattern_leaves(&t.pat, value, out),
        Pat::Paren(p) => pattern_leaves(&p.pat, value, out),
        Pat::Wild(_) => Some(()),
        // An element that is itself a tuple (`for (x, y) in data` over `&[(f64, f64)]`):
        // its fields.
        Pat::Tuple(t) if !matches!(value, Expr::Tuple(_)) => {
            for (k, p) in t.elems.iter().enumerate() {
                let k = syn::Index::from(k);
                pattern_leaves(p, &syn::parse_quote!(#value.#k), out)?;
            }
            Some(())
        }
        Pat::Tuple(t) => {
            let Expr::Tuple(parts) = value else {
                return None;
            };
            if parts.elems.len() != t.elems.len() {
                return None;
            }
            for (p, v) in t.elems.iter().zip(parts.elems.iter()) {
                pattern_leaves(p, v, out)?;
            }
            Some(())
        }
        _ => None,
    }
}

/// The first use of `name` in `body` as a collection (`name.iter()`, `name.len()`,
/// `name[i]`, `for v in name`), if any.
fn used_as_collection(name: &Ident, body: &[syn::Stmt]) -> Option<proc_macro2::TokenStream> {
    use quote::ToTokens;
    use syn::visit::Visit;
    struct Find<'n> {
        name: &'n Ident,
        at: Option<proc_macro2::TokenStream>,
    }
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
            if self.at.is_none()
                && matches!(
                    m.method.to_string().as_str(),
                    "iter" | "len" | "into_iter" | "to_vec" | "is_empty"
                )
                && matches!(&*m.receiver, Expr::Path(p) if p.path.is_ident(self.name))
            {
                self.at = Some(m.to_token_stream());
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_index(&mut self, ix: &'ast syn::ExprIndex) {
            if self.at.is_none() && matches!(&*ix.expr, Expr::Path(p) if p.path.is_ident(self.name))
            {
                self.at = Some(ix.to_token_stream());
            }
            syn::visit::visit_expr_index(self, ix);
        }
        fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
            let mut e = &*f.expr;
            while let Expr::Reference(r) = e {
                e = &r.expr;
            }
            if self.at.is_none() && matches!(e, Expr::Path(p) if p.path.is_ident(self.name)) {
                self.at = Some(f.expr.to_token_stream());
            }
            syn::visit::visit_expr_for_loop(self, f);
        }
    }
    let mut f = Find { name, at: None };
    for s in body {
        f.visit_stmt(s);
    }
    f.at
}
