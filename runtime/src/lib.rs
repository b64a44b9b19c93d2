//! Reverse-mode automatic differentiation of plain Rust functions at compile time.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod kernels;
pub mod ops;
