//! The values some pullback's rule reads, over the whole function: the forward pass
//! copies such an array where it would otherwise move it on. (What each block's tape
//! keeps is `save::plan`, once the block's reverse is built.)
//!
//! In straight-line SSA code no value is overwritten before the reverse pass runs, so
//! Tapenade's "to be recorded" set (values needed *and* overwritten) is empty and the
//! tape is just the set of values the active inputs' pullbacks read: for `a · b` with
//! only `a` active that is `b`; for `exp` it is the output; for `+` nothing. A call's
//! tape is kept whole (it already holds only what its own pullback needs).

use super::activity::Activity;
use super::kind::Kinds;
use crate::ir::op::{Need, Vjp};
use crate::ir::{Func, Operand, Rhs, VarId};
use std::collections::BTreeSet;

pub fn saved(func: &Func, activity: &Activity, kinds: &Kinds) -> BTreeSet<VarId> {
    let mut saved = BTreeSet::new();
    crate::ir::walk(&func.body, &mut |s| {
        if !activity.is_active(s.def) {
            return;
        }
        match &s.rhs {
            Rhs::Prim { prim, args, .. } => {
                for (k, vjp) in prim.vjps_on(kinds.scalar_path(s.def)).iter().enumerate() {
                    if !activity.operand_active(&args[k]) {
                        continue;
                    }
                    if let Vjp::Rule(_, needs) = vjp {
                        for need in *needs {
                            // A shape is a few integers (nothing for a scalar): not listed.
                            let v = match need {
                                Need::In(j) => args[*j].var(),
                                Need::Out => Some(s.def),
                                Need::Shape(_) => None,
                            };
                            if let Some(v) = v {
                                saved.insert(v);
                                // The reverse pass re-derives a borrow or a view from
                                // its source (`Emitter::saved_operand`): the source is
                                // what it reads.
                                saved.extend(view_sources(func, v));
                            }
                        }
                    }
                }
            }
            // A call's or a branch's tape: recorded under the statement's own name
            // (see emit::reverse); a branch keeps which way it went and what that
            // branch's pullback reads.
            Rhs::Call { .. } | Rhs::If(_) => {
                saved.insert(s.def);
            }
            // An outer array an iteration reads gets a zero of its shape when the loop
            // runs no iteration (`sum_or_zeros_like`): the reverse reads it.
            Rhs::Loop(node) => {
                saved.insert(s.def);
                let mut inside: BTreeSet<VarId> = node.carried.iter().map(|c| c.entry).collect();
                crate::ir::walk(&node.body, &mut |t| {
                    inside.insert(t.def);
                    match &t.rhs {
                        Rhs::Loop(n) => {
                            inside.extend(n.carried.iter().flat_map(|c| [c.entry, c.out]))
                        }
                        Rhs::If(n) => inside.extend(n.outs.iter().map(|o| o.def)),
                        _ => {}
                    }
                });
                crate::ir::walk(&node.body, &mut |t| {
                    // A nested loop's or `if`'s own operands are handed on, not read.
                    if matches!(t.rhs, Rhs::Loop(_) | Rhs::If(_)) {
                        return;
                    }
                    for o in t.rhs.operands() {
                        if let Some(v) = o.var()
                            && !inside.contains(&v)
                            && activity.is_active(v)
                            && !kinds.scalar[v.0]
                        {
                            saved.insert(v);
                        }
                    }
                });
            }
            Rhs::Copy(_) | Rhs::ZeroDerivative { .. } | Rhs::NoRule { .. } | Rhs::Buffer { .. } => {
            }
        }
    });
    saved
}

/// The values a borrow or view `v` is taken from, transitively (`&x`, `x.t()`,
/// `x.row(i)`, `x.view().insert_axis(..)`).
fn view_sources(func: &Func, mut v: VarId) -> Vec<VarId> {
    let mut out = Vec::new();
    while let Some(crate::ir::Stmt {
        rhs: Rhs::Prim { prim, args, .. },
        ..
    }) = func.def_of(v)
    {
        let view = matches!(prim.name, "&" | "t" | "view")
            || crate::ir::op::VIEW_METHODS.contains(&prim.name)
            || crate::ir::op::CONSUMING_VIEW_METHODS.contains(&prim.name);
        match args.first().and_then(Operand::var) {
            Some(src) if view => {
                out.push(src);
                v = src;
            }
            _ => break,
        }
    }
    out
}
