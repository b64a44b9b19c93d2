/// Squares written into a local buffer, then read back (a shared case).
#[grad]
fn overwrite(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = x.to_vec();
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = x[i] * x[i];
    }
    v[0] = y[1] * y[2];
    let mut s = 0.0;
    for i in 0..n {
        s += v[i] * y[i];
    }
    s
}
