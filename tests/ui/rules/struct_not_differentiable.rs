use backprop::grad;

pub struct Dataset {
    pub xs: Vec<f64>,
}

// `data` is a struct, so by default it is differentiated; it holds no parameters.
#[grad]
fn loss(w: f64, data: &Dataset) -> f64 {
    let mut s = 0.0;
    for i in 0..data.xs.len() {
        s += w * data.xs[i];
    }
    s
}

fn main() {}
