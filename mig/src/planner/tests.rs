use super::*;
use crate::catalog::gpu_model;
use crate::need::{gb, gib, memory_need, ModelShape, GIB};

fn model(id: &str) -> &'static GpuModel {
    gpu_model(id).unwrap()
}

fn check(plan: &Plan) {
    for g in &plan.gpus {
        layout::validate_placed(plan.gpu, &g.placed()).unwrap();
    }
}

#[test]
fn seven_small_models_share_one_a100_80gb() {
    let demands: Vec<Demand> = (0..7)
        .map(|i| Demand::new(format!("small-{i}"), MemoryNeed::total(gb(4.0)), 1))
        .collect();
    let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
    check(&p);
    assert_eq!(p.gpus.len(), 1);
    assert!(p.gpus[0]
        .instances
        .iter()
        .all(|i| i.profile.name == "1g.10gb"));
    assert_eq!(p.gpus[0].slot_map, "[0][1][2][3][4][5][6] 7");
    assert_eq!(
        p.cost,
        Cost {
            replicas_placed: 7,
            whole_gpus: 7,
            mig_gpus: 1,
            gpus_saved: 6
        }
    );
    assert_eq!(p.cost_line(), "7 replicas on 1 GPU instead of 7 (saves 6)");
    assert!(p.unplaceable.is_empty());
}

#[test]
fn seven_b_fp16_models_get_2g_or_1g_20gb_with_all_profiles() {
    let demands: Vec<Demand> = ["mistral-7b", "llama-2-7b", "qwen2-7b"]
        .iter()
        .map(|m| Demand::new(*m, MemoryNeed::total(gb(14.0)), 1))
        .collect();
    let gpu = model("a100-80gb");
    let p = plan(gpu, &demands, PlanOptions::default());
    check(&p);
    assert_eq!(p.gpus.len(), 1);
    assert_eq!(p.gpus[0].slot_map, "[0 1][2 3][4 5] 6 7");
    assert!(p.gpus[0]
        .instances
        .iter()
        .all(|i| i.profile.name == "2g.20gb"));

    let all = PlanOptions { all_profiles: true };
    let p = plan(gpu, &demands, all);
    check(&p);
    assert!(p.gpus[0]
        .instances
        .iter()
        .all(|i| i.profile.name == "1g.20gb"));
    assert_eq!(p.gpus[0].free_compute_slices, 4);
}

#[test]
fn a_70b_fp16_model_fits_no_80gb_profile_and_the_plan_says_why() {
    let demands = [Demand::new(
        "llama-2-70b",
        MemoryNeed::weights(gb(140.0)),
        1,
    )];
    for (id, largest) in [
        ("a100-80gb", "7g.80gb, has 78.75 GiB"),
        ("h100-80gb", "7g.80gb, has 79.25 GiB"),
    ] {
        let p = plan(model(id), &demands, PlanOptions { all_profiles: true });
        assert!(p.gpus.is_empty());
        assert_eq!(p.replicas_unplaceable(), 1);
        assert_eq!(
            p.unplaceable[0].reason,
            format!("needs 130.9 GiB; the largest profile on {id}, {largest}")
        );
        assert_eq!(p.cost_line(), "no replica placed");
    }
}

/// 140 GB of f16 weights is 130.4 GiB, and `7g.141gb` holds 139.75 GiB
/// on the smallest-printing driver (the one plans count on): the weights
/// fit an H200 with 8.9 GiB to spare. A KV cache for 8 requests of 4k
/// tokens (10 GiB) does not.
#[test]
fn a_70b_fp16_model_fits_an_h200_only_with_a_small_cache() {
    let gpu = model("h200-141gb");
    let weights = [Demand::new(
        "llama-2-70b",
        MemoryNeed::weights(gb(140.0)),
        1,
    )];
    let p = plan(gpu, &weights, PlanOptions::default());
    check(&p);
    let i = &p.gpus[0].instances[0];
    assert_eq!(i.profile.name, "7g.141gb");
    assert_eq!(fmt_gib(i.idle_bytes, 1), "8.9 GiB");
    assert_eq!(p.cost_line(), "1 replica on 1 GPU instead of 1 (saves 0)");

    let shape = ModelShape {
        weights_bytes: gb(140.0),
        layers: 80,
        kv_heads: 8,
        head_dim: 128,
        kv_dtype_bytes: 2,
    };
    let cached = [Demand::new("llama-2-70b", memory_need(&shape, 4096, 8), 1)];
    let p = plan(gpu, &cached, PlanOptions::default());
    assert!(p.gpus.is_empty());
    assert_eq!(
        p.unplaceable[0].reason,
        "needs 140.9 GiB; the largest profile on h200-141gb, 7g.141gb, has 140.00 GiB"
    );
}

#[test]
fn replicas_spread_over_more_gpus_when_one_is_full() {
    let demands = [
        Demand::new("big", MemoryNeed::total(gib(30.0)), 3),
        Demand::new("small", MemoryNeed::total(gib(2.0)), 3),
        Demand::new("huge", MemoryNeed::total(gib(500.0)), 2),
    ];
    let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
    check(&p);
    // 3g.40gb x3 need two GPUs; the 1g slices fill the gap on each.
    assert_eq!(p.gpus.len(), 2);
    assert_eq!(p.gpus[0].slot_map, "[0 1 2 3][4 5 6 7]");
    assert_eq!(p.gpus[1].slot_map, "[0 1 2 3][4][5][6] 7");
    assert_eq!(p.cost.replicas_placed, 6);
    assert_eq!(p.cost.gpus_saved, 4);
    assert_eq!(p.replicas_unplaceable(), 2);
    let text = p.to_string();
    assert!(
        text.contains("6 replicas on 2 GPUs instead of 6 (saves 4)"),
        "{text}"
    );
    assert!(text.contains("  huge x2: needs 500.0 GiB"), "{text}");
}

#[test]
fn large_fleets_plan_quickly_and_tightly() {
    let demands = [
        Demand::new("small", MemoryNeed::total(gib(2.0)), 700),
        Demand::new("mid", MemoryNeed::total(gib(15.0)), 300),
    ];
    let p = plan(model("h100-80gb"), &demands, PlanOptions::default());
    // 300 x 2g.20gb fill 100 GPUs three each, a 1g.10gb takes slot 6 on
    // each, and the other 600 go seven per GPU: 186 GPUs, which is also
    // the compute bound (1300 compute slices / 7).
    assert_eq!(p.cost.replicas_placed, 1000);
    assert_eq!(p.gpus.len(), 186);
}

/// Issue 20's first mix: first-fit put both `3g.40gb` on GPU 0 and
/// needed 3 GPUs.
#[test]
fn the_mix_first_fit_spread_over_three_gpus_fits_two() {
    let demands = [
        Demand::new("m30", MemoryNeed::total(gb(30.0)), 2),
        Demand::new("m15", MemoryNeed::total(gb(15.0)), 3),
        Demand::new("m5", MemoryNeed::total(gb(5.0)), 2),
    ];
    let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
    check(&p);
    assert_eq!(p.gpus.len(), 2, "{p}");
    assert!(p.search.exact);
    let mut got: Vec<Vec<&str>> = p
        .gpus
        .iter()
        .map(|g| {
            let mut v: Vec<&str> = g.instances.iter().map(|i| i.profile.name).collect();
            v.sort_unstable();
            v
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            vec!["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"],
            vec!["2g.20gb", "2g.20gb", "3g.40gb"],
        ]
    );
}

/// Issue 20's second mix: with every profile, `1g.20gb` x 3 and
/// `1g.10gb` x 2 share one H100.
#[test]
fn all_profiles_put_three_20gb_and_two_5gb_models_on_one_h100() {
    let demands = [
        Demand::new("big", MemoryNeed::total(gb(20.0)), 3),
        Demand::new("small", MemoryNeed::total(gb(5.0)), 2),
    ];
    let gpu = model("h100-80gb");
    let p = plan(gpu, &demands, PlanOptions { all_profiles: true });
    check(&p);
    assert_eq!(p.gpus.len(), 1, "{p}");
    let mut names: Vec<&str> = p.gpus[0].instances.iter().map(|i| i.profile.name).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["1g.10gb", "1g.10gb", "1g.20gb", "1g.20gb", "1g.20gb"]
    );
    // The balanced ladder has no 1g.20gb: 2g.20gb x 3 leave one compute
    // slice, so two GPUs.
    let p = plan(gpu, &demands, PlanOptions::default());
    check(&p);
    assert_eq!(p.gpus.len(), 2, "{p}");
}

#[test]
fn beyond_the_exact_search_the_plan_states_its_gap() {
    let demands: Vec<Demand> = (0..6)
        .map(|i| {
            Demand::new(
                format!("m{i}"),
                MemoryNeed::total(gib(1.0 + 7.0 * i as f64)),
                40,
            )
        })
        .collect();
    let p = plan(
        model("a100-80gb"),
        &demands,
        PlanOptions { all_profiles: true },
    );
    check(&p);
    assert!(!p.search.exact);
    assert!(p.search.lower_bound as usize <= p.gpus.len());
    let text = p.to_string();
    assert!(
        text.contains("first-fit (mix beyond the exact search): at least"),
        "{text}"
    );
}

/// The best (GPUs, idle memory in slices, distinct profiles) by brute
/// force: every partition of the replicas into GPUs, every fitting
/// profile for each replica, the layout module's placement check.
fn brute_force(gpu: &'static GpuModel, needs: &[u64], options: PlanOptions) -> (usize, u64, u32) {
    let fits = |r: usize, p: &Profile| p.memory_bytes() >= needs[r];
    brute_force_with(gpu, needs, &fits, options)
}

/// [`brute_force`] where replica `r` may take profile `p` when
/// `fits(r, p)`.
fn brute_force_with(
    gpu: &'static GpuModel,
    needs: &[u64],
    fits: &dyn Fn(usize, &Profile) -> bool,
    options: PlanOptions,
) -> (usize, u64, u32) {
    let cands = candidate_profiles(gpu, options);
    // Per group of replicas: profile set (bits) -> least slice memory.
    let group_options = |group: &[usize]| -> Vec<(u32, u64)> {
        let mut best: std::collections::BTreeMap<u32, u64> = Default::default();
        let mut choice = vec![0usize; group.len()];
        'outer: loop {
            let ok = group.iter().zip(&choice).all(|(&r, &c)| fits(r, cands[c]));
            if ok {
                let profiles: Vec<&'static Profile> = choice.iter().map(|&c| cands[c]).collect();
                if layout::place_profiles(gpu, &profiles).is_ok() {
                    let bits = choice.iter().fold(0u32, |b, &c| b | 1 << c);
                    let mem: u64 = profiles.iter().map(|p| p.memory_bytes()).sum();
                    let e = best.entry(bits).or_insert(u64::MAX);
                    *e = (*e).min(mem);
                }
            }
            for c in choice.iter_mut() {
                *c += 1;
                if *c < cands.len() {
                    continue 'outer;
                }
                *c = 0;
            }
            break;
        }
        best.into_iter().collect()
    };
    let n = needs.len();
    let mut best = (usize::MAX, u64::MAX, u32::MAX);
    // Set partitions as restricted growth strings.
    let mut rgs = vec![0usize; n];
    loop {
        let blocks = rgs.iter().max().map_or(0, |m| m + 1);
        let groups: Vec<Vec<usize>> = (0..blocks)
            .map(|b| (0..n).filter(|&r| rgs[r] == b).collect())
            .collect();
        // Combine the groups' options: (profile bits, memory).
        let mut combos: Vec<(u32, u64)> = vec![(0, 0)];
        for g in &groups {
            let opts = group_options(g);
            combos = combos
                .iter()
                .flat_map(|&(b, m)| opts.iter().map(move |&(ob, om)| (b | ob, m + om)))
                .collect();
        }
        for (bits, mem) in combos {
            best = best.min((blocks, mem, bits.count_ones()));
        }
        // Next restricted growth string.
        let mut k = n;
        loop {
            if k <= 1 {
                let need: u64 = needs.iter().sum();
                return (best.0, best.1 - need, best.2);
            }
            k -= 1;
            let max_before = rgs[..k].iter().max().copied().unwrap_or(0);
            if rgs[k] <= max_before {
                rgs[k] += 1;
                rgs[k + 1..].iter_mut().for_each(|x| *x = 0);
                break;
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

    /// With throughput targets (and modelled rates) the planner still
    /// matches the brute force, whose replicas may take any profile that
    /// holds them and decodes fast enough.
    #[test]
    fn plans_with_targets_are_optimal_against_brute_force(
        gpu in 0usize..6,
        all_profiles in proptest::prelude::any::<bool>(),
        mix in proptest::collection::vec((1u64..=80_000, 1u32..=2, 0usize..6), 1..=3),
    ) {
        let gpu = &crate::catalog::gpu_models()[gpu % crate::catalog::gpu_models().len()];
        let options = PlanOptions { all_profiles };
        let largest = gpu.largest_profile().memory_bytes();
        // Targets as fractions of the whole GPU's rate for the model.
        let shares = [0.0, 0.1, 0.2, 0.3, 0.5, 0.9];
        let demands: Vec<Demand> = mix
            .iter()
            .enumerate()
            .map(|(i, &(mib, r, t))| {
                let bytes = (u128::from(largest) * u128::from(mib) / 80_000) as u64;
                let d = Demand::new(format!("m{i}"), MemoryNeed::total(bytes), r);
                let whole = d.rate(gpu, gpu.largest_profile()).unwrap().tokens_per_second;
                if shares[t] > 0.0 { d.with_tokens_per_second(whole * shares[t]) } else { d }
            })
            .collect();
        let owner: Vec<usize> = demands
            .iter()
            .enumerate()
            .flat_map(|(k, d)| std::iter::repeat_n(k, d.replicas as usize))
            .collect();
        let needs: Vec<u64> = owner.iter().map(|&k| demands[k].need.total_bytes).collect();
        proptest::prop_assume!(needs.len() <= 5);
        let p = plan(gpu, &demands, options);
        check(&p);
        proptest::prop_assert!(p.search.exact);
        for i in p.gpus.iter().flat_map(|g| &g.instances) {
            let d = demands.iter().find(|d| d.model == i.model).unwrap();
            proptest::prop_assert!(d.fits(gpu, i.profile));
        }
        // Replicas no profile fits are left out of both.
        let fits = |r: usize, p: &Profile| demands[owner[r]].fits(gpu, p);
        let cands = candidate_profiles(gpu, options);
        let placed: Vec<usize> = (0..needs.len())
            .filter(|&r| cands.iter().any(|c| fits(r, c)))
            .collect();
        proptest::prop_assume!(!placed.is_empty());
        let sub_needs: Vec<u64> = placed.iter().map(|&r| needs[r]).collect();
        let sub_fits = |r: usize, p: &Profile| fits(placed[r], p);
        let distinct = p
            .gpus
            .iter()
            .flat_map(|g| g.instances.iter().map(|i| i.profile.name))
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u32;
        let got = (p.gpus.len(), p.idle_in_slices_bytes, distinct);
        proptest::prop_assert_eq!(got, brute_force_with(gpu, &sub_needs, &sub_fits, options), "{}", p);
    }

    /// The planner's (GPUs, idle memory, distinct profiles) equals the
    /// brute force's on random small mixes.
    #[test]
    fn plans_are_optimal_against_brute_force(
        gpu in 0usize..6,
        all_profiles in proptest::prelude::any::<bool>(),
        mix in proptest::collection::vec((1u64..=80_000, 1u32..=2), 1..=3),
    ) {
        let gpu = &crate::catalog::gpu_models()[gpu % crate::catalog::gpu_models().len()];
        let options = PlanOptions { all_profiles };
        let largest = gpu.largest_profile().memory_bytes();
        let demands: Vec<Demand> = mix
            .iter()
            .enumerate()
            .map(|(i, &(mib, r))| Demand::new(format!("m{i}"), MemoryNeed::total((u128::from(largest) * u128::from(mib) / 80_000) as u64), r))
            .collect();
        let needs: Vec<u64> = demands
            .iter()
            .flat_map(|d| std::iter::repeat_n(d.need.total_bytes, d.replicas as usize))
            .collect();
        proptest::prop_assume!(needs.len() <= 5);
        let p = plan(gpu, &demands, options);
        check(&p);
        let distinct = p
            .gpus
            .iter()
            .flat_map(|g| g.instances.iter().map(|i| i.profile.name))
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u32;
        let got = (p.gpus.len(), p.idle_in_slices_bytes, distinct);
        proptest::prop_assert!(p.search.exact);
        proptest::prop_assert_eq!(got, brute_force(gpu, &needs, options), "{}", p);
    }
}

/// Issue 20: 7B fp16 replicas (14 GB read per token) asking for 80, 40
/// and 20 tok/s on an A100 80GB take `4g.40gb` (~83), `2g.20gb` (~42)
/// and `1g.20gb` (~21): the fast one skips `3g.40gb` (~62) although it
/// holds the memory, and all three share one GPU.
#[test]
fn throughput_targets_pick_profiles_fast_enough() {
    let gpu = model("a100-80gb");
    let d = |name: &str, tps: f64| {
        Demand::new(name, MemoryNeed::total(gb(14.0)), 1).with_tokens_per_second(tps)
    };
    let demands = [d("fast", 80.0), d("mid", 40.0), d("slow", 20.0)];
    let p = plan(gpu, &demands, PlanOptions { all_profiles: true });
    check(&p);
    assert!(p.search.exact);
    assert_eq!(p.gpus.len(), 1, "{p}");
    let got: BTreeMap<&str, &str> = p.gpus[0]
        .instances
        .iter()
        .map(|i| (i.model.as_str(), i.profile.name))
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([("fast", "4g.40gb"), ("mid", "2g.20gb"), ("slow", "1g.20gb")])
    );
    for i in &p.gpus[0].instances {
        let rate = i.decode_rate.unwrap().tokens_per_second;
        assert!(rate >= i.tokens_per_second.unwrap(), "{p}");
    }
    assert_eq!(
        choose_profile_for(gpu, &demands[0], PlanOptions::default()).map(|p| p.name),
        Some("4g.40gb")
    );
    // Without targets the same replicas take the smallest memory.
    let plain: Vec<Demand> = demands
        .iter()
        .map(|d| Demand::new(d.model.clone(), d.need, 1))
        .collect();
    let p = plan(gpu, &plain, PlanOptions { all_profiles: true });
    assert!(p.gpus[0]
        .instances
        .iter()
        .all(|i| i.profile.name == "1g.20gb"));
    // The table prints the rate beside the target.
    let text = plan(gpu, &demands, PlanOptions { all_profiles: true }).to_string();
    assert!(
        text.contains("4g.40gb @0  fast #0  need 13.0 GiB  idle 26.2 GiB  ~83 tok/s (target 80)"),
        "{text}"
    );
}

/// What makes modelled targets always exact (see [`packing`]): in every
/// catalog table a profile with more memory never has fewer compute
/// slices, so the sets "holds the need and has enough compute" are
/// nested. A GPU that breaks this still gets valid plans, first-fit
/// ([`Fallback::Unordered`]), and the packing's docs need a word.
#[test]
fn more_memory_never_means_fewer_compute_slices() {
    for gpu in crate::catalog::gpu_models() {
        for p in gpu.profiles {
            for q in gpu.profiles {
                assert!(
                    p.memory_mib <= q.memory_mib || p.compute_slices >= q.compute_slices,
                    "{}: {} has more memory than {} but fewer compute slices",
                    gpu.id,
                    p.name,
                    q.name
                );
            }
        }
    }
}

#[test]
fn a_target_no_profile_reaches_is_unplaceable_naming_the_fastest() {
    let gpu = model("a100-80gb");
    let demands = [
        Demand::new("llama-7b", MemoryNeed::total(gb(14.0)), 2).with_tokens_per_second(200.0),
        Demand::new("ok", MemoryNeed::total(gb(14.0)), 1).with_tokens_per_second(60.0),
    ];
    let p = plan(gpu, &demands, PlanOptions::default());
    check(&p);
    assert_eq!(p.replicas_unplaceable(), 2);
    assert_eq!(
        p.unplaceable[0].reason,
        "needs 200 tok/s; the fastest profile, 7g.80gb, gives ~146 tok/s"
    );
    assert_eq!(p.gpus[0].instances[0].profile.name, "3g.40gb");
    // A measured rate counts: 210 measured on 7g.80gb places it.
    let measured = [demands[0].clone().with_measured("7g.80gb", 210.0)];
    let p = plan(gpu, &measured, PlanOptions::default());
    assert!(p.unplaceable.is_empty(), "{p}");
    assert_eq!(p.gpus.len(), 2);
    let i = &p.gpus[0].instances[0];
    assert_eq!(i.profile.name, "7g.80gb");
    assert_eq!(i.decode_rate.unwrap().to_string(), "210 tok/s measured");
    // Memory first: a model no profile holds says so, target or not.
    let huge = [Demand::new("huge", MemoryNeed::total(gb(200.0)), 1).with_tokens_per_second(1.0)];
    let p = plan(gpu, &huge, PlanOptions::default());
    assert!(p.unplaceable[0]
        .reason
        .starts_with("needs 186.3 GiB; the largest profile"));
}

/// A measured rate below the model's moves the replica up; one above it
/// moves it down.
#[test]
fn measured_rates_override_the_model() {
    let gpu = model("h100-80gb");
    let base = Demand::new("m", MemoryNeed::total(gb(14.0)), 1).with_tokens_per_second(60.0);
    // Modelled: 2g.20gb ~68 meets 60.
    assert_eq!(
        choose_profile_for(gpu, &base, PlanOptions::default())
            .unwrap()
            .name,
        "2g.20gb"
    );
    let slower = base.clone().with_measured("2g.20gb", 50.0);
    assert_eq!(
        choose_profile_for(gpu, &slower, PlanOptions::default())
            .unwrap()
            .name,
        "3g.40gb"
    );
    let faster = base.with_measured("1g.10gb", 61.0);
    // 1g.10gb (9.75 GiB) does not hold 13.0 GiB: memory still decides.
    assert_eq!(
        choose_profile_for(gpu, &faster, PlanOptions::default())
            .unwrap()
            .name,
        "2g.20gb"
    );
    let small = Demand::new("s", MemoryNeed::total(gb(5.0)), 1)
        .with_tokens_per_second(60.0)
        .with_measured("1g.10gb", 61.0);
    assert_eq!(
        choose_profile_for(gpu, &small, PlanOptions::default())
            .unwrap()
            .name,
        "1g.10gb"
    );
}

/// Measured rates that make `3g.40gb` fast for one model and `4g.40gb`
/// for another give fitting sets that are not nested: the plan is
/// first-fit, valid, and says why.
#[test]
fn unordered_fitting_sets_fall_back_to_first_fit_and_say_so() {
    let gpu = model("a100-80gb");
    let a = Demand::new("a", MemoryNeed::total(gb(30.0)), 1)
        .with_tokens_per_second(100.0)
        .with_measured("3g.40gb", 120.0)
        .with_measured("4g.40gb", 90.0);
    let b = Demand::new("b", MemoryNeed::total(gb(30.0)), 1)
        .with_tokens_per_second(100.0)
        .with_measured("3g.40gb", 90.0)
        .with_measured("4g.40gb", 120.0);
    let p = plan(gpu, &[a, b], PlanOptions::default());
    check(&p);
    assert!(!p.search.exact);
    assert_eq!(p.search.fallback, Some(Fallback::Unordered));
    assert!(p.unplaceable.is_empty());
    for i in p.gpus.iter().flat_map(|g| &g.instances) {
        assert!(i.decode_rate.unwrap().tokens_per_second >= 100.0, "{p}");
    }
    assert!(
        p.to_string()
            .contains("first-fit (throughput targets the exact search cannot order)"),
        "{p}"
    );
}

#[test]
fn the_price_line_multiplies_gpus_by_the_hourly_price() {
    let demands = [Demand::new("m", MemoryNeed::total(gb(30.0)), 3)];
    let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
    assert_eq!(p.gpus.len(), 2);
    let price = p.price(2.5);
    assert_eq!(price.per_hour, 5.0);
    assert_eq!(price.to_string(), "cost: 2 GPUs x $2.50/h = $5.00/h");
    let one = plan(model("a100-80gb"), &demands[..0], PlanOptions::default());
    assert_eq!(
        one.price(1.0).to_string(),
        "cost: 0 GPUs x $1.00/h = $0.00/h"
    );
    let v = serde_json::to_value(price).unwrap();
    assert_eq!(v["per_gpu_hour"], 2.5);
    assert_eq!(v["gpus"], 2);
}

#[test]
fn the_table_shows_slots_needs_and_idle_memory() {
    let demands = [
        Demand::new("smollm2-135m", MemoryNeed::total(gib(0.4)), 2),
        Demand::new("qwen2.5-7b", MemoryNeed::total(gb(16.0)), 1),
    ];
    let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
    assert_eq!(
        p.to_string(),
        "\
MIG plan for a100-80gb (NVIDIA A100 80GB), balanced profiles
GPU 0  [0 1][2][3] 4 5 6 7
  2g.20gb @0  qwen2.5-7b #0    need 14.9 GiB  idle 4.6 GiB
  1g.10gb @2  smollm2-135m #0  need 0.4 GiB   idle 9.1 GiB
  1g.10gb @3  smollm2-135m #1  need 0.4 GiB   idle 9.1 GiB
  free slots: 4, 5, 6, 7 (39.4 GiB); compute slices unused: 3 of 7
idle: 22.8 GiB inside slices, 39.4 GiB in free slots
3 replicas on 1 GPU instead of 3 (saves 2)
"
    );
}

#[test]
fn plans_serialise_with_names_not_whole_catalog_entries() {
    let demands = [Demand::new("m", MemoryNeed::total(GIB), 1)];
    let p = plan(model("a30-24gb"), &demands, PlanOptions::default());
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["gpu_model"], "a30-24gb");
    assert_eq!(v["gpus"][0]["instances"][0]["profile"], "1g.6gb");
    assert_eq!(v["gpus"][0]["instances"][0]["profile_id"], 14);
    assert_eq!(v["cost"]["gpus_saved"], 0);
}

fn slice(id: &str, profile: &str, gib_: f64) -> ExistingSlice {
    ExistingSlice {
        id: id.into(),
        profile: profile.into(),
        memory_bytes: gib(gib_),
    }
}

#[test]
fn assigns_the_smallest_slice_that_fits_largest_need_first() {
    let slices = [
        slice("MIG-c", "3g.40gb", 39.25),
        slice("MIG-a", "1g.10gb", 9.5),
        slice("MIG-b", "1g.10gb", 9.5),
        slice("MIG-d", "2g.20gb", 19.5),
    ];
    let demands = [
        Demand::new("tiny", MemoryNeed::total(gib(1.0)), 2),
        Demand::new("mid", MemoryNeed::total(gib(12.0)), 1),
        Demand::new("big", MemoryNeed::total(gib(30.0)), 2),
    ];
    let a = assign(&demands, &slices);
    let got: Vec<(&str, u32, &str)> = a
        .assigned
        .iter()
        .map(|s| (s.model.as_str(), s.replica, s.slice.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("tiny", 0, "MIG-a"),
            ("tiny", 1, "MIG-b"),
            ("mid", 0, "MIG-d"),
            ("big", 0, "MIG-c"),
        ]
    );
    assert_eq!(a.assigned[2].profile, "2g.20gb");
    assert_eq!(
        a.assigned[0].to_string(),
        "tiny #0 on MIG-a (1g.10gb, idle 8.5 GiB)"
    );
    assert_eq!(a.unassigned.len(), 1);
    assert_eq!(a.unassigned[0].model, "big");
    assert_eq!(a.unassigned[0].replica, 1);
    assert_eq!(
        a.unassigned[0].reason,
        "needs 30.0 GiB; the 1 slice with room for it (MIG-c) went to replicas needing as much or more"
    );
    assert!(a.free.is_empty());
    assert!(a.unassigned[0]
        .to_string()
        .starts_with("big #1: needs 30.0 GiB; "));
}

#[test]
fn reports_when_no_slice_is_large_enough() {
    let slices = [
        slice("MIG-a", "1g.10gb", 9.5),
        slice("MIG-b", "2g.20gb", 19.5),
    ];
    let a = assign(
        &[Demand::new("70b", MemoryNeed::total(gib(130.0)), 1)],
        &slices,
    );
    assert_eq!(
        a.unassigned[0].reason,
        "needs 130.0 GiB; the largest slice, MIG-b (2g.20gb), has 19.50 GiB"
    );
    assert_eq!(a.free.len(), 2);
    assert_eq!(a.free[0].id, "MIG-a");
    let a = assign(&[Demand::new("m", MemoryNeed::total(1), 1)], &[]);
    assert_eq!(a.unassigned[0].reason, "needs 0.0 GiB; there are no slices");
}
