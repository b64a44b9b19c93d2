//! Each diagnostic fires on a constructed bad run and stays quiet on a healthy one.

use backprop::diagnostics::*;
use ndarray::array;

#[test]
fn non_finite_loss_stops_and_names_the_worst_parameter() {
    let mut m = Monitor::new(20, 10.0);
    assert!(m.observe(0, 2.3, 1.0, &[]).is_empty());
    let norms = vec![("w1".to_string(), 0.5), ("w2".to_string(), 1e9)];
    let f = m.observe(1, f64::NAN, 1e9, &norms);
    assert!(f.iter().any(|f| f.is_fatal()));
    let msg = f[0].to_string();
    assert!(msg.contains("step 1") && msg.contains("`w2`"), "{msg}");
}

#[test]
fn initial_loss_far_from_ln_c_warns() {
    // 10 classes: ln 10 ≈ 2.303. A softmax applied twice gives a loss near ln 10 too, but
    // symmetric all-zero init with one-hot outputs does not; 8.0 is far.
    assert!(check_initial_loss(2.35, 10, 0.5).is_none());
    assert!(matches!(
        check_initial_loss(8.0, 10, 0.5),
        Some(Finding::InitialLoss { .. })
    ));
}

#[test]
fn gradient_norm_spikes_against_the_running_median() {
    let mut m = Monitor::new(50, 10.0);
    for s in 0..30 {
        assert!(
            m.observe(s, 1.0, 1.0 + 0.01 * s as f64, &[]).is_empty(),
            "healthy step {s}"
        );
    }
    let f = m.observe(30, 1.0, 50.0, &[]);
    assert!(
        matches!(f.as_slice(), [Finding::GradNormSpike { step: 30, .. }]),
        "{f:?}"
    );
}

#[test]
fn dead_relus_are_counted_per_unit() {
    // Unit 0 fires on row 1, unit 1 never fires, unit 2 fires everywhere.
    let h = array![[0.0f32, 0.0, 1.0], [0.5, -0.0, 2.0]];
    let frac = dead_relu_fraction(&h);
    assert!((frac - 1.0 / 3.0).abs() < 1e-12);
    assert!(check_dead_relu("h1", frac, 0.5).is_none());
    let dead = array![[0.0f32, 0.0, 1.0], [0.0, 0.0, 2.0]];
    assert!(matches!(
        check_dead_relu("h1", dead_relu_fraction(&dead), 0.5),
        Some(Finding::DeadRelu { .. })
    ));
}

#[test]
fn vanishing_and_exploding_layers_against_the_median() {
    let healthy: Vec<(String, f64)> = [("a", 1.0), ("b", 2.0), ("c", 0.5)]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
    assert!(check_layer_norms(&healthy, 100.0).is_empty());
    let bad: Vec<(String, f64)> = [("a", 1.0), ("b", 1e-6), ("c", 1e5)]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
    let f = check_layer_norms(&bad, 100.0);
    assert!(
        f.iter()
            .any(|f| matches!(f, Finding::Vanishing { layer, .. } if layer == "b"))
    );
    assert!(
        f.iter()
            .any(|f| matches!(f, Finding::Exploding { layer, .. } if layer == "c"))
    );
}

#[test]
fn overfitting_gap() {
    assert!(check_generalization(0.99, 0.97, 0.05).is_none());
    assert!(matches!(
        check_generalization(1.0, 0.80, 0.05),
        Some(Finding::Overfitting { .. })
    ));
}

#[test]
fn overfit_a_single_batch_reports_yes_or_no() {
    // A loss that halves each step reaches the target; one stuck at 1 does not.
    let mut l = 2.0;
    let yes = overfit_single_batch(
        || {
            l /= 2.0;
            l
        },
        100,
        1e-3,
    );
    assert!(
        yes.reached && yes.final_loss < 1e-3 && yes.steps == 11,
        "{yes}"
    );
    let no = overfit_single_batch(|| 1.0, 50, 1e-3);
    assert!(!no.reached && no.final_loss == 1.0, "{no}");
    assert!(no.to_string().contains("NO"));
}
