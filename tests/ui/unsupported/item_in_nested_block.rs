use backprop::grad;

const K: f64 = 1.0;

// Items in a nested block would be hoisted into one flat scope and change `K` above.
#[grad]
fn h(x: f64) -> f64 {
    let a = x * K;
    let b = {
        const K: f64 = 3.0;
        x * K
    };
    a + b
}

fn main() {}
