use backprop::grad;
use ndarray::{Array2, Axis};

#[grad(w)]
fn f(w: &Array2<f64>, x: &Array2<f64>) -> f64 {
    let mut h = x.clone();
    let mut outs = Vec::new();
    for _ in 0..3 {
        h = h.dot(w).tanh();
        outs.push(h.clone());
    }
    let all = ndarray::stack(Axis(0), &[outs[0].view(), outs[1].view(), outs[2].view()]).unwrap();
    all.sum()
}

#[grad(w)]
fn g(w: &Array2<f64>) -> f64 {
    let hs: Vec<Array2<f64>> = vec![w.clone(), w * 2.0];
    let h = hs[1].clone();
    h.sum()
}

#[grad(w)]
fn k(w: &Array2<f64>, n: usize) -> f64 {
    let mut hs = vec![Array2::<f64>::zeros((1, 2)); n];
    hs[0] = w.clone();
    hs[0].sum()
}

fn main() {
    let w = Array2::<f64>::ones((2, 2));
    let _ = f_grad(&w, &w);
    let _ = g_grad(&w);
    let _ = k_grad(&w, 2);
}
