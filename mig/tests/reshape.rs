//! The re-partitioning core: the simulated driver's rules, the step
//! planner's choices (against brute force) and the dry-run text.

use mig_slices::catalog::{gpu_model, GpuModel, Profile};
use mig_slices::layout::{self, Instance};
use mig_slices::reshape::{
    apply_gpu, plan_steps, MigControl, MigError, ReshapeError, SimulatedMig, Target, TargetGpu,
    TargetInstance,
};

fn a100() -> &'static GpuModel {
    gpu_model("a100-80gb").unwrap()
}

fn ti(profile: &str, start: u8, model: &str, replica: u32) -> TargetInstance {
    TargetInstance {
        profile: profile.into(),
        start,
        model: model.into(),
        replica,
    }
}

fn target(gpus: Vec<Vec<TargetInstance>>) -> Target {
    Target {
        gpu_model: "a100-80gb".into(),
        gpus: gpus
            .into_iter()
            .enumerate()
            .map(|(index, instances)| TargetGpu {
                index: index as u32,
                instances,
            })
            .collect(),
    }
}

/// Live GPU 0 runs a `3g.40gb` at slot 4 and two `1g.10gb`; GPU 1 a whole
/// `7g.80gb`; GPU 2 one `1g.10gb`. The plan wants a `7g.80gb` and, on its
/// second GPU, `3g.40gb@0 + 2g.20gb@4 + 1g.10gb@6`.
fn worked_example() -> (SimulatedMig, Target) {
    let sim = SimulatedMig::new(vec![
        (a100(), vec![("1g.10gb", 0), ("1g.10gb", 1), ("3g.40gb", 4)]),
        (a100(), vec![("7g.80gb", 0)]),
        (a100(), vec![("4g.40gb", 0), ("3g.40gb", 4)]),
    ])
    .unwrap();
    let t = target(vec![
        vec![ti("7g.80gb", 0, "llama-70b", 0)],
        vec![
            ti("3g.40gb", 0, "qwen-32b", 0),
            ti("2g.20gb", 4, "qwen-7b", 0),
            ti("1g.10gb", 6, "smollm2-135m", 0),
        ],
    ]);
    (sim, t)
}

/// The dry run of the worked example, exactly. GPU 0 keeps its `3g.40gb`
/// at slot 4 and one `1g.10gb` (the plan's own slots 0 and 6 would keep
/// neither); the plan's `7g.80gb` goes to GPU 1, which has one; GPU 2 is
/// left alone (mapping plan GPU 1 there would destroy its `4g.40gb` and
/// create two instances instead of one).
#[test]
fn the_dry_run_of_the_worked_example() {
    let (sim, t) = worked_example();
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    assert_eq!(
        r.to_string(),
        "\
GPU 0 <- plan GPU 1
  before: [0][1] 2 3 [4 5 6 7]
  after:  [0] 1 [2 3][4 5 6 7]
  keep GPU 0 GI 1 (1g.10gb @0, MIG-sim-0-1-1) for smollm2-135m #0
  keep GPU 0 GI 3 (3g.40gb @4, MIG-sim-0-3-3) for qwen-32b #0
  1. destroy GPU 0 GI 2 (1g.10gb @1, MIG-sim-0-2-2)
  2. create GPU 0 2g.20gb @2 for qwen-7b #0
GPU 1 <- plan GPU 0
  before: [0 1 2 3 4 5 6 7]
  after:  [0 1 2 3 4 5 6 7]
  keep GPU 1 GI 1 (7g.80gb @0, MIG-sim-1-1-4) for llama-70b #0
GPU 2: not in the plan, left as it is
  now:    [0 1 2 3][4 5 6 7]
3 kept, 1 destroyed, 1 created; GPU 2 outside the plan (2 instances left as they are)
"
    );
    assert_eq!(
        (r.kept(), r.destroyed(), r.created(), r.untouched()),
        (3, 1, 1, 2)
    );
    let g0 = &r.gpus[0];
    assert_eq!(g0.plan_gpu, Some(1));
    assert_eq!(
        g0.target,
        [
            ti("1g.10gb", 0, "smollm2-135m", 0),
            ti("2g.20gb", 2, "qwen-7b", 0),
            ti("3g.40gb", 4, "qwen-32b", 0),
        ]
    );
    assert_eq!(g0.target_of(&g0.keep[1]).unwrap().model, "qwen-32b");
    assert!(r.gpus[1].is_noop());
    assert_eq!(r.gpus[2].plan_gpu, None);
    assert_eq!(r.gpus[2].keep.len(), 2);
}

/// Profiles and starts on a simulated GPU, sorted by start.
fn layout_of(sim: &SimulatedMig, gpu: usize) -> Vec<(String, u8)> {
    sim.gpus().unwrap()[gpu]
        .instances
        .iter()
        .map(|x| (x.profile.clone(), x.start))
        .collect()
}

fn pairs(v: &[TargetInstance]) -> Vec<(String, u8)> {
    let mut v: Vec<(String, u8)> = v.iter().map(|t| (t.profile.clone(), t.start)).collect();
    v.sort_by_key(|p| p.1);
    v
}

#[test]
fn applying_the_steps_reaches_the_target_and_keeps_the_kept() {
    let (mut sim, t) = worked_example();
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    for g in &r.gpus {
        let created = apply_gpu(&mut sim, g).unwrap();
        assert_eq!(
            created
                .iter()
                .map(|x| (x.profile.clone(), x.start))
                .collect::<Vec<_>>(),
            g.create
                .iter()
                .map(|c| (c.profile.clone(), c.start))
                .collect::<Vec<_>>(),
            "created in the planned order"
        );
        let now = sim.gpus().unwrap()[g.gpu as usize].instances.clone();
        match g.plan_gpu {
            Some(_) => assert_eq!(layout_of(&sim, g.gpu as usize), pairs(&g.target)),
            None => assert_eq!(now, g.keep),
        }
        // Kept instances are the same instances: same id, same uuid.
        for k in &g.keep {
            assert!(now.contains(k), "{k} survived");
        }
    }
    // Once there, planning again has nothing to do.
    let again = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    assert!(again.gpus.iter().all(|g| g.is_noop()), "{again}");
    assert_eq!((again.kept(), again.untouched()), (4, 2));
}

#[test]
fn apply_stops_at_the_first_error() {
    let (mut sim, t) = worked_example();
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    let g0 = &r.gpus[0];
    // A worker still runs on the instance to destroy.
    assert!(sim.occupy(&g0.destroy[0].uuid));
    let e = apply_gpu(&mut sim, g0).unwrap_err();
    assert_eq!(
        e,
        MigError::InUse {
            uuid: "MIG-sim-0-2-2".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "MIG-sim-0-2-2 is in use by a process; stop its worker before destroying it"
    );
    assert_eq!(
        layout_of(&sim, 0).len(),
        3,
        "nothing destroyed, nothing created"
    );
    assert!(sim.release("MIG-sim-0-2-2"));
    sim.fail_next_create(MigError::Driver("injected".into()));
    assert_eq!(
        apply_gpu(&mut sim, g0).unwrap_err(),
        MigError::Driver("injected".into())
    );
    // The destroy happened; the create did not.
    assert_eq!(
        layout_of(&sim, 0),
        [("1g.10gb".to_string(), 0), ("3g.40gb".to_string(), 4)]
    );
}

#[test]
fn the_simulator_enforces_the_placement_rules() {
    let mut sim =
        SimulatedMig::new(vec![(a100(), vec![("2g.20gb", 0)]), (a100(), vec![])]).unwrap();
    let no_room = |profile: &str, start| MigError::NoRoom {
        gpu: 0,
        profile: profile.into(),
        start,
    };
    // Overlap with the 2g.20gb on slots 0-1.
    assert_eq!(
        sim.create(0, "1g.10gb", 1).unwrap_err(),
        no_room("1g.10gb", 1)
    );
    // A start the profile may not take.
    assert_eq!(
        sim.create(0, "3g.40gb", 2).unwrap_err(),
        no_room("3g.40gb", 2)
    );
    assert_eq!(
        sim.create(0, "1g.10gb", 7).unwrap_err(),
        no_room("1g.10gb", 7)
    );
    assert_eq!(
        sim.create(0, "3g.40gb", 2).unwrap_err().to_string(),
        "GPU 0 has no room for 3g.40gb at slot 2"
    );
    // The per-GPU limit of a profile: one `+me`.
    sim.create(0, "1g.10gb+me", 2).unwrap();
    assert_eq!(
        sim.create(0, "1g.10gb+me", 3).unwrap_err(),
        no_room("1g.10gb+me", 3)
    );
    assert!(matches!(
        sim.create(0, "1g.5gb", 3).unwrap_err(),
        MigError::Driver(m) if m.contains("`1g.5gb`") && m.contains("a100-80gb")
    ));
    assert!(matches!(
        sim.create(9, "1g.10gb", 3),
        Err(MigError::Driver(_))
    ));
    assert_eq!(
        sim.destroy(0, 42).unwrap_err(),
        MigError::NotFound { gpu: 0, gi_id: 42 }
    );
    // Ids: the lowest free one; uuids carry a counter that never repeats.
    let a = sim.create(0, "1g.10gb", 3).unwrap();
    assert_eq!((a.gi_id, a.uuid.as_str(), a.size), (3, "MIG-sim-0-3-3", 1));
    sim.destroy(0, 2).unwrap();
    let b = sim.create(0, "1g.10gb", 2).unwrap();
    assert_eq!((b.gi_id, b.uuid.as_str()), (2, "MIG-sim-0-2-4"));
    let c = sim.create(1, "7g.80gb", 0).unwrap();
    assert_eq!(c.uuid, "MIG-sim-1-1-5");
    assert_eq!(
        layout_of(&sim, 0),
        [
            ("2g.20gb".to_string(), 0),
            ("1g.10gb".to_string(), 2),
            ("1g.10gb".to_string(), 3)
        ]
    );
    // In use: destroy refuses until released.
    assert!(sim.occupy(&c.uuid));
    assert!(sim.is_in_use(&c.uuid));
    assert!(!sim.occupy("MIG-nope"));
    assert_eq!(
        sim.destroy(1, c.gi_id).unwrap_err(),
        MigError::InUse {
            uuid: c.uuid.clone()
        }
    );
    assert!(sim.release(&c.uuid));
    sim.destroy(1, c.gi_id).unwrap();
    assert!(sim.gpus().unwrap()[1].instances.is_empty());
    // Injected faults change nothing and are used once.
    sim.fail_next_destroy(MigError::Driver("boom".into()));
    assert_eq!(
        sim.destroy(0, 1).unwrap_err(),
        MigError::Driver("boom".into())
    );
    assert_eq!(layout_of(&sim, 0).len(), 3);
    sim.destroy(0, 1).unwrap();
    assert!(SimulatedMig::new(vec![(a100(), vec![("4g.40gb", 0), ("3g.40gb", 2)])]).is_err());
}

#[test]
fn the_simulator_state_round_trips_through_json() {
    let mut sim = SimulatedMig::new(vec![
        (a100(), vec![("3g.40gb", 4), ("1g.10gb", 0)]),
        (gpu_model("h100-80gb").unwrap(), vec![("7g.80gb", 0)]),
    ])
    .unwrap();
    assert!(sim.occupy("MIG-sim-0-2-2"));
    let json = sim.to_json();
    let mut back = SimulatedMig::from_json(&json).unwrap();
    assert_eq!(back.gpus().unwrap(), sim.gpus().unwrap());
    assert_eq!(back.to_json(), json);
    assert!(back.is_in_use("MIG-sim-0-2-2"));
    // The counter carries on: no uuid is handed out twice (ids 1 and 2 are
    // taken, so the new instance is GI 3).
    assert_eq!(back.create(0, "1g.10gb", 1).unwrap().uuid, "MIG-sim-0-3-4");
    // A hand-written file: only GPUs, profiles in any case.
    let hand = r#"{"gpus": [{"index": 0, "model": "A100-80GB", "instances": [
        {"gpu": 0, "gi_id": 7, "profile": "2G.20GB", "start": 2, "size": 0, "uuid": "MIG-x"}]}]}"#;
    let sim = SimulatedMig::from_json(hand).unwrap();
    let g = &sim.gpus().unwrap()[0];
    assert_eq!(g.model, "a100-80gb");
    assert_eq!(
        (g.instances[0].profile.as_str(), g.instances[0].size),
        ("2g.20gb", 2)
    );
    // A state that breaks the rules is refused, naming the GPU and slot.
    let bad = hand.replace(
        r#""gpus": [{"#,
        r#""gpus": [{"index": 0, "model": "a100-80gb", "instances": [
        {"gpu": 0, "gi_id": 1, "profile": "1g.10gb", "start": 3, "size": 1, "uuid": "MIG-y"},
        {"gpu": 0, "gi_id": 7, "profile": "2g.20gb", "start": 2, "size": 2, "uuid": "MIG-x"}]}, {"#,
    );
    let e = SimulatedMig::from_json(&bad).unwrap_err().to_string();
    assert!(e.contains("GPU 0: slot 3 is taken by both"), "{e}");
}

#[test]
fn mismatched_models_and_too_few_gpus_are_errors() {
    let sim = SimulatedMig::new(vec![
        (a100(), vec![]),
        (gpu_model("h100-80gb").unwrap(), vec![]),
    ])
    .unwrap();
    let t = target(vec![vec![ti("7g.80gb", 0, "m", 0)]]);
    let e = plan_steps(&sim.gpus().unwrap(), &t).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the plan is for a100-80gb, but GPU 1 is h100-80gb"
    );
    let one = SimulatedMig::new(vec![(a100(), vec![])]).unwrap();
    let t = target(vec![
        vec![ti("7g.80gb", 0, "m", 0)],
        vec![ti("1g.10gb", 0, "m", 1)],
    ]);
    let e = plan_steps(&one.gpus().unwrap(), &t).unwrap_err();
    assert_eq!(e, ReshapeError::TooFewGpus { plan: 2, live: 1 });
    assert_eq!(
        e.to_string(),
        "the plan uses 2 GPUs, but this machine has 1 with MIG on"
    );
    let t = target(vec![vec![ti("3g.40gb", 2, "m", 0)]]);
    let e = plan_steps(&one.gpus().unwrap(), &t).unwrap_err();
    assert_eq!(
        e.to_string(),
        "plan GPU 0: `3g.40gb` cannot start at slot 2 on a100-80gb; allowed starts: 0, 4"
    );
    let mut t = target(vec![]);
    t.gpu_model = "v100".into();
    assert_eq!(
        plan_steps(&one.gpus().unwrap(), &t)
            .unwrap_err()
            .to_string(),
        "the plan is for GPU model `v100`, which is not in the catalog"
    );
}

/// A real plan, serialised as `mig-gateway plan --out` writes it, reads back
/// with every instance; a broken one names the field.
#[test]
fn targets_read_plan_json() {
    use mig_slices::need::MemoryNeed;
    use mig_slices::planner::{plan, Demand, PlanOptions};
    let gib = |g: u64| g << 30;
    let demands = [
        Demand::new("qwen-7b", MemoryNeed::total(gib(15)), 1),
        Demand::new("smollm2-135m", MemoryNeed::total(gib(1)), 2),
        Demand::new("qwen-32b", MemoryNeed::total(gib(35)), 2),
    ];
    let p = plan(a100(), &demands, PlanOptions::default());
    let json = serde_json::to_string(&p).unwrap();
    let t = Target::from_json(&json).unwrap();
    assert_eq!(t.gpu_model, "a100-80gb");
    assert_eq!(t.gpus.len(), p.gpus.len());
    for (tg, pg) in t.gpus.iter().zip(&p.gpus) {
        assert_eq!(tg.index, pg.index);
        let want: Vec<TargetInstance> = pg
            .instances
            .iter()
            .map(|i| ti(i.profile.name, i.start, &i.model, i.replica))
            .collect();
        assert_eq!(tg.instances, want);
    }
    assert_eq!(t.gpus.iter().map(|g| g.instances.len()).sum::<usize>(), 5);
    // On empty GPUs the steps create exactly the plan, at its own slots.
    let sim =
        SimulatedMig::new(vec![(a100(), vec![]), (a100(), vec![]), (a100(), vec![])]).unwrap();
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    for (g, tg) in r.planned().zip(&t.gpus) {
        assert_eq!(g.plan_gpu, Some(tg.index));
        assert_eq!(pairs(&g.target), pairs(&tg.instances));
    }

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["gpus"][0]["instances"][1]["start"] = "two".into();
    let e = Target::from_json(&v.to_string()).unwrap_err();
    assert!(
        matches!(&e, ReshapeError::Json { path, .. } if path == "gpus[0].instances[1].start"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("plan: gpus[0].instances[1].start: invalid type"),
        "{e}"
    );
    v["gpus"][0]["instances"][1]
        .as_object_mut()
        .unwrap()
        .remove("start");
    let e = Target::from_json(&v.to_string()).unwrap_err().to_string();
    assert!(
        e.contains("gpus[0].instances[1]") && e.contains("missing field `start`"),
        "{e}"
    );
    let e = Target::from_json("{}").unwrap_err().to_string();
    assert!(e.contains("missing field `gpu_model`"), "{e}");
}

/// A layout from random picks: each `(profile, start)` pick (indices into
/// the a100-80gb tables) is added when the layout stays valid.
fn random_layout(picks: &[(usize, usize)]) -> Vec<(&'static str, u8)> {
    let profiles = a100().profiles;
    let mut out: Vec<(&'static str, u8)> = Vec::new();
    for &(p, s) in picks {
        let profile = &profiles[p % profiles.len()];
        let start = profile.placements[s % profile.placements.len()].start;
        let mut next: Vec<Instance> = out
            .iter()
            .map(|&(profile, start)| Instance {
                profile: profile.into(),
                start,
            })
            .collect();
        next.push(Instance {
            profile: profile.name.into(),
            start,
        });
        if layout::validate(a100(), &next).is_ok() {
            out.push((profile.name, start));
        }
    }
    out
}

/// The most live instances any valid placement of `profiles` keeps: every
/// assignment of allowed starts, overlaps pruned, matches counted.
fn brute_max_kept(live: &[(String, u8)], profiles: &[&'static Profile]) -> usize {
    fn go(
        live: &[(String, u8)],
        profiles: &[&'static Profile],
        used: u32,
        cur: &mut Vec<(&'static str, u8)>,
        best: &mut usize,
    ) {
        let Some(p) = profiles.get(cur.len()) else {
            let kept = live
                .iter()
                .filter(|(name, start)| cur.iter().any(|(n, s)| n == name && s == start))
                .count();
            *best = (*best).max(kept);
            return;
        };
        for pl in p.placements {
            let m = ((1u32 << pl.size) - 1) << pl.start;
            if used & m == 0 {
                cur.push((p.name, pl.start));
                go(live, profiles, used | m, cur, best);
                cur.pop();
            }
        }
    }
    let mut best = 0;
    go(live, profiles, 0, &mut Vec::new(), &mut best);
    best
}

/// The fewest live instances destroyed over every mapping of plan GPUs to
/// live GPUs (GPUs outside the plan lose nothing).
fn brute_min_destroyed(live: &[Vec<(String, u8)>], plan: &[Vec<&'static Profile>]) -> usize {
    fn go(
        live: &[Vec<(String, u8)>],
        plan: &[Vec<&'static Profile>],
        used: &mut Vec<bool>,
        sum: usize,
        best: &mut usize,
    ) {
        let p = used.iter().filter(|u| **u).count();
        if p == plan.len() {
            *best = (*best).min(sum);
            return;
        }
        for l in 0..live.len() {
            if !used[l] {
                used[l] = true;
                let destroyed = live[l].len() - brute_max_kept(&live[l], &plan[p]);
                go(live, plan, used, sum + destroyed, best);
                used[l] = false;
            }
        }
    }
    let mut best = usize::MAX;
    go(live, plan, &mut vec![false; live.len()], 0, &mut best);
    best
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// On random live layouts and plans (a100-80gb, up to 3 GPUs each),
    /// the steps destroy exactly as few instances as brute force finds,
    /// keep only instances the plan has at that slot, end in a valid layout
    /// with the plan's profiles and replicas, and the simulator reaches it.
    #[test]
    fn the_steps_destroy_the_fewest_instances(
        live in proptest::collection::vec(proptest::collection::vec((0usize..7, 0usize..8), 0..10), 1..=3),
        planned in proptest::collection::vec(proptest::collection::vec((0usize..7, 0usize..8), 0..10), 1..=3),
    ) {
        proptest::prop_assume!(planned.len() <= live.len());
        let live_layouts: Vec<Vec<(&'static str, u8)>> = live.iter().map(|g| random_layout(g)).collect();
        let mut sim = SimulatedMig::new(live_layouts.iter().map(|l| (a100(), l.clone())).collect()).unwrap();
        let t = target(
            planned
                .iter()
                .enumerate()
                .map(|(g, picks)| {
                    random_layout(picks)
                        .into_iter()
                        .enumerate()
                        .map(|(k, (p, s))| ti(p, s, &format!("m{g}"), k as u32))
                        .collect()
                })
                .collect(),
        );
        let before = sim.gpus().unwrap();
        let r = plan_steps(&before, &t).unwrap();

        let live_pairs: Vec<Vec<(String, u8)>> = before
            .iter()
            .map(|g| g.instances.iter().map(|x| (x.profile.clone(), x.start)).collect())
            .collect();
        let plan_profiles: Vec<Vec<&'static Profile>> = t
            .gpus
            .iter()
            .map(|g| g.instances.iter().map(|i| a100().profile(&i.profile).unwrap()).collect())
            .collect();
        proptest::prop_assert_eq!(r.destroyed(), brute_min_destroyed(&live_pairs, &plan_profiles), "{}", r);

        let mut mapped: Vec<u32> = r.planned().map(|g| g.plan_gpu.unwrap()).collect();
        mapped.sort_unstable();
        proptest::prop_assert_eq!(mapped, (0..t.gpus.len() as u32).collect::<Vec<_>>());
        for g in &r.gpus {
            let live_g = &before[g.gpu as usize].instances;
            let mut all: Vec<_> = g.keep.iter().chain(&g.destroy).cloned().collect();
            all.sort_by_key(|x| x.start);
            proptest::prop_assert_eq!(&all, live_g);
            let Some(p) = g.plan_gpu else {
                proptest::prop_assert!(g.destroy.is_empty() && g.create.is_empty());
                continue;
            };
            let plan_g = &t.gpus[p as usize].instances;
            // Same replicas with the same profiles; starts may move.
            let key = |v: &[TargetInstance]| {
                let mut k: Vec<(String, String, u32)> =
                    v.iter().map(|i| (i.profile.clone(), i.model.clone(), i.replica)).collect();
                k.sort();
                k
            };
            proptest::prop_assert_eq!(key(&g.target), key(plan_g));
            let wanted: Vec<Instance> = g
                .target
                .iter()
                .map(|i| Instance { profile: i.profile.clone(), start: i.start })
                .collect();
            proptest::prop_assert!(layout::validate(a100(), &wanted).is_ok());
            let mut end: Vec<(String, u8)> = g
                .keep
                .iter()
                .map(|k| (k.profile.clone(), k.start))
                .chain(g.create.iter().map(|c| (c.profile.clone(), c.start)))
                .collect();
            end.sort_by_key(|p| p.1);
            proptest::prop_assert_eq!(&end, &pairs(&g.target));
            let created = apply_gpu(&mut sim, g).unwrap();
            proptest::prop_assert_eq!(created.len(), g.create.len());
            proptest::prop_assert_eq!(layout_of(&sim, g.gpu as usize), end);
        }
    }
}

/// The largest case the search is meant for: 8 GPUs, each with 7 live
/// instances, against a plan of 8 full GPUs. Exact, and quick even in a
/// debug build.
#[test]
fn eight_full_gpus_plan_quickly() {
    let sevens: Vec<(&str, u8)> = (0..7).map(|s| ("1g.10gb", s)).collect();
    let mixed = vec![
        ("2g.20gb", 0),
        ("1g.10gb", 2),
        ("1g.10gb", 3),
        ("3g.40gb", 4),
    ];
    let live: Vec<(&'static GpuModel, Vec<(&str, u8)>)> = (0..8)
        .map(|g| {
            (
                a100(),
                if g % 2 == 0 {
                    sevens.clone()
                } else {
                    mixed.clone()
                },
            )
        })
        .collect();
    let sim = SimulatedMig::new(live).unwrap();
    // Plan GPUs: four want seven 1g (at the plan's slots 0-6), four want
    // 3g + 2g + 1g with the 3g at slot 0 (live has it at 4).
    let t = target(
        (0..8)
            .map(|g| {
                if g < 4 {
                    (0..7)
                        .map(|s| ti("1g.10gb", s, "small", g * 7 + u32::from(s)))
                        .collect()
                } else {
                    vec![
                        ti("3g.40gb", 0, "big", g),
                        ti("2g.20gb", 4, "mid", g),
                        ti("1g.10gb", 6, "small", 100 + g),
                    ]
                }
            })
            .collect(),
    );
    let started = std::time::Instant::now();
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    let took = started.elapsed();
    // Every 1g-only plan GPU lands on a GPU of sevens (nothing destroyed
    // there); every mixed one on a mixed GPU, keeping the 3g at slot 4, the
    // 2g at 0 and one 1g: one 1g destroyed each.
    assert_eq!((r.destroyed(), r.created()), (4, 0), "{r}");
    assert_eq!(r.kept(), 4 * 7 + 4 * 3);
    for g in r.planned() {
        let p = g.plan_gpu.unwrap();
        assert_eq!(g.gpu % 2 == 0, p < 4, "{r}");
    }
    assert!(took.as_secs_f64() < 2.0, "{took:?}");
}

#[test]
fn gpus_outside_the_plan_are_left_alone_and_ties_go_to_the_lowest_gpu() {
    let t = target(vec![vec![ti("4g.40gb", 0, "m", 0)]]);
    // GPU 0 would lose its instance; GPU 1 is empty: the plan goes to GPU 1.
    let sim = SimulatedMig::new(vec![(a100(), vec![("1g.10gb", 0)]), (a100(), vec![])]).unwrap();
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    assert_eq!(
        r.gpus.iter().map(|g| g.plan_gpu).collect::<Vec<_>>(),
        [None, Some(0)]
    );
    assert_eq!((r.destroyed(), r.created(), r.untouched()), (0, 1, 1));
    // Two empty GPUs: the lowest.
    let sim = SimulatedMig::new(vec![(a100(), vec![]), (a100(), vec![])]).unwrap();
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    assert_eq!(r.gpus[0].plan_gpu, Some(0));
    assert_eq!(
        r.gpus[0].create,
        [ti("4g.40gb", 0, "m", 0)],
        "the plan's own slot"
    );
    // Equal destroys (the 1g.10gb either way): the GPU where fewer must be
    // created, although it is not the lowest.
    let sim = SimulatedMig::new(vec![
        (a100(), vec![("1g.10gb", 0)]),
        (a100(), vec![("1g.10gb", 0), ("3g.40gb", 4)]),
    ])
    .unwrap();
    let t = target(vec![vec![
        ti("3g.40gb", 0, "a", 0),
        ti("2g.20gb", 4, "b", 0),
    ]]);
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    assert_eq!(r.gpus[1].plan_gpu, Some(0), "{r}");
    assert_eq!((r.destroyed(), r.created()), (1, 1), "{r}");
    assert_eq!(r.gpus[1].create, [ti("2g.20gb", 0, "b", 0)], "{r}");
}

/// The same search on a GPU with 4 memory slots.
#[test]
fn a30_layouts_are_kept_where_they_sit() {
    let a30 = gpu_model("a30-24gb").unwrap();
    let mut sim = SimulatedMig::new(vec![(a30, vec![("1g.6gb", 0), ("2g.12gb", 2)])]).unwrap();
    let t = Target {
        gpu_model: "a30-24gb".into(),
        gpus: vec![TargetGpu {
            index: 0,
            instances: vec![
                ti("2g.12gb", 0, "b", 0),
                ti("1g.6gb", 2, "a", 0),
                ti("1g.6gb", 3, "a", 1),
            ],
        }],
    };
    let r = plan_steps(&sim.gpus().unwrap(), &t).unwrap();
    let g = &r.gpus[0];
    assert_eq!((r.kept(), r.destroyed()), (2, 0), "{r}");
    assert_eq!(g.create, [ti("1g.6gb", 1, "a", 1)], "{r}");
    apply_gpu(&mut sim, g).unwrap();
    assert_eq!(
        layout_of(&sim, 0),
        [
            ("1g.6gb".to_string(), 0),
            ("1g.6gb".to_string(), 1),
            ("2g.12gb".to_string(), 2)
        ]
    );
}

/// Without the NVIDIA driver (CI, laptops) the NVML control fails to start
/// with a driver error rather than a panic. Nothing else of it runs in tests.
#[test]
fn nvml_control_without_a_driver_is_a_driver_error() {
    match mig_slices::reshape::NvmlMig::new() {
        Err(MigError::Driver(m)) => assert!(m.starts_with("NVML failed to initialise"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        // A machine with the driver: loading it changes nothing.
        Ok(_) => {}
    }
}
