#[grad]
fn damped(x: &[f64], k: f64) -> f64 {
    let mut h = vec![0.0; x.len()];
    for i in 0..x.len() {
        h[i] = if x[i] > 0.0 { x[i] * k } else { sigmoid(x[i]) };
    }
    let mut acc = 1.0;
    for v in &h {
        acc = acc * (1.0 + v.tanh());
    }
    acc
}
