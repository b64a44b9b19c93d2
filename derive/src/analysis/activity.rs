//! Activity: a value is *active* when it is varied (depends on an active argument) and
//! useful (the result depends on it). Only active values get an adjoint; everything
//! else is copied into the forward pass as it is and costs nothing in reverse
//! (Hascoët & Pascual 2013, "The Tapenade AD tool", §3.1; JAX's symbolic zeros).
//!
//! Branches: an `if`'s outputs are varied when either branch's value is, and a useful
//! output makes both branches' values useful (whichever branch runs, its value
//! matters). The condition is a bool and never active. SSA has no loops yet, so one
//! forward and one backward pass over the nested statements suffice.

use crate::ir::{Func, Operand, Rhs, Stmt, VarId};

pub struct Activity {
    varied: Vec<bool>,
    useful: Vec<bool>,
}

impl Activity {
    pub fn is_active(&self, v: VarId) -> bool {
        self.varied[v.0] && self.useful[v.0]
    }

    pub fn operand_active(&self, o: &Operand) -> bool {
        o.var().is_some_and(|v| self.is_active(v))
    }
}

/// Whether derivatives flow from the inputs of `rhs` to its result.
fn propagates(rhs: &Rhs) -> bool {
    !matches!(rhs, Rhs::ZeroDerivative { .. })
}

fn forward(stmts: &[Stmt], varied: &mut [bool]) {
    let is = |o: &Operand, varied: &[bool]| o.var().is_some_and(|v| varied[v.0]);
    for s in stmts {
        match &s.rhs {
            Rhs::If(node) => {
                forward(&node.then_body, varied);
                forward(&node.else_body, varied);
                let mut any = false;
                for out in &node.outs {
                    varied[out.def.0] = is(&out.then_val, varied) || is(&out.else_val, varied);
                    any |= varied[out.def.0];
                }
                varied[s.def.0] = any;
            }
            Rhs::Loop(node) => {
                // Carried values: varied if the initial value is, or if an iteration
                // makes them so; iterate the body to a fixed point (at most one more
                // pass per carried value).
                for c in &node.carried {
                    varied[c.entry.0] = is(&c.init, varied);
                }
                loop {
                    forward(&node.body, varied);
                    let mut changed = false;
                    for c in &node.carried {
                        if is(&c.exit, varied) && !varied[c.entry.0] {
                            varied[c.entry.0] = true;
                            changed = true;
                        }
                    }
                    if !changed {
                        break;
                    }
                }
                let mut any = false;
                for c in &node.carried {
                    varied[c.out.0] = varied[c.entry.0] || is(&c.exit, varied);
                    any |= varied[c.out.0];
                }
                varied[s.def.0] = any;
            }
            rhs if propagates(rhs) => {
                varied[s.def.0] = rhs.operands().iter().any(|o| is(o, varied))
            }
            _ => {}
        }
    }
}

fn backward(stmts: &[Stmt], useful: &mut [bool]) {
    let mark = |o: &Operand, useful: &mut [bool]| {
        if let Some(v) = o.var() {
            useful[v.0] = true;
        }
    };
    for s in stmts.iter().rev() {
        match &s.rhs {
            Rhs::If(node) => {
                for out in &node.outs {
                    if useful[out.def.0] {
                        useful[s.def.0] = true;
                        mark(&out.then_val, useful);
                        mark(&out.else_val, useful);
                    }
                }
                backward(&node.then_body, useful);
                backward(&node.else_body, useful);
            }
            Rhs::Loop(node) => {
                // A useful output makes its last exit useful; a useful entry makes the
                // previous iteration's exit and the initial value useful.
                for c in &node.carried {
                    if useful[c.out.0] {
                        useful[s.def.0] = true;
                        mark(&c.exit, useful);
                        useful[c.entry.0] = true;
                        mark(&c.init, useful);
                    }
                }
                loop {
                    backward(&node.body, useful);
                    let mut changed = false;
                    for c in &node.carried {
                        let exit_useful = c.exit.var().is_some_and(|v| useful[v.0]);
                        if useful[c.entry.0] && !exit_useful {
                            mark(&c.exit, useful);
                            changed = true;
                        }
                        if useful[c.entry.0] {
                            useful[s.def.0] = true;
                            mark(&c.init, useful);
                        }
                    }
                    if !changed {
                        break;
                    }
                }
            }
            rhs if useful[s.def.0] && propagates(rhs) => {
                for o in rhs.operands() {
                    mark(o, useful);
                }
            }
            _ => {}
        }
    }
}

pub fn analyse(func: &Func) -> Activity {
    let n = func.vars.len();
    let mut varied = vec![false; n];
    for p in &func.params {
        varied[p.var.0] = p.active;
    }
    forward(&func.body, &mut varied);
    let mut useful = vec![false; n];
    if let Some(v) = func.ret.var() {
        useful[v.0] = true;
    }
    backward(&func.body, &mut useful);
    Activity { varied, useful }
}
