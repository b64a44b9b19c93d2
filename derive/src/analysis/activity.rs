//! Activity: a value is *active* when it is varied (depends on an active argument) and
//! useful (the result depends on it). Only active values get an adjoint; everything
//! else is copied into the forward pass as it is and costs nothing in reverse
//! (Hascoët & Pascual 2013, "The Tapenade AD tool", §3.1; JAX's symbolic zeros).
//!
//! Branches: an `if`'s outputs are varied when either branch's value is, and a useful
//! output makes both branches' values useful (whichever branch runs, its value
//! matters). The condition is a bool and never active. Loops iterate their body to a
//! fixed point; buffers (written in place, so not SSA) make the whole function iterate.

use crate::ir::{BufOp, Func, Operand, Rhs, Stmt, VarId};

pub struct Activity {
    varied: Vec<bool>,
    useful: Vec<bool>,
    /// `if`s and loops whose bodies read or write active buffers: they have a reverse
    /// pass even when no scalar they produce has an adjoint.
    touches: std::collections::HashSet<VarId>,
}

impl Activity {
    /// Whether the `if` or loop defining `v` updates adjoint buffers in reverse.
    pub fn touches_buffers(&self, v: VarId) -> bool {
        self.touches.contains(&v)
    }

    /// Depends on an active argument (whether or not the result uses it).
    pub fn is_varied(&self, v: VarId) -> bool {
        self.varied[v.0]
    }

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
            // Buffers are written in place: a write of a varied value makes the whole
            // buffer varied, also for reads earlier in the program (the caller iterates
            // to a fixed point).
            Rhs::Buffer { op, args } => match op {
                BufOp::Write | BufOp::Push => {
                    if is(args.last().expect("a value"), varied)
                        && let Some(b) = args[0].var()
                    {
                        varied[b.0] = true;
                    }
                }
                BufOp::NewVec => {}
                BufOp::Fill | BufOp::FillArray | BufOp::ToVec => {
                    varied[s.def.0] |= is(&args[0], varied)
                }
                BufOp::Read
                | BufOp::View
                | BufOp::Alias
                | BufOp::Borrow
                | BufOp::Field(_)
                | BufOp::Elem
                | BufOp::FieldRead(_) => varied[s.def.0] = is(&args[0], varied),
            },
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
                        // (A constant exit has nothing to mark: no change.)
                        let exit_unmarked = c.exit.var().is_some_and(|v| !useful[v.0]);
                        if useful[c.entry.0] && exit_unmarked {
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
            Rhs::Buffer { op, args } => match op {
                BufOp::Write | BufOp::Push if args[0].var().is_some_and(|b| useful[b.0]) => {
                    mark(args.last().expect("a value"), useful);
                }
                BufOp::Write | BufOp::Push | BufOp::NewVec => {}
                _ if useful[s.def.0] => mark(&args[0], useful),
                _ => {}
            },
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
    // Buffer writes reach back to values defined earlier: iterate to a fixed point
    // (each pass only adds; a pass per buffer at most).
    loop {
        let before = varied.clone();
        forward(&func.body, &mut varied);
        if before == varied {
            break;
        }
    }
    let mut useful = vec![false; n];
    if let Some(v) = func.ret.var() {
        useful[v.0] = true;
    }
    loop {
        let before = useful.clone();
        backward(&func.body, &mut useful);
        if before == useful {
            break;
        }
    }
    let mut touches = std::collections::HashSet::new();
    mark_touches(&func.body, &varied, &useful, &mut touches);
    for v in &touches {
        varied[v.0] = true;
        useful[v.0] = true;
    }
    Activity {
        varied,
        useful,
        touches,
    }
}

/// Whether `stmts` (at any depth) hold an active buffer operation; records each `if`
/// and loop that does.
fn mark_touches(
    stmts: &[Stmt],
    varied: &[bool],
    useful: &[bool],
    touches: &mut std::collections::HashSet<VarId>,
) -> bool {
    let active = |v: VarId| varied[v.0] && useful[v.0];
    let mut any = false;
    for s in stmts {
        let inner = match &s.rhs {
            Rhs::If(node) => {
                let a = mark_touches(&node.then_body, varied, useful, touches);
                let b = mark_touches(&node.else_body, varied, useful, touches);
                a || b
            }
            Rhs::Loop(node) => mark_touches(&node.body, varied, useful, touches),
            Rhs::Buffer {
                op: BufOp::Write | BufOp::Push,
                args,
            } => {
                any |= args[0].var().is_some_and(active);
                false
            }
            Rhs::Buffer { .. } => {
                any |= active(s.def);
                false
            }
            _ => false,
        };
        if inner {
            touches.insert(s.def);
            any = true;
        }
    }
    any
}
