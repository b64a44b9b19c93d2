//! Reverse-mode automatic differentiation of plain Rust functions, at compile time.
//!
//! Put [`macro@grad`] on an ordinary function of floats and you get its exact gradient
//! from code generated at compile time, which you can read with `cargo expand`:
//!
//! ```
//! use backprop::grad;
//!
//! /// L = (a·b + c)²
//! #[grad]
//! fn f(a: f64, b: f64, c: f64) -> f64 {
//!     let d = a * b;
//!     let e = d + c;
//!     e * e
//! }
//!
//! let (l, g) = f_grad(2.0, 3.0, 4.0); // value and gradient in one call
//! assert_eq!((l, g.a, g.b, g.c), (100.0, 60.0, 40.0, 20.0));
//! assert_eq!(f(2.0, 3.0, 4.0), 100.0); // `f` itself is unchanged
//! ```
//!
//! `#[grad] fn f(..) -> R` keeps `f` and adds `f_grad(..) -> (R, FGrad)` (value and
//! gradient; `FGrad` has one field per differentiated argument, of the argument's
//! gradient type), `f_forward(..) -> (R, impl Pullback)` (value and tape;
//! [`Pullback::bytes`] says what it keeps) and `f_backward(tape, d_out) -> FGrad`; a
//! function returning a float also gets `f_jvp(.., t_a, ..) -> (R, R)`, forward mode:
//! the value and the directional derivative along one tangent per differentiated
//! argument, of that argument's type.
//!
//! ```
//! # use backprop::grad;
//! #[grad]
//! fn f(a: f64, b: f64) -> f64 {
//!     (a * b).sin() + a.exp()
//! }
//!
//! let (value, tangent) = f_jvp(0.3, 0.7, 1.0, 0.0); // along (1, 0): ∂f/∂a
//! assert_eq!(value, f(0.3, 0.7));
//! assert_eq!(tangent, (0.3_f64 * 0.7).cos() * 0.7 + 0.3_f64.exp());
//! assert_eq!(tangent, f_grad(0.3, 0.7).1.a);
//! ```
//!
//! It also gets `f_hvp(.., v_a, ..) -> (R, FGrad, FGrad)`: value, gradient and the
//! Hessian-vector product `∇²f·v` (floats, buffers and structs; see [`hessian`]). And a
//! `#[grad]` function may call another's `f_grad` and use the gradient's fields: its
//! reverse pass goes through the callee's Hessian-vector product (a gradient penalty,
//! double backpropagation, a MAML step).
//!
//! ```
//! # use backprop::grad;
//! #[grad]
//! fn energy(a: f64, b: f64) -> f64 {
//!     a * a * b + b.sin()
//! }
//!
//! /// The energy plus the squared norm of its gradient.
//! #[grad]
//! fn penalised(a: f64, b: f64) -> f64 {
//!     let (e, g) = energy_grad(a, b); // g.a = 2ab, g.b = a² + cos b
//!     e + g.a * g.a + g.b * g.b
//! }
//!
//! let (a, b) = (0.5_f64, 2.0_f64);
//! let (_, g) = penalised_grad(a, b);
//! // ∇ = ∇e + 2 H ∇e, with H = [[2b, 2a], [2a, −sin b]]
//! let (ga, gb) = (2.0 * a * b, a * a + b.cos());
//! let expected_a = ga + 2.0 * (2.0 * b * ga + 2.0 * a * gb);
//! let expected_b = gb + 2.0 * (2.0 * a * ga - b.sin() * gb);
//! assert!((g.a - expected_a).abs() < 1e-12 && (g.b - expected_b).abs() < 1e-12);
//! ```
//!
//! What `#[grad]` differentiates: floats (`f32`, `f64`, `T: Float`), buffers of floats
//! (`&[f64]`, `Vec<f64>`, `[f64; N]`: the gradient is a `Vec`), ndarray arrays, and
//! structs of parameters ([`Differentiable`], derivable: the gradient is the same
//! struct); `let`, reassignment and compound assignment; `if`/`else`, `match` on values
//! without a derivative, `for` over ranges and over buffers (`x.iter()`, `.zip`,
//! `.enumerate`, `.map(..).sum()`, `.fold`), `while` and `loop` with `break`/`continue`
//! and `return` from loops; indexing, sub-slices and element writes of local buffers;
//! arithmetic with broadcasting, float and array methods (`dot`, `t`, `sum`, ...);
//! calls of other `#[grad]` functions, of [`macro@custom_vjp`] functions (hand-written
//! pullbacks) and of the differentiable [`ops`]; `&self` methods and associated functions
//! with `#[grad]` on their `impl` too (`#[grad] impl Model { #[grad] fn loss(&self, ..) }`
//! adds `model.loss_grad(..)`, whose gradient's `self_` is a `Model`). Anything else is a compile error that
//! says what is supported. The repository's README lists it all, and `docs/RULES.md`
//! every rule with its convention at kinks and what its tape keeps.
//!
//! | module | holds |
//! |---|---|
//! | [`rules`] | the pullback of every primitive, by type, with its convention at kinks |
//! | [`functions`] | differentiable scalar activations: sigmoid, relu, gelu, ... |
//! | [`tape`] | the forward pass's saved state and the [`Pullback`] trait |
//! | [`differentiable`] | structs of parameters as one differentiable argument |
//! | [`mod@gradcheck`] | central differences in f64 against a generated gradient |
//! | [`ops`] | differentiable tensor functions over ndarray, each with its pullback |
//! | [`optim`], [`schedule`], [`clip`], [`init`], [`memory`], [`params`], [`checkpoint`] | the training toolbox |
//! | [`data`], [`diagnostics`] | IDX datasets; the training pathologies as checks |
//! | [`kernels`] | the hot loops, with CPU-feature dispatch and scalar oracles |
//! | [`dist`] | data-parallel training over MPI (feature `mpi`): rank-sharded batches, bucketed allreduce |
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod clip;
pub mod data;
pub mod dense;
pub mod diagnostics;
pub mod differentiable;
pub mod dist;
pub mod functions;
pub mod gradcheck;
pub mod init;
pub mod kernels;
pub mod memory;
pub mod ops;
pub mod optim;
pub mod params;
pub mod rules;
pub mod schedule;
#[doc(hidden)]
pub mod stack;
pub mod tape;

#[doc(hidden)]
pub mod private;
#[doc(hidden)]
pub use private as __private;

/// `#[grad]` on a function adds, beside it: `f_grad(args..) -> (value, FGrad)` (a loss)
/// or `f_vjp(args.., d_out) -> (value, FGrad)` (a function returning an array: a
/// layer), `f_forward` and `f_backward` (the tape and the reverse pass), `f_jvp`
/// (forward mode, for a loss) and `f_hvp` (Hessian-vector products, for a loss over
/// floats, buffers and structs). `#[grad(w, b)]` names the arguments to differentiate
/// (by default every float, buffer, array and struct argument). On an `impl` block it
/// differentiates the methods marked `#[grad]` inside it (`loss_grad`, `loss_vjp`, ..).
///
/// ```
/// use backprop::grad;
/// use ndarray::{array, Array1, Array2};
///
/// /// A layer: its VJP takes the output's cotangent.
/// #[grad]
/// fn dense(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
///     (x.dot(w) + b).tanh()
/// }
///
/// /// A loss: a gradient, forward mode and second order.
/// #[grad(w)]
/// fn loss(w: &[f64], x: f64) -> f64 {
///     (w[0] * x + w[1]).powi(2)
/// }
///
/// let (y, g) = dense_vjp(&array![[1.0, 0.0]], &array![[0.5], [0.1]], &array![0.0], array![[1.0]]);
/// assert_eq!(y[[0, 0]], 0.5_f64.tanh());
/// assert_eq!(g.b[0], 1.0 - 0.5_f64.tanh().powi(2));
///
/// let (l, g) = loss_grad(&[2.0, 1.0], 3.0);          // L = (2·3 + 1)² = 49
/// assert_eq!((l, g.w.clone()), (49.0, vec![42.0, 14.0]));
/// let (_, t) = loss_jvp(&[2.0, 1.0], 3.0, &[1.0, 0.0]);   // ∂L/∂w₀
/// assert_eq!(t, 42.0);
/// let (_, _, hv) = loss_hvp(&[2.0, 1.0], 3.0, &[1.0, 0.0]); // H·e₀ = 2·(x², x)
/// assert_eq!(hv.w, vec![18.0, 6.0]);
/// ```
pub use backprop_derive::grad;

/// `#[custom_vjp(my_vjp)]` on `fn f(a, b) -> y` declares its pullback by hand:
/// `fn my_vjp(a, b, y, d) -> (d_a, d_b)`, one cotangent per argument. `#[grad]`
/// functions then differentiate calls of `f` through `my_vjp` (forward mode pairs it
/// with the tangents; it declares no second derivative, so `f_hvp` through it panics
/// naming it).
///
/// ```
/// use backprop::{custom_vjp, grad};
///
/// /// `ln(1 + eˣ)`, with the pullback `d·σ(x)` written by hand.
/// #[custom_vjp(softplus_vjp)]
/// fn my_softplus(x: f64) -> f64 {
///     x.max(0.0) + (-x.abs()).exp().ln_1p()
/// }
/// fn softplus_vjp(x: f64, _y: f64, d: f64) -> (f64,) {
///     (d / (1.0 + (-x).exp()),)
/// }
///
/// #[grad]
/// fn f(x: f64) -> f64 {
///     my_softplus(2.0 * x)
/// }
///
/// assert_eq!(f_grad(0.0).1.x, 1.0); // 2·σ(0)
/// ```
pub use backprop_derive::custom_vjp;
pub use dense::{hessian, jacobian};
pub use differentiable::{Differentiable, Real};
pub use functions::companions::{
    erf, erfc, gelu, leaky_relu, logsumexp, relu, sigmoid, silu, softplus,
};
pub use functions::{Erf, erf, erfc, gelu, leaky_relu, logsumexp, relu, sigmoid, silu, softplus};
pub use kernels::run_on_pool;
pub use tape::{BoxedTape, Inactive, Pullback, Tape};

/// Returns `x` unchanged, but `#[grad]` treats the result as a constant: no gradient
/// flows back through it (JAX's `lax.stop_gradient`, PyTorch's `.detach()`).
///
/// ```
/// use backprop::{grad, stop_gradient};
///
/// #[grad]
/// fn f(x: f64) -> f64 {
///     x * stop_gradient(x) // d/dx = stop_gradient(x) = x, not 2x
/// }
/// assert_eq!(f_grad(3.0).1.x, 3.0);
/// ```
#[inline(always)]
pub fn stop_gradient<T>(x: T) -> T {
    x
}
