use backprop::{grad, Differentiable};

#[derive(Clone, Debug, Differentiable)]
struct Lin { w: Vec<f64>, b: f64 }

#[grad(p)]
fn loss(p: &Lin, x: &[f64], y: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..y.len() {
        let r = (p.w[0] * x[i] + p.b).tanh() - y[i];
        s += r * r;
    }
    s
}

#[grad(p)]
fn maml(p: &Lin, xs: &[f64], ys: &[f64], xq: &[f64], yq: &[f64]) -> f64 {
    let (_, g) = loss_grad(p, xs, ys);
    let mut w = Vec::new();
    for i in 0..p.w.len() { w.push(p.w[i] - 0.5 * g.p.w[i]); }
    // Parameters built from active values: refused by name, not cut off from the gradient.
    let adapted = Lin { w, b: p.b - 0.5 * g.p.b };
    loss(&adapted, xq, yq)
}

fn main() {
    let p = Lin { w: vec![0.3], b: 0.1 };
    let (_, g) = maml_grad(&p, &[-1.0, 0.4], &[-0.5, 0.2], &[0.9], &[0.6]);
    println!("{:?}", g.p);
}
