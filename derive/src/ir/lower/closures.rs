//! Local closures (`let f = |x| ..;`): recorded where they are bound and inlined
//! at each call.

use super::{Lowerer, dummy};
use crate::ir::{Operand, Rhs, VarId};
use proc_macro2::Ident;
use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::{Expr, Pat};

impl Lowerer<'_> {
    /// `let act = |z: f64| z.tanh();`: a closure of plain parameters bound to a name is
    /// kept as syntax, with the locals it reads as they are now, and inlined where it is
    /// called (`act(x)` is `{ let z = x; z.tanh() }`), so each call is differentiated
    /// like the code it stands for.
    pub(super) fn local_closure(&mut self, local: &syn::Local) -> Result<Option<LocalClosure>, ()> {
        let Pat::Ident(pi) = &local.pat else {
            return Ok(None);
        };
        let Some(init) = &local.init else {
            return Ok(None);
        };
        let mut init = &*init.expr;
        while let Expr::Paren(p) = init {
            init = &p.expr;
        }
        let Expr::Closure(c) = init else {
            return Ok(None);
        };
        let mut params = Vec::new();
        for input in &c.inputs {
            let p = match input {
                Pat::Type(pt) => &*pt.pat,
                other => other,
            };
            match p {
                Pat::Ident(i) if i.by_ref.is_none() && i.subpat.is_none() => {
                    params.push(i.ident.clone())
                }
                _ => {
                    self.cx.error_spanned_by(
                        input,
                        "`#[grad]` inlines a closure bound to a local at its calls; its parameters must be plain names (`|z: f64| ..`, `|a, b| ..`)",
                    );
                    return Err(());
                }
            }
        }
        if c.asyncness.is_some() || c.lifetimes.is_some() {
            return Ok(None);
        }
        // The body reads the captured locals as they are here (a `move` closure's copy;
        // a borrowing one sees the same values, since rustc allows no assignment while
        // it is borrowed). A closure that assigns to what it captured (`FnMut`) is not
        // the expression it stands for.
        let assigned = self.assigned_in(&syn::parse_quote!({ #c; }));
        if let Some(n) = assigned.first() {
            self.cx.error_spanned_by(
                c,
                format!("`#[grad]` inlines a closure bound to a local at its calls; this one assigns to `{n}`, which it captured: write the update where the closure is called"),
            );
            return Err(());
        }
        let mut reads = Vec::new();
        free_names(&c.body, &mut reads);
        let captures = reads
            .into_iter()
            .filter(|n| !params.iter().any(|p| p == n))
            .filter_map(|n| Some((n.clone(), self.lookup(&n)?)))
            .collect();
        Ok(Some(LocalClosure {
            name: pi.ident.clone(),
            params,
            body: (*c.body).clone(),
            captures,
        }))
    }

    /// A call of a closure bound to a local: its body, lowered with the parameters bound
    /// to the arguments.
    pub(super) fn inline_closure(
        &mut self,
        cl: &LocalClosure,
        c: &syn::ExprCall,
        args: Vec<Operand>,
        want: Option<&Ident>,
    ) -> Operand {
        let name = &cl.name;
        if cl.params.len() != args.len() {
            self.cx.error_spanned_by(
                c,
                format!(
                    "the closure `{name}` takes {} argument(s), this call passes {}",
                    cl.params.len(),
                    args.len()
                ),
            );
            return dummy();
        }
        let span = c.span();
        let mut scope = HashMap::new();
        for (p, a) in cl.params.iter().zip(args) {
            let v = match a {
                Operand::Var(v) => v,
                other => match self.define(None, Rhs::Copy(other), span) {
                    Operand::Var(v) => v,
                    Operand::Const(_) => unreachable!("define makes a var"),
                },
            };
            scope.insert(p.to_string(), v);
        }
        // The body sees the locals it captured, then the parameters; a captured local
        // or a parameter named like a closure hides that closure (`let f = x * 2.0;
        // let f = |z| z * f;` reads the float).
        let saved = std::mem::take(&mut self.scopes);
        let mut outer: HashMap<String, VarId> = cl.captures.iter().cloned().collect();
        outer.extend(scope);
        let hidden: Vec<(String, LocalClosure)> = outer
            .keys()
            .filter_map(|n| Some((n.clone(), self.closures.remove(n)?)))
            .collect();
        self.scopes = vec![outer];
        let value = self.expr(&cl.body, want);
        self.scopes = saved;
        self.closures.extend(hidden);
        value
    }
}

/// A closure bound to a local, kept for inlining at its calls (see `local_closure`).
#[derive(Clone)]
pub(super) struct LocalClosure {
    name: Ident,
    params: Vec<Ident>,
    body: Expr,
    /// The locals the body reads, as they were where the closure was made (inlining
    /// reads these, not what the names mean at the call).
    captures: Vec<(String, VarId)>,
}

/// The single-segment paths an expression reads (`x`, `w` in `w * x.exp()`).
fn free_names(e: &Expr, out: &mut Vec<String>) {
    use syn::visit::Visit;
    struct Find<'a>(&'a mut Vec<String>);
    impl<'v> Visit<'v> for Find<'_> {
        fn visit_expr_path(&mut self, p: &'v syn::ExprPath) {
            if let Some(i) = p.path.get_ident() {
                let n = i.to_string();
                if !self.0.contains(&n) {
                    self.0.push(n);
                }
            }
        }
    }
    Find(out).visit_expr(e);
}
