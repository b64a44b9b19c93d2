use backprop::grad;
use ndarray::{array, Array1, Array2};

#[grad]
fn energy(x: &Array2<f64>, g: &Array1<f64>) -> f64 {
    x.dot(g).mapv(f64::tanh).sum()
}

// A layer returning another function's gradient has no tangent (it would be a second
// derivative of `energy` inside a first): `f_jvp` of it is one error at the call,
// naming what to do instead.
#[grad]
fn layer(x: &Array2<f64>, g: &Array1<f64>, b: &Array1<f64>) -> Array2<f64> {
    let (_, d) = energy_grad(x, g);
    d.x + b
}

fn main() {
    let x = array![[0.1, 0.2]];
    let (g, b) = (array![1.0, 1.0], array![0.0, 0.0]);
    let (y, t) = layer_jvp(&x, &g, &b, &x, &g, &b);
    println!("{y} {t}");
}
