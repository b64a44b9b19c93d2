use backprop::grad;
use ndarray::Array2;

#[grad]
fn norms(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let h = x.dot(w);
    let mut s = 0.0;
    for row in h.outer_iter() {
        s += row.dot(&row).sqrt();
    }
    s
}

#[grad]
fn sums(x: &Array2<f64>) -> f64 {
    let mut s = 0.0;
    for row in x.rows() {
        s += row.sum();
    }
    s
}

fn main() {
    let x = Array2::ones((2, 2));
    let _ = norms_grad(&x, &x);
    let _ = sums_grad(&x);
}
