//! `examples/newton.rs`'s functions: Newton-CG on the digits' logistic regression
//! converges quadratically, CG solves a system it is given, and the dense Hessian from
//! HVPs is symmetric and matches differences of the gradient.

use backprop_tests::second_order::{
    conjugate_gradient, logistic_loss_grad, logistic_loss_hvp, newton, two_digits,
};

#[test]
fn newton_converges_quadratically() {
    let (x, y, d) = two_digits(3, 8);
    assert!(y.len() > 200, "{} images", y.len());
    let (w, its) = newton(&x, &y, d, 1e-3, 12);
    let norms: Vec<f64> = its.iter().map(|i| i.grad_norm).collect();
    // Converged, in few steps, with the loss decreasing throughout.
    assert!(*norms.last().unwrap() < 1e-9, "{norms:?}");
    assert!(its.len() <= 10, "{} steps: {norms:?}", its.len());
    for pair in its.windows(2) {
        assert!(pair[1].loss <= pair[0].loss + 1e-15, "{its:?}");
    }
    // Quadratic: once ‖∇f‖ < 1e-3, each step squares it up to a constant (here about
    // 40: ‖∇f_{k+1}‖ ≤ C‖∇f_k‖², Nocedal & Wright, Theorem 3.5), where a linearly
    // converging method would only scale it.
    let tail: Vec<f64> = norms.iter().copied().filter(|&g| g < 1e-3).collect();
    assert!(tail.len() >= 3, "{norms:?}");
    for pair in tail.windows(2) {
        assert!(
            pair[1] <= 100.0 * pair[0] * pair[0],
            "not quadratic: {norms:?}"
        );
    }
    // The solution's gradient is zero: the same function through f_grad.
    let (_, g) = logistic_loss_grad(&w, &x, &y, 1e-3);
    assert!(g.w.iter().all(|v| v.abs() < 1e-9));
}

#[test]
fn dense_hessian_is_symmetric_and_matches_differences() {
    let (x, y, d) = two_digits(3, 8);
    let w: Vec<f64> = (0..=d).map(|k| 0.05 * ((k as f64) * 0.7).sin()).collect();
    let lambda = 1e-2;
    let h = backprop::hessian(&w, |w, v| logistic_loss_hvp(w, &x, &y, lambda, v).2.w);
    assert_eq!(h.dim(), (d + 1, d + 1));
    let asym = (&h - &h.t()).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(asym < 1e-14, "max |H − Hᵀ| = {asym:e}");
    // Column 5 against central differences of the gradient.
    let step = 1e-5;
    let grad_at = |s: f64| {
        let mut w = w.clone();
        w[5] += s;
        logistic_loss_grad(&w, &x, &y, lambda).1.w
    };
    let (gp, gm) = (grad_at(step), grad_at(-step));
    for j in 0..=d {
        let fd = (gp[j] - gm[j]) / (2.0 * step);
        assert!(
            (h[[j, 5]] - fd).abs() < 1e-7,
            "H[{j}][5] = {} vs {fd}",
            h[[j, 5]]
        );
    }
}

#[test]
fn conjugate_gradient_solves_a_small_system() {
    // A = [[4, 1], [1, 3]], b = [1, 2]: s = [1/11, 7/11].
    let a = |v: &[f64]| vec![4.0 * v[0] + v[1], v[0] + 3.0 * v[1]];
    let (s, residuals) = conjugate_gradient(a, &[1.0, 2.0], 1e-14, 10);
    assert!(
        (s[0] - 1.0 / 11.0).abs() < 1e-15 && (s[1] - 7.0 / 11.0).abs() < 1e-15,
        "{s:?}"
    );
    assert!(
        residuals.len() <= 2,
        "CG takes at most n steps: {residuals:?}"
    );
}

/// Influence functions on a small digits MLP (`src/influence.rs`, the `influence`
/// example's functions on a small budget): the trained parameters are an optimum, the
/// CG solve on `f_hvp` converges, a small change of one image's weight moves the test
/// loss as predicted to first order, and removing the most influential images moves it
/// the predicted way.
#[test]
fn influence_of_training_images_matches_retraining() {
    use backprop_tests::influence::{
        TinyMlp, influence, removal_effect, reweight_effect, split, train,
    };
    let (n, lambda) = (60, 1e-2);
    let s = split(n, 1);
    let weights = vec![1.0 / n as f64; n];
    let (p, norm) = train(
        TinyMlp::new(s.d, 4, 10, 3),
        &s.x,
        &s.y,
        s.d,
        &weights,
        lambda,
        300,
        1e-10,
    );
    assert!(norm <= 1e-10, "not an optimum: ‖∇‖ = {norm:e}");
    let inf = influence(&p, &s, lambda, 0.0);
    let last = *inf.residuals.last().expect("CG ran");
    assert!(
        last <= 1e-10,
        "CG stopped at a relative residual of {last:e}"
    );
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| inf.predicted[b].abs().total_cmp(&inf.predicted[a].abs()));
    let top = order[0];
    let eps = 1e-3 / n as f64;
    let predicted = -eps * n as f64 * inf.predicted[top];
    let retrained = reweight_effect(&p, &s, lambda, top, eps);
    assert!(
        (retrained / predicted - 1.0).abs() < 1e-2,
        "image {top}: predicted {predicted:e}, retrained {retrained:e}"
    );
    for &i in &order[..3] {
        let effect = removal_effect(&p, &s, lambda, i);
        assert!(
            effect * inf.predicted[i] > 0.0,
            "image {i}: removal predicted {:e}, retrained {effect:e}",
            inf.predicted[i]
        );
    }
}
