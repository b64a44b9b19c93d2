//! What to record: the values the reverse pass reads, so the tape keeps them and
//! nothing else.
//!
//! In straight-line SSA code no value is overwritten before the reverse pass runs, so
//! Tapenade's "to be recorded" set (values needed *and* overwritten) is empty and the
//! tape is just the set of values the active inputs' pullbacks read: for `a · b` with
//! only `a` active that is `b`; for `exp` it is the output; for `+` nothing. A call's
//! tape is kept whole (it already holds only what its own pullback needs).

use super::activity::Activity;
use crate::ir::op::{Need, Vjp};
use crate::ir::{Func, Rhs, VarId};
use std::collections::BTreeSet;

pub fn saved(func: &Func, activity: &Activity) -> BTreeSet<VarId> {
    let mut saved = BTreeSet::new();
    for s in &func.body {
        if !activity.is_active(s.def) {
            continue;
        }
        match &s.rhs {
            Rhs::Prim { prim, args, .. } => {
                for (k, vjp) in prim.vjps.iter().enumerate() {
                    if !activity.operand_active(&args[k]) {
                        continue;
                    }
                    if let Vjp::Rule(_, needs) = vjp {
                        for need in *needs {
                            let v = match need {
                                Need::In(j) => args[*j].var(),
                                Need::Out => Some(s.def),
                            };
                            saved.extend(v);
                        }
                    }
                }
            }
            // The call's tape: recorded under the call's own name (see emit::reverse).
            Rhs::Call { .. } => {
                saved.insert(s.def);
            }
            Rhs::Copy(_) | Rhs::ZeroDerivative { .. } | Rhs::NoRule { .. } => {}
        }
    }
    saved
}
