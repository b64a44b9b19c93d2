use backprop::grad;

#[grad]
fn f(x: f64) -> f64 {
    let mut y = x;
    #[cfg(any())]
    let y = y * 1.0;
    #[cfg(all())]
    let y = y * 2.0;
    #[cfg(test)]
    let y = y * 3.0;
    #[cfg(debug_assertions)]
    let y = y * 4.0;
    #[cfg(unix)]
    let y = y * 5.0;
    y
}

fn main() {
    let (_, g) = f_grad(1.0);
    let _: f64 = g.x;
}
