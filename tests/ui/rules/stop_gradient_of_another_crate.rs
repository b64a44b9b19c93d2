use backprop::grad;

mod mylib {
    pub fn stop_gradient(x: f64) -> f64 {
        x * x
    }
}

// Only `backprop::stop_gradient` (or a bare `stop_gradient`) cuts the gradient; a
// different function of the same name is an ordinary call, which needs a rule.
#[grad]
fn f(x: f64) -> f64 {
    mylib::stop_gradient(x)
}

fn main() {}
