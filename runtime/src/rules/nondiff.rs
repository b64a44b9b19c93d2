//! The explicit list of operations whose derivative is zero wherever it exists.
//!
//! The `#[grad]` macro treats a call to one of these as producing an inactive
//! (constant) value, so nothing flows back through it. They are listed here, never
//! implied, so that "why is my gradient zero?" has one place to look.
//!
//! | operation | why its derivative is 0 |
//! |---|---|
//! | `floor`, `ceil`, `round`, `round_ties_even`, `trunc` | piecewise constant; the jumps are measure-zero and get 0 |
//! | `signum` | piecewise constant (−1, +1); 0 at the jump |
//! | comparisons `< <= > >= == !=`, `is_nan`, `is_finite`, ... | boolean results |
//! | `as` casts to integers | integer results |
//! | [`crate::stop_gradient`] | cuts the path on purpose |

/// The float method names the macro treats as derivative-zero (the same list as
/// `ZERO_DERIVATIVE_METHODS` in `derive/src/ir/op.rs`; `tests/rules.rs` checks each
/// gives a zero gradient).
pub const ZERO_DERIVATIVE_METHODS: &[&str] = &[
    "floor",
    "ceil",
    "round",
    "round_ties_even",
    "trunc",
    "signum",
];
