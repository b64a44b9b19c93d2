//! Two ADBench objectives written the way a user writes them in Rust: plain loops over
//! flat `&[f64]` slices, differentiated by `#[grad]`.
//!
//! The problems are those of Srajer, Hodan and Fitzgibbon, "A benchmark of selected
//! algorithmic differentiation tools on some problems in computer vision and machine
//! learning" (Optimization Methods & Software, 2018), in the layouts of ADBench's C++
//! reference (`src/cpp/shared/gmm.h`, `src/cpp/shared/lstm.h`): the same parameter
//! orders and the same loops, at ADBench's sizes; the inputs are drawn here from a seed
//! rather than read from ADBench's data files.
//!
//! `benches/adbench.rs` times each objective against its `#[grad]` value + gradient;
//! `tests/grad/adbench.rs` checks the gradients (central differences, closed forms).

// Written the way the ADBench C++ reference is written: index loops over flat buffers,
// which clippy would rewrite into iterator chains, and ADBench's long argument lists.
// `manual_memcpy`: the LSTM's copy loop stays as ADBench writes it (`#[grad]` also
// takes `copy_from_slice`, as the element writes it is).
#![allow(
    clippy::needless_range_loop,
    clippy::too_many_arguments,
    clippy::manual_memcpy
)]

use backprop::{grad, logsumexp, sigmoid};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------
// Gaussian mixture model
// ---------------------------------------------------------------------------------

/// log Σᵢ exp(vᵢ), shifted by the maximum so it neither overflows nor underflows,
/// written with `#[grad]`: the same function as [`backprop::logsumexp`], which the GMM
/// objective calls. With this one instead its gradient takes 3.1× the objective rather
/// than 2.9× (`docs/PERFORMANCE.md`): called on a buffer the loop overwrites, a
/// `#[grad]` function runs its forward pass again in the reverse pass, where the
/// runtime's rule needs only the copy and the value.
#[grad]
pub fn logsumexp_by_hand(v: &[f64]) -> f64 {
    let mx = v.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let s: f64 = v.iter().map(|z| (z - mx).exp()).sum();
    s.ln() + mx
}

/// ADBench's GMM objective, with ADBench's signs: the log-likelihood of `n` points `x`
/// (row-major `n × d`) under a mixture of `k` Gaussians with full covariances, plus
/// ADBench's Wishart prior term.
///
/// - `alphas` (`k`): unnormalised log mixture weights.
/// - `means` (`k × d`, row-major): component means μₖ.
/// - `icf` (`k × d(d+1)/2`): per component, first the `d` logs of the diagonal of the
///   lower-triangular inverse-covariance factor Qₖ (Σₖ⁻¹ = QₖᵀQₖ), then its strictly
///   lower entries column by column (column 0 rows 1..d, column 1 rows 2..d, ...).
/// - `gamma`, `m`: the Wishart prior's parameters (ADBench uses γ = 1, m = 0).
///
/// Value:
/// Σᵢ logsumexpₖ(αₖ + Σⱼ log diag(Qₖ)ⱼ − ½‖Qₖ(xᵢ − μₖ)‖²) − n·logsumexp(α)
/// + Σₖ (½γ²(‖diag(Qₖ)‖² + ‖offdiag(Qₖ)‖²) − m Σⱼ log diag(Qₖ)ⱼ).
///
/// It leaves out ADBench's two terms that no parameter reaches: the Gaussian
/// normaliser −n·d/2·ln 2π and the Wishart normaliser −k·C with
/// C = n′p(ln γ − ½ ln 2) − ln Γₚ(n′/2), n′ = p + m + 1 (which needs `ln_gamma`, not in
/// stable Rust's `f64`). Adding them back moves the value by a constant and leaves the
/// gradient as it is.
#[grad(alphas, means, icf)]
pub fn gmm_objective(
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

    // preprocess_qs: exp of the log-diagonals, and their sums.
    let mut qdiags = vec![0.0; k * d];
    let mut sum_qs = vec![0.0; k];
    for ik in 0..k {
        let mut s = 0.0;
        for id in 0..d {
            let q = icf[ik * icf_sz + id];
            s += q;
            qdiags[ik * d + id] = q.exp();
        }
        sum_qs[ik] = s;
    }

    let mut xcentered = vec![0.0; d];
    let mut qxcentered = vec![0.0; d];
    let mut main_term = vec![0.0; k];
    let mut slse = 0.0;
    for ix in 0..n {
        for ik in 0..k {
            for id in 0..d {
                xcentered[id] = x[ix * d + id] - means[ik * d + id];
            }
            // Qtimesx: the diagonal, then the strictly lower part column by column.
            for id in 0..d {
                qxcentered[id] = qdiags[ik * d + id] * xcentered[id];
            }
            let mut li = ik * icf_sz + d;
            for i in 0..d {
                for j in i + 1..d {
                    qxcentered[j] += icf[li] * xcentered[i];
                    li += 1;
                }
            }
            let mut sq = 0.0;
            for id in 0..d {
                sq += qxcentered[id] * qxcentered[id];
            }
            main_term[ik] = alphas[ik] + sum_qs[ik] - 0.5 * sq;
        }
        slse += logsumexp(&main_term);
    }

    // log_wishart_prior, without its constant.
    let mut prior = 0.0;
    for ik in 0..k {
        let mut frobenius = 0.0;
        for id in 0..d {
            frobenius += qdiags[ik * d + id] * qdiags[ik * d + id];
        }
        for j in d..icf_sz {
            frobenius += icf[ik * icf_sz + j] * icf[ik * icf_sz + j];
        }
        prior += 0.5 * gamma * gamma * frobenius - m * sum_qs[ik];
    }

    slse - n as f64 * logsumexp(alphas) + prior
}

/// One GMM problem: parameters, data and prior.
#[derive(Clone, Debug)]
pub struct GmmInput {
    pub d: usize,
    pub k: usize,
    pub n: usize,
    pub alphas: Vec<f64>,
    pub means: Vec<f64>,
    pub icf: Vec<f64>,
    pub x: Vec<f64>,
    pub gamma: f64,
    pub m: f64,
}

impl GmmInput {
    /// The objective at this input.
    pub fn objective(&self) -> f64 {
        gmm_objective(
            &self.alphas,
            &self.means,
            &self.icf,
            &self.x,
            self.d,
            self.k,
            self.gamma,
            self.m,
        )
    }
}

/// A standard normal draw (Box–Muller), so the inputs need no `rand_distr`.
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Random GMM inputs from `seed`: α ~ N(0, 1), μ ~ U(0, 1), icf ~ N(0, 1) scaled by
/// `icf_scale` (the benchmark uses 1), x ~ N(0, 1); ADBench's prior γ = 1, m = 0.
pub fn gmm_input(d: usize, k: usize, n: usize, icf_scale: f64, seed: u64) -> GmmInput {
    let mut rng = StdRng::seed_from_u64(seed);
    let icf_sz = d * (d + 1) / 2;
    let alphas = (0..k).map(|_| normal(&mut rng)).collect();
    let means = (0..k * d).map(|_| rng.random::<f64>()).collect();
    let icf = (0..k * icf_sz)
        .map(|_| icf_scale * normal(&mut rng))
        .collect();
    let x = (0..n * d).map(|_| normal(&mut rng)).collect();
    GmmInput {
        d,
        k,
        n,
        alphas,
        means,
        icf,
        x,
        gamma: 1.0,
        m: 0.0,
    }
}

// ---------------------------------------------------------------------------------
// LSTM
// ---------------------------------------------------------------------------------

/// ADBench's LSTM objective: `l` stacked layers of its diagonal LSTM cell over a
/// sequence of `c` steps of `b` values, each step predicting the next.
///
/// - `main_params` (`2l × 4b`): per layer, 4b weights then 4b biases, each block of
///   four in the order forget, ingate, outgate, change.
/// - `extra_params` (`3 × b`): input weights, output weights, output bias.
/// - `state` (`2l × b`): per layer, the hidden then the cell state at the start. It is
///   data (ADBench does not differentiate it); the function works on a copy.
/// - `sequence` (`c × b`).
///
/// The cell is ADBench's (not a textbook LSTM: every weight is a diagonal, and the
/// forget and output gates read the input, the input gate and the change the hidden
/// state): forget = σ(xᵢw_f + b_f), ingate = σ(hᵢw_i + b_i), outgate = σ(xᵢw_o + b_o),
/// change = tanh(hᵢw_c + b_c), cell = cell·forget + ingate·change,
/// hidden = outgate·tanh(cell). The prediction is hidden·w_out + b_out, normalised by
/// ADBench's logsumexp, which adds 2 inside the log (ln(Σ exp + 2), kept for fidelity,
/// see ADBench issue 143). The loss is −Σₜ Σᵢ y_{t+1,i}·ŷ_{t,i} / (b(c − 1)).
#[grad(main_params, extra_params)]
pub fn lstm_objective(
    main_params: &[f64],
    extra_params: &[f64],
    state: &[f64],
    sequence: &[f64],
    l: usize,
    b: usize,
    c: usize,
) -> f64 {
    let mut s = state.to_vec();
    let mut input = vec![0.0; b];
    let mut ypred = vec![0.0; b];
    let mut total = 0.0;
    for t in 0..c - 1 {
        // lstm_predict: scale the input, run the layers, map the last hidden state out.
        for i in 0..b {
            input[i] = sequence[t * b + i] * extra_params[i];
        }
        for layer in 0..l {
            let w = 8 * b * layer;
            let h = 2 * b * layer;
            for i in 0..b {
                let forget = sigmoid(input[i] * main_params[w + i] + main_params[w + 4 * b + i]);
                let ingate =
                    sigmoid(s[h + i] * main_params[w + b + i] + main_params[w + 5 * b + i]);
                let outgate =
                    sigmoid(input[i] * main_params[w + 2 * b + i] + main_params[w + 6 * b + i]);
                let change =
                    (s[h + i] * main_params[w + 3 * b + i] + main_params[w + 7 * b + i]).tanh();
                let cell = s[h + b + i] * forget + ingate * change;
                s[h + b + i] = cell;
                s[h + i] = outgate * cell.tanh();
            }
            for i in 0..b {
                input[i] = s[h + i];
            }
        }
        for i in 0..b {
            ypred[i] = input[i] * extra_params[b + i] + extra_params[2 * b + i];
        }

        // ADBench's logsumexp: ln(Σ exp(ŷ) + 2).
        let mut sum = 0.0;
        for i in 0..b {
            sum += ypred[i].exp();
        }
        let lse = (sum + 2.0).ln();
        for i in 0..b {
            total += sequence[(t + 1) * b + i] * (ypred[i] - lse);
        }
    }
    -total / ((c - 1) * b) as f64
}

/// One LSTM problem.
#[derive(Clone, Debug)]
pub struct LstmInput {
    pub l: usize,
    pub b: usize,
    pub c: usize,
    pub main_params: Vec<f64>,
    pub extra_params: Vec<f64>,
    pub state: Vec<f64>,
    pub sequence: Vec<f64>,
}

impl LstmInput {
    /// The objective at this input.
    pub fn objective(&self) -> f64 {
        lstm_objective(
            &self.main_params,
            &self.extra_params,
            &self.state,
            &self.sequence,
            self.l,
            self.b,
            self.c,
        )
    }
}

/// Random LSTM inputs from `seed`, as ADBench's `data/lstm/gen_data.py` makes them:
/// parameters and state ~ U(0, 1), and the sequence is `c` characters written as `b`
/// bits each (ADBench takes the characters from a text; here they are random codes in
/// 0..2^b).
pub fn lstm_input(l: usize, b: usize, c: usize, seed: u64) -> LstmInput {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut uniform = |len: usize| -> Vec<f64> { (0..len).map(|_| rng.random::<f64>()).collect() };
    let main_params = uniform(2 * l * 4 * b);
    let extra_params = uniform(3 * b);
    let state = uniform(2 * l * b);
    let mut sequence = vec![0.0; c * b];
    for t in 0..c {
        let code: u64 = rng.random_range(0..1u64 << b);
        for i in 0..b {
            sequence[t * b + i] = ((code >> i) & 1) as f64;
        }
    }
    LstmInput {
        l,
        b,
        c,
        main_params,
        extra_params,
        state,
        sequence,
    }
}
