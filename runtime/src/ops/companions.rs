//! Rule companions of the tensor ops: how `#[grad]` differentiates a call such as
//! `relu(&z)` or `softmax_cross_entropy(&logits, labels, opts)`.
//!
//! Each op `f` has, beside the function, a type-namespace item `f` whose `forward`
//! returns the value and a [`Tape`] holding exactly what `f_vjp` reads (the input where
//! the rule needs `x`, the output where it needs `y`, only shapes where that is
//! enough). The tape owns what it holds: the caller's arguments are often temporaries
//! of the caller's forward pass (`relu(&(x.dot(w) + b))`), which a borrowing tape
//! could not outlive. (Prefer `a.dot(&b)` to `matmul(&a, &b)` inside `#[grad]`: the
//! method is a primitive whose tape shares the caller's values instead of copying
//! them, and only the active side's product is computed.) The tape's backward pass
//! returns one cotangent per argument ([`Inactive`] for labels, options and axes). The same shape as a `#[grad]` function's companion, so user code
//! composes with ops and ops with user code.
#![allow(non_camel_case_types, clippy::type_complexity)]

use super::*;
use crate::kernels::Real;
use crate::tape::{Inactive, Tape};
use ndarray::{
    Array, Array1, Array2, ArrayBase, Axis, Data, DimMax, Dimension, Ix1, Ix2, RemoveAxis,
};

/// Elementwise ops whose rule reads the input `x`.
macro_rules! saves_input {
    ($($f:ident => $vjp:ident / $jvp:ident),* $(,)?) => {$(
        #[doc(hidden)]
        pub struct $f {}
        impl $f {
            /// Forward pass: the value and a tape holding a copy of `x`.
            #[inline]
            pub fn forward<S, T, D>(x: &ArrayBase<S, D>) -> (Array<T, D>, Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>,) + use<S, T, D>>)
            where
                S: Data<Elem = T>,
                T: Real,
                D: Dimension,
            {
                let saved = x.to_owned();
                (super::$f(x), Tape::with_heap_bytes(bytes(&saved), move |d: Array<T, D>| ($vjp(&saved, &d),)))
            }

            /// Forward mode: the value and its tangent along `t` (no tangent: zeros).
            #[inline]
            pub fn jvp<S, T, D>(x: &ArrayBase<S, D>, tangents: (Option<&Array<T, D>>,)) -> (Array<T, D>, Array<T, D>)
            where
                S: Data<Elem = T>,
                T: Real,
                D: Dimension,
            {
                let y = super::$f(x);
                let t = match tangents.0 {
                    Some(t) => $jvp(x, t),
                    None => Array::zeros(x.raw_dim()),
                };
                (y, t)
            }
        }
    )*};
}

/// Elementwise ops whose rule reads the output `y` (kept on the tape).
macro_rules! saves_output {
    ($($f:ident => $vjp:ident / $jvp:ident),* $(,)?) => {$(
        #[doc(hidden)]
        pub struct $f {}
        impl $f {
            /// Forward pass: the value and a tape holding a copy of it.
            #[inline]
            pub fn forward<S, T, D>(x: &ArrayBase<S, D>) -> (Array<T, D>, Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>,) + use<S, T, D>>)
            where
                S: Data<Elem = T>,
                T: Real,
                D: Dimension,
            {
                let y = super::$f(x);
                let saved = y.clone();
                (y, Tape::with_heap_bytes(bytes(&saved), move |d: Array<T, D>| ($vjp(&saved, &d),)))
            }

            /// Forward mode: the value and its tangent along `t` (no tangent: zeros).
            #[inline]
            pub fn jvp<S, T, D>(x: &ArrayBase<S, D>, tangents: (Option<&Array<T, D>>,)) -> (Array<T, D>, Array<T, D>)
            where
                S: Data<Elem = T>,
                T: Real,
                D: Dimension,
            {
                let y = super::$f(x);
                let t = match tangents.0 {
                    Some(t) => $jvp(&y, t),
                    None => Array::zeros(x.raw_dim()),
                };
                (y, t)
            }
        }
    )*};
}

/// Heap bytes of an owned array kept on a tape.
fn bytes<A, D: Dimension>(a: &Array<A, D>) -> usize {
    a.len() * core::mem::size_of::<A>()
}

// `f => pullback / pushforward`. An elementwise op's Jacobian is diagonal and softmax's
// is symmetric, so each is its own transpose: the pullback at `d = t` is the
// pushforward. log_softmax's (`I − 1pᵀ`) is not.
saves_input!(gelu => gelu_vjp / gelu_vjp, gelu_exact => gelu_exact_vjp / gelu_exact_vjp, silu => silu_vjp / silu_vjp, softplus => softplus_vjp / softplus_vjp, ln => ln_vjp / ln_vjp);
saves_output!(sigmoid => sigmoid_vjp / sigmoid_vjp, tanh => tanh_vjp / tanh_vjp, exp => exp_vjp / exp_vjp, sqrt => sqrt_vjp / sqrt_vjp, softmax => softmax_vjp / softmax_vjp, log_softmax => log_softmax_vjp / log_softmax_jvp);

#[doc(hidden)]
pub struct relu {}
impl relu {
    /// Forward pass: the value and a tape holding only the mask `x > 0`, one byte per
    /// element (a quarter of an f32 copy of `y`). At `x = 0` the mask is false: the
    /// minimum-norm subgradient 0.
    #[inline]
    pub fn forward<S, T, D>(
        x: &ArrayBase<S, D>,
    ) -> (
        Array<T, D>,
        Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>,) + use<S, T, D>>,
    )
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let y = super::relu(x);
        let mask: Array<bool, D> = y.mapv(|v| v > T::zero());
        let heap = bytes(&mask);
        (
            y,
            Tape::with_heap_bytes(heap, move |mut d: Array<T, D>| {
                // A select rather than a conditional store, so the loop vectorises
                // (and a NaN in `d` where the mask is off still becomes 0).
                if d.shape() != mask.shape() {
                    panic!(
                        "relu pullback: the cotangent is {} but the value is {}",
                        super::shape_str(d.shape()),
                        super::shape_str(mask.shape())
                    );
                }
                let keep = |d: &mut T, m: bool| *d = if m { *d } else { T::zero() };
                match (d.as_slice_mut(), mask.as_slice()) {
                    (Some(ds), Some(ms)) => ds.iter_mut().zip(ms).for_each(|(d, &m)| keep(d, m)),
                    _ => ndarray::Zip::from(&mut d)
                        .and(&mask)
                        .for_each(|d, &m| keep(d, m)),
                }
                (d,)
            }),
        )
    }
}

impl relu {
    /// Forward mode: the value and its tangent along `t`, `t` where `x > 0` and 0
    /// elsewhere (the pullback's mask: 0 at a NaN input, as the gradient is there).
    #[inline]
    pub fn jvp<S, T, D>(
        x: &ArrayBase<S, D>,
        tangents: (Option<&Array<T, D>>,),
    ) -> (Array<T, D>, Array<T, D>)
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let y = super::relu(x);
        let t = match tangents.0 {
            Some(t) => super::relu_vjp(x, t),
            None => Array::zeros(x.raw_dim()),
        };
        (y, t)
    }
}

#[doc(hidden)]
pub struct leaky_relu {}
impl leaky_relu {
    /// Forward pass: the value and a tape holding a copy of `x` (the slope is a constant).
    #[inline]
    pub fn forward<S, T, D>(
        x: &ArrayBase<S, D>,
        slope: T,
    ) -> (
        Array<T, D>,
        Tape<impl FnOnce(Array<T, D>) -> (Array<T, D>, Inactive) + use<S, T, D>>,
    )
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let saved = x.to_owned();
        (
            super::leaky_relu(x, slope),
            Tape::with_heap_bytes(bytes(&saved), move |d: Array<T, D>| {
                (leaky_relu_vjp(&saved, slope, &d), Inactive)
            }),
        )
    }
}

#[doc(hidden)]
pub struct softmax_cross_entropy {}
impl softmax_cross_entropy {
    /// Forward pass: the loss, computed together with its gradient in one fused pass
    /// over the logits; the tape keeps that gradient (B×C), and the backward pass only
    /// scales it by the output cotangent. Same memory as keeping the logits, and the
    /// softmax is never recomputed.
    #[inline]
    pub fn forward<S, T>(
        logits: &ArrayBase<S, Ix2>,
        labels: &[usize],
        opts: XentOptions<T>,
    ) -> (
        T,
        Tape<impl FnOnce(T) -> (Array2<T>, Inactive, Inactive) + use<S, T>>,
    )
    where
        S: Data<Elem = T>,
        T: Real,
    {
        let mut grad = Array2::zeros(logits.raw_dim());
        let loss = softmax_cross_entropy_with_grad(logits, labels, opts, T::one(), &mut grad);
        (
            loss,
            Tape::with_heap_bytes(bytes(&grad), move |d: T| {
                if d != T::one() {
                    grad.mapv_inplace(|g| crate::rules::scalar::strong_mul(d, g));
                }
                (grad, Inactive, Inactive)
            }),
        )
    }

    /// Forward mode: the loss and its tangent along `t`, `⟨∂L/∂logits, t⟩` (the fused
    /// pass's gradient paired with the tangent; the loss is a scalar).
    #[inline]
    pub fn jvp<S, T>(
        logits: &ArrayBase<S, Ix2>,
        labels: &[usize],
        opts: XentOptions<T>,
        tangents: (Option<&Array2<T>>, Option<Inactive>, Option<Inactive>),
    ) -> (T, T)
    where
        S: Data<Elem = T>,
        T: Real,
    {
        let Some(t) = tangents.0 else {
            return (softmax_cross_entropy(logits, labels, opts), T::zero());
        };
        let mut grad = Array2::zeros(logits.raw_dim());
        let loss = softmax_cross_entropy_with_grad(logits, labels, opts, T::one(), &mut grad);
        crate::rules::tangent::check_same("softmax_cross_entropy", grad.shape(), t.shape());
        let tangent = ndarray::Zip::from(&grad)
            .and(t)
            .fold(T::zero(), |s, &g, &t| {
                s + crate::rules::scalar::strong_mul(t, g)
            });
        (loss, tangent)
    }
}

#[doc(hidden)]
pub struct bce_with_logits {}
impl bce_with_logits {
    /// Forward pass: the loss and a tape holding copies of logits and targets.
    #[inline]
    pub fn forward<S1, S2, T, D>(
        x: &ArrayBase<S1, D>,
        y: &ArrayBase<S2, D>,
    ) -> (
        T,
        Tape<impl FnOnce(T) -> (Array<T, D>, Array<T, D>) + use<S1, S2, T, D>>,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let (xs, ys) = (x.to_owned(), y.to_owned());
        (
            super::bce_with_logits(x, y),
            Tape::with_heap_bytes(bytes(&xs) + bytes(&ys), move |d: T| {
                bce_with_logits_vjp(&xs, &ys, d)
            }),
        )
    }
}

#[doc(hidden)]
pub struct mse {}
impl mse {
    /// Forward pass: the loss and a tape holding copies of prediction and target.
    #[inline]
    pub fn forward<S1, S2, T, D>(
        pred: &ArrayBase<S1, D>,
        target: &ArrayBase<S2, D>,
    ) -> (
        T,
        Tape<impl FnOnce(T) -> (Array<T, D>, Array<T, D>) + use<S1, S2, T, D>>,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let (p, t) = (pred.to_owned(), target.to_owned());
        (
            super::mse(pred, target),
            Tape::with_heap_bytes(bytes(&p) + bytes(&t), move |d: T| mse_vjp(&p, &t, d)),
        )
    }
}

#[doc(hidden)]
pub struct matmul {}
impl matmul {
    /// Forward pass: `a·b` (batched over leading axes as [`super::matmul`]) and a tape
    /// holding copies of both. The backward pass computes both products (`d·bᵀ`,
    /// `aᵀ·d`); write `a.dot(&b)` where only one side is differentiated, and `#[grad]`
    /// computes only that one.
    #[inline]
    pub fn forward<S1, S2, T, D1, D2>(
        a: &ArrayBase<S1, D1>,
        b: &ArrayBase<S2, D2>,
    ) -> (
        Array<T, Broadcast<D1, D2>>,
        Tape<
            impl FnOnce(Array<T, Broadcast<D1, D2>>) -> (Array<T, D1>, Array<T, D2>)
            + use<S1, S2, T, D1, D2>,
        >,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = T>,
        T: Real,
        D1: Dimension + DimMax<D2>,
        D2: Dimension,
    {
        let (a_saved, b_saved) = (a.to_owned(), b.to_owned());
        (
            super::matmul(a, b),
            Tape::with_heap_bytes(
                bytes(&a_saved) + bytes(&b_saved),
                move |d: Array<T, Broadcast<D1, D2>>| matmul_vjp(&a_saved, &b_saved, &d),
            ),
        )
    }
}

#[doc(hidden)]
pub struct matvec {}
impl matvec {
    /// Forward pass: `a·x` and a tape holding copies of both.
    #[inline]
    pub fn forward<S1, S2, T>(
        a: &ArrayBase<S1, Ix2>,
        x: &ArrayBase<S2, Ix1>,
    ) -> (
        Array1<T>,
        Tape<impl FnOnce(Array1<T>) -> (Array2<T>, Array1<T>) + use<S1, S2, T>>,
    )
    where
        S1: Data<Elem = T>,
        S2: Data<Elem = T>,
        T: Real,
    {
        let (a_saved, x_saved) = (a.to_owned(), x.to_owned());
        (
            super::matvec(a, x),
            Tape::with_heap_bytes(bytes(&a_saved) + bytes(&x_saved), move |d: Array1<T>| {
                matvec_vjp(&a_saved, &x_saved, &d)
            }),
        )
    }
}

macro_rules! broadcasting {
    ($($f:ident => $vjp:ident saves $($saved:ident)?),* $(,)?) => {$(
        #[doc(hidden)]
        pub struct $f {}
        impl $f {
            /// Forward pass: the broadcast result and a tape with what the rule reads.
            #[inline]
            #[allow(unused_variables)]
            pub fn forward<S1, S2, T, D1, D2>(
                a: &ArrayBase<S1, D1>,
                b: &ArrayBase<S2, D2>,
            ) -> (Array<T, <D1 as ndarray::DimMax<D2>>::Output>, Tape<impl FnOnce(Array<T, <D1 as ndarray::DimMax<D2>>::Output>) -> (Array<T, D1>, Array<T, D2>) + use<S1, S2, T, D1, D2>>)
            where
                S1: Data<Elem = T>,
                S2: Data<Elem = T>,
                T: Real,
                D1: Dimension + ndarray::DimMax<D2>,
                D2: Dimension,
            {
                let (a_dim, b_dim) = (a.raw_dim(), b.raw_dim());
                broadcasting!(@body $f $vjp a b a_dim b_dim $($saved)?)
            }
        }
    )*};
    (@body $f:ident $vjp:ident $a:ident $b:ident $ad:ident $bd:ident) => {
        (super::$f($a, $b), Tape::new(move |d: Array<T, _>| $vjp(&$ad, &$bd, &d)))
    };
    (@body $f:ident $vjp:ident $a:ident $b:ident $ad:ident $bd:ident inputs) => {{
        let (a_saved, b_saved) = ($a.to_owned(), $b.to_owned());
        (super::$f($a, $b), Tape::with_heap_bytes(bytes(&a_saved) + bytes(&b_saved), move |d: Array<T, _>| $vjp(&a_saved, &b_saved, &d)))
    }};
}

broadcasting!(add => add_vjp saves, sub => sub_vjp saves, mul => mul_vjp saves inputs, div => div_vjp saves inputs);

#[doc(hidden)]
pub struct sum {}
impl sum {
    /// Forward pass: `Σ x` and a tape holding `x`'s shape.
    #[inline]
    pub fn forward<S, T, D>(
        x: &ArrayBase<S, D>,
    ) -> (T, Tape<impl FnOnce(T) -> (Array<T, D>,) + use<S, T, D>>)
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let dim = x.raw_dim();
        (super::sum(x), Tape::new(move |d: T| (sum_vjp(&dim, d),)))
    }
}

#[doc(hidden)]
pub struct mean {}
impl mean {
    /// Forward pass: the mean of `x` and a tape holding `x`'s shape.
    #[inline]
    pub fn forward<S, T, D>(
        x: &ArrayBase<S, D>,
    ) -> (T, Tape<impl FnOnce(T) -> (Array<T, D>,) + use<S, T, D>>)
    where
        S: Data<Elem = T>,
        T: Real,
        D: Dimension,
    {
        let dim = x.raw_dim();
        (super::mean(x), Tape::new(move |d: T| (mean_vjp(&dim, d),)))
    }
}

macro_rules! along_axis {
    ($($f:ident => $vjp:ident),*) => {$(
        #[doc(hidden)]
        pub struct $f {}
        impl $f {
            /// Forward pass: the reduction along `axis` and a tape holding `x`'s shape.
            #[inline]
            pub fn forward<S, T, D>(x: &ArrayBase<S, D>, axis: Axis) -> (Array<T, D::Smaller>, Tape<impl FnOnce(Array<T, D::Smaller>) -> (Array<T, D>, Inactive) + use<S, T, D>>)
            where
                S: Data<Elem = T>,
                T: Real,
                D: Dimension + RemoveAxis,
            {
                let dim = x.raw_dim();
                (super::$f(x, axis), Tape::new(move |d: Array<T, D::Smaller>| ($vjp(&dim, axis, &d), Inactive)))
            }
        }
    )*};
}

along_axis!(sum_axis => sum_axis_vjp, mean_axis => mean_axis_vjp);
