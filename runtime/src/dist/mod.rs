//! Data-parallel training: every rank runs the same step on its own shard of the batch,
//! the gradients are averaged across the world with an allreduce, and every rank applies
//! the same optimizer step, so the parameters stay identical on every rank.
//!
//! The communicator, `Dist` (world size and rank, [`Params`]-generic `allreduce_mean`
//! over buckets, the broadcast of initial parameters from rank 0, a watchdog on every
//! collective and a panic hook that aborts the world), needs the crate feature `mpi`,
//! which builds on the [`mpi` crate](https://docs.rs/mpi) (rsmpi) and so on an installed
//! MPI (Open MPI or MPICH, with its development files) and libclang. The parts that are
//! plain arithmetic are always here, so they are tested without MPI:
//!
//! - [`ShardedSampler`]: which rows of a shared permutation each rank takes, so that N
//!   ranks at batch B draw exactly the rows one process at batch N·B would;
//! - [`Buckets`]: a gradient set flattened into a few contiguous buffers of bounded size
//!   (one collective per bucket), allocated once and reused every step;
//! - [`Fingerprint`]: the buffer count, scalar count and a hash of the names and shapes
//!   of a set, which the ranks compare before their first allreduce.
//!
//! ```
//! use backprop::dist::ShardedSampler;
//! // 10 rows, 2 ranks at 2 rows each: every step takes 4 rows of the shared order.
//! let order: Vec<usize> = (0..10).collect();
//! let r0: Vec<Vec<usize>> = ShardedSampler::new(2, 0, 2).shards(&order).map(|s| s.rows.to_vec()).collect();
//! let r1: Vec<Vec<usize>> = ShardedSampler::new(2, 1, 2).shards(&order).map(|s| s.rows.to_vec()).collect();
//! assert_eq!(r0, [vec![0, 1], vec![4, 5], vec![8]]);
//! assert_eq!(r1, [vec![2, 3], vec![6, 7], vec![9]]);
//! ```
//!
//! docs/DISTRIBUTED.md in the repository says how it works, what it costs and what
//! comes next (optimizer-state sharding, more than one machine).

use std::fmt;

use crate::params::{Params, Real};

#[cfg(feature = "mpi")]
mod comm;
#[cfg(feature = "mpi")]
pub use comm::{ABORT_ON_PANIC, ABORT_ON_TIMEOUT, CommStats, Dist, DistConfig};

/// Which rows of a permutation shared by every rank this rank takes at each step.
///
/// Step `s` covers the global chunk `order[s·N·B .. (s+1)·N·B]` (`N` ranks, `B` rows per
/// rank); rank `r` takes the `r`-th `B` rows of it. With `N = 1` the shards are exactly
/// `order.chunks(B)`, and the union of the `N` ranks' shards at step `s` is the chunk one
/// process at batch `N·B` takes, so the averaged gradient is that process's gradient.
///
/// The last chunk of an epoch may be short (`L < N·B` rows): it is split as evenly as
/// possible (rank `r` takes `order[r·L/N .. (r+1)·L/N]` of it) and [`Shard::weight`]
/// says how to scale a rank's mean gradient so that the average over ranks is still the
/// mean over the chunk's rows. A chunk with fewer rows than ranks (`L < N`) is dropped,
/// so no rank ever gets an empty batch; every rank sees the same number of steps, which
/// the collectives need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardedSampler {
    world: usize,
    rank: usize,
    batch: usize,
}

/// One rank's rows for one step; see [`ShardedSampler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard<'a> {
    /// The step within the pass over `order` (0-based).
    pub step: usize,
    /// This rank's rows (indices into the dataset).
    pub rows: &'a [usize],
    /// Rows of the whole step over all ranks (`N·B` except for a short last chunk).
    pub global_rows: usize,
    /// Number of ranks.
    pub world: usize,
}

impl Shard<'_> {
    /// The factor to scale this rank's mean gradient (and loss) by before
    /// `allreduce_mean`, so that the mean over ranks is the mean over the step's rows:
    /// `rows · N / global_rows`. Exactly `1.0` when every rank has `B` rows.
    pub fn weight(&self) -> f64 {
        if self.rows.len() * self.world == self.global_rows {
            1.0
        } else {
            (self.rows.len() * self.world) as f64 / self.global_rows as f64
        }
    }
}

impl ShardedSampler {
    /// A sampler for rank `rank` of `world` ranks, `batch` rows per rank per step.
    ///
    /// # Panics
    /// If `world` or `batch` is 0, or `rank >= world`.
    pub fn new(world: usize, rank: usize, batch: usize) -> ShardedSampler {
        assert!(world > 0, "ShardedSampler: the world has no ranks");
        assert!(
            rank < world,
            "ShardedSampler: rank {rank} outside a world of {world}"
        );
        assert!(batch > 0, "ShardedSampler: batch must be at least 1 row");
        ShardedSampler { world, rank, batch }
    }

    /// Rows per rank per step (`B`).
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Rows per step over all ranks (`N·B`).
    pub fn global_batch(&self) -> usize {
        self.world * self.batch
    }

    /// Steps a pass over `rows` rows takes: `⌈rows / (N·B)⌉`, less one when the last
    /// chunk has fewer rows than there are ranks.
    pub fn steps(&self, rows: usize) -> usize {
        let full = rows / self.global_batch();
        let rest = rows % self.global_batch();
        full + usize::from(rest >= self.world)
    }

    /// This rank's shards of one pass over `order`, a permutation every rank holds
    /// identically (shuffled with the same seed).
    pub fn shards<'a>(&self, order: &'a [usize]) -> impl Iterator<Item = Shard<'a>> + 'a {
        let (world, rank, batch) = (self.world, self.rank, self.batch);
        order
            .chunks(world * batch)
            .enumerate()
            .filter(move |(_, chunk)| chunk.len() >= world)
            .map(move |(step, chunk)| {
                let rows = if chunk.len() == world * batch {
                    &chunk[rank * batch..(rank + 1) * batch]
                } else {
                    let l = chunk.len();
                    &chunk[rank * l / world..(rank + 1) * l / world]
                };
                Shard {
                    step,
                    rows,
                    global_rows: chunk.len(),
                    world,
                }
            })
    }
}

/// What identifies the layout of a parameter (or gradient) set across ranks: the number
/// of buffers and of scalars, and a 64-bit FNV-1a hash of every buffer's name and shape
/// in walk order. Two ranks whose fingerprints differ would reduce different buffers into
/// each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Number of buffers.
    pub buffers: u64,
    /// Number of scalars over all buffers.
    pub scalars: u64,
    /// FNV-1a over names, ranks and dimensions.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `params`.
    pub fn of<F, P: Params<F> + ?Sized>(params: &P) -> Fingerprint {
        let mut fp = Fingerprint {
            buffers: 0,
            scalars: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        };
        let eat = |bytes: &[u8], h: &mut u64| {
            for &b in bytes {
                *h ^= u64::from(b);
                *h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        params.visit("", &mut |b| {
            fp.buffers += 1;
            fp.scalars += b.values.len() as u64;
            eat(b.name.as_bytes(), &mut fp.hash);
            eat(&(b.shape.len() as u64).to_le_bytes(), &mut fp.hash);
            for &d in &b.shape {
                eat(&(d as u64).to_le_bytes(), &mut fp.hash);
            }
        });
        fp
    }

    /// As three words, the form the ranks exchange.
    pub fn to_words(self) -> [u64; 3] {
        [self.buffers, self.scalars, self.hash]
    }

    /// From [`Fingerprint::to_words`].
    pub fn from_words(w: [u64; 3]) -> Fingerprint {
        Fingerprint {
            buffers: w[0],
            scalars: w[1],
            hash: w[2],
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} buffers, {} scalars, shape hash {:#018x}",
            self.buffers, self.scalars, self.hash
        )
    }
}

/// The `(name, shape)` list of a set as bytes (`name\tdim,dim\n` per buffer): what rank 0
/// sends when fingerprints differ, so that a rank can name the first buffer that differs.
pub fn describe_shapes(shapes: &[(String, Vec<usize>)]) -> Vec<u8> {
    let mut out = String::new();
    for (name, shape) in shapes {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        out.push_str(&format!("{name}\t{}\n", dims.join(",")));
    }
    out.into_bytes()
}

/// The first buffer where `here` and rank 0's list (as [`describe_shapes`] wrote it)
/// differ, in words; `None` if they agree.
pub fn first_difference(here: &[(String, Vec<usize>)], root: &[u8]) -> Option<String> {
    let root = String::from_utf8_lossy(root);
    let root: Vec<(String, String)> = root
        .lines()
        .map(|l| {
            let (n, s) = l.split_once('\t').unwrap_or((l, ""));
            (n.to_string(), format!("[{}]", s.replace(',', ", ")))
        })
        .collect();
    let show = |s: &[usize]| {
        format!(
            "[{}]",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    for i in 0..here.len().max(root.len()) {
        match (here.get(i), root.get(i)) {
            (Some((n, s)), Some((rn, rs))) if *n != *rn || show(s) != *rs => {
                return Some(format!(
                    "buffer {i} is `{n}` {} here and `{rn}` {rs} on rank 0",
                    show(s)
                ));
            }
            (Some((n, s)), None) => {
                return Some(format!(
                    "buffer {i} `{n}` {} exists here and not on rank 0",
                    show(s)
                ));
            }
            (None, Some((rn, rs))) => {
                return Some(format!(
                    "buffer {i} `{rn}` {rs} exists on rank 0 and not here"
                ));
            }
            _ => {}
        }
    }
    None
}

/// One contiguous piece of a parameter buffer inside a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index of the buffer in the set's walk order.
    pub buffer: usize,
    /// First element of the piece within the buffer.
    pub start: usize,
    /// Elements in the piece.
    pub len: usize,
    /// Bucket the piece is in.
    pub bucket: usize,
    /// Where the piece starts in the bucket.
    pub offset: usize,
}

/// A gradient set flattened into buckets of at most `cap` scalars each, with their send
/// and receive buffers, allocated once by [`Buckets::plan`] and reused every step.
///
/// Buffers are laid into buckets in walk order; a buffer larger than the room left is
/// split across buckets, so every bucket but the last holds exactly `cap` scalars. One
/// collective per bucket keeps each message large (latency is paid per bucket, not per
/// buffer) and the staging memory bounded (2 × `cap` per bucket in flight).
///
/// ```
/// use backprop::dist::Buckets;
/// let mut g = (vec![1.0f32; 5], vec![2.0f32; 3]);
/// let mut b = Buckets::<f32>::plan(&g, 4);
/// assert_eq!(b.len(), 2); // 8 scalars in buckets of 4: [5 ones → 4 | 1 one + 3 twos]
/// b.pack(&g);
/// assert_eq!(b.send(1), [1.0, 2.0, 2.0, 2.0]);
/// // What a collective would do: here, the identity.
/// for i in 0..b.len() {
///     let (s, r) = b.io(i);
///     r.copy_from_slice(s);
/// }
/// b.unpack(&mut g, 0.5); // scale by 1/N on the way out
/// assert_eq!(g.1, [1.0; 3]);
/// ```
#[derive(Clone, Debug)]
pub struct Buckets<F> {
    spans: Vec<Span>,
    buffer_lens: Vec<usize>,
    send: Vec<Vec<F>>,
    recv: Vec<Vec<F>>,
}

impl<F: Real> Buckets<F> {
    /// Plans buckets of at most `cap` scalars for the layout of `params`.
    ///
    /// # Panics
    /// If `cap` is 0.
    pub fn plan<P: Params<F> + ?Sized>(params: &P, cap: usize) -> Buckets<F> {
        assert!(
            cap > 0,
            "Buckets::plan: a bucket must hold at least 1 scalar"
        );
        let mut spans = Vec::new();
        let mut buffer_lens = Vec::new();
        let mut lens: Vec<usize> = Vec::new();
        params.visit("", &mut |b| {
            let buffer = buffer_lens.len();
            buffer_lens.push(b.values.len());
            let mut start = 0;
            while start < b.values.len() {
                if lens.last().is_none_or(|&l| l == cap) {
                    lens.push(0);
                }
                let bucket = lens.len() - 1;
                let len = (cap - lens[bucket]).min(b.values.len() - start);
                spans.push(Span {
                    buffer,
                    start,
                    len,
                    bucket,
                    offset: lens[bucket],
                });
                lens[bucket] += len;
                start += len;
            }
        });
        Buckets {
            spans,
            buffer_lens,
            send: lens.iter().map(|&l| vec![F::zero(); l]).collect(),
            recv: lens.iter().map(|&l| vec![F::zero(); l]).collect(),
        }
    }

    /// Number of buckets (0 for a set with no scalars).
    pub fn len(&self) -> usize {
        self.send.len()
    }

    /// Whether there are no buckets.
    pub fn is_empty(&self) -> bool {
        self.send.is_empty()
    }

    /// The pieces, in walk order.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Scalars over all buckets.
    pub fn num_scalars(&self) -> usize {
        self.buffer_lens.iter().sum()
    }

    /// Whether `params` has the buffer lengths this plan was made for.
    pub fn fits<P: Params<F> + ?Sized>(&self, params: &P) -> bool {
        let mut i = 0;
        let mut ok = true;
        params.visit("", &mut |b| {
            ok &= self.buffer_lens.get(i) == Some(&b.values.len());
            i += 1;
        });
        ok && i == self.buffer_lens.len()
    }

    /// Copies `grads` into the send buffers.
    ///
    /// # Panics
    /// If `grads` does not have the planned layout ([`Buckets::fits`]).
    pub fn pack<P: Params<F> + ?Sized>(&mut self, grads: &P) {
        assert!(
            self.fits(grads),
            "Buckets::pack: the set's layout differs from the plan"
        );
        let (spans, send) = (&self.spans, &mut self.send);
        let mut next = 0;
        let mut buffer = 0;
        grads.visit("", &mut |b| {
            while next < spans.len() && spans[next].buffer == buffer {
                let s = spans[next];
                send[s.bucket][s.offset..s.offset + s.len]
                    .copy_from_slice(&b.values[s.start..s.start + s.len]);
                next += 1;
            }
            buffer += 1;
        });
    }

    /// Copies the receive buffers, each value times `scale`, back into `grads`.
    ///
    /// # Panics
    /// If `grads` does not have the planned layout ([`Buckets::fits`]).
    pub fn unpack<P: Params<F> + ?Sized>(&self, grads: &mut P, scale: F) {
        assert!(
            self.fits(&*grads),
            "Buckets::unpack: the set's layout differs from the plan"
        );
        let (spans, recv) = (&self.spans, &self.recv);
        let mut next = 0;
        let mut buffer = 0;
        grads.visit_mut("", &mut |b| {
            while next < spans.len() && spans[next].buffer == buffer {
                let s = spans[next];
                let src = &recv[s.bucket][s.offset..s.offset + s.len];
                for (d, &v) in b.values[s.start..s.start + s.len].iter_mut().zip(src) {
                    *d = if scale == F::one() { v } else { v * scale };
                }
                next += 1;
            }
            buffer += 1;
        });
    }

    /// Bucket `i`'s send buffer (what [`Buckets::pack`] wrote).
    pub fn send(&self, i: usize) -> &[F] {
        &self.send[i]
    }

    /// Bucket `i`'s send and receive buffers, for a collective to read one and write the
    /// other.
    pub fn io(&mut self, i: usize) -> (&[F], &mut [F]) {
        (&self.send[i], &mut self.recv[i])
    }
}

/// Errors of distributed training; each names the ranks involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DistError {
    /// MPI was initialised already in this process (by another `Dist` or by other code).
    AlreadyInitialized,
    /// The ranks' parameter (or gradient) sets have different layouts, found before the
    /// first collective on them.
    ShapeMismatch {
        /// What was being exchanged (`"allreduce_mean"`, `"broadcast_params"`).
        what: &'static str,
        /// This rank.
        rank: usize,
        /// This rank's fingerprint.
        here: Fingerprint,
        /// Rank 0's fingerprint.
        root: Fingerprint,
        /// The ranks whose fingerprint differs from rank 0's.
        differing: Vec<usize>,
        /// The first buffer that differs from rank 0's, in words (on a differing rank).
        first_difference: Option<String>,
    },
}

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DistError::AlreadyInitialized => {
                write!(f, "MPI is initialised already in this process")
            }
            DistError::ShapeMismatch {
                what,
                rank,
                here,
                root,
                differing,
                first_difference,
            } => {
                write!(
                    f,
                    "{what}: parameter shapes differ across ranks: rank(s) {differing:?} differ from rank 0 ({root}); rank {rank} has {here}"
                )?;
                if let Some(d) = first_difference {
                    write!(f, "; on rank {rank}, {d}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for DistError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_of_one_is_plain_chunks() {
        let order: Vec<usize> = (0..23).rev().collect();
        let s = ShardedSampler::new(1, 0, 5);
        let got: Vec<&[usize]> = s.shards(&order).map(|s| s.rows).collect();
        let want: Vec<&[usize]> = order.chunks(5).collect();
        assert_eq!(got, want);
        assert_eq!(s.steps(23), 5);
    }
}
