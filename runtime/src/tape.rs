//! The tape: what a forward pass keeps for its reverse pass, and how to run it.
//!
//! A `#[grad]` function's forward companion returns its value together with a
//! [`Tape`]. The tape *is* the pullback: a closure whose captured environment holds
//! exactly the intermediates the reverse pass reads (nothing else: the macro's record
//! analysis decides what is captured). Its size is therefore measurable with
//! [`Pullback::bytes`], which is the lesson's "training keeps activations" made a
//! number.
//!
//! Why a closure and not a named struct of fields: the macro is syntactic and cannot
//! name the types of intermediates (`a.dot(&b)` may be a matrix or a vector); a
//! closure lets rustc infer them, the same way JAX's `vjp` returns a pullback
//! function. See `docs/DESIGN.md`.

use core::fmt;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

/// Something that maps an output cotangent to input cotangents: the reverse half of a
/// function, produced by its forward pass.
///
/// `Cot` is the type of the output cotangent (the function's return type), `Grad` the
/// gradient it returns: the `*Grad` struct for a `#[grad]` function's `f_forward`, or
/// a tuple with one entry per argument for the positional form that composition uses.
pub trait Pullback<Cot> {
    /// The gradient with respect to the inputs.
    type Grad;
    /// Runs the reverse pass with output cotangent `d_out` (use 1 for the gradient of
    /// a scalar loss). Consumes the tape: its saved values are moved out, not copied.
    fn backward(self, d_out: Cot) -> Self::Grad;
    /// The reverse pass without strong zeros, where the tape has one (`0 · ∞` is NaN
    /// there); otherwise [`backward`](Pullback::backward). `f_grad` calls it first and
    /// falls back to a strong-zero pass if the gradient has a NaN: see
    /// [`crate::rules::scalar::plain`] for why the two then agree.
    #[doc(hidden)]
    #[inline(always)]
    fn backward_unguarded(self, d_out: Cot) -> Self::Grad
    where
        Self: Sized,
    {
        self.backward(d_out)
    }
    /// Bytes the tape holds: the captured saved values, plus heap buffers (per-loop
    /// stacks, nested tapes' buffers) it owns.
    fn bytes(&self) -> usize;
}

/// A forward pass's saved state together with the code of its reverse pass.
///
/// # Example
/// ```
/// use backprop::{grad, Pullback};
///
/// /// L = (a·b + c)²
/// #[grad]
/// fn f(a: f64, b: f64, c: f64) -> f64 {
///     let e = a * b + c;
///     e * e
/// }
///
/// let (l, tape) = f_forward(2.0, 3.0, 4.0);
/// assert_eq!(l, 100.0);
/// // The reverse pass reads a, b (for the product) and e (for the square): 3 × 8 bytes.
/// assert_eq!(tape.bytes(), 24);
/// let g = f_backward(tape, 1.0);
/// assert_eq!((g.a, g.b, g.c), (60.0, 40.0, 20.0));
/// ```
#[must_use = "a tape does nothing until its backward pass runs"]
pub struct Tape<F> {
    heap_bytes: usize,
    pullback: F,
}

impl<F> Tape<F> {
    /// A tape whose saved state is exactly what `pullback` captures.
    #[inline(always)]
    pub fn new(pullback: F) -> Self {
        Tape {
            heap_bytes: 0,
            pullback,
        }
    }

    /// A tape that also owns `heap_bytes` of heap buffers (loop stacks, nested tapes).
    #[inline(always)]
    pub fn with_heap_bytes(heap_bytes: usize, pullback: F) -> Self {
        Tape {
            heap_bytes,
            pullback,
        }
    }
}

impl<Cot, G, F> Pullback<Cot> for Tape<F>
where
    F: FnOnce(Cot) -> G,
{
    type Grad = G;

    #[inline(always)]
    fn backward(self, d_out: Cot) -> G {
        (self.pullback)(d_out)
    }

    fn bytes(&self) -> usize {
        core::mem::size_of_val(&self.pullback) + self.heap_bytes
    }
}

impl<F> fmt::Debug for Tape<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("saved_bytes", &core::mem::size_of_val(&self.pullback))
            .field("heap_bytes", &self.heap_bytes)
            .finish()
    }
}

/// A [`Tape`] whose reverse pass comes in two forms, chosen by the closure's second
/// argument: with strong zeros (`true`, what [`Pullback::backward`] runs) and without
/// (`false`, [`Pullback::backward_unguarded`]). `#[grad]` builds one when the reverse
/// pass has scalar rules to gain from it; see [`crate::rules::scalar::plain`].
#[must_use = "a tape does nothing until its backward pass runs"]
pub struct DualTape<F> {
    heap_bytes: usize,
    pullback: F,
}

impl<F> DualTape<F> {
    /// A tape whose saved state is exactly what `pullback` captures.
    #[inline(always)]
    pub fn new(pullback: F) -> Self {
        DualTape {
            heap_bytes: 0,
            pullback,
        }
    }

    /// A tape that also owns `heap_bytes` of heap buffers (loop stacks, nested tapes).
    #[inline(always)]
    pub fn with_heap_bytes(heap_bytes: usize, pullback: F) -> Self {
        DualTape {
            heap_bytes,
            pullback,
        }
    }
}

impl<Cot, G, F> Pullback<Cot> for DualTape<F>
where
    F: FnOnce(Cot, bool) -> G,
{
    type Grad = G;

    #[inline(always)]
    fn backward(self, d_out: Cot) -> G {
        (self.pullback)(d_out, true)
    }

    #[inline(always)]
    fn backward_unguarded(self, d_out: Cot) -> G {
        (self.pullback)(d_out, false)
    }

    fn bytes(&self) -> usize {
        core::mem::size_of_val(&self.pullback) + self.heap_bytes
    }
}

impl<F> fmt::Debug for DualTape<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("saved_bytes", &core::mem::size_of_val(&self.pullback))
            .field("heap_bytes", &self.heap_bytes)
            .finish()
    }
}

/// A tape whose gradient is passed through a conversion (positional tuple → named
/// struct). Holds exactly what the inner tape holds.
#[must_use = "a tape does nothing until its backward pass runs"]
pub struct MapGrad<P, H> {
    inner: P,
    f: H,
}

impl<P, H> MapGrad<P, H> {
    /// `inner` with `f` applied to the gradient it returns.
    #[inline(always)]
    pub fn new(inner: P, f: H) -> Self {
        MapGrad { inner, f }
    }
}

impl<Cot, P, H, G> Pullback<Cot> for MapGrad<P, H>
where
    P: Pullback<Cot>,
    H: FnOnce(P::Grad) -> G,
{
    type Grad = G;

    #[inline(always)]
    fn backward(self, d_out: Cot) -> G {
        (self.f)(self.inner.backward(d_out))
    }

    #[inline(always)]
    fn backward_unguarded(self, d_out: Cot) -> G {
        (self.f)(self.inner.backward_unguarded(d_out))
    }

    fn bytes(&self) -> usize {
        self.inner.bytes()
    }
}

impl<P: fmt::Debug, H> fmt::Debug for MapGrad<P, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// The cotangent slot of an argument that is not differentiated (an inactive
/// argument: data, labels, sizes). Adding it to an adjoint is a type error, so an
/// active value passed where a callee expects a constant cannot silently lose its
/// gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inactive;

/// Wraps a value whose heap bytes a tape counts (used by `#[grad]` expansions through
/// method resolution: owned arrays and nested tapes report their heap; anything else,
/// scalars, borrows and views, reports 0 because the tape does not own heap for it).
#[doc(hidden)]
pub struct Probe<'a, T: ?Sized>(pub &'a T);

/// Heap owned by an array or a nested tape.
#[doc(hidden)]
pub trait HeapOfOwned {
    /// Bytes on the heap.
    fn heap_bytes(&self) -> usize;
}

impl<A, D: ndarray::Dimension> HeapOfOwned for Probe<'_, ndarray::Array<A, D>> {
    fn heap_bytes(&self) -> usize {
        self.0.len() * core::mem::size_of::<A>()
    }
}

impl<F> HeapOfOwned for Probe<'_, Tape<F>> {
    fn heap_bytes(&self) -> usize {
        self.0.heap_bytes
    }
}

impl<P, H> HeapOfOwned for Probe<'_, MapGrad<P, H>>
where
    for<'a> Probe<'a, P>: HeapOfOwned,
{
    fn heap_bytes(&self) -> usize {
        Probe(&self.0.inner).heap_bytes()
    }
}

/// The fallback: no heap of its own.
#[doc(hidden)]
pub trait HeapOfOther {
    /// 0.
    fn heap_bytes(&self) -> usize {
        0
    }
}

impl<T: ?Sized> HeapOfOther for &Probe<'_, T> {}

/// Which branch of an `if` ran, holding that branch's pullback: the tape of a branch is
/// this one tag plus what the taken branch's pullback reads.
#[doc(hidden)]
pub enum Branch<A, B> {
    /// The `if` branch ran.
    Then(A),
    /// The `else` branch ran.
    Else(B),
}

impl<T> HeapOfOwned for Probe<'_, Vec<T>> {
    /// A loop's stack of per-iteration pullbacks: its allocation.
    fn heap_bytes(&self) -> usize {
        self.0.capacity() * core::mem::size_of::<T>()
    }
}

impl<T> HeapOfOwned for Probe<'_, crate::stack::Stack<T>> {
    /// A loop's stack: the bytes its entries take (its allocation, recycled from earlier
    /// tapes, may be larger).
    fn heap_bytes(&self) -> usize {
        self.0.len() * core::mem::size_of::<T>()
    }
}

/// A tape behind a pointer, for a `#[grad]` function that calls itself: its tape holds
/// the tape of the inner call, whose type would otherwise contain itself. One
/// allocation per recursive call.
#[must_use = "a tape does nothing until its backward pass runs"]
pub struct BoxedTape<'a, Cot, G>(Box<dyn ErasedPullback<Cot, G> + 'a>);

trait ErasedPullback<Cot, G> {
    fn backward_boxed(self: Box<Self>, d_out: Cot) -> G;
    fn backward_unguarded_boxed(self: Box<Self>, d_out: Cot) -> G;
    fn bytes(&self) -> usize;
}

impl<Cot, P: Pullback<Cot>> ErasedPullback<Cot, P::Grad> for P {
    fn backward_boxed(self: Box<Self>, d_out: Cot) -> P::Grad {
        (*self).backward(d_out)
    }
    fn backward_unguarded_boxed(self: Box<Self>, d_out: Cot) -> P::Grad {
        (*self).backward_unguarded(d_out)
    }
    fn bytes(&self) -> usize {
        Pullback::bytes(self)
    }
}

impl<Cot, G> Pullback<Cot> for BoxedTape<'_, Cot, G> {
    type Grad = G;
    fn backward(self, d_out: Cot) -> G {
        self.0.backward_boxed(d_out)
    }
    fn backward_unguarded(self, d_out: Cot) -> G {
        self.0.backward_unguarded_boxed(d_out)
    }
    fn bytes(&self) -> usize {
        // The inner tape lives on the heap: all of it is heap bytes of this one.
        self.0.bytes()
    }
}

/// Puts a tape behind a pointer (see [`BoxedTape`]).
#[doc(hidden)]
pub fn boxed<'a, Cot, P: Pullback<Cot> + 'a>(tape: P) -> BoxedTape<'a, Cot, P::Grad> {
    BoxedTape(Box::new(tape))
}

impl<Cot, G> HeapOfOwned for Probe<'_, BoxedTape<'_, Cot, G>> {
    fn heap_bytes(&self) -> usize {
        Pullback::bytes(self.0)
    }
}

/// A call on arrays or buffers the caller made (`block(&x, ..)` after `let x = ..`): its
/// copies of them and the callee's tape, which borrows the copies, owned together. The
/// caller's forward pass ends before its reverse pass starts, so a tape cannot borrow
/// the caller's locals; it borrows these copies instead, which live exactly as long as
/// the tape. The callee's forward pass runs once (a rebuild in reverse, JAX's
/// `checkpoint`, would run it again at every level of nesting).
///
/// `L` is the type of the call's other arguments (`(&Block, usize)`): the tape may
/// borrow them, so `Kept` carries their lifetimes, each one of the caller's own.
#[must_use = "a tape does nothing until its backward pass runs"]
pub struct Kept<A, L, Cot, G> {
    /// Borrows `*copies` and what `L` borrows: dropped first.
    tape: ManuallyDrop<BoxedTape<'static, Cot, G>>,
    /// A `Box<A>` as a pointer, so that moving `Kept` asserts nothing about the borrows.
    copies: NonNull<A>,
    owns: core::marker::PhantomData<(Box<A>, L)>,
}

/// Runs `call` on a boxed `copies` and the call's other arguments `lent`, and keeps its
/// tape together with the copies (see [`Kept`]).
///
/// Why this is sound: `call` works for every `'x` within `L`'s lifetimes (the implied
/// bound of `PhantomData<&'x L>`), so the tape it returns, a [`BoxedTape`] of `'x`, can
/// borrow only the copies and what `lent` borrows; the value `R` and the gradient `G`
/// are chosen outside and cannot name `'x`. `Kept` frees the copies after the tape, and
/// its type holds `L`, so it cannot outlive what `lent` borrowed.
#[doc(hidden)]
#[inline]
pub fn keep<A, L, R, Cot, G, F>(copies: A, lent: L, call: F) -> (R, Kept<A, L, Cot, G>)
where
    F: for<'x> FnOnce(&'x A, L, core::marker::PhantomData<&'x L>) -> (R, BoxedTape<'x, Cot, G>),
{
    let copies = NonNull::from(Box::leak(Box::new(copies)));
    // SAFETY: `copies` is a live allocation only `Kept` frees, after the tape is gone.
    let (value, tape) = call(unsafe { copies.as_ref() }, lent, core::marker::PhantomData);
    // SAFETY: a change of lifetime only, which `Kept` makes good (see above): the tape is
    // reachable only through it, and it drops the tape before the copies.
    let tape: BoxedTape<'static, Cot, G> = unsafe { core::mem::transmute(tape) };
    (
        value,
        Kept {
            tape: ManuallyDrop::new(tape),
            copies,
            owns: core::marker::PhantomData,
        },
    )
}

impl<A, L, Cot, G> Kept<A, L, Cot, G> {
    /// Runs `f` on the tape, then frees the copies it borrowed.
    fn consume(self, f: impl FnOnce(BoxedTape<'static, Cot, G>) -> G) -> G {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the tape is taken once; the copies are
        // freed after the tape's last use (a panic in `f` leaks them, nothing worse).
        let tape = unsafe { ManuallyDrop::take(&mut this.tape) };
        let g = f(tape);
        drop(unsafe { Box::from_raw(this.copies.as_ptr()) });
        g
    }
}

impl<A, L, Cot, G> Drop for Kept<A, L, Cot, G> {
    fn drop(&mut self) {
        // SAFETY: the tape borrows the copies, so it goes first; both are dropped once.
        unsafe {
            ManuallyDrop::drop(&mut self.tape);
            drop(Box::from_raw(self.copies.as_ptr()));
        }
    }
}

impl<A, L, Cot, G> Pullback<Cot> for Kept<A, L, Cot, G> {
    type Grad = G;
    fn backward(self, d_out: Cot) -> G {
        self.consume(|tape| tape.backward(d_out))
    }
    fn backward_unguarded(self, d_out: Cot) -> G {
        self.consume(|tape| tape.backward_unguarded(d_out))
    }
    fn bytes(&self) -> usize {
        // The copies' own bytes (their heap is counted where they were made) and the
        // boxed tape, all on the heap.
        core::mem::size_of::<A>() + Pullback::bytes(&*self.tape)
    }
}

impl<A, L, Cot, G> HeapOfOwned for Probe<'_, Kept<A, L, Cot, G>> {
    fn heap_bytes(&self) -> usize {
        Pullback::bytes(self.0)
    }
}
