//! The hot loops: one place that detects the CPU once and dispatches.
//!
//! Every kernel has a scalar reference implementation that is both the fallback on
//! machines without the SIMD path and the oracle its tests compare against. The SIMD
//! path is chosen once per process from the CPU's features; `BACKPROP_FORCE_ARCH=scalar`
//! forces the reference path (CI runs the kernel tests both ways).

use std::sync::OnceLock;

/// The instruction set a kernel runs with, detected once per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Portable Rust, no explicit SIMD: the reference path.
    Scalar,
    /// x86-64 with AVX2 and FMA (Haswell and later, Zen and later).
    Avx2Fma,
}

impl Arch {
    /// The best instruction set this CPU supports, unless `BACKPROP_FORCE_ARCH=scalar`
    /// asks for the reference path. Detected on first call, then cached.
    pub fn get() -> Arch {
        static ARCH: OnceLock<Arch> = OnceLock::new();
        *ARCH.get_or_init(Arch::detect)
    }

    fn detect() -> Arch {
        if std::env::var("BACKPROP_FORCE_ARCH").as_deref() == Ok("scalar") {
            return Arch::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Arch::Avx2Fma;
            }
        }
        Arch::Scalar
    }
}

/// True when `BACKPROP_FORCE_ARCH=scalar` asked for the reference path (cached with
/// [`Arch::get`]). Kernels that wrap a crate with its own dispatch (matmul) check this
/// rather than `Arch::get() == Scalar`, so non-x86 machines still get the crate's SIMD.
pub fn forced_scalar() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("BACKPROP_FORCE_ARCH").as_deref() == Ok("scalar"))
}

pub mod activation;
pub mod adamw;
pub mod erf;
pub mod masked_softmax;
pub mod matmul;
mod real;
pub mod scalar;
pub mod softmax_xent;

pub use real::Real;
