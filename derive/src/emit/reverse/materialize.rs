//! A block's save plan (`analysis::save`) in tokens: the statements its reverse
//! recomputes at the top, and the names its forward pass saves.

use crate::analysis::save::{self, Aux, Block, Reads, Recompute};
use crate::emit::context::Emitter;
use crate::ir::{Rhs, Stmt, VarId};
use proc_macro2::{Ident, TokenStream};
use quote::quote;
use std::collections::HashMap;

/// What the head of a block's reverse recomputes and what its forward pass saves.
pub(super) struct Materialized {
    /// The recomputing statements, in program order.
    pub recompute: Vec<TokenStream>,
    /// The names the forward pass saves (pushes, for a loop body).
    pub saved: Vec<Ident>,
    /// Whether the reverse reads the loop's index.
    pub index: bool,
    /// What `recompute` reads.
    pub head_reads: Reads,
}

/// The save plan of the block `stmts` whose reverse reads `reads` (see
/// `analysis::save::plan`), in tokens. `entries` are values defined at the block's top
/// that are never recomputed (a loop's carried values); `index` is a loop's index;
/// `given` are values the reverse has by other means.
pub(super) fn materialize(
    cx: &mut Emitter<'_>,
    stmts: &[Stmt],
    entries: &[VarId],
    index: Option<VarId>,
    given: &[VarId],
    reads: &Reads,
) -> Materialized {
    // The auxiliary names the forward pass made beside each statement, by name.
    let mut idents: HashMap<String, Ident> = HashMap::new();
    let mut aux_of: HashMap<VarId, Vec<String>> = HashMap::new();
    for s in stmts {
        let mut names: Vec<Ident> = Vec::new();
        if let Rhs::Loop(_) = &s.rhs {
            // A `while`'s iteration count is saved; a `for`'s range is rebuilt when its
            // bounds are at hand, saved otherwise. Its stack is the function's, not the
            // block's.
            names.extend(cx.count_if_any(s.def));
            names.extend(cx.hoisted_names(s.def));
        } else {
            // Shapes taken in this block for its broadcasting rules.
            if let Some(shapes) = cx.shapes_at.get(&s.def) {
                names.extend(shapes.iter().cloned());
            }
            // A checkpointed call keeps its copies; its tape is made again in reverse.
            match cx.snapshots.get(&s.def) {
                Some(snaps) => names.extend(snaps.iter().flatten().map(|(x, _)| x.clone())),
                None => names.extend(cx.tape_if_any(s.def)),
            }
        }
        aux_of.insert(s.def, names.iter().map(|n| n.to_string()).collect());
        idents.extend(names.into_iter().map(|n| (n.to_string(), n)));
    }
    for s in stmts {
        if let Some(r) = cx.range_if_any(s.def) {
            idents.insert(r.to_string(), r);
        }
    }
    let of = |s: &Stmt| aux_of.get(&s.def).cloned().unwrap_or_default();
    let range = |v: VarId| cx.range_if_any(v).map(|r| r.to_string());
    let aux = Aux {
        of: &of,
        range: &range,
    };
    let block = Block {
        stmts,
        entries,
        index,
        given,
    };
    let plan = save::plan(
        cx.func,
        &cx.plan.kinds,
        &cx.plan.stable_reads,
        &block,
        reads,
        &aux,
    );
    let mut recompute: Vec<TokenStream> = Vec::new();
    for step in &plan.recompute {
        match step {
            Recompute::Value(v) => {
                let s = stmts
                    .iter()
                    .find(|s| s.def == *v)
                    .expect("a statement of the block");
                recompute.push(cx.simple_stmt(s));
            }
            Recompute::Range(v) => {
                let Some(Stmt {
                    rhs: Rhs::Loop(node),
                    ..
                }) = stmts.iter().find(|s| s.def == *v)
                else {
                    unreachable!("a rebuilt range is a loop's")
                };
                let crate::ir::LoopHead::For { range, .. } = &node.head else {
                    unreachable!("a rebuilt range is a `for` loop's")
                };
                let r = cx.range(*v);
                recompute.push(quote!(let #r = #range;));
            }
        }
    }
    let mut saved: Vec<Ident> = plan.saved.iter().map(|v| cx.var(*v).clone()).collect();
    saved.extend(plan.saved_names.iter().map(|n| idents[n].clone()));
    if cx.debug {
        let at = stmts
            .first()
            .map_or("(empty)".to_string(), |s| cx.var(s.def).to_string());
        cx.debug_plans.push(format!(
            "block from {at}: saves [{}], recomputes [{}]{}",
            saved
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            plan.recompute
                .iter()
                .map(|r| match r {
                    Recompute::Value(v) => cx.var(*v).to_string(),
                    Recompute::Range(v) => format!("the range of {}", cx.var(*v)),
                })
                .collect::<Vec<_>>()
                .join(", "),
            if plan.index { ", and the index" } else { "" }
        ));
    }
    Materialized {
        recompute,
        saved,
        index: plan.index,
        head_reads: plan.head_reads,
    }
}
