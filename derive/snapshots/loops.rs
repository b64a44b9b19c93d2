/// A `for` loop carrying two values, and a `while` loop whose trip count depends on an
/// active value.
#[grad]
fn loops(x: f64, n: usize) -> f64 {
    let mut prod = 1.0;
    let mut sum = 0.0;
    for _ in 0..n {
        prod = prod * x;
        sum += prod;
    }
    while sum > 10.0 {
        sum = sum * 0.5;
    }
    sum
}
