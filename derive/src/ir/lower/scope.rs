//! Values and scopes: new SSA versions of user names, lookup through nested
//! scopes, `define` (one `let` per operation), and which names a block assigns.

use super::Lowerer;
use super::expr::compound;
use crate::ir::{Operand, Rhs, Stmt, VarId, VarInfo};
use proc_macro2::{Ident, Span};
use syn::Expr;
use syn::visit::Visit;

impl Lowerer<'_> {
    pub(super) fn new_var(&mut self, name: Ident) -> VarId {
        self.vars.push(VarInfo { name });
        VarId(self.vars.len() - 1)
    }

    /// A new value for user name `ident` (first use keeps the name, later ones `x_1`).
    /// A binding inside a nested block is always renamed: the forward pass is one flat
    /// scope, where the block's name must not shadow an outer item used after it.
    pub(super) fn user_var(&mut self, ident: &Ident) -> VarId {
        let first = self.scopes.len() == 1 && self.claimed.insert(ident.to_string());
        let name = self.names.claim_user(ident, first);
        self.new_var(name)
    }

    /// A temporary defined by the last statement and not bound to any name.
    pub(super) fn is_fresh_temp(&self, v: VarId) -> bool {
        self.body
            .last()
            .is_some_and(|s| s.def == v && !matches!(s.rhs, Rhs::If(_) | Rhs::Loop(_)))
            && !self
                .scopes
                .iter()
                .any(|scope| scope.values().any(|b| *b == v))
            && self.temps.contains(&v)
    }

    pub(super) fn lookup(&self, name: &str) -> Option<VarId> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    /// Rebinds an existing user name in the scope that holds it (assignment).
    pub(super) fn rebind(&mut self, name: &str, var: VarId) {
        for scope in self.scopes.iter_mut().rev() {
            if let Some(slot) = scope.get_mut(name) {
                *slot = var;
                return;
            }
        }
    }

    pub(super) fn define(&mut self, want: Option<&Ident>, rhs: Rhs, span: Span) -> Operand {
        let def = match want {
            Some(ident) => {
                let v = self.user_var(ident);
                self.named_result = Some(v);
                v
            }
            None => {
                let name = self.names.temp(span);
                let v = self.new_var(name);
                self.temps.insert(v);
                v
            }
        };
        self.body.push(Stmt {
            def,
            rhs,
            span,
            ty: None,
            source: String::new(),
            compound: false,
        });
        Operand::Var(def)
    }

    /// Does `e` read any local value? If not, it is a constant and is kept verbatim.
    /// A name this function binds: a local, a closure bound to a local (`act(2.0)` is
    /// the closure's call, not a constant expression), or a refused `let`.
    pub(super) fn is_local_name(&self, n: &str) -> bool {
        self.lookup(n).is_some() || self.closures.contains_key(n) || self.poisoned.contains(n)
    }

    pub(super) fn mentions_local(&self, e: &Expr) -> bool {
        struct Finder<'s, 'a> {
            lw: &'s Lowerer<'a>,
            found: bool,
        }
        impl<'ast> Visit<'ast> for Finder<'_, '_> {
            fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
                if p.qself.is_none()
                    && let Some(i) = p.path.get_ident()
                {
                    self.found |= self.lw.is_local_name(&i.to_string());
                }
            }
            fn visit_macro(&mut self, m: &'ast syn::Macro) {
                let lw = self.lw;
                self.found |=
                    super::any_ident(m.tokens.clone(), &mut |i| lw.is_local_name(&i.to_string()));
            }
        }
        let mut f = Finder {
            lw: self,
            found: false,
        };
        f.visit_expr(e);
        f.found
    }

    /// The outer locals a loop body assigns to (`x = ...`, `x += ...`), sorted: the
    /// values the loop carries from one iteration to the next.
    pub(super) fn assigned_in(&self, body: &syn::Block) -> Vec<String> {
        struct Finder<'s, 'a> {
            lw: &'s Lowerer<'a>,
            found: std::collections::BTreeSet<String>,
        }
        impl<'ast> Visit<'ast> for Finder<'_, '_> {
            fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
                if let Expr::Path(p) = &*a.left
                    && let Some(i) = p.path.get_ident()
                    && self.lw.lookup(&i.to_string()).is_some()
                {
                    self.found.insert(i.to_string());
                }
                // `a[[i, j]] = v` makes a new version of an ndarray array `a`.
                if let Expr::Index(ix) = &*a.left
                    && let Some((name, _)) = self.lw.array_write_target(ix)
                {
                    self.found.insert(name.to_string());
                }
                syn::visit::visit_expr_assign(self, a);
            }
            fn visit_expr_binary(&mut self, b: &'ast syn::ExprBinary) {
                if compound(&b.op).is_some()
                    && let Expr::Path(p) = &*b.left
                    && let Some(i) = p.path.get_ident()
                    && self.lw.lookup(&i.to_string()).is_some()
                {
                    self.found.insert(i.to_string());
                }
                if compound(&b.op).is_some()
                    && let Expr::Index(ix) = &*b.left
                    && let Some((name, _)) = self.lw.array_write_target(ix)
                {
                    self.found.insert(name.to_string());
                }
                syn::visit::visit_expr_binary(self, b);
            }
            fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
                // `a.fill(v)` makes a new version of an ndarray array `a`.
                if let Some((name, _)) = self.lw.array_fill_target(m) {
                    self.found.insert(name.to_string());
                }
                syn::visit::visit_expr_method_call(self, m);
            }
        }
        let mut f = Finder {
            lw: self,
            found: Default::default(),
        };
        f.visit_block(body);
        f.found.into_iter().collect()
    }

    pub(super) fn ident_of(name: &str, span: Span) -> Ident {
        match name.strip_prefix("r#") {
            Some(raw) => Ident::new_raw(raw, span),
            None => Ident::new(name, span),
        }
    }

    /// Two fresh names for `lift_loop_returns`.
    pub(super) fn names_for_lift(&mut self) -> (Ident, Ident) {
        let span = Span::call_site();
        (
            self.names.fresh("returned_value", span),
            self.names.fresh("returned", span),
        )
    }
}

/// Where `name = ..` is first assigned as a whole inside `node` (a loop's body, an `if`),
/// for an error spanned on the assignment.
pub(super) fn whole_assignment<'ast>(
    name: &str,
    visit: impl FnOnce(&mut dyn Visit<'ast>),
) -> Option<proc_macro2::Span> {
    struct Find<'n> {
        name: &'n str,
        at: Option<proc_macro2::Span>,
    }
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_expr_assign(&mut self, a: &'ast syn::ExprAssign) {
            if self.at.is_none()
                && let Expr::Path(p) = &*a.left
                && p.path.is_ident(self.name)
            {
                self.at = Some(syn::spanned::Spanned::span(a));
            }
            syn::visit::visit_expr_assign(self, a);
        }
    }
    let mut f = Find { name, at: None };
    visit(&mut f);
    f.at
}
