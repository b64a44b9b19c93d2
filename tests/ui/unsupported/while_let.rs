use backprop::grad;

#[grad]
fn f(x: f64, mut steps: Option<u32>) -> f64 {
    let mut v = x;
    while let Some(k) = steps {
        v = v * 0.5;
        steps = if k > 0 { Some(k - 1) } else { None };
    }
    v
}

fn main() {}
