use backprop::grad;
use ndarray::{array, Array1};

#[grad]
fn layer(x: &Array1<f64>, a: f64) -> Array1<f64> {
    x.mapv(|v| (v * a).tanh())
}

fn main() {
    let x = array![0.1, 0.2];
    let (y, t) = layer_jvp(&x, 0.5, &array![1.0, 0.0], 0.0);
    println!("{y} {t}");
}
