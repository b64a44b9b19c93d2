//! Reproducers from trying to break `#[grad]`, each with its hand-computed answer.

use backprop::grad;
use num_traits::Float;
use std::cell::Cell;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static SCALE: Cell<f64> = const { Cell::new(1.0) };
}

fn next_weight() -> f64 {
    CALLS.with(|c| {
        c.set(c.get() + 1);
        c.get() as f64
    })
}

fn reset() {
    CALLS.with(|c| c.set(0));
}

fn set_scale(v: f64) {
    SCALE.with(|s| s.set(v));
}

fn scale() -> f64 {
    SCALE.with(|s| s.get())
}

/// An impure constant is evaluated once, where it stands: w = 1, d/dx = 1.
#[grad]
fn impure(x: f64) -> f64 {
    x * next_weight()
}

/// Order of evaluation is kept: next() − x·next() = 1 − 2x at the first call.
#[grad]
fn ordered(x: f64) -> f64 {
    next_weight() - x * next_weight()
}

#[test]
fn constants_with_effects_run_once_in_order() {
    reset();
    let (v, g) = impure_grad(3.0);
    assert_eq!((v, g.x), (3.0, 1.0));
    reset();
    let (v, g) = ordered_grad(3.0);
    assert_eq!((v, g.x), (1.0 - 3.0 * 2.0, -2.0));
    reset();
    assert_eq!(ordered(3.0), -5.0);
}

/// Statements that mention no local still run: set_scale(3) then x·scale() = 3x.
#[grad]
fn side_effect_statement(x: f64) -> f64 {
    set_scale(3.0);
    let _ = scale();
    let w = scale();
    x * w
}

#[test]
fn statements_without_locals_are_kept() {
    set_scale(1.0);
    let (v, g) = side_effect_statement_grad(2.0);
    assert_eq!((v, g.x), (6.0, 3.0));
}

fn g() -> f64 {
    2.0
}

/// A binding inside a block must not shadow the function `g` used after the block:
/// a = x·5, result a·g() = 10x.
#[grad]
fn block_scoping(x: f64) -> f64 {
    let a = {
        let g = 5.0;
        x * g
    };
    a * g()
}

#[test]
fn nested_block_bindings_stay_in_their_block() {
    let (v, gr) = block_scoping_grad(1.0);
    assert_eq!((v, gr.x), (10.0, 10.0));
    assert_eq!(block_scoping(1.0), 10.0);
}

/// A statement block with no value.
#[grad]
fn statement_block(x: f64) -> f64 {
    {
        let _z = x * 2.0;
    }
    x * x
}

#[test]
fn statement_blocks_are_accepted() {
    assert_eq!(
        statement_block_grad(3.0),
        (9.0, StatementBlockGrad { x: 6.0 })
    );
}

/// Raw identifiers, reassigned: r#loop = x², then r#loop·r#loop = x⁴; d/dx = 4x³.
#[grad]
fn raw_identifiers(mut r#type: f64) -> f64 {
    r#type = r#type * r#type;

    r#type * r#type
}

#[test]
fn raw_identifiers_expand() {
    assert_eq!(
        raw_identifiers_grad(2.0),
        (16.0, RawIdentifiersGrad { r#type: 32.0 })
    );
}

/// powi at i32::MIN must not overflow computing n − 1 (d/dx = n·xⁿ⁻¹ = 0 here: x = 1
/// gives n·1 = i32::MIN as a float).
#[grad]
fn powi_min(x: f64) -> f64 {
    x.powi(i32::MIN)
}

#[test]
fn powi_at_i32_min_does_not_overflow() {
    let (v, g) = powi_min_grad(1.0);
    assert_eq!((v, g.x), (1.0, i32::MIN as f64));
}

/// A generic label type is data, not a float.
#[grad]
fn generic_label<T: Float, L: Copy + PartialEq>(x: T, label: L, target: L) -> T {
    let hit = if_equal(label, target);
    x * x * T::from(hit).unwrap()
}

fn if_equal<L: PartialEq>(a: L, b: L) -> f64 {
    if a == b { 1.0 } else { 0.5 }
}

#[test]
fn non_float_type_parameters_are_constants() {
    let (v, g) = generic_label_grad(3.0_f64, 'a', 'b');
    assert_eq!((v, g.x), (4.5, 3.0));
}

/// Const generics: the companions call each other with a turbofish.
#[grad]
fn const_generic<const N: usize>(x: f64) -> f64 {
    x * N as f64
}

#[test]
fn const_generic_functions_expand() {
    assert_eq!(
        const_generic_grad::<4>(2.0),
        (8.0, ConstGenericGrad { x: 4.0 })
    );
}

/// A user variable named `pullback` (the name the expansion uses for its closure).
#[grad]
fn named_like_the_expansion(x: f64) -> f64 {
    let pullback = x * x;

    pullback + 1.0
}

#[test]
fn user_names_do_not_collide_with_generated_ones() {
    assert_eq!(
        named_like_the_expansion_grad(3.0),
        (10.0, NamedLikeTheExpansionGrad { x: 6.0 })
    );
}

/// Lint attributes on `f` reach its companions (same signature, same lint).
#[grad]
#[allow(clippy::too_many_arguments)]
fn many_arguments(a: f64, b: f64, c: f64, d: f64, e: f64, f: f64, g: f64, h: f64) -> f64 {
    a * b + c * d + e * f + g * h
}

#[test]
fn lint_attributes_are_carried() {
    let (v, gr) = many_arguments_grad(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0);
    assert_eq!(v, 2.0 + 12.0 + 30.0 + 56.0);
    assert_eq!((gr.a, gr.h), (2.0, 7.0));
}
