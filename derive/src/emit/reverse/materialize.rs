//! What a block's reverse pass reads of the values the block defines: recomputed at
//! the top of the reverse block where that is exact and cheap, saved by the forward pass
//! otherwise (Tapenade's TBR).

use crate::emit::context::Emitter;
use crate::ir::{BufOp, Operand, Rhs, Spelling, Stmt, VarId};
use proc_macro2::{Ident, TokenStream};
use quote::quote;
use std::collections::{BTreeSet, HashSet};

/// What a block's reverse pass (`rev`) reads of the values the block defines, and how
/// each is made available: recomputed at the top of the reverse block when that is
/// cheap and exact (index arithmetic, copies, reads of argument slices, which cannot
/// change while the tape borrows them), saved by the forward pass otherwise (Tapenade's
/// TBR: needed *and* overwritten, since the block runs again or its values go out of
/// scope). `entries` are values defined at the block's top that are never recomputed
/// (a loop's carried values); `index` is a loop's index, recomputed from its range.
///
/// Returns the recomputing statements, the names to save, and whether the index is
/// read.
pub(super) fn materialize(
    cx: &mut Emitter<'_>,
    stmts: &[Stmt],
    entries: &[VarId],
    index: Option<VarId>,
    given: &[VarId],
    rev: &TokenStream,
) -> (Vec<TokenStream>, Vec<Ident>, bool) {
    let func = cx.func;
    let provided = |v: VarId| Some(v) == index || given.contains(&v);
    // Values defined at the top of this block (nested blocks save their own).
    let mut local: HashSet<VarId> = entries.iter().copied().collect();
    local.extend(index);
    let mut extra_names: Vec<Ident> = Vec::new();
    for s in stmts {
        local.insert(s.def);
        match &s.rhs {
            Rhs::If(node) => local.extend(node.outs.iter().map(|o| o.def)),
            Rhs::Loop(_) => {
                local.extend(match &s.rhs {
                    Rhs::Loop(node) => node.carried.iter().map(|c| c.out).collect::<Vec<_>>(),
                    _ => Vec::new(),
                });
                // A `while`'s iteration count is saved; a `for`'s range is rebuilt
                // below when its bounds are at hand, saved otherwise. Its stack is
                // the function's, not the block's.
                extra_names.extend(cx.count_if_any(s.def));
                extra_names.extend(cx.hoisted_names(s.def));
                continue;
            }
            _ => {}
        }
        // Shapes taken in this block for its broadcasting rules.
        if let Some(shapes) = cx.shapes_at.get(&s.def) {
            extra_names.extend(shapes.iter().cloned());
        }
        // A checkpointed call keeps its copies; its tape is made again in reverse.
        match cx.snapshots.get(&s.def) {
            Some(snaps) => extra_names.extend(snaps.iter().flatten().map(|(x, _)| x.clone())),
            None => extra_names.extend(cx.tape_if_any(s.def)),
        }
    }
    // Which are recomputable, in program order (SSA: operands come first).
    let mut recomputable: HashSet<VarId> = HashSet::new();
    let mut cheap_kind: HashSet<VarId> = HashSet::new();
    for s in stmts {
        let avail =
            |v: VarId, r: &HashSet<VarId>| !local.contains(&v) || r.contains(&v) || provided(v);
        let ops_ok = s
            .rhs
            .operands()
            .iter()
            .all(|o| o.var().is_none_or(|v| avail(v, &recomputable)));
        let cheap = match &s.rhs {
            Rhs::Copy(Operand::Var(_)) => true,
            // (`h.len()` of a buffer built by `push` changes as it grows: saved.)
            Rhs::ZeroDerivative { spelling, args } => {
                !matches!(spelling, Spelling::Path(_)) && !args.iter().any(|a| growable(cx, a))
            }
            // One flop from values the reverse has anyway: cheaper than a save.
            Rhs::Prim {
                spelling: Spelling::Operator(_) | Spelling::Unary(_),
                ..
            } => cx.plan.kinds.scalar_path(s.def),
            // Arguments (and fields of struct arguments) are borrowed by the tape and
            // cannot change before the reverse pass: read them again.
            Rhs::Buffer {
                op: BufOp::Read,
                args,
            } => {
                let (root, _) = func.buffer_root(args[0].var().expect("a buffer"));
                func.params.iter().any(|p| p.var == root)
                    || func.is_field_view(root)
                    || cx.stable_reads.contains(&s.def)
            }
            Rhs::Buffer {
                op:
                    BufOp::View
                    | BufOp::Alias
                    | BufOp::Borrow
                    | BufOp::Field(_)
                    | BufOp::Elem
                    | BufOp::FieldRead(_),
                ..
            } => true,
            _ => false,
        };
        if cheap && !entries.contains(&s.def) {
            cheap_kind.insert(s.def);
        }
        if cheap && ops_ok && !entries.contains(&s.def) {
            recomputable.insert(s.def);
        }
    }
    let mentioned = crate::ir::idents(rev);
    let mut needed: BTreeSet<VarId> = local
        .iter()
        .copied()
        .filter(|v| mentioned.contains(&cx.var(*v).to_string()))
        .collect();
    // Ranges of nested `for` loops: rebuilt from their bounds when those are at hand.
    let mut rebuilt_ranges: HashSet<VarId> = HashSet::new();
    for s in stmts {
        let Rhs::Loop(node) = &s.rhs else { continue };
        let crate::ir::LoopHead::For { bounds, .. } = &node.head else {
            continue;
        };
        let Some(r) = cx.range_if_any(s.def) else {
            continue;
        };
        if !mentioned.contains(&r.to_string()) {
            continue;
        }
        let at_hand = bounds
            .iter()
            .all(|v| !local.contains(v) || recomputable.contains(v) || provided(*v));
        if at_hand {
            rebuilt_ranges.insert(s.def);
            needed.extend(bounds.iter().copied().filter(|v| local.contains(v)));
        } else {
            extra_names.push(r);
        }
    }
    // A recomputed value needs its operands.
    let mut work: Vec<VarId> = needed.iter().copied().collect();
    while let Some(v) = work.pop() {
        if !recomputable.contains(&v) {
            continue;
        }
        let s = stmts
            .iter()
            .find(|s| s.def == v)
            .expect("a local statement");
        for o in s.rhs.operands() {
            if let Some(w) = o.var()
                && local.contains(&w)
                && needed.insert(w)
            {
                work.push(w);
            }
        }
    }
    // A cheap value whose operands are saved anyway (`icf[li]` when `li` is saved) is
    // recomputed from them rather than saved beside them.
    for s in stmts {
        if !needed.contains(&s.def) || recomputable.contains(&s.def) || !cheap_kind.contains(&s.def)
        {
            continue;
        }
        let from_saved = s.rhs.operands().iter().all(|o| {
            o.var().is_none_or(|w| {
                !local.contains(&w)
                    || recomputable.contains(&w)
                    || provided(w)
                    || (needed.contains(&w) && w != s.def)
            })
        });
        if from_saved {
            recomputable.insert(s.def);
        }
    }
    // Their operands are needed too (recomputed in turn, or saved).
    let mut work: Vec<VarId> = needed
        .iter()
        .copied()
        .filter(|v| recomputable.contains(v))
        .collect();
    while let Some(v) = work.pop() {
        let Some(s) = stmts.iter().find(|s| s.def == v) else {
            continue;
        };
        for o in s.rhs.operands() {
            if let Some(w) = o.var()
                && local.contains(&w)
                && needed.insert(w)
                && recomputable.contains(&w)
            {
                work.push(w);
            }
        }
    }
    let mut recompute: Vec<TokenStream> = Vec::new();
    for s in stmts {
        if needed.contains(&s.def) && recomputable.contains(&s.def) {
            recompute.push(cx.simple_stmt(s));
        }
        if rebuilt_ranges.contains(&s.def)
            && let Rhs::Loop(node) = &s.rhs
            && let crate::ir::LoopHead::For { range, .. } = &node.head
        {
            let r = cx.range(s.def);
            recompute.push(quote!(let #r = #range;));
        }
    }
    let mut saved: Vec<Ident> = needed
        .iter()
        .filter(|v| !recomputable.contains(v) && !provided(**v))
        .map(|v| cx.var(*v).clone())
        .collect();
    saved.extend(
        extra_names
            .into_iter()
            .filter(|n| mentioned.contains(&n.to_string())),
    );
    let index_needed = index.is_some_and(|i| needed.contains(&i));
    (recompute, saved, index_needed)
}

/// A buffer built by `push` (or a view of one).
fn growable(cx: &Emitter<'_>, o: &Operand) -> bool {
    o.var().is_some_and(|v| {
        cx.func.is_buffer(v)
            && matches!(
                cx.func.def_of(cx.func.buffer_root(v).0),
                Some(Stmt {
                    rhs: Rhs::Buffer {
                        op: BufOp::NewVec,
                        ..
                    },
                    ..
                })
            )
    })
}
