//! Statements: blocks and their tail value, `let` bindings (patterns, tuples of
//! data, shadowing), items inside the body, expression statements and assignments
//! (`=`, `+=`, ..., element writes).

use super::desugar::split_returning_lets;
use super::expr::compound;
use super::loops::LoopSyntax;
use super::nested::{grad_call, other_companion};
use super::signature::is_primitive_float_path;
use super::{Lowerer, SUPPORTED, dummy, pretty};
use crate::ir::{BufOp, Operand, Rhs, Spelling, Stmt};
use proc_macro2::{Ident, Span};
use quote::ToTokens;
use std::collections::{HashMap, HashSet};
use syn::spanned::Spanned;
use syn::{Expr, Pat, ReturnType, Type};

impl Lowerer<'_> {
    /// Lowers a block's statements and returns the value of its tail expression.
    pub(super) fn block_value(
        &mut self,
        stmts: &[syn::Stmt],
        span: Span,
        is_body: bool,
    ) -> Operand {
        let split;
        let stmts = if is_body {
            split = split_returning_lets(stmts);
            &split[..]
        } else {
            stmts
        };
        let mut tail = None;
        for (k, stmt) in stmts.iter().enumerate() {
            let last = k + 1 == stmts.len();
            // `if c { ...; return v; } rest` in the function body is
            // `if c { ...; v } else { rest }`: the early return becomes a branch.
            if is_body
                && !last
                && let syn::Stmt::Expr(Expr::If(i), _) = stmt
                && i.else_branch.is_none()
                && let Some(syn::Stmt::Expr(Expr::Return(r), _)) = i.then_branch.stmts.last()
                && let Some(value) = &r.expr
            {
                let mut rewritten = i.clone();
                let n = rewritten.then_branch.stmts.len();
                rewritten.then_branch.stmts[n - 1] = syn::Stmt::Expr((**value).clone(), None);
                let rest = syn::Block {
                    brace_token: Default::default(),
                    stmts: stmts[k + 1..].to_vec(),
                };
                let else_expr = Expr::Block(syn::ExprBlock {
                    attrs: Vec::new(),
                    label: None,
                    block: rest,
                });
                rewritten.else_branch = Some((Default::default(), Box::new(else_expr)));
                return self.if_expr(&rewritten, None, true, true);
            }
            match stmt {
                syn::Stmt::Expr(Expr::Return(_), _) | syn::Stmt::Expr(_, None) if last => {}
                other => {
                    self.block_stmt(other, is_body);
                    continue;
                }
            }
            match stmt {
                syn::Stmt::Local(local) => self.local(local),
                syn::Stmt::Item(item) if is_body => self.body_item(item),
                syn::Stmt::Item(item) => self.cx.error_spanned_by(
                    item,
                    "`#[grad]` does not support items (`const`, `fn`, `use`, ...) inside a nested block: declare them at the top level of the function body",
                ),
                syn::Stmt::Macro(m) => self.unsupported_macro(&m.mac),
                syn::Stmt::Expr(Expr::Return(r), _) if last && is_body => {
                    tail = Some(match &r.expr {
                        Some(e) => self.expr(e, None),
                        None => {
                            self.cx.error_spanned_by(r, "`#[grad]` needs the function to return a float; this `return` has no value");
                            dummy()
                        }
                    });
                }
                syn::Stmt::Expr(e, None) if last => tail = Some(self.expr(e, None)),
                syn::Stmt::Expr(e, _) => self.expr_stmt(e),
            }
        }
        tail.unwrap_or_else(|| {
            // A block that ends in a refused `return` has had its error.
            if let Some(syn::Stmt::Expr(Expr::Return(_), _)) = stmts.last() {
                return dummy();
            }
            let what = if is_body { "the function body" } else { "this block" };
            self.cx.error_at(
                stmts.last().map_or(span, |s| s.span()),
                format!("`#[grad]` needs {what} to end with the float value it returns (a tail expression or a final `return`)"),
            );
            dummy()
        })
    }

    /// One statement that is not the block's tail.
    /// An item in the function body, hoisted as it is. A helper `fn` returning a float
    /// is differentiated too (it gets `#[grad]`), so the function can call it.
    fn body_item(&mut self, item: &syn::Item) {
        let mut item = item.clone();
        if let syn::Item::Fn(f) = &mut item
            && let ReturnType::Type(_, ty) = &f.sig.output
            && (is_primitive_float_path(ty)
                || matches!(&**ty, Type::Path(p) if p.path.get_ident().is_some_and(|i| i == "f32" || i == "f64")))
            && !f.attrs.iter().any(|a| {
                a.path()
                    .segments
                    .last()
                    .is_some_and(|s| s.ident == "grad" || s.ident == "custom_vjp")
            })
        {
            f.attrs.push(syn::parse_quote!(#[::backprop::grad]));
        }
        self.items.push(item);
    }

    pub(super) fn block_stmt(&mut self, stmt: &syn::Stmt, is_body: bool) {
        match stmt {
            syn::Stmt::Local(local) => self.local(local),
            syn::Stmt::Item(item) if is_body => self.body_item(item),
            syn::Stmt::Item(item) => self.cx.error_spanned_by(
                item,
                "`#[grad]` does not support items (`const`, `fn`, `use`, ...) inside a nested block: declare them at the top level of the function body",
            ),
            syn::Stmt::Macro(m) => self.unsupported_macro(&m.mac),
            syn::Stmt::Expr(e, _) => self.expr_stmt(e),
        }
    }

    /// A `let`. Statements nest (the loop an iterator reduction becomes, inside a
    /// `vec![..]` literal): each leaves `named_result` as it found it, so the `let`
    /// around it still recognises its own binding.
    pub(super) fn local(&mut self, local: &syn::Local) {
        let mut names = Vec::new();
        pattern_names(&local.pat, &mut names);
        for n in &names {
            self.closures.remove(n);
        }
        match self.local_closure(local) {
            Ok(Some(closure)) => {
                // The closure shadows a local of its name bound before it in this scope.
                if let Some(scope) = self.scopes.last_mut() {
                    scope.remove(&names[0]);
                }
                self.closures.insert(names[0].clone(), closure);
                return;
            }
            Ok(None) => {}
            Err(()) => {
                self.poisoned.extend(names);
                return;
            }
        }
        if let Some(stmts) = split_tuple_let(local) {
            for st in &stmts {
                self.block_stmt(st, false);
            }
            return;
        }
        if let Some(stmts) = self.collect_into_vec(local) {
            for st in &stmts {
                self.block_stmt(st, false);
            }
            return;
        }
        if let ([name], Some(init)) = (&names[..], &local.init) {
            let array = self.is_ndarray_expr(&init.expr);
            self.note_ndarray(name, array);
        }
        let outer = self.named_result;
        let errors = self.cx.error_count();
        self.local_binding(local);
        self.named_result = outer;
        // A refused `let` poisons its name: later reads and assignments of it are
        // consequences of the one error, not errors of their own.
        for n in names {
            if self.cx.error_count() > errors {
                self.poisoned.insert(n);
            } else {
                self.poisoned.remove(&n);
            }
        }
    }

    /// `let h: Vec<f64> = x.iter().map(|v| ..).collect();` (or `.collect::<Vec<_>>()`) of
    /// an iterator over buffers whose items are floats: the buffer it means, built by
    /// `push` (`let mut h = Vec::new(); for v in <chain> { h.push(v); }`), which lowering
    /// already differentiates.
    fn collect_into_vec(&self, local: &syn::Local) -> Option<Vec<syn::Stmt>> {
        let init = local.init.as_ref().filter(|i| i.diverge.is_none())?;
        let Expr::MethodCall(m) = &*init.expr else {
            return None;
        };
        if m.method != "collect" || !m.args.is_empty() {
            return None;
        }
        // Items that are floats: the elements, or what a `map` makes of them (not the
        // tuples of `enumerate` or `zip`).
        fn floats(c: &super::chains::Chain) -> bool {
            use super::chains::Chain;
            match c {
                Chain::Elems(_) | Chain::Map(..) => true,
                Chain::Rev(inner) => floats(inner),
                Chain::Enumerate(_) | Chain::Zip(..) => false,
            }
        }
        if !self.chain(&m.receiver, false).is_some_and(|c| floats(&c)) {
            return None;
        }
        let name = match &local.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => &pi.ident,
            Pat::Type(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => &pi.ident,
                _ => return None,
            },
            _ => return None,
        };
        let chain = &m.receiver;
        let span = m.method.span();
        let item = Ident::new("collected_item", span);
        Some(vec![
            syn::parse_quote_spanned!(span=> let mut #name = Vec::new();),
            syn::parse_quote_spanned!(span=> for #item in #chain { #name.push(#item); }),
        ])
    }

    pub(super) fn reads_poisoned(&self, e: &Expr) -> bool {
        use syn::visit::Visit;
        struct Find<'a> {
            poisoned: &'a HashSet<String>,
            found: bool,
        }
        impl<'v> Visit<'v> for Find<'_> {
            fn visit_expr_path(&mut self, p: &'v syn::ExprPath) {
                if let Some(i) = p.path.get_ident() {
                    self.found |= self.poisoned.contains(&i.to_string());
                }
            }
        }
        if self.poisoned.is_empty() {
            return false;
        }
        let mut f = Find {
            poisoned: &self.poisoned,
            found: false,
        };
        f.visit_expr(e);
        f.found
    }

    fn local_binding(&mut self, local: &syn::Local) {
        if let Some(init) = &local.init
            && let Some((_, diverge)) = &init.diverge
        {
            self.cx.error_spanned_by(
                diverge,
                format!("`let ... else` is not supported yet; {SUPPORTED}"),
            );
            return;
        }
        let (ident, ty) = match &local.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => (Some(&pi.ident), None),
            Pat::Type(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                    (Some(&pi.ident), Some((*pt.ty).clone()))
                }
                Pat::Wild(_) => (None, Some((*pt.ty).clone())),
                other => return self.bad_pattern(other),
            },
            Pat::Wild(_) => (None, None),
            // `let (l, g) = h_grad(x);`: another function's value and gradient.
            Pat::Tuple(t)
                if t.elems.len() == 2
                    && t.elems.iter().all(is_plain_binding)
                    && let Some(c) = local.init.as_ref().and_then(|i| grad_call(&i.expr)) =>
            {
                return self.grad_call_tuple(t, c);
            }
            Pat::Tuple(_)
                if let Some((c, why)) =
                    local.init.as_ref().and_then(|i| other_companion(&i.expr)) =>
            {
                self.cx.error_spanned_by(c, why);
                return;
            }
            Pat::Tuple(t) if local.init.is_some() && t.elems.iter().all(is_plain_binding) => {
                return self.tuple_of_data(t, local);
            }
            other => return self.bad_pattern(other),
        };
        let Some(init) = &local.init else {
            self.cx.error_spanned_by(
                local,
                "`#[grad]` needs every `let` to have an initial value (`let x = ...;`); declare and assign in one statement",
            );
            return;
        };
        self.named_result = None;
        let value = match grad_call(&init.expr) {
            // `let r = h_grad(x);` with `r.0`, `r.1.w` read later.
            Some(c) if ident.is_some_and(|i| self.field_bases.contains(&i.to_string())) => {
                self.grad_call_place(c, ident)
            }
            _ => self.expr(&init.expr, ident),
        };
        let Some(ident) = ident else { return };
        let var = match value {
            Operand::Var(v) if self.named_result == Some(v) => v,
            // The tail of a block (`let y = { z.exp() };`): a temporary defined just now
            // and read nowhere else takes the binding's name instead of being moved into
            // a copy (the tape may still read it).
            Operand::Var(v) if self.is_fresh_temp(v) => {
                let fresh = self.user_var(ident);
                self.vars[v.0].name = self.vars[fresh.0].name.clone();
                v
            }
            // `let b = a;` copies an array (`[f64; N]`): a new buffer, as `to_vec` makes.
            Operand::Var(b) if self.buffers.contains(&b) && self.is_array_valued(b) => {
                let span = init.expr.span();
                let len = self.define(
                    None,
                    Rhs::ZeroDerivative {
                        spelling: Spelling::Method(Ident::new("len", span)),
                        args: vec![Operand::Var(b)],
                    },
                    span,
                );
                let v = self.new_buffer_var(
                    Some(ident),
                    BufOp::ToVec,
                    vec![Operand::Var(b), len],
                    span,
                );
                let v = v.var().expect("a new value");
                self.array_params.insert(v);
                v
            }
            // `let y = x;` of a `Vec` or a slice: another name for the same elements.
            Operand::Var(b) if self.buffers.contains(&b) => {
                let v = self.alias(Operand::Var(b), Some(ident), init.expr.span());
                v.var().expect("a new value")
            }
            other => {
                let v = self.user_var(ident);
                self.body.push(Stmt {
                    def: v,
                    rhs: Rhs::Copy(other),
                    span: init.expr.span(),
                    ty: None,
                    source: String::new(),
                    compound: false,
                });
                v
            }
        };
        if let Some(stmt) = self.body.last_mut()
            && stmt.def == var
        {
            stmt.ty = ty;
        }
        self.scopes
            .last_mut()
            .expect("scope")
            .insert(ident.to_string(), var);
    }

    /// `let (n, d) = x.dim();`: each name is an element of the tuple, data without a
    /// derivative (a tuple of active values is refused where it is made).
    fn tuple_of_data(&mut self, t: &syn::PatTuple, local: &syn::Local) {
        let init = &local.init.as_ref().expect("checked by the caller").expr;
        let span = init.span();
        let tuple = self.expr(init, None);
        for (k, elem) in t.elems.iter().enumerate() {
            let Pat::Ident(pi) = elem else { continue };
            let index = syn::Index {
                index: k as u32,
                span,
            };
            let v = self.define(
                Some(&pi.ident),
                Rhs::NoRule {
                    spelling: Spelling::TupleField(index),
                    at: init.to_token_stream(),
                    args: vec![tuple.clone()],
                    why: format!(
                        "`#[grad]` destructures a tuple of data (`let (n, d) = x.dim();`); `{}` carries a derivative",
                        pretty(&init.to_token_stream())
                    ),
                },
                pi.ident.span(),
            );
            if let Operand::Var(v) = v {
                self.scopes
                    .last_mut()
                    .expect("scope")
                    .insert(pi.ident.to_string(), v);
            }
        }
    }

    fn bad_pattern(&self, pat: &Pat) {
        self.cx.error_spanned_by(
            pat,
            format!("`#[grad]` supports `let` with a name (`let x`, `let mut x`, `let x: f64`) or `_`; this pattern is not supported yet; {SUPPORTED}"),
        );
    }

    pub(super) fn expr_stmt(&mut self, e: &Expr) {
        if self.reads_poisoned(e) {
            return;
        }
        let outer = self.named_result;
        self.expr_stmt_inner(e);
        self.named_result = outer;
    }

    fn expr_stmt_inner(&mut self, e: &Expr) {
        match e {
            // `a.fill(v)` on an ndarray array the function owns: a new version of it.
            Expr::MethodCall(m) if self.array_fill_target(m).is_some() => {
                let target = self.array_fill_target(m).expect("checked");
                self.array_fill(target, m, e);
            }
            Expr::Assign(a) if matches!(&*a.left, Expr::Index(_)) => {
                self.store(&a.left, None, &a.right, e);
            }
            Expr::Binary(b) if compound(&b.op).is_some() && matches!(&*b.left, Expr::Index(_)) => {
                self.store(&b.left, compound(&b.op), &b.right, e);
            }
            Expr::Assign(a) => {
                let Some(name) = self.assign_target(&a.left) else {
                    return;
                };
                let array = self.is_ndarray_expr(&a.right);
                self.note_ndarray(&name.to_string(), array);
                let value = self.expr(&a.right, Some(&name));
                let var = match value {
                    Operand::Var(v) if self.named_result == Some(v) => v,
                    other => {
                        let v = self.user_var(&name);
                        self.body.push(Stmt {
                            def: v,
                            rhs: Rhs::Copy(other),
                            span: a.right.span(),
                            ty: None,
                            source: String::new(),
                            compound: false,
                        });
                        v
                    }
                };
                self.named_result = None;
                self.rebind(&name.to_string(), var);
            }
            Expr::Binary(b) if compound(&b.op).is_some() => {
                let (prim, op) = compound(&b.op).expect("checked");
                let Some(name) = self.assign_target(&b.left) else {
                    return;
                };
                let old = Operand::Var(
                    self.lookup(&name.to_string())
                        .expect("assign_target checks"),
                );
                let rhs = self.expr(&b.right, None);
                let out = self.define(
                    Some(&name),
                    Rhs::Prim {
                        prim,
                        spelling: Spelling::Operator(op),
                        args: vec![old, rhs],
                    },
                    e.span(),
                );
                if let Some(last) = self.body.last_mut() {
                    last.compound = true;
                    last.source = pretty(&e.to_token_stream());
                }
                self.named_result = None;
                if let Operand::Var(v) = out {
                    self.rebind(&name.to_string(), v);
                }
            }
            Expr::Return(r) => {
                self.cx.error_spanned_by(
                    r,
                    format!("`#[grad]` supports `return` as the last statement of the function, as the last statement of an `if` without `else` in the function body (`if c {{ return v; }}`), and as a statement inside a loop of the function body; {SUPPORTED}"),
                );
            }
            Expr::If(i) if self.mentions_local(e) => {
                let _ = self.if_expr(i, None, false, false);
            }
            Expr::ForLoop(f) if f.label.is_none() => {
                let _ = self.loop_with_jumps(LoopSyntax::For(f), None);
            }
            Expr::While(w) if w.label.is_none() => {
                let _ = self.loop_with_jumps(LoopSyntax::While(w), None);
            }
            Expr::Loop(l) if l.label.is_none() => {
                let _ = self.loop_with_jumps(LoopSyntax::Loop(l), None);
            }
            Expr::Match(m) => {
                let _ = self.match_expr(m, None, false);
            }
            Expr::ForLoop(syn::ExprForLoop { label: Some(l), .. })
            | Expr::While(syn::ExprWhile { label: Some(l), .. })
            | Expr::Loop(syn::ExprLoop { label: Some(l), .. }) => {
                self.cx.error_spanned_by(
                    l,
                    "`#[grad]` does not support labelled loops yet (a labelled `break` leaves several loops at once); restructure with a flag, or move the inner loop into a `#[grad]` helper",
                );
            }
            Expr::Block(b) if b.label.is_none() => {
                // A block used as a statement: its value (if any) is discarded.
                self.scopes.push(HashMap::new());
                for (k, stmt) in b.block.stmts.iter().enumerate() {
                    match stmt {
                        syn::Stmt::Expr(e, None) if k + 1 == b.block.stmts.len() => {
                            self.expr_stmt(e)
                        }
                        _ => self.block_stmt(stmt, false),
                    }
                }
                self.scopes.pop();
            }
            other => {
                let _ = self.expr(other, None);
            }
        }
    }

    fn assign_target(&self, left: &Expr) -> Option<Ident> {
        if let Expr::Path(p) = left
            && let Some(i) = p.path.get_ident()
            && p.qself.is_none()
            && self.lookup(&i.to_string()).is_some()
        {
            return Some(i.clone());
        }
        self.cx.error_spanned_by(
            left,
            format!("`#[grad]` supports assignment to a local variable (`x = ...`, `x += ...`); assigning to `{}` is not supported yet", left.to_token_stream()),
        );
        None
    }
}

/// The names a `let` pattern binds.
fn pattern_names(pat: &Pat, out: &mut Vec<String>) {
    match pat {
        Pat::Ident(pi) => out.push(pi.ident.to_string()),
        Pat::Type(pt) => pattern_names(&pt.pat, out),
        Pat::Tuple(t) => t.elems.iter().for_each(|p| pattern_names(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| pattern_names(p, out)),
        Pat::Reference(r) => pattern_names(&r.pat, out),
        Pat::Paren(p) => pattern_names(&p.pat, out),
        Pat::Slice(s) => s.elems.iter().for_each(|p| pattern_names(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| pattern_names(&f.pat, out)),
        _ => {}
    }
}

/// A pattern that binds one name as it is (`n`, `mut n`) or nothing (`_`).
/// `let (a, b) = (e1, e2);`: one `let` per element, as the tuple means. When an element
/// reads a name the pattern binds (`let (a, b) = (b, a);`), every element is evaluated
/// into a temporary first, then bound.
fn split_tuple_let(local: &syn::Local) -> Option<Vec<syn::Stmt>> {
    use syn::visit::Visit;
    let init = local.init.as_ref().filter(|i| i.diverge.is_none())?;
    let Pat::Tuple(pat) = &local.pat else {
        return None;
    };
    let mut e = &*init.expr;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    let Expr::Tuple(tuple) = e else { return None };
    if pat.elems.len() != tuple.elems.len() || !pat.elems.iter().all(is_plain_binding) {
        return None;
    }
    let mut bound = Vec::new();
    pat.elems.iter().for_each(|p| pattern_names(p, &mut bound));
    struct Reads<'a>(&'a [String], bool);
    impl<'v> Visit<'v> for Reads<'_> {
        fn visit_ident(&mut self, i: &'v Ident) {
            self.1 |= self.0.contains(&i.to_string());
        }
    }
    let mut reads = Reads(&bound, false);
    tuple.elems.iter().for_each(|e| reads.visit_expr(e));
    let pairs = pat.elems.iter().zip(&tuple.elems);
    if !reads.1 {
        return Some(
            pairs
                .map(|(p, e)| syn::parse_quote_spanned!(e.span()=> let #p = #e;))
                .collect(),
        );
    }
    let (mut firsts, mut thens) = (Vec::new(), Vec::new());
    for (k, (p, e)) in pairs.enumerate() {
        let temp = quote::format_ident!("tuple_element_{}", k, span = e.span());
        firsts.push(syn::parse_quote_spanned!(e.span()=> let #temp = #e;));
        thens.push(syn::parse_quote_spanned!(e.span()=> let #p = #temp;));
    }
    firsts.extend(thens);
    Some(firsts)
}

fn is_plain_binding(p: &Pat) -> bool {
    match p {
        Pat::Ident(pi) => pi.by_ref.is_none() && pi.subpat.is_none(),
        Pat::Wild(_) => true,
        _ => false,
    }
}
