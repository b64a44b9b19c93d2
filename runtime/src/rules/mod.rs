//! Pullbacks of every primitive, found by type.
//!
//! The `#[grad]` macro is syntactic: it sees `a * b` or `x.exp()` but not their types.
//! It emits a call to one of the rule functions here, and rustc picks the
//! implementation by type. Each rule is one small function that takes the values it
//! saved in the forward pass (by the naming convention `x` = input, `y` = output) and
//! the output cotangent `d`, and returns the input cotangent.
//!
//! Conventions shared by all rules (see `docs/RULES.md` for the table):
//! - **Kinks** get the minimum-norm element of the subgradient: 0 for `abs`, `relu`
//!   and `clamp` at a bound, an even split between tied arguments of `max`/`min`,
//!   0 for `atan2`/`hypot` at the origin and for both partials of `powf` at `0^0`.
//! - **Piecewise-constant** functions (`floor`, `ceil`, `round`, `trunc`, `signum`)
//!   have derivative 0 and are listed in [`nondiff`]; the macro does not
//!   differentiate through them at all.
//! - **Strong zeros**: a rule whose local derivative can be infinite (`sqrt` at 0,
//!   `ln` at 0, division by 0, ...) returns exactly 0 when the cotangent is 0, so an
//!   unused or zero-weighted branch never turns into `0 · ∞ = NaN`. A non-zero
//!   cotangent times an infinite derivative stays infinite: that is the true answer.
//!   Symmetrically, an infinite cotangent times a local derivative that is exactly 0
//!   gives 0 (`√(z²)` at `z = 0`, `√(w·x)` at `w = 0`); a NaN cotangent stays NaN.
//!   `docs/RULES.md` ("Strong zeros") has the reasoning and where it is not the true
//!   derivative.

/// Walks the rule table (`derive/src/rule_table.in`, handed over by
/// `backprop_derive::__rule_table!(rule_lines, callback)`) and calls
/// `callback!(@line KIND <line>;)` for each input's line, `KIND` being the entry's
/// `method`, `operator` or `constant`: the table's grammar is matched here once, and each
/// generator (`scalar_rules!`, `tensor_rules!`) says only what a line becomes.
macro_rules! rule_lines {
    ($cb:ident; $(
        $(#[$meta:meta])*
        $kind:ident $op:ident ( $($inp:ident $(: $ity:ty)?),* ) -> $out:ident {
            $(
                $(#[doc = $doc:literal])*
                $d:ident = $rule:ident $( ( $($read:ident $(: $rty:ty)?),* ) $(=> $body:expr)? )? ;
            )*
        }
    )*) => {
        $($(
            $cb!(@line $kind $(#[doc = $doc])* $d = $rule
                $( ( $($read $(: $rty)?),* ) $(=> $body)? )? ;);
        )*)*
    };
}

pub mod array_methods;
pub mod element_writes;
pub mod elementwise;
pub mod nondiff;
pub mod scalar;
pub mod second;
pub mod second_attention;
pub mod second_norm;
pub mod second_tensor;
pub mod tangent;
pub mod tensor;
