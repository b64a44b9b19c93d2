use backprop::grad;
use ndarray::{Array2, Axis};

// Token ids as a 2-D integer array in a function refused for its loop: one error, on
// the loop; the ids stay data in the stubs (no `usize: Real` errors), and the call
// site's `g.table` compiles.
#[grad]
fn lookup(table: &Array2<f64>, ids: &Array2<usize>) -> f64 {
    let mut total = 0.0;
    for row in ids.rows() {
        total += table.select(Axis(0), row.as_slice().unwrap()).sum();
    }
    total
}

fn main() {
    let table = Array2::ones((3, 2));
    let ids = Array2::zeros((2, 2));
    let (_, g) = lookup_grad(&table, &ids);
    let _ = g.table.sum();
}
