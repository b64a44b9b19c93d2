//! Central differences in f64 against a generated gradient.
//!
//! The same check PyTorch's `torch.autograd.gradcheck` and JAX's `check_grads` make:
//! perturb one input element at a time by ±h, take (f(x + h) − f(x − h)) / 2h, and
//! compare with the analytic gradient element by element. The central difference has
//! truncation error O(h²·f‴) and round-off error O(ε_mach·|f|/h); h = 1e-6·max(1, |x|)
//! balances the two in f64 (Nocedal & Wright, *Numerical Optimization*, §8.1).
//!
//! An element passes when |analytic − numeric| ≤ atol + rtol·|numeric| (the defaults
//! are PyTorch's: atol = 1e-5, rtol = 1e-3). The report names, per argument, the
//! worst element with its absolute and relative error.
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
//! ```

use core::fmt;

/// Tolerances and step of a gradient check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Relative step: h = eps · max(1, |x|).
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance, against the numeric value.
    pub rtol: f64,
}

impl Default for Options {
    /// PyTorch's gradcheck defaults: eps = 1e-6, atol = 1e-5, rtol = 1e-3.
    fn default() -> Self {
        Options {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
        }
    }
}

/// A value that a gradient check can flatten to f64 elements and rebuild.
pub trait GradValue: Sized {
    /// The value's elements, in a fixed order (row-major for arrays), as f64.
    fn to_flat(&self) -> Vec<f64>;
    /// A value shaped like `self` with the elements `flat` (in [`GradValue::to_flat`]'s
    /// order).
    fn with_flat(&self, flat: &[f64]) -> Self;
}

impl GradValue for f64 {
    fn to_flat(&self) -> Vec<f64> {
        vec![*self]
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        flat[0]
    }
}

impl GradValue for f32 {
    fn to_flat(&self) -> Vec<f64> {
        vec![f64::from(*self)]
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        flat[0] as f32
    }
}

impl GradValue for Vec<f64> {
    fn to_flat(&self) -> Vec<f64> {
        self.clone()
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        flat.to_vec()
    }
}

impl GradValue for Vec<f32> {
    fn to_flat(&self) -> Vec<f64> {
        self.iter().map(|&v| f64::from(v)).collect()
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        flat.iter().map(|&v| v as f32).collect()
    }
}

impl<T: GradValue + Copy, const N: usize> GradValue for [T; N] {
    fn to_flat(&self) -> Vec<f64> {
        self.iter().flat_map(GradValue::to_flat).collect()
    }
    fn with_flat(&self, flat: &[f64]) -> Self {
        let mut out = *self;
        let mut k = 0;
        for v in &mut out {
            let n = v.to_flat().len();
            *v = v.with_flat(&flat[k..k + n]);
            k += n;
        }
        out
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
}

/// The worst element of one argument.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgReport {
    /// The argument's name.
    pub name: String,
    /// How many elements it has.
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
    /// Whether every element is within tolerance (and none is NaN).
    pub passed: bool,
}

/// The outcome of a gradient check: one [`ArgReport`] per checked argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The function's value at the point.
    pub value: f64,
    /// One entry per differentiated argument, in order.
    pub args: Vec<ArgReport>,
    /// The tolerances used.
    pub options: Options,
}

impl Report {
    /// Whether every element of every argument is within tolerance.
    pub fn passed(&self) -> bool {
        self.args.iter().all(|a| a.passed)
    }

    /// The largest absolute error over all arguments.
    pub fn worst_abs_err(&self) -> f64 {
        self.args.iter().map(|a| a.abs_err).fold(0.0, f64::max)
    }

    /// Panics with the report if any element is out of tolerance.
    ///
    /// # Panics
    /// When [`Report::passed`] is false; the message is the whole report.
    #[track_caller]
    pub fn assert(&self) {
        assert!(self.passed(), "gradient check failed:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "value {:e}; tolerance |analytic − numeric| ≤ {:e} + {:e}·|numeric|",
            self.value, self.options.atol, self.options.rtol
        )?;
        writeln!(
            f,
            "{:<12} {:>5} {:>24} {:>24} {:>10} {:>10}  ok",
            "argument", "worst", "analytic", "numeric", "abs err", "rel err"
        )?;
        for a in &self.args {
            writeln!(
                f,
                "{:<12} {:>5} {:>24.16e} {:>24.16e} {:>10.2e} {:>10.2e}  {}",
                a.name,
                if a.len == 1 {
                    String::from("-")
                } else {
                    a.worst_index.to_string()
                },
                a.analytic,
                a.numeric,
                a.abs_err,
                a.rel_err,
                if a.passed { "yes" } else { "NO" }
            )?;
        }
        Ok(())
    }
}

/// Checks `grad` against central differences of `value` at `at`.
///
/// `at` holds the differentiated arguments, each as its name and flat f64 elements;
/// `value` evaluates the function at such a point, `grad` returns the analytic
/// gradient as one flat vector per argument, in the same order and lengths.
///
/// # Panics
/// If `grad` returns a different number of arguments or a different length for one
/// than `at` has (naming both).
pub fn check(
    at: &[(&str, Vec<f64>)],
    value: impl Fn(&[Vec<f64>]) -> f64,
    grad: impl Fn(&[Vec<f64>]) -> Vec<Vec<f64>>,
    options: Options,
) -> Report {
    let mut point: Vec<Vec<f64>> = at.iter().map(|(_, v)| v.clone()).collect();
    let f0 = value(&point);
    let analytic = grad(&point);
    assert_eq!(
        analytic.len(),
        at.len(),
        "gradcheck: the gradient has {} arguments but the point has {}",
        analytic.len(),
        at.len()
    );
    let mut args = Vec::with_capacity(at.len());
    for (k, (name, _)) in at.iter().enumerate() {
        assert_eq!(
            analytic[k].len(),
            point[k].len(),
            "gradcheck: the gradient of `{name}` has {} elements but the argument has {}",
            analytic[k].len(),
            point[k].len()
        );
        let mut report = ArgReport {
            name: (*name).to_string(),
            len: point[k].len(),
            worst_index: 0,
            analytic: f64::NAN,
            numeric: f64::NAN,
            abs_err: 0.0,
            rel_err: 0.0,
            passed: true,
        };
        let mut worst_ratio = -1.0;
        for i in 0..point[k].len() {
            let x = point[k][i];
            let h = options.eps * x.abs().max(1.0);
            point[k][i] = x + h;
            let up = value(&point);
            point[k][i] = x - h;
            let down = value(&point);
            point[k][i] = x;
            let numeric = (up - down) / (2.0 * h);
            let a = analytic[k][i];
            let abs_err = (a - numeric).abs();
            let ok = abs_err <= options.atol + options.rtol * numeric.abs();
            // NaN compares false: a NaN anywhere is the worst element and fails.
            let ratio = if abs_err.is_nan() {
                f64::INFINITY
            } else {
                abs_err / (options.atol + options.rtol * numeric.abs())
            };
            if ratio > worst_ratio {
                worst_ratio = ratio;
                report.worst_index = i;
                report.analytic = a;
                report.numeric = numeric;
                report.abs_err = abs_err;
                report.rel_err = abs_err / numeric.abs().max(f64::MIN_POSITIVE);
            }
            report.passed &= ok;
        }
        args.push(report);
    }
    Report {
        value: f0,
        args,
        options,
    }
}

/// Checks a `#[grad]` function's gradient against central differences.
///
/// `gradcheck!(f(a = 1.0, b = 2.0, n = const 3))` evaluates `f` and its gradient (what
/// `f_grad` returns, through the companion `f::grad` the macro generates) with `a` and `b` differentiated and `n` passed as a
/// constant; `w = &w0` passes a perturbed copy of `w0` by reference (for arguments of
/// type `&[f64]` (pass a `Vec<f64>`), `&Array2<f64>`, or `&P` for a struct `P` with
/// `#[derive(Differentiable)]`, which perturbs every float of every field); a trailing
/// `, options` sets [`Options`]. Returns a [`Report`]. The
/// function is evaluated in f64: it must return `f64`, or be generic over
/// `T: Float` (then `T = f64`). Check an `f32` function through a generic version.
#[macro_export]
macro_rules! gradcheck {
    ($f:ident ( $($args:tt)* ) $(, $opts:expr)? $(,)?) => {
        $crate::__gradcheck_munch!(@f $f @o [$($opts)?] @k (0) @call [] @act [] $($args)*)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __gradcheck_munch {
    (@f $f:ident @o $o:tt @k $k:tt @call [$($c:tt)*] @act [$($a:tt)*] $name:ident = const $e:expr $(, $($rest:tt)*)?) => {
        $crate::__gradcheck_munch!(@f $f @o $o @k $k @call [$($c)* (const $e)] @act [$($a)*] $($($rest)*)?)
    };
    (@f $f:ident @o $o:tt @k ($($k:tt)*) @call [$($c:tt)*] @act [$($a:tt)*] $name:ident = & $e:expr $(, $($rest:tt)*)?) => {
        $crate::__gradcheck_munch!(@f $f @o $o @k ($($k)* + 1) @call [$($c)* (borrowed ($e) ($($k)*))] @act [$($a)* ($name, $e)] $($($rest)*)?)
    };
    (@f $f:ident @o $o:tt @k ($($k:tt)*) @call [$($c:tt)*] @act [$($a:tt)*] $name:ident = $e:expr $(, $($rest:tt)*)?) => {
        $crate::__gradcheck_munch!(@f $f @o $o @k ($($k)* + 1) @call [$($c)* (active ($e) ($($k)*))] @act [$($a)* ($name, $e)] $($($rest)*)?)
    };
    (@f $f:ident @o [$($o:expr)?] @k $k:tt @call [$(($($c:tt)*))*] @act [$(($name:ident, $e:expr))*]) => {{
        let options: $crate::gradcheck::Options = $crate::__gradcheck_munch!(@opts $($o)?);
        $crate::gradcheck::check(
            &[$((stringify!($name), $crate::gradcheck::GradValue::to_flat(&$e))),*],
            |point: &[::std::vec::Vec<f64>]| {
                let value: f64 = $f($($crate::__gradcheck_munch!(@arg point $($c)*)),*);
                value
            },
            |point: &[::std::vec::Vec<f64>]| {
                let (_, g): (f64, _) = $f::grad($($crate::__gradcheck_munch!(@arg point $($c)*)),*);
                ::std::vec![$($crate::gradcheck::GradValue::to_flat(&g.$name)),*]
            },
            options,
        )
    }};
    (@arg $p:ident const $e:expr) => { $e };
    (@arg $p:ident active ($e:expr) ($($k:tt)*)) => { $crate::gradcheck::GradValue::with_flat(&$e, &$p[$($k)*]) };
    (@arg $p:ident borrowed ($e:expr) ($($k:tt)*)) => { &$crate::gradcheck::GradValue::with_flat(&$e, &$p[$($k)*]) };
    (@opts) => { ::core::default::Default::default() };
    (@opts $o:expr) => { $o };
}
