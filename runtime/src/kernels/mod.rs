//! The hot loops: one place that detects the CPU once and dispatches.
//!
//! Every kernel has a scalar reference implementation that is both the fallback on
//! machines without the SIMD path and the oracle its tests compare against. The SIMD
//! path is chosen once per process from the CPU's features; `BACKPROP_FORCE_ARCH=scalar`
//! forces the reference path (CI runs the kernel tests both ways), and
//! `BACKPROP_FORCE_ARCH=avx2` keeps the kernels that have a 512-bit copy ([`has_avx512`])
//! on their 256-bit one (the kernel tests run that way too on an AVX-512 CPU).

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

/// True when the CPU has AVX-512 (F, DQ, VL, BW) besides AVX2 + FMA, and
/// `BACKPROP_FORCE_ARCH` asks for neither the reference path nor `avx2`. Cached.
///
/// Not a variant of [`Arch`]: only the compute-bound kernels have a 512-bit copy (the
/// activations, whose exact GELU evaluates in f64 lanes, and the masked softmax), and
/// each is tested against the scalar oracle on a machine that has it (`tests/kernels.rs`,
/// which also reruns itself with `BACKPROP_FORCE_ARCH=avx2`).
pub fn has_avx512() -> bool {
    static AVX512: OnceLock<bool> = OnceLock::new();
    *AVX512.get_or_init(|| {
        if Arch::get() != Arch::Avx2Fma
            || std::env::var("BACKPROP_FORCE_ARCH").as_deref() == Ok("avx2")
        {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512bw")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Runs `f` on a thread of rayon's global pool and returns its result: a training step
/// wrapped in it runs every kernel's split (matmul blocks, attention heads, activations,
/// AdamW) without handing work across threads.
///
/// The kernels split large work over rayon's global pool. Called from a thread outside
/// the pool (a program's `main`), each split hands its work to the pool's threads and
/// puts the caller to sleep until they finish, a few tens of µs of waking threads per
/// call; a training step makes hundreds of such calls. Called from inside the pool, a
/// split runs on the calling worker and the others steal from it. Results are the same
/// bit for bit either way (each kernel's blocks do not depend on which thread runs them).
///
/// Measured on the GPT example's step (2-core VM, `docs/PERFORMANCE.md`, "A
/// character-level GPT"): 44 ms from `main`, 38 ms inside `run_on_pool`.
///
/// Already on a pool thread, `f` simply runs. `f` and its result must be `Send`, as for
/// any work given to another thread; a panic in `f` propagates to the caller.
///
/// # Example
/// ```
/// use backprop::kernels::matmul::{matmul, Accum};
/// use backprop::kernels::run_on_pool;
/// use ndarray::Array2;
/// let a = Array2::<f32>::ones((256, 256));
/// let mut c = Array2::<f32>::zeros((256, 256));
/// run_on_pool(|| matmul(c.view_mut(), a.view(), a.view(), Accum::Replace));
/// assert_eq!(c[[0, 0]], 256.0);
/// // On a pool thread already, it just calls the closure.
/// assert_eq!(run_on_pool(|| run_on_pool(|| 7)), 7);
/// ```
pub fn run_on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let mut out = None;
    rayon::scope(|_| out = Some(f()));
    out.expect("rayon::scope runs its closure before returning")
}

/// Writes 0 over every element of `s` and returns it as initialised: a block of a result
/// allocated uninitialised, zeroed just before a kernel overwrites it.
pub(crate) fn zeroed<T: Real>(s: &mut [std::mem::MaybeUninit<T>]) -> &mut [T] {
    for v in s.iter_mut() {
        v.write(T::zero());
    }
    // SAFETY: every element was just written; MaybeUninit<T> has T's layout.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<T>(), s.len()) }
}

/// A vector whose every element has been written, as initialised values: the same
/// allocation handed over whole (MaybeUninit<T> is laid out as T), no copy.
///
/// # Safety
/// Every element of `v` must be initialised.
pub(crate) unsafe fn assume_init_vec<T>(v: Vec<std::mem::MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: pointer, length and capacity of the same allocation, with T's layout; the
    // caller promises every element is initialised.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) }
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
