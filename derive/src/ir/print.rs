//! A plain-text dump of the IR, printed to stderr when `BACKPROP_DEBUG=1` is set at
//! compile time (the first thing to look at when an expansion surprises you).

use super::{Func, Operand, Rhs};
use quote::ToTokens;
use std::fmt;

impl fmt::Display for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |o: &Operand| match o {
            Operand::Var(v) => self.name(*v).to_string(),
            Operand::Const(e) => e.to_token_stream().to_string(),
        };
        for p in &self.params {
            writeln!(
                f,
                "param {} {}",
                self.name(p.var),
                if p.active { "active" } else { "const" }
            )?;
        }
        for s in &self.body {
            let args: Vec<String> = s.rhs.operands().iter().map(op).collect();
            let kind = match &s.rhs {
                Rhs::Copy(_) => "copy".to_string(),
                Rhs::Prim { prim, .. } => format!("prim {}", prim.name),
                Rhs::Call { path, .. } => format!("call {}", path.to_token_stream()),
                Rhs::ZeroDerivative { .. } => "zero-derivative".to_string(),
                Rhs::NoRule { .. } => "no-rule".to_string(),
                Rhs::Buffer { op, .. } => match op {
                    super::BufOp::Field(m) => format!("field .{}", m.to_token_stream()),
                    super::BufOp::FieldRead(m) => format!("read field .{}", m.to_token_stream()),
                    other => format!("buffer {other:?}"),
                },
                Rhs::Loop(node) => format!(
                    "loop ({} stmts, {} carried)",
                    node.body.len(),
                    node.carried.len()
                ),
                Rhs::If(node) => format!(
                    "if (then {} stmts, else {} stmts, {} outputs)",
                    node.then_body.len(),
                    node.else_body.len(),
                    node.outs.len()
                ),
            };
            writeln!(f, "let {} = {kind}({})", self.name(s.def), args.join(", "))?;
        }
        writeln!(f, "return {}", op(&self.ret))
    }
}
