//! Differentiable tensor functions over ndarray (`f32`, `f64`; owned arrays and views).
//!
//! Every op comes as two plain functions with one naming scheme, so the `#[grad]` macro
//! (and a hand-written backward pass) can call them uniformly:
//!
//! - `op(inputs…) -> value` — the forward; it saves nothing itself.
//! - `op_vjp(saved…, d_value) -> d_input` (or a tuple of input cotangents, in argument
//!   order) — the pullback. `saved…` are references to exactly what the op's docs say it
//!   needs (the input `x`, the output `y`, or only shapes), then constant arguments
//!   (slope, axis, labels, options), then the cotangent.
//!
//! Pullback formulas, what each saves, and their sources are in each function's docs and
//! in `docs/RULES.md`. Shape errors panic with a message naming the op and both shapes;
//! an op never broadcasts silently beyond NumPy's rules.
//!
//! ```
//! use backprop::ops::{matmul, matmul_vjp, relu, relu_vjp, sum, sum_vjp};
//! use ndarray::array;
//! // L = sum(relu(X·W)), the lesson's linear + ReLU example.
//! let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
//! let w = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
//! let z = matmul(&x, &w);
//! let a = relu(&z);
//! let l = sum(&a);
//! assert_eq!(l, 30.0);
//! let d_a = sum_vjp(&a.raw_dim(), 1.0);
//! let d_z = relu_vjp(&a, &d_a);
//! let (d_x, d_w) = matmul_vjp(&x, &w, &d_z);
//! assert_eq!(d_w, array![[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]);
//! assert_eq!(d_x, array![[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]);
//! ```

mod activation;
mod arith;
mod linalg;
mod loss;
mod normalize;
mod reduce;
mod transformer;

pub use activation::*;
pub use arith::*;
pub use companions::*;
pub use linalg::*;
pub use loss::*;
pub use normalize::*;
pub use reduce::*;
pub use transformer::*;

pub use crate::kernels::softmax_xent::XentOptions;

/// The shape `a` and `b` broadcast to (NumPy's rule: align the trailing axes; each
/// pair of lengths is equal, or one of them is 1), for every elementwise op, however
/// it is spelled (`a + b` in `#[grad]` code, `ops::add`), and for the batch axes of
/// [`matmul`].
///
/// # Panics
/// `"{op}: cannot broadcast lhs 2×3 with rhs 2"` when they do not.
pub(crate) fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Vec<usize> {
    try_broadcast_shape(a, b).unwrap_or_else(|| {
        panic!(
            "{op}: cannot broadcast lhs {} with rhs {}",
            shape_str(a),
            shape_str(b)
        )
    })
}

/// [`broadcast_shape`], `None` where the shapes do not broadcast.
pub(crate) fn try_broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], k: usize| {
        if k + s.len() >= n {
            s[k + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// `C ← A·B` on the calling thread: for batched products whose items are already
/// spread over rayon's threads (attention's heads, [`matmul`]'s batch), on the crate's
/// gemm-backed kernel.
pub(crate) fn matmul_one_thread<T: crate::kernels::Real>(
    c: ndarray::ArrayViewMut2<'_, T>,
    a: ndarray::ArrayView2<'_, T>,
    b: ndarray::ArrayView2<'_, T>,
) {
    use crate::kernels::matmul::{Accum, MatmulConfig, Threads, matmul_with};
    let cfg = MatmulConfig {
        accum: Accum::Replace,
        threads: Threads::Count(1),
    };
    matmul_with(c, a, b, cfg);
}

/// Runs `f(i, chunk_i)` on each `chunk`-long piece of `out`, on rayon's threads when
/// there are several pieces and `work` reaches [`BATCH_PARALLEL_MIN_FLOPS`]: a batched
/// op writes each item's result in place.
pub(crate) fn per_chunk<T: Send>(
    out: &mut [T],
    chunk: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let items = out.len().div_ceil(chunk.max(1));
    per_chunks([(out, chunk)], items, work, |i, [c]| f(i, c));
}

/// [`per_chunk`] over `N` outputs at once: item `i` of `items` gets the `i`-th
/// `chunk`-long piece of each output (an empty slice where `chunk` is 0), so an op with
/// several results (attention's `O` and log-sum-exp; `d_Q`, `d_K`, `d_V`) writes them
/// all in place.
///
/// # Panics
/// If an output with a nonzero `chunk` has fewer than `items` pieces.
pub(crate) fn per_chunks<T: Send, const N: usize>(
    outs: [(&mut [T], usize); N],
    items: usize,
    work: usize,
    f: impl Fn(usize, [&mut [T]; N]) + Sync + Send,
) {
    use rayon::prelude::*;
    let empty = outs.each_ref().map(|(_, c)| *c == 0);
    let mut pieces = outs.map(|(o, c)| o.chunks_mut(c.max(1)));
    let jobs: Vec<[&mut [T]; N]> = (0..items)
        .map(|_| {
            core::array::from_fn(|k| match empty[k] {
                true => Default::default(),
                false => pieces[k]
                    .next()
                    .expect("per_chunks: an output is too short"),
            })
        })
        .collect();
    if items > 1 && work >= BATCH_PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        jobs.into_par_iter().enumerate().for_each(|(i, c)| f(i, c));
    } else {
        jobs.into_iter().enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// Work (multiply-adds) above which a batched op (attention's heads, [`matmul`]'s
/// batch) spreads its items over rayon's threads.
pub(crate) const BATCH_PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// `[3, 4]` → `"3×4"`, `[5]` → `"5"`, `[]` → `"scalar"`: shapes in panic messages.
pub(crate) fn shape_str(s: &[usize]) -> String {
    if s.is_empty() {
        return "scalar".to_string();
    }
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Panics unless `a` and `b` have the same shape.
pub(crate) fn same_shape(op: &str, a_name: &str, a: &[usize], b_name: &str, b: &[usize]) {
    if a != b {
        panic!(
            "{op}: {a_name} is {} but {b_name} is {}",
            shape_str(a),
            shape_str(b)
        );
    }
}
mod companions;
