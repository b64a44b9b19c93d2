//! A multilayer-perceptron classifier trained with `#[grad]`: the README's main job.
//!
//! The loss is an ordinary function over ndarray: two ReLU hidden layers and softmax
//! cross-entropy. Its gradient comes from `#[grad]`; the training loop is the lesson's
//! recipe: He initialisation, AdamW (decoupled weight decay, none on biases), linear
//! warmup then cosine decay, clipping at global norm 1.0.

use backprop::clip::{NonFiniteNorm, clip_grad_norm};
use backprop::data::Dataset;
use backprop::diagnostics::{self, Finding, Monitor};
use backprop::dist::ShardedSampler;
use backprop::init::{FanMode, Fans, Init, init_params};
use backprop::ops::{XentOptions, relu, softmax_cross_entropy};
use backprop::optim::{AdamW, AdamWConfig, Optimizer, ParamGroup, Select};
use backprop::params::{BufferMut, BufferRef, Named, Params};
use backprop::schedule::{Schedule, WarmupCosine};
use backprop::{Pullback, grad};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::time::Instant;

/// The loss: mean softmax cross-entropy of a 2-hidden-layer ReLU network.
///
/// Shapes: `x` is B×D, `w1` D×H1, `b1` H1, `w2` H1×H2, `b2` H2, `w3` H2×C, `b3` C;
/// `labels` holds B classes. `#[grad(w1, ...)]` differentiates the weights only: the
/// data needs no gradient (so the backward pass skips X's product entirely).
#[grad(w1, b1, w2, b2, w3, b3)]
#[allow(clippy::too_many_arguments)]
pub fn mlp_loss(
    x: ArrayView2<'_, f32>,
    labels: &[usize],
    w1: &Array2<f32>,
    b1: &Array1<f32>,
    w2: &Array2<f32>,
    b2: &Array1<f32>,
    w3: &Array2<f32>,
    b3: &Array1<f32>,
) -> f32 {
    let h1 = relu(&(x.dot(w1) + b1));
    let h2 = relu(&(h1.dot(w2) + b2));
    let logits = h2.dot(w3) + b3;
    softmax_cross_entropy(&logits, labels, XentOptions::default())
}

/// The model's parameters (f32).
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// D×H1.
    pub w1: Array2<f32>,
    /// H1.
    pub b1: Array1<f32>,
    /// H1×H2.
    pub w2: Array2<f32>,
    /// H2.
    pub b2: Array1<f32>,
    /// H2×C.
    pub w3: Array2<f32>,
    /// C.
    pub b3: Array1<f32>,
}

macro_rules! params_of {
    ($ty:ty) => {
        impl Params<f32> for $ty {
            fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(BufferRef<'a, f32>)) {
                Named("w1", &self.w1).visit(prefix, f);
                Named("b1", &self.b1).visit(prefix, f);
                Named("w2", &self.w2).visit(prefix, f);
                Named("b2", &self.b2).visit(prefix, f);
                Named("w3", &self.w3).visit(prefix, f);
                Named("b3", &self.b3).visit(prefix, f);
            }
            fn visit_mut<'a>(&'a mut self, prefix: &str, f: &mut dyn FnMut(BufferMut<'a, f32>)) {
                Named("w1", &mut self.w1).visit_mut(prefix, f);
                Named("b1", &mut self.b1).visit_mut(prefix, f);
                Named("w2", &mut self.w2).visit_mut(prefix, f);
                Named("b2", &mut self.b2).visit_mut(prefix, f);
                Named("w3", &mut self.w3).visit_mut(prefix, f);
                Named("b3", &mut self.b3).visit_mut(prefix, f);
            }
        }
    };
}
params_of!(Mlp);

impl From<MlpLossGrad> for Mlp {
    /// The gradient has the model's layout: as an `Mlp`, optimizers and clipping walk
    /// parameters and gradients alike.
    fn from(g: MlpLossGrad) -> Mlp {
        Mlp {
            w1: g.w1,
            b1: g.b1,
            w2: g.w2,
            b2: g.b2,
            w3: g.w3,
            b3: g.b3,
        }
    }
}

impl Mlp {
    /// He-normal hidden weights (`N(0, 2/fan_in)`, right before a ReLU), a Glorot-normal
    /// output layer, zero biases.
    pub fn new(inputs: usize, hidden: [usize; 2], classes: usize, rng: &mut StdRng) -> Mlp {
        let mut m = Mlp {
            w1: Array2::zeros((inputs, hidden[0])),
            b1: Array1::zeros(hidden[0]),
            w2: Array2::zeros((hidden[0], hidden[1])),
            b2: Array1::zeros(hidden[1]),
            w3: Array2::zeros((hidden[1], classes)),
            b3: Array1::zeros(classes),
        };
        init_params(&mut m, rng, |name, shape| {
            // Weights are fan_in × fan_out (y = x·W), the layout Fans::of_shape reads.
            let fans = || Fans::of_shape(shape);
            match (name, shape.len()) {
                // The output layer feeds softmax, not a ReLU: Glorot's variance keeps
                // the first logits small, so the first loss is near ln C.
                ("w3", 2) => Init::XavierNormal(fans()),
                (_, 2) => Init::KaimingNormal(fans(), FanMode::FanIn),
                _ => Init::Zeros,
            }
        });
        m
    }

    /// The loss and its gradient (laid out as a model) on one batch.
    pub fn loss_grad(&self, x: ArrayView2<'_, f32>, labels: &[usize]) -> (f32, Mlp) {
        let (loss, g) = mlp_loss_grad(
            x, labels, &self.w1, &self.b1, &self.w2, &self.b2, &self.w3, &self.b3,
        );
        (loss, g.into())
    }

    /// The hidden activations and logits: the inference path, no tape.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
        let h1 = relu(&(x.dot(&self.w1) + &self.b1));
        let h2 = relu(&(h1.dot(&self.w2) + &self.b2));
        let logits = h2.dot(&self.w3) + &self.b3;
        (h1, h2, logits)
    }

    /// Fraction of rows whose arg-max logit is the label.
    pub fn accuracy(&self, x: ArrayView2<'_, f32>, labels: &[usize]) -> f64 {
        let (_, _, logits) = self.forward(x);
        let hits = logits
            .rows()
            .into_iter()
            .zip(labels)
            .filter(|&(row, &y)| {
                let arg = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i);
                arg == Some(y)
            })
            .count();
        hits as f64 / labels.len().max(1) as f64
    }

    /// Bytes the tape of one training step keeps on a batch of `batch` rows: the
    /// lesson's "training keeps activations", measured.
    pub fn tape_bytes(&self, x: ArrayView2<'_, f32>, labels: &[usize]) -> usize {
        let (_, tape) = mlp_loss_forward(
            x, labels, &self.w1, &self.b1, &self.w2, &self.b2, &self.w3, &self.b3,
        );
        tape.bytes()
    }
}

/// The UCI 8×8 handwritten digits (1797 images, 10 classes; Alpaydin & Kaynak 1998)
/// as shipped in smartcore's `datasets`, pixels scaled from 0..16 to [0, 1], split
/// into training and validation sets by a seeded shuffle.
pub fn digits(validation_fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let d = smartcore::dataset::digits::load_dataset();
    let (n, features) = (d.num_samples, d.num_features);
    let images = Array2::from_shape_vec((n, features), d.data.iter().map(|v| v / 16.0).collect())
        .expect("smartcore's digits are 1797×64");
    let labels: Vec<usize> = d.target.iter().map(|&t| t as usize).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_val = ((n as f64) * validation_fraction).round() as usize;
    let take = |idx: &[usize]| Dataset {
        images: images.select(Axis(0), idx),
        labels: idx.iter().map(|&i| labels[i]).collect(),
        classes: 10,
        shape: (8, 8),
    };
    (take(&order[n_val..]), take(&order[..n_val]))
}

/// Standardises pixels with the training set's mean and standard deviation (one pair
/// for all pixels, as torchvision's `Normalize` does for MNIST): inputs centred at 0
/// with unit variance keep the first layer's pre-activations at the scale He
/// initialisation assumes. Returns (mean, std) so the same transform applies to the
/// validation set.
pub fn standardize(train: &mut Dataset, others: &mut [&mut Dataset]) -> (f32, f32) {
    let n = train.images.len() as f64;
    let mean = train.images.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = train
        .images
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let (mean, std) = (mean as f32, (var.sqrt() as f32).max(1e-6));
    for d in std::iter::once(train).chain(others.iter_mut().map(|d| &mut **d)) {
        d.images.mapv_inplace(|v| (v - mean) / std);
    }
    (mean, std)
}

/// The processes one training run spans: this process alone ([`Alone`]), or the ranks of
/// an MPI world (`backprop::dist::Dist`, with the `mpi` feature). The loop is the same:
/// each replica computes the gradient on its shard of the step's rows, [`Replicas::mean`]
/// averages gradient and loss over the replicas, and every replica takes the same step.
pub trait Replicas {
    /// This replica's index, `0..size()`; replica 0 logs and plots.
    fn rank(&self) -> usize;
    /// The number of replicas.
    fn size(&self) -> usize;
    /// Makes every replica's initial model replica 0's.
    ///
    /// # Errors
    /// When the replicas' models have different shapes.
    fn start(&mut self, model: &mut Mlp) -> Result<(), String>;
    /// Replaces gradient and loss with their means over the replicas.
    ///
    /// # Errors
    /// When the replicas' gradients have different shapes.
    fn mean(&mut self, grads: &mut Mlp, loss: &mut f32) -> Result<(), String>;
}

/// One process: the gradient is the mean over its batch already.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alone;

impl Replicas for Alone {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn start(&mut self, _: &mut Mlp) -> Result<(), String> {
        Ok(())
    }
    fn mean(&mut self, _: &mut Mlp, _: &mut f32) -> Result<(), String> {
        Ok(())
    }
}

/// The ranks of an MPI world: rank 0's initial model is broadcast, and gradient and loss
/// go through one bucketed allreduce per step.
#[cfg(feature = "mpi")]
impl Replicas for backprop::dist::Dist {
    fn rank(&self) -> usize {
        backprop::dist::Dist::rank(self)
    }
    fn size(&self) -> usize {
        backprop::dist::Dist::size(self)
    }
    fn start(&mut self, model: &mut Mlp) -> Result<(), String> {
        self.broadcast_params(model).map_err(|e| e.to_string())
    }
    fn mean(&mut self, grads: &mut Mlp, loss: &mut f32) -> Result<(), String> {
        self.allreduce_mean(&mut (grads, loss))
            .map_err(|e| e.to_string())
    }
}

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Widths of the two hidden layers.
    pub hidden: [usize; 2],
    /// Passes over the training set.
    pub epochs: usize,
    /// Rows per step (per replica: N replicas take N·`batch` rows per step).
    pub batch: usize,
    /// Peak learning rate (reached at the end of warmup).
    pub lr: f64,
    /// AdamW's decoupled weight decay λ (not applied to biases).
    pub weight_decay: f64,
    /// Fraction of all steps spent warming up.
    pub warmup_fraction: f64,
    /// Final learning rate as a fraction of the peak.
    pub floor_fraction: f64,
    /// Clip the global gradient norm at this value.
    pub clip: f64,
    /// Seeds initialisation and shuffling.
    pub seed: u64,
    /// Stop after this many steps (a test budget).
    pub max_steps: Option<u64>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: [128, 64],
            epochs: 30,
            batch: 64,
            lr: 3e-3,
            weight_decay: 0.01,
            warmup_fraction: 0.05,
            floor_fraction: 0.02,
            clip: 1.0,
            seed: 0,
            max_steps: None,
            progress: true,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    /// Training loss per step.
    pub losses: Vec<f64>,
    /// Global gradient norm per step (before clipping).
    pub grad_norms: Vec<f64>,
    /// Learning rate per step.
    pub lrs: Vec<f64>,
    /// (epoch, train accuracy, validation accuracy) after each epoch.
    pub epochs: Vec<(usize, f64, f64)>,
    /// Diagnostics that fired.
    pub findings: Vec<Finding>,
    /// Steps taken.
    pub steps: u64,
    /// Wall time of training, seconds.
    pub seconds: f64,
    /// Of which in training steps (gradient, averaging, clipping, optimizer; no
    /// evaluation), seconds.
    pub step_seconds: f64,
    /// Of which averaging gradients and loss over the replicas ([`Replicas::mean`]).
    pub mean_seconds: f64,
    /// Replicas the run spanned.
    pub replicas: usize,
    /// Bytes of one step's tape at the configured batch size.
    pub tape_bytes: usize,
    /// Bytes of optimizer state.
    pub optimizer_state_bytes: usize,
    /// The trained model.
    pub model: Option<Mlp>,
}

impl TrainReport {
    /// The last epoch's (train, validation) accuracy.
    pub fn final_accuracy(&self) -> (f64, f64) {
        self.epochs.last().map_or((0.0, 0.0), |&(_, t, v)| (t, v))
    }
}

fn layer_norms(g: &Mlp) -> Vec<(String, f64)> {
    g.buffers()
        .into_iter()
        .map(|b| {
            (
                b.name,
                b.values
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>()
                    .sqrt(),
            )
        })
        .collect()
}

/// Trains an MLP on `train`, evaluating on `validation` after every epoch.
///
/// # Errors
/// When training diverges (a non-finite loss), with the diagnosis.
pub fn train(
    train: &Dataset,
    validation: &Dataset,
    cfg: &TrainConfig,
) -> Result<TrainReport, String> {
    train_with(train, validation, cfg, &mut Alone)
}

/// [`train`] over `replicas`: each takes its shard of every step's `size()·batch` rows
/// ([`ShardedSampler`] over a permutation all replicas draw from the same seed), so N
/// replicas at `batch` take the steps one process at N·`batch` takes. Only replica 0
/// draws the progress bar and prints.
///
/// # Errors
/// When training diverges (a non-finite loss), with the diagnosis, or the replicas'
/// models differ in shape.
pub fn train_with(
    train: &Dataset,
    validation: &Dataset,
    cfg: &TrainConfig,
    replicas: &mut dyn Replicas,
) -> Result<TrainReport, String> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let inputs = train.images.ncols();
    let mut model = Mlp::new(inputs, cfg.hidden, train.classes, &mut rng);
    replicas.start(&mut model)?;
    let sampler = ShardedSampler::new(replicas.size(), replicas.rank(), cfg.batch);
    let progress = cfg.progress && replicas.rank() == 0;
    let steps_per_epoch = sampler.steps(train.labels.len()) as u64;
    let planned = steps_per_epoch * cfg.epochs as u64;
    let total = cfg.max_steps.map_or(planned, |m| m.min(planned));
    let schedule = WarmupCosine {
        peak: cfg.lr,
        warmup: ((total as f64) * cfg.warmup_fraction).round() as u64,
        total,
        floor: cfg.lr * cfg.floor_fraction,
    };
    // Decoupled weight decay on matrices only: biases (1-D) are not decayed.
    let mut opt = AdamW::new(AdamWConfig {
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        ..Default::default()
    })
    .with_groups(vec![ParamGroup::new(Select::MaxNdim(1)).weight_decay(0.0)]);
    let mut report = TrainReport::default();
    let mut monitor = Monitor::new(50, 10.0);
    let bar = ProgressBar::new(total);
    if !progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  loss {msg}  [{elapsed_precise}]")
            .expect("valid template"),
    );
    let first = cfg.batch.min(train.labels.len());
    report.tape_bytes = model.tape_bytes(
        train.images.slice(ndarray::s![..first, ..]),
        &train.labels[..first],
    );
    let start = Instant::now();
    let mut order: Vec<usize> = (0..train.labels.len()).collect();
    let mut step: u64 = 0;
    'epochs: for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        for shard in sampler.shards(&order) {
            if step >= total {
                break 'epochs;
            }
            let t_step = Instant::now();
            let x = train.images.select(Axis(0), shard.rows);
            let y: Vec<usize> = shard.rows.iter().map(|&i| train.labels[i]).collect();
            let (mut loss, mut g) = model.loss_grad(x.view(), &y);
            // A short last step splits unevenly: weight each replica's mean by its rows.
            let weight = shard.weight() as f32;
            if weight != 1.0 {
                loss *= weight;
                g.visit_mut("", &mut |b| b.values.iter_mut().for_each(|v| *v *= weight));
            }
            let t_mean = Instant::now();
            replicas.mean(&mut g, &mut loss)?;
            report.mean_seconds += t_mean.elapsed().as_secs_f64();
            let loss = f64::from(loss);
            if step == 0
                && let Some(f) = diagnostics::check_initial_loss(loss, train.classes, 0.5)
            {
                report.findings.push(f);
            }
            let norms = layer_norms(&g);
            let norm = clip_grad_norm(&mut g, cfg.clip, NonFiniteNorm::Return)
                .map_err(|e| e.to_string())?;
            let findings = monitor.observe(step, loss, norm, &norms);
            if let Some(fatal) = findings.iter().find(|f| f.is_fatal()) {
                bar.abandon();
                return Err(fatal.to_string());
            }
            report.findings.extend(findings);
            let lr = schedule.lr(step);
            opt.set_lr(lr);
            opt.step(&mut model, &g).map_err(|e| e.to_string())?;
            report.step_seconds += t_step.elapsed().as_secs_f64();
            report.losses.push(loss);
            report.grad_norms.push(norm);
            report.lrs.push(lr);
            step += 1;
            let rate = (step as f64 * sampler.global_batch() as f64)
                / start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{loss:.4}  |g| {norm:.3}  lr {lr:.2e}  {rate:.0} samples/s"
            ));
            bar.inc(1);
        }
        let train_acc = model.accuracy(train.images.view(), &train.labels);
        let val_acc = model.accuracy(validation.images.view(), &validation.labels);
        report.epochs.push((epoch, train_acc, val_acc));
        let line = format!(
            "epoch {epoch:>3}: train {:.2}%  validation {:.2}%",
            train_acc * 100.0,
            val_acc * 100.0
        );
        // Without a terminal (output piped) the bar draws nothing: print the line plainly.
        // `--quiet` (progress off) prints neither.
        if progress && bar.is_hidden() {
            println!("{line}");
        } else if progress {
            bar.println(line);
        }
    }
    bar.finish_and_clear();
    report.seconds = start.elapsed().as_secs_f64();
    report.steps = step;
    report.replicas = replicas.size();
    report.optimizer_state_bytes = opt.state_bytes();
    // End-of-run diagnostics on the validation set.
    let (h1, h2, _) = model.forward(validation.images.view());
    for (name, h) in [("h1", &h1), ("h2", &h2)] {
        report.findings.extend(diagnostics::check_dead_relu(
            name,
            diagnostics::dead_relu_fraction(h),
            0.5,
        ));
    }
    let (t, v) = report.final_accuracy();
    report
        .findings
        .extend(diagnostics::check_generalization(t, v, 0.05));
    report.model = Some(model);
    Ok(report)
}
