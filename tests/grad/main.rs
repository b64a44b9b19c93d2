//! What `#[grad]` does to the functions it differentiates, one module per feature, all
//! in one test binary (one link instead of one per file). Each test compares `f_grad`
//! with `f` (the value) and with hand-derived values or central differences (the
//! gradient); a test kept from a bug hunt says what it pins. Run one feature with
//! `cargo test --test grad loops::`.
//!
//! Kept apart, as their own binaries: the compile-fail tests (`tests/ui.rs`), the
//! generated ones (`tests/cases.rs`, `tests/random_programs.rs`,
//! `tests/buffer_programs.rs`) and the rule table's (`tests/rules.rs`).

#[macro_use]
mod support;
#[path = "../support/rng.rs"]
mod rng;

mod adbench;
mod array_loops;
mod array_methods;
mod block_helpers;
mod branches;
mod buffer_writes;
mod calls;
mod cfg;
mod closures;
mod custom_rules;
mod element_writes;
mod forward_mode;
mod forward_mode_arrays;
mod generic_floats;
mod in_place;
mod jumps;
mod layers;
mod loops;
mod matching;
mod methods;
mod model_programs;
mod names;
mod nested;
mod params_structs;
mod plain_first;
mod plain_products;
mod scalar;
mod scoping;
mod second_order;
mod second_order_arrays;
mod slices;
mod structs;
mod supported_forms;
mod tensor;
mod user_programs;
