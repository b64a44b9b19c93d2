use backprop::grad;

// A `&mut` buffer would be data without a word: one error on its type, saying what to
// write instead.
#[grad]
fn loss(x: &mut [f64]) -> f64 {
    x[0] = x[0] * 2.0;
    x.iter().sum()
}

fn main() {
    let _ = loss_grad;
}
