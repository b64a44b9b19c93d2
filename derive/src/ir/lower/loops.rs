//! Loops: `for` over ranges, `while`, `loop`, and loops with `break`/`continue`
//! (rewritten to flags by `desugar`), lowered to a `LoopNode` with carried values.

use super::desugar::{JumpFinder, JumpFlags, guard};
use super::{Lowerer, SUPPORTED, dummy};
use crate::ir::{Carried, LoopHead, LoopNode, Operand, Rhs, Stmt, VarId};
use proc_macro2::{Ident, Span};
use quote::ToTokens;
use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, Pat};

impl Lowerer<'_> {
    /// Lowers a loop: binds each carried local to its `entry` value in a new scope,
    /// lowers `head` (a `while` condition) then the body, and rebinds the carried
    /// locals to their `out` values after the loop.
    fn lower_loop(
        &mut self,
        body: &syn::Block,
        span: Span,
        head: impl FnOnce(&mut Self) -> LoopHeadDraft,
    ) {
        let carried_names = self.assigned_in(body);
        let inits: Vec<(String, VarId)> = carried_names
            .iter()
            .filter_map(|n| Some((n.clone(), self.lookup(n)?)))
            .collect();
        for (name, v) in &inits {
            if self.buffers.contains(v) {
                let at = super::scope::whole_assignment(name, |f| f.visit_block(body));
                self.cx.error_at(
                    at.unwrap_or(span),
                    format!("`#[grad]` does not support assigning a whole buffer (`{name} = ...`) inside a loop yet; write its elements instead (`{name}.copy_from_slice(&new)`, `{name}[i] = ...`)"),
                );
            }
        }
        let outer_body = std::mem::take(&mut self.body);
        self.read_cache.clear();
        self.scopes.push(HashMap::new());
        let mut entries = Vec::new();
        for (name, _) in &inits {
            let ident = Self::ident_of(name, span);
            let fresh = self.names.claim_user(&ident, false);
            let v = self.new_var(fresh);
            self.scopes
                .last_mut()
                .expect("scope")
                .insert(name.clone(), v);
            entries.push(v);
        }
        let draft = head(self);
        let head_len = self.body.len();
        // The body's own `let`s live in a scope of their own: `let c = ..;` in the body
        // shadows the carried `c` for the rest of that iteration only, while `c = ..;`
        // before it assigns the carried value.
        self.scopes.push(HashMap::new());
        for stmt in &body.stmts {
            match stmt {
                syn::Stmt::Expr(e, None) => self.expr_stmt(e),
                other => self.block_stmt(other, false),
            }
        }
        self.scopes.pop();
        let exits: Vec<VarId> = inits
            .iter()
            .map(|(n, _)| self.lookup(n).expect("carried local"))
            .collect();
        self.scopes.pop();
        self.read_cache.clear();
        let body_stmts = std::mem::replace(&mut self.body, outer_body);
        let mut carried = Vec::new();
        for ((name, init), (entry, exit)) in inits.iter().zip(entries.into_iter().zip(exits)) {
            let ident = Self::ident_of(name, span);
            let fresh = self.names.claim_user(&ident, false);
            let out = self.new_var(fresh);
            carried.push(Carried {
                init: Operand::Var(*init),
                entry,
                exit: Operand::Var(exit),
                out,
            });
            self.rebind(name, out);
        }
        let head = match draft {
            LoopHeadDraft::For {
                index,
                range,
                double_ended,
            } => {
                let names = crate::ir::idents(&range);
                let bounds: Vec<VarId> = (0..self.vars.len())
                    .filter(|v| names.contains(&self.vars[*v].name.to_string()))
                    .map(VarId)
                    .collect();
                LoopHead::For {
                    index,
                    range,
                    bounds,
                    double_ended,
                }
            }
            LoopHeadDraft::While(cond) => LoopHead::While { cond, head_len },
        };
        let tape = self.names.fresh("iterations", span);
        let def = self.new_var(tape);
        self.body.push(Stmt {
            def,
            rhs: Rhs::Loop(Box::new(LoopNode {
                head,
                body: body_stmts,
                carried,
            })),
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
    }

    /// `for i in a..b`, `a..=b`, `(a..b).rev()`, `(a..b).step_by(k)`: the bounds are
    /// lowered (they may read locals), the index is a new (inactive) local.
    pub(super) fn for_loop(&mut self, f: &syn::ExprForLoop) {
        let span = f.span();
        if self.refuse_array_lanes(f) {
            return;
        }
        if let Some(indexed) = self.struct_collection_loop(f) {
            return self.for_loop(&indexed);
        }
        if let Some(chain) = self.chain(&f.expr, true) {
            return self.for_over_chain(chain, &f.pat, &f.body.stmts, span);
        }
        if let Expr::MethodCall(m) = &*f.expr
            && let Some(bad) = self.unsupported_adaptor(m)
        {
            self.cx.error_spanned_by(
                &bad.method,
                format!(
                    "`.{}()` on an iterator over a buffer is not supported by `#[grad]`; a `for` loop runs over `x`, `x.iter()` with `.copied()`, `.cloned()`, `.rev()`, `.enumerate()`, `.zip(..)`, `.map(|v| ..)`, or an integer range",
                    bad.method
                ),
            );
            return;
        }
        let Some(range) = self.range_tokens(&f.expr) else {
            self.cx.error_spanned_by(
                &f.expr,
                format!("`#[grad]` supports `for` over integer ranges (`a..b`, `a..=b`, `(a..b).rev()`, `(a..b).step_by(k)`) and over buffers of floats (`for v in x`, `x.iter()`, `.copied()`, `.rev()`, `.enumerate()`, `.zip(y)`, `.map(|v| ..)`); {SUPPORTED}"),
            );
            return;
        };
        let index_ident = match &*f.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => Some(pi.ident.clone()),
            Pat::Wild(_) => None,
            other => {
                self.cx.error_spanned_by(
                    other,
                    "`#[grad]` needs a `for` over a range to bind its index to a name or `_`",
                );
                return;
            }
        };
        self.lower_loop(&f.body, span, move |lw| {
            let name = match &index_ident {
                Some(i) => lw.names.claim_user(i, false),
                None => lw.names.fresh("_i", span),
            };
            let index = lw.new_var(name);
            if let Pat::Ident(pi) = &*f.pat {
                lw.scopes
                    .last_mut()
                    .expect("scope")
                    .insert(pi.ident.to_string(), index);
            }
            LoopHeadDraft::For {
                index,
                range,
                double_ended: double_ended(&f.expr),
            }
        });
    }

    /// The tokens of a supported range, with its bounds lowered to operands.
    fn range_tokens(&mut self, e: &Expr) -> Option<proc_macro2::TokenStream> {
        match e {
            Expr::Paren(p) => self.range_tokens(&p.expr).map(|t| quote::quote!((#t))),
            // A range passed through a `macro_rules!` `$r:expr` arrives in an invisible group.
            Expr::Group(g) => self.range_tokens(&g.expr).map(|t| quote::quote!((#t))),
            Expr::Range(r) => {
                let start = r.start.as_ref().map(|s| self.expr(s, None));
                let end = r.end.as_ref().map(|s| self.expr(s, None));
                let (start, end) = (start?, end?);
                let [a, b] = [start, end].map(|o| match o {
                    Operand::Var(v) => self.vars[v.0].name.to_token_stream(),
                    Operand::Const(c) => quote::quote!((#c)),
                });
                let limits = &r.limits;
                Some(quote::quote!(#a #limits #b))
            }
            Expr::MethodCall(m) if m.method == "rev" && m.args.is_empty() => {
                let inner = self.range_tokens(&m.receiver)?;
                Some(quote::quote!((#inner).rev()))
            }
            Expr::MethodCall(m) if m.method == "step_by" && m.args.len() == 1 => {
                let inner = self.range_tokens(&m.receiver)?;
                let k = match self.expr(&m.args[0], None) {
                    Operand::Var(v) => self.vars[v.0].name.to_token_stream(),
                    Operand::Const(c) => quote::quote!((#c)),
                };
                Some(quote::quote!((#inner).step_by(#k)))
            }
            _ => None,
        }
    }

    /// `while cond { .. }`: the condition is re-evaluated at the top of every iteration.
    fn while_loop(&mut self, w: &syn::ExprWhile) {
        if let Expr::Let(l) = &*w.cond {
            self.cx.error_spanned_by(
                l,
                format!("`while let` is not supported by `#[grad]` yet; {SUPPORTED}"),
            );
            return;
        }
        let cond = (*w.cond).clone();
        self.lower_loop(&w.body, w.span(), move |lw| {
            LoopHeadDraft::While(lw.expr(&cond, None))
        });
    }

    /// Loops with `break` (also `break value` out of a `loop`) and `continue`, as the
    /// flags they mean: `break` sets `done`, `continue` sets `skip`, and every
    /// statement after a jump runs under `if !done && !skip { .. }`. A `while` then
    /// tests `!done` first, a `loop` is `while !done`, and a `for` runs its remaining
    /// iterations without doing anything (each records one skipped branch).
    pub(super) fn loop_with_jumps(
        &mut self,
        syntax: LoopSyntax<'_>,
        want: Option<&Ident>,
    ) -> Operand {
        let body = match syntax {
            LoopSyntax::For(f) => &f.body,
            LoopSyntax::While(w) => &w.body,
            LoopSyntax::Loop(l) => &l.body,
        };
        let span = body.span();
        let mut found = JumpFinder::default();
        found.visit_block(body);
        for bad in &found.labelled {
            self.cx.error_spanned_by(
                bad,
                "`#[grad]` does not support labelled `break`/`continue` yet; restructure the loops so each `break` leaves the innermost one",
            );
        }
        for bad in &found.in_expression {
            self.cx.error_spanned_by(
                bad,
                "`#[grad]` supports `break` and `continue` as statements (`if c { break; }`), not inside an expression",
            );
        }
        // `break h.clone()`: the loop's value starts as the type's zero, which an array
        // has not.
        fn surely_array(lw: &Lowerer<'_>, e: &Expr) -> bool {
            match e {
                Expr::Paren(p) => surely_array(lw, &p.expr),
                Expr::Path(_) => lw.is_ndarray_expr(e),
                Expr::MethodCall(m) => match m.method.to_string().as_str() {
                    "dot" => true,
                    "clone" | "to_owned" | "view" | "t" | "mapv" => surely_array(lw, &m.receiver),
                    _ => false,
                },
                _ => false,
            }
        }
        let array_breaks: Vec<&Expr> = found
            .break_values
            .iter()
            .filter(|e| surely_array(self, e))
            .collect();
        for e in &array_breaks {
            self.cx.error_spanned_by(
                e,
                "`#[grad]` supports `break value` out of a `loop` for floats; for an array, declare the result before the loop and assign it before the `break`: `let mut out = h.clone(); loop { .. if c { out = h.clone(); break; } }`",
            );
        }
        if !found.labelled.is_empty() || !found.in_expression.is_empty() || !array_breaks.is_empty()
        {
            return dummy();
        }
        let plain_while = |lw: &mut Self| {
            match syntax {
                LoopSyntax::For(f) => lw.for_loop(f),
                LoopSyntax::While(w) => lw.while_loop(w),
                LoopSyntax::Loop(_) => unreachable!("a loop without break never ends"),
            }
            dummy()
        };
        if !found.breaks && !found.continues {
            if let LoopSyntax::Loop(l) = syntax {
                self.cx.error_spanned_by(
                    l.loop_token,
                    "`#[grad]` needs a `loop` to end with `break`; this one never does",
                );
                return dummy();
            }
            return plain_while(self);
        }
        let flags = JumpFlags {
            done: found.breaks.then(|| self.names.fresh("done", span)),
            skip: found.continues.then(|| self.names.fresh("skip", span)),
            out: found
                .break_value
                .then(|| self.names.fresh("loop_value", span)),
        };
        let mut prelude: Vec<syn::Stmt> = Vec::new();
        if let Some(done) = &flags.done {
            prelude.push(syn::parse_quote_spanned!(span=> let mut #done = false;));
        }
        if let Some(out) = &flags.out {
            // `break value` leaves the loop's value; it starts as the type's 0.
            prelude.push(
                syn::parse_quote_spanned!(span=> let mut #out = ::backprop::__private::zero();),
            );
        }
        let mut new_body: Vec<syn::Stmt> = Vec::new();
        if let Some(skip) = &flags.skip {
            new_body.push(syn::parse_quote_spanned!(span=> let mut #skip = false;));
        }
        new_body.extend(guard(&body.stmts, &flags));
        let looped: syn::Stmt = match (syntax, &flags.done) {
            // `for i in a..b` with a `break`: a `while` over a counter, so it stops where
            // the `break` happens (the counter runs backwards in reverse: nothing saved).
            (LoopSyntax::For(f), Some(done))
                if matches!(&*f.expr, Expr::Range(r) if r.start.is_some() && r.end.is_some() && matches!(r.limits, syn::RangeLimits::HalfOpen(_)))
                    && matches!(&*f.pat, Pat::Ident(_) | Pat::Wild(_)) =>
            {
                let Expr::Range(r) = &*f.expr else {
                    unreachable!("matched above")
                };
                let (start, end) = (
                    r.start.as_ref().expect("checked"),
                    r.end.as_ref().expect("checked"),
                );
                let counter = self.names.fresh("next_index", span);
                let end_v = self.names.fresh("end", span);
                prelude.push(syn::parse_quote_spanned!(span=> let mut #counter = #start;));
                prelude.push(syn::parse_quote_spanned!(span=> let #end_v = #end;));
                let bind: Option<syn::Stmt> = match &*f.pat {
                    Pat::Ident(pi) => {
                        let i = &pi.ident;
                        Some(syn::parse_quote_spanned!(span=> let #i = #counter;))
                    }
                    _ => None,
                };
                syn::parse_quote_spanned!(span=> while !#done && #counter < #end_v {
                    #bind
                    #counter += 1;
                    #(#new_body)*
                })
            }
            (LoopSyntax::For(f), Some(done)) => {
                let (pat, expr) = (&f.pat, &f.expr);
                syn::parse_quote_spanned!(span=> for #pat in #expr { if !#done { #(#new_body)* } })
            }
            (LoopSyntax::For(f), None) => {
                let (pat, expr) = (&f.pat, &f.expr);
                syn::parse_quote_spanned!(span=> for #pat in #expr { #(#new_body)* })
            }
            (LoopSyntax::While(w), Some(done)) => {
                let cond = &w.cond;
                syn::parse_quote_spanned!(span=> while !#done && (#cond) { #(#new_body)* })
            }
            (LoopSyntax::While(w), None) => {
                let cond = &w.cond;
                syn::parse_quote_spanned!(span=> while #cond { #(#new_body)* })
            }
            (LoopSyntax::Loop(_), Some(done)) => {
                syn::parse_quote_spanned!(span=> while !#done { #(#new_body)* })
            }
            (LoopSyntax::Loop(l), None) => {
                self.cx.error_spanned_by(
                    l.loop_token,
                    "`#[grad]` needs a `loop` to end with `break`; this one never does",
                );
                return dummy();
            }
        };
        for st in prelude.iter().chain(std::iter::once(&looped)) {
            self.block_stmt(st, false);
        }
        match &flags.out {
            Some(out) => {
                let v = self.lookup(&out.to_string()).expect("bound above");
                match want {
                    Some(w) => self.define(Some(w), Rhs::Copy(Operand::Var(v)), span),
                    None => Operand::Var(v),
                }
            }
            None => dummy(),
        }
    }
}

/// A loop head while its body is being lowered.
enum LoopHeadDraft {
    For {
        index: VarId,
        range: proc_macro2::TokenStream,
        double_ended: bool,
    },
    While(Operand),
}

/// Whether a supported range (see `range_tokens`) can run backwards: `step_by` over
/// `a..=b` cannot (an inclusive range of `usize` is not an exact-size iterator, so the
/// step adaptor is not double-ended); every other form can.
fn double_ended(e: &Expr) -> bool {
    fn inclusive(e: &Expr) -> bool {
        match e {
            Expr::Paren(p) => inclusive(&p.expr),
            Expr::Group(g) => inclusive(&g.expr),
            Expr::Range(r) => matches!(r.limits, syn::RangeLimits::Closed(_)),
            Expr::MethodCall(m) => inclusive(&m.receiver),
            _ => false,
        }
    }
    match e {
        Expr::Paren(p) => double_ended(&p.expr),
        Expr::Group(g) => double_ended(&g.expr),
        Expr::MethodCall(m) if m.method == "step_by" => !inclusive(&m.receiver),
        Expr::MethodCall(m) => double_ended(&m.receiver),
        _ => true,
    }
}

/// The three loop forms, as written.
#[derive(Clone, Copy)]
pub(super) enum LoopSyntax<'a> {
    For(&'a syn::ExprForLoop),
    While(&'a syn::ExprWhile),
    Loop(&'a syn::ExprLoop),
}
