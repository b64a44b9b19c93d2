//! The runtime library (`backprop`'s modules) from the user's side, one module per
//! part, all in one test binary: the ops and fused transformer ops, optimizers and their
//! saved state, schedules, clipping, initialisers, the parameter walk, memory
//! accounting, training diagnostics and `gradcheck!` itself. Run one part with
//! `cargo test --test runtime optim::`.
//!
//! Kept apart, as their own binaries: the kernels (`tests/kernels.rs`, which re-runs
//! itself on the scalar path), the data readers (`tests/data.rs`, with an ignored test
//! CI runs) and the MPI-free parts of `backprop::dist` (`tests/dist.rs`).

#[path = "../support/rng.rs"]
mod rng;

mod checkpoint;
mod clip;
mod diagnostics;
mod gradcheck;
mod init;
mod memory;
mod ops;
mod optim;
mod params;
mod schedule;
mod second_order;
mod transformer_ops;
