/// A two-layer MLP over ndarray: the tensor path (borrowed operands, saved shapes,
/// op companions' tapes).
#[grad(w1, b1, w2, b2)]
fn mlp(x: ArrayView2<'_, f32>, labels: &[usize], w1: &Array2<f32>, b1: &Array1<f32>, w2: &Array2<f32>, b2: &Array1<f32>) -> f32 {
    let h = relu(&(x.dot(w1) + b1));
    let logits = h.dot(w2) + b2;
    softmax_cross_entropy(&logits, labels, XentOptions::default())
}
