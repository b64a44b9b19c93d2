/// Rejected: the expansion is the function, stub companions and the errors.
#[grad(x)]
fn f(x: f64, n: usize) -> f64 {
    let mut acc = 0.0;
    for _ in 0..n {
        acc += x;
    }
    acc
}
