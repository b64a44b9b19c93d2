//! AdamW step throughput against a bandwidth probe with the same access pattern, in the
//! same run, so the ratio is measured rather than assumed.
//!
//! Both loops read four `f32` streams (w, g, m, v) and write three (w, m, v): 28 bytes
//! per parameter. The probe does the least arithmetic that keeps that pattern
//! (`x ← x + c·g` for x in w, m, v), split over the same threads as the kernel, so it
//! measures what the memory system gives this pattern; the kernel's GB/s over the
//! probe's is the fraction of that limit it reaches. Buffers are allocated and written
//! (first touch: pages faulted in) outside the timed region and reused by every
//! iteration, as an optimizer's state is reused by every step.
//!
//! Run: `cargo bench --bench optim` (about two minutes; 100M parameters take 1.6 GB
//! for the four buffers).

use std::time::{Duration, Instant};

use backprop::kernels::adamw::{self, AdamWConsts};
use backprop::optim::{AdamW, AdamWConfig, Finite, Optimizer};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};

const SIZES: [usize; 2] = [1_000_000, 100_000_000];

struct Bufs {
    w: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Four buffers with realistic, non-zero values (every page touched).
fn bufs(n: usize) -> Bufs {
    let w = (0..n).map(|i| ((i % 1000) as f32 - 500.0) * 1e-3).collect();
    let g = (0..n).map(|i| ((i % 777) as f32 - 388.0) * 1e-4).collect();
    let m = (0..n).map(|i| ((i % 313) as f32 - 156.0) * 1e-5).collect();
    let v = (0..n).map(|i| (i % 101) as f32 * 1e-8).collect();
    Bufs { w, g, m, v }
}

/// The probe: 4 reads, 3 writes per element, the kernel's own thread split
/// ([`adamw::par_zip4`]).
fn probe(b: &mut Bufs) {
    fn chunk(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let c = 1e-30f32;
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *w += c * g;
            *m += c * g;
            *v += c * g;
        }
    }
    let n = b.w.len();
    adamw::par_zip4(
        &mut b.w,
        &b.g,
        &mut b.m,
        &mut b.v,
        adamw::threads_for(n),
        chunk,
    );
}

/// `iters` rounds of: `untimed(b)`, then `timed(b)` under the clock; the summed time.
fn timed_after(
    iters: u64,
    b: &mut Bufs,
    untimed: impl Fn(&mut Bufs),
    timed: impl Fn(&mut Bufs),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        untimed(b);
        let start = Instant::now();
        timed(b);
        total += start.elapsed();
    }
    total
}

/// The ratio measured in pairs: each round times the probe and the kernel back to back
/// (alternating which goes first), so both run under the same load; prints the median
/// and quartiles of the per-round ratio probe time / kernel time (1.0: the kernel moves
/// its 28 bytes per parameter as fast as the probe). Criterion's separate groups run
/// seconds apart, and on a machine shared with other builds the load changes in between.
fn paired_ratio(b: &mut Bufs, k: &AdamWConsts, rounds: usize) {
    let time = |f: &dyn Fn(&mut Bufs), b: &mut Bufs| {
        let start = Instant::now();
        f(b);
        start.elapsed().as_secs_f64()
    };
    let kernel = |b: &mut Bufs| adamw::step(&mut b.w, &b.g, &mut b.m, &mut b.v, k);
    let (mut ratios, mut tp, mut tk) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (p, kt) = if r % 2 == 0 {
            let p = time(&probe, b);
            (p, time(&kernel, b))
        } else {
            let kt = time(&kernel, b);
            (time(&probe, b), kt)
        };
        ratios.push(p / kt);
        tp.push(p);
        tk.push(kt);
    }
    let q = |v: &mut Vec<f64>, f: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * f).round() as usize]
    };
    let n = b.w.len();
    let gbs = |t: f64| 28.0 * n as f64 / t / 1e9;
    let (pm, km) = (q(&mut tp, 0.5), q(&mut tk, 0.5));
    println!(
        "paired n={n}: probe median {:.3} ms ({:.1} GB/s), kernel median {:.3} ms ({:.1} GB/s), \
         ratio median {:.3} (p25 {:.3}, p75 {:.3}) over {rounds} rounds",
        pm * 1e3,
        gbs(pm),
        km * 1e3,
        gbs(km),
        q(&mut ratios, 0.5),
        q(&mut ratios, 0.25),
        q(&mut ratios, 0.75),
    );
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("adamw_step");
    group.sampling_mode(SamplingMode::Flat);
    for n in SIZES {
        let big = n >= 10_000_000;
        group.sample_size(if big { 20 } else { 50 });
        group.measurement_time(Duration::from_secs(if big { 6 } else { 4 }));
        group.warm_up_time(Duration::from_secs(1));
        group.throughput(Throughput::Bytes(28 * n as u64));
        let mut b = bufs(n);
        // Typical mid-training constants (t = 100): the bias corrections are not 1.
        let k = AdamWConsts::new(3e-4, 0.9, 0.95, 1e-8, 0.1, 0.0, 100);
        // Probe and kernel are interleaved: each timed run of one follows an untimed run
        // of the other, so both see the same machine state (other processes share these
        // two cores; a drift in load then moves both figures, not their ratio).
        let kernel = |b: &mut Bufs| adamw::step(&mut b.w, &b.g, &mut b.m, &mut b.v, &k);
        group.bench_function(BenchmarkId::new("probe_4r3w", n), |bch| {
            bch.iter_custom(|iters| timed_after(iters, &mut b, kernel, probe))
        });
        group.bench_function(BenchmarkId::new("fused_kernel", n), |bch| {
            bch.iter_custom(|iters| timed_after(iters, &mut b, probe, kernel))
        });
        paired_ratio(&mut b, &k, if big { 40 } else { 1000 });
        // The whole optimizer call: shape checks and the non-finite scan of g (one more
        // read stream) around the same kernel; throughput still counted as 28 B/param.
        let mut opt = AdamW::<f32>::new(AdamWConfig {
            lr: 3e-4,
            weight_decay: 0.1,
            ..Default::default()
        });
        // One untimed step allocates m and v and faults their pages in.
        opt.step(&mut b.w, &b.g).expect("finite gradients");
        group.bench_function(BenchmarkId::new("optimizer_step", n), |bch| {
            bch.iter(|| opt.step(&mut b.w, &b.g).expect("finite gradients"))
        });
        drop(b);
    }
    group.finish();
}

criterion_group!(benches, bench);

/// `ADAMW_SERVE=1`: skip criterion and serve timing requests for
/// `benches/peers/compare_adamw.py`, one per line on stdin: `<n> <reps> <step|finite|kernel>`.
/// For each it times `reps` calls of `AdamW::step` (the optimizer call, as PyTorch's
/// `opt.step()` is), of `AdamW::step_finite` (the same call handed a proof that the
/// gradients are finite, as clipping makes one) or of the bare fused kernel on `n` parameters, one call at a time,
/// and prints their median in ms. Buffers and optimizer state are made on the first
/// request for an `n` and kept, so every timed call reuses them.
fn main() {
    if std::env::var_os("ADAMW_SERVE").is_some() {
        use std::io::{BufRead, Write};
        let mut ready: std::collections::HashMap<usize, (Bufs, AdamW<f32>)> = Default::default();
        let k = AdamWConsts::new(1e-3, 0.9, 0.999, 1e-8, 0.01, 0.0, 100);
        for line in std::io::stdin().lock().lines() {
            let line = line.expect("a request line");
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [n, reps, what] = parts[..] else {
                panic!("request `{line}` is not `<n> <reps> <step|finite|kernel>`")
            };
            let (n, reps): (usize, usize) = (n.parse().expect("n"), reps.parse().expect("reps"));
            let (b, opt) = ready.entry(n).or_insert_with(|| {
                let mut b = bufs(n);
                let mut opt = AdamW::<f32>::new(AdamWConfig {
                    lr: 1e-3,
                    weight_decay: 0.01,
                    ..Default::default()
                });
                // Allocates m and v and faults their pages in, untimed.
                opt.step(&mut b.w, &b.g).expect("finite gradients");
                (b, opt)
            });
            // For `finite`: the proof a clipping pass would hand over, made untimed.
            let proof = Finite::check(&b.g).expect("finite gradients");
            let mut times: Vec<f64> = (0..reps.max(1))
                .map(|_| {
                    let start = Instant::now();
                    match what {
                        "step" => {
                            opt.step(&mut b.w, &b.g).expect("finite gradients");
                        }
                        "finite" => {
                            opt.step_finite(&mut b.w, proof).expect("shapes match");
                        }
                        _ => adamw::step(&mut b.w, &b.g, &mut b.m, &mut b.v, &k),
                    }
                    start.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!("{:.6}", times[times.len() / 2] * 1e3);
            std::io::stdout().flush().expect("stdout");
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
