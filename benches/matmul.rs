//! Matmul at the MLP's shapes and 512³, f32: ours (`backprop::kernels::matmul`) vs the
//! peers gemm 0.19 and matrixmultiply 0.3, 1 and 2 threads, in one run.
//! Throughput is 2mnk flops ("elem/s" in criterion's output = flop/s).
//!
//! matrixmultiply's thread count is process-global (`MATMUL_NUM_THREADS`, read once), so
//! it appears only in the groups whose thread count equals that variable (default 1):
//!
//! ```text
//! MATMUL_NUM_THREADS=1 CARGO_TARGET_DIR=/work/target-kernels cargo bench -j 2 --bench matmul -- /t1 --warm-up-time 1 --measurement-time 3
//! MATMUL_NUM_THREADS=2 CARGO_TARGET_DIR=/work/target-kernels cargo bench -j 2 --bench matmul -- /t2 --warm-up-time 1 --measurement-time 3
//! ```

use backprop::kernels::matmul::own::matmul_own;
use backprop::kernels::matmul::{Accum, MatmulConfig, Threads, matmul_with};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use std::hint::black_box;
use std::time::Duration;

/// A product to measure: `a` (m×k) and `b` (k×n) as the views the backward pass uses.
struct Case {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    /// `a` is the `.t()` view of a k×m row-major array (∂L/∂W = Xᵀ·∂L/∂Y).
    a_t: bool,
    /// `b` is the `.t()` view of an n×k row-major array (∂L/∂X = ∂L/∂Y·Wᵀ).
    b_t: bool,
}

const CASES: [Case; 5] = [
    Case {
        name: "fwd_128x784x256",
        m: 128,
        k: 784,
        n: 256,
        a_t: false,
        b_t: false,
    },
    Case {
        name: "dW_784x128x256_At",
        m: 784,
        k: 128,
        n: 256,
        a_t: true,
        b_t: false,
    },
    Case {
        name: "dX_128x256x784_Bt",
        m: 128,
        k: 256,
        n: 784,
        a_t: false,
        b_t: true,
    },
    Case {
        name: "head_128x256x10",
        m: 128,
        k: 256,
        n: 10,
        a_t: false,
        b_t: false,
    },
    Case {
        name: "sq_512",
        m: 512,
        k: 512,
        n: 512,
        a_t: false,
        b_t: false,
    },
];

fn filled(r: usize, c: usize, seed: u32) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| {
        ((i as u32 * 31 + j as u32 * 17 + seed) % 13) as f32 / 13.0 - 0.5
    })
}

fn strides(v: &ArrayView2<'_, f32>) -> (isize, isize) {
    (v.strides()[0], v.strides()[1])
}

fn gemm_peer(
    c: &mut ArrayViewMut2<'_, f32>,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    threads: usize,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (crs, ccs) = (c.strides()[0], c.strides()[1]);
    let (ars, acs) = strides(a);
    let (brs, bcs) = strides(b);
    let par = if threads == 1 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    // SAFETY: views of checked shapes, strides passed through unchanged.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            ccs,
            crs,
            false,
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn matrixmultiply_peer(
    c: &mut ArrayViewMut2<'_, f32>,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (crs, ccs) = (c.strides()[0], c.strides()[1]);
    let (ars, acs) = strides(a);
    let (brs, bcs) = strides(b);
    // SAFETY: views of checked shapes, strides passed through unchanged.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            ars,
            acs,
            b.as_ptr(),
            brs,
            bcs,
            0.0,
            c.as_mut_ptr(),
            crs,
            ccs,
        );
    }
}

fn bench(c: &mut Criterion) {
    let mm_threads: usize = std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            // SAFETY: set once at the start of the benchmark, before criterion or any
            // matmul starts a thread, so no other thread reads the environment.
            unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
            1
        });
    for case in &CASES {
        let a_store = if case.a_t {
            filled(case.k, case.m, 1)
        } else {
            filled(case.m, case.k, 1)
        };
        let b_store = if case.b_t {
            filled(case.n, case.k, 2)
        } else {
            filled(case.k, case.n, 2)
        };
        let a = if case.a_t {
            a_store.t()
        } else {
            a_store.view()
        };
        let b = if case.b_t {
            b_store.t()
        } else {
            b_store.view()
        };
        // Destination allocated and touched once, outside the timed loop.
        let mut out = Array2::<f32>::zeros((case.m, case.n));
        for threads in [1usize, 2] {
            let mut g = c.benchmark_group(format!("matmul/f32/{}/t{threads}", case.name));
            g.throughput(Throughput::Elements(2 * (case.m * case.k * case.n) as u64));
            g.bench_function(BenchmarkId::from_parameter("ours"), |bch| {
                let cfg = MatmulConfig {
                    accum: Accum::Replace,
                    threads: Threads::Count(threads),
                };
                bch.iter(|| matmul_with(out.view_mut(), black_box(a), black_box(b), cfg))
            });
            g.bench_function(BenchmarkId::from_parameter("gemm"), |bch| {
                bch.iter(|| gemm_peer(&mut out.view_mut(), &black_box(a), &black_box(b), threads))
            });
            if threads == 1 {
                g.bench_function(BenchmarkId::from_parameter("own_6x16"), |bch| {
                    bch.iter(|| {
                        matmul_own(out.view_mut(), black_box(a), black_box(b), Accum::Replace)
                    })
                });
            }
            if threads == mm_threads {
                g.bench_function(BenchmarkId::from_parameter("matrixmultiply"), |bch| {
                    bch.iter(|| {
                        matrixmultiply_peer(&mut out.view_mut(), &black_box(a), &black_box(b))
                    })
                });
            }
            g.finish();
            // Interleaved minimum of 30 runs each: the least disturbed comparison on a
            // machine shared with other builds.
            let mut runs: [Vec<f64>; 4] = Default::default();
            let cfg = MatmulConfig {
                accum: Accum::Replace,
                threads: Threads::Count(threads),
            };
            for _ in 0..30 {
                for (i, slot) in runs.iter_mut().enumerate() {
                    if (i == 2 && threads != mm_threads) || (i == 3 && threads != 1) {
                        continue;
                    }
                    let t = std::time::Instant::now();
                    match i {
                        0 => matmul_with(out.view_mut(), black_box(a), black_box(b), cfg),
                        1 => gemm_peer(&mut out.view_mut(), &black_box(a), &black_box(b), threads),
                        2 => matrixmultiply_peer(&mut out.view_mut(), &black_box(a), &black_box(b)),
                        _ => matmul_own(out.view_mut(), black_box(a), black_box(b), Accum::Replace),
                    }
                    slot.push(t.elapsed().as_secs_f64());
                }
            }
            let gf = |t: f64| 2.0 * (case.m * case.k * case.n) as f64 / t / 1e9;
            // Minimum (least disturbed) and median (what a step sees on average).
            let stat = |f: fn(&[f64]) -> f64| {
                runs.clone().map(|mut v| {
                    v.sort_by(f64::total_cmp);
                    if v.is_empty() { f64::INFINITY } else { f(&v) }
                })
            };
            let median = stat(|v| v[v.len() / 2]);
            let best = stat(|v| v[0]);
            let mm = if threads == mm_threads {
                format!("{:6.1}", gf(best[2]))
            } else {
                "   -  ".into()
            };
            let own = if threads == 1 {
                format!("{:6.1}", gf(best[3]))
            } else {
                "   -  ".into()
            };
            eprintln!(
                "min-of-30 GFLOP/s {:<20} t{threads}: ours {:6.1}  gemm {:6.1}  matrixmultiply {mm}  own_6x16 {own}  ours/best-peer {:.3}",
                case.name,
                gf(best[0]),
                gf(best[1]),
                best[1].min(if threads == mm_threads {
                    best[2]
                } else {
                    f64::INFINITY
                }) / best[0]
            );
            eprintln!(
                "median-of-30 GFLOP/s {:<17} t{threads}: ours {:6.1}  gemm {:6.1}  matrixmultiply {}",
                case.name,
                gf(median[0]),
                gf(median[1]),
                if threads == mm_threads {
                    format!("{:6.1}", gf(median[2]))
                } else {
                    "   -  ".into()
                },
            );
        }
        black_box(&out);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
