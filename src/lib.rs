//! The project's applications: the main training job (`examples/train.rs`), the
//! lesson's exercises and two ADBench objectives (`benches/adbench.rs`), as a library so
//! the test suite runs the same code on a small budget. Not published; users depend on
//! `backprop` alone.

pub mod adbench;
pub mod exercises;
pub mod gpt;
pub mod influence;
pub mod mlp;
pub mod plot;
pub mod second_order;

/// README.md's Rust examples, compiled and run as doc tests (`cargo test --doc`), so
/// that every block a newcomer copies compiles and asserts what the text says.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
