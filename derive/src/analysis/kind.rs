//! Scalar or tensor: which rule path each operation takes.
//!
//! The macro never knows types, but argument types tell it which values are certainly
//! floats: `f32`/`f64`/`T` arguments, literals, and what scalar operations make of
//! them. Operations whose every input is such a scalar take the *scalar path*: rules
//! called with values by copy (`mul_vjp_lhs(b, d)`), no shapes, exactly what a
//! hand-written scalar gradient would do. Anything that may be an array (an ndarray
//! argument and what is computed from it) takes the *tensor path*: rules called by
//! reference, with the shape of each broadcast operand saved so its cotangent can be
//! summed back to it. Full reductions (`sum`, `mean`) bring a value back to scalars.
//! The tensor path is also correct for scalars (its rules are implemented for them),
//! so a value this analysis cannot prove scalar is never mis-handled, only handled
//! more generally.

use crate::ir::{Func, Operand, ParamKind, Rhs, Stmt, VarId};
use std::collections::HashMap;

pub struct Kinds {
    /// Per value: certainly a scalar.
    pub scalar: Vec<bool>,
    /// Per statement (keyed by what it defines): takes the scalar path.
    scalar_path: HashMap<VarId, bool>,
    /// Per value: an array this function owns (the result of an operation, not an
    /// argument, a borrow or a view of one). The tensor path borrows such a value when
    /// an operator would consume it (`&t0 + b`), since the tape may still read it.
    pub owned_array: Vec<bool>,
    /// Values read by a primitive (not by a call or a buffer operation).
    operand_of_arithmetic: std::collections::HashSet<VarId>,
    /// Fields read from another function's gradient (`g.x` of `h_grad(..)`) in code over
    /// arrays: an ndarray argument's gradient is an array.
    gradient_fields: std::collections::HashSet<VarId>,
}

impl Kinds {
    pub fn any_tensor(&self) -> bool {
        self.scalar_path.values().any(|s| !s)
    }

    /// Whether the statement defining `def` takes the scalar path.
    pub fn scalar_path(&self, def: VarId) -> bool {
        self.scalar_path.get(&def).copied().unwrap_or(true)
    }
}

fn walk(stmts: &[Stmt], k: &mut Kinds) {
    for s in stmts {
        let scalar = |o: &Operand, k: &Kinds| o.var().is_none_or(|v| k.scalar[v.0]);
        let inputs_scalar = s.rhs.operands().iter().all(|o| scalar(o, k));
        let out_scalar = match &s.rhs {
            Rhs::If(node) => {
                walk(&node.then_body, k);
                walk(&node.else_body, k);
                let mut all = true;
                for out in &node.outs {
                    let sc = scalar(&out.then_val, k) && scalar(&out.else_val, k);
                    k.scalar[out.def.0] = sc;
                    let owned = |o: &Operand| o.var().is_some_and(|v| k.owned_array[v.0]);
                    k.owned_array[out.def.0] =
                        !sc && (owned(&out.then_val) || owned(&out.else_val));
                    all &= sc;
                }
                all
            }
            Rhs::Loop(node) => {
                for c in &node.carried {
                    k.scalar[c.entry.0] = scalar(&c.init, k);
                }
                walk(&node.body, k);
                // A carried value that starts a float and leaves an iteration an array
                // (`acc = acc + x` with `x` an array) is an array from the top: walk again.
                let mut again = false;
                for c in &node.carried {
                    if k.scalar[c.entry.0] && !scalar(&c.exit, k) {
                        k.scalar[c.entry.0] = false;
                        again = true;
                    }
                }
                if again {
                    walk(&node.body, k);
                }
                let mut all = true;
                for c in &node.carried {
                    let sc = scalar(&c.init, k) && scalar(&c.exit, k);
                    k.scalar[c.out.0] = sc;
                    // Array state a loop carries is the function's own (an iteration's
                    // result), whatever started it.
                    let owned = |o: &Operand| o.var().is_some_and(|v| k.owned_array[v.0]);
                    let own = !sc && (owned(&c.init) || owned(&c.exit));
                    k.owned_array[c.out.0] = own;
                    k.owned_array[c.entry.0] = own;
                    all &= sc;
                }
                all
            }
            Rhs::Prim { prim, .. } if prim.reduces => true,
            // `Array2::zeros((n, m))` called as a function, or kept as a constant: an array.
            Rhs::Call { path, .. } if crate::ir::op::is_array_constructor(&path.path) => false,
            Rhs::Copy(Operand::Const(e)) if constructs_array(e) => false,
            // The runtime's ops: the losses and full reductions return a float; the
            // activations, also functions of a float, follow their input; every other op
            // returns an array (`embedding(&p.wte, ids)`, whose field the analysis would
            // otherwise take for a float).
            Rhs::Call { path, .. } if crate::ir::op::is_runtime_array_op(&path.path) => {
                match crate::ir::op::runtime_op_result(&path.path) {
                    crate::ir::op::OpResult::Float => true,
                    crate::ir::op::OpResult::Array => false,
                    crate::ir::op::OpResult::LikeInput => inputs_scalar,
                }
            }
            // `a[[i, j]] = v`: a new version of an array, whatever `a` was made by.
            Rhs::Prim { prim, .. } if crate::ir::op::is_element_write(prim) => false,
            // `Array2::zeros((n, m))`, `Array::from_elem(..)`: an array made from data.
            Rhs::NoRule {
                spelling: crate::ir::Spelling::Path(p),
                ..
            }
            | Rhs::ZeroDerivative {
                spelling: crate::ir::Spelling::Path(p),
                ..
            } if crate::ir::op::is_array_constructor(&p.path) => false,
            // `n as f64`: `as` makes a number, never an array (`q.ncols() as f64` reads
            // an array but is a scalar).
            Rhs::ZeroDerivative {
                spelling: crate::ir::Spelling::Cast(_),
                ..
            }
            | Rhs::NoRule {
                spelling: crate::ir::Spelling::Cast(_) | crate::ir::Spelling::TupleField(_),
                ..
            } => true,
            // `x.len()`, `x.dim()`: lengths and shapes of arrays are data, not arrays.
            Rhs::ZeroDerivative {
                spelling: crate::ir::Spelling::Method(m),
                ..
            } if crate::ir::op::returns_data(&m.to_string()) => true,
            // A field view used in arithmetic or a call may be an array (`&p.w`): the
            // tensor path, which is right for scalars too. Buffers of floats hold
            // scalars; their other operations are scalar code.
            Rhs::Buffer {
                op: crate::ir::BufOp::Field(_) | crate::ir::BufOp::Elem,
                ..
            } => !k.operand_of_arithmetic.contains(&s.def),
            Rhs::Buffer { .. } if k.gradient_fields.contains(&s.def) => false,
            Rhs::Buffer { .. } => true,
            _ => inputs_scalar,
        };
        k.scalar_path.insert(s.def, inputs_scalar && out_scalar);
        k.scalar[s.def.0] = out_scalar;
        k.owned_array[s.def.0] = !out_scalar
            && match &s.rhs {
                Rhs::Prim { prim, .. } => prim.name != "&",
                // Views and borrows (`&p.w`) own nothing.
                Rhs::Buffer { .. } => false,
                Rhs::Copy(Operand::Const(e)) => constructs_array(e),
                Rhs::Copy(o) => o.var().is_some_and(|v| k.owned_array[v.0]),
                _ => true,
            };
    }
}

/// `Array2::zeros((3, 3))`, `Array1::<f64>::ones(n)` as an expression.
pub fn constructs_array(e: &syn::Expr) -> bool {
    match e {
        syn::Expr::Call(c) => {
            matches!(&*c.func, syn::Expr::Path(p) if crate::ir::op::is_array_constructor(&p.path))
        }
        syn::Expr::Paren(p) => constructs_array(&p.expr),
        syn::Expr::Group(g) => constructs_array(&g.expr),
        _ => false,
    }
}

pub fn analyse(func: &Func) -> Kinds {
    let mut k = Kinds {
        scalar: vec![true; func.vars.len()],
        scalar_path: HashMap::new(),
        owned_array: vec![false; func.vars.len()],
        operand_of_arithmetic: Default::default(),
        gradient_fields: Default::default(),
    };
    if func.params.iter().any(|p| p.kind == ParamKind::Tensor) && !func.grad_calls.is_empty() {
        crate::ir::walk(&func.body, &mut |s| {
            if let Rhs::Buffer {
                op: crate::ir::BufOp::FieldRead(_),
                args,
            } = &s.rhs
                && args[0]
                    .var()
                    .is_some_and(|g| func.grad_call_root(g).is_some())
            {
                k.gradient_fields.insert(s.def);
            }
        });
    }
    crate::ir::walk(&func.body, &mut |s| {
        // (A runtime op's array arguments are read as arrays too: `relu(&p.w)`.)
        let runtime_op = matches!(&s.rhs, Rhs::Call { path, .. } if crate::ir::op::is_runtime_array_op(&path.path));
        if matches!(s.rhs, Rhs::Prim { .. }) || runtime_op {
            k.operand_of_arithmetic
                .extend(s.rhs.operands().iter().filter_map(Operand::var));
        }
    });
    for p in &func.params {
        k.scalar[p.var.0] = p.kind != ParamKind::Tensor;
        // `x: Array1<f64>` taken by value is this function's to consume, like a result.
        k.owned_array[p.var.0] =
            p.kind == ParamKind::Tensor && crate::ir::is_owned_array_type(&p.ty);
    }
    walk(&func.body, &mut k);
    k
}
