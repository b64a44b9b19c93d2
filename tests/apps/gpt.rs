//! The character-level GPT of `src/gpt.rs` (issue #17): the `#[grad]` loss gradchecked
//! end to end in f64 (and its Hessian-vector products), equal to the same two blocks
//! written out inline, a loss that falls,
//! checkpoints that resume bit for bit, deterministic sampling, and named errors for bad
//! data and bad checkpoints.

// `#[grad]`'s companions of a generic function repeat its `T: Real` bound in a where clause.
#![allow(clippy::multiple_bound_locations)]

use backprop::ops::{XentOptions, attention, cross_entropy, embedding, gelu_exact, layer_norm};
use backprop::params::Params;
use backprop::{Real, grad, gradcheck};
use backprop_tests::gpt::{
    Block, Corpus, Gpt, GptConfig, GptError, Rng64, TrainConfig, Trainer, gpt_loss, gpt_loss_grad,
};
use ndarray::{Array2, s};
use std::path::PathBuf;

/// 2 layers, 2 heads, 16 wide, context 4, a 5-character vocabulary.
fn tiny(tied: bool) -> GptConfig {
    GptConfig {
        vocab: 5,
        block_size: 4,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        tied,
    }
}

/// GPT-2 initialisation plus uniform noise of ±`scale` on every value, so gains,
/// biases and the small residual projections all carry gradients of similar size.
fn model(cfg: &GptConfig, seed: u64, scale: f64) -> Gpt<f64> {
    let mut m = Gpt::<f64>::init(cfg, seed);
    let mut r = Rng64::new(seed + 99);
    m.visit_mut("", &mut |b| {
        for v in b.values.iter_mut() {
            *v += scale * (2.0 * r.unit() - 1.0);
        }
    });
    m
}

fn batch(cfg: &GptConfig, b: usize, seed: u64) -> (Array2<usize>, Array2<usize>) {
    let mut r = Rng64::new(seed);
    let x = Array2::from_shape_simple_fn((b, cfg.block_size), || r.below(cfg.vocab));
    let y = Array2::from_shape_simple_fn((b, cfg.block_size), || r.below(cfg.vocab));
    (x, y)
}

#[test]
fn gradcheck_gpt_loss_end_to_end_f64() {
    // Every coordinate costs two forward passes of a debug build: the tied model with
    // its 2 layers, the untied head on 1 layer.
    for tied in [true, false] {
        let cfg = GptConfig {
            n_layer: if tied { 2 } else { 1 },
            ..tiny(tied)
        };
        let p = model(&cfg, 1, 0.3);
        let (x, y) = batch(&cfg, 1, 7);
        let r = gradcheck!(gpt_loss(
            p = &p,
            ids = const &x,
            targets = const &y,
            n_head = const 2,
            tied = const tied
        ));
        r.assert();
    }
}

/// Second order of the whole GPT (issue 18): `gpt_loss_hvp`, the reverse pass of the
/// loss's tangent program through embedding, layer norm, the fused attention, GELU and
/// the cross-entropy over every position, against differences of the gradient along
/// random directions (and `uᵀHv = vᵀHu`).
#[test]
fn gpt_loss_hessian_vector_products_f64() {
    for tied in [true, false] {
        let cfg = GptConfig {
            n_layer: if tied { 2 } else { 1 },
            ..tiny(tied)
        };
        let p = model(&cfg, 3, 0.3);
        let (x, y) = batch(&cfg, 2, 11);
        let r = gradcheck!(
            gpt_loss(
                p = &p,
                ids = const &x,
                targets = const &y,
                n_head = const 2,
                tied = const tied
            ),
            order = 2
        );
        r.assert();
    }
}

/// The same model with its two blocks written out inline: every layer as the ops it
/// calls, no `#[grad]` layer functions, no loop.
#[grad(p)]
fn gpt2_unrolled<T: Real>(p: &Gpt<T>, ids: &Array2<usize>, targets: &Array2<usize>) -> T {
    let eps = T::from_f64(1e-5).unwrap();
    let (bs, t) = ids.dim();
    let c = p.wte.ncols();
    let hd = c / 2;
    let x0 = embedding(&p.wte, ids) + p.wpe.slice(s![0..t, ..]);
    // Block 0.
    let b0 = &p.blocks[0];
    let h = layer_norm(&x0, &b0.ln1_g, &b0.ln1_b, eps);
    let qkv = h.to_shape((bs * t, c)).unwrap().dot(&b0.w_qkv) + &b0.b_qkv;
    let q = qkv
        .slice(s![.., 0..c])
        .to_owned()
        .into_shape_with_order((bs, t, 2, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let k = qkv
        .slice(s![.., c..2 * c])
        .to_owned()
        .into_shape_with_order((bs, t, 2, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let v = qkv
        .slice(s![.., 2 * c..3 * c])
        .to_owned()
        .into_shape_with_order((bs, t, 2, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let o = attention(&q, &k, &v, true);
    let op = o.permuted_axes([0, 2, 1, 3]);
    let a = (op.to_shape((bs * t, c)).unwrap().dot(&b0.w_proj) + &b0.b_proj)
        .into_shape_with_order((bs, t, c))
        .unwrap();
    let x1 = &x0 + &a;
    let h = layer_norm(&x1, &b0.ln2_g, &b0.ln2_b, eps);
    let f = gelu_exact(&(h.to_shape((bs * t, c)).unwrap().dot(&b0.w_fc) + &b0.b_fc));
    let m = (f.dot(&b0.w_out) + &b0.b_out)
        .into_shape_with_order((bs, t, c))
        .unwrap();
    let x2 = &x1 + &m;
    // Block 1.
    let b1 = &p.blocks[1];
    let h = layer_norm(&x2, &b1.ln1_g, &b1.ln1_b, eps);
    let qkv = h.to_shape((bs * t, c)).unwrap().dot(&b1.w_qkv) + &b1.b_qkv;
    let q = qkv
        .slice(s![.., 0..c])
        .to_owned()
        .into_shape_with_order((bs, t, 2, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let k = qkv
        .slice(s![.., c..2 * c])
        .to_owned()
        .into_shape_with_order((bs, t, 2, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let v = qkv
        .slice(s![.., 2 * c..3 * c])
        .to_owned()
        .into_shape_with_order((bs, t, 2, hd))
        .unwrap()
        .permuted_axes([0, 2, 1, 3])
        .to_owned();
    let o = attention(&q, &k, &v, true);
    let op = o.permuted_axes([0, 2, 1, 3]);
    let a = (op.to_shape((bs * t, c)).unwrap().dot(&b1.w_proj) + &b1.b_proj)
        .into_shape_with_order((bs, t, c))
        .unwrap();
    let x3 = &x2 + &a;
    let h = layer_norm(&x3, &b1.ln2_g, &b1.ln2_b, eps);
    let f = gelu_exact(&(h.to_shape((bs * t, c)).unwrap().dot(&b1.w_fc) + &b1.b_fc));
    let m = (f.dot(&b1.w_out) + &b1.b_out)
        .into_shape_with_order((bs, t, c))
        .unwrap();
    let x4 = &x3 + &m;
    // Head.
    let h = layer_norm(&x4, &p.lnf_g, &p.lnf_b, eps);
    let logits = h.to_shape((bs * t, c)).unwrap().dot(&p.wte.t());
    let v = logits.ncols();
    let logits3 = logits.into_shape_with_order((bs, t, v)).unwrap().to_owned();
    cross_entropy(&logits3, targets, XentOptions::default())
}

fn assert_close(a: &Gpt<f64>, b: &Gpt<f64>, tol: f64) {
    for (x, y) in a.buffers().iter().zip(b.buffers()) {
        assert_eq!(x.name, y.name);
        let scale = x.values.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
        for (i, (u, v)) in x.values.iter().zip(y.values).enumerate() {
            assert!(
                (u - v).abs() <= tol * scale,
                "{}[{i}]: {u} vs {v} (scale {scale})",
                x.name
            );
        }
    }
}

#[test]
fn loop_over_blocks_equals_two_blocks_unrolled() {
    let cfg = tiny(true);
    let p = model(&cfg, 3, 0.3);
    let (x, y) = batch(&cfg, 3, 11);
    let (l, g) = gpt_loss_grad(&p, &x, &y, 2, true);
    let (lu, gu) = gpt2_unrolled_grad(&p, &x, &y);
    assert!((l - lu).abs() <= 1e-14 * l.abs(), "{l} vs {lu}");
    assert_close(&g.p, &gu.p, 1e-12);
    // And the f32 model computes the same loss to f32 precision.
    let p32: Gpt<f32> = Gpt {
        wte: p.wte.mapv(|v| v as f32),
        wpe: p.wpe.mapv(|v| v as f32),
        blocks: p
            .blocks
            .iter()
            .map(|b| Block {
                ln1_g: b.ln1_g.mapv(|v| v as f32),
                ln1_b: b.ln1_b.mapv(|v| v as f32),
                w_qkv: b.w_qkv.mapv(|v| v as f32),
                b_qkv: b.b_qkv.mapv(|v| v as f32),
                w_proj: b.w_proj.mapv(|v| v as f32),
                b_proj: b.b_proj.mapv(|v| v as f32),
                ln2_g: b.ln2_g.mapv(|v| v as f32),
                ln2_b: b.ln2_b.mapv(|v| v as f32),
                w_fc: b.w_fc.mapv(|v| v as f32),
                b_fc: b.b_fc.mapv(|v| v as f32),
                w_out: b.w_out.mapv(|v| v as f32),
                b_out: b.b_out.mapv(|v| v as f32),
            })
            .collect(),
        lnf_g: p.lnf_g.mapv(|v| v as f32),
        lnf_b: p.lnf_b.mapv(|v| v as f32),
        lm_head: p.lm_head.mapv(|v| v as f32),
    };
    let l32 = gpt_loss(&p32, &x, &y, 2, true);
    assert!((f64::from(l32) - l).abs() < 1e-5, "{l32} vs {l}");
}

const TEXT: &str =
    "fn add(a: i32, b: i32) -> i32 { a + b }\nfn sub(a: i32, b: i32) -> i32 { a - b }\n";

fn small_run() -> TrainConfig {
    TrainConfig {
        block_size: 16,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        batch: 4,
        steps: 80,
        lr: 1e-2,
        min_lr: 1e-3,
        warmup: 5,
        eval_iters: 2,
        seed: 5,
        ..TrainConfig::default()
    }
}

fn corpus() -> Corpus {
    Corpus::from_text(&TEXT.repeat(8), "test text", 16).unwrap()
}

#[test]
fn loss_falls_on_a_small_corpus() {
    let c = corpus();
    let cfg = small_run();
    let mut t = Trainer::new(&cfg, &c);
    let v0 = t.val_loss();
    assert!(
        (v0 - (c.vocab_size() as f64).ln()).abs() < 0.1,
        "first loss {v0}"
    );
    let mut first = 0.0;
    for i in 0..cfg.steps {
        let s = t.train_step(&c).unwrap();
        assert!(s.loss.is_finite() && s.grad_norm.is_finite());
        if i == 0 {
            first = s.loss;
        }
    }
    let v1 = t.val_loss();
    assert!(
        v1 < 0.5 * v0,
        "validation loss {v0} -> {v1} (first train loss {first})"
    );
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("backprop-gpt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Weights, AdamW's moments and step, steps taken and the window generator (the
/// learning rate a state dict also records is set from the schedule at every step).
#[derive(PartialEq)]
struct Snapshot(
    Gpt<f32>,
    Vec<backprop::optim::StateBuffer<f32>>,
    u64,
    u64,
    Rng64,
);

fn snapshot(t: &Trainer) -> Snapshot {
    use backprop::optim::Optimizer;
    let sd = t.opt.state_dict();
    Snapshot(t.model.clone(), sd.buffers, sd.step, t.step, t.rng)
}

fn same(a: &Snapshot, b: &Snapshot) -> bool {
    let bits = |s: &Snapshot| -> Vec<u32> {
        let mut v: Vec<u32> =
            s.0.buffers()
                .iter()
                .flat_map(|b| b.values.iter().map(|x| x.to_bits()))
                .collect();
        v.extend(
            s.1.iter()
                .flat_map(|b| b.values.iter().map(|x| x.to_bits())),
        );
        v
    };
    a == b && bits(a) == bits(b)
}

#[test]
fn checkpoint_resumes_bit_for_bit() {
    let c = corpus();
    let cfg = TrainConfig {
        steps: 8,
        ..small_run()
    };
    let mut straight = Trainer::new(&cfg, &c);
    for _ in 0..6 {
        straight.train_step(&c).unwrap();
    }
    let mut first = Trainer::new(&cfg, &c);
    for _ in 0..3 {
        first.train_step(&c).unwrap();
    }
    let path = tmp("resume.ckpt");
    first.save(&path).unwrap();
    let mut resumed = Trainer::new(&cfg, &c);
    resumed.resume(&path).unwrap();
    assert!(
        same(&snapshot(&resumed), &snapshot(&first)),
        "resume did not restore the run"
    );
    for _ in 0..3 {
        resumed.train_step(&c).unwrap();
    }
    let (a, b) = (snapshot(&resumed), snapshot(&straight));
    assert_eq!((a.2, a.3), (6, 6));
    for (x, y) in a.0.buffers().iter().zip(b.0.buffers()) {
        let same = x
            .values
            .iter()
            .zip(y.values)
            .all(|(u, v)| u.to_bits() == v.to_bits());
        assert!(same, "{} differs after resuming", x.name);
    }
    assert!(
        same(&a, &b),
        "optimizer state or generator differ after resuming"
    );
}

#[test]
fn bad_checkpoints_are_named_errors_and_change_nothing() {
    let c = corpus();
    let cfg = small_run();
    let mut t = Trainer::new(&cfg, &c);
    t.train_step(&c).unwrap();
    let good = tmp("good.ckpt");
    t.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let mut victim = Trainer::new(&cfg, &c);
    victim.train_step(&c).unwrap();
    victim.train_step(&c).unwrap();
    let before = snapshot(&victim);
    let check = |victim: &mut Trainer, data: &[u8], name: &str| -> GptError {
        let p = tmp(name);
        std::fs::write(&p, data).unwrap();
        let e = victim.resume(&p).unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
        e
    };
    // Not a checkpoint at all.
    let e = check(&mut victim, b"hello", "garbage.ckpt");
    assert!(
        matches!(e, GptError::BadCheckpoint { part: "header", .. }),
        "{e}"
    );
    // One flipped bit in the weights: their CRC-32.
    let mut flipped = bytes.clone();
    flipped[200] ^= 1;
    let e = check(&mut victim, &flipped, "flipped.ckpt");
    assert!(
        matches!(
            e,
            GptError::BadCheckpoint {
                part: "weights",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("CRC") || e.to_string().contains("checksum"),
        "{e}"
    );
    // One flipped bit in the optimizer state, near the end.
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 3] ^= 0x10;
    let e = check(&mut victim, &flipped, "flipped_opt.ckpt");
    assert!(
        matches!(
            e,
            GptError::BadCheckpoint {
                part: "optimizer",
                ..
            }
        ),
        "{e}"
    );
    // Truncated.
    let e = check(&mut victim, &bytes[..bytes.len() - 10], "short.ckpt");
    assert!(matches!(e, GptError::BadCheckpoint { .. }), "{e}");
    // Another model shape.
    let wide = TrainConfig {
        n_embd: 8,
        ..cfg.clone()
    };
    let other = tmp("wide.ckpt");
    Trainer::new(&wide, &c).save(&other).unwrap();
    let e = victim.resume(&other).unwrap_err();
    assert!(
        matches!(&e, GptError::CheckpointMismatch { field, .. } if field == "n_embd"),
        "{e}"
    );
    // Other data.
    let c2 = Corpus::from_text(&TEXT.repeat(9), "other text", 16).unwrap();
    let other = tmp("data.ckpt");
    Trainer::new(&cfg, &c2).save(&other).unwrap();
    let e = victim.resume(&other).unwrap_err();
    assert!(
        matches!(&e, GptError::CheckpointMismatch { field, .. } if field == "data CRC-32"),
        "{e}"
    );
    // A missing file.
    let e = victim.resume(&tmp("missing.ckpt")).unwrap_err();
    assert!(matches!(e, GptError::Io { .. }), "{e}");
    assert!(
        same(&snapshot(&victim), &before),
        "a failed resume changed the trainer"
    );
}

#[test]
fn sampling_is_deterministic_for_a_seed() {
    let c = corpus();
    let cfg = small_run();
    let mut t = Trainer::new(&cfg, &c);
    for _ in 0..10 {
        t.train_step(&c).unwrap();
    }
    let a = t.sample(&c, "fn ", 40, 0.8, 5, 42);
    let b = t.sample(&c, "fn ", 40, 0.8, 5, 42);
    assert_eq!(a, b);
    assert_eq!(a.chars().count(), 40);
    assert!(a.chars().all(|ch| c.vocab.contains(&ch)));
    let others: Vec<String> = (0..4).map(|s| t.sample(&c, "fn ", 40, 0.8, 5, s)).collect();
    assert!(others.iter().any(|o| *o != a), "every seed gave {a:?}");
    // Top-1 is greedy: the seed does not matter.
    assert_eq!(
        t.sample(&c, "fn ", 20, 1.0, 1, 1),
        t.sample(&c, "fn ", 20, 1.0, 1, 2)
    );
}

#[test]
fn bad_data_files_are_named_errors() {
    let write = |name: &str, bytes: &[u8]| {
        let p = tmp(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let e = Corpus::from_file(&write("empty.txt", b""), 16).unwrap_err();
    assert!(matches!(e, GptError::EmptyData { .. }), "{e}");
    assert!(e.to_string().contains("empty.txt"), "{e}");
    let e = Corpus::from_file(&write("nul.txt", b"abc\0def"), 2).unwrap_err();
    assert!(matches!(e, GptError::BinaryData { offset: 3, .. }), "{e}");
    let e = Corpus::from_file(&write("latin1.txt", b"caf\xe9 au lait, s'il vous plait"), 2)
        .unwrap_err();
    assert!(matches!(e, GptError::BinaryData { offset: 3, .. }), "{e}");
    assert!(e.to_string().contains("UTF-8"), "{e}");
    let e = Corpus::from_file(&write("short.txt", "héllo wörld".as_bytes()), 16).unwrap_err();
    assert!(
        matches!(
            e,
            GptError::TooShort {
                chars: 11,
                needed: 18,
                ..
            }
        ),
        "{e}"
    );
    let e = Corpus::from_file(&tmp("does-not-exist.txt"), 16).unwrap_err();
    assert!(matches!(e, GptError::Io { .. }), "{e}");
    // Exactly block_size + 2 characters is enough (train and validation then overlap).
    let ok = Corpus::from_file(&write("ok.txt", "abcdefghijklmnopqr".as_bytes()), 16).unwrap();
    assert_eq!((ok.vocab_size(), ok.val.len()), (18, 17));
}

/// The inference paths agree with training's: the plain `gpt_loss` (its products on the
/// runtime's matmul, issue 16) equals `gpt_loss_grad`'s value bit for bit, and the
/// cross-entropy of `Gpt::logits` by hand equals it to f32 rounding.
#[test]
fn plain_loss_and_logits_agree_with_the_gradient_value_f32() {
    for tied in [true, false] {
        let cfg = GptConfig {
            vocab: 65,
            block_size: 16,
            n_layer: 2,
            n_head: 4,
            n_embd: 64,
            tied,
        };
        let p = Gpt::<f32>::init(&cfg, 3);
        let (x, y) = batch(&cfg, 3, 11);
        let plain = gpt_loss(&p, &x, &y, cfg.n_head, tied);
        let (value, _) = gpt_loss_grad(&p, &x, &y, cfg.n_head, tied);
        assert_eq!(plain.to_bits(), value.to_bits(), "{plain} vs {value}");
        let logits = p.logits(&x, cfg.n_head);
        let mut total = 0.0f64;
        for ((b, t), &target) in y.indexed_iter() {
            let row = logits.slice(s![b, t, ..]);
            let m = row.fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            total += lse - row[target] as f64;
        }
        let by_hand = total / y.len() as f64;
        assert!(
            (by_hand - plain as f64).abs() < 1e-5 * by_hand.abs(),
            "tied {tied}: {by_hand} vs {plain}"
        );
    }
}
