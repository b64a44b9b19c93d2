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

/// `h_forward(x)`, `h_vjp(x, d)`, `h_jvp(..)`, `h_hvp(..)` destructured in a `let`: the
/// other companions of a `#[grad]` function, which have no rule of their own here. The
/// message says what to write instead.
pub(super) fn other_companion(e: &Expr) -> Option<(&syn::ExprCall, String)> {
    let Expr::Call(c) = e else { return None };
    let Expr::Path(p) = &*c.func else { return None };
    let name = p.path.segments.last()?.ident.to_string();
    let (base, fix) = [
        ("_forward", "its tape cannot be differentiated; call `{base}_grad(..)` for the value and gradient, or `{base}(..)` for the value"),
        ("_vjp", "a layer is called as itself (`{base}(..)`), and its VJP comes from the caller's reverse pass"),
        ("_jvp", "write the directional derivative from the gradient: `let (l, g) = {base}_grad(..);` then pair `g`'s fields with the tangent"),
        ("_hvp", "differentiating a Hessian-vector product would need third derivatives, which `#[grad]` does not have"),
    ]
    .into_iter()
    .find_map(|(suffix, fix)| {
        name.strip_suffix(suffix)
            .filter(|b| !b.is_empty())
            .map(|b| (b.to_string(), fix))
    })?;
    let fix = fix.replace("{base}", &base);
    Some((
        c,
        format!(
            "`#[grad]` differentiates a call of another function's gradient, `let (l, g) = {base}_grad(..);`, but not of `{name}`: {fix}"
        ),
    ))
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
