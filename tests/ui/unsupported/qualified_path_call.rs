use backprop::grad;
use num_traits::Float;

#[grad]
fn f(x: f64) -> f64 {
    <f64 as Float>::exp(x)
}

fn main() {}
