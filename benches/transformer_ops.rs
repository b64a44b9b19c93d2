//! Forward + backward of the fused transformer ops through their `backprop::ops`
//! companions (`op::forward`, then `Pullback::backward(tape, d_out)`: the path `#[grad]`
//! code takes), f32, at nanoGPT's CPU "baby" shape (`small`: B=12, T=64, d=128, H=4) and
//! at `large` (B=8, T=256, d=384, H=6). The peer is `benches/peers/torch_transformer_ops.py`
//! (PyTorch eager); `benches/peers/compare_transformer_ops.py` drives both in paired rounds.
//!
//! Ops: `layer_norm` over `[B·T, d]` (γ, β), causal `attention` over `[B, H, T, d/H]`,
//! `embedding` (`[V, d]` table, V = 65 at `small` and 256 at `large`, gathered by `[B, T]`
//! ids), `softmax_causal` over `[B, H, T, T]`.
//!
//! - Alone (`cargo bench --bench transformer_ops`) it prints the median of 51 timed calls
//!   per op and shape, and the tape bytes.
//! - With `TRANSFORMER_OPS_SERVE=1` it answers requests on stdin, one per line:
//!   `time <op> <small|large> <reps>` → the median in µs of `reps` calls;
//!   `bytes <op> <small|large>` → the tape's bytes (`Pullback::bytes`);
//!   `attn_bytes <T>` → attention's tape bytes at B=1, H=4, head size 32.
//!
//! Like `examples/gpt.rs`, it runs on mimalloc (glibc's malloc gives large freed blocks
//! back to the kernel after each call, and the next call faults their pages in again)
//! and on rayon's pool ([`backprop::run_on_pool`]), as a training step does.
//!
//! Inputs are made once per (op, shape) and kept. Each timed call runs the forward pass
//! and the backward pass and drops nothing inside the timer (results are dropped after
//! it stops); the cotangent, which `backward` takes by value, is cloned before the
//! timer starts, as PyTorch's backward reads a cotangent that already exists.

use backprop::Pullback;
use backprop::ops;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ndarray::{Array1, Array2, Array4};
use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufRead, Write};
use std::time::Instant;

pub const OPS: [&str; 4] = ["layer_norm", "attention", "embedding", "softmax_causal"];

/// `(B, T, d, H, V)`.
fn shape(name: &str) -> (usize, usize, usize, usize, usize) {
    match name {
        "small" => (12, 64, 128, 4, 65),
        "large" => (8, 256, 384, 6, 256),
        _ => panic!("shape `{name}` is not small or large"),
    }
}

fn filled<D: ndarray::Dimension, Sh: ndarray::ShapeBuilder<Dim = D>>(
    sh: Sh,
    seed: u32,
) -> ndarray::Array<f32, D> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    ndarray::Array::from_shape_simple_fn(sh, || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s as f32 / u32::MAX as f32) * 2.0 - 1.0
    })
}

/// One op's inputs at one shape, and a timed forward + backward over them.
enum Case {
    LayerNorm {
        x: Array2<f32>,
        g: Array1<f32>,
        b: Array1<f32>,
        dy: Array2<f32>,
    },
    Attention {
        q: Array4<f32>,
        k: Array4<f32>,
        v: Array4<f32>,
        d_o: Array4<f32>,
    },
    Embedding {
        table: Array2<f32>,
        ids: Array2<usize>,
        dy: ndarray::Array3<f32>,
    },
    SoftmaxCausal {
        s: Array4<f32>,
        ds: Array4<f32>,
    },
}

impl Case {
    fn new(op: &str, shape_name: &str) -> Case {
        let (b, t, d, h, v) = shape(shape_name);
        let hd = d / h;
        match op {
            "layer_norm" => Case::LayerNorm {
                x: filled((b * t, d), 1),
                g: filled(d, 11).mapv(|v| 1.0 + 0.1 * v),
                b: filled(d, 12).mapv(|v| 0.1 * v),
                dy: filled((b * t, d), 2),
            },
            "attention" => Case::Attention {
                q: filled((b, h, t, hd), 6),
                k: filled((b, h, t, hd), 7),
                v: filled((b, h, t, hd), 8),
                d_o: filled((b, h, t, hd), 9),
            },
            "embedding" => Case::Embedding {
                table: filled((v, d), 3),
                ids: Array2::from_shape_fn((b, t), |(i, j)| (i * 31 + j * 7) % v),
                dy: filled((b, t, d), 2),
            },
            "softmax_causal" => Case::SoftmaxCausal {
                s: filled((b, h, t, t), 4),
                ds: filled((b, h, t, t), 5),
            },
            _ => panic!("op `{op}` is not one of {OPS:?}"),
        }
    }

    /// Seconds of one forward + backward.
    fn time_once(&self) -> f64 {
        match self {
            Case::LayerNorm { x, g, b, dy } => {
                let d = dy.clone();
                let start = Instant::now();
                let (y, tape) = ops::layer_norm::forward(x, g, b, 1e-5);
                let grads = tape.backward(d);
                let el = start.elapsed().as_secs_f64();
                black_box((y, grads));
                el
            }
            Case::Attention { q, k, v, d_o } => {
                let d = d_o.clone();
                let start = Instant::now();
                let (y, tape) = ops::attention::forward(q, k, v, true);
                let grads = tape.backward(d);
                let el = start.elapsed().as_secs_f64();
                black_box((y, grads));
                el
            }
            Case::Embedding { table, ids, dy } => {
                let d = dy.clone();
                let start = Instant::now();
                let (y, tape) = ops::embedding::forward(table, ids);
                let grads = tape.backward(d);
                let el = start.elapsed().as_secs_f64();
                black_box((y, grads));
                el
            }
            Case::SoftmaxCausal { s, ds } => {
                let d = ds.clone();
                let start = Instant::now();
                let (y, tape) = ops::softmax_causal::forward(s);
                let grads = tape.backward(d);
                let el = start.elapsed().as_secs_f64();
                black_box((y, grads));
                el
            }
        }
    }

    /// The forward pass's tape bytes.
    fn tape_bytes(&self) -> usize {
        match self {
            Case::LayerNorm { x, g, b, .. } => ops::layer_norm::forward(x, g, b, 1e-5).1.bytes(),
            Case::Attention { q, k, v, .. } => ops::attention::forward(q, k, v, true).1.bytes(),
            Case::Embedding { table, ids, .. } => ops::embedding::forward(table, ids).1.bytes(),
            Case::SoftmaxCausal { s, .. } => ops::softmax_causal::forward(s).1.bytes(),
        }
    }

    /// Median µs of `reps` calls.
    fn median_us(&self, reps: usize) -> f64 {
        let mut t: Vec<f64> = (0..reps.max(1)).map(|_| self.time_once() * 1e6).collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }
}

/// Attention's tape bytes at B=1, H=4, head size 32 (as `transformer_ops_timing`).
fn attention_tape_bytes(t: usize) -> usize {
    let x = Array4::<f32>::zeros((1, 4, t, 32));
    ops::attention::forward(&x, &x, &x, true).1.bytes()
}

fn serve() {
    let mut cases: HashMap<(String, String), Case> = HashMap::new();
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("a request line");
        let parts: Vec<&str> = line.split_whitespace().collect();
        let reply = match parts[..] {
            ["time", op, sh, reps] => {
                let c = cases
                    .entry((op.into(), sh.into()))
                    .or_insert_with(|| Case::new(op, sh));
                format!("{:.3}", c.median_us(reps.parse().expect("reps")))
            }
            ["bytes", op, sh] => {
                let c = cases
                    .entry((op.into(), sh.into()))
                    .or_insert_with(|| Case::new(op, sh));
                c.tape_bytes().to_string()
            }
            ["attn_bytes", t] => attention_tape_bytes(t.parse().expect("T")).to_string(),
            _ => panic!(
                "request `{line}` is not `time <op> <shape> <reps>`, `bytes <op> <shape>` or `attn_bytes <T>`"
            ),
        };
        writeln!(out, "{reply}").unwrap();
        out.flush().unwrap();
    }
}

fn main() {
    if std::env::var_os("TRANSFORMER_OPS_SERVE").is_some() {
        return backprop::run_on_pool(serve);
    }
    backprop::run_on_pool(report);
}

/// The stand-alone report: medians of 51 per op and shape, and the tape bytes.
fn report() {
    for sh in ["small", "large"] {
        let (b, t, d, h, v) = shape(sh);
        println!("{sh}: B={b} T={t} d={d} H={h} V={v}, f32, forward+backward, median of 51");
        for op in OPS {
            let c = Case::new(op, sh);
            for _ in 0..3 {
                c.time_once();
            }
            println!(
                "  {op:15} {:10.1} µs   tape {} bytes",
                c.median_us(51),
                c.tape_bytes()
            );
        }
    }
    for t in [256, 1024] {
        println!(
            "attention tape, B=1 H=4 T={t} d=32: {} bytes",
            attention_tape_bytes(t)
        );
    }
}
