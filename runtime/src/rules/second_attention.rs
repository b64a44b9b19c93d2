//! Second order of scaled dot-product attention (`ops::attention`): its tangent and the
//! pullbacks of that tangent, for `f_hvp` of array code that calls it
//! (`docs/DESIGN.md`, "Second order").
//!
//! Per batch and head, with `s = 1/√d`: `S = s·Q·Kᵀ` (−∞ above the diagonal when
//! causal), `P = softmax(S)` by rows, `O = P·V` (Vaswani et al. 2017, eq. 1). Its
//! tangent along `(t_Q, t_K, t_V)` is
//!
//! - `t_S = s·(t_Q·Kᵀ + Q·t_Kᵀ)`, `r_i = Σ_j P_ij t_S_ij`, `t_P = P ⊙ (t_S − r)`,
//! - `t_O = t_P·V + P·t_V`.
//!
//! Its pullback, a cotangent `D` on `t_O`, is that computation run backwards: `A = D·Vᵀ`,
//! `d_t_S = P ⊙ (A − rowsum(A ⊙ P))`, `d_P = D·t_Vᵀ + A ⊙ (t_S − r) − rowsum(A ⊙ P) ⊙ t_S`,
//! then `d_S = P ⊙ (d_P − rowsum(d_P ⊙ P))`; into the tangents `d_t_Q = s·d_t_S·K`,
//! `d_t_K = s·d_t_Sᵀ·Q`, `d_t_V = Pᵀ·D` (the attention's own VJP of `D`), into the
//! values `d_Q = s·(d_S·K + d_t_S·t_K)`, `d_K = s·(d_Sᵀ·Q + d_t_Sᵀ·t_Q)`,
//! `d_V = t_Pᵀ·D`.
//!
//! Unlike the first-order kernels these form each head's `T×T` matrices (second order
//! is not the training hot path); each pullback recomputes the forward of its head.
//! A tangent that is a float is a constant's (0).

use super::tensor::{Dyn, DynView, ShapeOf, Value};
use crate::kernels::Real;
use ndarray::{Array2, Array4, ArrayView2, ArrayView4, Axis, Ix4};
use num_traits::NumCast;

fn four<'a, V: Value>(
    what: &str,
    v: &'a V,
    like: Option<&[usize]>,
) -> Option<ArrayView4<'a, V::Elem>> {
    match v.dyn_view() {
        DynView::Array(a) => {
            let a = a.into_dimensionality::<Ix4>().unwrap_or_else(|a| {
                panic!("attention (second order): {what} must be [B, H, T, d], found {a}")
            });
            if let Some(like) = like {
                assert!(
                    a.shape() == like,
                    "attention (second order): {what} is {} but q is {}",
                    crate::ops::shape_str(a.shape()),
                    crate::ops::shape_str(like)
                );
            }
            Some(a)
        }
        DynView::Scalar(_) => None,
    }
}

/// Head `h` of batch `b`: a `[T, d]` view.
fn head_of<'a, T>(a: &ArrayView4<'a, T>, b: usize, h: usize) -> ArrayView2<'a, T> {
    (*a).index_axis_move(Axis(0), b).index_axis_move(Axis(0), h)
}

/// The values and tangents as `[B, H, T, d]` views (a constant's tangent absent), and
/// their shape.
///
/// # Panics
/// If a shape is not `q`'s, or `q` is not `[B, H, T, d]`.
#[allow(clippy::type_complexity)]
fn operands<
    'a,
    Q: Value,
    K: Value<Elem = Q::Elem>,
    V: Value<Elem = Q::Elem>,
    TQ: Value<Elem = Q::Elem>,
    TK: Value<Elem = Q::Elem>,
    TV: Value<Elem = Q::Elem>,
>(
    q: &'a Q,
    k: &'a K,
    v: &'a V,
    tq: &'a TQ,
    tk: &'a TK,
    tv: &'a TV,
) -> (
    [ArrayView4<'a, Q::Elem>; 3],
    [Option<ArrayView4<'a, Q::Elem>>; 3],
    Vec<usize>,
) {
    let q4 = four("q", q, None).expect("q is an array");
    let sh = q4.shape().to_vec();
    let k4 = four("k", k, Some(&sh)).expect("k is an array");
    let v4 = four("v", v, Some(&sh)).expect("v is an array");
    let tangents = [
        four("t_q", tq, Some(&sh)),
        four("t_k", tk, Some(&sh)),
        four("t_v", tv, Some(&sh)),
    ];
    ([q4, k4, v4], tangents, sh)
}

/// What one head's tangent pass keeps for its pullback.
struct Head<T> {
    p: Array2<T>,
    ts: Array2<T>,
    r: Vec<T>,
    tp: Array2<T>,
}

fn head_forward<T: Real>(
    q: ArrayView2<T>,
    k: ArrayView2<T>,
    causal: bool,
    tq: Option<ArrayView2<T>>,
    tk: Option<ArrayView2<T>>,
) -> Head<T> {
    let (t, d) = q.dim();
    let s = T::one() / <T as NumCast>::from(d).expect("a width").sqrt();
    let mut p = q.dot(&k.t()).mapv(|v| v * s);
    for i in 0..t {
        let keep = if causal { i + 1 } else { t };
        let m = (0..keep).fold(T::neg_infinity(), |m, j| m.max(p[[i, j]]));
        let mut z = T::zero();
        for j in 0..t {
            let e = if j < keep && m.is_finite() {
                (p[[i, j]] - m).exp()
            } else {
                T::zero()
            };
            p[[i, j]] = e;
            z += e;
        }
        if z > T::zero() {
            p.row_mut(i).mapv_inplace(|e| e / z);
        }
    }
    let mut ts = Array2::zeros((t, t));
    if let Some(tq) = tq {
        ts = ts + tq.dot(&k.t());
    }
    if let Some(tk) = tk {
        ts = ts + q.dot(&tk.t());
    }
    ts.mapv_inplace(|v| v * s);
    let r: Vec<T> = (0..t)
        .map(|i| {
            p.row(i)
                .iter()
                .zip(ts.row(i))
                .fold(T::zero(), |a, (&p, &t)| a + p * t)
        })
        .collect();
    let mut tp = p.clone();
    for i in 0..t {
        for j in 0..t {
            tp[[i, j]] = p[[i, j]] * (ts[[i, j]] - r[i]);
        }
    }
    Head { p, ts, r, tp }
}

/// The pullbacks of one head's tangent: `[d_Q, d_K, d_V, d_t_Q, d_t_K, d_t_V]`.
#[allow(clippy::too_many_arguments)]
fn head_backward<T: Real>(
    q: ArrayView2<T>,
    k: ArrayView2<T>,
    v: ArrayView2<T>,
    h: &Head<T>,
    tq: Option<ArrayView2<T>>,
    tk: Option<ArrayView2<T>>,
    tv: Option<ArrayView2<T>>,
    dd: ArrayView2<T>,
) -> [Array2<T>; 6] {
    let (t, d) = q.dim();
    let s = T::one() / <T as NumCast>::from(d).expect("a width").sqrt();
    let a = dd.dot(&v.t());
    let mut dts = Array2::zeros((t, t));
    let mut dp = match tv {
        Some(tv) => dd.dot(&tv.t()),
        None => Array2::zeros((t, t)),
    };
    for i in 0..t {
        let ap = a
            .row(i)
            .iter()
            .zip(h.p.row(i))
            .fold(T::zero(), |s, (&a, &p)| s + a * p);
        for j in 0..t {
            dts[[i, j]] = h.p[[i, j]] * (a[[i, j]] - ap);
            dp[[i, j]] = dp[[i, j]] + a[[i, j]] * (h.ts[[i, j]] - h.r[i]) - ap * h.ts[[i, j]];
        }
    }
    let mut ds = Array2::zeros((t, t));
    for i in 0..t {
        let pp = dp
            .row(i)
            .iter()
            .zip(h.p.row(i))
            .fold(T::zero(), |s, (&a, &p)| s + a * p);
        for j in 0..t {
            ds[[i, j]] = h.p[[i, j]] * (dp[[i, j]] - pp);
        }
    }
    let mut dq = ds.dot(&k);
    let mut dk = ds.t().dot(&q);
    if let Some(tk) = tk {
        dq = dq + dts.dot(&tk);
    }
    if let Some(tq) = tq {
        dk = dk + dts.t().dot(&tq);
    }
    dq.mapv_inplace(|v| v * s);
    dk.mapv_inplace(|v| v * s);
    let dv = h.tp.t().dot(&dd);
    let dtq = dts.dot(&k).mapv(|v| v * s);
    let dtk = dts.t().dot(&q).mapv(|v| v * s);
    let dtv = h.p.t().dot(&dd);
    [dq, dk, dv, dtq, dtk, dtv]
}

/// `attention`'s tangent along `(t_Q, t_K, t_V)`, `[B, H, T, d]` (module docs).
///
/// # Panics
/// If a shape is not `q`'s, or `q` is not `[B, H, T, d]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_tangent<
    Q: Value,
    K: Value<Elem = Q::Elem>,
    V: Value<Elem = Q::Elem>,
    TQ: Value<Elem = Q::Elem>,
    TK: Value<Elem = Q::Elem>,
    TV: Value<Elem = Q::Elem>,
>(
    q: &Q,
    k: &K,
    v: &V,
    causal: &bool,
    tq: &TQ,
    tk: &TK,
    tv: &TV,
) -> Q::Cot {
    let ([q4, k4, v4], [tq4, tk4, tv4], sh) = operands(q, k, v, tq, tk, tv);
    let mut out = Array4::<Q::Elem>::zeros((sh[0], sh[1], sh[2], sh[3]));
    for b in 0..sh[0] {
        for hh in 0..sh[1] {
            let (qh, kh, vh) = (
                head_of(&q4, b, hh),
                head_of(&k4, b, hh),
                head_of(&v4, b, hh),
            );
            let h = head_forward(
                qh,
                kh,
                *causal,
                tq4.as_ref().map(|a| head_of(a, b, hh)),
                tk4.as_ref().map(|a| head_of(a, b, hh)),
            );
            let mut o = h.tp.dot(&vh);
            if let Some(tv) = tv4.as_ref().map(|a| head_of(a, b, hh)) {
                o = o + h.p.dot(&tv);
            }
            out.index_axis_mut(Axis(0), b)
                .index_axis_mut(Axis(0), hh)
                .assign(&o);
        }
    }
    q.shape_of().fit(Dyn::Array(out.into_dyn()))
}

/// What [`pullbacks`] last computed, on this thread, and from what.
struct Entry<T> {
    key: Key<T>,
    outs: [Array4<T>; 6],
}

/// The operands of a [`pullbacks`] call: `q`, `k`, `v`, `d` and the three tangents (absent
/// for a constant's), in logical order, their shape, and the mask.
#[derive(PartialEq)]
struct Key<T> {
    causal: bool,
    shape: Vec<usize>,
    values: [Option<Vec<T>>; 7],
}

thread_local! {
    static CACHE: std::cell::RefCell<Option<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(None) };
}

/// All six pullbacks of [`attention_tangent`], `[B, H, T, d]` each.
#[allow(clippy::too_many_arguments)]
fn pullbacks<
    Q: Value,
    K: Value<Elem = Q::Elem>,
    V: Value<Elem = Q::Elem>,
    TQ: Value<Elem = Q::Elem>,
    TK: Value<Elem = Q::Elem>,
    TV: Value<Elem = Q::Elem>,
    C: Value<Elem = Q::Elem>,
>(
    q: &Q,
    k: &K,
    v: &V,
    causal: bool,
    tq: &TQ,
    tk: &TK,
    tv: &TV,
    d: &C,
) -> [Array4<Q::Elem>; 6] {
    let ([q4, k4, v4], [tq4, tk4, tv4], sh) = operands(q, k, v, tq, tk, tv);
    let d4 = four("the cotangent", d, Some(&sh)).expect("the cotangent is an array");
    // The six pullbacks are six rules the reverse pass calls one after another with the
    // same operands: the first computes all six, the others find them here (matched on
    // the operands' values, so a different call never reads another's).
    let key = Key {
        causal,
        shape: sh.clone(),
        values: [
            Some(&q4),
            Some(&k4),
            Some(&v4),
            Some(&d4),
            tq4.as_ref(),
            tk4.as_ref(),
            tv4.as_ref(),
        ]
        .map(|a| a.map(|a| a.iter().copied().collect::<Vec<_>>())),
    };
    let hit = CACHE.with(|c| {
        c.borrow().as_ref().and_then(|e| {
            e.downcast_ref::<Entry<Q::Elem>>()
                .filter(|e| e.key == key)
                .map(|e| e.outs.clone())
        })
    });
    if let Some(outs) = hit {
        return outs;
    }
    let dims = (sh[0], sh[1], sh[2], sh[3]);
    let mut outs: [Array4<Q::Elem>; 6] = std::array::from_fn(|_| Array4::zeros(dims));
    for b in 0..sh[0] {
        for hh in 0..sh[1] {
            let (qh, kh, vh, dh) = (
                head_of(&q4, b, hh),
                head_of(&k4, b, hh),
                head_of(&v4, b, hh),
                head_of(&d4, b, hh),
            );
            let (tqh, tkh, tvh) = (
                tq4.as_ref().map(|a| head_of(a, b, hh)),
                tk4.as_ref().map(|a| head_of(a, b, hh)),
                tv4.as_ref().map(|a| head_of(a, b, hh)),
            );
            let h = head_forward(qh.view(), kh.view(), causal, tqh, tkh);
            let parts = head_backward(qh, kh, vh, &h, tqh, tkh, tvh, dh);
            for (out, part) in outs.iter_mut().zip(parts) {
                out.index_axis_mut(Axis(0), b)
                    .index_axis_mut(Axis(0), hh)
                    .assign(&part);
            }
        }
    }
    CACHE.with(|c| {
        *c.borrow_mut() = Some(Box::new(Entry {
            key,
            outs: outs.clone(),
        }))
    });
    outs
}

macro_rules! attention_pullback {
    ($name:ident, $k:expr, $what:literal, $ty:ident, $like:ident,
     [$q:ident, $kk:ident, $v:ident, $tq:ident, $tk:ident, $tv:ident]) => {
        #[doc = concat!("The pullback of [`attention_tangent`] into ", $what, " (module docs).")]
        ///
        /// # Panics
        /// As [`attention_tangent`].
        #[allow(clippy::too_many_arguments)]
        pub fn $name<
            Q: Value,
            K: Value<Elem = Q::Elem>,
            V: Value<Elem = Q::Elem>,
            TQ: Value<Elem = Q::Elem>,
            TK: Value<Elem = Q::Elem>,
            TV: Value<Elem = Q::Elem>,
            C: Value<Elem = Q::Elem>,
        >(
            $q: &Q,
            $kk: &K,
            $v: &V,
            causal: &bool,
            $tq: &TQ,
            $tk: &TK,
            $tv: &TV,
            d: &C,
        ) -> $ty::Cot {
            let parts = pullbacks($q, $kk, $v, *causal, $tq, $tk, $tv, d);
            let part = parts.into_iter().nth($k).expect("six pullbacks");
            $like.shape_of().fit(Dyn::Array(part.into_dyn()))
        }
    };
}

attention_pullback!(attention_tangent_q, 0, "`q`", Q, q, [q, k, v, tq, tk, tv]);
attention_pullback!(attention_tangent_k, 1, "`k`", K, k, [q, k, v, tq, tk, tv]);
attention_pullback!(attention_tangent_v, 2, "`v`", V, v, [q, k, v, tq, tk, tv]);
attention_pullback!(
    attention_tangent_tq,
    3,
    "`t_q`",
    TQ,
    tq,
    [q, k, v, tq, tk, tv]
);
attention_pullback!(
    attention_tangent_tk,
    4,
    "`t_k`",
    TK,
    tk,
    [q, k, v, tq, tk, tv]
);
attention_pullback!(
    attention_tangent_tv,
    5,
    "`t_v`",
    TV,
    tv,
    [q, k, v, tq, tk, tv]
);
