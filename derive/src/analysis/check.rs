//! Whole-function checks that need activity.
//!
//! An operation with no rule is fine on constants (`n as f64`, `x.to_bits()` on data),
//! but if an active value reaches it and its result matters, the gradient would be
//! silently wrong; that is a compile error spanned on the operation, saying what is
//! supported and how to give the function a rule.

use super::activity::Activity;
use crate::diag::Ctxt;
use crate::ir::{Func, Rhs, walk};

pub fn check(cx: &Ctxt, func: &Func, activity: &Activity) {
    // One error per chain: `x.iter().skip(1).sum()` reports `.iter()`, not each link.
    let mut reported = std::collections::HashSet::new();
    walk(&func.body, &mut |s| {
        // A method without a rule on an active buffer may write it (`h.sort_by(..)`,
        // `h.rotate_left(1)`): an error even when its result is unused, never a silently
        // wrong gradient.
        let on_active_buffer = matches!(&s.rhs, Rhs::NoRule { args, .. }
            if args.first().and_then(|a| a.var()).is_some_and(|b| func.is_buffer(b) && activity.is_active(b)));
        // `h.push(x)`, `h.insert(i, x)` with a differentiated `x`: a method that changes
        // its receiver, which `#[grad]` cannot follow, even though its result is unused.
        let mutates_with_varied = matches!(&s.rhs, Rhs::NoRule { spelling: crate::ir::Spelling::Method(m), args, .. }
            if MUTATING.contains(&m.to_string().as_str())
                && args.iter().any(|a| a.var().is_some_and(|v| activity.is_varied(v))));
        if let Rhs::NoRule {
            spelling: crate::ir::Spelling::Method(m),
            at,
            ..
        } = &s.rhs
            && mutates_with_varied
        {
            cx.error_spanned_by(
                at,
                if m == "push" {
                    "`#[grad]` follows `.push()` onto a `Vec` it starts empty (`let mut h = Vec::new();` or `Vec::with_capacity(n)`), not onto one made another way (`x.to_vec()`, `vec![..]`): start one empty and push every element (`for v in x { h.push(*v); }`), or make it the final length (`vec![0.0; n]`) and write its elements (`h[i] = ...`)".to_string()
                } else {
                    format!("`.{m}()` changes the collection it is called on, which `#[grad]` cannot follow: make a buffer of the final length (`vec![0.0; n]`, `x.to_vec()`) and write its elements (`h[i] = ...`)")
                },
            );
            reported.insert(s.def);
            return;
        }
        if let Rhs::NoRule { args, why, at, .. } = &s.rhs
            && (on_active_buffer
                || activity.is_active(s.def) && args.iter().any(|a| activity.operand_active(a)))
        {
            if !args
                .iter()
                .any(|a| a.var().is_some_and(|v| reported.contains(&v)))
            {
                cx.error_spanned_by(at, why);
            }
            reported.insert(s.def);
        }
    });
}

/// Methods that change their receiver (`Vec`, `VecDeque`, slices).
const MUTATING: &[&str] = &[
    "push",
    "push_back",
    "push_front",
    "insert",
    "extend",
    "extend_from_slice",
    "append",
    "resize",
    "truncate",
    "clear",
    "retain",
    "pop",
    "remove",
    "swap_remove",
    "drain",
    "sort",
    "sort_by",
    "sort_unstable",
    "sort_unstable_by",
    "sort_by_key",
    "dedup",
    "rotate_left",
    "rotate_right",
    "split_off",
];

/// Float methods with several float inputs: fine on floats (`x.sum().max(y)`) and, for
/// [`ELEMENTWISE_WITH_FLOATS`](crate::ir::op::ELEMENTWISE_WITH_FLOATS), on an array
/// receiver with float arguments; otherwise a clear error instead of a type error
/// inside the expansion.
pub fn check_scalar_only_methods(
    cx: &Ctxt,
    func: &Func,
    activity: &Activity,
    kinds: &super::kind::Kinds,
) {
    const SCALAR_ONLY: &[&str] = &[
        "powf", "clamp", "max", "min", "hypot", "atan2", "log", "mul_add",
    ];
    walk(&func.body, &mut |s| {
        let Rhs::Prim { prim, args, .. } = &s.rhs else {
            return;
        };
        if !SCALAR_ONLY.contains(&prim.name) {
            return;
        }
        if !args
            .iter()
            .any(|a| a.var().is_some_and(|v| !kinds.scalar[v.0]))
        {
            return;
        }
        // With an array operand these are the elementwise form (forward and rules in the
        // runtime's `rules::elementwise`), differentiated or not.
        if crate::ir::op::ELEMENTWISE_WITH_FLOATS.contains(&prim.name) {
            return;
        }
        if activity.is_active(s.def) {
            cx.error_at(
                s.span,
                format!(
                    "`.{}()` on ndarray arrays has no rule in `#[grad]` yet (it has one on floats); on arrays use the elementwise methods with rules (exp, ln, sqrt, powi, powf, clamp, max/min inside mapv, tanh, ...) or `backprop::ops` functions",
                    prim.name
                ),
            );
        }
    });
}

/// A local buffer of arrays (`outs.push(h.clone())`, `vec![a, b]` or a write `hs[i] = h`
/// of arrays) whose elements carry a derivative: buffers are of floats, so this is
/// refused, with what to write instead. A list of data arrays is left as written.
pub fn check_lists_of_arrays(
    cx: &Ctxt,
    func: &Func,
    activity: &Activity,
    kinds: &super::kind::Kinds,
) {
    walk(&func.body, &mut |s| {
        let Rhs::Buffer { op, args } = &s.rhs else {
            return;
        };
        let (buffer, value) = match op {
            crate::ir::BufOp::Push => (args[0].var(), &args[1]),
            crate::ir::BufOp::Write => (args[0].var(), &args[2]),
            crate::ir::BufOp::Fill | crate::ir::BufOp::FillArray => (Some(s.def), &args[0]),
            _ => return,
        };
        let array = value.var().is_some_and(|v| !kinds.scalar[v.0]);
        let active = buffer.is_some_and(|b| activity.is_active(func.buffer_root(b).0))
            && activity.operand_active(value);
        if array && active {
            cx.error_at(s.span, LIST_OF_ARRAYS);
        }
    });
}

/// The refusal of a local list of arrays (`outs.push(h.clone())`, `vec![a, b]` of arrays).
const LIST_OF_ARRAYS: &str = "`#[grad]` differentiates local buffers of floats, not a local `Vec` of arrays: to keep one array per step, grow one array (`all = concatenate![Axis(0), all, h.view().insert_axis(Axis(0))]`) or write each step's elements into an array made with `Array3::zeros(..)`; arrays that are parameters go in a struct field (`ws: Vec<Array2<f64>>`), which a loop may walk";
