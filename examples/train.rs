//! The main job: train an MLP classifier on real data with a `#[grad]` loss.
//!
//! ```text
//! cargo run --release --example train                      # UCI digits, shipped in a dependency
//! cargo run --release --example train -- --data /usr/share/datasets/fashion-mnist
//! cargo build --release --features mpi --example train       # data-parallel, over MPI:
//! mpirun -np 2 target/release/examples/train --dist --batch 32
//! ```
//!
//! Options: `--data DIR` (IDX files: train-images-idx3-ubyte[.gz] and friends),
//! `--epochs N`, `--batch N` (per rank with `--dist`), `--lr X`, `--hidden H1,H2`,
//! `--seed N`, `--out DIR` (default `out/train`), `--quiet` (no progress bar), `--dist`
//! (one rank of an MPI world: run it under `mpirun`; needs the `mpi` feature; rank 0
//! prints and plots).

use backprop::data::{Dataset, load_idx};
use backprop::memory::MemoryReport;
use backprop_tests::mlp::{Alone, Replicas, TrainConfig, digits, standardize, train_with};
use backprop_tests::plot::{Series, lines};
use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    dist: bool,
    data: Option<PathBuf>,
    out: PathBuf,
    cfg: TrainConfig,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        dist: false,
        data: None,
        out: PathBuf::from("out/train"),
        cfg: TrainConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    let (mut epochs_set, mut batch_set, mut lr_set) = (false, false, false);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let bad = |name: &str, v: &str| format!("{name}: cannot parse `{v}`");
        match flag.as_str() {
            "--data" => args.data = Some(PathBuf::from(value("--data")?)),
            "--out" => args.out = PathBuf::from(value("--out")?),
            "--epochs" => {
                let v = value("--epochs")?;
                args.cfg.epochs = v.parse().map_err(|_| bad("--epochs", &v))?;
                epochs_set = true;
            }
            "--batch" => {
                let v = value("--batch")?;
                args.cfg.batch = v.parse().map_err(|_| bad("--batch", &v))?;
                batch_set = true;
            }
            "--lr" => {
                let v = value("--lr")?;
                args.cfg.lr = v.parse().map_err(|_| bad("--lr", &v))?;
                lr_set = true;
            }
            "--seed" => {
                let v = value("--seed")?;
                args.cfg.seed = v.parse().map_err(|_| bad("--seed", &v))?;
            }
            "--hidden" => {
                let v = value("--hidden")?;
                let parts: Vec<usize> = v
                    .split(',')
                    .map(|p| p.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("--hidden", &v))?;
                let [h1, h2] = parts[..] else {
                    return Err(format!(
                        "--hidden takes two widths, like 256,128; got `{v}`"
                    ));
                };
                args.cfg.hidden = [h1, h2];
            }
            "--quiet" => args.cfg.progress = false,
            "--dist" => args.dist = true,
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("train.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//!").trim_start())
                        .filter(|l| !l.starts_with("```"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if args.data.is_some() {
        // The IDX datasets are 28×28: wider layers, batches of 128, fewer passes.
        if args.cfg.hidden == TrainConfig::default().hidden {
            args.cfg.hidden = [256, 128];
        }
        if !epochs_set {
            args.cfg.epochs = 15;
        }
        // Defaults for IDX data; what the command line gives is kept.
        if !batch_set {
            args.cfg.batch = args.cfg.batch.max(128);
        }
        if !lr_set {
            args.cfg.lr = args.cfg.lr.min(1e-3);
        }
    }
    Ok(args)
}

fn load(args: &Args) -> Result<(String, Dataset, Dataset), String> {
    match &args.data {
        None => {
            let (tr, va) = digits(0.2, args.cfg.seed);
            Ok((
                "UCI digits (8×8, shipped in smartcore), 80/20 split".into(),
                tr,
                va,
            ))
        }
        Some(dir) => {
            let tr = load_idx(dir, "train").map_err(|e| e.to_string())?;
            let te = load_idx(dir, "t10k").map_err(|e| e.to_string())?;
            Ok((
                format!("{} (IDX, train / test split)", dir.display()),
                tr,
                te,
            ))
        }
    }
}

/// The replicas `--dist` asks for: this process alone, or its rank of the MPI world.
fn replicas(dist: bool) -> Result<Box<dyn Replicas>, String> {
    if !dist {
        return Ok(Box::new(Alone));
    }
    #[cfg(feature = "mpi")]
    {
        backprop::dist::Dist::init()
            .map(|d| Box::new(d) as Box<dyn Replicas>)
            .map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "mpi"))]
    Err(
        "--dist needs the `mpi` feature: cargo build --release --features mpi --example train, \
         then mpirun -np 2 target/release/examples/train --dist (docs/DISTRIBUTED.md)"
            .into(),
    )
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut replicas = match replicas(args.dist) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Every rank trains; rank 0 alone prints, plots and writes files.
    let root = replicas.rank() == 0;
    let (name, mut tr, mut va) = match load(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mean, std) = standardize(&mut tr, &mut [&mut va]);
    let c = &args.cfg;
    let n = replicas.size();
    if root {
        println!(
            "data:  {name}: {} training, {} validation images of {}×{}, {} classes; pixels standardised (training mean {mean:.3}, std {std:.3})",
            tr.labels.len(),
            va.labels.len(),
            tr.shape.0,
            tr.shape.1,
            tr.classes
        );
        println!(
            "model: {}-{}-{}-{} MLP (ReLU), He init (Glorot output layer); AdamW (lr {:.0e}, λ {}), warmup {:.0}% + cosine, clip {:.1}; batch {}, {} epochs, seed {}",
            tr.images.ncols(),
            c.hidden[0],
            c.hidden[1],
            tr.classes,
            c.lr,
            c.weight_decay,
            c.warmup_fraction * 100.0,
            c.clip,
            if n > 1 {
                format!("{n} ranks × {} = {}", c.batch, n * c.batch)
            } else {
                c.batch.to_string()
            },
            c.epochs,
            c.seed
        );
    }
    let report = match train_with(&tr, &va, c, replicas.as_mut()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rank {}: training failed: {e}", replicas.rank());
            return ExitCode::FAILURE;
        }
    };
    if !root {
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("error: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let steps: Vec<f64> = (0..report.losses.len()).map(|s| s as f64).collect();
    let loss_png = args.out.join("loss.png");
    let norm_png = args.out.join("grad_norm.png");
    let plots = [
        lines(
            &loss_png,
            "training loss",
            "step",
            "cross-entropy (log scale)",
            &[Series {
                label: "loss",
                points: steps
                    .iter()
                    .copied()
                    .zip(report.losses.iter().copied())
                    .collect(),
            }],
            true,
        ),
        lines(
            &norm_png,
            "gradient norm before clipping",
            "step",
            "global L2 norm (log scale)",
            &[Series {
                label: "|g|",
                points: steps
                    .iter()
                    .copied()
                    .zip(report.grad_norms.iter().copied())
                    .collect(),
            }],
            true,
        ),
    ];
    for p in plots.iter().filter_map(|p| p.as_ref().err()) {
        eprintln!("plot: {p}");
    }
    println!(
        "diagnostics: {}",
        if report.findings.is_empty() {
            "none fired".to_string()
        } else {
            format!("{} finding(s)", report.findings.len())
        }
    );
    for f in &report.findings {
        println!("  - {f}");
    }
    if let Some(model) = &report.model {
        let mem = MemoryReport::of(model, &backprop::optim::AdamW::new(Default::default()));
        println!(
            "memory: weights {} B, gradients {} B, AdamW state {} B, one step's tape {} B (batch {})",
            mem.weights, mem.grads, report.optimizer_state_bytes, report.tape_bytes, c.batch
        );
    }
    println!("plots: {} and {}", loss_png.display(), norm_png.display());
    let (t, v) = report.final_accuracy();
    println!(
        "final: train accuracy {:.2}%, validation accuracy {:.2}%, {} steps in {:.1} s",
        t * 100.0,
        v * 100.0,
        report.steps,
        report.seconds
    );
    let per_step = |s: f64| s / report.steps.max(1) as f64 * 1e3;
    println!(
        "steps: {:.3} ms per step on {} (gradient, averaging, clipping, AdamW; no evaluation), of which averaging over the ranks {:.3} ms",
        per_step(report.step_seconds),
        if n > 1 {
            format!("{n} ranks, rank 0's clock")
        } else {
            "1 process".to_string()
        },
        per_step(report.mean_seconds)
    );
    ExitCode::SUCCESS
}
