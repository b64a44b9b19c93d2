//! What generated code names, and nothing else. Not a public API: `#[grad]`
//! expansions call these by absolute path (`::backprop::__private::...`) so they keep
//! working beside a user's shadowed prelude or renamed imports.

/// The bound `#[grad]` adds to a generic function's float type parameters in its
/// companions (the tensor rules' `Scalar`, and a generic struct's `Differentiable`).
pub use crate::differentiable::Real;
pub use crate::differentiable::{Accumulate, Differentiable, elements_of};
pub use crate::functions::vjp::*;
pub use crate::rules::elementwise;
pub use crate::rules::scalar::*;
/// Each scalar rule as a differentiable function (`f_hvp`'s reverse pass over the
/// tangent program calls these).
pub use crate::rules::second;
pub use crate::rules::tangent;
pub use crate::rules::tensor;
pub use crate::stack::Stack;
pub use crate::tape::{
    Branch, DualTape, HeapOfOther, HeapOfOwned, Inactive, Kept, MapGrad, Probe, Pullback, Tape,
    boxed, keep,
};
pub use core::option::Option;

/// Forward mode's helpers (`f_jvp` and the companions' `jvp`).
#[path = "jvp.rs"]
pub mod jvp;
/// Gradients of gradients (`h_grad` called inside a `#[grad]` function).
#[path = "nested.rs"]
pub mod nested;
pub use num_traits::Float;

/// The scalar rules without strong zeros, under the same names: the second reverse
/// body of a `#[grad]` function calls these (see [`crate::rules::scalar::plain`] for
/// when, and why the gradient is the same).
pub mod plain {
    pub use crate::functions::vjp::*;
    pub use crate::rules::scalar::plain::*;
}

std::thread_local! {
    static PLAIN_NAN: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Notes a NaN cotangent reaching a hand-written pullback during a plain pass. Such a
/// pullback need not be linear in its cotangent (a clipped gradient, `d.clamp(-1, 1)`)
/// and could turn the NaN of a plain `0 · ∞` into a number: `f_grad` then takes the
/// strong-zero pass, as it would for a NaN in the gradient.
#[inline(always)]
pub fn note_plain_nan<T: PartialEq>(d: &T) {
    #[allow(clippy::eq_op)]
    if d != d {
        PLAIN_NAN.with(|c| c.set(true));
    }
}

/// Runs `pass` (a reverse pass without strong zeros) and says whether a hand-written
/// pullback saw a NaN cotangent during it ([`note_plain_nan`]).
#[inline(always)]
pub fn plain_pass<G>(pass: impl FnOnce() -> G) -> (G, bool) {
    let outer = PLAIN_NAN.with(|c| c.replace(false));
    let grad = pass();
    let seen = PLAIN_NAN.with(|c| c.replace(outer));
    (grad, seen)
}

/// Whether a scalar cotangent is NaN (the test `f_grad` makes after a reverse pass
/// without strong zeros).
#[inline(always)]
pub fn is_nan<T: num_traits::Float>(x: &T) -> bool {
    x.is_nan()
}

/// Whether any element of a buffer's cotangent is NaN.
#[inline]
pub fn any_nan<T: num_traits::Float>(x: &[T]) -> bool {
    // A sum is NaN when a term is (or when infinities of both signs meet, which the
    // exact test below then rules out); the sum runs without a branch per element.
    let mut sum = T::zero();
    for v in x {
        sum = sum + *v;
    }
    !sum.is_finite() && x.iter().any(|v| v.is_nan())
}

/// Wraps a tape so its gradient passes through `f` (positional tuple → named struct).
#[inline(always)]
pub fn map_grad<P, H>(tape: P, f: H) -> MapGrad<P, H> {
    crate::tape::MapGrad::new(tape, f)
}

/// The additive identity of an adjoint (the gradient of an argument nothing flows to).
#[inline(always)]
pub fn zero<T: num_traits::Zero>() -> T {
    T::zero()
}

/// −0.0, where a sum starts: std's `Sum` for floats starts there (the neutral element:
/// −0 + x = x for every x, +0 included), so an empty sum is −0.0 in `f` and its
/// companions alike.
#[inline(always)]
pub fn neg_zero<T: num_traits::Float>() -> T {
    T::neg_zero()
}

/// The seed cotangent dL/dL = 1.
#[inline(always)]
pub fn one<T: num_traits::One>() -> T {
    T::one()
}

/// Inserted where an expansion was rejected: the stubs type-check against any
/// caller, and the `compile_error!` beside them is the only error the user sees.
#[cold]
pub fn rejected() -> ! {
    panic!("#[grad] rejected this function at compile time; see the compile error")
}

/// A cotangent the caller can accumulate: anything but [`Inactive`]. The expansion
/// checks each cotangent a call returns for an active argument with this, so passing
/// an active value to a parameter the callee does not differentiate is an error at the
/// call that names the problem.
#[diagnostic::on_unimplemented(
    message = "an active value is passed to a parameter that the called function does not differentiate",
    label = "this call's rule returns no gradient for one of its active arguments",
    note = "differentiate that parameter in the callee (`#[grad(x, k)]`), or pass a constant (`backprop::stop_gradient(...)`)"
)]
pub trait Cotangent {}
impl Cotangent for f32 {}
impl Cotangent for f64 {}
impl<A, D> Cotangent for ndarray::Array<A, D> {}
impl<T> Cotangent for std::vec::Vec<T> {}

/// A buffer's cotangent from a call: any owner of a slice, so not [`Inactive`], which a
/// callee returns for a parameter it does not differentiate. Passing an active buffer
/// there is then this one error at the call, in [`Cotangent`]'s words.
#[diagnostic::on_unimplemented(
    message = "an active buffer is passed to a parameter that the called function does not differentiate",
    label = "this call's rule returns no gradient for one of its active arguments",
    note = "differentiate that parameter in the callee (`#[grad(x, k)]`), or pass a constant (`backprop::stop_gradient(...)`)"
)]
pub trait BufferCotangent<T> {
    /// The cotangent's elements.
    fn elements(&self) -> &[T];
}

impl<T, P: AsRef<[T]> + ?Sized> BufferCotangent<T> for P {
    #[inline(always)]
    fn elements(&self) -> &[T] {
        self.as_ref()
    }
}

/// Implemented by nothing: the first tangent of `f_jvp` for a function that returns an
/// array through an operation without a tangent rule, so that a call is this one error.
#[diagnostic::on_unimplemented(
    message = "`#[grad]` has no forward mode (`f_jvp`) for this array-valued function: an operation in it has no tangent rule yet",
    label = "`f_jvp` of an array-valued function without a tangent pass",
    note = "README's \"Forward mode\" and \"Second order\" list the array operations with tangent rules (a layer that uses another function's gradient, `f_grad`, has none: its tangent would be a second derivative inside a first); `f_jvp` of a scalar function built on this one (a loss) is exact; `f_vjp(args.., cotangent)` is the transposed product Jᵀ·d, not J·t"
)]
pub trait NoForwardModeOfArrays {}

/// Compile-time check only (see [`Cotangent`]).
#[inline(always)]
pub fn expect_cotangent<C: Cotangent>(_: &C) {}

/// The `k`-th index of a `for` loop's range, for the reverse pass (which recomputes
/// the index instead of saving it). O(1) for ranges, `rev()` and `step_by`.
#[inline(always)]
pub fn nth<I: Iterator + Clone>(range: &I, k: usize) -> I::Item {
    match range.clone().nth(k) {
        Some(i) => i,
        None => unreachable!("the loop ran its iteration {k}, so its range has it"),
    }
}

/// `Σ d`: the cotangent of the fill value of `vec![v; n]`.
#[inline]
pub fn sum_of<T: Copy + core::ops::Add<Output = T> + num_traits::Zero>(d: &[T]) -> T {
    d.iter().fold(T::zero(), |a, &b| a + b)
}

/// `d_x += part`, elementwise: a buffer's cotangent from a call or a copy, added into
/// the adjoint of the buffer (or sub-slice) it came from.
///
/// `part` is any owner of a slice (the callee's `Vec`): taking it generically keeps a
/// call rustc cannot resolve (a function without a rule) at its one error, instead of
/// adding "`[f64]` has no size known at compile time" for the unknown cotangent.
#[inline]
pub fn add_into<T: Copy + core::ops::Add<Output = T>, P: BufferCotangent<T> + ?Sized>(
    target: &mut [T],
    part: &P,
) {
    let part = part.elements();
    check_part_len(part.len(), target.len());
    for (t, &p) in target.iter_mut().zip(part) {
        *t = *t + p;
    }
}

/// [`add_into`] for a part of a field of a struct argument (`g(&p.w[1..])`,
/// `g(&p.blocks[1..])`): its elements are floats or the structs of a list of them, each
/// moved into its own as the whole field's cotangent would be ([`Accumulate`]).
#[inline]
pub fn add_into_field<T: Accumulate, P: ListCotangent<T>>(target: &mut [T], part: P) {
    let part = part.into_elements();
    check_part_len(part.len(), target.len());
    for (t, p) in target.iter_mut().zip(part) {
        t.accumulate(p);
    }
}

/// A callee's cotangent for a part of a list it was lent: its elements, by value. Not
/// [`Inactive`], which a callee returns for a parameter it does not differentiate.
#[diagnostic::on_unimplemented(
    message = "an active buffer is passed to a parameter that the called function does not differentiate",
    label = "this call's rule returns no gradient for one of its active arguments",
    note = "differentiate that parameter in the callee (`#[grad(x, k)]`), or pass a constant (`backprop::stop_gradient(...)`)"
)]
pub trait ListCotangent<T> {
    /// The elements.
    fn into_elements(self) -> Vec<T>;
}

impl<T> ListCotangent<T> for Vec<T> {
    #[inline(always)]
    fn into_elements(self) -> Vec<T> {
        self
    }
}

fn check_part_len(part: usize, target: usize) {
    assert!(
        part <= target,
        "a buffer's cotangent has {part} elements, but the buffer it flows into has {target}"
    );
}

/// The adjoint of a struct argument before the reverse pass: zeros of its shape.
#[inline]
/// Its arrays are left empty until a cotangent moves in (`Differentiable::lazy_zero`);
/// the function returned beside it (`fill_missing`) completes it before the gradient is
/// returned. (One bound check here: a struct that is not `Differentiable` is one error.)
#[allow(clippy::type_complexity)]
pub fn zero_like<T: Differentiable>(x: &T) -> (T, fn(T, &T) -> T, Checker<T>) {
    (x.lazy_zero(), fill_missing::<T>, shape_mismatch::<T>)
}

/// A check of a value against another of the same type: where their shapes differ.
pub type Checker<T> = fn(&T, &T, &str) -> Option<String>;

fn shape_mismatch<T: Differentiable>(a: &T, b: &T, path: &str) -> Option<String> {
    a.shape_mismatch(b, path)
}

fn slice_mismatch<T: Differentiable>(a: &[T], b: &[T], path: &str) -> Option<String> {
    crate::differentiable::list_mismatch(a, b, path)
}

/// Forward mode's tangent of a struct argument (or of a slice of them): the one given,
/// checked against the argument's shape by `check`, or `zero`. Both come from the
/// reverse pass's [`zero_like`] (or [`zero_like_slice`]), called on the same span, so a
/// struct that is not `Differentiable` is still one error.
///
/// # Panics
/// If a given tangent's buffers, arrays or lists do not have the argument's shapes (the
/// message names the field).
#[track_caller]
pub fn struct_tangent<'a, T: ?Sized>(
    given: Option<&'a T>,
    like: &T,
    zero: &'a T,
    check: fn(&T, &T, &str) -> Option<String>,
) -> &'a T {
    match given {
        Some(t) => {
            if let Some(e) = check(t, like, "") {
                panic!(
                    "jvp: the tangent of a struct argument does not have its shape: the tangent's {e}"
                );
            }
            t
        }
        None => zero,
    }
}

/// The adjoint of a slice of structs (`layers: &[Layer]`): a `Vec` of zeros of each.
#[allow(clippy::type_complexity)]
pub fn zero_like_slice<T: Differentiable>(
    x: &[T],
) -> (
    Vec<T>,
    fn(Vec<T>, &[T]) -> Vec<T>,
    fn(&[T], &[T], &str) -> Option<String>,
) {
    (
        x.iter().map(Differentiable::lazy_zero).collect(),
        fill_missing_slice::<T>,
        slice_mismatch::<T>,
    )
}

/// A struct argument's gradient, completed: arrays no cotangent reached become zeros.
pub fn fill_missing<T: Differentiable>(mut d: T, like: &T) -> T {
    d.fill_missing(like);
    d
}

/// [`fill_missing`] for a slice of structs.
pub fn fill_missing_slice<T: Differentiable>(mut d: Vec<T>, like: &[T]) -> Vec<T> {
    for (x, l) in d.iter_mut().zip(like) {
        x.fill_missing(l);
    }
    d
}

/// `*place += cotangent` for a field of a struct argument.
#[inline]
pub fn accumulate<T: Accumulate<R>, R>(place: &mut T, cotangent: R) {
    place.accumulate(cotangent);
}

/// The last entry of a loop's stack: what the iteration being undone saved.
#[inline(always)]
pub fn pop<T>(stack: &mut crate::stack::Stack<T>) -> T {
    match stack.pop() {
        Some(entry) => entry,
        None => unreachable!("the reverse pass undoes exactly the iterations the forward pass ran"),
    }
}

/// The last element of a buffer's adjoint, removed: the cotangent of the element a
/// `push` appended (pushes are undone last first).
#[inline(always)]
pub fn pop_last<T>(adjoint: &mut Vec<T>) -> T {
    match adjoint.pop() {
        Some(d) => d,
        None => unreachable!("the reverse pass undoes exactly the pushes the forward pass made"),
    }
}

/// `if let Some(m) = mask` in `#[grad]` code: the option's value by reference, whether
/// it was written `mask: Option<&T>`, `mask: &Option<T>` or `&mask`.
/// A number held by value (`scale: Option<f64>`) comes out by value.
pub fn option_ref<O: OptionRef>(o: O) -> Option<O::Out> {
    o.option_ref()
}

#[doc(hidden)]
pub trait OptionRef {
    type Out;
    fn option_ref(self) -> Option<Self::Out>;
}

impl<'a, T: ?Sized> OptionRef for Option<&'a T> {
    type Out = &'a T;
    fn option_ref(self) -> Option<&'a T> {
        self
    }
}

impl<'a, T> OptionRef for &'a Option<T> {
    type Out = &'a T;
    fn option_ref(self) -> Option<&'a T> {
        self.as_ref()
    }
}

macro_rules! option_by_value {
    ($($t:ty),*) => {$(
        impl OptionRef for Option<$t> {
            type Out = $t;
            fn option_ref(self) -> Option<$t> {
                self
            }
        }
    )*};
}
option_by_value!(f32, f64, usize, u32, u64, i32, i64, bool);
