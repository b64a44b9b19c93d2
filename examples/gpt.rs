//! A character-level GPT written as plain Rust and trained with `#[grad]` (issue #17).
//!
//! ```text
//! cargo run --release --example gpt                      # learns to write Rust (ndarray's sources)
//! cargo run --release --example gpt -- --steps 200       # a short run
//! cargo run --release --example gpt -- --data input.txt  # any UTF-8 text
//! cargo run --release --example gpt -- --resume out/gpt/ckpt.bin --steps 3000
//! ```
//!
//! Defaults: nanoGPT's CPU "baby" run (4 layers, 4 heads, 128 wide, context 64, batch
//! 12, 2000 steps, AdamW lr 1e-3 → 1e-4, β₂ 0.99, weight decay 0.1 on matrices only,
//! warmup steps/20, clip 1.0, GPT-2 init). With no `--data` the corpus is the Rust source
//! of the `ndarray` crate the build already has (found by `cargo metadata`).
//!
//! Options: `--steps N`, `--data FILE`, `--seed S`, `--resume FILE` (a checkpoint of the
//! same model and data; resumed with the same options the run continues bit for bit), `--out DIR` (default `out/gpt`:
//! ckpt.bin, loss.png, losses.csv), `--batch N`, `--block N`, `--layers N`, `--heads N`,
//! `--embd N`, `--untied` (separate output head), `--lr X`, `--min-lr X`, `--warmup N`,
//! `--weight-decay X`, `--eval-interval N`, `--eval-iters N`, `--sample N` (characters
//! to generate at the end, default 400), `--prompt S`, `--temperature X` (0.8),
//! `--top-k K` (20), `--stop-at N` (stop after step N, checkpointing there, as if
//! interrupted: the schedule still ends at `--steps`), `--dump-init DIR` (initial weights and the first `--steps` batches
//! for `benches/peers/torch_gpt.py`), `--quiet` (no progress bar).

// Every step allocates the same activations, tapes and gradients again. glibc's malloc
// hands large freed blocks back to the kernel, so each step faulted its pages in afresh
// (a quarter of a step's time on the 2-core VM); mimalloc keeps them for the next step.
// Measured in docs/PERFORMANCE.md ("A character-level GPT", 2026-12-07).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use backprop::memory::MemoryReport;
use backprop::optim::Optimizer;
use backprop::params::Params;
use backprop_tests::gpt::{
    Corpus, GptError, TrainConfig, Trainer, ndarray_sources, peak_rss_bytes,
};
use backprop_tests::plot::{Series, lines};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    cfg: TrainConfig,
    data: Option<PathBuf>,
    resume: Option<PathBuf>,
    out: PathBuf,
    dump_init: Option<PathBuf>,
    sample: usize,
    prompt: String,
    temperature: f64,
    top_k: usize,
    quiet: bool,
    stop_at: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cfg: TrainConfig::default(),
        data: None,
        resume: None,
        out: PathBuf::from("out/gpt"),
        dump_init: None,
        sample: 400,
        prompt: "pub fn ".into(),
        temperature: 0.8,
        top_k: 20,
        quiet: false,
        stop_at: None,
    };
    let mut warmup = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        macro_rules! num {
            ($field:expr) => {{
                let v = value()?;
                $field = v
                    .parse()
                    .map_err(|_| format!("{flag}: cannot parse `{v}`"))?;
            }};
        }
        match flag.as_str() {
            "--steps" => num!(a.cfg.steps),
            "--seed" => num!(a.cfg.seed),
            "--batch" => num!(a.cfg.batch),
            "--block" => num!(a.cfg.block_size),
            "--layers" => num!(a.cfg.n_layer),
            "--heads" => num!(a.cfg.n_head),
            "--embd" => num!(a.cfg.n_embd),
            "--lr" => num!(a.cfg.lr),
            "--min-lr" => num!(a.cfg.min_lr),
            "--weight-decay" => num!(a.cfg.weight_decay),
            "--eval-interval" => num!(a.cfg.eval_interval),
            "--eval-iters" => num!(a.cfg.eval_iters),
            "--sample" => num!(a.sample),
            "--temperature" => num!(a.temperature),
            "--top-k" => num!(a.top_k),
            "--warmup" => {
                let v = value()?;
                warmup = Some(
                    v.parse()
                        .map_err(|_| format!("--warmup: cannot parse `{v}`"))?,
                );
            }
            "--stop-at" => {
                let v = value()?;
                a.stop_at = Some(
                    v.parse()
                        .map_err(|_| format!("--stop-at: cannot parse `{v}`"))?,
                );
            }
            "--untied" => a.cfg.tied = false,
            "--quiet" => a.quiet = true,
            "--prompt" => a.prompt = value()?,
            "--data" => a.data = Some(PathBuf::from(value()?)),
            "--resume" => a.resume = Some(PathBuf::from(value()?)),
            "--out" => a.out = PathBuf::from(value()?),
            "--dump-init" => a.dump_init = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                let doc: Vec<&str> = include_str!("gpt.rs")
                    .lines()
                    .take_while(|l| l.starts_with("//!"))
                    .map(|l| l.trim_start_matches("//!").trim_start())
                    .filter(|l| !l.starts_with("```"))
                    .collect();
                println!("{}", doc.join("\n"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if a.cfg.n_head == 0 || !a.cfg.n_embd.is_multiple_of(a.cfg.n_head) {
        return Err(format!(
            "--embd {} must be a multiple of --heads {}",
            a.cfg.n_embd, a.cfg.n_head
        ));
    }
    if a.cfg.batch == 0
        || a.cfg.block_size == 0
        || a.cfg.eval_interval == 0
        || a.cfg.eval_iters == 0
        || a.cfg.n_layer == 0
        || a.cfg.n_embd == 0
    {
        return Err(
            "--batch, --block, --eval-interval, --eval-iters, --layers and --embd must be positive"
                .into(),
        );
    }
    for (flag, v) in [
        ("--lr", a.cfg.lr),
        ("--min-lr", a.cfg.min_lr),
        ("--weight-decay", a.cfg.weight_decay),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("{flag} must be a finite number ≥ 0, got {v}"));
        }
    }
    if !(a.temperature.is_finite() && a.temperature > 0.0) {
        return Err(format!(
            "--temperature must be a finite number > 0, got {}",
            a.temperature
        ));
    }
    if a.top_k == 0 {
        return Err("--top-k must be at least 1".into());
    }
    a.cfg.warmup = warmup.unwrap_or(a.cfg.steps / 20);
    Ok(a)
}

/// Writes the trainer's weights and the next `steps` training batches (without
/// advancing its generator) for the PyTorch peer: `init.f32` (little-endian, buffers in
/// walk order), `batches.u32` (per step the inputs then the targets, `[B, T]` each) and
/// `index.json`.
fn dump_init(tr: &Trainer, corpus: &Corpus, dir: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut raw = Vec::new();
    let mut params = Vec::new();
    let mut offset = 0usize;
    for b in tr.model.buffers() {
        for v in b.values {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        params.push(serde_json::json!({"name": b.name, "shape": b.shape, "offset": offset}));
        offset += b.values.len();
    }
    std::fs::write(dir.join("init.f32"), raw).map_err(err)?;
    let mut probe = tr.clone();
    let mut batches = Vec::new();
    for _ in tr.step..tr.cfg.steps {
        let (x, y) = probe.next_batch(corpus);
        for v in x.iter().chain(y.iter()) {
            batches.extend_from_slice(&(*v as u32).to_le_bytes());
        }
    }
    std::fs::write(dir.join("batches.u32"), batches).map_err(err)?;
    let c = &tr.cfg;
    let index = serde_json::json!({
        "vocab": tr.model_cfg.vocab, "block_size": c.block_size, "n_layer": c.n_layer,
        "n_head": c.n_head, "n_embd": c.n_embd, "tied": c.tied, "batch": c.batch,
        "first_step": tr.step, "steps": c.steps, "lr": c.lr, "min_lr": c.min_lr,
        "warmup": c.warmup, "weight_decay": c.weight_decay, "beta1": c.beta1,
        "beta2": c.beta2, "eps": 1e-8, "clip": c.clip, "ln_eps": backprop_tests::gpt::LN_EPS,
        "params": params,
        "no_decay": "1-D buffers, wte, wpe",
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_string_pretty(&index).expect("json"),
    )
    .map_err(err)
}

fn mb(b: impl Into<u128>) -> String {
    format!("{:.2} MB", b.into() as f64 / 1e6)
}

fn run(a: &Args) -> Result<(), String> {
    let c = &a.cfg;
    let t_data = Instant::now();
    let corpus = match &a.data {
        Some(p) => Corpus::from_file(p, c.block_size),
        None => ndarray_sources(c.block_size),
    }
    .map_err(|e| e.to_string())?;
    println!(
        "data:  {}: {} characters ({} train, {} validation), vocabulary of {} ({:.1} s)",
        corpus.source,
        corpus.train.len() + corpus.val.len(),
        corpus.train.len(),
        corpus.val.len(),
        corpus.vocab_size(),
        t_data.elapsed().as_secs_f64()
    );
    if a.sample > 0
        && let Some(ch) = a
            .prompt
            .chars()
            .find(|ch| corpus.vocab.binary_search(ch).is_err())
    {
        return Err(format!(
            "--prompt: {ch:?} is not in the text's vocabulary of {} characters",
            corpus.vocab_size()
        ));
    }
    let mut tr = Trainer::new(c, &corpus);
    if let Some(r) = &a.resume {
        tr.resume(r).map_err(|e| e.to_string())?;
        println!("resumed from {} at step {}", r.display(), tr.step);
    }
    let n_params = tr.model.num_scalars();
    println!(
        "model: GPT, {} layers, {} heads, {} wide, context {}, {} head; {:.3}M parameters; GPT-2 init, seed {}",
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        if c.tied { "tied" } else { "untied" },
        n_params as f64 / 1e6,
        c.seed
    );
    println!(
        "train: AdamW (lr {:.0e} → {:.0e}, β {}/{}, weight decay {} on matrices), warmup {} + cosine to step {}, clip {:.1}; batch {} × {} tokens",
        c.lr,
        c.min_lr,
        c.beta1,
        c.beta2,
        c.weight_decay,
        c.warmup,
        c.steps,
        c.clip,
        c.batch,
        c.block_size
    );
    if let Some(dir) = &a.dump_init {
        dump_init(&tr, &corpus, dir)?;
        println!(
            "dumped the initial weights and {} batches to {}",
            c.steps.saturating_sub(tr.step),
            dir.display()
        );
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let ckpt = a.out.join("ckpt.bin");
    // One step's tape, on a batch drawn from a copy of the generator.
    let (tx, ty) = tr.clone().next_batch(&corpus);
    let tape_bytes = tr.tape_bytes(&tx, &ty);

    let bar = ProgressBar::new(c.steps);
    bar.set_position(tr.step);
    if a.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}<{eta_precise}]",
        )
        .expect("valid template"),
    );
    let say = |line: String| {
        if a.quiet || bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    let mut losses: Vec<(f64, f64)> = Vec::new();
    let mut vals: Vec<(f64, f64)> = Vec::new();
    let mut csv = String::from("step,loss,grad_norm,lr,ms,val_loss\n");
    // A resumed run keeps the rows of the steps before it, so the file covers the run.
    if a.resume.is_some()
        && let Ok(old) = std::fs::read_to_string(a.out.join("losses.csv"))
    {
        for line in old.lines().skip(1) {
            let step = line.split(',').next().and_then(|v| v.parse::<u64>().ok());
            if step.is_some_and(|s| s < tr.step) {
                csv.push_str(line);
                csv.push('\n');
            }
        }
    }
    let mut step_ms: Vec<f64> = Vec::new();
    let tokens_per_step = (c.batch * c.block_size) as f64;
    let mut step_seconds = 0.0;
    let first_step = tr.step;
    let t_train = Instant::now();
    if tr.step == 0 {
        let v = tr.val_loss();
        vals.push((0.0, v));
        say(format!(
            "step {:>5}: validation loss {v:.4} (ln V = {:.4})",
            0,
            (corpus.vocab_size() as f64).ln()
        ));
    }
    let stop = a.stop_at.map_or(c.steps, |s| s.min(c.steps));
    while tr.step < stop {
        let t0 = Instant::now();
        let s = tr
            .train_step(&corpus)
            .map_err(|e: GptError| e.to_string())?;
        let dt = t0.elapsed().as_secs_f64();
        step_seconds += dt;
        step_ms.push(dt * 1e3);
        let step = tr.step;
        losses.push(((step - 1) as f64, s.loss));
        let done = (step - first_step) as f64;
        bar.set_message(format!(
            "loss {:.4}  {:.0} tok/s  lr {:.2e}  |g| {:.3}",
            s.loss,
            done * tokens_per_step / step_seconds.max(1e-9),
            s.lr,
            s.grad_norm
        ));
        bar.inc(1);
        let mut val = String::new();
        if step.is_multiple_of(c.eval_interval) || step == stop {
            let v = tr.val_loss();
            vals.push((step as f64, v));
            val = format!("{v}");
            tr.save(&ckpt).map_err(|e| e.to_string())?;
            say(format!(
                "step {step:>5}: train loss {:.4}, validation loss {v:.4}, {:.1} ms/step, {:.0} tokens/s; checkpoint {}",
                s.loss,
                step_seconds / done * 1e3,
                done * tokens_per_step / step_seconds,
                ckpt.display()
            ));
        }
        csv.push_str(&format!(
            "{},{},{},{},{:.3},{val}\n",
            step - 1,
            s.loss,
            s.grad_norm,
            s.lr,
            dt * 1e3
        ));
    }
    bar.finish_and_clear();
    let wall = t_train.elapsed().as_secs_f64();
    let steps_done = tr.step - first_step;

    std::fs::write(a.out.join("losses.csv"), csv).map_err(|e| e.to_string())?;
    let png = a.out.join("loss.png");
    if !losses.is_empty()
        && let Err(e) = lines(
            &png,
            "character-level GPT",
            "step",
            "cross-entropy (nats/char, log scale)",
            &[
                Series {
                    label: "train (batch)",
                    points: losses.clone(),
                },
                Series {
                    label: "validation",
                    points: vals.clone(),
                },
            ],
            true,
        )
    {
        eprintln!("plot: {e}");
    }

    if steps_done > 0 {
        step_ms.sort_by(f64::total_cmp);
        println!(
            "done:  {} steps in {:.1} s ({:.1} s in steps: mean {:.1} ms/step, median {:.1}, {:.0} tokens/s); final validation loss {:.4}",
            steps_done,
            wall,
            step_seconds,
            step_seconds / steps_done as f64 * 1e3,
            step_ms[step_ms.len() / 2],
            steps_done as f64 * tokens_per_step / step_seconds,
            vals.last().map_or(f64::NAN, |v| v.1)
        );
    }
    println!(
        "files: {}, {}, {}",
        png.display(),
        a.out.join("losses.csv").display(),
        ckpt.display()
    );
    if a.sample > 0 {
        let t0 = Instant::now();
        let text = tr.sample(&corpus, &a.prompt, a.sample, a.temperature, a.top_k, c.seed);
        println!(
            "sample (temperature {}, top-k {}, seed {}, {:.1} s):\n----\n{}{}\n----",
            a.temperature,
            a.top_k,
            c.seed,
            t0.elapsed().as_secs_f64(),
            a.prompt,
            text
        );
    }
    // Where the memory goes.
    let mem = MemoryReport::of(&tr.model, &tr.opt).with_activations(tape_bytes as u128);
    let m = &tr.model_cfg;
    // Inference at batch 1, full context: the weights, plus the largest activations alive
    // at once (the residual stream, q/k/v, one head's T×T scores and the MLP's 4C), the
    // logits.
    let t = m.block_size as u128;
    let cw = m.n_embd as u128;
    let act = 4 * (t * cw * (1 + 3 + 1 + 4) + t * t + t * m.vocab as u128);
    println!("memory (f32):");
    println!("  | what | bytes |");
    println!("  |---|---:|");
    println!(
        "  | weights ({} parameters) | {} |",
        n_params,
        mb(mem.weights)
    );
    println!("  | gradients | {} |", mb(mem.grads));
    println!(
        "  | AdamW state (m, v) | {} |",
        mb(tr.opt.state_bytes() as u128)
    );
    println!(
        "  | one step's tape (batch {} × {}) | {} |",
        c.batch,
        c.block_size,
        mb(tape_bytes as u128)
    );
    println!(
        "  | training total (weights + gradients + AdamW + tape) | {} |",
        mb(mem.training_bytes())
    );
    match peak_rss_bytes() {
        Some(r) => println!("  | peak RSS of this process (VmHWM) | {} |", mb(r)),
        None => println!("  | peak RSS of this process | unavailable |"),
    }
    println!(
        "  | inference alone: weights + one forward's activations (batch 1 × {}) | {} |",
        m.block_size,
        mb(mem.weights + act)
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
