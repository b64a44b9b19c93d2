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

/// Collects the names of the rule table's `constant` entries.
macro_rules! nondiff_names {
    (@acc [$($acc:tt)*]) => {
        /// The float method names the macro treats as derivative-zero: the `constant`
        /// entries of the rule table (`derive/src/rule_table.in`), which the macro reads
        /// too; `tests/rules.rs` checks each gives a zero gradient.
        pub const ZERO_DERIVATIVE_METHODS: &[&str] = &[$($acc)*];
    };
    (@acc [$($acc:tt)*] $(#[$meta:meta])* constant $op:ident ($($i:tt)*) -> $o:ident { $($b:tt)* } $($rest:tt)*) => {
        nondiff_names!(@acc [$($acc)* stringify!($op),] $($rest)*);
    };
    (@acc [$($acc:tt)*] $(#[$meta:meta])* $kind:ident $op:ident ($($i:tt)*) -> $o:ident { $($b:tt)* } $($rest:tt)*) => {
        nondiff_names!(@acc [$($acc)*] $($rest)*);
    };
    ($($table:tt)*) => {
        nondiff_names!(@acc [] $($table)*);
    };
}

backprop_derive::__rule_table!(nondiff_names);
