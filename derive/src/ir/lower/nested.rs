//! Gradients of gradients: a call of another function's `f_grad` inside a `#[grad]`
//! function (`let (l, g) = h_grad(x);`, then `g.x`, `g.w[i]`). The call is one value,
//! `(value, gradient)`, lowered as a place like a struct argument: `l` reads field `0`,
//! `g` borrows field `1`, and the gradient's fields are read as a struct argument's are.
//! Its rule companion is `h_grad {}` (`emit::nested`), whose pullback is `h`'s
//! Hessian-vector product.

use super::Lowerer;
use crate::ir::{BufOp, Operand, Rhs, Stmt};
use proc_macro2::Ident;
use syn::spanned::Spanned;
use syn::{Expr, Pat};

/// `h_grad(x)`, `m::h_grad::<T>(x)`: a call of a path whose last segment ends in
/// `_grad`. Only a tuple pattern or a field read makes it a gradient call (a `#[grad]`
/// function returns a float or an array, never a pair), so a function that happens to
/// be named `energy_grad` and returns a float is still an ordinary call.
pub(super) fn grad_call(e: &Expr) -> Option<&syn::ExprCall> {
    match e {
        Expr::Paren(p) => grad_call(&p.expr),
        Expr::Group(g) => grad_call(&g.expr),
        Expr::Call(c) => match &*c.func {
            Expr::Path(p)
                if p.qself.is_none()
                    && p.path.segments.last().is_some_and(|s| {
                        let n = s.ident.to_string();
                        n.len() > "_grad".len() && n.ends_with("_grad")
                    }) =>
            {
                Some(c)
            }
            _ => None,
        },
        _ => None,
    }
}

impl Lowerer<'_> {
    /// The call as one value, `(value, gradient)`, a place whose fields are read.
    pub(super) fn grad_call_place(&mut self, c: &syn::ExprCall, want: Option<&Ident>) -> Operand {
        let v = self.call(c, want);
        if let Operand::Var(x) = v
            && matches!(self.body.last(), Some(Stmt { def, rhs: Rhs::Call { .. }, .. }) if *def == x)
        {
            self.places.insert(x);
            self.grad_calls.insert(x);
        }
        v
    }

    /// `let (l, g) = h_grad(x);` (either name may be `_`): `l` is the value, `g` the
    /// gradient, a place (`g.x`, `g.w[i]`, `&g.w`).
    pub(super) fn grad_call_tuple(&mut self, t: &syn::PatTuple, c: &syn::ExprCall) {
        let call = self.grad_call_place(c, None);
        for (k, elem) in t.elems.iter().enumerate() {
            let Pat::Ident(pi) = elem else { continue };
            let member = syn::Member::Unnamed(syn::Index {
                index: k as u32,
                span: pi.ident.span(),
            });
            let op = if k == 0 {
                BufOp::FieldRead(member)
            } else {
                BufOp::Field(member)
            };
            let v = self.define(
                Some(&pi.ident),
                Rhs::Buffer {
                    op,
                    args: vec![call.clone()],
                },
                elem.span(),
            );
            if let Operand::Var(v) = v {
                if k == 1 {
                    self.places.insert(v);
                }
                self.scopes
                    .last_mut()
                    .expect("scope")
                    .insert(pi.ident.to_string(), v);
            }
        }
    }
}
