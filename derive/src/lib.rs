//! Procedural macros of the `backprop` crate. Depend on `backprop`, not on this
//! crate: it re-exports the macros together with the rules the expansions call.
//!
//! The pipeline (one module per stage; see `expand.rs`):
//! `attr` (which arguments are active) → `ir::lower` (syn → a small SSA-form IR with
//! spans) → `analysis` (activity, what the reverse pass reads, whole-function checks)
//! → `emit` (the forward pass, the tape, the reverse pass) — or, on any error,
//! `fallback` (the original function, stub companions and the errors, no cascade).

extern crate proc_macro;

mod analysis;
mod attr;
mod cfg;
mod context;
mod custom;
mod diag;
mod differentiable;
mod emit;
mod entry;
mod expand;
mod fallback;
mod ir;
mod methods;
mod names;
mod plain;
#[cfg(test)]
mod snapshots;
#[cfg(test)]
mod tests;

/// Differentiates a function of floats at compile time (reverse mode).
///
/// See the `backprop` crate's documentation for the generated API
/// (`f_grad`, `f_forward`, `f_backward`, the `FGrad` struct) and what is supported.
///
/// On an `impl` block, differentiates the methods (`&self`) and associated functions
/// marked `#[grad]` inside it: `#[grad] impl Model { #[grad] fn loss(&self, ..) .. }`
/// adds `loss_grad` (or `loss_vjp`), `loss_forward` and `loss_backward` to the impl.
#[proc_macro_attribute]
pub fn grad(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    entry::grad(attr.into(), item.into()).into()
}

/// Declares a function's pullback by hand: `#[custom_vjp(my_vjp)]` on `fn f(a, b) -> y`,
/// where `fn my_vjp(a, b, y, d) -> (d_a, d_b)` returns one cotangent per argument.
/// `#[grad]` functions then differentiate calls of `f` through `my_vjp`.
#[proc_macro_attribute]
pub fn custom_vjp(
    attr: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    custom::custom_vjp(attr.into(), item.into()).into()
}

/// Makes a struct of parameters one differentiable value: `#[grad]` differentiates an
/// argument of this type as a whole (its gradient is a value of the same type), and the
/// training toolbox steps it (`backprop::params::Params`). Fields are floats, `Vec`s or
/// arrays of floats, ndarray arrays, or other `Differentiable` structs.
#[proc_macro_derive(Differentiable)]
pub fn derive_differentiable(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    differentiable::derive(input.into()).into()
}

/// `__rule_table!(callback)` expands to `callback! { <derive/src/rule_table.in> }`: the
/// runtime generates its scalar and elementwise rules from the same table the macro
/// reads. Not part of the public API.
#[doc(hidden)]
#[proc_macro]
pub fn __rule_table(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    ir::rule_table::expand(input.into()).into()
}
