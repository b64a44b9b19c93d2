//! syn → syn rewriting before lowering: `break`/`continue` into flags that guard
//! the rest of the body, `return` from inside loops into a loop value, and a `for` over a
//! list of structs into an index loop.

use super::{Lowerer, pretty};
use proc_macro2::Ident;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, Pat, Type};

/// ndarray's iterators over an array's rows, columns or lanes along an axis.
const ARRAY_LANE_ITERATORS: &[&str] = &[
    "outer_iter",
    "rows",
    "columns",
    "axis_iter",
    "lanes",
    "axis_chunks_iter",
    "axis_windows",
    "exact_chunks",
    "indexed_iter",
];

/// What a `for` over a list of structs may be written as (the message of a refusal).
const STRUCT_LOOP_FORMS: &str = "a `for` over a list of structs of parameters is differentiated when written `for l in &p.layers`, `p.layers.iter()`, a part `&p.layers[1..]`, with `.rev()` and/or `.enumerate()` (`for (i, l) in p.layers.iter().enumerate()`); for another order or to walk two lists together, loop over the indices: `for i in 0..p.layers.len() { let l = &p.layers[i]; .. }`";

impl Lowerer<'_> {
    /// A `for` over an array's lanes (`for row in h.outer_iter()`, `h.rows()
    /// .into_iter().enumerate()`): refused with the index loop to write instead. `true`
    /// when refused (the loop is then not lowered).
    pub(super) fn refuse_array_lanes(&self, f: &syn::ExprForLoop) -> bool {
        let mut e = &*f.expr;
        loop {
            match e {
                Expr::MethodCall(m)
                    if ARRAY_LANE_ITERATORS.contains(&m.method.to_string().as_str())
                        && self.is_ndarray_expr(&m.receiver) =>
                {
                    let h = pretty(&m.receiver.to_token_stream());
                    self.cx.error_spanned_by(
                        &f.expr,
                        format!("`#[grad]` does not differentiate a `for` over an array's lanes (`.{}()`); loop over the indices, `for i in 0..{h}.nrows() {{ let row = {h}.row(i); .. }}` (`{h}.index_axis(Axis(k), i)` for another axis, `{h}[i]` for a 1-D array), or write the operation on the whole array", m.method),
                    );
                    return true;
                }
                Expr::MethodCall(m) => e = &m.receiver,
                Expr::Reference(r) => e = &r.expr,
                Expr::Paren(p) => e = &p.expr,
                _ => return false,
            }
        }
    }

    /// `for layer in &p.layers { .. layer.w .. }` (also `p.layers.iter()`, with `.rev()`
    /// and `.enumerate()` in either order) over a collection of structs of parameters:
    /// the index loop it means, `for i in 0..p.layers.len() { let layer = &p.layers[i];
    /// .. }` (`(0..n).rev()` for `.rev()`; after `.rev()`, `.enumerate()` counts from 0
    /// in the reversed order), whose `layer` is a place (its adjoint is
    /// `d_p.layers[i]`). Recognised when the loop variable's fields are read (a float
    /// has none). Another adaptor on such a loop is refused here, with the forms above
    /// (it would otherwise fail later, at the first field read, with a message about
    /// fields); the refused loop is lowered as an empty one, so nothing else errs.
    pub(super) fn struct_collection_loop(
        &mut self,
        f: &syn::ExprForLoop,
    ) -> Option<syn::ExprForLoop> {
        let names: Vec<Ident> = match &*f.pat {
            Pat::Ident(pi) => vec![pi.ident.clone()],
            Pat::Tuple(t) => t
                .elems
                .iter()
                .filter_map(|p| match p {
                    Pat::Ident(i) => Some(i.ident.clone()),
                    _ => None,
                })
                .collect(),
            _ => return None,
        };
        if !names
            .iter()
            .any(|n| self.field_bases.contains(&n.to_string()))
        {
            return None;
        }
        let span = f.span();
        let refuse = |this: &mut Self| {
            this.cx.error_spanned_by(&f.expr, STRUCT_LOOP_FORMS);
            Some(syn::parse_quote_spanned! {span=> for _ in 0..0 {} })
        };
        // The adaptors, outermost first, down to the collection.
        let mut adaptors = Vec::new();
        let mut e = &*f.expr;
        let coll = loop {
            match e {
                Expr::MethodCall(m)
                    if m.args.is_empty() && (m.method == "rev" || m.method == "enumerate") =>
                {
                    adaptors.push(m.method.to_string());
                    e = &m.receiver;
                }
                Expr::MethodCall(m) if m.method == "iter" && m.args.is_empty() => {
                    break &*m.receiver;
                }
                Expr::Reference(r) if r.mutability.is_none() && adaptors.is_empty() => {
                    break &*r.expr;
                }
                // `.zip(..)`, `.skip(n)`, `.step_by(k)`, .. over the list.
                Expr::MethodCall(_) => return refuse(self),
                other if adaptors.is_empty() => break other,
                _ => return refuse(self),
            }
        };
        // `&p.layers[a..b]`: the elements `a..b` of the list (`a` defaults to 0, `b` to
        // its length).
        let mut coll = coll;
        while let Expr::Paren(p) = coll {
            coll = &p.expr;
        }
        let (coll, lo, hi): (&Expr, Option<Expr>, Option<Expr>) = match coll {
            Expr::Index(ix) if self.is_place_expr(&ix.expr) => match &*ix.index {
                Expr::Range(r) => {
                    let base = &*ix.expr;
                    let hi = r.end.as_deref().map(|e| match r.limits {
                        syn::RangeLimits::HalfOpen(_) => e.clone(),
                        syn::RangeLimits::Closed(_) => syn::parse_quote_spanned!(span=> (#e) + 1),
                    });
                    (base, r.start.as_deref().cloned(), hi)
                }
                _ => (coll, None, None),
            },
            _ => (coll, None, None),
        };
        if !self.is_place_expr(coll) {
            return if adaptors.is_empty() {
                None
            } else {
                refuse(self)
            };
        }
        let lo: Expr = lo.unwrap_or_else(|| syn::parse_quote_spanned!(span=> 0));
        let hi: Expr = hi.unwrap_or_else(|| syn::parse_quote_spanned!(span=> #coll.len()));
        adaptors.reverse();
        let rev = adaptors.iter().position(|a| a == "rev");
        let enumerate = adaptors.iter().position(|a| a == "enumerate");
        if adaptors.len() != usize::from(rev.is_some()) + usize::from(enumerate.is_some()) {
            return refuse(self);
        }
        let (index, elem) = match (&*f.pat, enumerate) {
            (Pat::Ident(pi), None) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                (None, pi.ident.clone())
            }
            (Pat::Tuple(t), Some(_)) if t.elems.len() == 2 => {
                let Pat::Ident(x) = &t.elems[1] else {
                    return refuse(self);
                };
                let i = match &t.elems[0] {
                    Pat::Ident(i) => Some(i.ident.clone()),
                    Pat::Wild(_) => None,
                    _ => return refuse(self),
                };
                (i, x.ident.clone())
            }
            _ => return refuse(self),
        };
        let k = self.names.fresh("layer_index", span);
        let stmts = &f.body.stmts;
        let label = &f.label;
        // `.enumerate()` before `.rev()` numbers the elements in the collection's order
        // (the index is k); after it, in the reversed order.
        let counted = match (index, rev, enumerate) {
            (Some(i), Some(r), Some(e)) if r < e => {
                quote::quote!(let #i = (#hi) - 1 - #k;)
            }
            (Some(i), _, _) => quote::quote!(let #i = #k - (#lo);),
            (None, _, _) => quote::quote!(),
        };
        let range: Expr = if rev.is_some() {
            syn::parse_quote_spanned!(span=> ((#lo)..(#hi)).rev())
        } else {
            syn::parse_quote_spanned!(span=> (#lo)..(#hi))
        };
        Some(syn::parse_quote_spanned! {span=>
            #label for #k in #range {
                #counted
                let #elem = &#coll[#k];
                #(#stmts)*
            }
        })
    }
}

/// The flags a loop's `break`/`continue` become.
pub(super) struct JumpFlags {
    pub(super) done: Option<Ident>,
    pub(super) skip: Option<Ident>,
    pub(super) out: Option<Ident>,
}

impl JumpFlags {
    /// `!done && !skip`: the loop body goes on.
    fn running(&self) -> Expr {
        match (&self.done, &self.skip) {
            (Some(d), Some(s)) => syn::parse_quote!(!#d && !#s),
            (Some(d), None) => syn::parse_quote!(!#d),
            (None, Some(s)) => syn::parse_quote!(!#s),
            (None, None) => syn::parse_quote!(true),
        }
    }
}

/// Finds the `break`/`continue` of one loop (not of loops nested in it, nor inside
/// closures), and the ones it cannot rewrite.
#[derive(Default)]
pub(super) struct JumpFinder {
    pub(super) breaks: bool,
    pub(super) continues: bool,
    pub(super) break_value: bool,
    /// The values of this loop's `break value`s.
    pub(super) break_values: Vec<Expr>,
    pub(super) labelled: Vec<proc_macro2::TokenStream>,
    pub(super) in_expression: Vec<proc_macro2::TokenStream>,
}

impl<'ast> Visit<'ast> for JumpFinder {
    fn visit_expr_break(&mut self, b: &'ast syn::ExprBreak) {
        if b.label.is_some() {
            self.labelled.push(b.to_token_stream());
        }
        self.breaks = true;
        self.break_value |= b.expr.is_some();
        self.break_values.extend(b.expr.as_deref().cloned());
        syn::visit::visit_expr_break(self, b);
    }
    fn visit_expr_continue(&mut self, c: &'ast syn::ExprContinue) {
        if c.label.is_some() {
            self.labelled.push(c.to_token_stream());
        }
        self.continues = true;
    }
    fn visit_expr_for_loop(&mut self, f: &'ast syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        self.labelled_inside(&f.body);
    }
    fn visit_expr_while(&mut self, w: &'ast syn::ExprWhile) {
        self.visit_expr(&w.cond);
        self.labelled_inside(&w.body);
    }
    fn visit_expr_loop(&mut self, l: &'ast syn::ExprLoop) {
        self.labelled_inside(&l.body);
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_block(&mut self, b: &'ast syn::Block) {
        for st in &b.stmts {
            match st {
                syn::Stmt::Expr(e, _) if statement_position(e) => self.visit_expr(e),
                syn::Stmt::Expr(e, _) => self.in_expression_check(e),
                syn::Stmt::Local(l) => {
                    if let Some(init) = &l.init {
                        self.in_expression_check(&init.expr);
                    }
                }
                other => syn::visit::visit_stmt(self, other),
            }
        }
    }
}

impl JumpFinder {
    /// A nested loop's own jumps are its business; only labelled ones could reach out.
    fn labelled_inside(&mut self, body: &syn::Block) {
        let mut inner = JumpFinder::default();
        inner.visit_block(body);
        self.labelled.extend(inner.labelled);
        self.in_expression.extend(inner.in_expression);
    }

    /// A jump inside an expression (`let x = if c { break } else { 1.0 };`).
    fn in_expression_check(&mut self, e: &Expr) {
        let mut inner = JumpFinder::default();
        inner.visit_expr(e);
        if inner.breaks || inner.continues {
            self.in_expression.push(e.to_token_stream());
        }
        self.labelled.extend(inner.labelled);
    }
}

/// Expressions whose jumps the rewrite can reach: a jump itself, an `if` (its
/// branches are blocks of statements) and a block.
fn statement_position(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Break(_)
            | Expr::Continue(_)
            | Expr::If(_)
            | Expr::Block(_)
            | Expr::Match(_)
            | Expr::ForLoop(_)
            | Expr::While(_)
            | Expr::Loop(_)
    )
}

/// Whether `s` jumps out of the loop being rewritten (not counting nested loops).
fn jumps(s: &syn::Stmt) -> bool {
    let mut f = JumpFinder::default();
    f.visit_stmt(s);
    f.breaks || f.continues
}

/// Statements with their jumps turned into flags, and everything after a statement
/// that may jump guarded by `if !done && !skip { .. }`.
pub(super) fn guard(stmts: &[syn::Stmt], flags: &JumpFlags) -> Vec<syn::Stmt> {
    let mut out = Vec::new();
    for (k, st) in stmts.iter().enumerate() {
        if !jumps(st) {
            out.push(st.clone());
            continue;
        }
        out.push(rewrite_jump(st, flags));
        let rest = guard(&stmts[k + 1..], flags);
        if !rest.is_empty() {
            let running = flags.running();
            out.push(syn::parse_quote!(if #running { #(#rest)* }));
        }
        break;
    }
    out
}

fn rewrite_jump(st: &syn::Stmt, flags: &JumpFlags) -> syn::Stmt {
    let syn::Stmt::Expr(e, _) = st else {
        return st.clone();
    };
    let e = rewrite_jump_expr(e, flags);
    syn::Stmt::Expr(e, Some(Default::default()))
}

fn rewrite_jump_expr(e: &Expr, flags: &JumpFlags) -> Expr {
    match e {
        Expr::Break(b) => {
            let done = flags.done.as_ref().expect("a break sets done");
            match (&b.expr, &flags.out) {
                (Some(v), Some(out)) => {
                    syn::parse_quote_spanned!(b.span()=> { #out = #v; #done = true; })
                }
                _ => syn::parse_quote_spanned!(b.span()=> { #done = true; }),
            }
        }
        Expr::Continue(c) => {
            let skip = flags.skip.as_ref().expect("a continue sets skip");
            syn::parse_quote_spanned!(c.span()=> { #skip = true; })
        }
        Expr::If(i) => {
            let mut i = i.clone();
            i.then_branch.stmts = guard(&i.then_branch.stmts, flags);
            if let Some((_, else_expr)) = &mut i.else_branch {
                **else_expr = rewrite_jump_expr(else_expr, flags);
            }
            Expr::If(i)
        }
        Expr::Block(b) => {
            let mut b = b.clone();
            b.block.stmts = guard(&b.block.stmts, flags);
            Expr::Block(b)
        }
        Expr::Match(m) => {
            let mut m = m.clone();
            for arm in &mut m.arms {
                *arm.body = rewrite_jump_expr(&arm.body, flags);
            }
            Expr::Match(m)
        }
        other => other.clone(),
    }
}

/// `return v` inside a loop in the function body, as the flags it means: the `return`
/// becomes `{ returned_value = v; returned = true; break; }`, every loop it crosses is
/// left with `if returned { break; }`, and after the outermost one
/// `if returned { return returned_value; }` is an early return like any other. Other
/// statements are returned as they are.
pub(super) fn lift_loop_returns(
    stmts: &[syn::Stmt],
    names: &(Ident, Ident),
    ret_ty: Option<&Type>,
) -> Vec<syn::Stmt> {
    use syn::visit_mut::VisitMut;
    struct Lift<'a> {
        ret: &'a Ident,
        flag: &'a Ident,
        found: bool,
        /// What a `break` out of the innermost loop carries: nothing, or (in a loop
        /// whose value is bound, `let r = loop { .. }`) a placeholder of its type,
        /// never read, since the function returns right after.
        break_value: Option<Expr>,
    }
    impl Lift<'_> {
        fn brk(&self) -> Expr {
            match &self.break_value {
                Some(v) => syn::parse_quote!(break #v),
                None => syn::parse_quote!(break),
            }
        }
        fn in_loop(&mut self, value: Option<Expr>, body: &mut syn::Block) {
            let saved = std::mem::replace(&mut self.break_value, value);
            self.visit_block_mut(body);
            self.break_value = saved;
        }
    }
    impl VisitMut for Lift<'_> {
        fn visit_block_mut(&mut self, b: &mut syn::Block) {
            let mut out = Vec::new();
            for mut st in std::mem::take(&mut b.stmts) {
                if let syn::Stmt::Expr(Expr::Return(r), _) = &st
                    && let Some(v) = &r.expr
                {
                    let (ret, flag, brk) = (self.ret, self.flag, self.brk());
                    out.push(
                        syn::parse_quote_spanned!(r.span()=> { #ret = #v; #flag = true; #brk; }),
                    );
                    self.found = true;
                    continue;
                }
                let is_loop = matches!(
                    st,
                    syn::Stmt::Expr(Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_), _)
                ) || value_loop(&mut st).is_some();
                let before = std::mem::replace(&mut self.found, false);
                syn::visit_mut::visit_stmt_mut(self, &mut st);
                let inner = self.found;
                self.found |= before;
                out.push(st);
                if is_loop && inner {
                    let (flag, brk) = (self.flag, self.brk());
                    out.push(syn::parse_quote!(if #flag { #brk; }));
                }
            }
            b.stmts = out;
        }
        fn visit_local_mut(&mut self, l: &mut syn::Local) {
            match value_loop_of(l) {
                Some(body) => self.in_loop(Some(placeholder()), body),
                None => syn::visit_mut::visit_local_mut(self, l),
            }
        }
        fn visit_expr_for_loop_mut(&mut self, f: &mut syn::ExprForLoop) {
            self.in_loop(None, &mut f.body);
        }
        fn visit_expr_while_mut(&mut self, w: &mut syn::ExprWhile) {
            self.in_loop(None, &mut w.body);
        }
        fn visit_expr_loop_mut(&mut self, l: &mut syn::ExprLoop) {
            self.in_loop(None, &mut l.body);
        }
        fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
        fn visit_item_mut(&mut self, _: &mut syn::Item) {}
    }
    /// `let r = loop { .. };`: the loop's body.
    fn value_loop_of(l: &mut syn::Local) -> Option<&mut syn::Block> {
        match l.init.as_mut().map(|i| &mut *i.expr) {
            Some(Expr::Loop(lp)) => Some(&mut lp.body),
            _ => None,
        }
    }
    fn value_loop(st: &mut syn::Stmt) -> Option<&mut syn::Block> {
        match st {
            syn::Stmt::Local(l) => value_loop_of(l),
            _ => None,
        }
    }
    fn placeholder() -> Expr {
        syn::parse_quote!(::backprop::__private::zero())
    }
    let (ret, flag) = names;
    let mut out = Vec::new();
    let mut lifted = false;
    for st in stmts {
        let mut st = st.clone();
        let (body, break_value) = match &mut st {
            syn::Stmt::Expr(Expr::ForLoop(f), _) => (Some(&mut f.body), None),
            syn::Stmt::Expr(Expr::While(w), _) => (Some(&mut w.body), None),
            syn::Stmt::Expr(Expr::Loop(l), _) => (Some(&mut l.body), None),
            other => (value_loop(other), Some(placeholder())),
        };
        let mut found = false;
        if let Some(body) = body {
            let mut lift = Lift {
                ret,
                flag,
                found: false,
                break_value,
            };
            lift.visit_block_mut(body);
            found = lift.found;
        }
        out.push(st);
        if found {
            lifted = true;
            out.push(syn::parse_quote!(if #flag { return #ret; }));
        }
    }
    // A body that ends with a `loop` left only by `return`: its value is the returned one.
    if lifted
        && matches!(stmts.last(), Some(syn::Stmt::Expr(Expr::Loop(_), _)))
        && matches!(out.last(), Some(syn::Stmt::Expr(Expr::If(_), _)))
    {
        out.pop();
        out.push(syn::Stmt::Expr(syn::parse_quote!(#ret), None));
    }
    if !lifted {
        return stmts.to_vec();
    }
    let ty = ret_ty.map_or_else(|| quote::quote!(f64), |t| t.to_token_stream());
    let mut with_flags: Vec<syn::Stmt> = vec![
        syn::parse_quote!(let mut #ret: #ty = ::backprop::__private::zero();),
        syn::parse_quote!(let mut #flag = false;),
    ];
    with_flags.extend(out);
    with_flags
}

/// `let v = if c { ..; return r; } else { e };` in the function body is
/// `if c { ..; return r; } let v = { e };` (and `else { ..; return r; }` likewise, with
/// the condition negated): the early return the body supports, then a plain `let`.
pub(super) fn split_returning_lets(stmts: &[syn::Stmt]) -> Vec<syn::Stmt> {
    fn returns(b: &syn::Block) -> bool {
        matches!(b.stmts.last(), Some(syn::Stmt::Expr(Expr::Return(r), _)) if r.expr.is_some())
    }
    let mut out = Vec::with_capacity(stmts.len());
    for st in stmts {
        if let syn::Stmt::Local(l) = st
            && let Some(init) = &l.init
            && init.diverge.is_none()
            && let Expr::If(i) = &*init.expr
            && let Some((_, else_expr)) = &i.else_branch
            && let Expr::Block(else_block) = &**else_expr
            && else_block.label.is_none()
            && returns(&i.then_branch) != returns(&else_block.block)
        {
            let cond = &i.cond;
            let (guard, value): (syn::Stmt, &syn::Block) = if returns(&i.then_branch) {
                let then = &i.then_branch;
                (
                    syn::parse_quote_spanned!(i.if_token.span=> if #cond #then),
                    &else_block.block,
                )
            } else {
                let els = &else_block.block;
                (
                    syn::parse_quote_spanned!(i.if_token.span=> if !(#cond) #els),
                    &i.then_branch,
                )
            };
            let mut plain = l.clone();
            plain.init = Some(syn::LocalInit {
                eq_token: init.eq_token,
                expr: Box::new(syn::parse_quote!(#value)),
                diverge: None,
            });
            out.push(guard);
            out.push(syn::Stmt::Local(plain));
            continue;
        }
        out.push(st.clone());
    }
    out
}
