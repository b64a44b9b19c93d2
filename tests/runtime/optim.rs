//! Optimizers from the user's side: first steps against hand derivations (f64, 1e-12),
//! decoupled decay, bias correction, the lesson's exercise 2, non-finite policy, param
//! groups, and state save/load, including damaged state: truncated at every offset,
//! every single-bit flip, non-finite or negative moments, an overflowing step counter.

use backprop::optim::{
    AdaFactor, Adam, AdamConfig, AdamW, AdamWConfig, Lion, LionConfig, NonFinite, OptimError,
    Optimizer, ParamGroup, RmsProp, RmsPropConfig, STATE_FORMAT_VERSION, Select, Sgd, SgdConfig,
    StateDict, StepOutcome,
};

const TOL: f64 = 1e-12;

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= TOL,
        "{what}: got {got:.17}, want {want:.17} (diff {:e})",
        (got - want).abs()
    );
}

/// Runs `opt` on the scalar parameter w₀ = 1 with gradients g₁ = 0.5, g₂ = −1 (the
/// gradients do not depend on w: a fixed sequence), returning w after each step.
fn two_steps<O: Optimizer<f64>>(mut opt: O) -> [f64; 2] {
    let mut w = vec![1.0f64];
    opt.step(&mut w, &vec![0.5]).unwrap();
    let w1 = w[0];
    opt.step(&mut w, &vec![-1.0]).unwrap();
    [w1, w[0]]
}

#[test]
fn sgd_first_steps() {
    // w₁ = 1 − 0.1·0.5 = 0.95;  w₂ = 0.95 − 0.1·(−1) = 1.05
    let [w1, w2] = two_steps(Sgd::new(SgdConfig {
        lr: 0.1,
        ..Default::default()
    }));
    close(w1, 0.95, "w1");
    close(w2, 1.05, "w2");
}

#[test]
fn sgd_momentum_first_steps() {
    // v₁ = 0.5,              w₁ = 1 − 0.1·0.5 = 0.95
    // v₂ = 0.9·0.5 − 1 = −0.55, w₂ = 0.95 + 0.1·0.55 = 1.005
    let [w1, w2] = two_steps(Sgd::new(SgdConfig::momentum(0.1, 0.9)));
    close(w1, 0.95, "w1");
    close(w2, 1.005, "w2");
}

#[test]
fn sgd_nesterov_first_steps() {
    // v₁ = 0.5,   d₁ = g₁ + βv₁ = 0.5 + 0.45 = 0.95,      w₁ = 1 − 0.095 = 0.905
    // v₂ = −0.55, d₂ = −1 + 0.9·(−0.55) = −1.495,         w₂ = 0.905 + 0.1495 = 1.0545
    let [w1, w2] = two_steps(Sgd::new(SgdConfig::nesterov(0.1, 0.9)));
    close(w1, 0.905, "w1");
    close(w2, 1.0545, "w2");
}

#[test]
fn rmsprop_first_steps() {
    // α = 0.99, lr = 0.01, ε = 1e-8
    // v₁ = 0.01·0.25 = 0.0025, √v₁ = 0.05:       w₁ = 1 − 0.01·0.5/(0.05 + ε)
    // v₂ = 0.99·0.0025 + 0.01·1 = 0.012475:      w₂ = w₁ + 0.01/(√0.012475 + ε)
    let [w1, w2] = two_steps(RmsProp::new(RmsPropConfig::default()));
    let e1 = 1.0 - 0.01 * 0.5 / (0.05 + 1e-8);
    close(w1, e1, "w1");
    close(w2, e1 + 0.01 / (0.012475f64.sqrt() + 1e-8), "w2");
}

/// Adam's two steps with lr = 0.1, β = (0.9, 0.999), ε = 1e-8, gradients 0.5, −1:
/// m₁ = 0.1·0.5 = 0.05,  v₁ = 0.001·0.25 = 0.00025,  m̂₁ = 0.5,  v̂₁ = 0.25
/// w₁ = 1 − 0.1·0.5/(0.5 + ε)
/// m₂ = 0.9·0.05 − 0.1 = −0.055,  v₂ = 0.999·0.00025 + 0.001 = 0.00124975
/// m̂₂ = −0.055/(1 − 0.9²) = −0.055/0.19,  v̂₂ = 0.00124975/(1 − 0.999²) = 0.00124975/0.001999
/// w₂ = w₁ − 0.1·m̂₂/(√v̂₂ + ε)
fn adam_reference() -> (f64, f64) {
    let eps = 1e-8;
    let w1 = 1.0 - 0.1 * 0.5 / (0.5 + eps);
    let (mh2, vh2): (f64, f64) = (-0.055 / 0.19, 0.00124975 / 0.001999);
    (w1, mh2 * 0.1 / (vh2.sqrt() + eps))
}

#[test]
fn adam_first_steps() {
    let [w1, w2] = two_steps(Adam::new(AdamConfig {
        lr: 0.1,
        ..Default::default()
    }));
    let (e1, step2) = adam_reference();
    close(w1, e1, "w1");
    close(w2, e1 - step2, "w2");
}

#[test]
fn adamw_first_steps() {
    // As Adam, plus the decoupled decay lr·λ·w of the weight before each step:
    // w₁ = 1 − 0.1·0.5/(0.5 + ε) − 0.1·0.01·1
    // w₂ = w₁ − 0.1·m̂₂/(√v̂₂ + ε) − 0.1·0.01·w₁
    let [w1, w2] = two_steps(AdamW::new(AdamWConfig {
        lr: 0.1,
        weight_decay: 0.01,
        ..Default::default()
    }));
    let (a1, step2) = adam_reference();
    let e1 = a1 - 0.001;
    close(w1, e1, "w1");
    close(w2, e1 - step2 - 0.001 * e1, "w2");
}

#[test]
fn adamw_decay_is_decoupled() {
    // A zero gradient leaves m = v = 0, so the Adam term is 0/(0 + ε) = 0 and only the
    // decay acts: w ← (1 − lr·λ)·w each step, whatever the gradient history.
    let mut w = vec![2.0f64, -4.0];
    let mut opt = AdamW::new(AdamWConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..Default::default()
    });
    for _ in 0..3 {
        opt.step(&mut w, &vec![0.0, 0.0]).unwrap();
    }
    close(w[0], 2.0 * 0.95f64.powi(3), "w0");
    close(w[1], -4.0 * 0.95f64.powi(3), "w1");

    // Adam's coupled L2 instead feeds λ·w through the moments: the first step is then
    // lr·sign(λw) = 0.1 whatever λ is (the coupling AdamW removes).
    let mut w = vec![2.0f64];
    let mut adam = Adam::new(AdamConfig {
        lr: 0.1,
        weight_decay: 0.5,
        eps: 0.0,
        ..Default::default()
    });
    adam.step(&mut w, &vec![0.0]).unwrap();
    close(w[0], 1.9, "adam L2");
}

#[test]
fn adam_first_step_is_lr_sign_g() {
    // t = 1: m̂ = g, v̂ = g², so the step is lr·g/(|g| + ε) → lr·sign(g) as ε → 0,
    // independent of the gradient's scale.
    let g = vec![1e-3f64, -5.0, 100.0, -1e-6];
    let mut w = vec![0.0f64; 4];
    let mut opt = Adam::new(AdamConfig {
        lr: 0.01,
        eps: 0.0,
        ..Default::default()
    });
    opt.step(&mut w, &g).unwrap();
    for (wi, gi) in w.iter().zip(&g) {
        close(*wi, -0.01 * gi.signum(), "w");
    }
}

#[test]
fn adam_f32_kernel_matches_f64_reference() {
    // The same two steps through the fused f32 kernel (SIMD when available): equal to the
    // f64 hand values to f32 precision.
    let mut w = vec![1.0f32; 37];
    let mut opt = AdamW::new(AdamWConfig {
        lr: 0.1,
        weight_decay: 0.01,
        ..Default::default()
    });
    opt.step(&mut w, &vec![0.5f32; 37]).unwrap();
    opt.step(&mut w, &vec![-1.0f32; 37]).unwrap();
    let (a1, step2) = adam_reference();
    let e1 = a1 - 0.001;
    let e2 = e1 - step2 - 0.001 * e1;
    assert!(
        w.iter().all(|&x| (x as f64 - e2).abs() < 1e-6),
        "{w:?} vs {e2}"
    );
}

#[test]
fn lion_first_steps() {
    // lr = 0.1, β₁ = 0.9, β₂ = 0.99, λ = 0.1, m₀ = 0, w₀ = 1
    // t=1, g = 0.5:  c = 0.05 > 0 → +1;  w₁ = 1 − 0.1·(1 + 0.1·1) = 0.89;  m₁ = 0.01·0.5 = 0.005
    // t=2, g = −1:   c = 0.0045 − 0.1 < 0 → −1;  w₂ = 0.89 − 0.1·(−1 + 0.089) = 0.9811
    //                m₂ = 0.99·0.005 − 0.01 = −0.00505
    // t=3, g = 0.02: c = 0.9·(−0.00505) + 0.1·0.02 = −0.002545 → −1 (momentum outvotes g)
    //                w₃ = 0.9811 − 0.1·(−1 + 0.09811) = 1.071289
    let mut opt = Lion::new(LionConfig {
        lr: 0.1,
        weight_decay: 0.1,
        ..Default::default()
    });
    let mut w = vec![1.0f64];
    let mut ws = Vec::new();
    for g in [0.5, -1.0, 0.02] {
        opt.step(&mut w, &vec![g]).unwrap();
        ws.push(w[0]);
    }
    close(ws[0], 0.89, "w1");
    close(ws[1], 0.9811, "w2");
    close(ws[2], 1.071289, "w3");
    let sd: StateDict<f64> = opt.state_dict();
    close(sd.buffers[0].values[0], 0.99 * -0.00505 + 0.01 * 0.02, "m3");
}

#[test]
fn adafactor_factored_first_steps() {
    // W = [[1, 2], [3, 4]], G₁ = [[1, 2], [3, 4]], defaults (relative step, d = 1).
    // t = 1: β = 1 − 1^(−0.8) = 0, so R = row sums of G² = [5, 25], C = col sums = [10, 20]
    // (ε₁ = 1e-30 is below 1e-12 here). ΣR = 30, V̂ᵢⱼ = RᵢCⱼ/30 = [[5/3, 10/3], [25/3, 50/3]].
    // U = G/√V̂: U² = [[3/5, 12/10], [27/25, 48/50]], mean(U²) = 0.96 → RMS(U) < 1, no clip.
    // α = max(1e-3, RMS(W))·min(1e-2, 1) = √7.5·0.01.   W₁ = W − α·U.
    let mut w = ndarray::array![[1.0f64, 2.0], [3.0, 4.0]];
    let g1 = ndarray::array![[1.0f64, 2.0], [3.0, 4.0]];
    let u = [
        [0.6f64.sqrt(), 1.2f64.sqrt()],
        [1.08f64.sqrt(), 0.96f64.sqrt()],
    ];
    let mut opt = AdaFactor::default();
    opt.step(&mut w, &g1).unwrap();
    let alpha1 = 7.5f64.sqrt() * 0.01;
    let w0 = [[1.0, 2.0], [3.0, 4.0]];
    let mut w1 = [[0.0; 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            w1[i][j] = w0[i][j] - alpha1 * u[i][j];
            close(w[[i, j]], w1[i][j], "w1");
        }
    }
    // t = 2, G₂ = 2·G₁: β = 1 − 2^(−0.8); R and C become (β + 4(1 − β))·[R, C], so V̂ scales
    // by s = 4 − 3β and U₂ = (2/√s)·U₁. RMS(U₂) = 2·√0.96/√s ≈ 1.19 > 1: update clipping
    // divides by it, leaving Û₂ = U₁/√0.96. ρ₂ = min(1e-2, 1/√2) = 1e-2.
    let beta = 1.0 - 2f64.powf(-0.8);
    assert!(2.0 * 0.96f64.sqrt() / (4.0 - 3.0 * beta).sqrt() > 1.0);
    opt.step(&mut w, &(&g1 * 2.0)).unwrap();
    let rms_w1 = (w1.iter().flatten().map(|x| x * x).sum::<f64>() / 4.0).sqrt();
    for i in 0..2 {
        for j in 0..2 {
            close(
                w[[i, j]],
                w1[i][j] - 0.01 * rms_w1 * u[i][j] / 0.96f64.sqrt(),
                "w2",
            );
        }
    }
    // Factored state: 2 row + 2 column statistics, not 4 second moments.
    assert_eq!(
        opt.state_dict()
            .buffers
            .iter()
            .map(|b| b.shape.clone())
            .collect::<Vec<_>>(),
        [vec![2], vec![2]]
    );
}

#[test]
fn adafactor_vector_first_step() {
    // A vector keeps a full v: t = 1 gives v = g² + ε₁, U = g/|g| = [1, −1], RMS(U) = 1;
    // α = RMS(w)·0.01 = √2.5·0.01.
    let mut w = vec![1.0f64, -2.0];
    let mut opt = AdaFactor::default();
    opt.step(&mut w, &vec![0.5, -3.0]).unwrap();
    let a = 2.5f64.sqrt() * 0.01;
    close(w[0], 1.0 - a, "w0");
    close(w[1], -2.0 + a, "w1");
}

/// Lesson exercise 2: f(W) = WᵀAW with A = diag(10, 0.01) (condition number 1000), from
/// W = (1, 1), lr = 0.02, 200 steps, ∇f = 2AW. SGD is stable (2·0.02·10 < 2) but crawls
/// along the shallow axis (factor 1 − 4e-4 per step); momentum is ~10× faster; Adam's
/// per-coordinate 1/√v̂ equalises the axes and reaches ~1e-8.
#[test]
fn exercise2_adam_beats_sgd_and_momentum_on_ill_conditioned_quadratic() {
    fn run<O: Optimizer<f64>>(mut opt: O) -> f64 {
        let a = [10.0, 0.01];
        let mut w = vec![1.0f64, 1.0];
        for _ in 0..200 {
            let g = vec![2.0 * a[0] * w[0], 2.0 * a[1] * w[1]];
            opt.step(&mut w, &g).unwrap();
        }
        a[0] * w[0] * w[0] + a[1] * w[1] * w[1]
    }
    let lr = 0.02;
    let sgd = run(Sgd::new(SgdConfig {
        lr,
        ..Default::default()
    }));
    let mom = run(Sgd::new(SgdConfig::momentum(lr, 0.9)));
    let adam = run(Adam::new(AdamConfig {
        lr,
        ..Default::default()
    }));
    // Initial loss 10.01; all three descend, Adam by orders of magnitude more.
    assert!(sgd < 0.01 && mom < sgd, "sgd {sgd}, momentum {mom}");
    assert!(
        adam < mom * 1e-3,
        "adam {adam} vs momentum {mom} vs sgd {sgd}"
    );
}

#[test]
fn non_finite_gradient_errors_and_changes_nothing() {
    let mut w = vec![1.0f64, 2.0];
    let mut opt = AdamW::new(AdamWConfig::default());
    opt.step(&mut w, &vec![0.1, 0.1]).unwrap();
    let (w_before, sd_before) = (w.clone(), opt.state_dict());
    let err = opt.step(&mut w, &vec![0.1, f64::NAN]).unwrap_err();
    assert!(
        matches!(err, OptimError::NonFiniteGradient { index: 1, .. }),
        "{err}"
    );
    assert_eq!(w, w_before);
    assert_eq!(opt.state_dict(), sd_before);
}

#[test]
fn non_finite_gradient_skip_policy_skips() {
    let mut w = vec![("w", vec![1.0f64, 2.0])];
    let mut opt = Adam::new(AdamConfig::default());
    let out = opt
        .step_with(
            &mut w,
            &vec![("w", vec![f64::INFINITY, 0.0])],
            NonFinite::Skip,
        )
        .unwrap();
    assert_eq!(
        out,
        StepOutcome::Skipped {
            name: "w".into(),
            index: 0
        }
    );
    assert_eq!(w[0].1, [1.0, 2.0]);
    // The skipped step did not count: the next one is t = 1 (a full lr·sign(g) step).
    let out = opt
        .step_with(&mut w, &vec![("w", vec![1.0, 1.0])], NonFinite::Skip)
        .unwrap();
    assert_eq!(out, StepOutcome::Applied { t: 1 });
}

#[test]
fn param_groups_override_decay_and_scale_lr() {
    // The bias "b" is in a group with no decay and twice the lr; "w" takes the defaults.
    // One step at t = 1 with g_w = 0, g_b = 1:
    //   w: Adam term 0/(0 + ε) = 0, decay only: w = (1 − 0.1·0.1)·1 = 0.99
    //   b: Adam term lr·sign(g) with lr = 2·0.1, no decay: b = 1 − 0.2·1/(1 + ε)
    let mut p = vec![("w", vec![1.0f64, 1.0]), ("b", vec![1.0])];
    let g = vec![("w", vec![0.0f64, 0.0]), ("b", vec![1.0])];
    let mut opt = AdamW::new(AdamWConfig {
        lr: 0.1,
        weight_decay: 0.1,
        ..Default::default()
    })
    .with_groups(vec![
        ParamGroup::new(Select::Names(vec!["b".into()]))
            .weight_decay(0.0)
            .lr_scale(2.0),
    ]);
    opt.step(&mut p, &g).unwrap();
    close(p[0].1[0], 0.99, "w decayed");
    close(
        p[1].1[0],
        1.0 - 0.2 / (1.0 + 1e-8),
        "b: scaled lr, not decayed",
    );
    // Select::MaxNdim(1) picks vectors (biases, norm scales) and leaves matrices.
    assert!(Select::MaxNdim(1).matches("ln.gamma", &[768]));
    assert!(!Select::MaxNdim(1).matches("attn.w", &[768, 768]));
}

#[test]
fn mismatched_gradients_name_both_shapes() {
    let mut w = vec![("w", vec![1.0f64; 3])];
    let mut opt = Sgd::new(SgdConfig::default());
    let err = opt.step(&mut w, &vec![("w", vec![1.0; 2])]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("[3]") && msg.contains("[2]") && msg.contains("`w`"),
        "{msg}"
    );
    let err = opt
        .step(&mut w, &vec![("w", vec![1.0; 3]), ("b", vec![0.0])])
        .unwrap_err();
    assert_eq!(
        err,
        OptimError::BufferCount {
            what: "gradients",
            expected: 1,
            found: 2
        }
    );
    assert!(err.to_string().contains("expected 1") && err.to_string().contains("found 2"));
}

fn train_steps<O: Optimizer<f32>>(
    opt: &mut O,
    w: &mut ndarray::Array2<f32>,
    from: usize,
    n: usize,
) {
    for t in from..from + n {
        // A deterministic gradient sequence that depends on w (so state matters).
        let g = w.mapv(|x| (x * 1.7 + t as f32 * 0.3).sin());
        opt.step(w, &g).unwrap();
    }
}

#[test]
fn state_round_trip_continues_bit_for_bit() {
    let w0 =
        ndarray::Array2::from_shape_fn((7, 19), |(i, j)| (i as f32 - 3.0) * 0.1 + j as f32 * 0.01);
    // Uninterrupted: 6 steps.
    let mut wa = w0.clone();
    let mut a = AdamW::new(AdamWConfig {
        lr: 0.01,
        ..Default::default()
    });
    train_steps(&mut a, &mut wa, 0, 6);
    // Interrupted after 3: state to bytes, into a fresh optimizer, 3 more.
    let mut wb = w0.clone();
    let mut b = AdamW::new(AdamWConfig {
        lr: 0.01,
        ..Default::default()
    });
    train_steps(&mut b, &mut wb, 0, 3);
    let bytes = b.state_dict().to_bytes();
    let mut c = AdamW::new(AdamWConfig {
        lr: 0.01,
        ..Default::default()
    });
    c.load_state_dict(&wb, &StateDict::from_bytes(&bytes).unwrap())
        .unwrap();
    assert_eq!(c.state().step_count(), 3);
    train_steps(&mut c, &mut wb, 3, 3);
    assert_eq!(
        wa.as_slice().unwrap(),
        wb.as_slice().unwrap(),
        "weights differ after resume"
    );
    assert_eq!(a.state_dict(), c.state_dict());
    assert_eq!(a.state_bytes(), 2 * 7 * 19 * 4);
}

#[test]
fn state_round_trip_every_optimizer() {
    fn check<O: Optimizer<f64>>(mut opt: O, mut fresh: O) {
        let mut w = vec![("a", vec![0.5f64; 6]), ("b", vec![-1.0; 2])];
        let g = vec![("a", vec![0.25f64; 6]), ("b", vec![1.0; 2])];
        opt.step(&mut w, &g).unwrap();
        let sd = StateDict::<f64>::from_bytes(&opt.state_dict().to_bytes()).unwrap();
        assert_eq!(sd, opt.state_dict(), "{}", O::NAME);
        fresh.load_state_dict(&w, &sd).unwrap();
        let mut w2 = w.clone();
        opt.step(&mut w, &g).unwrap();
        fresh.step(&mut w2, &g).unwrap();
        assert_eq!(w, w2, "{}", O::NAME);
    }
    check(
        Sgd::new(SgdConfig::nesterov(0.1, 0.9)),
        Sgd::new(SgdConfig::nesterov(0.1, 0.9)),
    );
    check(
        RmsProp::new(Default::default()),
        RmsProp::new(Default::default()),
    );
    check(Adam::new(Default::default()), Adam::new(Default::default()));
    check(Lion::new(Default::default()), Lion::new(Default::default()));
    check(AdaFactor::default(), AdaFactor::default());
}

#[test]
fn mismatched_state_load_names_both_shapes() {
    let w = ndarray::Array2::<f64>::zeros((2, 3));
    let mut opt = Adam::new(AdamConfig::default());
    opt.init(&w);
    let sd = opt.state_dict();
    // Same number of scalars, transposed shape: rejected, naming both.
    let wt = ndarray::Array2::<f64>::zeros((3, 2));
    let mut other = Adam::new(AdamConfig::default());
    let err = other.load_state_dict(&wt, &sd).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("[3, 2]") && msg.contains("[2, 3]") && msg.contains("`m`"),
        "{msg}"
    );
    // Different buffer counts: both counts named.
    let two = vec![("w", vec![0.0f64; 6]), ("b", vec![0.0; 2])];
    let err = other.load_state_dict(&two, &sd).unwrap_err();
    assert_eq!(
        err,
        OptimError::BufferCount {
            what: "saved state",
            expected: 4,
            found: 2
        }
    );
    // Another optimizer's state.
    let err = Lion::<f64>::new(Default::default())
        .load_state_dict(&w, &sd)
        .unwrap_err();
    assert!(
        err.to_string().contains("`adam`") && err.to_string().contains("`lion`"),
        "{err}"
    );
    // Bytes of the wrong dtype and truncated bytes.
    let bytes = sd.to_bytes();
    let err = StateDict::<f32>::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        err,
        OptimError::DtypeMismatch {
            expected: "f32",
            found: "f64"
        }
    );
    assert_eq!(err.to_string(), "saved state holds f64, loading as f32");
    assert_eq!(
        StateDict::<f64>::from_bytes(&bytes[..bytes.len() - 1]),
        Err(OptimError::Truncated {
            expected: bytes.len() as u64,
            found: bytes.len() - 1
        })
    );
}

#[test]
fn state_bytes_per_optimizer() {
    // Per parameter scalar: SGD 0, momentum 1, RMSProp 1, Adam/AdamW 2, Lion 1;
    // AdaFactor n + m for an n × m matrix.
    let w = ndarray::Array2::<f32>::zeros((64, 32));
    let n = 64 * 32 * 4;
    let mut sizes = Vec::new();
    macro_rules! bytes {
        ($o:expr) => {{
            let mut o = $o;
            o.init(&w);
            sizes.push(o.state_bytes());
        }};
    }
    bytes!(Sgd::<f32>::new(SgdConfig::default()));
    bytes!(Sgd::<f32>::new(SgdConfig::momentum(0.1, 0.9)));
    bytes!(RmsProp::<f32>::new(Default::default()));
    bytes!(Adam::<f32>::new(Default::default()));
    bytes!(AdamW::<f32>::default());
    bytes!(Lion::<f32>::new(Default::default()));
    bytes!(AdaFactor::<f32>::default());
    assert_eq!(sizes, [0, n, n, 2 * n, 2 * n, n, (64 + 32) * 4]);
}

#[test]
fn non_finite_index_is_exact_in_large_f32_buffers() {
    // The check scans blocks of 16 384 values; the reported index is the flat one.
    let mut w = vec![0.0f32; 50_000];
    let mut g = vec![0.0f32; 50_000];
    g[40_001] = f32::NEG_INFINITY;
    g[45_000] = f32::NAN;
    let mut opt = AdamW::new(AdamWConfig::default());
    let err = opt.step(&mut w, &g).unwrap_err();
    assert_eq!(
        err,
        OptimError::NonFiniteGradient {
            name: String::new(),
            index: 40_001,
            value: f64::NEG_INFINITY
        }
    );
    assert!(w.iter().all(|&x| x == 0.0));
}

#[test]
fn step_finite_equals_step_and_the_proof_is_only_made_for_finite_gradients() {
    use backprop::clip::clip_grad_norm_finite;
    use backprop::optim::Finite;
    // Two optimizers, the same three steps: one scans, one is handed the proof.
    let cfg = AdamWConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        ..Default::default()
    };
    let (mut a, mut b) = (AdamW::<f32>::new(cfg), AdamW::<f32>::new(cfg));
    let (mut wa, mut wb) = (vec![0.5f32, -1.5, 2.0], vec![0.5f32, -1.5, 2.0]);
    for k in 0..3 {
        let mut g = vec![0.3f32 * k as f32 - 0.2, 1.7, -4.0];
        let mut h = g.clone();
        let _ = backprop::clip::clip_grad_norm(&mut g, 2.0, backprop::clip::NonFiniteNorm::Error);
        a.step(&mut wa, &g).unwrap();
        let (_, finite) = clip_grad_norm_finite(&mut h, 2.0).unwrap();
        b.step_finite(&mut wb, finite).unwrap();
    }
    assert_eq!(wa, wb, "the proof changes nothing but the scan");
    // No proof for NaN or ±∞, and the gradients are left as they were.
    assert!(Finite::check(&vec![1.0f32, f32::INFINITY]).is_none());
    assert!(Finite::check(&vec![f64::NAN]).is_none());
    let mut bad = vec![f32::NAN, 3.0];
    assert!(clip_grad_norm_finite(&mut bad, 1.0).is_err());
    assert_eq!(bad[1], 3.0);
    // f64 values whose squares overflow: the norm is rescaled, so it is finite
    // (√2·1e200), the values are clipped to norm 1 and the proof is made.
    let mut huge = vec![1e200f64, 1e200];
    let (norm, _) = clip_grad_norm_finite(&mut huge, 1.0).unwrap();
    assert!((norm / (2f64.sqrt() * 1e200) - 1.0).abs() < 1e-15, "{norm}");
    for v in &huge {
        assert!((v - 0.5f64.sqrt()).abs() < 1e-15, "{huge:?}");
    }
    assert!(Finite::check(&huge).is_some());
}

// ---- damaged state files ----------------------------------------------------------

type Named = Vec<(&'static str, Vec<f64>)>;

/// A small Adam state (two buffers `w` and `b`: `w.m`, `w.v`, `b.m`, `b.v`) after two
/// steps, and its parameters.
fn small_adam_state() -> (Adam<f64>, Named) {
    let mut w: Named = vec![("w", vec![0.5, -1.0, 2.0]), ("b", vec![0.25])];
    let g: Named = vec![("w", vec![0.1, -0.2, 0.3]), ("b", vec![-0.4])];
    let mut opt = Adam::new(AdamConfig::default());
    opt.step(&mut w, &g).unwrap();
    opt.step(&mut w, &g).unwrap();
    (opt, w)
}

/// Another Adam on the same parameters with a different state (one step, other
/// gradients), to load into: a rejected load must leave it exactly as it was.
fn target(w: &Named) -> Adam<f64> {
    let mut w = w.clone();
    let g: Named = vec![("w", vec![-3.0, 1.0, 0.5]), ("b", vec![2.0])];
    let mut opt = Adam::new(AdamConfig::default());
    opt.step(&mut w, &g).unwrap();
    opt
}

fn load_bytes(opt: &mut Adam<f64>, w: &Named, bytes: &[u8]) -> Result<(), OptimError> {
    let sd = StateDict::<f64>::from_bytes(bytes)?;
    opt.load_state_dict(w, &sd)
}

#[test]
fn state_format_version_is_2() {
    let (opt, _) = small_adam_state();
    let bytes = opt.state_dict().to_bytes();
    assert_eq!(STATE_FORMAT_VERSION, 2);
    assert_eq!(&bytes[..8], b"BPOPTSD2");
    // Header: magic, payload length, CRC-32 of the payload.
    let payload_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert_eq!(payload_len as usize, bytes.len() - 20);
}

#[test]
fn state_truncated_at_every_offset_is_rejected_by_name() {
    let (opt, w) = small_adam_state();
    let bytes = opt.state_dict().to_bytes();
    let mut into = target(&w);
    let before = into.state_dict().to_bytes();
    for cut in 0..bytes.len() {
        let err = load_bytes(&mut into, &w, &bytes[..cut]).unwrap_err();
        // Shorter than the 20-byte header: the header's size; else the header's promise.
        let expected = if cut < 20 { 20 } else { bytes.len() as u64 };
        assert_eq!(
            err,
            OptimError::Truncated {
                expected,
                found: cut
            },
            "cut at {cut}"
        );
        assert_eq!(into.state_dict().to_bytes(), before, "cut at {cut}");
    }
    let err = load_bytes(&mut into, &w, &bytes[..100]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "saved state truncated: the header promises {} bytes, found 100",
            bytes.len()
        )
    );
}

#[test]
fn state_trailing_bytes_are_rejected_by_name() {
    let (opt, w) = small_adam_state();
    let mut bytes = opt.state_dict().to_bytes();
    bytes.push(0);
    let mut into = target(&w);
    let before = into.state_dict().to_bytes();
    let err = load_bytes(&mut into, &w, &bytes).unwrap_err();
    assert_eq!(
        err,
        OptimError::TrailingBytes {
            expected: bytes.len() as u64 - 1,
            found: bytes.len()
        }
    );
    assert!(err.to_string().contains("trailing bytes"), "{err}");
    assert_eq!(into.state_dict().to_bytes(), before);
}

/// Before the checksum, 1,085 of 2,088 single-bit flips of a small state file loaded
/// silently with different values. Now every flip is caught by the part of the header
/// it lands in, and the optimizer loaded into is unchanged.
#[test]
fn every_single_bit_flip_is_rejected_by_name_and_changes_nothing() {
    let (opt, w) = small_adam_state();
    let bytes = opt.state_dict().to_bytes();
    let mut into = target(&w);
    let before = into.state_dict().to_bytes();
    let mut flips = 0;
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[at] ^= 1 << bit;
            let err = match load_bytes(&mut into, &w, &bad) {
                // Only acceptable if it is the same state (no flip is, with a checksum).
                Ok(()) => {
                    assert_eq!(into.state_dict(), opt.state_dict(), "byte {at} bit {bit}");
                    continue;
                }
                Err(err) => err,
            };
            let ok = match at {
                0..7 => matches!(err, OptimError::BadMagic { .. }),
                7 => matches!(
                    err,
                    OptimError::UnsupportedVersion {
                        supported: b'2',
                        ..
                    }
                ),
                // The length: the bytes are now too short or too long for it.
                8..16 => matches!(
                    err,
                    OptimError::Truncated { .. } | OptimError::TrailingBytes { .. }
                ),
                _ => matches!(err, OptimError::ChecksumMismatch { .. }),
            };
            assert!(ok, "byte {at} bit {bit}: {err:?}");
            assert_eq!(
                into.state_dict().to_bytes(),
                before,
                "byte {at} bit {bit}: state changed by a rejected load"
            );
            flips += 1;
        }
    }
    assert_eq!(flips, 8 * bytes.len());
    // The message names both checksums.
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = load_bytes(&mut into, &w, &bad).unwrap_err();
    let OptimError::ChecksumMismatch { stored, computed } = err else {
        panic!("{err:?}")
    };
    assert_ne!(stored, computed);
    assert!(
        err.to_string().contains(&format!("0x{stored:08x}"))
            && err.to_string().contains(&format!("0x{computed:08x}")),
        "{err}"
    );
}

#[test]
fn state_of_another_format_or_none_is_named() {
    let (opt, _) = small_adam_state();
    let mut v1 = opt.state_dict().to_bytes();
    v1[7] = b'1';
    let err = StateDict::<f64>::from_bytes(&v1).unwrap_err();
    assert_eq!(
        err,
        OptimError::UnsupportedVersion {
            found: b'1',
            supported: b'2'
        }
    );
    assert_eq!(
        err.to_string(),
        "saved state format version 1, this build reads version 2"
    );
    let err = StateDict::<f64>::from_bytes(b"\x89PNG\r\n\x1a\n and more").unwrap_err();
    assert_eq!(
        err,
        OptimError::BadMagic {
            found: b"\x89PNG\r\n\x1a\n".to_vec()
        }
    );
    assert!(err.to_string().contains("expected \"BPOPTSD2\""), "{err}");
}

#[test]
fn checksummed_but_undecodable_payload_is_malformed() {
    // Invalid UTF-8 in the optimizer's name, with the CRC-32 fixed up to match: only
    // something other than to_bytes writes this.
    let (opt, _) = small_adam_state();
    let mut bytes = opt.state_dict().to_bytes();
    // Payload: dtype byte, then the name's u32 length, then "adam".
    bytes[20 + 1 + 4] = 0xff;
    let crc = crc32(&bytes[20..]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        StateDict::<f64>::from_bytes(&bytes),
        Err(OptimError::Malformed(why)) if why.contains("UTF-8")
    ));
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), bit by bit: an independent check
/// of the one the crate computes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn header_crc_is_the_ieee_crc32_of_the_payload() {
    let (opt, _) = small_adam_state();
    let bytes = opt.state_dict().to_bytes();
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926); // the standard check value
    assert_eq!(
        u32::from_le_bytes(bytes[16..20].try_into().unwrap()),
        crc32(&bytes[20..])
    );
}

/// Edits one saved buffer, saves it with a valid checksum, and loads it into `target`.
fn load_edited(edit: impl FnOnce(&mut StateDict<f64>)) -> (Result<(), OptimError>, bool) {
    let (opt, w) = small_adam_state();
    let mut sd = opt.state_dict();
    edit(&mut sd);
    let mut into = target(&w);
    let before = into.state_dict().to_bytes();
    let res = load_bytes(&mut into, &w, &sd.to_bytes());
    (res, into.state_dict().to_bytes() == before)
}

fn buffer<'s>(sd: &'s mut StateDict<f64>, name: &str) -> &'s mut Vec<f64> {
    &mut sd
        .buffers
        .iter_mut()
        .find(|b| b.name == name)
        .unwrap()
        .values
}

#[test]
fn non_finite_moments_are_rejected_by_name_and_change_nothing() {
    let (res, unchanged) = load_edited(|sd| buffer(sd, "w.v")[1] = f64::NAN);
    let err = res.unwrap_err();
    assert!(
        matches!(&err, OptimError::NonFiniteState { name, index: 1, value } if name == "w.v" && value.is_nan()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "saved state `w.v` holds non-finite NaN at flat index 1; state unchanged"
    );
    assert!(unchanged);
    let (res, unchanged) = load_edited(|sd| buffer(sd, "b.m")[0] = f64::NEG_INFINITY);
    assert_eq!(
        res,
        Err(OptimError::NonFiniteState {
            name: "b.m".into(),
            index: 0,
            value: f64::NEG_INFINITY
        })
    );
    assert!(unchanged);
}

#[test]
fn negative_second_moment_is_rejected_but_negative_momentum_loads() {
    let (res, unchanged) = load_edited(|sd| buffer(sd, "w.v")[2] = -1e-3);
    let err = res.unwrap_err();
    assert_eq!(
        err,
        OptimError::NegativeState {
            name: "w.v".into(),
            index: 2,
            value: -1e-3
        }
    );
    assert!(
        err.to_string().contains("`w.v` is a second moment"),
        "{err}"
    );
    assert!(unchanged);
    // A first moment has any sign.
    let (res, unchanged) = load_edited(|sd| buffer(sd, "w.m")[2] = -1e-3);
    assert_eq!(res, Ok(()));
    assert!(!unchanged);
    // Second moments of RMSProp and AdaFactor are checked too; SGD's velocity is not one.
    let w = vec![("w", vec![1.0f64, 2.0])];
    let g = vec![("w", vec![0.5f64, -0.5])];
    let mut rms = RmsProp::new(RmsPropConfig::default());
    rms.step(&mut w.clone(), &g).unwrap();
    let mut sd = rms.state_dict();
    sd.buffers[0].values[0] = -1.0;
    assert!(matches!(
        RmsProp::new(RmsPropConfig::default()).load_state_dict(&w, &sd),
        Err(OptimError::NegativeState { index: 0, .. })
    ));
    let mut ada = AdaFactor::default();
    ada.step(&mut w.clone(), &g).unwrap();
    let mut sd = ada.state_dict();
    sd.buffers[0].values[1] = -1.0;
    assert!(matches!(
        AdaFactor::default().load_state_dict(&w, &sd),
        Err(OptimError::NegativeState { index: 1, .. })
    ));
    let mut sgd = Sgd::new(SgdConfig::momentum(0.1, 0.9));
    sgd.step(&mut w.clone(), &g).unwrap();
    let mut sd = sgd.state_dict();
    sd.buffers[0].values[0] = -1.0;
    assert_eq!(
        Sgd::new(SgdConfig::momentum(0.1, 0.9)).load_state_dict(&w, &sd),
        Ok(())
    );
}

#[test]
fn value_count_that_disagrees_with_the_shape_is_named() {
    let (opt, w) = small_adam_state();
    let mut sd = opt.state_dict();
    buffer(&mut sd, "w.m").pop();
    let mut into = target(&w);
    let before = into.state_dict().to_bytes();
    let err = into.load_state_dict(&w, &sd).unwrap_err();
    assert_eq!(
        err,
        OptimError::ValueCount {
            name: "w.m".into(),
            shape: vec![3],
            found: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "saved state `w.m` has shape [3] (3 values) but 2 values"
    );
    assert_eq!(into.state_dict().to_bytes(), before);
}

#[test]
fn step_counter_at_u64_max_is_rejected_and_a_step_from_max_minus_one_stops_there() {
    let (res, unchanged) = load_edited(|sd| sd.step = u64::MAX);
    let err = res.unwrap_err();
    assert_eq!(err, OptimError::StepOverflow { step: u64::MAX });
    assert!(err.to_string().contains("18446744073709551615"), "{err}");
    assert!(unchanged);
    // One below loads; the step after it uses t = u64::MAX; the one after that is
    // refused with parameters and state unchanged (it used to wipe the state in debug
    // builds and turn every parameter NaN in release).
    let (opt, mut w) = small_adam_state();
    let mut sd = opt.state_dict();
    sd.step = u64::MAX - 1;
    let mut into = target(&w);
    into.load_state_dict(&w, &sd).unwrap();
    let g: Named = vec![("w", vec![0.1, -0.2, 0.3]), ("b", vec![-0.4])];
    assert_eq!(
        into.step(&mut w, &g),
        Ok(StepOutcome::Applied { t: u64::MAX })
    );
    assert!(w.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    let (w_before, state_before) = (w.clone(), into.state_dict().to_bytes());
    assert_eq!(
        into.step(&mut w, &g),
        Err(OptimError::StepOverflow { step: u64::MAX })
    );
    assert_eq!(w, w_before);
    assert_eq!(into.state_dict().to_bytes(), state_before);
}

#[derive(Clone, Debug, PartialEq, backprop::Differentiable)]
struct Lin {
    w: ndarray::Array2<f64>,
    b: ndarray::Array1<f64>,
}

/// A state saved before the first step (no moments yet) loads back as a fresh
/// optimizer, whose first step is the fresh one's; it was refused as "expected 4
/// buffers, found 0" before.
#[test]
fn state_saved_before_the_first_step_loads() {
    let p = Lin {
        w: ndarray::Array2::from_elem((2, 2), 0.5),
        b: ndarray::Array1::zeros(2),
    };
    let g = Lin {
        w: ndarray::Array2::ones((2, 2)),
        b: ndarray::Array1::ones(2),
    };
    let fresh = AdamW::<f64>::new(AdamWConfig::default());
    let saved = fresh.state_dict();
    assert!(saved.buffers.is_empty());
    let mut used = AdamW::<f64>::new(AdamWConfig::default());
    let mut q = p.clone();
    used.step(&mut q, &g).unwrap();
    used.load_state_dict(&p, &saved).unwrap();
    assert_eq!(used.state_dict(), saved);
    let (mut a, mut b) = (p.clone(), p.clone());
    used.step(&mut a, &g).unwrap();
    AdamW::<f64>::new(AdamWConfig::default())
        .step(&mut b, &g)
        .unwrap();
    assert_eq!(a, b);
    // Another count of buffers is still refused, in words that fit a state.
    let mut other = saved.clone();
    other.step = 3;
    let err = used.load_state_dict(&p, &other).unwrap_err();
    assert_eq!(err.to_string(), "saved state: expected 4 buffers, found 0");
}

/// A column-major parameter (a PyTorch `[out, in]` weight ported as `w.t().to_owned()`)
/// is stepped as the row-major array it equals: `step` makes it row-major first, as the
/// mutable walk of `Params` promises. It panicked in the read-only walk before.
#[test]
fn a_column_major_parameter_is_stepped() {
    let w = ndarray::array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let mut p = Lin {
        w: w.t().to_owned(),
        b: ndarray::Array1::zeros(2),
    };
    assert!(!p.w.is_standard_layout());
    let g = Lin {
        w: ndarray::Array2::from_elem((3, 2), 0.5),
        b: ndarray::Array1::ones(2),
    };
    let mut opt = Sgd::<f64>::new(SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    });
    opt.step(&mut p, &g).unwrap();
    assert_eq!(p.w, w.t().mapv(|v| v - 0.05));
    assert!(p.w.is_standard_layout());
}

/// A hyper-parameter no step can use (a NaN or negative learning rate, `beta2 = 1`, a
/// NaN weight decay) is refused by name and value before anything moves: a typo or a
/// schedule gone wrong never turns the weights into NaN silently.
#[test]
fn invalid_hyper_parameters_are_refused_by_name_and_change_nothing() {
    fn refused<O: Optimizer<f64>>(mut opt: O, name: &str) {
        let mut w = vec![1.0f64, -2.0];
        let err = opt.step(&mut w, &vec![0.5, 0.25]).unwrap_err();
        match &err {
            OptimError::InvalidHyperParameter { name: n, .. } => assert_eq!(n, name, "{err}"),
            other => panic!("{name}: {other}"),
        }
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
        assert_eq!(w, [1.0, -2.0], "{err}");
        assert_eq!(opt.state().step_count(), 0, "{err}");
    }
    refused(
        Sgd::new(SgdConfig {
            lr: f64::NAN,
            ..SgdConfig::default()
        }),
        "lr",
    );
    refused(
        Sgd::new(SgdConfig {
            lr: -0.1,
            ..SgdConfig::default()
        }),
        "lr",
    );
    refused(
        Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 1.5,
            ..SgdConfig::default()
        }),
        "momentum",
    );
    refused(
        Adam::new(AdamConfig {
            beta2: 1.0,
            ..AdamConfig::default()
        }),
        "beta2",
    );
    refused(
        AdamW::new(AdamWConfig {
            weight_decay: f64::NAN,
            ..AdamWConfig::default()
        }),
        "weight_decay",
    );
    refused(
        AdamW::new(AdamWConfig {
            eps: -1e-8,
            ..AdamWConfig::default()
        }),
        "eps",
    );
    refused(
        Lion::new(LionConfig {
            beta1: f64::NAN,
            ..LionConfig::default()
        }),
        "beta1",
    );
    refused(
        RmsProp::new(RmsPropConfig {
            alpha: 1.5,
            ..RmsPropConfig::default()
        }),
        "alpha",
    );
    // The edges that are valid: lr = 0 (a frozen step) and beta1 = 0 (no momentum).
    let mut w = vec![1.0f64];
    Adam::new(AdamConfig {
        lr: 0.0,
        beta1: 0.0,
        ..AdamConfig::default()
    })
    .step(&mut w, &vec![3.0])
    .unwrap();
    assert_eq!(w, [1.0]);
}
