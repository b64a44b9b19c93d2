//! Names a user picks that the expansion uses too (`pullback`, `tape`, `d_x`, `t0`,
//! `__value`, ...) and raw identifiers: the companions keep the user's names apart from
//! their own.

use backprop::grad;

// ---- raw identifiers and the expansion's names ----------------------------------------

/// Raw identifiers, reassigned: r#loop = x², then r#loop·r#loop = x⁴; d/dx = 4x³.
/// Pins: raw identifiers did not expand (bf5618a).
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

/// A user variable named `pullback` (the name the expansion uses for its closure).
/// Pins: a user name collided with the expansion's (bf5618a).
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
