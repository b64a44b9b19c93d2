//! `x.mapv(|v| body)`: the closure's body lowered with `v` standing for the whole
//! array, so each operation is the array operation with its elementwise rule; what such
//! a body may contain, and the message of every refusal of one.

use super::methods::strip;
use super::{Lowerer, dummy};
use crate::ir::{Operand, op};
use proc_macro2::Ident;
use quote::ToTokens;
use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::{Expr, Pat};

/// Whether a `mapv` closure may call float method `name` on its element: the rule
/// table's one-argument methods (each also an elementwise array method, with the tensor
/// path's elementwise rule: ndarray's own, or `backprop::Erf`'s), `powi`, and the
/// piecewise-constant ones.
fn elementwise(name: &str) -> bool {
    crate::ir::rule_table::methods()
        .iter()
        .any(|p| p.arity() == 1 && p.name == name)
        || name == "powi"
        || elementwise_constants().any(|c| c == name)
}

/// The number of float arguments of a method `mapv` lowers to the runtime's elementwise
/// form with float arguments (`max`, `min`, `powf`, `hypot`, `log`: 1; `clamp`: 2).
fn with_floats(name: &str) -> Option<usize> {
    crate::ir::op::ELEMENTWISE_WITH_FLOATS
        .contains(&name)
        .then_some(if name == "clamp" { 2 } else { 1 })
}

/// The rule table's zero-derivative methods ndarray also has on arrays (all but
/// `round_ties_even`): the `mapv` lowering calls the array method.
fn elementwise_constants() -> impl Iterator<Item = &'static str> {
    crate::ir::rule_table::constants()
        .iter()
        .copied()
        .filter(|c| *c != "round_ties_even")
}

/// What a `mapv` closure may be (the message of every refusal of one).
fn mapv_forms() -> String {
    let methods: Vec<&str> = crate::ir::rule_table::methods()
        .iter()
        .filter(|p| p.arity() == 1)
        .map(|p| p.name)
        .collect();
    let constants: Vec<&str> = elementwise_constants().collect();
    format!(
        "`#[grad]` differentiates `x.mapv(f)` for a closure `|v| ..` whose body is arithmetic (`+ - * /`, unary `-`) on `v`, literals, captured scalars and float fields (`p.temp`), and the elementwise float methods {}, powi; {} with float arguments (`v.max(0.0)`, `v.max(0.01 * v)`, `v.powf(p)`, `v.clamp(lo, hi)`); {} with derivative 0; the activations {} called as `backprop::sigmoid(v)`; possibly in `let`s of a block; or a path to one of those methods (`f64::tanh`). It is lowered to the same operations on the whole array",
        methods.join(", "),
        crate::ir::op::ELEMENTWISE_WITH_FLOATS.join(", "),
        constants.join(", "),
        ACTIVATIONS.join(", ")
    )
}

impl Lowerer<'_> {
    /// `x.mapv(|v| body)`: the body lowered with `v` standing for the whole array, so
    /// each operation is the array operation with its elementwise rule.
    pub(super) fn mapv(&mut self, m: &syn::ExprMethodCall, want: Option<&Ident>) -> Operand {
        let arg = &m.args[0];
        let (param, body): (Ident, Expr) = match strip(arg) {
            Expr::Closure(c) if c.inputs.len() == 1 => {
                let p = match &c.inputs[0] {
                    Pat::Type(pt) => &*pt.pat,
                    other => other,
                };
                match p {
                    Pat::Ident(i) if i.by_ref.is_none() && i.subpat.is_none() => {
                        (i.ident.clone(), (*c.body).clone())
                    }
                    _ => {
                        self.cx.error_spanned_by(&c.inputs[0], mapv_forms());
                        return dummy();
                    }
                }
            }
            Expr::Path(p)
                if p.qself.is_none()
                    && p.path.segments.len() >= 2
                    && elementwise(
                        &p.path
                            .segments
                            .last()
                            .expect("two segments")
                            .ident
                            .to_string(),
                    )
                    && p.path.segments.last().expect("two segments").ident != "powi" =>
            {
                let method = p.path.segments.last().expect("two segments").ident.clone();
                let v = Ident::new("__backprop_mapv_element", arg.span());
                (
                    v.clone(),
                    syn::parse_quote_spanned!(arg.span()=> #v.#method()),
                )
            }
            // `x.mapv(backprop::sigmoid)`: the activation's array op.
            Expr::Path(p)
                if p.qself.is_none()
                    && p.path.segments.len() == 2
                    && p.path.segments[0].ident == "backprop"
                    && ACTIVATIONS.contains(&p.path.segments[1].ident.to_string().as_str()) =>
            {
                let v = Ident::new("__backprop_mapv_element", arg.span());
                (v.clone(), syn::parse_quote_spanned!(arg.span()=> #p(#v)))
            }
            _ => {
                self.cx.error_spanned_by(arg, mapv_forms());
                return dummy();
            }
        };
        let body = backprop_calls_as_methods(body, &param);
        if let Err(bad) = elementwise_body(&body) {
            self.cx.error_spanned_by(bad, mapv_forms());
            return dummy();
        }
        let x = self.receiver(&m.receiver, &m.method);
        let xv = match x {
            Operand::Var(v) => v,
            // A constant array and a body that reads no local: a constant.
            Operand::Const(_) if !self.mentions_local(&Expr::MethodCall(m.clone())) => {
                return self.expr(&syn::parse_quote!(#m), want);
            }
            // A constant array (or a refused receiver, whose error is out) and a body that
            // reads locals: the body's operations on a local holding the constant.
            Operand::Const(_) => match self.define(None, crate::ir::Rhs::Copy(x), m.span()) {
                Operand::Var(v) => v,
                Operand::Const(_) => unreachable!("define makes a var"),
            },
        };
        let mut scope = HashMap::new();
        scope.insert(param.to_string(), xv);
        let hidden = self.closures.remove(&param.to_string());
        self.scopes.push(scope);
        let value = self.expr(&body, want);
        self.scopes.pop();
        if let Some(cl) = hidden {
            self.closures.insert(param.to_string(), cl);
        }
        value
    }
}

/// The scalar activations with an elementwise op of the same formula in
/// `backprop::ops`: inside a `mapv` body, `backprop::sigmoid(e)` is `ops::sigmoid(&e)`.
const ACTIVATIONS: &[&str] = &["sigmoid", "relu", "gelu", "silu", "softplus"];

/// `backprop::erf(v)` and `backprop::erfc(v)` (README's spelling for f64 code, where the
/// methods would collide with std's unstable ones) as the methods they are, `v.erf()`;
/// `backprop::sigmoid(v)` and the other [`ACTIVATIONS`] as their array ops.
fn backprop_calls_as_methods(mut body: Expr, param: &Ident) -> Expr {
    use syn::visit_mut::VisitMut;
    struct Rewrite<'p>(&'p Ident);
    impl VisitMut for Rewrite<'_> {
        fn visit_expr_mut(&mut self, e: &mut Expr) {
            syn::visit_mut::visit_expr_mut(self, e);
            if let Expr::Call(c) = e
                && c.args.len() == 1
                && let Expr::Path(p) = &*c.func
                && p.path.segments.len() == 2
                && p.path.segments[0].ident == "backprop"
                && matches!(
                    p.path.segments[1].ident.to_string().as_str(),
                    "erf" | "erfc"
                )
            {
                let (f, x) = (&p.path.segments[1].ident, &c.args[0]);
                *e = syn::parse_quote_spanned!(c.span()=> (#x).#f());
            } else if let Expr::Call(c) = e
                && c.args.len() == 1
                && let Expr::Path(p) = &*c.func
                && p.path.segments.len() == 2
                && p.path.segments[0].ident == "backprop"
                && ACTIVATIONS.contains(&p.path.segments[1].ident.to_string().as_str())
                && mentions(&c.args[0], self.0)
            {
                let (f, x) = (&p.path.segments[1].ident, &c.args[0]);
                *e = syn::parse_quote_spanned!(c.span()=> backprop::ops::#f(&(#x)));
            }
        }
    }
    Rewrite(param).visit_expr_mut(&mut body);
    body
}

/// Whether a closure body is elementwise arithmetic that reads the element `param` (not
/// the element alone, nor a constant): what makes ndarray's `map` a `mapv`.
pub(super) fn is_elementwise_arithmetic(body: &Expr, param: &Ident) -> bool {
    let body = backprop_calls_as_methods(body.clone(), param);
    let trivial = matches!(strip(&body), Expr::Path(_) | Expr::Lit(_));
    !trivial && elementwise_body(&body).is_ok() && mentions(&body, param)
}

/// Whether `e` names `param`.
fn mentions(e: &Expr, param: &Ident) -> bool {
    super::any_ident(e.to_token_stream(), &mut |i| i == param)
}

/// Checks a `mapv` body: `Err` with the first expression that is not elementwise.
fn elementwise_body(e: &Expr) -> Result<(), &dyn ToTokens> {
    match e {
        Expr::Lit(_) | Expr::Path(_) => Ok(()),
        // A captured field (`p.temp`, `self.scale`): a scalar of a struct argument.
        Expr::Field(f) if matches!(strip(&f.base), Expr::Path(_) | Expr::Field(_)) => Ok(()),
        // A constant of generic code: `T::one()`, `T::from(0.5).unwrap()`.
        Expr::Call(c) if is_constant_call(c) => Ok(()),
        Expr::MethodCall(m)
            if matches!(m.method.to_string().as_str(), "unwrap" | "expect")
                && matches!(strip(&m.receiver), Expr::Call(c) if is_constant_call(c)) =>
        {
            Ok(())
        }
        Expr::Paren(p) => elementwise_body(&p.expr),
        Expr::Group(g) => elementwise_body(&g.expr),
        Expr::Binary(b) => {
            use syn::BinOp::{Add, Div, Mul, Sub};
            if !matches!(b.op, Add(_) | Sub(_) | Mul(_) | Div(_)) {
                return Err(e);
            }
            elementwise_body(&b.left)?;
            elementwise_body(&b.right)
        }
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => elementwise_body(&u.expr),
        // `backprop::ops::sigmoid(&(v))`, written `backprop::sigmoid(v)`.
        Expr::Call(c) if activation_op(c) => match &c.args[0] {
            Expr::Reference(r) => elementwise_body(&r.expr),
            other => Err(other),
        },
        // `backprop::sigmoid(s)` of a captured scalar: the scalar rule.
        Expr::Call(c) if scalar_activation(c) => elementwise_body(&c.args[0]),
        Expr::MethodCall(m) if m.turbofish.is_none() => {
            let name = m.method.to_string();
            if let Some(arity) = with_floats(&name) {
                // `v.max(0.0)`, `v.powf(p)`, `v.clamp(lo, hi)`: the arguments are floats
                // (the check after lowering refuses one that depends on the element).
                if m.args.len() != arity {
                    return Err(e);
                }
                for a in &m.args {
                    elementwise_body(a)?;
                }
                return elementwise_body(&m.receiver);
            }
            if !elementwise(&name) {
                return Err(&m.method);
            }
            if name == "powi" {
                // The exponent is an integer: a literal or a constant.
                if m.args.len() != 1 {
                    return Err(e);
                }
            } else if !m.args.is_empty() {
                return Err(e);
            }
            elementwise_body(&m.receiver)
        }
        Expr::Block(b) if b.label.is_none() => {
            for (k, st) in b.block.stmts.iter().enumerate() {
                match st {
                    syn::Stmt::Local(l) => {
                        let Some(init) = &l.init else { return Err(l) };
                        if init.diverge.is_some() {
                            return Err(l);
                        }
                        elementwise_body(&init.expr)?;
                    }
                    syn::Stmt::Expr(e, None) if k + 1 == b.block.stmts.len() => {
                        elementwise_body(e)?
                    }
                    other => return Err(other),
                }
            }
            Ok(())
        }
        _ => Err(e),
    }
}

/// `backprop::sigmoid(..)` and the other [`ACTIVATIONS`], with one argument.
fn scalar_activation(c: &syn::ExprCall) -> bool {
    activation_at(c, &["backprop"])
}

/// `backprop::ops::sigmoid(..)` and the other [`ACTIVATIONS`], with one argument.
fn activation_op(c: &syn::ExprCall) -> bool {
    activation_at(c, &["backprop", "ops"])
}

/// A call of one of the [`ACTIVATIONS`] by the path `module::name`, with one argument.
fn activation_at(c: &syn::ExprCall, module: &[&str]) -> bool {
    let Expr::Path(p) = &*c.func else {
        return false;
    };
    let segs = op::segments(&p.path);
    c.args.len() == 1
        && segs.len() == module.len() + 1
        && segs.iter().zip(module).all(|(s, m)| s == m)
        && ACTIVATIONS.contains(&segs[module.len()].as_str())
}

/// `T::one()`, `T::zero()`, `T::from(0.5)`, `f64::from(2u8)`: a path call whose arguments
/// are literals, a constant inside a `mapv` body.
fn is_constant_call(c: &syn::ExprCall) -> bool {
    matches!(&*c.func, Expr::Path(p) if p.path.segments.len() >= 2)
        && c.args.iter().all(|a| matches!(strip(a), Expr::Lit(_)))
}
