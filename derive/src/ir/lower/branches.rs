//! Branches: `if`/`else` (as statements and expressions, early returns), `match`
//! on values without a derivative, and `matches!`.

use super::{Lowerer, SUPPORTED, dummy};
use crate::ir::{IfNode, IfOut, Operand, Rhs, Spelling, Stmt};
use proc_macro2::Ident;
use quote::ToTokens;
use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, Pat};

impl Lowerer<'_> {
    /// `if c { .. } else { .. }` in SSA form: each branch is lowered into its own body,
    /// starting from the same bindings; every local either branch reassigns, and the
    /// branch's value when it is used as an expression, becomes an output (a φ-node)
    /// rebound after the `if`. `else_is_body` marks the rewritten rest of the function
    /// after an early `return` (its own `return`s are allowed).
    pub(super) fn if_expr(
        &mut self,
        i: &syn::ExprIf,
        want: Option<&Ident>,
        needs_value: bool,
        else_is_body: bool,
    ) -> Operand {
        let span = i.span();
        if let Expr::Let(l) = &*i.cond {
            // `if let Some(m) = mask { .. }` on an `Option` of data (an argument of
            // type `Option<&Array2<f64>>` is never differentiated): the `if` it means,
            // `if opt.is_some() { let m = opt.unwrap(); .. }`.
            if let Pat::TupleStruct(ts) = &*l.pat
                && ts.path.is_ident("Some")
                && ts.elems.len() == 1
                && let Some(Pat::Ident(bind)) = ts.elems.first()
                && bind.by_ref.is_none()
                && bind.subpat.is_none()
            {
                let opt = self.names.fresh("option", span);
                let e = &l.expr;
                let value = quote::quote!(::backprop::__private::option_ref(#e));
                let local: syn::Stmt = syn::parse_quote_spanned!(span=> let #opt = #value;);
                self.block_stmt(&local, false);
                let x = &bind.ident;
                let then_stmts = &i.then_branch.stmts;
                let mut rewritten = i.clone();
                *rewritten.cond = syn::parse_quote_spanned!(span=> #opt.is_some());
                rewritten.then_branch =
                    syn::parse_quote_spanned!(span=> { let #x = #opt.unwrap(); #(#then_stmts)* });
                return self.if_expr(&rewritten, want, needs_value, else_is_body);
            }
            self.cx.error_spanned_by(
                l,
                format!("`#[grad]` supports `if let Some(x) = option` on an `Option` of data (an argument is never differentiated through an `Option`); other `if let` patterns are not supported: write a `match` on a value without a derivative, or `if`; {SUPPORTED}"),
            );
            return dummy();
        }
        let cond = self.expr(&i.cond, None);
        self.read_cache.clear();
        let before = self.scopes.clone();
        let outer_body = std::mem::take(&mut self.body);
        // then
        self.scopes.push(HashMap::new());
        let then_val = if needs_value {
            Some(self.block_value(&i.then_branch.stmts, i.then_branch.span(), false))
        } else {
            for stmt in &i.then_branch.stmts {
                match stmt {
                    syn::Stmt::Expr(e, None) => self.expr_stmt(e),
                    other => self.block_stmt(other, false),
                }
            }
            None
        };
        self.scopes.pop();
        let then_body = std::mem::take(&mut self.body);
        self.read_cache.clear();
        let then_scopes = std::mem::replace(&mut self.scopes, before.clone());
        // else
        let else_val = match &i.else_branch {
            Some((_, else_expr)) => match (&**else_expr, needs_value) {
                // The rest of the body after an early `return` is a scope of its own:
                // its `let`s (a buffer shadowed, say) are not rebindings the `if` merges.
                (Expr::Block(b), true) if else_is_body => {
                    self.scopes.push(HashMap::new());
                    let v = self.block_value(&b.block.stmts, b.block.span(), true);
                    self.scopes.pop();
                    Some(v)
                }
                (e, true) => Some(self.expr(e, None)),
                (e, false) => {
                    self.expr_stmt(e);
                    None
                }
            },
            None if needs_value => {
                self.cx.error_spanned_by(
                    i,
                    "`#[grad]` needs an `if` used as a value to have an `else` branch",
                );
                Some(dummy())
            }
            None => None,
        };
        let else_body = std::mem::replace(&mut self.body, outer_body);
        self.read_cache.clear();
        let else_scopes = std::mem::replace(&mut self.scopes, before.clone());
        // φ-nodes: the value, then every outer local a branch rebound.
        let mut outs = Vec::new();
        let mut value = None;
        if let (Some(t), Some(e)) = (then_val, else_val) {
            let def = match want {
                Some(ident) => {
                    let v = self.user_var(ident);
                    self.named_result = Some(v);
                    v
                }
                None => {
                    let name = self.names.temp(span);
                    self.new_var(name)
                }
            };
            outs.push(IfOut {
                def,
                then_val: t,
                else_val: e,
            });
            value = Some(def);
        }
        let mut rebinds = Vec::new();
        for (level, scope) in before.iter().enumerate() {
            let mut names: Vec<&String> = scope.keys().collect();
            names.sort();
            for name in names {
                let old = scope[name];
                let t = then_scopes[level][name];
                let e = else_scopes[level][name];
                if t == old && e == old {
                    continue;
                }
                if self.buffers.contains(&old) {
                    let at = super::scope::whole_assignment(name, |f| f.visit_expr_if(i));
                    self.cx.error_at(
                        at.unwrap_or(span),
                        format!("`#[grad]` does not support assigning a whole buffer (`{name} = ...`) inside a branch yet; write its elements instead (`{name}.copy_from_slice(&new)`, `{name}[i] = ...`)"),
                    );
                }
                let ident = if let Some(raw) = name.strip_prefix("r#") {
                    Ident::new_raw(raw, span)
                } else {
                    Ident::new(name, span)
                };
                let first = false;
                let fresh = self.names.claim_user(&ident, first);
                let def = self.new_var(fresh);
                outs.push(IfOut {
                    def,
                    then_val: Operand::Var(t),
                    else_val: Operand::Var(e),
                });
                rebinds.push((level, name.clone(), def));
            }
        }
        for (level, name, def) in rebinds {
            self.scopes[level].insert(name, def);
        }
        let tape = self.names.fresh("branch", span);
        let def = self.new_var(tape);
        self.body.push(Stmt {
            def,
            rhs: Rhs::If(Box::new(IfNode {
                cond,
                then_body,
                else_body,
                outs,
            })),
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
        value.map_or_else(dummy, Operand::Var)
    }

    /// `matches!(x, PAT)`: a bool with derivative 0 (`x` is evaluated once).
    pub(super) fn matches_macro(&mut self, m: &syn::ExprMacro, want: Option<&Ident>) -> Operand {
        let parsed = m.mac.parse_body_with(|input: syn::parse::ParseStream<'_>| {
            let e: Expr = input.parse()?;
            let _: syn::Token![,] = input.parse()?;
            let pat = Pat::parse_multi_with_leading_vert(input)?;
            let _: Option<syn::Token![,]> = input.parse()?;
            if !input.is_empty() {
                return Err(input.error("a guard"));
            }
            Ok((e, pat))
        });
        let Ok((scrutinee, pat)) = parsed else {
            self.cx.error_spanned_by(
                m,
                "`#[grad]` supports `matches!(value, PATTERN)` without a guard; write the guard with `&&` after it",
            );
            return dummy();
        };
        let x = self.expr(&scrutinee, None);
        self.define(
            want,
            Rhs::ZeroDerivative {
                spelling: Spelling::Matches(pat.to_token_stream()),
                args: vec![x],
            },
            m.span(),
        )
    }

    /// `match` on a value that carries no derivative (an integer, an enum, a
    /// comparison), as the `if` chain it is: arm k runs when
    /// `matches!(x, PAT_k) && guard_k` and no earlier arm did. A last arm whose pattern
    /// always matches (`_`, a name) is the `else`. Arms may bind the whole value to a
    /// name (`n => ..`), not parts of it.
    pub(super) fn match_expr(
        &mut self,
        m: &syn::ExprMatch,
        want: Option<&Ident>,
        needs_value: bool,
    ) -> Operand {
        let span = m.span();
        let scrutinee = self.names.fresh("scrutinee", span);
        let value = &m.expr;
        let local: syn::Stmt = syn::parse_quote_spanned!(span=> let #scrutinee = #value;);
        self.block_stmt(&local, false);
        let mut arms: Vec<(Option<Expr>, Expr)> = Vec::new();
        for (k, arm) in m.arms.iter().enumerate() {
            let last = k + 1 == m.arms.len();
            let (binding, pat) = match &arm.pat {
                Pat::Ident(pi)
                    if pi.subpat.is_none()
                        && pi.by_ref.is_none()
                        && !pi.ident.to_string().starts_with(char::is_uppercase) =>
                {
                    (Some(pi.ident.clone()), None)
                }
                Pat::Wild(_) => (None, None),
                p => (None, Some(p.clone())),
            };
            if let Some(p) = &pat
                && binds_names(p)
            {
                self.cx.error_spanned_by(
                    p,
                    "`#[grad]` supports `match` arms whose patterns bind no names (literals, ranges, `_`, enum variants without fields, `|`), or bind the whole value (`n => ..`); take the parts apart before the `match`",
                );
                return dummy();
            }
            let body = &arm.body;
            let body: Expr = match &binding {
                Some(b) => {
                    syn::parse_quote_spanned!(arm.body.span()=> { let #b = #scrutinee; #body })
                }
                None => syn::parse_quote_spanned!(arm.body.span()=> { #body }),
            };
            let cond: Option<Expr> = match (&pat, &arm.guard) {
                (None, None) => None,
                (Some(p), None) => {
                    Some(syn::parse_quote_spanned!(span=> ::core::matches!(#scrutinee, #p)))
                }
                (Some(p), Some((_, g))) => {
                    Some(syn::parse_quote_spanned!(span=> ::core::matches!(#scrutinee, #p) && (#g)))
                }
                (None, Some((_, g))) => match &binding {
                    Some(b) => Some(syn::parse_quote_spanned!(span=> { let #b = #scrutinee; #g })),
                    None => Some(syn::parse_quote_spanned!(span=> #g)),
                },
            };
            let cond = if last && arm.guard.is_none() {
                None
            } else {
                cond
            };
            let catch_all = cond.is_none();
            arms.push((cond, body));
            if catch_all {
                if !last {
                    self.cx.error_spanned_by(
                        &m.arms[k + 1].pat,
                        "`#[grad]`: this arm is unreachable (an earlier arm matches every value)",
                    );
                    return dummy();
                }
                break;
            }
        }
        // Fold from the last arm: `if c1 { b1 } else if c2 { b2 } else { b3 }`.
        let mut iter = arms.into_iter().rev();
        let Some((last_cond, last_body)) = iter.next() else {
            self.cx
                .error_spanned_by(m, "`#[grad]` needs a `match` to have an arm");
            return dummy();
        };
        let mut chain: Expr = match last_cond {
            // Exhaustive without a catch-all (rustc checks the original function): the
            // last arm is the `else`.
            Some(_) | None => last_body,
        };
        for (cond, body) in iter {
            let cond = cond.expect("only the last arm may match everything");
            chain = syn::parse_quote_spanned!(span=> if #cond #body else #chain);
        }
        match chain {
            Expr::If(i) => self.if_expr(&i, want, needs_value, false),
            Expr::Block(b) if needs_value => self.expr(&Expr::Block(b), want),
            Expr::Block(b) => {
                self.expr_stmt(&Expr::Block(b));
                dummy()
            }
            _ => unreachable!("arms are blocks"),
        }
    }
}

/// Whether a pattern binds a name (`Some(v)`, `x @ 1..=3`); constants (`K`, `Mode::Fast`)
/// and literals do not.
fn binds_names(p: &Pat) -> bool {
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_pat_ident(&mut self, pi: &'ast syn::PatIdent) {
            if pi.subpat.is_some() || !pi.ident.to_string().starts_with(char::is_uppercase) {
                self.0 = true;
            }
            syn::visit::visit_pat_ident(self, pi);
        }
    }
    let mut f = Finder(false);
    f.visit_pat(p);
    f.0
}
