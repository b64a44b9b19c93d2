//! Activity: a value is *active* when it is varied (depends on an active argument) and
//! useful (the result depends on it). Only active values get an adjoint; everything
//! else is copied into the forward pass as it is and costs nothing in reverse
//! (Hascoët & Pascual 2013, "The Tapenade AD tool", §3.1; JAX's symbolic zeros).

use crate::ir::{Func, Operand, Rhs, VarId};

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

pub fn analyse(func: &Func) -> Activity {
    let n = func.vars.len();
    let mut varied = vec![false; n];
    for p in &func.params {
        varied[p.var.0] = p.active;
    }
    // Forward: straight-line SSA needs one pass in program order.
    for s in &func.body {
        if propagates(&s.rhs) {
            varied[s.def.0] = s
                .rhs
                .operands()
                .iter()
                .any(|o| o.var().is_some_and(|v| varied[v.0]));
        }
    }
    let mut useful = vec![false; n];
    if let Some(v) = func.ret.var() {
        useful[v.0] = true;
    }
    // Backward: one pass in reverse program order.
    for s in func.body.iter().rev() {
        if useful[s.def.0] && propagates(&s.rhs) {
            for v in s.rhs.operands().iter().filter_map(Operand::var) {
                useful[v.0] = true;
            }
        }
    }
    Activity { varied, useful }
}
