//! The save plan of a block: which of the values it defines its reverse pass
//! recomputes, which the forward pass saves (pushes per iteration, for a loop body),
//! and whether it needs the loop's index.
//!
//! The input is the IR block and what the block's reverse reads ([`Reads`]: each value
//! and each auxiliary name — a tape, a range, a copy — named where the reverse lines
//! are built, never found by scanning their tokens). A value the reverse reads is
//! recomputed at the top of the block's reverse when that is cheap and exact (index
//! arithmetic, copies, reads of argument slices, which cannot change while the tape
//! borrows them) and saved otherwise: Tapenade's TBR ("to be recorded": needed *and*
//! overwritten, here because the block runs again or its values go out of scope;
//! Hascoët, Naumann & Pascual, "To be recorded" analysis in reverse-mode automatic
//! differentiation, FGCS 21(8), 2005).

use super::kind::Kinds;
use crate::ir::{BufOp, Func, LoopHead, Operand, Rhs, Spelling, Stmt, VarId};
use std::collections::{BTreeSet, HashSet};

/// What a piece of reverse code reads of what the forward pass defines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// Values of the IR.
    pub values: BTreeSet<VarId>,
    /// Auxiliary names the forward pass makes beside its statements: a call's or a
    /// loop's tape, a loop's range or count, a shape, a checkpoint's copy, a hoisted read.
    pub names: BTreeSet<String>,
}

impl Reads {
    pub fn extend(&mut self, other: &Reads) {
        self.values.extend(other.values.iter().copied());
        self.names.extend(other.names.iter().cloned());
    }
}

/// One block, as the save plan sees it.
pub struct Block<'a> {
    pub stmts: &'a [Stmt],
    /// Values defined at the block's top that are never recomputed (a loop's carried
    /// values).
    pub entries: &'a [VarId],
    /// A loop's index (recomputed from its range).
    pub index: Option<VarId>,
    /// Values the reverse has by other means (counters run backwards, relayed states).
    pub given: &'a [VarId],
}

/// What the block's forward pass made beside its statements, by name.
pub struct Aux<'a> {
    /// Per statement: the auxiliary names made with it (its shapes, its tape or its
    /// checkpoint's copies, a loop's count and hoisted reads).
    pub of: &'a dyn Fn(&Stmt) -> Vec<String>,
    /// The range name of a `for` loop, if one was made.
    pub range: &'a dyn Fn(VarId) -> Option<String>,
}

/// A step of the reverse block's head, in program order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recompute {
    /// The statement defining this value, run again.
    Value(VarId),
    /// The range of the `for` loop this statement is, built again from its bounds.
    Range(VarId),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavePlan {
    /// The head of the block's reverse.
    pub recompute: Vec<Recompute>,
    /// The values the forward pass saves, in `VarId` order.
    pub saved: Vec<VarId>,
    /// The auxiliary names it saves.
    pub saved_names: Vec<String>,
    /// Whether the reverse needs the loop's index.
    pub index: bool,
    /// What the head reads (the operands of what it recomputes, the bounds of what it
    /// rebuilds): part of what the block's reverse reads, for an enclosing block.
    pub head_reads: Reads,
}

/// The save plan of `block`, whose reverse reads `reads`.
pub fn plan(
    func: &Func,
    kinds: &Kinds,
    stable_reads: &HashSet<VarId>,
    block: &Block<'_>,
    reads: &Reads,
    aux: &Aux<'_>,
) -> SavePlan {
    let Block {
        stmts,
        entries,
        index,
        given,
    } = *block;
    let provided = |v: VarId| Some(v) == index || given.contains(&v);
    // Values defined at the top of this block (nested blocks save their own).
    let mut local: HashSet<VarId> = entries.iter().copied().collect();
    local.extend(index);
    let mut extra_names: Vec<String> = Vec::new();
    for s in stmts {
        local.insert(s.def);
        match &s.rhs {
            Rhs::If(node) => local.extend(node.outs.iter().map(|o| o.def)),
            Rhs::Loop(node) => local.extend(node.carried.iter().map(|c| c.out)),
            _ => {}
        }
        extra_names.extend((aux.of)(s));
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
        let cheap = cheap(func, kinds, stable_reads, s);
        if cheap && !entries.contains(&s.def) {
            cheap_kind.insert(s.def);
            if ops_ok {
                recomputable.insert(s.def);
            }
        }
    }
    let mut needed: BTreeSet<VarId> = local
        .iter()
        .copied()
        .filter(|v| reads.values.contains(v))
        .collect();
    // Ranges of nested `for` loops: rebuilt from their bounds when those are at hand.
    let mut rebuilt_ranges: HashSet<VarId> = HashSet::new();
    for s in stmts {
        let Rhs::Loop(node) = &s.rhs else { continue };
        let LoopHead::For { bounds, .. } = &node.head else {
            continue;
        };
        let Some(r) = (aux.range)(s.def) else {
            continue;
        };
        if !reads.names.contains(&r) {
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
    let def = |v: VarId| stmts.iter().find(|s| s.def == v);
    // A recomputed value needs its operands.
    let mut work: Vec<VarId> = needed.iter().copied().collect();
    while let Some(v) = work.pop() {
        if !recomputable.contains(&v) {
            continue;
        }
        let s = def(v).expect("a local statement");
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
        let Some(s) = def(v) else { continue };
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
    let mut recompute = Vec::new();
    let mut head_reads = Reads::default();
    for s in stmts {
        if needed.contains(&s.def) && recomputable.contains(&s.def) {
            recompute.push(Recompute::Value(s.def));
            for o in s.rhs.operands() {
                head_reads.values.extend(operand_reads(func, o));
            }
        }
        if rebuilt_ranges.contains(&s.def)
            && let Rhs::Loop(node) = &s.rhs
            && let LoopHead::For { bounds, .. } = &node.head
        {
            recompute.push(Recompute::Range(s.def));
            head_reads.values.extend(bounds.iter().copied());
        }
    }
    let saved: Vec<VarId> = needed
        .iter()
        .copied()
        .filter(|v| !recomputable.contains(v) && !provided(*v))
        .collect();
    let saved_names: Vec<String> = extra_names
        .into_iter()
        .filter(|n| reads.names.contains(n))
        .collect();
    SavePlan {
        recompute,
        saved,
        saved_names,
        index: index.is_some_and(|i| needed.contains(&i)),
        head_reads,
    }
}

/// Whether recomputing `s` in the reverse pass is cheaper than saving its value, and
/// exact.
fn cheap(func: &Func, kinds: &Kinds, stable_reads: &HashSet<VarId>, s: &Stmt) -> bool {
    match &s.rhs {
        Rhs::Copy(Operand::Var(_)) => true,
        // (`h.len()` of a buffer built by `push` changes as it grows: saved.)
        Rhs::ZeroDerivative { spelling, args } => {
            !matches!(spelling, Spelling::Path(_)) && !args.iter().any(|a| growable(func, a))
        }
        // One flop from values the reverse has anyway: cheaper than a save.
        Rhs::Prim {
            spelling: Spelling::Operator(_) | Spelling::Unary(_),
            ..
        } => kinds.scalar_path(s.def),
        // Arguments (and fields of struct arguments) are borrowed by the tape and
        // cannot change before the reverse pass: read them again.
        Rhs::Buffer {
            op: BufOp::Read,
            args,
        } => {
            let (root, _) = func.buffer_root(args[0].var().expect("a buffer"));
            func.params.iter().any(|p| p.var == root)
                || func.is_field_view(root)
                || stable_reads.contains(&s.def)
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
    }
}

/// A buffer built by `push` (or a view of one).
fn growable(func: &Func, o: &Operand) -> bool {
    o.var()
        .is_some_and(|v| func.is_buffer(v) && func.grown_by_push(v))
}

/// The values an operand reads: itself, or the locals a data argument kept as written
/// names (`s![.., a..b]`, renamed to their versions when it was lowered).
pub fn operand_reads(func: &Func, o: &Operand) -> Vec<VarId> {
    match o {
        Operand::Var(v) => vec![*v],
        Operand::Const(e) => func.locals_in(e),
    }
}

#[cfg(test)]
mod tests {
    //! The save plan on small IR fragments, lowered from the functions users write.

    use super::*;
    use crate::analysis::{Plan, analyse};
    use crate::diag::Ctxt;

    fn lowered(src: &str) -> (Func, Plan) {
        let item: syn::ItemFn = syn::parse_str(src).expect("a function");
        let args = crate::attr::parse(proc_macro2::TokenStream::new()).expect("no arguments");
        let cx = Ctxt::new();
        let func = crate::ir::lower::lower(&cx, &item, &args).expect("lowered");
        let plan = analyse(&cx, &func);
        cx.check().expect("supported");
        (func, plan)
    }

    /// The value of a user's local `name` (its SSA versions are `name`, `name_1`, ...:
    /// the last one defined).
    fn var(func: &Func, name: &str) -> VarId {
        let mut found = None;
        crate::ir::walk(&func.body, &mut |s| {
            let n = func.name(s.def).to_string();
            let version = n.strip_prefix(name).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('_')
                        .is_some_and(|k| k.parse::<u32>().is_ok())
            });
            if version {
                found = Some(s.def);
            }
        });
        found.unwrap_or_else(|| panic!("no statement defines `{name}`"))
    }

    fn reads(values: &[VarId]) -> Reads {
        Reads {
            values: values.iter().copied().collect(),
            names: BTreeSet::new(),
        }
    }

    fn plan_of(func: &Func, plan: &Plan, block: &Block<'_>, r: &Reads) -> SavePlan {
        let none = |_: &Stmt| Vec::new();
        let no_range = |_: VarId| None;
        let aux = Aux {
            of: &none,
            range: &no_range,
        };
        super::plan(func, &plan.kinds, &plan.stable_reads, block, r, &aux)
    }

    fn top(func: &Func) -> Block<'_> {
        Block {
            stmts: &func.body,
            entries: &[],
            index: None,
            given: &[],
        }
    }

    #[test]
    fn scalar_arithmetic_is_recomputed_and_a_method_saved() {
        let (func, plan) =
            lowered("fn f(a: f64, b: f64) -> f64 { let t = a * b; let u = t.exp(); u * a }");
        let (t, u) = (var(&func, "t"), var(&func, "u"));
        // `t = a · b` is one flop from arguments the reverse has: recomputed.
        let p = plan_of(&func, &plan, &top(&func), &reads(&[t]));
        assert_eq!(p.recompute, vec![Recompute::Value(t)]);
        assert!(p.saved.is_empty());
        assert_eq!(p.head_reads.values.len(), 2, "reads a and b");
        // `u = exp(t)` is not: saved, and `t` is not needed for it.
        let p = plan_of(&func, &plan, &top(&func), &reads(&[u]));
        assert_eq!(p.saved, vec![u]);
        assert!(p.recompute.is_empty());
        // Nothing read, nothing kept.
        let p = plan_of(&func, &plan, &top(&func), &reads(&[]));
        assert_eq!(p, SavePlan::default());
    }

    #[test]
    fn a_cheap_value_is_recomputed_from_a_saved_operand() {
        let (func, plan) =
            lowered("fn f(a: f64) -> f64 { let e = a.exp(); let c = e * 2.0; c.sin() }");
        let (e, c) = (var(&func, "e"), var(&func, "c"));
        // The reverse reads both (`sin` reads `c`, and `e`'s rule reads `e`): `e` is
        // saved, `c` is made again from it rather than saved beside it.
        let p = plan_of(&func, &plan, &top(&func), &reads(&[e, c]));
        assert_eq!(p.saved, vec![e]);
        assert_eq!(p.recompute, vec![Recompute::Value(c)]);
        // Reading only `c`: `c` is saved (recomputing it would mean saving `e`).
        let p = plan_of(&func, &plan, &top(&func), &reads(&[c]));
        assert_eq!(p.saved, vec![c]);
        assert!(p.recompute.is_empty());
    }

    /// The body of the first loop of `func`, as its save plan sees it.
    fn loop_body(func: &Func) -> (&[Stmt], Vec<VarId>, Option<VarId>) {
        let node = func
            .body
            .iter()
            .find_map(|s| match &s.rhs {
                Rhs::Loop(node) => Some(node),
                _ => None,
            })
            .expect("a loop");
        let index = match &node.head {
            LoopHead::For { index, .. } => Some(*index),
            LoopHead::While { .. } => None,
        };
        let entries = node.carried.iter().map(|c| c.entry).collect();
        (&node.body, entries, index)
    }

    #[test]
    fn a_loop_rereads_its_argument_and_pushes_its_state() {
        let (func, plan) = lowered(
            "fn f(x: &[f64], w: f64) -> f64 {
                let mut s = 1.0;
                for i in 0..x.len() { let xi = x[i]; s = s * xi + w; }
                s
            }",
        );
        let (stmts, entries, index) = loop_body(&func);
        let xi = var(&func, "xi");
        let block = Block {
            stmts,
            entries: &entries,
            index,
            given: &[],
        };
        // `s · xi` reads both: `xi = x[i]` is read again from the argument (which the
        // tape borrows) at the iteration's index; the carried `s` is pushed.
        let entry = entries[0];
        let p = plan_of(&func, &plan, &block, &reads(&[entry, xi]));
        assert_eq!(p.recompute, vec![Recompute::Value(xi)]);
        assert_eq!(p.saved, vec![entry]);
        assert!(p.index, "x[i] needs the index, rebuilt from the range");
        // A counter run backwards is given: not pushed.
        let block = Block {
            given: &entries,
            ..block
        };
        let p = plan_of(&func, &plan, &block, &reads(&[entry]));
        assert!(p.saved.is_empty());
        assert!(!p.index);
    }

    #[test]
    fn a_buffer_written_later_is_saved_not_reread() {
        let (func, plan) = lowered(
            "fn f(x: &[f64]) -> f64 {
                let mut h = vec![0.0; 2];
                h[0] = x[0];
                let a = h[0];
                h[0] = a * 3.0;
                a.sin() + h[0]
            }",
        );
        let a = var(&func, "a");
        // `a = h[0]` is read from a buffer the function writes again afterwards: the
        // element is saved, not read again from `h`.
        let p = plan_of(&func, &plan, &top(&func), &reads(&[a]));
        assert_eq!(p.saved, vec![a]);
        assert!(p.recompute.is_empty());
    }

    #[test]
    fn auxiliary_names_are_saved_when_read() {
        let (func, plan) = lowered("fn f(a: f64, b: f64) -> f64 { let t = a * b; t.exp() }");
        let t = var(&func, "t");
        let tape = |s: &Stmt| {
            if s.def == t {
                vec!["shape_t".to_string()]
            } else {
                Vec::new()
            }
        };
        let no_range = |_: VarId| None;
        let aux = Aux {
            of: &tape,
            range: &no_range,
        };
        let mut r = reads(&[]);
        let p = super::plan(
            &func,
            &plan.kinds,
            &plan.stable_reads,
            &top(&func),
            &r,
            &aux,
        );
        assert!(p.saved_names.is_empty());
        r.names.insert("shape_t".to_string());
        let p = super::plan(
            &func,
            &plan.kinds,
            &plan.stable_reads,
            &top(&func),
            &r,
            &aux,
        );
        assert_eq!(p.saved_names, vec!["shape_t".to_string()]);
    }
}
