use backprop::grad;

// Replacing a whole buffer inside a loop (a double buffer) is not supported yet.
#[grad]
fn f(x: &[f64]) -> f64 {
    let mut cur = x.to_vec();
    for _ in 0..3 {
        let mut nxt = vec![0.0; cur.len()];
        for i in 0..cur.len() {
            nxt[i] = cur[i].tanh();
        }
        cur = nxt;
    }
    cur[0]
}

fn main() {}
