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
//!
//! Threads: a large product is cut into a grid of blocks of C, one per thread, each a
//! single-threaded gemm call on rayon's pool, rather than handed to gemm's own
//! threading (why, with the figures: `split_across_threads`); from
//! [`GEMM_THREADING_MIN_FLOPS`] up, gemm's own threading, which shares one packed B.

use super::{Real, forced_scalar};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

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
    /// rayon's global pool, each computing one block of C (gemm's own threading from
    /// [`GEMM_THREADING_MIN_FLOPS`] up).
    #[default]
    Auto,
    /// This many (1 = the calling thread only). Products below
    /// [`PARALLEL_MIN_FLOPS`] still run on one thread, and C is cut into at most one
    /// 16-wide block per thread.
    Count(usize),
}

/// Products of at least this many flops (`2mnk`) use more than one thread under
/// [`Threads::Auto`]. Below it, splitting costs more than it saves (measured: at
/// 128×256·256×10, 0.65 Mflop, 2 threads are slower; at 128×784·784×256, 51 Mflop, they
/// are 1.7× faster).
pub const PARALLEL_MIN_FLOPS: usize = 4_000_000;

/// Products of at least this many flops run on gemm's own threading (one packed B
/// shared by all threads), smaller ones on one block of C per thread
/// (`split_across_threads`). Measured on a 16-core AVX-512 Xeon (docs/PERFORMANCE.md,
/// "Sixteen cores"): at sgemm 2048³ (17 Gflop) per-thread blocks took 69 / 32 ms at
/// 4 / 8 threads against gemm's 41 / 21 ms, and the 1024-2048-2048-1000 MLP step
/// (products of 2–4 Gflop) 85 ms against 55 at 8 threads: each single-threaded gemm
/// call blocks for the whole L3, so parallel blocks evict each other's packed panels.
/// The MLP-sized products of 51 Mflop and below keep the blocks, which were 12–16 %
/// faster on ∂L/∂W on 2 cores.
pub const GEMM_THREADING_MIN_FLOPS: usize = 1 << 30;

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
        return reference::matmul(c, a, b, cfg.accum);
    }
    let threads = match cfg.threads {
        Threads::Count(t) => t.max(1),
        Threads::Auto if 2 * m * n * k < PARALLEL_MIN_FLOPS => 1,
        Threads::Auto => rayon::current_num_threads(),
    };
    let read_dst = cfg.accum == Accum::Add;
    let flops = 2 * m * n * k;
    if threads > 1 && flops >= PARALLEL_MIN_FLOPS {
        match threading() {
            Threading::Gemm => gemm_call(c, a, b, read_dst, gemm::Parallelism::Rayon(threads)),
            Threading::Auto if flops >= GEMM_THREADING_MIN_FLOPS => {
                gemm_call(c, a, b, read_dst, gemm::Parallelism::Rayon(threads))
            }
            _ => split_across_threads(c, a, b, read_dst, threads),
        }
    } else {
        gemm_serial(c, a, b, read_dst);
    }
}

/// Rows or columns of C per block are a multiple of this (gemm's f32 AVX2 microkernel
/// is 16 wide), so no block ends in a ragged microkernel tile except the last.
const BLOCK_ALIGN: usize = 16;

/// `C (+)= A·B` on `threads` pool threads: C is cut into a grid of `pr × pc` blocks, one
/// per thread, and each block is a single-threaded gemm call (A's row slice times B's
/// column slice).
///
/// Why not gemm's own threading: it fans out to the pool once per packing step and once
/// per block of K (about eight times for 128×784·784×256), and each fan-out from a thread
/// outside the pool wakes the sleeping workers and puts the caller to sleep and back.
/// On this 2-core VM that gave medians of 131 GFLOP/s on ∂L/∂W = Xᵀ·∂L/∂Y (784×128·
/// 128×256) with bursts of slow steps; one block per thread gives 180–205, and the MLP
/// step's median went from 0.66 to 0.63 ms with far fewer outliers. The cost is packing
/// each block's slices of A and B for itself (docs/PERFORMANCE.md, "Matmul").
///
/// The grid ([`grid`]) keeps that cost small at many threads: cutting a 2048×2048 C
/// into 16 strips of 128 columns would have every thread pack all of A (2048×2048);
/// a 4×4 grid of 512×512 blocks packs a quarter of A and of B per thread.
/// Products from [`GEMM_THREADING_MIN_FLOPS`] up go to gemm's own threading instead.
fn split_across_threads<T: Real>(
    c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    read_dst: bool,
    threads: usize,
) {
    let (m, n) = c.dim();
    let (rows, cols) = grid(m, n, threads);
    let rsize = m.div_ceil(rows).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    let csize = n.div_ceil(cols).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    // Called from outside the pool, `scope` runs this closure on a pool thread, which
    // takes the last block itself while the other threads take the rest.
    rayon::scope(move |s| {
        let (mut c, mut a) = (c, a);
        loop {
            let last_row = c.nrows() <= rsize;
            let (c_row, c_next, a_row, a_next);
            if last_row {
                (c_row, a_row) = (c, a);
                (c_next, a_next) = (None, None);
            } else {
                let (ch, cr) = c.split_at(Axis(0), rsize);
                let (ah, ar) = a.split_at(Axis(0), rsize);
                (c_row, a_row) = (ch, ah);
                (c_next, a_next) = (Some(cr), Some(ar));
            }
            let (mut c_row, mut b_rest) = (c_row, b);
            while c_row.ncols() > csize {
                let (ch, cr) = c_row.split_at(Axis(1), csize);
                let (bh, br) = b_rest.split_at(Axis(1), csize);
                s.spawn(move |_| gemm_serial(ch, a_row, bh, read_dst));
                (c_row, b_rest) = (cr, br);
            }
            match (c_next, a_next) {
                (Some(cn), Some(an)) => {
                    s.spawn(move |_| gemm_serial(c_row, a_row, b_rest, read_dst));
                    (c, a) = (cn, an);
                }
                _ => return gemm_serial(c_row, a_row, b_rest, read_dst),
            }
        }
    });
}

/// The block grid `(rows, cols)` for an m×n destination on `threads` threads: at most
/// `threads` blocks (at most one per 16 rows or columns), chosen to minimise the
/// packing each block does (its rows plus its columns), ties going to fewer blocks cut
/// across rows. Two threads give two blocks along the longer side, as before the grid.
pub(crate) fn grid(m: usize, n: usize, threads: usize) -> (usize, usize) {
    let max_r = m.div_ceil(BLOCK_ALIGN).max(1);
    let max_c = n.div_ceil(BLOCK_ALIGN).max(1);
    let mut best = (1, 1);
    let mut best_key = (usize::MAX, usize::MAX, usize::MAX);
    for r in 1..=threads.min(max_r) {
        let c = (threads / r).min(max_c);
        let blocks = r * c;
        let (rs, cs) = (m.div_ceil(r), n.div_ceil(c));
        // Fewest idle threads first, then the least packed per block.
        let key = (threads - blocks, rs + cs, r);
        if key < best_key {
            (best, best_key) = ((r, c), key);
        }
    }
    best
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Threading {
    /// Blocks below [`GEMM_THREADING_MIN_FLOPS`], gemm's threading above.
    Auto,
    /// `BACKPROP_MATMUL_THREADING=gemm`: gemm's own threading for every threaded product.
    Gemm,
    /// `BACKPROP_MATMUL_THREADING=blocks`: one block per thread for every threaded product.
    Blocks,
}

/// The threading of large products, from `BACKPROP_MATMUL_THREADING` (read once; a
/// switch for measuring the two against each other).
fn threading() -> Threading {
    static T: std::sync::OnceLock<Threading> = std::sync::OnceLock::new();
    *T.get_or_init(
        || match std::env::var("BACKPROP_MATMUL_THREADING").as_deref() {
            Ok("gemm") => Threading::Gemm,
            Ok("blocks") => Threading::Blocks,
            _ => Threading::Auto,
        },
    )
}

/// One single-threaded call of gemm's strided entry point.
fn gemm_serial<T: Real>(
    c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    read_dst: bool,
) {
    gemm_call(c, a, b, read_dst, gemm::Parallelism::None)
}

/// One call of gemm's strided entry point with the given parallelism.
fn gemm_call<T: Real>(
    mut c: ArrayViewMut2<'_, T>,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    read_dst: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (c_rs, c_cs) = strides(&c.view());
    let (a_rs, a_cs) = strides(&a);
    let (b_rs, b_cs) = strides(&b);
    // SAFETY: the three pointers come from live ndarray views whose shapes agree (a: m×k,
    // b: k×n, c: m×n; checked by `matmul_with` before any split, and a split cuts c
    // together with its matching slice of a or b) and whose strides are passed
    // unchanged, so every element gemm reads or writes is inside its view. `c` is
    // borrowed mutably, so it cannot alias `a` or `b`, and the blocks of a split are
    // disjoint. T is f32 or f64 (sealed), both supported by gemm, which detects its own
    // CPU features.
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
            parallelism,
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
pub mod reference;

fn strides<T>(v: &ArrayView2<'_, T>) -> (isize, isize) {
    let s = v.strides();
    (s[0], s[1])
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn grid_cuts_the_longer_side_at_two_threads_and_squares_at_sixteen() {
        assert_eq!(grid(784, 256, 2), (2, 1));
        assert_eq!(grid(128, 784, 2), (1, 2));
        assert_eq!(grid(2048, 2048, 16), (4, 4));
        assert_eq!(grid(512, 2048, 16), (2, 8));
        assert_eq!(grid(20, 20, 16), (2, 2)); // at most one block per 16 rows/columns
        assert_eq!(grid(5, 4096, 8), (1, 8));
        assert_eq!(grid(100, 100, 1), (1, 1));
    }
}
