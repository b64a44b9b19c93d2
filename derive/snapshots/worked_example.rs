/// L = (a·b + c)²
#[grad]
fn f(a: f64, b: f64, c: f64) -> f64 {
    let d = a * b;
    let e = d + c;
    e * e
}
