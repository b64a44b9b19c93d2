//! Buffer analyses: reads of buffers no later write changes (the reverse reads them
//! again instead of saving them), and in-place element updates (whose adjoint is
//! handed on in place).

use crate::ir::{BufOp, Func, Operand, Rhs, Spelling, Stmt, VarId};
use quote::quote;
use std::collections::HashSet;

/// Reads `t = h[i]` of a buffer `h` the function creates, after which no write to `h`
/// can happen: every write comes earlier in the program and shares no loop with the
/// read (other than loops that also create `h` afresh each iteration). The reverse
/// pass can read such an element from `h` itself.
pub(super) fn stable_reads(func: &Func) -> std::collections::HashSet<VarId> {
    use crate::ir::BufOp;
    struct Event {
        pos: usize,
        loops: Vec<VarId>,
        root: VarId,
        read: Option<VarId>,
        write: bool,
        create: bool,
        alias: bool,
    }
    fn scan(
        func: &Func,
        stmts: &[Stmt],
        loops: &mut Vec<VarId>,
        pos: &mut usize,
        out: &mut Vec<Event>,
    ) {
        for s in stmts {
            *pos += 1;
            match &s.rhs {
                Rhs::If(node) => {
                    scan(func, &node.then_body, loops, pos, out);
                    scan(func, &node.else_body, loops, pos, out);
                }
                Rhs::Loop(node) => {
                    loops.push(s.def);
                    scan(func, &node.body, loops, pos, out);
                    loops.pop();
                }
                Rhs::Buffer { op, args } => {
                    let base = args.first().and_then(Operand::var);
                    let event = |root: VarId| Event {
                        pos: *pos,
                        loops: loops.clone(),
                        root,
                        read: None,
                        write: false,
                        create: false,
                        alias: false,
                    };
                    match op {
                        BufOp::Fill | BufOp::FillArray | BufOp::ToVec | BufOp::NewVec => {
                            out.push(Event {
                                create: true,
                                ..event(s.def)
                            })
                        }
                        BufOp::Write | BufOp::Push | BufOp::Read | BufOp::Alias => {
                            let Some(b) = base else { continue };
                            let root = func.buffer_root(b).0;
                            out.push(Event {
                                read: (*op == BufOp::Read).then_some(s.def),
                                write: matches!(op, BufOp::Write | BufOp::Push),
                                alias: *op == BufOp::Alias,
                                ..event(root)
                            });
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
    let mut events = Vec::new();
    scan(func, &func.body, &mut Vec::new(), &mut 0, &mut events);
    let mut stable = std::collections::HashSet::new();
    for r in events.iter().filter(|e| e.read.is_some()) {
        let Some(create) = events.iter().find(|e| e.create && e.root == r.root) else {
            continue;
        };
        let ok = events.iter().filter(|e| e.root == r.root).all(|e| {
            if e.alias {
                return false;
            }
            if !e.write {
                return true;
            }
            e.pos < r.pos
                && e.loops
                    .iter()
                    .all(|l| !r.loops.contains(l) || create.loops.contains(l))
        });
        if ok {
            stable.insert(r.read.expect("a read"));
        }
    }
    stable
}

/// The in-place element updates of a function, as (writes, reads): in each block,
/// `r = x[i]; s = r ± e; x[i] = s` (what `x[i] += e` and `x[i] -= e` lower to) where `r`
/// and `s` have no other use, the buffer and index operands are the same, and only
/// arithmetic and reads happen in between. Their reverse is `d_s = d_x[i]; d_e = ±d_s`
/// with `d_x[i]` left as it is: the plain rules would read `d_x[i]`, zero it, and add the
/// same value back through the read (a load, two stores and an add per update, in a
/// chain through memory).
pub fn in_place_updates(
    func: &crate::ir::Func,
    activity: &crate::analysis::activity::Activity,
) -> (HashSet<VarId>, HashSet<VarId>) {
    let uses = crate::ir::use_counts(func);
    let single = |v: VarId| uses.get(&v).copied() == Some(1);
    let (mut writes, mut reads) = (HashSet::new(), HashSet::new());
    let mut block = |stmts: &[Stmt]| {
        for (c, w) in stmts.iter().enumerate() {
            let Rhs::Buffer {
                op: BufOp::Write,
                args: wargs,
            } = &w.rhs
            else {
                continue;
            };
            let Some(sv) = wargs[2]
                .var()
                .filter(|v| single(*v) && activity.is_active(*v))
            else {
                continue;
            };
            let Some(b) = stmts[..c].iter().rposition(|st| st.def == sv) else {
                continue;
            };
            let Rhs::Prim {
                prim,
                spelling: Spelling::Operator(_),
                args: pargs,
            } = &stmts[b].rhs
            else {
                continue;
            };
            let read_of = |o: &Operand| -> Option<usize> {
                let r = o.var().filter(|v| single(*v))?;
                let a = stmts[..b].iter().rposition(|st| st.def == r)?;
                match &stmts[a].rhs {
                    Rhs::Buffer {
                        op: BufOp::Read,
                        args: rargs,
                    } if operand_eq(&rargs[0], &wargs[0]) && operand_eq(&rargs[1], &wargs[1]) => {
                        Some(a)
                    }
                    _ => None,
                }
            };
            let a = match (prim.name, &pargs[..]) {
                ("+", [l, r]) => read_of(l).or_else(|| read_of(r)),
                ("-", [l, _]) => read_of(l),
                _ => None,
            };
            let Some(a) = a else { continue };
            let quiet = stmts[a + 1..c].iter().all(|st| {
                matches!(
                    st.rhs,
                    Rhs::Prim { .. }
                        | Rhs::Copy(_)
                        | Rhs::ZeroDerivative { .. }
                        | Rhs::Buffer {
                            op: BufOp::Read,
                            ..
                        }
                )
            });
            if quiet {
                writes.insert(w.def);
                reads.insert(stmts[a].def);
            }
        }
    };
    block(&func.body);
    crate::ir::walk(&func.body, &mut |st| match &st.rhs {
        Rhs::If(node) => {
            block(&node.then_body);
            block(&node.else_body);
        }
        Rhs::Loop(node) => block(&node.body),
        _ => {}
    });
    (writes, reads)
}

/// The same operand: the same value, or the same constant tokens.
fn operand_eq(a: &Operand, b: &Operand) -> bool {
    match (a, b) {
        (Operand::Var(x), Operand::Var(y)) => x == y,
        (Operand::Const(x), Operand::Const(y)) => quote!(#x).to_string() == quote!(#y).to_string(),
        _ => false,
    }
}
