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

use crate::ir::{Func, ParamKind, Rhs};

pub struct Kinds {
    /// Per statement: takes the scalar path.
    pub scalar_path: Vec<bool>,
    /// Per value: an array this function owns (the result of an operation, not an
    /// argument, a borrow or a view of one). The tensor path borrows such a value when
    /// an operator would consume it (`&t0 + b`), since the tape may still read it.
    pub owned_array: Vec<bool>,
}

impl Kinds {
    pub fn any_tensor(&self) -> bool {
        self.scalar_path.iter().any(|s| !s)
    }
}

pub fn analyse(func: &Func) -> Kinds {
    let mut scalar = vec![true; func.vars.len()];
    for p in &func.params {
        scalar[p.var.0] = p.kind != ParamKind::Tensor;
    }
    let mut owned_array = vec![false; func.vars.len()];
    let mut scalar_path = Vec::with_capacity(func.body.len());
    for s in &func.body {
        let inputs_scalar = s
            .rhs
            .operands()
            .iter()
            .filter_map(|o| o.var())
            .all(|v| scalar[v.0]);
        scalar_path.push(inputs_scalar);
        scalar[s.def.0] = match &s.rhs {
            Rhs::Prim { prim, .. } if prim.reduces => true,
            _ => inputs_scalar,
        };
        owned_array[s.def.0] = !scalar[s.def.0]
            && match &s.rhs {
                Rhs::Prim { prim, .. } => prim.name != "&",
                Rhs::Copy(o) => o.var().is_some_and(|v| owned_array[v.0]),
                _ => true,
            };
    }
    Kinds {
        scalar_path,
        owned_array,
    }
}
