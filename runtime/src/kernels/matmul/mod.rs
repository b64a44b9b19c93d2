//! Strided matrix multiply `C ← A·B` or `C ← C + A·B` for `f32`/`f64`.
//!
//! Every operand is a strided view (row stride, column stride, any sign, any size), so a
//! row-major, column-major or transposed matrix — `w.t()` in the backward pass
//! `∂L/∂X = ∂L/∂Y·Wᵀ`, `∂L/∂W = Xᵀ·∂L/∂Y` — goes in without a copy.
//!
//! Engine, chosen by `benches/matmul.rs` (figures in docs/PERFORMANCE.md): the packed
//! AVX2/FMA microkernels of the `gemm` crate (0.19), called through its strided entry
//! point, which packs any layout. Our own code here is the typed, shape-checked API, the
//! `Accum` flag, the threading policy, and the scalar reference (`kernels::scalar`) used
//! under `BACKPROP_FORCE_ARCH=scalar` and by the tests as the oracle. (gemm dispatches on
//! the CPU itself, so machines without AVX2 still get its SIMD paths.) Our own packed
//! kernel, measured against gemm and kept for that comparison, is [`own`].

use super::{Real, forced_scalar, scalar};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// What the product does with the destination's old contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accum {
    /// `C ← A·B` (old contents ignored, may be NaN).
    #[default]
    Replace,
    /// `C ← C + A·B` (gradient accumulation).
    Add,
}

/// How many threads a product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Threads {
    /// One thread when `m·n·k` is below [`PARALLEL_MIN_FLOPS`]/2, else every thread of
    /// rayon's global pool.
    #[default]
    Auto,
    /// Exactly this many (1 = the calling thread only).
    Count(usize),
}

/// Products of at least this many flops (`2mnk`) use more than one thread under
/// [`Threads::Auto`]. Below it, splitting costs more than it saves (measured: at
/// 128×256·256×10, 0.65 Mflop, 2 threads are slower; at 128×784·784×256, 51 Mflop, they
/// are 1.7× faster).
pub const PARALLEL_MIN_FLOPS: usize = 4_000_000;

/// Options for [`matmul_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MatmulConfig {
    /// Replace or accumulate into the destination.
    pub accum: Accum,
    /// Threading policy.
    pub threads: Threads,
}

/// `c ← a·b` or `c ← c + a·b` for strided views of any layout, with [`Threads::Auto`].
///
/// Shapes: `a` is m×k, `b` is k×n, `c` is m×n. Any strides (row-major, column-major,
/// `.t()` views, slices with steps, negative steps).
///
/// # Panics
/// If the inner dimensions differ (`"matmul: lhs is 128×784 but rhs is 785×256"`) or `c`
/// is not m×n; the message names every shape.
///
/// # Example
/// ```
/// use backprop::kernels::matmul::{matmul, Accum};
/// use ndarray::{array, Array2};
/// let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
/// let w = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
/// let mut z = Array2::<f64>::zeros((2, 2));
/// matmul(z.view_mut(), x.view(), w.view(), Accum::Replace);
/// assert_eq!(z, array![[4.0, 5.0], [10.0, 11.0]]);
/// // ∂L/∂W = Xᵀ·G with X transposed as a view, accumulated into an existing gradient.
/// let g = Array2::<f64>::ones((2, 2));
/// let mut d_w = Array2::<f64>::ones((3, 2));
/// matmul(d_w.view_mut(), x.t(), g.view(), Accum::Add);
/// assert_eq!(d_w, array![[6.0, 6.0], [8.0, 8.0], [10.0, 10.0]]);
/// ```
pub fn matmul<T: Real>(
    c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    accum: Accum,
) {
    matmul_with(
        c,
        a,
        b,
        MatmulConfig {
            accum,
            threads: Threads::Auto,
        },
    )
}

/// Panics unless `a` (m×k), `b` (k×n) and `c` (m×n) agree; `op` names the caller.
pub fn check_shapes(op: &str, c: (usize, usize), a: (usize, usize), b: (usize, usize)) {
    if a.1 != b.0 {
        panic!("{op}: lhs is {}×{} but rhs is {}×{}", a.0, a.1, b.0, b.1);
    }
    if c != (a.0, b.1) {
        panic!(
            "{op}: lhs {}×{} times rhs {}×{} is {}×{} but the destination is {}×{}",
            a.0, a.1, b.0, b.1, a.0, b.1, c.0, c.1
        );
    }
}

/// [`matmul`] with explicit options.
///
/// # Panics
/// As [`matmul`].
///
/// # Example
/// ```
/// use backprop::kernels::matmul::{matmul_with, Accum, MatmulConfig, Threads};
/// use ndarray::Array2;
/// let a = Array2::<f32>::ones((64, 32));
/// let b = Array2::<f32>::ones((32, 16));
/// let mut c = Array2::<f32>::ones((16, 64)); // write Cᵀ: a column-major destination
/// let cfg = MatmulConfig { accum: Accum::Add, threads: Threads::Count(1) };
/// matmul_with(c.view_mut().reversed_axes(), a.view(), b.view(), cfg);
/// assert!(c.iter().all(|&v| v == 33.0));
/// ```
pub fn matmul_with<T: Real>(
    mut c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    cfg: MatmulConfig,
) {
    check_shapes("matmul", c.dim(), a.dim(), b.dim());
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if cfg.accum == Accum::Replace {
            c.fill(T::zero());
        }
        return;
    }
    if forced_scalar() {
        return scalar::matmul(c, a, b, cfg.accum);
    }
    let threads = match cfg.threads {
        Threads::Count(t) => t.max(1),
        Threads::Auto if 2 * m * n * k < PARALLEL_MIN_FLOPS => 1,
        Threads::Auto => rayon::current_num_threads(),
    };
    let par = if threads <= 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    let (c_rs, c_cs) = strides(&c.view());
    let (a_rs, a_cs) = strides(&a);
    let (b_rs, b_cs) = strides(&b);
    let read_dst = cfg.accum == Accum::Add;
    // SAFETY: the three pointers come from live ndarray views whose shapes were checked
    // above (a: m×k, b: k×n, c: m×n) and whose strides are passed unchanged, so every
    // element gemm reads or writes is inside its view. `c` is borrowed mutably, so it
    // cannot alias `a` or `b`. T is f32 or f64 (sealed), both supported by gemm, which
    // detects its own CPU features.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            read_dst,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::one(), // alpha: weight of the old C (ignored when read_dst is false)
            T::one(), // beta: weight of A·B (gemm's α/β are swapped relative to BLAS)
            false,
            false,
            false,
            par,
        );
    }
}

/// `A·B` into a new `m×n` array (standard layout), threads as [`Threads::Auto`].
///
/// The destination is not zero-filled first: gemm overwrites every element when it does
/// not read the destination, so the memset of a fresh array (800 KB for a 784×256
/// gradient, every step) is skipped. The scalar path and empty products start from
/// zeros.
///
/// # Panics
/// If `a.ncols() != b.nrows()`; the message names both shapes.
pub fn matmul_new<T: Real>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> Array2<T> {
    let (m, n) = (a.nrows(), b.ncols());
    check_shapes("matmul", (m, n), a.dim(), b.dim());
    if m == 0 || n == 0 || a.ncols() == 0 || forced_scalar() {
        let mut c = Array2::zeros((m, n));
        matmul(c.view_mut(), a, b, Accum::Replace);
        return c;
    }
    let mut c = Array2::<T>::uninit((m, n));
    // SAFETY: `c` owns m·n contiguous elements in standard layout, so the view built
    // from its pointer covers exactly its buffer. The view is only handed to gemm,
    // which with `read_dst = false` (Accum::Replace) writes every element of C through
    // raw pointers and reads none; k > 0 and the scalar path are excluded above, so no
    // code path reads an element before it is written. After the call every element is
    // initialised, which makes `assume_init` sound.
    unsafe {
        let view = ArrayViewMut2::from_shape_ptr((m, n), c.as_mut_ptr() as *mut T);
        matmul(view, a, b, Accum::Replace);
        c.assume_init()
    }
}

#[doc(hidden)]
pub mod own;

fn strides<T>(v: &ArrayView2<'_, T>) -> (isize, isize) {
    let s = v.strides();
    (s[0], s[1])
}
