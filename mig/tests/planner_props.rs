//! Properties every plan must have, over random demands on every catalog GPU.
//!
//! The unit tests pin the seed examples; these check the invariants that make
//! a plan safe to apply whatever the demands: the driver accepts every GPU's
//! layout, every replica's slice holds its need, and no replica is lost or
//! counted twice.

use std::collections::BTreeSet;

use mig_slices::catalog::{gpu_models, GpuModel};
use mig_slices::layout::{self, Instance};
use mig_slices::need::{MemoryNeed, MIB};
use mig_slices::planner::{
    assign, candidate_profiles, plan, Demand, ExistingSlice, Plan, PlanOptions,
};
use proptest::prelude::*;

/// 1..=6 models, each needing 0.1 GiB to 100 GiB, with 1..=4 replicas.
/// Names are unique so replicas can be traced back to their demand.
fn demands() -> impl Strategy<Value = Vec<Demand>> {
    prop::collection::vec((102u64..=102_400, 1u32..=4), 1..=6).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (mib, replicas))| {
                Demand::new(format!("m{i}"), MemoryNeed::total(mib * MIB), replicas)
            })
            .collect()
    })
}

/// [`demands`], each model with a decode-rate target (tokens/s) or not:
/// targets from 5 to 400 reach past the fastest profile of small GPUs for
/// big models, so some are unplaceable for speed.
fn demands_with_targets() -> impl Strategy<Value = Vec<Demand>> {
    (
        demands(),
        prop::collection::vec(prop::option::of(5.0f64..400.0), 6),
    )
        .prop_map(|(demands, targets)| {
            demands
                .into_iter()
                .zip(targets)
                .map(|(d, t)| match t {
                    Some(t) => d.with_tokens_per_second(t),
                    None => d,
                })
                .collect()
        })
}

fn check_plan(gpu: &'static GpuModel, options: PlanOptions, demands: &[Demand], p: &Plan) {
    let allowed = candidate_profiles(gpu, options);
    let mut slots = BTreeSet::new();
    let mut placed: BTreeSet<(String, u32)> = BTreeSet::new();
    for (n, g) in p.gpus.iter().enumerate() {
        assert_eq!(g.index as usize, n);
        assert!(!g.instances.is_empty(), "GPU {n} is empty");
        // The layout module accepts the GPU's instances as given.
        let instances: Vec<Instance> = g.placed().iter().map(|p| p.instance()).collect();
        let validated = layout::validate(gpu, &instances)
            .unwrap_or_else(|e| panic!("{}: GPU {n}: {e}\n{p}", gpu.id));
        assert_eq!(layout::free_slots(gpu, &validated), g.free_slots);
        let compute: u8 = g.instances.iter().map(|i| i.profile.compute_slices).sum();
        assert!(compute <= gpu.compute_slices);
        assert_eq!(compute + g.free_compute_slices, gpu.compute_slices);
        for i in &g.instances {
            for s in i.start..i.start + i.profile.memory_slices {
                assert!(slots.insert((n, s)), "GPU {n} slot {s} used twice");
            }
            assert!(i.profile.memory_bytes() >= i.need.total_bytes);
            assert_eq!(i.idle_bytes, i.profile.memory_bytes() - i.need.total_bytes);
            assert_eq!(i.profile_id, i.profile.id);
            assert!(allowed.iter().any(|a| a.name == i.profile.name));
            let demand = demands.iter().find(|d| d.model == i.model).unwrap();
            assert_eq!(i.tokens_per_second, demand.tokens_per_second);
            if let Some(target) = demand.tokens_per_second {
                // Fast enough, by the rate the plan shows.
                assert!(demand.fits(gpu, i.profile));
                assert!(i.decode_rate.unwrap().tokens_per_second >= target, "{p}");
            } else if demands.iter().all(|d| d.tokens_per_second.is_none()) {
                // The smallest allowed profile that holds the need. (With
                // targets in the mix, a replica without one may share a
                // faster profile of the same memory, say `4g.40gb` for
                // `3g.40gb`, to save a distinct profile.)
                let smallest = allowed
                    .iter()
                    .find(|a| a.memory_bytes() >= i.need.total_bytes)
                    .unwrap();
                assert_eq!(smallest.name, i.profile.name);
            }
            assert!(
                placed.insert((i.model.clone(), i.replica)),
                "{} #{} placed twice",
                i.model,
                i.replica
            );
        }
    }

    // Every replica is placed or reported unplaceable, exactly once.
    let largest = gpu.largest_profile().memory_bytes();
    let mut reported = BTreeSet::new();
    for u in &p.unplaceable {
        assert!(
            reported.insert(u.model.clone()),
            "{} reported twice",
            u.model
        );
        let demand = demands.iter().find(|d| d.model == u.model).unwrap();
        assert!(allowed.iter().all(|a| !demand.fits(gpu, a)));
        if u.need.total_bytes > largest {
            assert!(
                u.reason.contains(gpu.largest_profile().name),
                "{}",
                u.reason
            );
        } else {
            // Memory fits somewhere, so speed is what failed.
            let target = demand.tokens_per_second.unwrap();
            assert!(
                u.reason.starts_with(
                    &format!("needs {target:.2}")
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                        .to_string()
                ),
                "{}",
                u.reason
            );
            assert!(u.reason.contains("the fastest profile"), "{}", u.reason);
        }
    }
    for d in demands {
        let here: Vec<u32> = placed
            .iter()
            .filter(|(m, _)| *m == d.model)
            .map(|(_, r)| *r)
            .collect();
        if reported.contains(&d.model) {
            assert!(here.is_empty(), "{} both placed and unplaceable", d.model);
            let u = p.unplaceable.iter().find(|u| u.model == d.model).unwrap();
            assert_eq!(u.replicas, d.replicas);
        } else {
            assert_eq!(here, (0..d.replicas).collect::<Vec<_>>(), "{}", d.model);
        }
    }

    let replicas_placed = placed.len() as u32;
    assert_eq!(p.cost.replicas_placed, replicas_placed);
    assert_eq!(p.cost.whole_gpus, replicas_placed);
    assert_eq!(p.cost.mig_gpus as usize, p.gpus.len());
    assert!(p.cost.mig_gpus <= replicas_placed);
    assert_eq!(p.cost.gpus_saved, replicas_placed - p.cost.mig_gpus);
    assert_eq!(
        p.idle_in_slices_bytes,
        p.gpus.iter().map(|g| g.idle_in_slices_bytes).sum::<u64>()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_is_valid_on_every_gpu(demands in demands()) {
        for gpu in gpu_models() {
            for all_profiles in [false, true] {
                let options = PlanOptions { all_profiles };
                let p = plan(gpu, &demands, options);
                check_plan(gpu, options, &demands, &p);
                prop_assert_eq!(&p, &plan(gpu, &demands, options), "not deterministic");
                // The table and the renderings never panic.
                let _ = p.to_string();
                let _ = mig_slices::render::nvidia_smi_script(&p);
                let _ = mig_slices::render::mig_parted_config(&p, "x");
            }
        }
    }

    /// The same invariants with throughput targets: every replica's
    /// profile decodes at least as fast as it asked, and a replica is
    /// unplaceable only when no allowed profile both holds it and is fast
    /// enough.
    #[test]
    fn plans_with_throughput_targets_are_valid_on_every_gpu(demands in demands_with_targets()) {
        for gpu in gpu_models() {
            for all_profiles in [false, true] {
                let options = PlanOptions { all_profiles };
                let p = plan(gpu, &demands, options);
                check_plan(gpu, options, &demands, &p);
                prop_assert_eq!(&p, &plan(gpu, &demands, options), "not deterministic");
                let _ = p.to_string();
            }
        }
    }

    #[test]
    fn assignments_use_each_slice_once_and_only_where_the_need_fits(
        demands in demands(),
        slice_gib in prop::collection::vec(1u64..=80, 0..=10),
    ) {
        let slices: Vec<ExistingSlice> = slice_gib
            .iter()
            .enumerate()
            .map(|(i, g)| ExistingSlice {
                id: format!("MIG-{i}"),
                profile: format!("{g}gb"),
                memory_bytes: g << 30,
            })
            .collect();
        let a = assign(&demands, &slices);
        let total: u32 = demands.iter().map(|d| d.replicas).sum();
        prop_assert_eq!((a.assigned.len() + a.unassigned.len()) as u32, total);
        prop_assert_eq!(a.assigned.len() + a.free.len(), slices.len());
        let mut used = BTreeSet::new();
        for s in &a.assigned {
            prop_assert!(used.insert(s.slice.clone()));
            prop_assert!(s.memory_bytes >= s.need_bytes);
            let given = slices.iter().find(|x| x.id == s.slice).unwrap();
            prop_assert_eq!(given.memory_bytes, s.memory_bytes);
        }
        for f in &a.free {
            prop_assert!(!used.contains(&f.id));
        }
        // Nothing left behind that a free slice could have held.
        for u in &a.unassigned {
            prop_assert!(a.free.iter().all(|f| f.memory_bytes < u.need_bytes));
        }
        prop_assert_eq!(a.clone(), assign(&demands, &slices));
    }
}
