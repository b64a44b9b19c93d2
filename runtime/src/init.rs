//! Weight initialisation from a seeded RNG: Xavier/Glorot, He/Kaiming, GPT-2, zeros.
//!
//! Every initialiser draws i.i.d. values with mean 0 and a variance chosen so that the
//! signal's variance neither grows nor shrinks from layer to layer.
//!
//! **Where the constants come from.** For `y = Σᵢ wᵢ xᵢ` over `fan_in` inputs with
//! independent zero-mean `w`, and `x` independent of `w`:
//! `Var(y) = fan_in · Var(w) · E[x²]`.
//! - *Linear-ish activations (tanh, sigmoid near 0)*: `E[x²] = Var(x)`, so keeping
//!   `Var(y) = Var(x)` forward needs `Var(w) = 1/fan_in`, and keeping the gradient's
//!   variance backward needs `Var(w) = 1/fan_out`. Glorot & Bengio (2010, eq. 12)
//!   compromise with the harmonic mean: **`Var(w) = 2/(fan_in + fan_out)`**.
//! - *ReLU*: `x = max(0, z)` with `z` symmetric keeps half of `z`'s second moment:
//!   `E[x²] = Var(z)/2`. So `Var(y) = fan_in · Var(w) · Var(z)/2`, and holding it equal
//!   to `Var(z)` needs **`Var(w) = 2/fan_in`**: the 2 undoes ReLU's halving (He et al.
//!   2015, "Delving Deep into Rectifiers", §2.2, eq. 10). Mode `FanOut` is the same
//!   argument for the backward pass (eq. 14): `Var(w) = 2/fan_out`.
//! - A uniform `U(−a, a)` has variance `a²/3`, so each uniform variant uses
//!   `a = √(3·Var)`: `√(6/(fan_in + fan_out))` and `√(6/fan)`.
//! - *GPT-2* (Radford et al. 2019, §2.3, and its released code): every weight
//!   `N(0, 0.02²)`; the projections that write into the residual stream (attention
//!   output, second MLP matrix) are further scaled by `1/√(2L)` for `L` layers, because
//!   the stream is a sum of `2L` such contributions, whose variances add: scaling each
//!   by `1/√(2L)` keeps the sum's variance that of one.
//!
//! Reproducibility: the same seed and the same sequence of calls give the same values
//! (`rand::rngs::StdRng::seed_from_u64`; note `StdRng`'s algorithm may change between
//! `rand` versions, use `rand_chacha::ChaCha12Rng` to pin it).
//!
//! ```
//! use backprop::init::{Fans, Init};
//! use rand::{rngs::StdRng, SeedableRng};
//! let mut rng = StdRng::seed_from_u64(42);
//! let mut w = vec![0.0f32; 256 * 128];
//! Init::KaimingNormal(Fans::new(256, 128), backprop::init::FanMode::FanIn).fill(&mut rng, &mut w);
//! assert_eq!(Init::KaimingNormal(Fans::new(256, 128), backprop::init::FanMode::FanIn).std(), (2.0f64 / 256.0).sqrt());
//! ```

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::params::{Params, Real};

/// Fan-in and fan-out of a weight: inputs feeding one output unit, and outputs one input
/// feeds. For `Y = X·W` with `W` of shape `[in, out]`, `fan_in = in`, `fan_out = out`
/// (PyTorch's `Linear` stores `[out, in]`: mind the order when converting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fans {
    /// Inputs per output unit.
    pub fan_in: usize,
    /// Outputs per input unit.
    pub fan_out: usize,
}

impl Fans {
    /// Explicit fans.
    pub const fn new(fan_in: usize, fan_out: usize) -> Self {
        Fans { fan_in, fan_out }
    }
    /// Fans of a weight of shape `[in, out]` (this crate's `Y = X·W` layout), or
    /// `[.., in, out]` with leading dims multiplying both (a receptive field); a vector
    /// `[n]` has `fan_in = fan_out = n`.
    pub fn of_shape(shape: &[usize]) -> Self {
        match shape {
            [] => Fans::new(1, 1),
            [n] => Fans::new(*n, *n),
            [lead @ .., i, o] => {
                let field: usize = lead.iter().product();
                Fans::new(i * field, o * field)
            }
        }
    }
}

/// Which fan Kaiming's variance uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// Preserve the forward activations' variance: `Var(w) = 2/fan_in` (the default).
    FanIn,
    /// Preserve the backward gradients' variance: `Var(w) = 2/fan_out`.
    FanOut,
}

/// An initialiser; [`Init::fill`] draws it into a buffer. See the module docs for the
/// derivation of each variance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros (biases, LayerNorm β).
    Zeros,
    /// A constant (LayerNorm γ = 1).
    Constant(f64),
    /// `N(0, std²)`.
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// `U(−bound, bound)`.
    Uniform {
        /// Half-width.
        bound: f64,
    },
    /// Glorot normal: `N(0, 2/(fan_in + fan_out))`.
    XavierNormal(Fans),
    /// Glorot uniform: `U(±√(6/(fan_in + fan_out)))`.
    XavierUniform(Fans),
    /// He normal: `N(0, 2/fan)`.
    KaimingNormal(Fans, FanMode),
    /// He uniform: `U(±√(6/fan))`.
    KaimingUniform(Fans, FanMode),
    /// GPT-2: `N(0, 0.02²)`, times `1/√(2·layers)` for residual projections
    /// (`residual_layers = Some(L)`).
    Gpt2 {
        /// `Some(L)` for a projection into the residual stream of an `L`-layer model.
        residual_layers: Option<usize>,
    },
}

impl Init {
    /// The standard deviation of the values drawn (0 for constants).
    pub fn std(&self) -> f64 {
        let fan = |f: &Fans, m: &FanMode| match m {
            FanMode::FanIn => f.fan_in as f64,
            FanMode::FanOut => f.fan_out as f64,
        };
        match self {
            Init::Zeros | Init::Constant(_) => 0.0,
            Init::Normal { std } => *std,
            Init::Uniform { bound } => bound / 3f64.sqrt(),
            Init::XavierNormal(f) | Init::XavierUniform(f) => {
                (2.0 / (f.fan_in + f.fan_out) as f64).sqrt()
            }
            Init::KaimingNormal(f, m) | Init::KaimingUniform(f, m) => (2.0 / fan(f, m)).sqrt(),
            Init::Gpt2 {
                residual_layers: None,
            } => 0.02,
            Init::Gpt2 {
                residual_layers: Some(l),
            } => 0.02 / (2.0 * *l as f64).sqrt(),
        }
    }

    /// Fills `w` with i.i.d. draws from `rng` (values are drawn in `f64`, then rounded).
    ///
    /// # Panics
    /// If the spread is not a finite number ≥ 0 (a negative or NaN `std` or `bound`, a
    /// fan of 0, `Gpt2 { residual_layers: Some(0) }`) or a constant is not finite; the
    /// message names the initialiser and the value (it would fill `w` with ±∞ or NaN).
    pub fn fill<F: Real, R: Rng + ?Sized>(&self, rng: &mut R, w: &mut [F]) {
        let std = self.std();
        assert!(
            std.is_finite() && std >= 0.0,
            "init: {self:?} has standard deviation {std}; it must be a finite number ≥ 0 (a fan of 0, or a negative or NaN spread?)"
        );
        if let Init::Constant(c) = self {
            assert!(c.is_finite(), "init: {self:?} is not a finite constant");
        }
        match self {
            Init::Zeros => w.fill(F::zero()),
            Init::Constant(c) => w.fill(F::of(*c)),
            Init::Uniform { .. } | Init::XavierUniform(_) | Init::KaimingUniform(..) => {
                // Var(U(−a, a)) = a²/3, so a = √3·std.
                let a = self.std() * 3f64.sqrt();
                for x in w.iter_mut() {
                    *x = F::of(rng.random_range(-a..=a));
                }
            }
            _ => {
                let std = self.std();
                for x in w.iter_mut() {
                    let z: f64 = StandardNormal.sample(rng);
                    *x = F::of(std * z);
                }
            }
        }
    }
}

/// Initialises every buffer of `params`, in walk order, with the initialiser `rule`
/// picks from the buffer's name and shape.
///
/// ```
/// use backprop::init::{init_params, Fans, Init};
/// use rand::{rngs::StdRng, SeedableRng};
/// let mut params = vec![("w", vec![0.0f64; 12]), ("b", vec![1.0; 4])];
/// init_params(&mut params, &mut StdRng::seed_from_u64(0), |name, _shape| {
///     if name == "b" { Init::Zeros } else { Init::XavierNormal(Fans::new(3, 4)) }
/// });
/// assert_eq!(params[1].1, [0.0; 4]);
/// assert!(params[0].1.iter().all(|&x| x != 0.0));
/// ```
pub fn init_params<F: Real, P: Params<F> + ?Sized, R: Rng + ?Sized>(
    params: &mut P,
    rng: &mut R,
    mut rule: impl FnMut(&str, &[usize]) -> Init,
) {
    params.visit_mut("", &mut |b| rule(&b.name, &b.shape).fill(rng, b.values));
}
