//! The MPI side of `backprop::dist` (feature `mpi`): the world, the collectives, the
//! watchdog and the panic hook.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use super::{Buckets, DistError, Fingerprint, ShardedSampler, describe_shapes, first_difference};
use crate::params::{Params, Real};

/// The exit code a rank passes to `MPI_Abort` when it panics (Rust's own code for a
/// panicking process); `mpirun` exits with it.
pub const ABORT_ON_PANIC: i32 = 101;
/// The exit code a rank passes to `MPI_Abort` when a collective outlives
/// [`DistConfig::timeout`] (sysexits' `EX_TEMPFAIL`; not 124, which `timeout(1)` returns,
/// so a wrapper can tell the watchdog from its own limit).
pub const ABORT_ON_TIMEOUT: i32 = 75;

/// Whether the panic hook installed by [`Dist::init_with`] should abort the world; off
/// once the `Dist` is dropped (MPI is finalised then).
static HOOK_ACTIVE: AtomicBool = AtomicBool::new(false);

/// How a [`Dist`] communicates.
#[derive(Clone, Debug)]
pub struct DistConfig {
    /// Largest bucket, in bytes (PyTorch DDP's default: 25 MiB). Smaller buckets mean
    /// more collectives, each paying the latency once; larger ones more staging memory.
    pub bucket_bytes: usize,
    /// How long one collective may wait before this rank names the collective and aborts
    /// the world (`None`: wait forever). The wait includes time other ranks spend before
    /// reaching it (evaluation, checkpoints on rank 0), so it must exceed the longest
    /// such pause. `BACKPROP_DIST_TIMEOUT_S` (seconds, `0` for none) overrides it.
    pub timeout: Option<Duration>,
    /// Install a panic hook that, after the usual message, calls `MPI_Abort` with
    /// [`ABORT_ON_PANIC`], so a panicking rank stops the others instead of leaving them
    /// in a collective that never completes.
    pub abort_on_panic: bool,
}

impl Default for DistConfig {
    fn default() -> Self {
        DistConfig {
            bucket_bytes: 25 << 20,
            timeout: Some(Duration::from_secs(300)),
            abort_on_panic: true,
        }
    }
}

/// What the collectives cost so far on this rank.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommStats {
    /// Calls of [`Dist::allreduce_mean`].
    pub allreduces: u64,
    /// Bucket collectives run by them.
    pub buckets: u64,
    /// Bytes this rank contributed to them.
    pub bytes: u64,
    /// Seconds inside the bucket collectives (waiting for other ranks included).
    pub collective_seconds: f64,
    /// Seconds packing gradients into buckets and unpacking (and scaling) the means.
    pub staging_seconds: f64,
}

/// What the watchdog is waiting on.
#[derive(Clone, Copy)]
struct Armed {
    deadline: Instant,
    what: &'static str,
    call: u64,
    bucket: usize,
    buckets: usize,
}

struct WatchState {
    armed: Option<Armed>,
    idle: bool,
    stop: bool,
}

struct Watch {
    state: Mutex<WatchState>,
    wake: Condvar,
}

/// A thread that aborts the world when one collective outlives the timeout.
struct Watchdog {
    shared: Arc<Watch>,
    timeout: Option<Duration>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(timeout: Option<Duration>, rank: usize, size: usize) -> Watchdog {
        let shared = Arc::new(Watch {
            state: Mutex::new(WatchState {
                armed: None,
                idle: true,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let thread = timeout.map(|t| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("backprop-dist-watchdog".into())
                .spawn(move || watch(&shared, t, rank, size))
                .expect("spawning the watchdog thread")
        });
        Watchdog {
            shared,
            timeout,
            thread,
        }
    }

    /// Arms the watchdog for one collective; disarmed when the guard drops.
    fn arm(&self, what: &'static str, call: u64, bucket: usize, buckets: usize) -> Disarm<'_> {
        if let Some(t) = self.timeout {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.armed = Some(Armed {
                deadline: Instant::now() + t,
                what,
                call,
                bucket,
                buckets,
            });
            // The thread sleeps until its last deadline or, when idle, until woken.
            if st.idle {
                self.shared.wake.notify_one();
            }
        }
        Disarm(self)
    }
}

struct Disarm<'a>(&'a Watchdog);

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        if self.0.timeout.is_some() {
            let mut st = self
                .0
                .shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            st.armed = None;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(h) = self.thread.take() {
            self.shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stop = true;
            self.shared.wake.notify_one();
            let _ = h.join();
        }
    }
}

fn watch(shared: &Watch, timeout: Duration, rank: usize, size: usize) {
    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if st.stop {
            return;
        }
        match st.armed {
            None => {
                st.idle = true;
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                st.idle = false;
            }
            Some(a) => {
                let now = Instant::now();
                if now >= a.deadline {
                    eprintln!(
                        "backprop::dist: rank {rank} of {size}: {} call {} (bucket {} of {}) \
                         did not complete within {timeout:?}: another rank has died, is stuck, \
                         or took a different path (a different number of steps or collectives); \
                         aborting the world (MPI_Abort, code {ABORT_ON_TIMEOUT})",
                        a.what,
                        a.call,
                        a.bucket + 1,
                        a.buckets,
                    );
                    SimpleCommunicator::world().abort(ABORT_ON_TIMEOUT);
                }
                st = shared
                    .wake
                    .wait_timeout(st, a.deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

/// This process's place in an MPI world, and the collectives data-parallel training
/// needs: gradients averaged over the world in buckets, parameters broadcast from rank 0.
///
/// Start the program under `mpirun -np N` (or alone: a world of one); [`Dist::init`]
/// initialises MPI, and dropping the `Dist` finalises it. Every rank must make the same
/// sequence of collective calls ([`Dist::allreduce_mean`], [`Dist::broadcast_params`],
/// [`Dist::barrier`]) with sets of the same layout.
///
/// Faults: a rank that panics aborts the world (the panic hook of
/// [`DistConfig::abort_on_panic`]; `mpirun` then kills the other ranks and exits with
/// [`ABORT_ON_PANIC`]); a collective that waits longer than [`DistConfig::timeout`]
/// names itself on stderr and aborts the world with [`ABORT_ON_TIMEOUT`]; a rank killed
/// or exiting without `MPI_Finalize` is noticed by Open MPI's `mpirun`, which kills the
/// others and names the rank and the signal. Layouts that differ across ranks are
/// [`DistError::ShapeMismatch`] on every rank, before any gradient is exchanged.
///
/// ```no_run
/// use backprop::dist::Dist;
/// use backprop::optim::{AdamW, AdamWConfig, Optimizer};
///
/// let mut dist = Dist::init()?; // under `mpirun -np 2`: rank 0 and rank 1
/// let mut w = vec![0.0f32; 4];
/// dist.broadcast_params(&mut w)?; // every rank starts from rank 0's parameters
/// let mut opt = AdamW::<f32>::new(AdamWConfig::default());
/// for _ in 0..10 {
///     // Each rank's gradient on its own shard of the batch ...
///     let mut g = vec![dist.rank() as f32 + 1.0; 4];
///     // ... averaged over the world (here 1.5 everywhere on 2 ranks),
///     dist.allreduce_mean(&mut g)?;
///     // and the same step on every rank.
///     opt.step(&mut w, &g).unwrap();
/// }
/// if dist.is_root() {
///     println!("{w:?}"); // log, plot and checkpoint from rank 0 only
/// }
/// # Ok::<(), backprop::dist::DistError>(())
/// ```
pub struct Dist {
    watchdog: Watchdog,
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    cfg: DistConfig,
    buckets: HashMap<(TypeId, Fingerprint), Box<dyn Any>>,
    stats: CommStats,
    // Last: MPI_Finalize runs when the universe drops, after the watchdog has stopped.
    _universe: Universe,
}

impl std::fmt::Debug for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dist")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Dist {
    /// Initialises MPI with [`DistConfig::default`].
    ///
    /// # Errors
    /// [`DistError::AlreadyInitialized`] if MPI was initialised before in this process.
    pub fn init() -> Result<Dist, DistError> {
        Dist::init_with(DistConfig::default())
    }

    /// Initialises MPI (thread level "funneled": only the calling thread communicates),
    /// starts the watchdog and installs the panic hook, as `cfg` says.
    ///
    /// # Errors
    /// [`DistError::AlreadyInitialized`] if MPI was initialised before in this process.
    pub fn init_with(mut cfg: DistConfig) -> Result<Dist, DistError> {
        if let Ok(s) = std::env::var("BACKPROP_DIST_TIMEOUT_S")
            && let Ok(secs) = s.trim().parse::<f64>()
        {
            cfg.timeout = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
        }
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or(DistError::AlreadyInitialized)?;
        let world = universe.world();
        let rank = world.rank() as usize;
        let size = world.size() as usize;
        if cfg.abort_on_panic {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                previous(info);
                if HOOK_ACTIVE.load(Ordering::SeqCst) && !mpi::environment::is_finalized() {
                    eprintln!(
                        "backprop::dist: rank {rank} of {size} panicked (above); aborting the \
                         world (MPI_Abort, code {ABORT_ON_PANIC}) so the other ranks stop \
                         instead of waiting in a collective"
                    );
                    SimpleCommunicator::world().abort(ABORT_ON_PANIC);
                }
            }));
            HOOK_ACTIVE.store(true, Ordering::SeqCst);
        }
        Ok(Dist {
            watchdog: Watchdog::start(cfg.timeout, rank, size),
            world,
            rank,
            size,
            cfg,
            buckets: HashMap::new(),
            stats: CommStats::default(),
            _universe: universe,
        })
    }

    /// This process's rank, `0..size()`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks in the world.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether this is rank 0, the rank that logs, plots and writes checkpoints.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Runs `f` on rank 0 only (logging, plots, checkpoints); `None` elsewhere.
    pub fn root_only<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        self.is_root().then(f)
    }

    /// The configuration in force (after `BACKPROP_DIST_TIMEOUT_S`).
    pub fn config(&self) -> &DistConfig {
        &self.cfg
    }

    /// This rank's sampler at `batch` rows per rank per step.
    ///
    /// # Panics
    /// If `batch` is 0.
    pub fn sampler(&self, batch: usize) -> ShardedSampler {
        ShardedSampler::new(self.size, self.rank, batch)
    }

    /// What the collectives have cost on this rank so far.
    pub fn stats(&self) -> CommStats {
        self.stats
    }

    /// The world communicator, for collectives this module does not wrap.
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// Waits until every rank has called it (under the watchdog).
    pub fn barrier(&mut self) {
        let _armed = self.watchdog.arm("barrier", 0, 0, 1);
        self.world.barrier();
    }

    /// Replaces every value of `grads` with its mean over the world's ranks.
    ///
    /// The set is copied into buckets of at most [`DistConfig::bucket_bytes`] (planned at
    /// the first call for each layout and element type, their buffers reused after), one
    /// `MPI_Allreduce` (sum) runs per bucket, and the sums come back times `1/size()`.
    /// Before the first call for a layout the ranks compare [`Fingerprint`]s: a small
    /// broadcast and gather, once.
    ///
    /// Any [`Params`] set works: a model's gradient struct, a `Vec<f32>`, or a tuple such
    /// as `(&mut grads, &mut loss)` to average the loss in the same collective.
    ///
    /// # Errors
    /// [`DistError::ShapeMismatch`] (on every rank) if the ranks' layouts differ at the
    /// first call for a layout; nothing is exchanged then.
    pub fn allreduce_mean<F, P>(&mut self, grads: &mut P) -> Result<(), DistError>
    where
        F: Real + Equivalence,
        P: Params<F> + ?Sized,
    {
        let fp = Fingerprint::of(&*grads);
        let key = (TypeId::of::<F>(), fp);
        if !self.buckets.contains_key(&key) {
            self.agree("allreduce_mean", &*grads)?;
            let cap = (self.cfg.bucket_bytes / std::mem::size_of::<F>()).max(1);
            self.buckets
                .insert(key, Box::new(Buckets::<F>::plan(&*grads, cap)));
        }
        let buckets = self
            .buckets
            .get_mut(&key)
            .and_then(|b| b.downcast_mut::<Buckets<F>>())
            .expect("buckets planned for this key");
        self.stats.allreduces += 1;
        let call = self.stats.allreduces;
        let t0 = Instant::now();
        buckets.pack(&*grads);
        let t1 = Instant::now();
        let n = buckets.len();
        for i in 0..n {
            let (send, recv) = buckets.io(i);
            self.stats.bytes += std::mem::size_of_val(send) as u64;
            let _armed = self.watchdog.arm("allreduce_mean", call, i, n);
            self.world
                .all_reduce_into(send, recv, SystemOperation::sum());
        }
        let t2 = Instant::now();
        buckets.unpack(grads, F::one() / F::of(self.size as f64));
        self.stats.buckets += n as u64;
        self.stats.collective_seconds += (t2 - t1).as_secs_f64();
        self.stats.staging_seconds += (t1 - t0).as_secs_f64() + t2.elapsed().as_secs_f64();
        Ok(())
    }

    /// Overwrites `params` on every rank with rank 0's values (one `MPI_Bcast` per
    /// buffer), so every rank starts from the same point whatever its own initialisation.
    ///
    /// # Errors
    /// [`DistError::ShapeMismatch`] (on every rank) if the ranks' layouts differ; nothing
    /// is overwritten then.
    pub fn broadcast_params<F, P>(&mut self, params: &mut P) -> Result<(), DistError>
    where
        F: Real + Equivalence,
        P: Params<F> + ?Sized,
    {
        self.agree("broadcast_params", &*params)?;
        let root = self.world.process_at_rank(0);
        let _armed = self.watchdog.arm("broadcast_params", 0, 0, 1);
        params.visit_mut("", &mut |b| root.broadcast_into(b.values));
        Ok(())
    }

    /// Compares every rank's fingerprint of `params` with rank 0's; on a difference,
    /// rank 0 sends its shapes so that each differing rank names the first difference.
    fn agree<F, P: Params<F> + ?Sized>(
        &mut self,
        what: &'static str,
        params: &P,
    ) -> Result<(), DistError> {
        let _armed = self.watchdog.arm(what, 0, 0, 1);
        let here = Fingerprint::of(params);
        let root_proc = self.world.process_at_rank(0);
        let mut root_words = here.to_words();
        root_proc.broadcast_into(&mut root_words[..]);
        let root = Fingerprint::from_words(root_words);
        let differs = u8::from(root != here);
        let mut flags = vec![0u8; self.size];
        self.world.all_gather_into(&differs, &mut flags[..]);
        let differing: Vec<usize> = (0..self.size).filter(|&r| flags[r] != 0).collect();
        if differing.is_empty() {
            return Ok(());
        }
        let mut desc = if self.is_root() {
            describe_shapes(&params.shapes())
        } else {
            Vec::new()
        };
        let mut len = desc.len() as u64;
        root_proc.broadcast_into(&mut len);
        desc.resize(len as usize, 0);
        root_proc.broadcast_into(&mut desc[..]);
        let first_difference = if differs == 1 {
            first_difference(&params.shapes(), &desc)
        } else {
            None
        };
        Err(DistError::ShapeMismatch {
            what,
            rank: self.rank,
            here,
            root,
            differing,
            first_difference,
        })
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        // MPI is finalised when `_universe` drops after this: a later panic must not
        // call MPI_Abort.
        HOOK_ACTIVE.store(false, Ordering::SeqCst);
    }
}
