//! Matrix products, a bilinear rule: each input's cotangent is the product of the
//! cotangent with the other input, transposed (lesson "Matmul backward, decoded"):
//! `Y = A·B` ⇒ `∂L/∂A = ∂L/∂Y·Bᵀ`, `∂L/∂B = Aᵀ·∂L/∂Y`. The transposes are views into the
//! strided kernel, never copies. Batched products apply the rule per batch item and sum
//! over the batch axes an operand was broadcast along.

use super::Broadcast;
use super::shape_str;
use crate::kernels::Real;
use crate::kernels::matmul::{self as kernel, Accum};
use ndarray::{
    Array, Array1, Array2, ArrayBase, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Data,
    DimMax, Dimension, Ix1, Ix2, IxDyn,
};

/// `Y = A·B` over the last two axes, batched over the leading ones: `[.., m, k]·[.., k, n]
/// → [.., m, n]`, NumPy's `matmul` and `torch.matmul` for operands of two or more axes.
/// The batch axes broadcast by NumPy's rule (`[B, T, d]·[d, n]` is a linear layer on
/// every position, `[B, H, T, d]·[B, H, d, T]` the attention scores of every head); the
/// result has as many axes as the larger operand (`ndarray::DimMax`). Any layouts, via
/// the strided kernel; a 2-D right operand folds the batch into the rows of one product,
/// other batches spread their items over rayon's threads when large.
///
/// # Panics
/// If an operand has fewer than two axes (`"matmul: rhs is 4, which has fewer than two
/// axes; write matvec or dot"`), if the inner dimensions differ (`"matmul: lhs is
/// 128×784 but rhs is 785×256"`), or if the batch axes do not broadcast (`"matmul:
/// cannot broadcast the batch axes of lhs 2×3×4 with rhs 5×4×6"`).
///
/// ```
/// use ndarray::{array, Array3};
/// let a = array![[1.0f32, 2.0], [3.0, 4.0]];
/// assert_eq!(backprop::ops::matmul(&a, &a.t()), array![[5.0, 11.0], [11.0, 25.0]]);
/// // A batch of two matrices times one matrix: each batch item is a product.
/// let x = Array3::from_shape_fn((2, 1, 2), |(b, _, j)| (b * 2 + j) as f64);
/// let y = backprop::ops::matmul(&x, &array![[1.0, 0.0], [1.0, 1.0]]);
/// assert_eq!(y, array![[[1.0, 1.0]], [[5.0, 3.0]]]);
/// ```
pub fn matmul<S1, S2, T, D1, D2>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
) -> Array<T, Broadcast<D1, D2>>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
    D1: Dimension + DimMax<D2>,
    D2: Dimension,
{
    if let (Some(a2), Some(b2)) = (as_2d(a), as_2d(b)) {
        let (m, k) = a2.dim();
        kernel::check_shapes("matmul", (m, b2.ncols()), (m, k), b2.dim());
        return into_dim(kernel::matmul_new(a2, b2));
    }
    let plan = Batch::plan("matmul", a.shape(), b.shape());
    let (m, k, n) = (plan.m, plan.k, plan.n);
    if b.ndim() == 2 {
        // `[.., m, k]·[k, n]`: one product of (batch·m)×k rows.
        let rows = a
            .to_shape((plan.items * m, k))
            .expect("a standard-layout copy");
        let b2 = as_2d(b).expect("b has two axes");
        return reshaped(kernel::matmul_new(rows.view(), b2), &plan.out_shape(m, n));
    }
    let (a, b) = (a.view().into_dyn(), b.view().into_dyn());
    let work = plan.items * m * n * k;
    let mut out = vec![T::zero(); plan.items * m * n];
    super::per_chunk(&mut out, m * n, work, |i, c| {
        let c = ArrayViewMut2::from_shape((m, n), c).expect("one item's elements");
        super::matmul_one_thread(c, plan.lhs(&a, i), plan.rhs(&b, i));
    });
    reshaped(Array1::from(out), &plan.out_shape(m, n))
}

/// Pullback of [`matmul`]: `(d_a, d_b) = (d_y·bᵀ, aᵀ·d_y)` per batch item, each summed
/// over the batch axes its operand was broadcast along (`unbroadcast`). Saves both
/// inputs.
///
/// # Panics
/// If the shapes disagree; the message names all three.
pub fn matmul_vjp<S1, S2, S3, T, D1, D2, DO>(
    a: &ArrayBase<S1, D1>,
    b: &ArrayBase<S2, D2>,
    d_y: &ArrayBase<S3, DO>,
) -> (Array<T, D1>, Array<T, D2>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
    D1: Dimension,
    D2: Dimension,
    DO: Dimension,
{
    let fail = || -> ! {
        panic!(
            "matmul_vjp: lhs is {} and rhs is {} but d_y is {}",
            shape_str(a.shape()),
            shape_str(b.shape()),
            shape_str(d_y.shape())
        )
    };
    if let (Some(a2), Some(b2), Some(g)) = (as_2d(a), as_2d(b), as_2d(d_y)) {
        let (m, n) = (a2.nrows(), b2.ncols());
        if a2.ncols() != b2.nrows() || g.dim() != (m, n) {
            fail();
        }
        let mut d_a = Array2::zeros(a2.raw_dim());
        let mut d_b = Array2::zeros(b2.raw_dim());
        kernel::matmul(d_a.view_mut(), g, b2.t(), Accum::Replace);
        kernel::matmul(d_b.view_mut(), a2.t(), g, Accum::Replace);
        return (into_dim(d_a), into_dim(d_b));
    }
    let plan = Batch::plan("matmul_vjp", a.shape(), b.shape());
    let (m, k, n) = (plan.m, plan.k, plan.n);
    if d_y.shape() != plan.out_shape(m, n).as_slice() {
        fail();
    }
    if b.ndim() == 2 {
        // `[.., m, k]·[k, n]`: the batch is rows of one product on each side.
        let rows = a
            .to_shape((plan.items * m, k))
            .expect("a standard-layout copy");
        let g = d_y
            .to_shape((plan.items * m, n))
            .expect("a standard-layout copy");
        let b2 = as_2d(b).expect("b has two axes");
        let mut d_rows = Array2::zeros((plan.items * m, k));
        let mut d_b = Array2::zeros((k, n));
        kernel::matmul(d_rows.view_mut(), g.view(), b2.t(), Accum::Replace);
        kernel::matmul(d_b.view_mut(), rows.t(), g.view(), Accum::Replace);
        return (reshaped(d_rows, a.shape()), into_dim(d_b));
    }
    let (av, bv, g) = (
        a.view().into_dyn(),
        b.view().into_dyn(),
        d_y.view().into_dyn(),
    );
    let work = 2 * plan.items * m * n * k;
    // Each item's `d_a` and `d_b` over the broadcast batch, written in place, then summed
    // back to each operand's batch axes.
    let (mut full_a, mut full_b) = (
        vec![T::zero(); plan.items * m * k],
        vec![T::zero(); plan.items * k * n],
    );
    super::per_chunk(&mut full_a, m * k, work / 2, |i, c| {
        let c = ArrayViewMut2::from_shape((m, k), c).expect("one item's elements");
        let gi = plan.item(&g, plan.out_batch.as_slice(), i);
        super::matmul_one_thread(c, gi, plan.rhs(&bv, i).t());
    });
    super::per_chunk(&mut full_b, k * n, work / 2, |i, c| {
        let c = ArrayViewMut2::from_shape((k, n), c).expect("one item's elements");
        let gi = plan.item(&g, plan.out_batch.as_slice(), i);
        super::matmul_one_thread(c, plan.lhs(&av, i).t(), gi);
    });
    let full_a: ArrayD<T> = reshaped(Array1::from(full_a), &plan.out_shape(m, k));
    let full_b: ArrayD<T> = reshaped(Array1::from(full_b), &plan.out_shape(k, n));
    (
        super::unbroadcast(&full_a, &a.raw_dim()),
        super::unbroadcast(&full_b, &b.raw_dim()),
    )
}

/// The batch of a [`matmul`]: the broadcast batch axes, the matrix sizes, and how
/// each operand's batch axes map into them.
struct Batch {
    out_batch: Vec<usize>,
    items: usize,
    m: usize,
    k: usize,
    n: usize,
}

impl Batch {
    fn plan(op: &str, a: &[usize], b: &[usize]) -> Batch {
        for (side, s) in [("lhs", a), ("rhs", b)] {
            if s.len() < 2 {
                panic!(
                    "{op}: {side} is {}, which has fewer than two axes; write matvec or dot",
                    shape_str(s)
                );
            }
        }
        let (ab, am) = a.split_at(a.len() - 2);
        let (bb, bm) = b.split_at(b.len() - 2);
        if am[1] != bm[0] {
            panic!("{op}: lhs is {} but rhs is {}", shape_str(a), shape_str(b));
        }
        let out_batch = super::try_broadcast_shape(ab, bb).unwrap_or_else(|| {
            panic!(
                "{op}: cannot broadcast the batch axes of lhs {} with rhs {}",
                shape_str(a),
                shape_str(b)
            )
        });
        Batch {
            items: out_batch.iter().product(),
            out_batch,
            m: am[0],
            k: am[1],
            n: bm[1],
        }
    }

    fn out_shape(&self, rows: usize, cols: usize) -> Vec<usize> {
        let mut s = self.out_batch.clone();
        s.extend([rows, cols]);
        s
    }

    fn lhs<'a, T>(&self, a: &ArrayViewD<'a, T>, i: usize) -> ArrayView2<'a, T> {
        self.item(a, &a.shape()[..a.ndim() - 2], i)
    }

    fn rhs<'a, T>(&self, b: &ArrayViewD<'a, T>, i: usize) -> ArrayView2<'a, T> {
        self.item(b, &b.shape()[..b.ndim() - 2], i)
    }

    /// Item `i` (row-major over the broadcast batch) of an operand whose batch axes
    /// are `batch`: right-aligned with the broadcast batch, length-1 axes repeated.
    fn item<'a, T>(&self, x: &ArrayViewD<'a, T>, batch: &[usize], i: usize) -> ArrayView2<'a, T> {
        let lead = self.out_batch.len() - batch.len();
        let mut index = vec![0; self.out_batch.len()];
        let mut rest = i;
        for (ax, &len) in self.out_batch.iter().enumerate().rev() {
            index[ax] = rest % len.max(1);
            rest /= len.max(1);
        }
        let mut v = x.clone();
        for (ax, &len) in batch.iter().enumerate() {
            let at = if len == 1 { 0 } else { index[lead + ax] };
            v = v.index_axis_move(Axis(0), at);
        }
        v.into_dimensionality::<Ix2>().expect("two axes remain")
    }
}

/// `x` as a 2-D view when it has two axes.
fn as_2d<S: Data, D: Dimension>(x: &ArrayBase<S, D>) -> Option<ArrayView2<'_, S::Elem>> {
    x.view().into_dimensionality::<Ix2>().ok()
}

/// A 2-D result in the dimension type the signature names (which is `Ix2` or `IxDyn`).
fn into_dim<T, D: Dimension>(y: Array2<T>) -> Array<T, D> {
    y.into_dimensionality::<D>().expect("a two-axis result")
}

/// An array read in row-major order as one of `shape`, in the dimension type `D`
/// (copied only if `x` is not in standard layout).
fn reshaped<T: Clone, E: Dimension, D: Dimension>(x: Array<T, E>, shape: &[usize]) -> Array<T, D> {
    let x = if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    };
    x.into_shape_with_order(IxDyn(shape))
        .expect("the array holds the shape's elements")
        .into_dimensionality::<D>()
        .expect("the shape has the result's axes")
}

/// `y = A·x` for a matrix and a vector (`m×k · k → m`).
///
/// # Panics
/// If `x.len() != A.ncols()`: `"matvec: lhs is 2×3 but rhs is 4"`.
///
/// ```
/// let a = ndarray::array![[1.0f64, 2.0], [3.0, 4.0]];
/// assert_eq!(backprop::ops::matvec(&a, &ndarray::array![1.0, 1.0]), ndarray::array![3.0, 7.0]);
/// ```
pub fn matvec<S1, S2, T>(a: &ArrayBase<S1, Ix2>, x: &ArrayBase<S2, Ix1>) -> Array1<T>
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    T: Real,
{
    if a.ncols() != x.len() {
        panic!(
            "matvec: lhs is {} but rhs is {}",
            shape_str(a.shape()),
            shape_str(x.shape())
        );
    }
    let mut y = Array2::zeros((a.nrows(), 1));
    kernel::matmul(
        y.view_mut(),
        a.view(),
        x.view().insert_axis(Axis(1)),
        Accum::Replace,
    );
    y.remove_axis(Axis(1))
}

/// Pullback of [`matvec`]: `d_a = d_y·xᵀ` (outer product), `d_x = Aᵀ·d_y`. Saves both.
///
/// # Panics
/// If the shapes disagree; the message names all three.
pub fn matvec_vjp<S1, S2, S3, T>(
    a: &ArrayBase<S1, Ix2>,
    x: &ArrayBase<S2, Ix1>,
    d_y: &ArrayBase<S3, Ix1>,
) -> (Array2<T>, Array1<T>)
where
    S1: Data<Elem = T>,
    S2: Data<Elem = T>,
    S3: Data<Elem = T>,
    T: Real,
{
    if a.ncols() != x.len() || d_y.len() != a.nrows() {
        panic!(
            "matvec_vjp: lhs is {} and rhs is {} but d_y is {}",
            shape_str(a.shape()),
            shape_str(x.shape()),
            shape_str(d_y.shape())
        );
    }
    let g = d_y.view().insert_axis(Axis(1));
    let mut d_a = Array2::zeros(a.raw_dim());
    kernel::matmul(
        d_a.view_mut(),
        g,
        x.view().insert_axis(Axis(0)),
        Accum::Replace,
    );
    let mut d_x = Array2::zeros((x.len(), 1));
    kernel::matmul(d_x.view_mut(), a.t(), g, Accum::Replace);
    (d_a, d_x.remove_axis(Axis(1)))
}
