//! Memory accounting: the lesson's 7B figures, and each optimizer's state size.

use backprop::memory::MemoryReport;
use backprop::optim::{AdaFactor, Adam, AdamW, Lion, RmsProp, Sgd, SgdConfig};
use backprop::params::Dtype;

const P: usize = 7_000_000_000;
const GB: u128 = 1_000_000_000;

#[test]
fn seven_billion_adamw_is_112_gb_training_and_14_gb_bf16_inference() {
    // 4P weights + 4P gradients + 8P (m, v) = 16P = 112 GB; inference 2P = 14 GB.
    let r = MemoryReport::for_shapes(&[vec![P]], &AdamW::<f32>::default());
    assert_eq!(
        (r.weights, r.grads, r.optimizer_state),
        (28 * GB, 28 * GB, 56 * GB)
    );
    assert_eq!(r.training_bytes(), 112 * GB);
    assert_eq!(r.inference_bytes(Dtype::Bf16), 14 * GB);
    assert_eq!(r.inference_bytes(Dtype::F16), 14 * GB);
    assert_eq!(r.inference_bytes(Dtype::F32), 28 * GB);
    // The table names every component.
    let t = r.to_string();
    assert!(
        t.contains("| optimizer state | 56.0 |")
            && t.contains("**112.0**")
            && t.contains("| 14.0 |"),
        "{t}"
    );
}

#[test]
fn state_per_optimizer_for_7b() {
    let s = [vec![P]];
    let state = |r: MemoryReport| r.optimizer_state / GB;
    assert_eq!(
        state(MemoryReport::for_shapes(
            &s,
            &Sgd::<f32>::new(SgdConfig::default())
        )),
        0
    );
    assert_eq!(
        state(MemoryReport::for_shapes(
            &s,
            &Sgd::<f32>::new(SgdConfig::momentum(0.1, 0.9))
        )),
        28
    );
    assert_eq!(
        state(MemoryReport::for_shapes(
            &s,
            &RmsProp::<f32>::new(Default::default())
        )),
        28
    );
    assert_eq!(
        state(MemoryReport::for_shapes(
            &s,
            &Adam::<f32>::new(Default::default())
        )),
        56
    );
    assert_eq!(
        state(MemoryReport::for_shapes(
            &s,
            &Lion::<f32>::new(Default::default())
        )),
        28
    );
}

#[test]
fn adafactor_state_is_factored_for_matrices() {
    // A 4096 × 11008 matrix: AdaFactor keeps 4096 + 11008 floats, Adam 2·4096·11008.
    let s = [vec![4096, 11008], vec![4096]];
    let af = MemoryReport::for_shapes(&s, &AdaFactor::<f32>::default());
    assert_eq!(af.optimizer_state, ((4096 + 11008) + 4096) * 4);
    let adam = MemoryReport::for_shapes(&s, &AdamW::<f32>::default());
    assert_eq!(adam.optimizer_state, 2 * (4096 * 11008 + 4096) * 4);
}

#[test]
fn live_params_and_activations() {
    let p = vec![("w", vec![0.0f64; 100]), ("b", vec![0.0; 10])];
    let r = MemoryReport::of(&p, &AdamW::<f64>::default()).with_activations(1234);
    assert_eq!(r.params, 110);
    assert_eq!(r.training_bytes(), 110 * 8 * 4 + 1234);
}

/// LLaMA-7B's shapes (Touvron et al. 2023, Table 2: d = 4096, 32 layers, FFN 11008,
/// vocabulary 32 000), `[in, out]` layout.
fn llama7b_shapes() -> Vec<Vec<usize>> {
    let (d, f, v) = (4096, 11008, 32000);
    let mut s = vec![vec![v, d]];
    for _ in 0..32 {
        s.extend([
            vec![d],
            vec![d, d],
            vec![d, d],
            vec![d, d],
            vec![d, d],
            vec![d],
            vec![d, f],
            vec![d, f],
            vec![f, d],
        ]);
    }
    s.extend([vec![d], vec![d, v]]);
    s
}

#[test]
fn llama7b_shapes_adafactor_versus_adamw() {
    // Parameters: 2·32000·4096 (embedding, head) + 32·(4·4096² + 3·4096·11008 + 2·4096)
    // + 4096 = 262 144 000 + 6 476 267 520 + 4096 = 6 738 415 616.
    let s = llama7b_shapes();
    let adamw = MemoryReport::for_shapes(&s, &AdamW::<f32>::default());
    assert_eq!(adamw.params, 6_738_415_616);
    assert_eq!(adamw.optimizer_state, 8 * 6_738_415_616);
    // AdaFactor: n + m per matrix, n per vector.
    // Per layer: 4·(4096 + 4096) + 3·(4096 + 11008) + 2·4096 = 32 768 + 45 312 + 8192 = 86 272.
    // Total: 32·86 272 + 2·(32000 + 4096) + 4096 = 2 760 704 + 72 192 + 4096 = 2 836 992 floats.
    let af = MemoryReport::for_shapes(&s, &AdaFactor::<f32>::default());
    assert_eq!(af.optimizer_state, 4 * 2_836_992);
}
