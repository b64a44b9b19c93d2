//! The parts of `backprop::dist` that need no MPI: the rank-sharded sampler, the bucket
//! layout and the layout fingerprint. (The collectives are checked under `mpirun` by
//! `examples/dist_check.rs`, which `.ci/run` runs.)

use backprop::dist::{Buckets, Fingerprint, ShardedSampler, describe_shapes, first_difference};
use backprop::params::Params;
use backprop_tests::mlp::{Alone, Mlp, TrainConfig, digits, train, train_with};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::HashSet;

fn shards_of(world: usize, rank: usize, batch: usize, order: &[usize]) -> Vec<Vec<usize>> {
    ShardedSampler::new(world, rank, batch)
        .shards(order)
        .map(|s| s.rows.to_vec())
        .collect()
}

#[test]
fn the_ranks_draw_disjoint_shards_that_cover_the_epoch() {
    let mut order: Vec<usize> = (0..1437).collect();
    order.shuffle(&mut StdRng::seed_from_u64(7));
    for world in [1, 2, 3, 4, 8] {
        for batch in [1, 16, 64, 500] {
            let per_rank: Vec<Vec<Vec<usize>>> = (0..world)
                .map(|r| shards_of(world, r, batch, &order))
                .collect();
            let steps = ShardedSampler::new(world, 0, batch).steps(order.len());
            let mut seen = HashSet::new();
            for (r, shards) in per_rank.iter().enumerate() {
                // Every rank takes the same number of steps (the collectives need it).
                assert_eq!(shards.len(), steps, "world {world} batch {batch} rank {r}");
                for s in shards {
                    assert!(!s.is_empty() && s.len() <= batch);
                    for &i in s {
                        assert!(seen.insert(i), "row {i} drawn twice (world {world})");
                    }
                }
            }
            // Only a last chunk with fewer rows than ranks is dropped.
            let rest = order.len() % (world * batch);
            let dropped = if rest < world { rest } else { 0 };
            assert_eq!(
                seen.len(),
                order.len() - dropped,
                "world {world} batch {batch}"
            );
        }
    }
}

#[test]
fn n_ranks_at_batch_b_take_the_rows_of_one_process_at_batch_n_b() {
    let mut order: Vec<usize> = (0..1000).collect();
    order.shuffle(&mut StdRng::seed_from_u64(1));
    let (world, batch) = (4, 32);
    let one = shards_of(1, 0, world * batch, &order);
    let ranks: Vec<Vec<Vec<usize>>> = (0..world)
        .map(|r| shards_of(world, r, batch, &order))
        .collect();
    assert_eq!(one.len(), ranks[0].len());
    for (step, rows) in one.iter().enumerate() {
        let mut union: Vec<usize> = ranks.iter().flat_map(|r| r[step].clone()).collect();
        // In order, too: rank r holds the r-th B rows of the step.
        assert_eq!(&union, rows, "step {step}");
        union.sort();
        union.dedup();
        assert_eq!(union.len(), rows.len());
    }
    // The last chunk (1000 = 7·128 + 104) splits 26 rows per rank.
    assert!(ranks.iter().all(|r| r.last().unwrap().len() == 26));
}

#[test]
fn a_short_last_step_weights_each_rank_by_its_rows() {
    // 10 rows, 3 ranks at 2: one full step of 6, then 4 rows split 1, 1, 2.
    let order: Vec<usize> = (0..10).collect();
    let last: Vec<_> = (0..3)
        .map(|r| {
            ShardedSampler::new(3, r, 2)
                .shards(&order)
                .last()
                .map(|s| (s.rows.to_vec(), s.weight()))
                .unwrap()
        })
        .collect();
    assert_eq!(last[0], (vec![6], 0.75));
    assert_eq!(last[1], (vec![7], 0.75));
    assert_eq!(last[2], (vec![8, 9], 1.5));
    // The weighted mean over ranks is the mean over the step's rows:
    // (0.75·x6 + 0.75·x7 + 1.5·(x8+x9)/2) / 3 = (x6+x7+x8+x9)/4.
    let weights: f64 = last.iter().map(|(_, w)| w).sum();
    assert_eq!(weights / 3.0, 1.0);
    // Full steps weigh exactly 1.
    let first = ShardedSampler::new(3, 1, 2).shards(&order).next().unwrap();
    assert_eq!((first.rows, first.weight()), (&[2, 3][..], 1.0));
    // A last chunk with fewer rows than ranks is dropped on every rank.
    assert_eq!(ShardedSampler::new(4, 0, 3).steps(13), 1);
    assert_eq!(ShardedSampler::new(4, 3, 3).shards(&order[..3]).count(), 0);
}

#[test]
#[should_panic(expected = "rank 2 outside a world of 2")]
fn a_rank_outside_the_world_is_refused() {
    ShardedSampler::new(2, 2, 8);
}

#[test]
fn buckets_round_trip_any_parameter_set() {
    let mut rng = StdRng::seed_from_u64(0);
    let model = Mlp::new(64, [128, 64], 10, &mut rng);
    let n = model.num_scalars();
    assert_eq!(n, 17226);
    for cap in [1, 7, 64, 1000, 8192, 17226, 1 << 20] {
        let mut b = Buckets::<f32>::plan(&model, cap);
        assert_eq!(b.len(), n.div_ceil(cap), "cap {cap}");
        assert_eq!(b.num_scalars(), n);
        // Every bucket but the last is full; pieces tile each buffer exactly once.
        for i in 0..b.len() {
            let want = if i + 1 < b.len() {
                cap
            } else {
                n - cap * (b.len() - 1)
            };
            assert_eq!(b.send(i).len(), want);
        }
        let mut covered = vec![0usize; 6];
        for s in b.spans() {
            assert_eq!(covered[s.buffer], s.start, "pieces in order");
            covered[s.buffer] += s.len;
        }
        let lens: Vec<usize> = model.buffers().iter().map(|x| x.values.len()).collect();
        assert_eq!(covered, lens);
        // pack → (identity collective) → unpack gives the set back; the scale applies.
        b.pack(&model);
        for i in 0..b.len() {
            let (s, r) = b.io(i);
            r.copy_from_slice(s);
        }
        let mut back = model.clone();
        back.visit_mut("", &mut |x| x.values.fill(f32::NAN));
        b.unpack(&mut back, 1.0);
        assert_eq!(back, model);
        b.unpack(&mut back, 0.5);
        assert_eq!(back.w2[[3, 4]], model.w2[[3, 4]] * 0.5);
    }
}

#[test]
fn buckets_are_planned_once_and_reused() {
    let g = (vec![1.0f64; 10], 2.0f64, vec![3.0f64; 5]);
    let mut b = Buckets::<f64>::plan(&g, 8);
    let ptrs: Vec<*const f64> = (0..b.len()).map(|i| b.send(i).as_ptr()).collect();
    for _ in 0..3 {
        b.pack(&g);
    }
    let after: Vec<*const f64> = (0..b.len()).map(|i| b.send(i).as_ptr()).collect();
    assert_eq!(ptrs, after, "no reallocation across steps");
    assert_eq!(b.send(1), [1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]);
    assert!(b.fits(&g));
    assert!(!b.fits(&(vec![1.0f64; 10], 2.0f64, vec![3.0f64; 6])));
}

#[test]
#[should_panic(expected = "layout differs from the plan")]
fn packing_another_layout_panics() {
    let mut b = Buckets::<f32>::plan(&vec![0.0f32; 4], 2);
    b.pack(&vec![0.0f32; 5]);
}

#[test]
fn fingerprints_tell_layouts_apart_and_name_the_difference() {
    let mut rng = StdRng::seed_from_u64(0);
    let a = Mlp::new(64, [128, 64], 10, &mut rng);
    let b = Mlp::new(64, [128, 64], 10, &mut rng); // other values, same layout
    let c = Mlp::new(64, [128, 32], 10, &mut rng);
    assert_eq!(Fingerprint::of(&a), Fingerprint::of(&b));
    assert_ne!(Fingerprint::of(&a), Fingerprint::of(&c));
    let fp = Fingerprint::of(&a);
    assert_eq!((fp.buffers, fp.scalars), (6, 17226));
    assert_eq!(Fingerprint::from_words(fp.to_words()), fp);
    // A transposed buffer has the same count but another shape.
    let t = (ndarray::Array2::<f32>::zeros((2, 3)),);
    let u = (ndarray::Array2::<f32>::zeros((3, 2)),);
    assert_ne!(Fingerprint::of(&t).hash, Fingerprint::of(&u).hash);

    let root = describe_shapes(&a.shapes());
    assert_eq!(first_difference(&b.shapes(), &root), None);
    assert_eq!(
        first_difference(&c.shapes(), &root).as_deref(),
        Some("buffer 2 is `w2` [128, 32] here and `w2` [128, 64] on rank 0")
    );
    let fewer = &c.shapes()[..1];
    assert_eq!(
        first_difference(fewer, &root).as_deref(),
        Some("buffer 1 `b1` [128] exists on rank 0 and not here")
    );
}

#[test]
fn the_training_loop_over_one_replica_is_the_plain_loop() {
    // train() is train_with(.., Alone): the sampler with one rank is `order.chunks(B)`.
    let (tr, va) = digits(0.2, 0);
    let cfg = TrainConfig {
        epochs: 2,
        max_steps: Some(30),
        progress: false,
        ..TrainConfig::default()
    };
    let a = train(&tr, &va, &cfg).unwrap();
    let b = train_with(&tr, &va, &cfg, &mut Alone).unwrap();
    assert_eq!(a.losses, b.losses);
    assert_eq!(a.model, b.model);
    assert_eq!((a.replicas, a.steps), (1, 30));
}
