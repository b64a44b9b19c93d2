//! The plain function `f` beside the companions runs its matrix products on the
//! runtime's matmul, as the forward pass does (`backprop-derive`'s `plain.rs`, issue
//! 16): `f`'s value equals `f_grad`'s bit for bit, and equals ndarray's `dot` up to the
//! order of the sums. Any other `dot` (vectors, a matrix and a vector, another type's
//! method) is the method as written.
#![allow(clippy::all, unused)]

use backprop::{grad, ops};
use ndarray::{Array1, Array2, ArrayView2, array};

fn filled(r: usize, c: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| {
        (((i * 31 + j * 17 + seed) % 13) as f32 / 13.0 - 0.5) * 0.7
    })
}

/// Two products, one on an owned temporary, one of a view and a transpose.
#[grad(w1, w2)]
fn two_layers(x: ArrayView2<'_, f32>, w1: &Array2<f32>, b1: &Array1<f32>, w2: &Array2<f32>) -> f32 {
    let h = ops::tanh(&((x.dot(w1) + b1) * 0.1));
    let z = h.dot(&w2.t().to_owned().t());
    (&z * &z).sum()
}

/// The same function with ndarray's `dot` spelled out, which the rewrite does not touch.
fn two_layers_ndarray(
    x: ArrayView2<'_, f32>,
    w1: &Array2<f32>,
    b1: &Array1<f32>,
    w2: &Array2<f32>,
) -> f32 {
    let h = ((ndarray::linalg::Dot::dot(&x, w1) + b1) * 0.1).mapv(f32::tanh);
    let z = ndarray::linalg::Dot::dot(&h, w2);
    (&z * &z).sum()
}

#[test]
fn f_equals_f_grad_bit_for_bit_and_ndarray_up_to_rounding() {
    // An inner dimension past 256, where gemm and matrixmultiply block the sums
    // differently (at 70 both give the same bits).
    let (x, w1, w2) = (filled(37, 300, 1), filled(300, 290, 2), filled(290, 9, 3));
    let b1 = Array1::from_shape_fn(290, |j| j as f32 * 0.001 - 0.2);
    let plain = two_layers(x.view(), &w1, &b1, &w2);
    let (value, _) = two_layers_grad(x.view(), &w1, &b1, &w2);
    assert_eq!(plain.to_bits(), value.to_bits(), "{plain} vs {value}");
    let reference = two_layers_ndarray(x.view(), &w1, &b1, &w2);
    assert!(
        (plain - reference).abs() <= 1e-5 * reference.abs(),
        "{plain} vs {reference}"
    );
}

/// Vector products keep ndarray's `dot`: `v·v` (a scalar) and `W·v` (a vector).
#[grad(w)]
fn vector_products(w: &Array2<f64>, v: &Array1<f64>) -> f64 {
    let u = w.dot(v);
    u.dot(&u) + v.dot(v)
}

#[test]
fn vector_products_keep_their_values_and_gradients() {
    let w = array![[1.0, 2.0], [3.0, 4.0]];
    let v = array![1.0, -1.0];
    // W·v = (-1, -1): u·u = 2, v·v = 2.
    assert_eq!(vector_products(&w, &v), 4.0);
    let (value, g) = vector_products_grad(&w, &v);
    assert_eq!(value, 4.0);
    // ∂(u·u)/∂W = 2 u vᵀ = 2 · (-1, -1)ᵀ (1, -1).
    assert_eq!(g.w, array![[-2.0, 2.0], [-2.0, 2.0]]);
}

/// A `dot` of another type, on a constant: the method as written.
#[derive(Clone, Copy)]
struct Rgb(f64, f64, f64);

impl Rgb {
    fn dot(&self, o: Rgb) -> f64 {
        self.0 * o.0 + self.1 * o.1 + self.2 * o.2
    }
}

/// A value whose dot product is taken by value, owned and not `Copy`.
struct Weights(Vec<f64>);

impl Weights {
    fn dot(&self, o: Weights) -> f64 {
        self.0.iter().zip(&o.0).map(|(a, b)| a * b).sum()
    }
}

#[grad(x)]
fn tinted(x: f64, c: Rgb) -> f64 {
    x * x * c.dot(Rgb(0.25, 0.5, 0.25))
}

#[grad(x)]
fn weighed(x: f64, w: &Weights) -> f64 {
    x * w.dot(Weights(vec![1.0, 2.0]))
}

#[test]
fn other_types_dot_methods_are_the_methods_as_written() {
    // c·(¼, ½, ¼) = 2: f = 2x², f' = 4x.
    assert_eq!(tinted(3.0, Rgb(1.0, 2.0, 3.0)), 18.0);
    assert_eq!(
        tinted_grad(3.0, Rgb(1.0, 2.0, 3.0)),
        (18.0, TintedGrad { x: 12.0 })
    );
    // w·(1, 2) = 11.
    let w = Weights(vec![3.0, 4.0]);
    assert_eq!(weighed(2.0, &w), 22.0);
    assert_eq!(weighed_grad(2.0, &w).1.x, 11.0);
}

/// Generic over the float: the kernel applies under `T: Real`.
#[grad(w)]
fn generic_product<T: backprop::Real>(x: &Array2<T>, w: &Array2<T>) -> T {
    x.dot(w).sum()
}

#[test]
fn generic_functions_use_the_kernel_too() {
    let x = filled(20, 300, 4).mapv(f64::from);
    let w = filled(300, 10, 5).mapv(f64::from);
    let plain = generic_product(&x, &w);
    let (value, g) = generic_product_grad(&x, &w);
    assert_eq!(plain.to_bits(), value.to_bits());
    let reference = x.dot(&w).sum();
    assert!((plain - reference).abs() < 1e-12, "{plain} vs {reference}");
    // ∂(Σ xw)/∂w = xᵀ 1.
    let expected = x.sum_axis(ndarray::Axis(0)).insert_axis(ndarray::Axis(1));
    let expected = expected.broadcast((300, 10)).unwrap().to_owned();
    assert!((&g.w - &expected).iter().all(|d| d.abs() < 1e-12));
}

/// A model as a `#[grad] impl`: the method as written runs the kernel as its free
/// function and its companions do.
#[derive(backprop::Differentiable, Clone, Debug, PartialEq)]
struct Mlp {
    w1: Array2<f32>,
    w2: Array2<f32>,
}

#[grad]
impl Mlp {
    #[grad]
    fn hidden(&self, x: &Array2<f32>) -> Array2<f32> {
        ops::relu(&x.dot(&self.w1))
    }

    /// A product of two parts of `self`, neither an argument of array type.
    #[grad]
    fn gram(&self) -> f32 {
        let g = self.w1.t().dot(&self.w1);
        (&g * &g).sum()
    }

    #[grad]
    fn loss(&self, x: &Array2<f32>) -> f32 {
        let h = self.hidden(x);
        h.dot(&self.w2).mapv(|v| v * v).sum()
    }
}

#[test]
fn methods_as_written_equal_their_gradient_values() {
    let m = Mlp {
        w1: filled(400, 33, 6),
        w2: filled(33, 7, 7),
    };
    let x = filled(25, 400, 8);
    let plain = m.loss(&x);
    let (value, _) = m.loss_grad(&x);
    assert_eq!(plain.to_bits(), value.to_bits(), "{plain} vs {value}");
    let reference = x
        .dot(&m.w1)
        .mapv(|v| v.max(0.0))
        .dot(&m.w2)
        .mapv(|v| v * v)
        .sum();
    assert!((plain - reference).abs() <= 1e-5 * reference.abs());
}

/// A product inside a closure and a nested product: every `.dot` of the body.
#[grad(w)]
fn nested_products(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let sq = |a: &Array2<f64>| a.dot(&a.t());
    sq(&x.dot(w)).sum()
}

#[test]
fn nested_and_closure_products_give_hand_computed_values() {
    let x = array![[1.0, 0.0], [0.0, 2.0]];
    let w = array![[1.0, 1.0], [0.0, 1.0]];
    // xw = [[1, 1], [0, 2]]; (xw)(xw)ᵀ = [[2, 2], [2, 4]]: sum 10.
    assert_eq!(nested_products(&x, &w), 10.0);
    let (value, g) = nested_products_grad(&x, &w);
    assert_eq!(value, 10.0);
    // f = Σ (P Pᵀ), P = xw: ∂f/∂P = 2 · 1 P... = (J + Jᵀ) P = 2 J P with J all ones,
    // so ∂f/∂P = 2 [[1, 3], [1, 3]], and ∂f/∂w = xᵀ ∂f/∂P = [[2, 6], [4, 12]].
    assert_eq!(g.w, array![[2.0, 6.0], [4.0, 12.0]]);
}

/// Data made by a call the macro cannot see into (whether `g` is an array is unknown to
/// it): the forward pass still runs the product on the matmul, as `f` does.
fn features(x: &Array2<f32>) -> Array2<f32> {
    x.mapv(|v| v * 2.0)
}

#[grad(s)]
fn scaled_gram(s: f32, x: &Array2<f32>) -> f32 {
    let g = features(x);
    s * g.dot(&g.t()).sum()
}

#[test]
fn products_of_unknown_operands_agree_with_f_too() {
    let x = filled(30, 300, 9);
    let plain = scaled_gram(0.5, &x);
    let (value, g) = scaled_gram_grad(0.5, &x);
    assert_eq!(plain.to_bits(), value.to_bits(), "{plain} vs {value}");
    // ∂(s·Σ ggᵀ)/∂s = Σ ggᵀ = 2 · value.
    assert_eq!(g.s, 2.0 * value);
    let f = features(&x);
    let reference = 0.5 * f.dot(&f.t()).sum();
    assert!((plain - reference).abs() <= 1e-5 * reference.abs());
}

/// Constant data the companions keep as written (it reads no argument): its product is
/// rewritten there as in `f`, so the two still agree.
fn basis() -> Array2<f64> {
    filled(40, 300, 11).mapv(f64::from)
}

fn projection() -> Array2<f64> {
    filled(300, 20, 12).mapv(f64::from)
}

#[grad(w)]
fn against_constant_products(w: &Array2<f64>) -> f64 {
    let p = basis().dot(&projection());
    let q = basis().dot(&projection());
    (&p * w).sum() + (&q * w).sum()
}

#[test]
fn constant_products_agree_between_f_and_its_companions() {
    let w = filled(40, 20, 13).mapv(f64::from);
    let plain = against_constant_products(&w);
    let (value, g) = against_constant_products_grad(&w);
    assert_eq!(plain.to_bits(), value.to_bits(), "{plain} vs {value}");
    // ∂/∂w = 2 · basis·projection.
    let p = basis().dot(&projection());
    assert!((&g.w - &(&p * 2.0)).iter().all(|d| d.abs() < 1e-12));
}

/// A `dot` that returns a borrow of a temporary receiver: the rewritten call keeps the
/// temporary alive to the end of the statement, as the original did.
struct Table(Vec<f64>);

impl Table {
    fn dot(&self, i: usize) -> &f64 {
        &self.0[i]
    }
}

fn table() -> Table {
    Table(vec![1.5, 2.5, 3.5])
}

/// A trait in scope whose method every type has, named like a common word: the
/// rewritten call does not collide with it.
trait Product {
    fn product(&self) -> usize {
        7
    }
}

impl<T> Product for T {}

#[grad(x)]
fn borrowed_from_a_temporary(x: f64, m: &Array2<f64>) -> f64 {
    let v = *table().dot(1);
    x * v * m.dot(&m.t()).sum()
}

#[test]
fn borrowing_dots_and_other_product_methods_keep_working() {
    let m = array![[1.0, 2.0], [3.0, 4.0]];
    // m mᵀ = [[5, 11], [11, 25]]: sum 52; f = x · 2.5 · 52.
    assert_eq!(borrowed_from_a_temporary(2.0, &m), 260.0);
    assert_eq!(borrowed_from_a_temporary_grad(2.0, &m).1.x, 130.0);
    assert_eq!(1.0f64.product(), 7);
}
