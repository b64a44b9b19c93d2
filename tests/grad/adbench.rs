//! The ADBench objectives of `src/adbench.rs` (GMM and LSTM, as benchmarked in
//! `benches/adbench.rs`): their `#[grad]` gradients against central differences at
//! small sizes, and values and gradients against closed forms where the models reduce
//! to something written by hand.

// The dense reference indexes matrices by row and column, as the formulas do, and takes
// the objective's argument list.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use backprop::{gradcheck, sigmoid};
use backprop_tests::adbench::{
    gmm_input, gmm_objective, gmm_objective_grad, logsumexp_by_hand_grad, lstm_input,
    lstm_objective, lstm_objective_grad,
};

#[track_caller]
fn assert_close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "got {got}, expected {want} (tolerance {tol})"
    );
}

/// The `#[grad]` logsumexp of `src/adbench.rs` and the runtime's (which the objective
/// calls) agree in value and gradient, large and mixed-sign inputs included.
#[test]
fn logsumexp_by_hand_agrees_with_the_runtimes() {
    for v in [
        vec![0.3, -1.2, 2.5, 0.0],
        vec![1000.0, 1001.0, 999.0],
        vec![-700.0, -702.5],
        vec![4.0],
    ] {
        let (y, g) = logsumexp_by_hand_grad(&v);
        assert_close(y, backprop::logsumexp(&v), 1e-15);
        let softmax: Vec<f64> = v.iter().map(|x| (x - y).exp()).collect();
        // exp(xᵢ − y) inherits y's rounding (an ulp of 1000 is 1.1e-13).
        for (a, b) in g.v.iter().zip(&softmax) {
            assert_close(*a, *b, 1e-12);
        }
    }
}

#[test]
fn gmm_gradient_matches_central_differences() {
    // d = 3, K = 4, n = 10; the Wishart prior with m = 2 so every term is exercised.
    let mut p = gmm_input(3, 4, 10, 0.5, 7);
    p.gamma = 1.5;
    p.m = 2.0;
    let report = gradcheck!(gmm_objective(
        alphas = &p.alphas,
        means = &p.means,
        icf = &p.icf,
        x = const &p.x,
        d = const p.d,
        k = const p.k,
        gamma = const p.gamma,
        m = const p.m
    ));
    report.assert();
    assert!(report.worst_abs_err() < 1e-6, "{report:?}");

    // Shifting every alpha by the same amount leaves the objective unchanged, so the
    // alpha gradient sums to zero.
    let (_, g) = gmm_objective_grad(&p.alphas, &p.means, &p.icf, &p.x, p.d, p.k, p.gamma, p.m);
    let s: f64 = g.alphas.iter().sum();
    assert!(s.abs() < 1e-12, "Σ dα = {s}");
}

/// The same objective computed independently: build each Qₖ as a dense lower-triangular
/// matrix from `icf` (log-diagonal first, then the strictly lower part column by
/// column), then evaluate the mixture log-likelihood with a plain logsumexp.
fn gmm_reference(
    alphas: &[f64],
    means: &[f64],
    icf: &[f64],
    x: &[f64],
    d: usize,
    k: usize,
    gamma: f64,
    m: f64,
) -> f64 {
    let n = x.len() / d;
    let icf_sz = d * (d + 1) / 2;
    let lse = |v: &[f64]| {
        let mx = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        mx + v.iter().map(|z| (z - mx).exp()).sum::<f64>().ln()
    };
    let qs: Vec<Vec<Vec<f64>>> = (0..k)
        .map(|c| {
            let p = &icf[c * icf_sz..(c + 1) * icf_sz];
            let mut q = vec![vec![0.0; d]; d];
            let mut next = d;
            for col in 0..d {
                q[col][col] = p[col].exp();
                for row in col + 1..d {
                    q[row][col] = p[next];
                    next += 1;
                }
            }
            q
        })
        .collect();
    let mut total = 0.0;
    for i in 0..n {
        let terms: Vec<f64> = (0..k)
            .map(|c| {
                let log_det: f64 = icf[c * icf_sz..c * icf_sz + d].iter().sum();
                let mut maha = 0.0;
                for row in 0..d {
                    let v: f64 = (0..d)
                        .map(|col| qs[c][row][col] * (x[i * d + col] - means[c * d + col]))
                        .sum();
                    maha += v * v;
                }
                alphas[c] + log_det - 0.5 * maha
            })
            .collect();
        total += lse(&terms);
    }
    total -= n as f64 * lse(alphas);
    for (c, q) in qs.iter().enumerate() {
        let frob: f64 = q.iter().flatten().map(|v| v * v).sum();
        let log_det: f64 = icf[c * icf_sz..c * icf_sz + d].iter().sum();
        total += 0.5 * gamma * gamma * frob - m * log_det;
    }
    total
}

#[test]
fn gmm_value_matches_a_dense_matrix_reference() {
    for (d, k, n, seed) in [(3, 4, 10, 1), (5, 2, 7, 2), (1, 3, 4, 3)] {
        let mut p = gmm_input(d, k, n, 0.7, seed);
        p.m = 1.0;
        let want = gmm_reference(&p.alphas, &p.means, &p.icf, &p.x, d, k, p.gamma, p.m);
        assert_close(p.objective(), want, 1e-12);
        let (value, _) = gmm_objective_grad(&p.alphas, &p.means, &p.icf, &p.x, d, k, p.gamma, p.m);
        assert_eq!(
            value,
            p.objective(),
            "the gradient's value is the objective's"
        );
    }
}

#[test]
fn gmm_with_one_component_in_one_dimension_is_a_gaussian_log_likelihood() {
    // K = 1, d = 1: Q = [e^q], so σ = e^{-q}; the mixture weight cancels
    // (logsumexp of one term is the term, and n·α is subtracted again), and the objective
    // is Σᵢ ln N(xᵢ; μ, σ²) + n/2·ln 2π (the dropped constant) + ½γ²/σ² + m·ln σ.
    let xs = [0.3, -1.2, 2.5, 0.9, -0.4];
    let (alpha, mu, q, gamma, m) = (0.7, 0.45, -0.3, 1.3, 2.0);
    let n = xs.len() as f64;
    let sigma = f64::exp(-q);
    let two_pi = 2.0 * std::f64::consts::PI;
    let log_lik: f64 = xs
        .iter()
        .map(|x: &f64| -0.5 * two_pi.ln() - sigma.ln() - (x - mu).powi(2) / (2.0 * sigma * sigma))
        .sum();
    let want =
        log_lik + 0.5 * n * two_pi.ln() + 0.5 * gamma * gamma / (sigma * sigma) + m * sigma.ln();

    let (value, g) = gmm_objective_grad(&[alpha], &[mu], &[q], &xs, 1, 1, gamma, m);
    assert_close(value, want, 1e-10);
    // ∂/∂μ = Σ (xᵢ − μ)/σ²; ∂/∂α = 0; ∂/∂q = n − Σ(xᵢ − μ)²/σ² + γ²/σ² − m.
    let s1: f64 = xs.iter().map(|x| x - mu).sum();
    let s2: f64 = xs.iter().map(|x| (x - mu).powi(2)).sum();
    assert_close(g.means[0], s1 / (sigma * sigma), 1e-10);
    assert!(g.alphas[0].abs() < 1e-10, "dα = {}", g.alphas[0]);
    assert_close(
        g.icf[0],
        n - s2 / (sigma * sigma) + gamma * gamma / (sigma * sigma) - m,
        1e-10,
    );
}

#[test]
fn lstm_gradient_matches_central_differences() {
    // l = 2 layers, b = 3, c = 4 steps.
    let p = lstm_input(2, 3, 4, 11);
    let report = gradcheck!(lstm_objective(
        main_params = &p.main_params,
        extra_params = &p.extra_params,
        state = const &p.state,
        sequence = const &p.sequence,
        l = const p.l,
        b = const p.b,
        c = const p.c
    ));
    report.assert();
    assert!(report.worst_abs_err() < 1e-8, "{report:?}");
}

#[test]
fn lstm_with_one_unit_and_two_steps_by_hand() {
    // l = 1, b = 1, c = 2: one prediction, every line of ADBench's cell written out.
    let main: [f64; 8] = [0.4, -0.7, 1.1, 0.3, 0.2, -0.5, 0.6, -0.1]; // w_f, w_i, w_o, w_c, b_f..b_c
    let extra: [f64; 3] = [0.8, -1.3, 0.25]; // w_in, w_out, b_out
    let state: [f64; 2] = [0.35, -0.6]; // hidden, cell
    let seq: [f64; 2] = [0.9, 0.7];
    let x = seq[0] * extra[0];
    let forget = sigmoid(x * main[0] + main[4]);
    let ingate = sigmoid(state[0] * main[1] + main[5]);
    let outgate = sigmoid(x * main[2] + main[6]);
    let change = (state[0] * main[3] + main[7]).tanh();
    let cell = state[1] * forget + ingate * change;
    let hidden = outgate * cell.tanh();
    let y = hidden * extra[1] + extra[2];
    let lse = (y.exp() + 2.0).ln();
    let want = -(seq[1] * (y - lse));

    let (value, g) = lstm_objective_grad(&main, &extra, &state, &seq, 1, 1, 2);
    assert_close(value, want, 1e-14);
    // ∂L/∂y = −seq₁·(1 − e^y/(e^y + 2)) = −2·seq₁/(e^y + 2); y = hidden·w_out + b_out.
    let dy = -2.0 * seq[1] / (y.exp() + 2.0);
    assert_close(g.extra_params[2], dy, 1e-14);
    assert_close(g.extra_params[1], dy * hidden, 1e-14);
    // Through the output gate's bias: ∂hidden/∂b_o = tanh(cell)·σ′ = tanh(cell)·o(1 − o).
    let dh = dy * extra[1];
    assert_close(
        g.main_params[6],
        dh * cell.tanh() * outgate * (1.0 - outgate),
        1e-14,
    );
}

#[test]
fn lstm_with_zero_parameters_predicts_uniformly() {
    // All zeros: every gate is ½, the change and the cell stay 0, so every hidden state
    // and every prediction is 0 and ADBench's normaliser is ln(b + 2). With S the sum of
    // all targets y_{t,i}, t ≥ 1, the loss is ln(b + 2)·S/(b(c − 1)). Only the output
    // bias gets a gradient (the output weights multiply a zero hidden state, and nothing
    // flows back past them): ∂L/∂bᵢ = −Σₜ (y_{t+1,i} − Σⱼ y_{t+1,j}/(b + 2)) / (b(c − 1)).
    let (l, b, c) = (2, 5, 9);
    let p = lstm_input(l, b, c, 3);
    let main = vec![0.0; p.main_params.len()];
    let extra = vec![0.0; p.extra_params.len()];
    let state = vec![0.0; p.state.len()];
    let (value, g) = lstm_objective_grad(&main, &extra, &state, &p.sequence, l, b, c);
    let scale = (b * (c - 1)) as f64;
    let targets = &p.sequence[b..];
    let total: f64 = targets.iter().sum();
    assert!(total > 0.0);
    assert_close(value, (b as f64 + 2.0).ln() * total / scale, 1e-14);
    assert_eq!(
        value,
        lstm_objective(&main, &extra, &state, &p.sequence, l, b, c)
    );
    assert!(
        g.main_params.iter().all(|&v| v == 0.0),
        "{:?}",
        g.main_params
    );
    assert!(g.extra_params[..2 * b].iter().all(|&v| v == 0.0));
    for i in 0..b {
        let want: f64 = (1..c)
            .map(|t| {
                let row = &p.sequence[t * b..(t + 1) * b];
                row[i] - row.iter().sum::<f64>() / (b as f64 + 2.0)
            })
            .sum::<f64>()
            / -scale;
        assert_close(g.extra_params[2 * b + i], want, 1e-14);
    }
}

#[test]
fn benchmark_inputs_give_finite_values_and_gradients() {
    // The benchmark's sizes, once each, so a regression in them fails a test rather
    // than only moving a timing.
    let p = gmm_input(10, 25, 1000, 1.0, 0);
    let (v, g) = gmm_objective_grad(&p.alphas, &p.means, &p.icf, &p.x, p.d, p.k, p.gamma, p.m);
    assert!(v.is_finite());
    assert!(
        g.alphas
            .iter()
            .chain(&g.means)
            .chain(&g.icf)
            .all(|v| v.is_finite())
    );
    let q = lstm_input(2, 14, 1024, 0);
    let (v, g) = lstm_objective_grad(
        &q.main_params,
        &q.extra_params,
        &q.state,
        &q.sequence,
        q.l,
        q.b,
        q.c,
    );
    assert!(v.is_finite() && v > 0.0);
    assert!(
        g.main_params
            .iter()
            .chain(&g.extra_params)
            .all(|v| v.is_finite())
    );
}
