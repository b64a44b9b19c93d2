//! The tangent program: a function's IR with its tangent pass written as IR too, for
//! Hessian-vector products.
//!
//! `f(x)` becomes `f_t(x, v) = ⟨∇f(x), v⟩`: every statement of `f`, each followed by its
//! tangent (`t_y` beside `y`), returning `t_f`. The reverse pass of `f_t` over both
//! arguments gives what `f_hvp` returns:
//!
//! ```text
//! ∂f_t/∂x = ∇²f(x) · v      (the Hessian-vector product)
//! ∂f_t/∂v = ∇f(x)          (f_t is linear in v)
//! ```
//!
//! This is reverse over forward, the transpose of JAX's `jvp(grad(f))`: the two give the
//! same numbers, since the Hessian is symmetric. Building it here, as IR, lets the
//! existing reverse emitter differentiate it with no new construct: a tangent line
//! (`t_y = sin_vjp(x, t_x)`) is a primitive of its own, whose rules are the table's rule
//! (into `t`) and `backprop::__private::second::sin_vjp::dK` (into each read, the rule's
//! second derivative), and the tangents of buffers, loops and branches are buffers,
//! loop-carried values and branch outputs; a call is followed by the callee's
//! `tangent_forward`.
//!
//! Covers what `emit::tangent::supported` covers; a function that calls another's
//! `f_grad` has none (its tangent would be a third derivative).

use super::op::{self, Need, Vjp};
use super::{
    BufOp, Carried, Func, IfNode, IfOut, LoopHead, LoopNode, Operand, Param, Rhs, Stmt, VarId,
    VarInfo,
};
use crate::analysis::Plan;
use crate::names::Names;
use proc_macro2::Span;
use std::collections::HashMap;

/// `t_y = rule(reads.., t)` as a primitive of its own: the pullback into read `k` is
/// `second::rule::dK(reads.., t, d)` (`d · t · ∂J/∂readₖ`), and into `t` the rule itself
/// (`rule(reads.., d)`). `data` marks the reads no derivative flows to. Made once per
/// rule and kept for the compiler process (a primitive's rules are `'static`).
fn second_order_prim(rule: &str, data: &[bool]) -> super::Prim {
    use std::sync::{Mutex, OnceLock};
    static MADE: OnceLock<Mutex<HashMap<String, super::Prim>>> = OnceLock::new();
    let mut made = MADE
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    *made.entry(rule.to_string()).or_insert_with(|| {
        let n = data.len();
        let all: &'static [Need] =
            Box::leak((0..=n).map(Need::In).collect::<Vec<_>>().into_boxed_slice());
        let reads: &'static [Need] = &all[..n];
        let mut vjps: Vec<Vjp> = data
            .iter()
            .enumerate()
            .map(|(k, &data)| {
                if data {
                    Vjp::Zero
                } else {
                    let name: &'static str =
                        Box::leak(format!("second::{rule}::d{k}").into_boxed_str());
                    Vjp::Rule(name, all)
                }
            })
            .collect();
        let first: &'static str = Box::leak(rule.to_string().into_boxed_str());
        vjps.push(Vjp::Rule(first, reads));
        super::Prim {
            name: first,
            vjps: Box::leak(vjps.into_boxed_slice()),
            tensor: None,
            reduces: false,
        }
    })
}

/// The tangent program of `func`, and the index of its first tangent parameter (the
/// tangent parameters follow `func`'s own, one per active argument, in order), or
/// `None` where it has a construct this does not cover yet.
pub fn program(func: &Func, plan: &Plan, names: &Names) -> Option<Func> {
    // The tangent of another function's gradient would be a third derivative.
    if !func.grad_calls.is_empty() {
        return None;
    }
    let mut b = Builder {
        func,
        plan,
        names: names.clone(),
        vars: func.vars.clone(),
        buffers: func.buffers.clone(),
        t: HashMap::new(),
    };
    for v in &func.vars {
        b.names.reserve(&v.name.to_string());
    }
    let mut params = func.params.clone();
    for p in &func.params {
        if !p.active {
            continue;
        }
        let var = b.new_var(
            &format!("v_{}", p.ident.to_string().trim_start_matches("r#")),
            p.ident.span(),
        );
        if func.is_buffer(p.var) {
            b.buffers.insert(var);
        }
        b.t.insert(p.var, Operand::Var(var));
        // A tangent has its argument's type, and is passed as the argument is.
        let ty = p.ty.clone();
        params.push(Param {
            ident: b.vars[var.0].name.clone(),
            ty,
            kind: p.kind,
            active: true,
            var,
            elem: p.elem.clone(),
        });
    }
    let body = b.block(&func.body)?;
    let ret = match func.ret.var() {
        Some(v) if plan.activity.is_active(v) => b.t.get(&v)?.clone(),
        _ => return None,
    };
    Some(Func {
        params,
        ret_ty: func.ret_ty.clone(),
        float_ty: func.float_ty.clone(),
        vars: b.vars,
        items: func.items.clone(),
        body,
        ret,
        buffers: b.buffers,
        generics: func.generics.clone(),
        defs: Default::default(),
        by_name: Default::default(),
        name: func.name.clone(),
        grad_calls: Default::default(),
    })
}

/// `t_y = tangent::spread(y, t)`: one operand's tangent spread to the output's shape.
/// Its pullback sums the cotangent back to the tangent's shape; `y` is read for its
/// shape only.
const SPREAD: super::Prim = super::Prim {
    name: "spread",
    vjps: &[Vjp::Zero, Vjp::Rule("add_vjp", &[Need::Shape(1)])],
    tensor: None,
    reduces: false,
};
/// `t_y = −t` spread to the output's shape (`a − b`'s `b`).
const SPREAD_NEG: super::Prim = super::Prim {
    name: "spread_neg",
    vjps: &[Vjp::Zero, Vjp::Rule("sub_vjp_rhs", &[Need::Shape(1)])],
    tensor: None,
    reduces: false,
};

/// `t_y = tangent::elementwise(x, t, |s, t| rule(s, c.., t))`: an elementwise rule that
/// also reads `n` constants (inputs 2..). Its pullbacks (tensor path):
/// `tensor::second::<rule>::s(x, c.., t, d)` into `x` and `tensor::second::<rule>::t(x,
/// c.., d)` into `t`. Made once per rule.
fn with_constants_prim(rule: &str, n: usize) -> super::Prim {
    use std::sync::{Mutex, OnceLock};
    static MADE: OnceLock<Mutex<HashMap<String, super::Prim>>> = OnceLock::new();
    let mut made = MADE
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    *made.entry(rule.to_string()).or_insert_with(|| {
        let leak = |v: Vec<Need>| -> &'static [Need] { Box::leak(v.into_boxed_slice()) };
        let consts: Vec<Need> = (2..2 + n).map(Need::In).collect();
        let into_x = leak([vec![Need::In(0)], consts.clone(), vec![Need::In(1)]].concat());
        let into_t = leak([vec![Need::In(0)], consts].concat());
        let name = |f: &str| -> &'static str {
            Box::leak(format!("second::{rule}::{f}").into_boxed_str())
        };
        let mut vjps = vec![Vjp::Rule(name("s"), into_x), Vjp::Rule(name("t"), into_t)];
        vjps.extend((0..n).map(|_| Vjp::Zero));
        super::Prim {
            name: Box::leak(rule.to_string().into_boxed_str()),
            vjps: Box::leak(vjps.into_boxed_slice()),
            tensor: None,
            reduces: false,
        }
    })
}

/// `t_y = tensor::relu_tangent(x, t)`: linear in `t` (its own transpose), constant in `x`.
const RELU_T: super::Prim = super::Prim {
    name: "relu_tangent",
    vjps: &[Vjp::Zero, Vjp::Rule("relu_tangent", &[Need::In(0)])],
    tensor: None,
    reduces: false,
};
/// A runtime op's tangent `t_y = tensor::<name>(s, t)` (`s` the input or output it
/// reads), with its pullbacks into `s` and into `t`
/// (`runtime/src/rules/second_tensor.rs`).
macro_rules! op_tangent {
    ($($(#[doc = $doc:literal])* $c:ident = $name:literal, $into_s:literal, $into_t:literal;)*) => {$(
        $(#[doc = $doc])*
        const $c: super::Prim = super::Prim {
            name: $name,
            vjps: &[
                Vjp::Rule($into_s, &[Need::In(0), Need::In(1)]),
                Vjp::Rule($into_t, &[Need::In(0)]),
            ],
            tensor: None,
            reduces: false,
        };
    )*};
}

op_tangent! {
    /// GELU (tanh form): `t ⊙ gelu′(x)`.
    GELU_T = "gelu_tangent", "gelu_tangent_x", "gelu_tangent";
    /// Exact GELU: `t ⊙ (Φ(x) + xφ(x))`.
    GELU_EXACT_T = "gelu_exact_tangent", "gelu_exact_tangent_x", "gelu_exact_tangent";
    /// SiLU: `t ⊙ silu′(x)`.
    SILU_T = "silu_tangent", "silu_tangent_x", "silu_tangent";
    /// Softplus: `t ⊙ σ(x)`.
    SOFTPLUS_T = "softplus_tangent", "softplus_tangent_x", "softplus_tangent";
    /// Softmax over the last axis: `y ⊙ (t − ⟨y, t⟩)`.
    SOFTMAX_T = "softmax_tangent", "softmax_tangent_y", "softmax_tangent";
    /// `log_softmax` over the last axis: `t − ⟨e^y, t⟩`.
    LOG_SOFTMAX_T = "log_softmax_tangent", "log_softmax_tangent_y", "log_softmax_tangent_t";
}

/// `t_y = tangent::var_axis(x, axis, ddof, t)`: bilinear in `x − x̄` and `t`, so each
/// pullback is `var_axis_vjp` of the other, `2/(n − ddof)·(t − t̄)·d` into `x`.
const VAR_AXIS_T: super::Prim = super::Prim {
    name: "var_axis_tangent",
    vjps: &[
        Vjp::Rule("var_axis_vjp", &[Need::In(3), Need::In(1), Need::In(2)]),
        Vjp::Zero,
        Vjp::Zero,
        Vjp::Rule("var_axis_vjp", &[Need::In(0), Need::In(1), Need::In(2)]),
    ],
    tensor: None,
    reduces: false,
};
/// `t_y = tangent::extreme_axis(x, axis, y, t)`: the tangent at the arg-max, linear in
/// `t` (its pullback the max's own, `max_axis_vjp`), constant in `x` away from ties.
const MAX_AXIS_T: super::Prim = super::Prim {
    name: "max_axis_tangent",
    vjps: &[
        Vjp::Zero,
        Vjp::Zero,
        Vjp::Zero,
        Vjp::Rule("max_axis_vjp", &[Need::In(0), Need::In(1), Need::In(2)]),
    ],
    tensor: None,
    reduces: false,
};
/// The same at the arg-min.
const MIN_AXIS_T: super::Prim = super::Prim {
    name: "min_axis_tangent",
    vjps: &[
        Vjp::Zero,
        Vjp::Zero,
        Vjp::Zero,
        Vjp::Rule("min_axis_vjp", &[Need::In(0), Need::In(1), Need::In(2)]),
    ],
    tensor: None,
    reduces: false,
};

/// A normalisation's tangent primitive, `t_y = tensor::<name>(x, γ, ε, t_x, t_γ[, t_β])`,
/// its pullbacks declared in the runtime's `rules::second_norm` as `<name>_{x, g, tx,
/// tg[, tb]}`.
macro_rules! norm_tangent {
    ($c:ident = $name:literal $(, $tb:literal)?) => {
        const $c: super::Prim = super::Prim {
            name: $name,
            vjps: &[
                Vjp::Rule(
                    concat!($name, "_x"),
                    &[Need::In(0), Need::In(1), Need::In(2), Need::In(3), Need::In(4)],
                ),
                Vjp::Rule(
                    concat!($name, "_g"),
                    &[Need::In(0), Need::In(1), Need::In(2), Need::In(3)],
                ),
                Vjp::Zero,
                Vjp::Rule(
                    concat!($name, "_tx"),
                    &[Need::In(0), Need::In(1), Need::In(2), Need::In(3)],
                ),
                Vjp::Rule(concat!($name, "_tg"), &[Need::In(0), Need::In(2), Need::In(4)]),
                $(Vjp::Rule($tb, &[Need::In(5)]),)?
            ],
            tensor: None,
            reduces: false,
        };
    };
}
norm_tangent!(LAYER_NORM_T = "layer_norm_tangent", "layer_norm_tangent_tb");
norm_tangent!(RMS_NORM_T = "rms_norm_tangent");

/// `t_y = tensor::leaky_relu_tangent(x, slope, t)`: linear in `t`, its own transpose.
const LEAKY_RELU_T: super::Prim = super::Prim {
    name: "leaky_relu_tangent",
    vjps: &[
        Vjp::Zero,
        Vjp::Zero,
        Vjp::Rule("leaky_relu_tangent", &[Need::In(0), Need::In(1)]),
    ],
    tensor: None,
    reduces: false,
};
/// `t_l = tensor::mse_tangent(p, t, t_p, t_t)`: bilinear in `p − t` and `t_p − t_t`, each
/// pullback `mse_tangent_into` of the other pair.
const MSE_T: super::Prim = super::Prim {
    name: "mse_tangent",
    vjps: &[
        Vjp::Rule("mse_tangent_into", &[Need::In(2), Need::In(3)]),
        Vjp::Rule("mse_tangent_into", &[Need::In(3), Need::In(2)]),
        Vjp::Rule("mse_tangent_into", &[Need::In(0), Need::In(1)]),
        Vjp::Rule("mse_tangent_into", &[Need::In(1), Need::In(0)]),
    ],
    tensor: None,
    reduces: true,
};
/// `t_l = tensor::bce_tangent(x, y, t_x, t_y)`.
const BCE_T: super::Prim = super::Prim {
    name: "bce_tangent",
    vjps: &[
        Vjp::Rule("bce_tangent_x", &[Need::In(0), Need::In(2), Need::In(3)]),
        Vjp::Rule("bce_tangent_neg", &[Need::In(2)]),
        Vjp::Rule("bce_tangent_tx", &[Need::In(0), Need::In(1)]),
        Vjp::Rule("bce_tangent_neg", &[Need::In(0)]),
    ],
    tensor: None,
    reduces: true,
};
/// Every input of `attention_tangent(q, k, v, causal, t_q, t_k, t_v)` the pullbacks read.
const ATTENTION_NEEDS: &[Need] = &[
    Need::In(0),
    Need::In(1),
    Need::In(2),
    Need::In(3),
    Need::In(4),
    Need::In(5),
    Need::In(6),
];
/// `t_o = tensor::attention_tangent(q, k, v, causal, t_q, t_k, t_v)`, its pullbacks
/// declared in the runtime's `rules::second_attention`.
const ATTENTION_T: super::Prim = super::Prim {
    name: "attention_tangent",
    vjps: &[
        Vjp::Rule("attention_tangent_q", ATTENTION_NEEDS),
        Vjp::Rule("attention_tangent_k", ATTENTION_NEEDS),
        Vjp::Rule("attention_tangent_v", ATTENTION_NEEDS),
        Vjp::Zero,
        Vjp::Rule("attention_tangent_tq", ATTENTION_NEEDS),
        Vjp::Rule("attention_tangent_tk", ATTENTION_NEEDS),
        Vjp::Rule("attention_tangent_tv", ATTENTION_NEEDS),
    ],
    tensor: None,
    reduces: false,
};

/// `t_y = tensor::sigmoid_tangent(y, t)`.
const SIGMOID_T: super::Prim = super::Prim {
    name: "sigmoid_tangent",
    vjps: &[
        Vjp::Rule("sigmoid_tangent_y", &[Need::In(0), Need::In(1)]),
        Vjp::Rule("sigmoid_tangent", &[Need::In(0)]),
    ],
    tensor: None,
    reduces: false,
};
/// `t_l = tensor::xent_tangent(z, labels, opts, t)`, a float: into `z` the softmax
/// Hessian times `t`, into `t` the loss's gradient.
const XENT_T: super::Prim = super::Prim {
    name: "xent_tangent",
    vjps: &[
        Vjp::Rule(
            "xent_tangent_z",
            &[Need::In(0), Need::In(1), Need::In(2), Need::In(3)],
        ),
        Vjp::Zero,
        Vjp::Zero,
        Vjp::Rule("xent_tangent_t", &[Need::In(0), Need::In(1), Need::In(2)]),
    ],
    tensor: None,
    reduces: true,
};

fn binary(op: syn::BinOp) -> super::Spelling {
    super::Spelling::Operator(op)
}

struct Builder<'a> {
    func: &'a Func,
    plan: &'a Plan,
    names: Names,
    vars: Vec<VarInfo>,
    buffers: std::collections::HashSet<VarId>,
    /// The tangent of each active value.
    t: HashMap<VarId, Operand>,
}

impl Builder<'_> {
    fn new_var(&mut self, base: &str, span: Span) -> VarId {
        let name = self.names.fresh(base, span);
        self.vars.push(VarInfo { name });
        VarId(self.vars.len() - 1)
    }

    /// `t_y` for `y`: the base name of `v`'s tangent.
    fn tangent_name(&self, v: VarId) -> String {
        format!(
            "t_{}",
            self.func.name(v).to_string().trim_start_matches("r#")
        )
    }

    /// A new value named after the tangent of `v`.
    fn tangent_var(&mut self, v: VarId) -> VarId {
        let t = self.new_var(&self.tangent_name(v), self.func.name(v).span());
        if self.func.is_buffer(v) {
            self.buffers.insert(t);
        }
        self.t.insert(v, Operand::Var(t));
        t
    }

    fn active(&self, v: VarId) -> bool {
        self.plan.activity.is_active(v)
    }

    fn zero(&self) -> Operand {
        let ty = &self.func.float_ty;
        Operand::Const(syn::parse_quote!(::backprop::__private::zero::<#ty>()))
    }

    /// The tangent of an operand: `t_x`, or zero for a constant.
    fn tangent(&self, o: &Operand) -> Option<Operand> {
        match o.var() {
            Some(v) if self.active(v) => self.t.get(&v).cloned(),
            _ => Some(self.zero()),
        }
    }

    /// A value a rule reads, looking through `&` (rules take floats by value).
    fn primal(&self, o: &Operand) -> Operand {
        if let Some(v) = o.var()
            && let Some(Stmt {
                rhs: Rhs::Prim { prim, args, .. },
                ..
            }) = self.func.def_of(v)
            && prim.name == "&"
        {
            return self.primal(&args[0]);
        }
        o.clone()
    }

    fn stmt(&self, def: VarId, rhs: Rhs, like: &Stmt) -> Stmt {
        Stmt {
            def,
            rhs,
            span: like.span,
            ty: None,
            source: like.source.clone(),
            compound: false,
        }
    }

    fn block(&mut self, stmts: &[Stmt]) -> Option<Vec<Stmt>> {
        let mut out = Vec::new();
        for s in stmts {
            self.statement(s, &mut out)?;
        }
        Some(out)
    }

    fn statement(&mut self, s: &Stmt, out: &mut Vec<Stmt>) -> Option<()> {
        match &s.rhs {
            Rhs::If(node) => return self.branch(s, node, out),
            Rhs::Loop(node) => return self.repeat(s, node, out),
            _ => {}
        }
        out.push(s.clone());
        if let Rhs::Buffer { op, args } = &s.rhs {
            return self.buffer(s, op, args, out);
        }
        if !self.active(s.def) {
            return Some(());
        }
        match &s.rhs {
            // An array operation (the tensor path): its tangent written as array
            // operations that have pullbacks themselves (`tensor_prim`).
            Rhs::Prim {
                prim,
                spelling,
                args,
            } if !self.plan.kinds.scalar_path(s.def) => {
                let sum = self.tensor_prim(s, prim, spelling, args, out)?;
                let t = self.tangent_var(s.def);
                // The last operation made the tangent: it gets the tangent's name (a
                // borrow `t_y = &t_x` stays a borrow, which the tape reads through).
                match out.last_mut() {
                    Some(last) if sum.var() == Some(last.def) => last.def = t,
                    _ => out.push(self.stmt(t, Rhs::Copy(sum), s)),
                }
            }
            Rhs::Copy(o) => {
                let t = self.tangent(o)?;
                self.t.insert(s.def, t);
            }
            Rhs::Prim { prim, args, .. } => {
                let mut terms = Vec::new();
                for (k, vjp) in prim.vjps_on(true).iter().enumerate() {
                    if !self.plan.activity.operand_active(&args[k]) {
                        continue;
                    }
                    let tk = self.tangent(&args[k])?;
                    let term = match vjp {
                        Vjp::Identity => tk,
                        Vjp::Zero => continue,
                        Vjp::Negate => {
                            let v = self.new_var("t_neg", s.span);
                            let rhs = Rhs::Prim {
                                prim: op::NEG,
                                spelling: super::Spelling::Unary(
                                    syn::UnOp::Neg(Default::default()),
                                ),
                                args: vec![tk],
                            };
                            out.push(self.stmt(v, rhs, s));
                            Operand::Var(v)
                        }
                        Vjp::Rule(rule, needs) => {
                            let mut call_args = Vec::new();
                            for n in needs.iter() {
                                call_args.push(match n {
                                    Need::In(j) => self.primal(&args[*j]),
                                    Need::Out => Operand::Var(s.def),
                                    Need::Shape(_) => return None,
                                });
                            }
                            // A read that no derivative flows to is data (`powi`'s `n`).
                            let data: Vec<bool> = needs
                                .iter()
                                .map(|n| matches!(n, Need::In(j) if prim.vjps_on(true)[*j] == Vjp::Zero))
                                .collect();
                            call_args.push(tk);
                            let rule_path: syn::ExprPath = {
                                let rule = syn::Ident::new(rule, s.span);
                                syn::parse_quote!(::backprop::__private::#rule)
                            };
                            let v = self.new_var("t_rule", s.span);
                            let rhs = Rhs::Prim {
                                prim: second_order_prim(rule, &data),
                                spelling: super::Spelling::Path(rule_path),
                                args: call_args,
                            };
                            out.push(self.stmt(v, rhs, s));
                            Operand::Var(v)
                        }
                    };
                    terms.push(term);
                }
                let mut terms = terms.into_iter();
                let mut sum = terms.next().unwrap_or_else(|| self.zero());
                for term in terms {
                    let v = self.new_var("t_sum", s.span);
                    let rhs = Rhs::Prim {
                        prim: op::ADD,
                        spelling: super::Spelling::Operator(syn::BinOp::Add(Default::default())),
                        args: vec![sum, term],
                    };
                    out.push(self.stmt(v, rhs, s));
                    sum = Operand::Var(v);
                }
                // The tangent gets the statement's own name: `t_y`.
                let t = self.tangent_var(s.def);
                out.push(self.stmt(t, Rhs::Copy(sum), s));
            }
            Rhs::Call {
                path,
                args,
                tangent: false,
            } => {
                let t = self.call(s, path, args, out)?;
                self.t.insert(s.def, t);
            }
            Rhs::Call { tangent: true, .. } => return None,
            Rhs::ZeroDerivative { .. } | Rhs::NoRule { .. } => {}
            Rhs::If(_) | Rhs::Loop(_) | Rhs::Buffer { .. } => unreachable!("handled above"),
        }
        Some(())
    }

    /// `def = prim(args..)` pushed after `like`, as a new value named `base`.
    fn push_prim(
        &mut self,
        like: &Stmt,
        base: &str,
        prim: super::Prim,
        spelling: super::Spelling,
        args: Vec<Operand>,
        out: &mut Vec<Stmt>,
    ) -> Operand {
        let v = self.new_var(base, like.span);
        out.push(self.stmt(
            v,
            Rhs::Prim {
                prim,
                spelling,
                args,
            },
            like,
        ));
        Operand::Var(v)
    }

    /// `a + b` of two tangent terms, or the one term.
    fn sum_terms(
        &mut self,
        like: &Stmt,
        terms: Vec<Operand>,
        out: &mut Vec<Stmt>,
    ) -> Option<Operand> {
        let mut terms = terms.into_iter();
        let mut sum = terms.next()?;
        for term in terms {
            sum = self.push_prim(
                like,
                "t_sum",
                op::ADD,
                binary(syn::BinOp::Add(Default::default())),
                vec![sum, term],
                out,
            );
        }
        Some(sum)
    }

    /// The tangent of an array operation `y = prim(args..)` (the tensor path), written as
    /// array operations that have pullbacks of their own, so that the reverse emitter
    /// differentiates it as any array code:
    /// - an operation linear in its array (a borrow, copy, transpose, reduction, slice,
    ///   gather or reshape) is applied to the tangent: `t_y = prim(t_x, args..)`;
    /// - `a ± b`: `t_a ± t_b`, or the one tangent spread to `y`'s shape
    ///   (`tangent::spread`, whose pullback sums back);
    /// - `a * b`: `t_a * b + a * t_b`; `a.dot(b)`: `t_a.dot(b) + a.dot(t_b)`;
    ///   `a / b`: `t_a / b − (y / b) * t_b`;
    /// - an elementwise method of the rule table: its rule at `d = t`
    ///   (`tangent::elementwise`), a primitive whose pullbacks are the rule (into `t`)
    ///   and its second derivative (`tensor::second::<rule>::d0`, into the saved value).
    ///
    /// `None` for any other operation: the function then has no `f_hvp`.
    fn tensor_prim(
        &mut self,
        s: &Stmt,
        prim: &super::Prim,
        spelling: &super::Spelling,
        args: &[Operand],
        out: &mut Vec<Stmt>,
    ) -> Option<Operand> {
        use super::Spelling;
        let act: Vec<bool> = args
            .iter()
            .map(|a| self.plan.activity.operand_active(a))
            .collect();
        let y = Operand::Var(s.def);
        let mul = || binary(syn::BinOp::Mul(Default::default()));
        let div = || binary(syn::BinOp::Div(Default::default()));
        // `a[[i, j]] = v` (`+=`, a fill): linear in the array and the value, so the
        // tangent is the same write of `t_v` (0 for a constant: a mask's −∞) into `t_a`
        // (zeros of its shape where `a` is constant, an array this function made).
        if op::is_element_write(prim) {
            let ta = if act[0] {
                self.tangent(&args[0])?
            } else {
                // The written array has the same shape (the write consumed `a`).
                self.zeros_of(y.clone(), s, out)
            };
            let mut with_t = vec![ta, self.tangent(&args[1])?];
            with_t.extend(args[2..].iter().cloned());
            return Some(self.push_prim(s, "t_write", *prim, spelling.clone(), with_t, out));
        }
        // `concatenate`/`stack` of arrays: linear, the same join of their tangents, zeros
        // of its shape for a constant one.
        if matches!(prim.name, "concatenate" | "stack") {
            let mut with_t = vec![args[0].clone()];
            for (k, a) in args.iter().enumerate().skip(1) {
                with_t.push(if act[k] {
                    self.tangent(a)?
                } else {
                    self.zeros_of(a.clone(), s, out)
                });
            }
            return Some(self.push_prim(s, "t_join", *prim, spelling.clone(), with_t, out));
        }
        // Reductions along an axis with their own tangents (`tangent::var_axis`, ..):
        // `t_var = 2/(n − ddof)·Σ (x − x̄) t`, `t_std = t_var / 2y`, and an extreme's the
        // tangent at the arg-extreme (ties split evenly).
        if matches!(prim.name, "var_axis" | "std_axis" | "max_axis" | "min_axis") {
            if act[1..].iter().any(|a| *a) {
                return None;
            }
            let t = self.tangent(&args[0])?;
            let var_t = |b: &mut Self, out: &mut Vec<Stmt>| {
                b.push_prim(
                    s,
                    "t_var",
                    VAR_AXIS_T,
                    Spelling::Template(quote::quote!(::backprop::__private::tangent::var_axis(
                        &__bp_op0, &__bp_op1, &__bp_op2, &__bp_op3
                    ))),
                    vec![args[0].clone(), args[1].clone(), args[2].clone(), t.clone()],
                    out,
                )
            };
            return Some(match prim.name {
                "var_axis" => var_t(self, out),
                "std_axis" => {
                    let tv = var_t(self, out);
                    let two_y = self.push_prim(
                        s,
                        "two_std",
                        op::ADD,
                        binary(syn::BinOp::Add(Default::default())),
                        vec![y.clone(), y],
                        out,
                    );
                    self.push_prim(s, "t_std", op::DIV, div(), vec![tv, two_y], out)
                }
                name => {
                    let prim = if name == "max_axis" {
                        MAX_AXIS_T
                    } else {
                        MIN_AXIS_T
                    };
                    self.push_prim(
                        s,
                        "t_extreme",
                        prim,
                        Spelling::Template(quote::quote!(
                            ::backprop::__private::tangent::extreme_axis(
                                &__bp_op0, &__bp_op1, &__bp_op2, &__bp_op3
                            )
                        )),
                        vec![args[0].clone(), args[1].clone(), y, t],
                        out,
                    )
                }
            });
        }
        match (prim.name, prim.arity()) {
            ("+" | "-", 2) => {
                let plus = prim.name == "+";
                return match (act[0], act[1]) {
                    (true, true) => {
                        let (ta, tb) = (self.tangent(&args[0])?, self.tangent(&args[1])?);
                        let op = if plus { op::ADD } else { op::SUB };
                        let sp = binary(if plus {
                            syn::BinOp::Add(Default::default())
                        } else {
                            syn::BinOp::Sub(Default::default())
                        });
                        Some(self.push_prim(s, "t_sum", op, sp, vec![ta, tb], out))
                    }
                    (ta, _) => {
                        let k = if ta { 0 } else { 1 };
                        let t = self.tangent(&args[k])?;
                        let (prim, f) = if k == 1 && !plus {
                            (SPREAD_NEG, quote::quote!(spread_neg))
                        } else {
                            (SPREAD, quote::quote!(spread))
                        };
                        let sp = Spelling::Template(quote::quote!(
                            ::backprop::__private::tangent::#f(&__bp_op0, &__bp_op1)
                        ));
                        Some(self.push_prim(s, "t_spread", prim, sp, vec![y, t], out))
                    }
                };
            }
            ("*", 2) => {
                let mut terms = Vec::new();
                if act[0] {
                    let t = self.tangent(&args[0])?;
                    terms.push(self.push_prim(
                        s,
                        "t_term",
                        op::MUL,
                        mul(),
                        vec![t, args[1].clone()],
                        out,
                    ));
                }
                if act[1] {
                    let t = self.tangent(&args[1])?;
                    terms.push(self.push_prim(
                        s,
                        "t_term",
                        op::MUL,
                        mul(),
                        vec![args[0].clone(), t],
                        out,
                    ));
                }
                return self.sum_terms(s, terms, out);
            }
            ("/", 2) => {
                let mut terms = Vec::new();
                if act[0] {
                    let t = self.tangent(&args[0])?;
                    terms.push(self.push_prim(
                        s,
                        "t_term",
                        op::DIV,
                        div(),
                        vec![t, args[1].clone()],
                        out,
                    ));
                }
                if !act[1] {
                    return self.sum_terms(s, terms, out);
                }
                // `− (y / b) * t_b`, subtracted (or spread negated): a unary `-` on a
                // borrowed array needs `&T: Neg`, which generic code over `T: Real`
                // does not have.
                let t = self.tangent(&args[1])?;
                let q = self.push_prim(
                    s,
                    "t_ratio",
                    op::DIV,
                    div(),
                    vec![y.clone(), args[1].clone()],
                    out,
                );
                let m = self.push_prim(s, "t_term", op::MUL, mul(), vec![q, t], out);
                return Some(match terms.pop() {
                    Some(ta) => {
                        let sub = binary(syn::BinOp::Sub(Default::default()));
                        self.push_prim(s, "t_sum", op::SUB, sub, vec![ta, m], out)
                    }
                    None => {
                        let sp = Spelling::Template(quote::quote!(
                            ::backprop::__private::tangent::spread_neg(&__bp_op0, &__bp_op1)
                        ));
                        self.push_prim(s, "t_spread", SPREAD_NEG, sp, vec![y, m], out)
                    }
                });
            }
            ("dot", 2) => {
                let mut terms = Vec::new();
                for k in 0..2 {
                    if act[k] {
                        let mut operands = args.to_vec();
                        operands[k] = self.tangent(&args[k])?;
                        terms.push(self.push_prim(
                            s,
                            "t_term",
                            *prim,
                            spelling.clone(),
                            operands,
                            out,
                        ));
                    }
                }
                return self.sum_terms(s, terms, out);
            }
            _ => {}
        }
        // Linear in the array (input 0), every other input data.
        if act[1..].iter().any(|a| *a) || !act[0] {
            return None;
        }
        let t = self.tangent(&args[0])?;
        match op::tensor_tangent(prim, 0)? {
            op::Tangent::Borrow => {
                Some(self.push_prim(s, "t_ref", *prim, spelling.clone(), vec![t], out))
            }
            // A rule reading neither the input nor the output is linear in the input:
            // the operation itself on the tangent (`t_x.slice(..)`, `t_x.sum_axis(k)`).
            op::Tangent::Rule(_, needs)
                if needs.iter().all(|n| !matches!(n, Need::In(0) | Need::Out)) =>
            {
                let mut operands = args.to_vec();
                operands[0] = t;
                Some(self.push_prim(s, "t_term", *prim, spelling.clone(), operands, out))
            }
            op::Tangent::Elementwise => {
                let Vjp::Rule(rule, needs) = prim.vjps_on(true)[0] else {
                    return None;
                };
                let (first, rest) = needs.split_first()?;
                let saved = match first {
                    Need::In(0) => args[0].clone(),
                    Need::Out => y,
                    _ => return None,
                };
                let f = syn::Ident::new(rule, s.span);
                if rest.is_empty() {
                    let sp = Spelling::Template(quote::quote!(
                        ::backprop::__private::tangent::elementwise(&__bp_op0, &__bp_op1, ::backprop::__private::#f)
                    ));
                    return Some(self.push_prim(
                        s,
                        "t_term",
                        second_order_prim(rule, &[false]),
                        sp,
                        vec![saved, t],
                        out,
                    ));
                }
                // `v.max(0.0)`, `x.powi(2)`, `x.clamp(lo, hi)`: the other reads are
                // constants (floats or the integer exponent), broadcast.
                let mut operands = vec![saved, t];
                for n in rest {
                    let Need::In(j) = n else { return None };
                    if *j == 0 || act[*j] {
                        return None;
                    }
                    let c = self.primal(&args[*j]);
                    if c.var().is_some_and(|v| !self.plan.kinds.scalar[v.0]) {
                        return None;
                    }
                    operands.push(c);
                }
                let consts: Vec<syn::Ident> = (2..operands.len())
                    .map(|k| quote::format_ident!("__bp_op{}", k))
                    .collect();
                let sp = Spelling::Template(quote::quote!(
                    ::backprop::__private::tangent::elementwise(&__bp_op0, &__bp_op1, |__bp_s, __bp_t| ::backprop::__private::#f(__bp_s, #(#consts,)* __bp_t))
                ));
                let prim = with_constants_prim(rule, rest.len());
                Some(self.push_prim(s, "t_term", prim, sp, operands, out))
            }
            _ => None,
        }
    }

    /// `t_y = g::tangent_forward(args.., tangents..)`: one tangent per argument, the
    /// caller's where it holds one, zeros for a constant buffer, and `NoTangent` for any
    /// other constant (the callee makes the zero of its own parameter's type, or
    /// ignores it where it does not differentiate).
    fn call(
        &mut self,
        s: &Stmt,
        path: &syn::ExprPath,
        args: &[Operand],
        out: &mut Vec<Stmt>,
    ) -> Option<Operand> {
        // A runtime op on an array (`relu(&z)`; `sigmoid(x)` of a float is the scalar
        // function, called below as any other).
        // Only the activations are also functions of a float (`op::ALSO_ON_FLOATS`); a
        // struct's field (`&p.wte`) is an array.
        let on_array = |v: VarId| {
            !self.plan.kinds.scalar[v.0]
                || matches!(
                    self.func.def_of(v).map(|d| &d.rhs),
                    Some(Rhs::Buffer {
                        op: BufOp::Field(_),
                        ..
                    })
                )
        };
        if op::is_runtime_array_op(&path.path)
            && args.first().and_then(Operand::var).is_some_and(|v| {
                on_array(v)
                    || path.path.segments.last().is_some_and(|last| {
                        !op::ALSO_ON_FLOATS.contains(&last.ident.to_string().as_str())
                    })
            })
        {
            return self.runtime_op(s, path, args, out);
        }
        let mut tangents = Vec::new();
        for a in args {
            let Some(v) = a.var() else {
                tangents.push(Operand::Const(syn::parse_quote!(
                    ::backprop::__private::jvp::NoTangent
                )));
                continue;
            };
            // An array argument (a layer's input): its tangent, or zeros passed as the
            // argument is (owned, or borrowed).
            if !self.plan.kinds.scalar[v.0] && !self.struct_place(v) {
                let t = if self.active(v) {
                    self.t.get(&v)?.clone()
                } else {
                    self.array_zeros(v, s, out)?
                };
                tangents.push(t);
                continue;
            }
            if self.active(v) {
                tangents.push(self.t.get(&v)?.clone());
            } else if self.func.is_buffer(v) && !self.struct_place(v) {
                // `vec![0.0; x.len()]`, passed as `&zeros`.
                let n = self.new_var("n", s.span);
                out.push(self.stmt(
                    n,
                    Rhs::ZeroDerivative {
                        spelling: super::Spelling::Method(syn::Ident::new("len", s.span)),
                        args: vec![a.clone()],
                    },
                    s,
                ));
                let zeros = self.new_var("zeros", s.span);
                self.buffers.insert(zeros);
                out.push(self.stmt(
                    zeros,
                    Rhs::Buffer {
                        op: BufOp::Fill,
                        args: vec![self.zero(), Operand::Var(n)],
                    },
                    s,
                ));
                let borrowed = self.new_var("zeros_ref", s.span);
                self.buffers.insert(borrowed);
                out.push(self.stmt(
                    borrowed,
                    Rhs::Buffer {
                        op: BufOp::Borrow,
                        args: vec![Operand::Var(zeros)],
                    },
                    s,
                ));
                tangents.push(Operand::Var(borrowed));
            } else if self.struct_place(v) {
                // A constant struct (a frozen layer): a struct of zeros of its shapes,
                // passed as it is (by value for a struct argument taken so, else `&`).
                let z = self.new_var("t_zeros", s.span);
                let rhs = Rhs::ZeroDerivative {
                    spelling: super::Spelling::Template(quote::quote!({
                        use ::backprop::Differentiable as _;
                        __bp_op0.zero_like()
                    })),
                    args: vec![a.clone()],
                };
                out.push(self.stmt(z, rhs, s));
                let by_value = self
                    .func
                    .params
                    .iter()
                    .any(|p| p.var == v && !matches!(p.ty, syn::Type::Reference(_)));
                tangents.push(if by_value {
                    Operand::Var(z)
                } else {
                    self.borrowed(Operand::Var(z), s, out)
                });
            } else {
                tangents.push(Operand::Const(syn::parse_quote!(
                    ::backprop::__private::jvp::NoTangent
                )));
            }
        }
        let t = self.new_var(&self.tangent_name(s.def), s.span);
        let mut all = args.to_vec();
        all.extend(tangents);
        out.push(self.stmt(
            t,
            Rhs::Call {
                path: path.clone(),
                args: all,
                tangent: true,
            },
            s,
        ));
        Some(Operand::Var(t))
    }

    /// `t_zeros = zeros_like(&v)`, an owned array of zeros of `v`'s shape, pushed to `out`.
    fn zeros_of(&mut self, v: Operand, like: &Stmt, out: &mut Vec<Stmt>) -> Operand {
        let z = self.new_var("t_zeros", like.span);
        let rhs = Rhs::ZeroDerivative {
            spelling: super::Spelling::Template(quote::quote!(
                ::backprop::__private::tensor::zeros_like(&__bp_op0)
            )),
            args: vec![v],
        };
        out.push(self.stmt(z, rhs, like));
        Operand::Var(z)
    }

    /// `&v`, pushed to `out`: how a runtime op takes an array this program owns.
    fn borrowed(&mut self, v: Operand, like: &Stmt, out: &mut Vec<Stmt>) -> Operand {
        let r = self.new_var("t_ref", like.span);
        let rhs = Rhs::Prim {
            prim: op::REF,
            spelling: super::Spelling::Ref,
            args: vec![v],
        };
        out.push(self.stmt(r, rhs, like));
        Operand::Var(r)
    }

    /// `path(args..)` of a runtime op, a new (owned) value pushed to `out`: a tangent
    /// term built from the op itself, whose pullbacks are its own. `owned[k]`: argument
    /// `k` is an array this program owns, passed as `&args[k]`.
    fn op_call(
        &mut self,
        like: &Stmt,
        path: &syn::ExprPath,
        args: Vec<(Operand, bool)>,
        out: &mut Vec<Stmt>,
    ) -> Operand {
        let args = args
            .into_iter()
            .map(|(a, owned)| {
                if owned {
                    self.borrowed(a, like, out)
                } else {
                    a
                }
            })
            .collect();
        let v = self.new_var("t_term", like.span);
        let rhs = Rhs::Call {
            path: path.clone(),
            args,
            tangent: false,
        };
        out.push(self.stmt(v, rhs, like));
        Operand::Var(v)
    }

    /// The zero tangent of a constant array `v` passed to another function, made by
    /// statements pushed to `out` and passed as `v` is: an owned array of zeros for an
    /// owned one, a borrow of one for `&h` or a `&Array` argument. `None` for a view
    /// or anything else (no tangent program).
    fn array_zeros(&mut self, v: VarId, like: &Stmt, out: &mut Vec<Stmt>) -> Option<Operand> {
        if let Some(p) = self.func.params.iter().find(|p| p.var == v) {
            return match &p.ty {
                syn::Type::Reference(r)
                    if r.mutability.is_none() && super::is_owned_array_type(&r.elem) =>
                {
                    let z = self.zeros_of(Operand::Var(v), like, out);
                    Some(self.borrowed(z, like, out))
                }
                ty if super::is_owned_array_type(ty) => {
                    Some(self.zeros_of(Operand::Var(v), like, out))
                }
                _ => None,
            };
        }
        match self.func.def_of(v).map(|d| &d.rhs) {
            Some(Rhs::Prim { prim, args, .. })
                if prim.name == "&" && args[0].var().is_some_and(|w| self.surely_owned(w, 8)) =>
            {
                let z = self.zeros_of(args[0].clone(), like, out);
                Some(self.borrowed(z, like, out))
            }
            // A view (`x.view()`, `x.t()`, `xs.index_axis(Axis(0), i)`, a slice): a view
            // of zeros of the view's own shape.
            Some(Rhs::Prim { prim, .. })
                if matches!(
                    prim.name,
                    "view" | "t" | "slice" | "slice_axis" | "index_axis" | "row" | "column"
                ) =>
            {
                let op::MethodKind::Prim(view) = op::method("view", 1) else {
                    return None;
                };
                let z = self.zeros_of(Operand::Var(v), like, out);
                let r = self.new_var("t_zeros_view", like.span);
                let rhs = Rhs::Prim {
                    prim: view,
                    spelling: super::Spelling::Method(syn::Ident::new("view", like.span)),
                    args: vec![z],
                };
                out.push(self.stmt(r, rhs, like));
                Some(Operand::Var(r))
            }
            _ if self.surely_owned(v, 8) => Some(self.zeros_of(Operand::Var(v), like, out)),
            _ => None,
        }
    }

    /// The tangent of a runtime op's call (`relu(&z)`, `softmax_cross_entropy(&z,
    /// labels, opts)`), as a primitive whose pullbacks are declared in the runtime's
    /// `rules::second_tensor`: ReLU, the sigmoid, tanh, the softmaxes (masked too) and
    /// the fused softmax cross-entropy; `embedding` and `dropout`, linear in their
    /// array, are the op again on the tangent. `None` for the others (their `f_hvp` is
    /// not built yet).
    fn runtime_op(
        &mut self,
        s: &Stmt,
        path: &syn::ExprPath,
        args: &[Operand],
        out: &mut Vec<Stmt>,
    ) -> Option<Operand> {
        use super::Spelling;
        let name = path.path.segments.last()?.ident.to_string();
        let act: Vec<bool> = args
            .iter()
            .map(|a| self.plan.activity.operand_active(a))
            .collect();
        let base = self.tangent_name(s.def);
        // The normalisations: tangents of the input, the gain and the bias alike
        // (`rules::second_norm`); a differentiated `eps` is not covered.
        if matches!(name.as_str(), "layer_norm" | "rms_norm") {
            let layer = name == "layer_norm";
            let eps = if layer { 3 } else { 2 };
            if args.len() != eps + 1 || act[eps] {
                return None;
            }
            let mut operands = vec![
                args[0].clone(),
                args[1].clone(),
                args[eps].clone(),
                self.tangent(&args[0])?,
                self.tangent(&args[1])?,
            ];
            let (prim, spelling) = if layer {
                operands.push(self.tangent(&args[2])?);
                (
                    LAYER_NORM_T,
                    quote::quote!(::backprop::__private::tensor::layer_norm_tangent(
                        &__bp_op0, &__bp_op1, &__bp_op2, &__bp_op3, &__bp_op4, &__bp_op5
                    )),
                )
            } else {
                (
                    RMS_NORM_T,
                    quote::quote!(::backprop::__private::tensor::rms_norm_tangent(
                        &__bp_op0, &__bp_op1, &__bp_op2, &__bp_op3, &__bp_op4
                    )),
                )
            };
            return Some(self.push_prim(
                s,
                &base,
                prim,
                Spelling::Template(spelling),
                operands,
                out,
            ));
        }
        // The losses of two arrays, either differentiated: `mse(p, t)`,
        // `bce_with_logits(x, y)`, their tangents along both (`rules::second_tensor`).
        if matches!(name.as_str(), "mse" | "bce_with_logits") && args.len() == 2 {
            let (prim, f) = if name == "mse" {
                (MSE_T, quote::quote!(mse_tangent))
            } else {
                (BCE_T, quote::quote!(bce_tangent))
            };
            let operands = vec![
                args[0].clone(),
                args[1].clone(),
                self.tangent(&args[0])?,
                self.tangent(&args[1])?,
            ];
            return Some(self.push_prim(
                s,
                &base,
                prim,
                Spelling::Template(quote::quote!(::backprop::__private::tensor::#f(
                    &__bp_op0, &__bp_op1, &__bp_op2, &__bp_op3
                ))),
                operands,
                out,
            ));
        }
        // The explicit arithmetic ops (`ops::add(&a, &b)`, `ops::sum_axis(&x, ax)`),
        // written with themselves: linear ones on the tangents (zeros for a constant
        // operand, so broadcasting stays the op's), `mul` by the product rule, `div` as
        // `(t_a − y ⊙ t_b) / b`.
        let with_path = |name: &str| {
            let mut p = path.clone();
            if let Some(last) = p.path.segments.last_mut() {
                last.ident = syn::Ident::new(name, last.ident.span());
            }
            p
        };
        let y = Operand::Var(s.def);
        // The argument as the caller passed it (a borrow), or an owned array to borrow.
        let given = |a: &Operand| (a.clone(), false);
        match (name.as_str(), args.len()) {
            ("sum" | "mean", 1) | ("sum_axis" | "mean_axis", 2) => {
                if act[1..].iter().any(|a| *a) {
                    return None;
                }
                let mut with_t: Vec<(Operand, bool)> = args.iter().map(given).collect();
                with_t[0] = (self.tangent(&args[0])?, false);
                return Some(self.op_call(s, path, with_t, out));
            }
            ("add" | "sub", 2) => {
                let mut with_t = Vec::new();
                for k in 0..2 {
                    with_t.push(if act[k] {
                        (self.tangent(&args[k])?, false)
                    } else {
                        (self.zeros_of(args[k].clone(), s, out), true)
                    });
                }
                return Some(self.op_call(s, path, with_t, out));
            }
            ("div", 2) => {
                let ta = if act[0] {
                    (self.tangent(&args[0])?, false)
                } else {
                    (self.zeros_of(args[0].clone(), s, out), true)
                };
                let num = if act[1] {
                    let tb = self.tangent(&args[1])?;
                    let ytb = self.op_call(s, &with_path("mul"), vec![(y, true), (tb, false)], out);
                    (
                        self.op_call(s, &with_path("sub"), vec![ta, (ytb, true)], out),
                        true,
                    )
                } else {
                    ta
                };
                return Some(self.op_call(s, path, vec![num, given(&args[1])], out));
            }
            _ => {}
        }
        // The products `mul`, `matmul`, `matvec`, bilinear: `op(t_a, b) + op(a, t_b)`,
        // calls of the op itself (whose pullbacks are its own).
        if matches!(name.as_str(), "mul" | "matmul" | "matvec") && args.len() == 2 {
            let mut terms = Vec::new();
            for k in 0..2 {
                if act[k] {
                    let mut with_t: Vec<(Operand, bool)> = args.iter().map(given).collect();
                    with_t[k] = (self.tangent(&args[k])?, false);
                    terms.push(self.op_call(s, path, with_t, out));
                }
            }
            return match terms.as_slice() {
                [one] => Some(one.clone()),
                [a, b] => Some(self.push_prim(
                    s,
                    &base,
                    op::ADD,
                    binary(syn::BinOp::Add(Default::default())),
                    vec![a.clone(), b.clone()],
                    out,
                )),
                _ => None,
            };
        }
        // Linear in their array: the op itself applied to the tangent, the same ids, the
        // same mask (`dropout`'s seed draws it again). Its pullback is the op's own.
        if matches!(name.as_str(), "embedding" | "dropout")
            && act[0]
            && !act[1..].iter().any(|a| *a)
        {
            let mut with_t: Vec<(Operand, bool)> = args.iter().map(given).collect();
            with_t[0] = (self.tangent(&args[0])?, false);
            return Some(self.op_call(s, path, with_t, out));
        }
        // Attention: tangents of `q`, `k` and `v` alike (`rules::second_attention`).
        if name == "attention" {
            if args.len() != 4 || act[3] {
                return None;
            }
            let mut operands = args.to_vec();
            for a in &args[..3] {
                operands.push(self.tangent(a)?);
            }
            return Some(self.push_prim(
                s,
                &base,
                ATTENTION_T,
                Spelling::Template(quote::quote!(
                    ::backprop::__private::tensor::attention_tangent(
                        &__bp_op0, &__bp_op1, &__bp_op2, &__bp_op3, &__bp_op4, &__bp_op5, &__bp_op6
                    )
                )),
                operands,
                out,
            ));
        }
        if act.is_empty() || !act[0] || act[1..].iter().any(|a| *a) {
            return None;
        }
        let t = self.tangent(&args[0])?;
        let y = Operand::Var(s.def);
        let (prim, spelling, operands) = match name.as_str() {
            "relu" => (
                RELU_T,
                quote::quote!(::backprop::__private::tensor::relu_tangent(
                    &__bp_op0, &__bp_op1
                )),
                vec![args[0].clone(), t],
            ),
            "leaky_relu" if args.len() == 2 => (
                LEAKY_RELU_T,
                quote::quote!(::backprop::__private::tensor::leaky_relu_tangent(
                    &__bp_op0, &__bp_op1, &__bp_op2
                )),
                vec![args[0].clone(), args[1].clone(), t],
            ),
            "sigmoid" => (
                SIGMOID_T,
                quote::quote!(::backprop::__private::tensor::sigmoid_tangent(
                    &__bp_op0, &__bp_op1
                )),
                vec![y, t],
            ),
            "gelu" | "gelu_exact" | "silu" | "softplus" | "softmax" | "softmax_masked"
            | "softmax_causal" | "log_softmax" => {
                let (prim, saved) = match name.as_str() {
                    "gelu" => (GELU_T, args[0].clone()),
                    "gelu_exact" => (GELU_EXACT_T, args[0].clone()),
                    "silu" => (SILU_T, args[0].clone()),
                    "softplus" => (SOFTPLUS_T, args[0].clone()),
                    // A masked softmax's tangent is the softmax's, `y ⊙ (t − ⟨y, t⟩)`,
                    // from its output: masked entries have `y = 0`, so theirs is 0.
                    "softmax" | "softmax_masked" | "softmax_causal" => (SOFTMAX_T, y),
                    _ => (LOG_SOFTMAX_T, y),
                };
                let f = syn::Ident::new(prim.name, s.span);
                (
                    prim,
                    quote::quote!(::backprop::__private::tensor::#f(&__bp_op0, &__bp_op1)),
                    vec![saved, t],
                )
            }
            "tanh" => (
                second_order_prim("tanh_vjp", &[false]),
                quote::quote!(::backprop::__private::tangent::elementwise(
                    &__bp_op0,
                    &__bp_op1,
                    ::backprop::__private::tanh_vjp
                )),
                vec![y, t],
            ),
            "softmax_cross_entropy" | "cross_entropy" if args.len() == 3 => {
                // The pullback reads the labels: the tape keeps its own copy (they may
                // be a temporary of a loop's iteration, `&[ys[t]]`), one row-major list
                // for `cross_entropy`'s ids of any shape (its `[B, T, V]` logits are
                // rows of their last axis to the rules).
                let labels = self.new_var("labels", s.span);
                let copy = if name == "cross_entropy" {
                    quote::quote!(::backprop::__private::tensor::owned_ids(&__bp_op0))
                } else {
                    quote::quote!(::backprop::__private::tensor::owned_labels(&__bp_op0))
                };
                let rhs = Rhs::ZeroDerivative {
                    spelling: Spelling::Template(copy),
                    args: vec![args[1].clone()],
                };
                out.push(self.stmt(labels, rhs, s));
                (
                    XENT_T,
                    quote::quote!(::backprop::__private::tensor::xent_tangent(
                        &__bp_op0, &__bp_op1, &__bp_op2, &__bp_op3
                    )),
                    vec![args[0].clone(), Operand::Var(labels), args[2].clone(), t],
                )
            }
            _ => return None,
        };
        let v = self.new_var(&self.tangent_name(s.def), s.span);
        let rhs = Rhs::Prim {
            prim,
            spelling: Spelling::Template(spelling),
            args: operands,
        };
        out.push(self.stmt(v, rhs, s));
        Some(Operand::Var(v))
    }

    /// Whether `v` is a struct of parameters (an argument, a field or an element of a
    /// list of them, or a borrow of one).
    fn struct_place(&self, v: VarId) -> bool {
        if let Some(p) = self.func.params.iter().find(|p| p.var == v) {
            return p.kind == super::ParamKind::Struct;
        }
        match self.func.def_of(v) {
            Some(Stmt {
                rhs:
                    Rhs::Buffer {
                        op: BufOp::Field(_) | BufOp::Elem,
                        ..
                    },
                ..
            }) => !self.func.is_buffer(v),
            Some(Stmt {
                rhs:
                    Rhs::Buffer {
                        op: BufOp::Borrow,
                        args,
                    },
                ..
            }) => args[0].var().is_some_and(|x| self.struct_place(x)),
            _ => false,
        }
    }

    /// A buffer operation's tangent: the same operation on the tangent buffers.
    fn buffer(
        &mut self,
        s: &Stmt,
        op: &BufOp,
        args: &[Operand],
        out: &mut Vec<Stmt>,
    ) -> Option<()> {
        if matches!(op, BufOp::Write | BufOp::Push) {
            let Some(buf) = args[0].var().filter(|b| self.active(*b)) else {
                return Some(());
            };
            let tb = self.t.get(&buf)?.clone();
            let mut targs = vec![tb];
            match op {
                BufOp::Write => {
                    targs.push(args[1].clone());
                    targs.push(self.tangent(&args[2])?);
                }
                _ => targs.push(self.tangent(&args[1])?),
            }
            let placeholder = self.new_var("t_write", s.span);
            out.push(self.stmt(
                placeholder,
                Rhs::Buffer {
                    op: op.clone(),
                    args: targs,
                },
                s,
            ));
            return Some(());
        }
        if !self.active(s.def) {
            return Some(());
        }
        let base_tangent = |this: &Self| {
            args[0]
                .var()
                .filter(|v| this.active(*v))
                .and_then(|v| this.t.get(&v).cloned())
        };
        let (op, targs) = match op {
            BufOp::Fill | BufOp::FillArray => {
                (op.clone(), vec![self.tangent(&args[0])?, args[1].clone()])
            }
            BufOp::NewVec => (op.clone(), args.to_vec()),
            // A copy of a constant that later writes make vary: its tangent starts as
            // zeros.
            BufOp::ToVec => match base_tangent(self) {
                Some(tx) => (op.clone(), vec![tx, args[1].clone()]),
                None => (BufOp::Fill, vec![self.zero(), args[1].clone()]),
            },
            BufOp::Read
            | BufOp::View
            | BufOp::Alias
            | BufOp::Borrow
            | BufOp::Field(_)
            | BufOp::FieldRead(_)
            | BufOp::Elem => {
                let mut targs = vec![base_tangent(self)?];
                targs.extend(args[1..].iter().cloned());
                (op.clone(), targs)
            }
            BufOp::Write | BufOp::Push => unreachable!("handled above"),
        };
        let t = self.tangent_var(s.def);
        out.push(self.stmt(t, Rhs::Buffer { op, args: targs }, s));
        Some(())
    }

    /// The tangent of an operand where it meets an active value (a loop's carried
    /// value, a branch's result): a constant array's is an array of zeros of its shape,
    /// made by a statement pushed to `out`, so that both sides have one type.
    ///
    /// Only for an array this function owns, meeting another it owns (`meets`): the
    /// zeros are owned, and a view's or a borrow's tangent is a view or a borrow (an
    /// `if` choosing `x.view()` or `y.view()` has no tangent program then).
    fn tangent_in(
        &mut self,
        o: &Operand,
        meets: &Operand,
        like: &Stmt,
        out: &mut Vec<Stmt>,
    ) -> Option<Operand> {
        let array = |x: &Operand| x.var().is_some_and(|x| !self.plan.kinds.scalar[x.0]);
        // A constant field, element or view of a buffer or struct (`&frozen.w` in one arm,
        // `&p.w` in the other): its tangent would be a borrow of zeros this function
        // cannot lend. No tangent program.
        if let Some(v) = o.var()
            && !self.active(v)
            && matches!(
                self.func.def_of(v).map(|d| &d.rhs),
                Some(Rhs::Buffer {
                    op: BufOp::Field(_) | BufOp::Elem | BufOp::Borrow | BufOp::View | BufOp::Alias,
                    ..
                })
            )
        {
            return None;
        }
        match o.var() {
            Some(v) if !self.active(v) && (array(o) || array(meets)) => {
                let owned = |x: &Operand| x.var().is_some_and(|x| self.surely_owned(x, 8));
                if !owned(o) || !owned(meets) {
                    return None;
                }
                Some(self.zeros_of(o.clone(), like, out))
            }
            _ => self.tangent(o),
        }
    }

    /// Whether `v` is certainly an owned array (`Array<A, D>`, not a view, a borrow or a
    /// `CowArray`): arithmetic, a copy, a product, an elementwise method, a reduction
    /// along an axis, a gather, an element write, a call's result, an array made from
    /// data, or an owned argument; looked through `depth` copies.
    fn surely_owned(&self, v: VarId, depth: usize) -> bool {
        const OWNED: &[&str] = &[
            "to_owned",
            "into_owned",
            "clone",
            "dot",
            "sum_axis",
            "mean_axis_unwrap",
            "select",
        ];
        if let Some(p) = self.func.params.iter().find(|p| p.var == v) {
            return super::is_owned_array_type(&p.ty);
        }
        match self.func.def_of(v).map(|d| &d.rhs) {
            Some(Rhs::Prim { prim, spelling, .. }) => {
                matches!(
                    spelling,
                    super::Spelling::Operator(_) | super::Spelling::Unary(_)
                ) || OWNED.contains(&prim.name)
                    || op::is_element_write(prim)
                    || crate::ir::rule_table::methods().iter().any(|m| m == prim)
            }
            Some(Rhs::Call { .. }) => true,
            Some(Rhs::ZeroDerivative {
                spelling: super::Spelling::Path(p),
                ..
            })
            | Some(Rhs::NoRule {
                spelling: super::Spelling::Path(p),
                ..
            }) => op::is_array_constructor(&p.path),
            Some(Rhs::Copy(Operand::Var(w))) if depth > 0 => self.surely_owned(*w, depth - 1),
            Some(Rhs::Copy(Operand::Const(e))) => crate::analysis::kind::constructs_array(e),
            None if depth > 0 => {
                // A branch's or a loop's result: owned where every value it may be is.
                let mut sources: Option<Vec<Operand>> = None;
                crate::ir::walk(&self.func.body, &mut |st| match &st.rhs {
                    Rhs::If(node) => {
                        if let Some(o) = node.outs.iter().find(|o| o.def == v) {
                            sources = Some(vec![o.then_val.clone(), o.else_val.clone()]);
                        }
                    }
                    Rhs::Loop(node) => {
                        if let Some(c) = node.carried.iter().find(|c| c.out == v || c.entry == v) {
                            sources = Some(vec![c.init.clone(), c.exit.clone()]);
                        }
                    }
                    _ => {}
                });
                sources.is_some_and(|xs| {
                    xs.iter().all(|x| {
                        x.var()
                            .is_some_and(|x| x != v && self.surely_owned(x, depth - 1))
                    })
                })
            }
            _ => false,
        }
    }

    fn branch(&mut self, s: &Stmt, node: &IfNode, out: &mut Vec<Stmt>) -> Option<()> {
        let mut then_body = self.block(&node.then_body)?;
        let mut else_body = self.block(&node.else_body)?;
        let mut outs = node.outs.clone();
        for o in &node.outs {
            if !self.active(o.def) {
                continue;
            }
            let then_val = self.tangent_in(&o.then_val, &o.else_val, s, &mut then_body)?;
            let else_val = self.tangent_in(&o.else_val, &o.then_val, s, &mut else_body)?;
            let def = self.tangent_var(o.def);
            outs.push(IfOut {
                def,
                then_val,
                else_val,
            });
        }
        let rhs = Rhs::If(Box::new(IfNode {
            cond: node.cond.clone(),
            then_body,
            else_body,
            outs,
        }));
        out.push(Stmt {
            rhs,
            ..s.clone_shallow()
        });
        Some(())
    }

    fn repeat(&mut self, s: &Stmt, node: &LoopNode, out: &mut Vec<Stmt>) -> Option<()> {
        let mut with_t = Vec::new();
        for c in &node.carried {
            if self.active(c.entry) || self.active(c.out) {
                let entry = self.tangent_var(c.entry);
                let out = self.tangent_var(c.out);
                with_t.push((c, entry, out));
            }
        }
        let mut body = Vec::new();
        let mut head_len = 0;
        for (k, st) in node.body.iter().enumerate() {
            self.statement(st, &mut body)?;
            if let LoopHead::While { head_len: n, .. } = &node.head
                && k + 1 == *n
            {
                head_len = body.len();
            }
        }
        let mut carried = node.carried.clone();
        for (c, entry, t_out) in with_t {
            let init = self.tangent_in(&c.init, &c.exit, s, out)?;
            let exit = self.tangent_in(&c.exit, &c.init, s, &mut body)?;
            carried.push(Carried {
                init,
                entry,
                exit,
                out: t_out,
            });
        }
        let head = match &node.head {
            LoopHead::While { cond, .. } => LoopHead::While {
                cond: cond.clone(),
                head_len,
            },
            other => other.clone(),
        };
        let rhs = Rhs::Loop(Box::new(LoopNode {
            head,
            body,
            carried,
        }));
        out.push(Stmt {
            rhs,
            ..s.clone_shallow()
        });
        Some(())
    }
}

impl Stmt {
    /// The statement's facts without its right-hand side (which the caller replaces).
    fn clone_shallow(&self) -> Stmt {
        Stmt {
            def: self.def,
            rhs: Rhs::Copy(Operand::Var(self.def)),
            span: self.span,
            ty: self.ty.clone(),
            source: self.source.clone(),
            compound: self.compound,
        }
    }
}
