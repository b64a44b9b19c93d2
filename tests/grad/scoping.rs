//! Scopes in `#[grad]` bodies: a binding made in a block, a loop body or a branch arm
//! lives there only, as in `f`; shadowing of locals, arguments and carried loop
//! variables; items declared inside the body.

use backprop::grad;

// ---- blocks ---------------------------------------------------------------------------

fn g() -> f64 {
    2.0
}

/// A binding inside a block must not shadow the function `g` used after the block:
/// a = x·5, result a·g() = 10x.
/// Pins: an inner binding leaked out of its block (bf5618a).
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
