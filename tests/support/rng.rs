//! xorshift64*: deterministic, no dependency. Uniform in [−1, 1). The random inputs of
//! the test binaries that draw arrays (`#[path]`-included by `tests/grad/main.rs` and
//! `tests/runtime/main.rs`).
#![allow(dead_code)]

use ndarray::{Array, Dimension, ShapeBuilder};

pub struct Rng(pub u64);

impl Rng {
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 52) as f64 * 2.0 - 1.0
    }

    pub fn array<Sh: ShapeBuilder<Dim = D>, D: Dimension>(&mut self, shape: Sh) -> Array<f64, D> {
        Array::from_shape_simple_fn(shape, || self.unit())
    }

    /// `f` of each draw.
    pub fn array_map<Sh: ShapeBuilder<Dim = D>, D: Dimension>(
        &mut self,
        shape: Sh,
        f: impl Fn(f64) -> f64,
    ) -> Array<f64, D> {
        Array::from_shape_simple_fn(shape, || f(self.unit()))
    }
}
