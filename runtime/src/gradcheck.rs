//! Central differences in f64 against a generated gradient and its reverse pass (in f32,
//! with [`Options::f32`], for a function computed in f32).
//!
//! Two checks, both at the given point:
//!
//! 1. **Per coordinate**, as PyTorch's `torch.autograd.gradcheck`: perturb one input
//!    element at a time by ±hᵢ, take nᵢ = (f(x + hᵢeᵢ) − f(x − hᵢeᵢ)) / 2hᵢ, and compare
//!    with the gradient `f_grad` returns, element by element.
//! 2. **Random VJPs**, as JAX's `check_vjp`: for a few pairs (u, d) drawn from a
//!    fixed-seed generator (u a direction over every coordinate of every checked
//!    argument, d an output cotangent with |d| in [0.5, 0.75] or [1.5, 3], never near 1),
//!    compare ⟨d, J·u⟩, with J·u a central difference along u, against ⟨J^T d, u⟩,
//!    with J^T d the reverse pass run with cotangent d (`f_forward` then
//!    `f_backward(tape, d)`). A pullback that ignores its cotangent returns the
//!    gradient for every d and fails here, even alone in a function, where check 1 (which
//!    uses d = 1) cannot see it.
//!
//! **Step.** hᵢ = eps·max(1, |xᵢ|) with eps = ∛ε ≈ 6.1e-6 (ε = 2⁻⁵² the f64 epsilon): the
//! central difference has truncation error hᵢ²|f‴|/6 and round-off error about
//! ε|f|/hᵢ, and ∛ε balances the two (Nocedal & Wright, *Numerical Optimization*,
//! 2nd ed., §8.1), leaving about ε^⅔ ≈ 4e-11 relative for a smooth, well-scaled f.
//!
//! **Tolerance.** An element passes when
//! |analytic − numeric| ≤ atol·S + rtol·max(|analytic|, |numeric|) + E, with S = max(|f(x)|,
//! maxᵢ |nᵢ|) the function's own magnitude (so the check means the same at 1e-8 and at
//! 1e8: no fixed absolute floor that a small gradient hides under), rtol = 1e-6 and
//! atol = 1e-7 by default. rtol is 25 000 times the ~4e-11 expected error, so only
//! functions with |f‴/f′| beyond ~1e5 at the point come near it, while a 0.05% error
//! (5e-4) fails by 500×; atol·S leaves ~2 500× the round-off ε·S/h for coordinates
//! whose gradient is near 0. E = |D(h) − D(2h)|, the difference of the central
//! differences with steps h and 2h, is the numeric derivative's own error estimate
//! (Richardson: the truncation error of D(h) is about a third of it, and round-off
//! shows up in it too): tiny for a smooth, well-conditioned f, it widens the tolerance
//! only where the difference itself cannot be trusted, as for an f computed by
//! catastrophic cancellation (a value of 1e-9 left from O(1) terms, whose last digits
//! are rounding). A VJP pair passes when |⟨d, J·u⟩ − ⟨J^T d, u⟩| ≤ atol·S·|d|·maxᵢ|uᵢ| +
//! rtol·Σᵢ|(J^T d)ᵢ uᵢ| + |d|·E_u, relative to the terms of the sum (the sum itself may
//! cancel), E_u the same estimate along u. NaN anywhere fails.
//!
//! The [`Report`] says what was checked (arguments, coordinates, pairs, seed, step,
//! tolerances), the worst element of each argument, each pair, and the worst error
//! overall with where it is.
//!
//! Check points away from kinks (`abs` at 0, `max` at a tie): there the central
//! difference averages the two one-sided slopes and need not match the convention the
//! rules document.
//!
//! ```
//! use backprop::{grad, gradcheck};
//!
//! #[grad]
//! fn f(x: f64, y: f64, n: i32) -> f64 {
//!     (x * y).sin() + x.powi(n)
//! }
//!
//! // `name = value` for a differentiated argument, `name = const value` for a constant.
//! let report = gradcheck!(f(x = 0.7, y = -1.3, n = const 3));
//! report.assert();
//! assert!(report.worst_abs_err() < 1e-8);
//! assert_eq!(report.pairs.len(), 3);
//! ```

use core::fmt;

/// Tolerances, step and random pairs of a gradient check (see the module docs for
/// why these values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Relative step: hᵢ = eps · max(1, |xᵢ|).
    pub eps: f64,
    /// Absolute tolerance, as a fraction of the function's magnitude
    /// S = max(|f(x)|, maxᵢ |numericᵢ|).
    pub atol: f64,
    /// Relative tolerance, against max(|analytic|, |numeric|).
    pub rtol: f64,
    /// How many random (direction, output cotangent) pairs check the reverse pass.
    pub pairs: usize,
    /// Seed of the generator of those pairs (fixed: a check is reproducible).
    pub seed: u64,
    /// `order = 2` only: the tolerance of the Hessian's symmetry check
    /// `|uᵀ(H v) − vᵀ(H u)| ≤ symmetry_rtol · Σ|terms|`. Both sides are computed, not
    /// differenced, so it is a multiple of the precision's round-off: 1e-9 in f64,
    /// 1e-5 in f32 (about 80 ε₃₂).
    pub symmetry_rtol: f64,
}

impl Default for Options {
    /// eps = ∛ε ≈ 6.06e-6, atol = 1e-7 (× S), rtol = 1e-6, 3 pairs, seed 0x6ec4.
    fn default() -> Self {
        Options {
            eps: f64::EPSILON.cbrt(),
            atol: 1e-7,
            rtol: 1e-6,
            pairs: 3,
            seed: 0x6ec4,
            symmetry_rtol: 1e-9,
        }
    }
}

impl Options {
    /// The defaults for a function computed in `f32`, which cannot be evaluated in f64:
    /// step ∛ε₃₂ ≈ 4.9e-3 (the same balance of truncation against round-off, with f32's
    /// ε = 2⁻²³), atol = 2e-3 (× S) and rtol = 1e-3. The central difference of an f32
    /// function is good to about (ε₃₂)^⅔ ≈ 2.4e-5 relative at best, and a few ε₃₂·|f|/h
    /// where the function's own rounding adds up over many terms, so these bounds catch a
    /// wrong rule (errors of order 1) and errors down to about 1%, not the 0.05% an f64
    /// check catches. `gradcheck!` takes them for a function whose result is `f32`.
    pub fn f32() -> Self {
        Options {
            eps: f64::from(f32::EPSILON).cbrt(),
            atol: 2e-3,
            rtol: 1e-3,
            symmetry_rtol: 1e-5,
            ..Options::default()
        }
    }
}

/// What `gradcheck!` accepts as a function's result: `f64`, or `f32` (checked with
/// [`Options::f32`] unless options are given).
#[diagnostic::on_unimplemented(
    message = "`gradcheck!` checks functions returning `f64` or `f32`, not `{Self}`",
    note = "a function returning an array (a layer) is checked through a loss that reduces it to a float"
)]
pub trait Output: Copy {
    /// The value as f64.
    fn to_f64(self) -> f64;
    /// An output cotangent of this type.
    fn from_f64(d: f64) -> Self;
    /// The default [`Options`] for a function with this result.
    fn options() -> Options;
}

impl Output for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(d: f64) -> f64 {
        d
    }
    fn options() -> Options {
        Options::default()
    }
}

impl Output for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(d: f64) -> f32 {
        d as f32
    }
    fn options() -> Options {
        Options::f32()
    }
}

/// The options `gradcheck!` runs with: those given, else the defaults for the
/// function's result type (a value of it, computed at the point, picks them).
#[doc(hidden)]
pub fn options_for<V: Output>(_value: &V, given: Option<Options>) -> Options {
    given.unwrap_or_else(V::options)
}

/// A value that a gradient check can flatten to f64 elements and rebuild.
///
/// Implemented for `f32`, `f64`, ndarray arrays of either, and `Vec`s, arrays and
/// `Box`es of such values (a `Vec<f64>` is its elements; a `Vec<Layer>` the elements of
/// each layer in turn); `#[derive(Differentiable)]` implements it for a struct, its
/// fields in declaration order.
pub trait GradValue: Sized {
    /// The value's elements, in a fixed order (row-major for arrays), as f64.
    fn to_flat(&self) -> Vec<f64>;
    /// A value shaped like `self` with the elements `flat` (in [`GradValue::to_flat`]'s
    /// order).
    fn with_flat(&self, flat: &[f64]) -> Self;
    /// How many elements [`GradValue::to_flat`] returns.
    fn flat_len(&self) -> usize {
        self.to_flat().len()
    }
}

impl GradValue for f64 {
    fn to_flat(&self) -> Vec<f64> {
        vec![*self]
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        flat[0]
    }
    fn flat_len(&self) -> usize {
        1
    }
}

impl GradValue for f32 {
    fn to_flat(&self) -> Vec<f64> {
        vec![f64::from(*self)]
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        flat[0] as f32
    }
    fn flat_len(&self) -> usize {
        1
    }
}

/// Consecutive parts of `flat`, one per element of `parts`, each rebuilt by the element.
fn rebuild_each<'p, T: GradValue + 'p>(
    parts: impl IntoIterator<Item = &'p T>,
    flat: &[f64],
) -> Vec<T> {
    let mut k = 0;
    parts
        .into_iter()
        .map(|v| {
            let n = v.flat_len();
            let out = v.with_flat(&flat[k..k + n]);
            k += n;
            out
        })
        .collect()
}

impl<T: GradValue> GradValue for Vec<T> {
    fn to_flat(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.flat_len());
        for v in self {
            out.extend(v.to_flat());
        }
        out
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        rebuild_each(self, flat)
    }
    fn flat_len(&self) -> usize {
        self.iter().map(GradValue::flat_len).sum()
    }
}

impl<T: GradValue, const N: usize> GradValue for [T; N] {
    fn to_flat(&self) -> Vec<f64> {
        self.iter().flat_map(GradValue::to_flat).collect()
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        match rebuild_each(self, flat).try_into() {
            Ok(a) => a,
            Err(_) => unreachable!("one element rebuilt per element"),
        }
    }
    fn flat_len(&self) -> usize {
        self.iter().map(GradValue::flat_len).sum()
    }
}

impl<T: GradValue> GradValue for Box<T> {
    fn to_flat(&self) -> Vec<f64> {
        (**self).to_flat()
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        Box::new((**self).with_flat(flat))
    }
    fn flat_len(&self) -> usize {
        (**self).flat_len()
    }
}

impl<A, D> GradValue for ndarray::Array<A, D>
where
    A: crate::kernels::Real,
    D: ndarray::Dimension,
{
    fn to_flat(&self) -> Vec<f64> {
        self.iter()
            .map(|v| v.to_f64().unwrap_or(f64::NAN))
            .collect()
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        let elems = flat
            .iter()
            .map(|&v| A::from(v).unwrap_or_else(A::nan))
            .collect();
        ndarray::Array::from_shape_vec(self.raw_dim(), elems)
            .expect("gradcheck: flat length matches the shape")
    }
    fn flat_len(&self) -> usize {
        self.len()
    }
}

/// The worst element of one argument.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgReport {
    /// The argument's name.
    pub name: String,
    /// How many elements (coordinates) it has; each was checked.
    pub len: usize,
    /// Index of the element with the largest error relative to its tolerance.
    pub worst_index: usize,
    /// The generated gradient there.
    pub analytic: f64,
    /// The central difference there.
    pub numeric: f64,
    /// |analytic − numeric|.
    pub abs_err: f64,
    /// |analytic − numeric| / max(|numeric|, f64::MIN_POSITIVE).
    pub rel_err: f64,
    /// The tolerance there.
    pub tol: f64,
    /// Whether every element is within tolerance (and none is NaN).
    pub passed: bool,
}

/// One random VJP pair: ⟨d, J·u⟩ by central differences against ⟨J^T d, u⟩ from the
/// reverse pass.
#[derive(Clone, Debug, PartialEq)]
pub struct PairReport {
    /// The output cotangent d.
    pub d_out: f64,
    /// ⟨d, J·u⟩, J·u a central difference along u.
    pub numeric: f64,
    /// ⟨J^T d, u⟩, J^T d the reverse pass run with d.
    pub analytic: f64,
    /// |analytic − numeric|.
    pub abs_err: f64,
    /// The tolerance.
    pub tol: f64,
    /// Whether it is within tolerance (and not NaN).
    pub passed: bool,
}

/// The outcome of a gradient check: one [`ArgReport`] per checked argument and one
/// [`PairReport`] per random VJP pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The function's value at the point.
    pub value: f64,
    /// S = max(|f(x)|, maxᵢ |numericᵢ|), the scale of the absolute tolerance.
    pub scale: f64,
    /// One entry per differentiated argument, in order.
    pub args: Vec<ArgReport>,
    /// One entry per random VJP pair.
    pub pairs: Vec<PairReport>,
    /// The tolerances, step and seed used.
    pub options: Options,
    /// 1 for a gradient check ([`check`]); 2 for a check of Hessian-vector products
    /// ([`check_second_order`]), whose `args` compare `H·v` with central differences
    /// of the gradient and whose `pairs` are symmetry checks: `analytic` is `uᵀ(H v)`,
    /// `numeric` `vᵀ(H u)`.
    pub order: u8,
}

impl Report {
    /// Whether every element of every argument and every VJP pair is within tolerance.
    pub fn passed(&self) -> bool {
        self.args.iter().all(|a| a.passed) && self.pairs.iter().all(|p| p.passed)
    }

    /// The largest absolute error over all arguments' elements.
    pub fn worst_abs_err(&self) -> f64 {
        self.args.iter().map(|a| a.abs_err).fold(0.0, f64::max)
    }

    /// The largest error / tolerance ratio over all elements and pairs (∞ for a NaN),
    /// and where: `"argument `x`, element 3"`, `"VJP pair 1"` or (order 2)
    /// `"symmetry pair 1"`.
    pub fn worst(&self) -> (f64, String) {
        let ratio = |e: f64, t: f64| if e.is_nan() { f64::INFINITY } else { e / t };
        let mut worst = (-1.0, String::from("nothing checked"));
        for a in &self.args {
            let r = ratio(a.abs_err, a.tol);
            if r > worst.0 {
                worst = (
                    r,
                    format!("argument `{}`, element {}", a.name, a.worst_index),
                );
            }
        }
        for (k, p) in self.pairs.iter().enumerate() {
            let r = ratio(p.abs_err, p.tol);
            if r > worst.0 {
                worst = if self.order == 2 {
                    (r, format!("symmetry pair {k}"))
                } else {
                    (r, format!("VJP pair {k} (d_out = {:.4})", p.d_out))
                };
            }
        }
        worst
    }

    /// Panics with the report if any element or pair is out of tolerance.
    ///
    /// # Panics
    /// When [`Report::passed`] is false; the message starts "gradient check failed"
    /// and is followed by the whole report.
    #[track_caller]
    pub fn assert(&self) {
        assert!(self.passed(), "gradient check failed:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let coords: usize = self.args.iter().map(|a| a.len).sum();
        let second = self.order == 2;
        if second {
            writeln!(
                f,
                "checked H·v for {} argument(s), {coords} coordinate(s) in all, against central \
                 differences of the gradient along {} random direction(s) v (h = {:.2e}), and \
                 the Hessian's symmetry uᵀ(H v) = vᵀ(H u) for as many pairs (seed {:#x})",
                self.args.len(),
                self.pairs.len(),
                o.eps,
                o.seed
            )?;
        } else {
            writeln!(
                f,
                "checked {} argument(s), {coords} coordinate(s) in all, by central differences \
                 (h = {:.2e}·max(1, |x|)), and {} random VJP pair(s) (seed {:#x})",
                self.args.len(),
                o.eps,
                self.pairs.len(),
                o.seed
            )?;
        }
        writeln!(
            f,
            "value {:e}; scale S = {:e}; pass if |analytic − numeric| ≤ {:e}·S + {:e}·max(|analytic|, |numeric|) + |D(h) − D(2h)|",
            self.value, self.scale, o.atol, o.rtol
        )?;
        let (analytic, numeric) = if second {
            ("H·v", "∇f(x+hv)−∇f(x−hv) / 2h")
        } else {
            ("analytic", "numeric")
        };
        writeln!(
            f,
            "{:<12} {:>6} {:>5} {:>24} {:>24} {:>10} {:>10} {:>9}  ok",
            "argument", "coords", "worst", analytic, numeric, "abs err", "rel err", "err/tol"
        )?;
        for a in &self.args {
            writeln!(
                f,
                "{:<12} {:>6} {:>5} {:>24.16e} {:>24.16e} {:>10.2e} {:>10.2e} {:>9.2e}  {}",
                a.name,
                a.len,
                if a.len == 1 {
                    String::from("-")
                } else {
                    a.worst_index.to_string()
                },
                a.analytic,
                a.numeric,
                a.abs_err,
                a.rel_err,
                a.abs_err / a.tol,
                if a.passed { "yes" } else { "NO" }
            )?;
        }
        if !self.pairs.is_empty() {
            let (pair, d_out, analytic, numeric) = if second {
                ("symmetry", "", "uᵀ(H v)", "vᵀ(H u)")
            } else {
                (
                    "VJP pair",
                    "d_out",
                    "<J^T d, u> (reverse)",
                    "<d, J u> (numeric)",
                )
            };
            writeln!(
                f,
                "{:<12} {:>12} {:>24} {:>24} {:>10} {:>9}  ok",
                pair, d_out, analytic, numeric, "abs err", "err/tol"
            )?;
            for (k, p) in self.pairs.iter().enumerate() {
                writeln!(
                    f,
                    "{:<12} {:>12.4e} {:>24.16e} {:>24.16e} {:>10.2e} {:>9.2e}  {}",
                    k,
                    p.d_out,
                    p.analytic,
                    p.numeric,
                    p.abs_err,
                    p.abs_err / p.tol,
                    if p.passed { "yes" } else { "NO" }
                )?;
            }
        }
        let (ratio, at) = self.worst();
        writeln!(
            f,
            "worst: {at}, error {ratio:.3e}× its tolerance: {}",
            if self.passed() { "passed" } else { "FAILED" }
        )
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): the fixed-seed generator of the VJP pairs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Panics, naming the argument, when `g` (a gradient or product per argument) does not
/// have the point's shape.
fn check_shapes(at: &[(&str, Vec<f64>)], what: &str, g: &[Vec<f64>]) {
    assert_eq!(
        g.len(),
        at.len(),
        "gradcheck: the {what} has {} arguments but the point has {}",
        g.len(),
        at.len()
    );
    for (k, (name, x)) in at.iter().enumerate() {
        assert_eq!(
            g[k].len(),
            x.len(),
            "gradcheck: the {what} of `{name}` has {} elements but the argument has {}",
            g[k].len(),
            x.len()
        );
    }
}
/// Checks `grad` against central differences of `value` at `at`, per coordinate, and
/// `vjp` with random output cotangents along random directions (see the module docs).
///
/// `at` holds the differentiated arguments, each as its name and flat f64 elements;
/// `value` evaluates the function at such a point; `grad` returns the analytic
/// gradient as one flat vector per argument, in the same order and lengths; `vjp(point,
/// d)` returns the reverse pass's result for the output cotangent `d`, shaped the same.
///
/// # Panics
/// If `grad` or `vjp` returns a different number of arguments or a different length
/// for one than `at` has (naming both).
pub fn check(
    at: &[(&str, Vec<f64>)],
    value: impl Fn(&[Vec<f64>]) -> f64,
    grad: impl Fn(&[Vec<f64>]) -> Vec<Vec<f64>>,
    vjp: impl Fn(&[Vec<f64>], f64) -> Vec<Vec<f64>>,
    options: Options,
) -> Report {
    let mut point: Vec<Vec<f64>> = at.iter().map(|(_, v)| v.clone()).collect();
    let f0 = value(&point);
    let shape_check = |what: &str, g: &[Vec<f64>]| check_shapes(at, what, g);
    let analytic = grad(&point);
    shape_check("gradient", &analytic);
    let step = |x: f64| options.eps * x.abs().max(1.0);

    // 1. Central differences, one coordinate at a time, with steps h and 2h: the
    // difference of the two estimates is the numeric derivative's own error estimate.
    let mut numeric: Vec<Vec<f64>> = Vec::with_capacity(at.len());
    let mut estimate: Vec<Vec<f64>> = Vec::with_capacity(at.len());
    for k in 0..at.len() {
        let mut n_k = Vec::with_capacity(point[k].len());
        let mut e_k = Vec::with_capacity(point[k].len());
        for i in 0..point[k].len() {
            let x = point[k][i];
            let h = step(x);
            let mut at_offset = |dx: f64| {
                point[k][i] = x + dx;
                let v = value(&point);
                point[k][i] = x;
                v
            };
            let d1 = (at_offset(h) - at_offset(-h)) / (2.0 * h);
            let d2 = (at_offset(2.0 * h) - at_offset(-2.0 * h)) / (4.0 * h);
            n_k.push(d1);
            e_k.push((d1 - d2).abs());
        }
        numeric.push(n_k);
        estimate.push(e_k);
    }
    let scale = numeric
        .iter()
        .flatten()
        .fold(f0.abs(), |m, &n| if n.abs() > m { n.abs() } else { m });
    let atol = options.atol * scale;
    let mut args = Vec::with_capacity(at.len());
    for (k, (name, _)) in at.iter().enumerate() {
        let mut report = ArgReport {
            name: (*name).to_string(),
            len: point[k].len(),
            worst_index: 0,
            analytic: f64::NAN,
            numeric: f64::NAN,
            abs_err: 0.0,
            rel_err: 0.0,
            tol: atol,
            passed: true,
        };
        let mut worst_ratio = -1.0;
        for (i, ((&a, &n), &e)) in analytic[k]
            .iter()
            .zip(&numeric[k])
            .zip(&estimate[k])
            .enumerate()
        {
            let abs_err = (a - n).abs();
            let tol = atol + options.rtol * a.abs().max(n.abs()) + e;
            let ok = abs_err <= tol;
            // NaN compares false: a NaN anywhere is the worst element and fails.
            let ratio = if abs_err.is_nan() {
                f64::INFINITY
            } else {
                abs_err / tol
            };
            if ratio > worst_ratio {
                worst_ratio = ratio;
                report.worst_index = i;
                report.analytic = a;
                report.numeric = n;
                report.abs_err = abs_err;
                report.rel_err = abs_err / n.abs().max(f64::MIN_POSITIVE);
                report.tol = tol;
            }
            report.passed &= ok;
        }
        args.push(report);
    }

    // 2. Random VJPs: ⟨d, J·u⟩ (numeric) against ⟨J^T d, u⟩ (reverse pass with d).
    let mut rng = SplitMix(options.seed);
    let mut pairs = Vec::with_capacity(options.pairs);
    for _ in 0..options.pairs {
        // u: each coordinate uniform in [−1, 1), scaled like its step.
        let r: Vec<Vec<f64>> = point
            .iter()
            .map(|x| x.iter().map(|_| 2.0 * rng.unit() - 1.0).collect())
            .collect();
        let u: Vec<Vec<f64>> = point
            .iter()
            .zip(&r)
            .map(|(x, r)| {
                x.iter()
                    .zip(r)
                    .map(|(&x, &r)| r * x.abs().max(1.0))
                    .collect()
            })
            .collect();
        // d: |d| in [0.5, 0.75) or [1.5, 3), either sign; never near 1, never 0.
        let magnitude = if rng.unit() < 0.5 {
            0.5 + 0.25 * rng.unit()
        } else {
            1.5 + 1.5 * rng.unit()
        };
        let d_out = if rng.unit() < 0.5 {
            -magnitude
        } else {
            magnitude
        };
        let t = options.eps;
        let shifted = |sign: f64| -> Vec<Vec<f64>> {
            point
                .iter()
                .zip(&u)
                .map(|(x, u)| x.iter().zip(u).map(|(&x, &u)| x + sign * t * u).collect())
                .collect()
        };
        let jvp = (value(&shifted(1.0)) - value(&shifted(-1.0))) / (2.0 * t);
        let jvp2 = (value(&shifted(2.0)) - value(&shifted(-2.0))) / (4.0 * t);
        let numeric = d_out * jvp;
        let back = vjp(&point, d_out);
        shape_check("reverse pass", &back);
        let mut analytic = 0.0;
        let mut terms = 0.0;
        for (b, u) in back.iter().zip(&u) {
            for (&b, &u) in b.iter().zip(u) {
                analytic += b * u;
                terms += (b * u).abs();
            }
        }
        let u_max = r.iter().flatten().fold(0.0f64, |m, &v| m.max(v.abs()));
        let abs_err = (analytic - numeric).abs();
        let tol = atol * d_out.abs() * u_max
            + options.rtol * terms.max(numeric.abs())
            + d_out.abs() * (jvp - jvp2).abs();
        pairs.push(PairReport {
            d_out,
            numeric,
            analytic,
            abs_err,
            tol,
            passed: abs_err <= tol,
        });
    }
    Report {
        value: f0,
        scale,
        args,
        pairs,
        options,
        order: 1,
    }
}

/// Checks Hessian-vector products against central differences of the gradient, as
/// JAX's `check_grads(order=2)` and PyTorch's `gradgradcheck` do, along
/// `options.pairs` random directions `v`:
///
/// - per argument, every element of `H·v` (from `hvp(point, v)`) against
///   `(∇f(x + t v) − ∇f(x − t v)) / 2t` (from `grad`), with the difference at `2t` as the
///   numeric estimate's own error, in the report's `args` (the worst element over all
///   directions);
/// - the symmetry of the Hessian, `uᵀ(H v) = vᵀ(H u)` for a second random `u`, in its
///   `pairs` (`analytic` = uᵀHv, `numeric` = vᵀHu, `d_out` = 1).
///
/// `hvp(point, v)` returns the gradient and `H·v`, each one `Vec` per argument, as
/// `f_hvp` does. `gradcheck!(f(..), order = 2)` calls this; see [`check`] for the step
/// and tolerances.
///
/// # Panics
/// If the gradient or `H·v` has a different number of arguments or elements than the
/// point.
pub fn check_second_order(
    at: &[(&str, Vec<f64>)],
    grad: impl Fn(&[Vec<f64>]) -> Vec<Vec<f64>>,
    hvp: impl Fn(&[Vec<f64>], &[Vec<f64>]) -> (f64, Vec<Vec<f64>>, Vec<Vec<f64>>),
    options: Options,
) -> Report {
    let point: Vec<Vec<f64>> = at.iter().map(|(_, v)| v.clone()).collect();
    let shape_check = |what: &str, g: &[Vec<f64>]| check_shapes(at, what, g);
    let mut rng = SplitMix(options.seed);
    let direction = |rng: &mut SplitMix| -> Vec<Vec<f64>> {
        point
            .iter()
            .map(|x| x.iter().map(|_| 2.0 * rng.unit() - 1.0).collect())
            .collect()
    };
    let t = options.eps;
    let shifted = |v: &[Vec<f64>], sign: f64| -> Vec<Vec<f64>> {
        point
            .iter()
            .zip(v)
            .map(|(x, v)| x.iter().zip(v).map(|(&x, &v)| x + sign * t * v).collect())
            .collect()
    };
    let mut f0 = f64::NAN;
    let mut checks: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); at.len()];
    let mut pairs = Vec::with_capacity(options.pairs);
    let mut scale: f64 = 0.0;
    for _ in 0..options.pairs.max(1) {
        let v = direction(&mut rng);
        let u = direction(&mut rng);
        let (value, g, hv) = hvp(&point, &v);
        f0 = value;
        shape_check("gradient", &g);
        shape_check("Hessian-vector product", &hv);
        let (gp, gm) = (grad(&shifted(&v, 1.0)), grad(&shifted(&v, -1.0)));
        let (gp2, gm2) = (grad(&shifted(&v, 2.0)), grad(&shifted(&v, -2.0)));
        for k in 0..at.len() {
            for i in 0..point[k].len() {
                let d1 = (gp[k][i] - gm[k][i]) / (2.0 * t);
                let d2 = (gp2[k][i] - gm2[k][i]) / (4.0 * t);
                scale = scale.max(d1.abs()).max(g[k][i].abs());
                checks[k].push((hv[k][i], d1, (d1 - d2).abs()));
            }
        }
        let (_, _, hu) = hvp(&point, &u);
        shape_check("Hessian-vector product", &hu);
        let dot = |a: &[Vec<f64>], b: &[Vec<f64>]| -> (f64, f64) {
            let mut sum = 0.0;
            let mut terms = 0.0;
            for (a, b) in a.iter().zip(b) {
                for (&a, &b) in a.iter().zip(b) {
                    sum += a * b;
                    terms += (a * b).abs();
                }
            }
            (sum, terms)
        };
        let ((u_hv, terms_a), (v_hu, terms_b)) = (dot(&u, &hv), dot(&v, &hu));
        let abs_err = (u_hv - v_hu).abs();
        let tol = options.symmetry_rtol * terms_a.max(terms_b).max(f64::MIN_POSITIVE);
        pairs.push(PairReport {
            d_out: 1.0,
            numeric: v_hu,
            analytic: u_hv,
            abs_err,
            tol,
            passed: abs_err <= tol,
        });
    }
    let atol = options.atol * scale.max(f0.abs());
    let args = at
        .iter()
        .enumerate()
        .map(|(k, (name, x))| {
            let mut report = ArgReport {
                name: (*name).to_string(),
                len: x.len(),
                worst_index: 0,
                analytic: f64::NAN,
                numeric: f64::NAN,
                abs_err: 0.0,
                rel_err: 0.0,
                tol: atol,
                passed: true,
            };
            let mut worst_ratio = -1.0;
            for (j, &(a, n, e)) in checks[k].iter().enumerate() {
                let abs_err = (a - n).abs();
                let tol = atol + options.rtol * a.abs().max(n.abs()) + e;
                let ratio = if abs_err.is_nan() {
                    f64::INFINITY
                } else {
                    abs_err / tol
                };
                if ratio > worst_ratio {
                    worst_ratio = ratio;
                    report.worst_index = j % x.len().max(1);
                    report.analytic = a;
                    report.numeric = n;
                    report.abs_err = abs_err;
                    report.rel_err = abs_err / n.abs().max(f64::MIN_POSITIVE);
                    report.tol = tol;
                }
                report.passed &= abs_err <= tol;
            }
            report
        })
        .collect();
    Report {
        value: f0,
        scale,
        args,
        pairs,
        options,
        order: 2,
    }
}

/// Checks a `#[grad]` function's gradient against central differences, per coordinate
/// and along random directions with random output cotangents (see [`check`] and the
/// module docs for the step and tolerances).
///
/// `gradcheck!(f(a = 1.0, b = 2.0, n = const 3))` evaluates `f` and its gradient (what
/// `f_grad` returns, through the companion `f::grad` the macro generates, and the reverse
/// pass with random output cotangents, through `f::vjp`) with `a` and `b` differentiated and `n` passed as a
/// constant; `w = &w0` passes a perturbed copy of `w0` by reference (for arguments of
/// type `&[f64]` (pass a `Vec<f64>`), `&Array2<f64>`, or `&P` for a struct `P` with
/// `#[derive(Differentiable)]`, which perturbs every float of every field); a trailing
/// `, options` sets [`Options`]. Returns a [`Report`]. Each argument expression is
/// evaluated once, before the checks (a constant is cloned into each call).
///
/// The function is evaluated at the precision of the arguments given: a function
/// returning `f64` (or generic over `T: Float` or `T: backprop::Real` and given f64
/// values) is checked in f64 with [`Options::default`]; a function returning `f32` (or
/// given f32 values) is checked in f32 with [`Options::f32`]'s step and tolerances. A
/// generic function is best checked in f64, and its f32 instance against its f64 one.
#[macro_export]
macro_rules! gradcheck {
    ($f:ident ( $($args:tt)* ), order = 2 $(, $opts:expr)? $(,)?) => {
        $crate::__gradcheck_munch!(@f $f @o [order2 $($opts)?] @k (0) @bind [] @call [] @act [] $($args)*)
    };
    ($f:ident ( $($args:tt)* ) $(, $opts:expr)? $(,)?) => {
        $crate::__gradcheck_munch!(@f $f @o [$($opts)?] @k (0) @bind [] @call [] @act [] $($args)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __gradcheck_munch {
    // Each argument is evaluated once, before the checks, and bound by reference to its
    // own name (all at once, so one argument's name never shadows what another reads):
    // `x = &rng_array(&mut r)` draws once, and a constant is cloned into each call.
    (@f $f:ident @o $o:tt @k $k:tt @bind [$($b:tt)*] @call [$($c:tt)*] @act [$($a:tt)*] $name:ident = const $e:expr $(, $($rest:tt)*)?) => {
        $crate::__gradcheck_munch!(@f $f @o $o @k $k @bind [$($b)* ($name, $e)] @call [$($c)* (const $name)] @act [$($a)*] $($($rest)*)?)
    };
    (@f $f:ident @o $o:tt @k ($($k:tt)*) @bind [$($b:tt)*] @call [$($c:tt)*] @act [$($a:tt)*] $name:ident = & $e:expr $(, $($rest:tt)*)?) => {
        $crate::__gradcheck_munch!(@f $f @o $o @k ($($k)* + 1) @bind [$($b)* ($name, $e)] @call [$($c)* (borrowed ($name) ($($k)*))] @act [$($a)* ($name)] $($($rest)*)?)
    };
    (@f $f:ident @o $o:tt @k ($($k:tt)*) @bind [$($b:tt)*] @call [$($c:tt)*] @act [$($a:tt)*] $name:ident = $e:expr $(, $($rest:tt)*)?) => {
        $crate::__gradcheck_munch!(@f $f @o $o @k ($($k)* + 1) @bind [$($b)* ($name, $e)] @call [$($c)* (active ($name) ($($k)*))] @act [$($a)* ($name)] $($($rest)*)?)
    };
    (@f $f:ident @o [order2 $($o:expr)?] @k $k:tt @bind [$(($bound:ident, $e:expr))*] @call [$(($($c:tt)*))*] @act [$(($name:ident))*]) => {{
        #[allow(unused_parens)]
        let ($($bound,)*) = ($(&$e,)*);
        let at: &[(&str, ::std::vec::Vec<f64>)] = &[$((stringify!($name), $crate::gradcheck::GradValue::to_flat($name))),*];
        let options: $crate::gradcheck::Options = {
            let point: ::std::vec::Vec<::std::vec::Vec<f64>> = at.iter().map(|(_, v)| v.clone()).collect();
            let point: &[::std::vec::Vec<f64>] = &point;
            let value = $f($($crate::__gradcheck_munch!(@arg point $($c)*)),*);
            $crate::gradcheck::options_for(&value, $crate::__gradcheck_munch!(@opts $($o)?))
        };
        $crate::gradcheck::check_second_order(
            at,
            |point: &[::std::vec::Vec<f64>]| {
                let (_, g) = $f::grad($($crate::__gradcheck_munch!(@arg point $($c)*)),*);
                ::std::vec![$($crate::gradcheck::GradValue::to_flat(&g.$name)),*]
            },
            |point: &[::std::vec::Vec<f64>], direction: &[::std::vec::Vec<f64>]| {
                let (value, g, hv) = $crate::__gradcheck_munch!(
                    @hvp $f direction [$($crate::__gradcheck_munch!(@arg point $($c)*),)*] [] $($($c)*;)*
                );
                (
                    $crate::gradcheck::Output::to_f64(value),
                    ::std::vec![$($crate::gradcheck::GradValue::to_flat(&g.$name)),*],
                    ::std::vec![$($crate::gradcheck::GradValue::to_flat(&hv.$name)),*],
                )
            },
            options,
        )
    }};
    (@f $f:ident @o [$($o:expr)?] @k $k:tt @bind [$(($bound:ident, $e:expr))*] @call [$(($($c:tt)*))*] @act [$(($name:ident))*]) => {{
        #[allow(unused_parens)]
        let ($($bound,)*) = ($(&$e,)*);
        let at: &[(&str, ::std::vec::Vec<f64>)] = &[$((stringify!($name), $crate::gradcheck::GradValue::to_flat($name))),*];
        // The function's value at the point picks the defaults: f32 steps and
        // tolerances for a function computed in f32.
        let options: $crate::gradcheck::Options = {
            let point: ::std::vec::Vec<::std::vec::Vec<f64>> = at.iter().map(|(_, v)| v.clone()).collect();
            let point: &[::std::vec::Vec<f64>] = &point;
            let value = $f($($crate::__gradcheck_munch!(@arg point $($c)*)),*);
            $crate::gradcheck::options_for(&value, $crate::__gradcheck_munch!(@opts $($o)?))
        };
        $crate::gradcheck::check(
            at,
            |point: &[::std::vec::Vec<f64>]| {
                $crate::gradcheck::Output::to_f64($f($($crate::__gradcheck_munch!(@arg point $($c)*)),*))
            },
            |point: &[::std::vec::Vec<f64>]| {
                let (_, g) = $f::grad($($crate::__gradcheck_munch!(@arg point $($c)*)),*);
                ::std::vec![$($crate::gradcheck::GradValue::to_flat(&g.$name)),*]
            },
            |point: &[::std::vec::Vec<f64>], d_out: f64| {
                let (_, g) = $f::vjp($($crate::__gradcheck_munch!(@arg point $($c)*),)* $crate::gradcheck::Output::from_f64(d_out));
                ::std::vec![$($crate::gradcheck::GradValue::to_flat(&g.$name)),*]
            },
            options,
        )
    }};
    (@arg $p:ident const $n:ident) => { $n.clone() };
    (@arg $p:ident active ($n:ident) ($($k:tt)*)) => { $crate::gradcheck::GradValue::with_flat($n, &$p[$($k)*]) };
    (@arg $p:ident borrowed ($n:ident) ($($k:tt)*)) => { &$crate::gradcheck::GradValue::with_flat($n, &$p[$($k)*]) };
    // `f::hvp(args.., directions..)`: the directions of the differentiated arguments,
    // in order (constants have none), after the arguments.
    (@hvp $f:ident $p:ident [$($args:tt)*] [$($done:expr,)*] const $n:ident; $($rest:tt)*) => {
        $crate::__gradcheck_munch!(@hvp $f $p [$($args)*] [$($done,)*] $($rest)*)
    };
    (@hvp $f:ident $p:ident [$($args:tt)*] [$($done:expr,)*] active ($n:ident) ($($k:tt)*); $($rest:tt)*) => {
        $crate::__gradcheck_munch!(@hvp $f $p [$($args)*] [$($done,)* $crate::gradcheck::GradValue::with_flat($n, &$p[$($k)*]),] $($rest)*)
    };
    (@hvp $f:ident $p:ident [$($args:tt)*] [$($done:expr,)*] borrowed ($n:ident) ($($k:tt)*); $($rest:tt)*) => {
        $crate::__gradcheck_munch!(@hvp $f $p [$($args)*] [$($done,)* &$crate::gradcheck::GradValue::with_flat($n, &$p[$($k)*]),] $($rest)*)
    };
    (@hvp $f:ident $p:ident [$($args:tt)*] [$($done:expr,)*]) => { $f::hvp($($args)* $($done),*) };
    (@opts) => { ::core::option::Option::None };
    (@opts $o:expr) => { ::core::option::Option::Some($o) };
}
