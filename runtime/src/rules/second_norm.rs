//! Second order of the normalisations over the last axis, `layer_norm` and `rms_norm`:
//! their tangents and the pullbacks of those tangents, for `f_hvp` of array code that
//! calls them (`docs/DESIGN.md`, "Second order").
//!
//! Per row of `n` values, LayerNorm (Ba, Kiros & Hinton 2016, eq. 4) is
//! `y = γ ⊙ x̂ + β` with `x̂ = (x − μ)/σ`, `σ = √(mean((x − μ)²) + ε)`. Its Jacobian in `x`
//! is `J = (I − 11ᵀ/n − x̂x̂ᵀ/n)/σ`, symmetric, so
//! `t_y = t_γ ⊙ x̂ + γ ⊙ J·t_x + t_β`, and the pullback into `t_x` is `J·(γ ⊙ d)`. The
//! pullback into `x` is `J·(t_γ ⊙ d)` plus the derivative of `⟨e, J·t⟩` (`e = γ ⊙ d`,
//! `t = t_x`) in `x`, which, differentiating through `x − μ` and `σ`, is `G − mean(G)`
//! with `G = [(3 m_t m_e − mean(e ⊙ t) + ē t̄) x̂ − m_e t − m_t e] / σ²`,
//! `m_t = mean(x̂ ⊙ t)`, `m_e = mean(x̂ ⊙ e)`.
//!
//! RMSNorm (Zhang & Sennrich 2019) is `y = γ ⊙ x̂` with `x̂ = x/r`,
//! `r = √(mean(x²) + ε)`, `J = (I − x̂x̂ᵀ/n)/r`, and the same derivation without the
//! centring gives `G = [(3 m_t m_e − mean(e ⊙ t)) x̂ − m_e t − m_t e] / r²` (no `− mean(G)`).
//!
//! A tangent that is a float is a constant's (0): these functions read it as zeros.

use super::tensor::{Dyn, DynView, ShapeOf, Value};
use crate::kernels::Real;
use ndarray::ArrayD;
use num_traits::{NumCast, Zero};

/// A value as a row-major array of `like`'s shape: itself, or zeros for a float (a
/// constant's tangent).
fn rows_of<V: Value>(op: &str, v: &V, like: &[usize]) -> ArrayD<V::Elem> {
    match v.dyn_view() {
        DynView::Array(a) => {
            assert!(
                a.shape() == like,
                "{op} (second order): operands of shapes {} and {} differ",
                crate::ops::shape_str(like),
                crate::ops::shape_str(a.shape())
            );
            a.as_standard_layout().into_owned()
        }
        DynView::Scalar(_) => ArrayD::zeros(like),
    }
}

/// A per-feature vector (`γ`, `t_γ`, `t_β`) of length `n`, zeros for a float.
fn feature<V: Value>(op: &str, v: &V, n: usize) -> Vec<V::Elem> {
    match v.dyn_view() {
        DynView::Array(a) => {
            assert!(
                a.len() == n && a.ndim() == 1,
                "{op} (second order): a gain of shape {} for rows of {n}",
                crate::ops::shape_str(a.shape())
            );
            a.iter().copied().collect()
        }
        DynView::Scalar(_) => vec![V::Elem::zero(); n],
    }
}

/// The shared per-row pass: for each row, `(x̂, 1/σ)` and the row's slices of the
/// other operands, into `f(x̂, inv, rows.., out_row)`.
struct Rows<T> {
    n: usize,
    xhat: Vec<T>,
    inv: Vec<T>,
}

fn normalise<T: Real>(x: &ArrayD<T>, eps: T, centre: bool) -> Rows<T> {
    let n = x.shape().last().copied().unwrap_or(1).max(1);
    let xs = x.as_slice().expect("standard layout");
    let nf: T = NumCast::from(n).expect("a row length");
    let mut xhat = vec![T::zero(); xs.len()];
    let mut inv = Vec::with_capacity(xs.len() / n);
    for (row, out) in xs.chunks(n).zip(xhat.chunks_mut(n)) {
        let mu = if centre {
            row.iter().fold(T::zero(), |s, &v| s + v) / nf
        } else {
            T::zero()
        };
        let var = row.iter().fold(T::zero(), |s, &v| s + (v - mu) * (v - mu)) / nf;
        let r = T::one() / (var + eps).sqrt();
        for (o, &v) in out.iter_mut().zip(row) {
            *o = (v - mu) * r;
        }
        inv.push(r);
    }
    Rows { n, xhat, inv }
}

fn mean<T: Real>(a: &[T]) -> T {
    let n: T = NumCast::from(a.len()).expect("a row length");
    a.iter().fold(T::zero(), |s, &v| s + v) / n
}

fn mean_prod<T: Real>(a: &[T], b: &[T]) -> T {
    let n: T = NumCast::from(a.len()).expect("a row length");
    a.iter().zip(b).fold(T::zero(), |s, (&a, &b)| s + a * b) / n
}

/// `J·v` for one row: `(v − v̄ − x̂·mean(x̂ ⊙ v))/σ` (without `v̄` for RMSNorm).
fn jvp_row<T: Real>(xhat: &[T], inv: T, v: &[T], centre: bool, out: &mut [T]) {
    let vbar = if centre { mean(v) } else { T::zero() };
    let m = mean_prod(xhat, v);
    for ((o, &v), &h) in out.iter_mut().zip(v).zip(xhat) {
        *o = (v - vbar - h * m) * inv;
    }
}

/// The derivative of `⟨e, J·t⟩` in `x`, for one row, added to `out`.
fn second_row<T: Real>(xhat: &[T], inv: T, t: &[T], e: &[T], centre: bool, out: &mut [T]) {
    let (mt, me) = (mean_prod(xhat, t), mean_prod(xhat, e));
    let three: T = NumCast::from(3.0).expect("3");
    let mut k = three * mt * me - mean_prod(e, t);
    if centre {
        k += mean(e) * mean(t);
    }
    let s = inv * inv;
    let g: Vec<T> = xhat
        .iter()
        .zip(t)
        .zip(e)
        .map(|((&h, &t), &e)| (k * h - me * t - mt * e) * s)
        .collect();
    let gbar = if centre { mean(&g) } else { T::zero() };
    for (o, g) in out.iter_mut().zip(g) {
        *o = *o + g - gbar;
    }
}

macro_rules! norm_second {
    ($centre:expr, $name:literal,
     $tangent:ident, $tangent_x:ident, $tangent_g:ident, $tangent_tx:ident, $tangent_tg:ident) => {
        #[doc = concat!("The pullback of [`", stringify!($tangent), "`] into `x`: `J·(t_γ ⊙ d)` plus the second-order term (module docs).")]
        ///
        /// # Panics
        /// If the shapes differ.
        pub fn $tangent_x<X: Value, G: Value<Elem = X::Elem>, TX: Value<Elem = X::Elem>, TG: Value<Elem = X::Elem>, C: Value<Elem = X::Elem>>(
            x: &X,
            g: &G,
            eps: &X::Elem,
            tx: &TX,
            tg: &TG,
            d: &C,
        ) -> X::Cot {
            let shape = x.shape_of();
            let xa = rows_of($name, x, &dims(x));
            let Rows { n, xhat, inv } = normalise(&xa, *eps, $centre);
            let (g, tg) = (feature($name, g, n), feature($name, tg, n));
            let (t, d) = (rows_of($name, tx, xa.shape()), rows_of($name, d, xa.shape()));
            let (ts, ds) = (t.as_slice().expect("standard layout"), d.as_slice().expect("standard layout"));
            let mut out = ArrayD::zeros(xa.shape());
            let os = out.as_slice_mut().expect("standard layout");
            let (mut a, mut e) = (vec![X::Elem::zero(); n], vec![X::Elem::zero(); n]);
            for ((((o, h), t), d), &inv) in os
                .chunks_mut(n)
                .zip(xhat.chunks(n))
                .zip(ts.chunks(n))
                .zip(ds.chunks(n))
                .zip(&inv)
            {
                for k in 0..n {
                    a[k] = tg[k] * d[k];
                    e[k] = g[k] * d[k];
                }
                jvp_row(h, inv, &a, $centre, o);
                second_row(h, inv, t, &e, $centre, o);
            }
            shape.fit(Dyn::Array(out))
        }

        #[doc = concat!("The pullback of [`", stringify!($tangent), "`] into `γ`: `Σ_rows d ⊙ J·t_x`.")]
        ///
        /// # Panics
        /// If the shapes differ.
        pub fn $tangent_g<X: Value, G: Value<Elem = X::Elem>, TX: Value<Elem = X::Elem>, C: Value<Elem = X::Elem>>(
            x: &X,
            g: &G,
            eps: &X::Elem,
            tx: &TX,
            d: &C,
        ) -> G::Cot {
            let xa = rows_of($name, x, &dims(x));
            let Rows { n, xhat, inv } = normalise(&xa, *eps, $centre);
            let (t, d) = (rows_of($name, tx, xa.shape()), rows_of($name, d, xa.shape()));
            let (ts, ds) = (t.as_slice().expect("standard layout"), d.as_slice().expect("standard layout"));
            let mut sum = vec![X::Elem::zero(); n];
            let mut u = vec![X::Elem::zero(); n];
            for (((h, t), d), &inv) in xhat.chunks(n).zip(ts.chunks(n)).zip(ds.chunks(n)).zip(&inv) {
                jvp_row(h, inv, t, $centre, &mut u);
                for k in 0..n {
                    sum[k] += d[k] * u[k];
                }
            }
            g.shape_of().fit(Dyn::Array(ArrayD::from_shape_vec(vec![n], sum).expect("n")))
        }

        #[doc = concat!("The pullback of [`", stringify!($tangent), "`] into `t_x`: `J·(γ ⊙ d)` (`J` is symmetric).")]
        ///
        /// # Panics
        /// If the shapes differ.
        pub fn $tangent_tx<X: Value, G: Value<Elem = X::Elem>, TX: Value<Elem = X::Elem>, C: Value<Elem = X::Elem>>(
            x: &X,
            g: &G,
            eps: &X::Elem,
            tx: &TX,
            d: &C,
        ) -> TX::Cot {
            let xa = rows_of($name, x, &dims(x));
            let Rows { n, xhat, inv } = normalise(&xa, *eps, $centre);
            let g = feature($name, g, n);
            let d = rows_of($name, d, xa.shape());
            let ds = d.as_slice().expect("standard layout");
            let mut out = ArrayD::zeros(xa.shape());
            let os = out.as_slice_mut().expect("standard layout");
            let mut e = vec![X::Elem::zero(); n];
            for (((o, h), d), &inv) in os.chunks_mut(n).zip(xhat.chunks(n)).zip(ds.chunks(n)).zip(&inv) {
                for k in 0..n {
                    e[k] = g[k] * d[k];
                }
                jvp_row(h, inv, &e, $centre, o);
            }
            tx.shape_of().fit(Dyn::Array(out))
        }

        #[doc = concat!("The pullback of [`", stringify!($tangent), "`] into `t_γ`: `Σ_rows d ⊙ x̂`.")]
        ///
        /// # Panics
        /// If the shapes differ.
        pub fn $tangent_tg<X: Value, TG: Value<Elem = X::Elem>, C: Value<Elem = X::Elem>>(
            x: &X,
            eps: &X::Elem,
            tg: &TG,
            d: &C,
        ) -> TG::Cot {
            let xa = rows_of($name, x, &dims(x));
            let Rows { n, xhat, .. } = normalise(&xa, *eps, $centre);
            let d = rows_of($name, d, xa.shape());
            let ds = d.as_slice().expect("standard layout");
            let mut sum = vec![X::Elem::zero(); n];
            for (h, d) in xhat.chunks(n).zip(ds.chunks(n)) {
                for k in 0..n {
                    sum[k] += d[k] * h[k];
                }
            }
            tg.shape_of().fit(Dyn::Array(ArrayD::from_shape_vec(vec![n], sum).expect("n")))
        }
    };
}

norm_second!(
    true,
    "layer_norm",
    layer_norm_tangent,
    layer_norm_tangent_x,
    layer_norm_tangent_g,
    layer_norm_tangent_tx,
    layer_norm_tangent_tg
);
norm_second!(
    false,
    "rms_norm",
    rms_norm_tangent,
    rms_norm_tangent_x,
    rms_norm_tangent_g,
    rms_norm_tangent_tx,
    rms_norm_tangent_tg
);

/// `t_γ ⊙ x̂ + γ ⊙ J·t_x`, row by row, as a row-major array of `x`'s shape.
fn tangent_rows<
    X: Value,
    G: Value<Elem = X::Elem>,
    TX: Value<Elem = X::Elem>,
    TG: Value<Elem = X::Elem>,
>(
    name: &str,
    centre: bool,
    x: &X,
    g: &G,
    eps: &X::Elem,
    tx: &TX,
    tg: &TG,
) -> (ArrayD<X::Elem>, usize) {
    let xa = rows_of(name, x, &dims(x));
    let Rows { n, xhat, inv } = normalise(&xa, *eps, centre);
    let (g, tg) = (feature(name, g, n), feature(name, tg, n));
    let t = rows_of(name, tx, xa.shape());
    let ts = t.as_slice().expect("standard layout");
    let mut out = ArrayD::zeros(xa.shape());
    let os = out.as_slice_mut().expect("standard layout");
    for (((o, h), t), &inv) in os
        .chunks_mut(n)
        .zip(xhat.chunks(n))
        .zip(ts.chunks(n))
        .zip(&inv)
    {
        jvp_row(h, inv, t, centre, o);
        for (k, o) in o.iter_mut().enumerate() {
            *o = g[k] * *o + tg[k] * h[k];
        }
    }
    (out, n)
}

/// `rms_norm`'s tangent over the last axis: `t_γ ⊙ x̂ + γ ⊙ J·t_x` (module docs).
///
/// # Panics
/// If a tangent's shape is not its value's.
pub fn rms_norm_tangent<
    X: Value,
    G: Value<Elem = X::Elem>,
    TX: Value<Elem = X::Elem>,
    TG: Value<Elem = X::Elem>,
>(
    x: &X,
    g: &G,
    eps: &X::Elem,
    tx: &TX,
    tg: &TG,
) -> X::Cot {
    let (out, _) = tangent_rows("rms_norm", false, x, g, eps, tx, tg);
    x.shape_of().fit(Dyn::Array(out))
}

/// `layer_norm`'s tangent over the last axis: `t_γ ⊙ x̂ + γ ⊙ J·t_x + t_β` (module docs).
///
/// # Panics
/// If a tangent's shape is not its value's.
pub fn layer_norm_tangent<
    X: Value,
    G: Value<Elem = X::Elem>,
    TX: Value<Elem = X::Elem>,
    TG: Value<Elem = X::Elem>,
    TB: Value<Elem = X::Elem>,
>(
    x: &X,
    g: &G,
    eps: &X::Elem,
    tx: &TX,
    tg: &TG,
    tb: &TB,
) -> X::Cot {
    let (mut out, n) = tangent_rows("layer_norm", true, x, g, eps, tx, tg);
    let tb = feature("layer_norm", tb, n);
    for row in out.as_slice_mut().expect("standard layout").chunks_mut(n) {
        for (o, b) in row.iter_mut().zip(&tb) {
            *o += *b;
        }
    }
    x.shape_of().fit(Dyn::Array(out))
}

/// The pullback of [`layer_norm_tangent`] into `t_β`: `Σ_rows d`.
///
/// # Panics
/// If `d` is not an array.
pub fn layer_norm_tangent_tb<TB: Value, C: Value<Elem = TB::Elem>>(tb: &TB, d: &C) -> TB::Cot {
    let DynView::Array(d) = d.dyn_view() else {
        panic!("layer_norm (second order): the cotangent is a float")
    };
    let n = d.shape().last().copied().unwrap_or(1).max(1);
    let mut sum = vec![TB::Elem::zero(); n];
    for row in d
        .as_standard_layout()
        .as_slice()
        .expect("standard layout")
        .chunks(n)
    {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
    tb.shape_of()
        .fit(Dyn::Array(ArrayD::from_shape_vec(vec![n], sum).expect("n")))
}

fn dims<V: Value>(v: &V) -> Vec<usize> {
    match v.dyn_view() {
        DynView::Array(a) => a.shape().to_vec(),
        DynView::Scalar(_) => {
            panic!("a normalisation (second order) needs an array, found a float")
        }
    }
}
