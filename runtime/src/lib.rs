//! Reverse-mode automatic differentiation of plain Rust functions at compile time.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod clip;
pub mod init;
pub mod kernels;
pub mod memory;
pub mod optim;
pub mod params;
pub mod schedule;
