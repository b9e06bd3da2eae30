//! Unit tests of the catalog tables and lookups.
use super::*;

#[test]
fn gib_recovers_the_driver_grid() {
    assert_eq!(lgip_mib(962), 9856);
    assert_eq!(lgip_mib(475), 4864);
    assert_eq!(lgip_mib(1950), 19968);
    assert_eq!(lgip_mib(3925), 40192);
    assert_eq!(lgip_mib(581), 5952);
    assert_eq!(lgip_mib(1062), 10880);
    assert_eq!(lgip_mib(975), 9984);
}

/// The label prints what `-lgip` printed (Rust rounds the exact ties
/// such as 9.625 to even, as the driver's output does), and reading the
/// label back through [`lgip_mib`] gives the stored size.
#[test]
fn memory_labels_round_trip_through_the_lgip_figures() {
    let label = |gpu: &str, p: &str| {
        gpu_model(gpu)
            .unwrap()
            .profile(p)
            .unwrap()
            .memory_gib_label()
    };
    assert_eq!(label("a100-40gb", "1g.10gb"), "9.62 GiB");
    assert_eq!(label("h100-94gb", "7g.94gb"), "92.62 GiB");
    assert_eq!(label("h100-80gb", "1g.20gb"), "19.62 GiB");
    assert_eq!(label("a30-24gb", "4g.24gb"), "23.44 GiB");
    assert_eq!(label("a30-24gb", "2g.12gb"), "11.69 GiB");
    for m in gpu_models() {
        for p in m.profiles {
            let text = p.memory_gib_label();
            let hundredths: u64 = text
                .trim_end_matches(" GiB")
                .replace('.', "")
                .parse()
                .unwrap();
            assert_eq!(lgip_mib(hundredths), p.memory_mib, "{} {}", m.id, p.name);
        }
    }
}

#[test]
fn every_profile_is_consistent_with_its_gpu() {
    for m in gpu_models() {
        assert!(!m.profiles.is_empty());
        for p in m.profiles {
            assert!(!p.placements.is_empty(), "{} {}", m.id, p.name);
            for pl in p.placements {
                assert_eq!(pl.size, p.memory_slices, "{} {}", m.id, p.name);
                assert!(pl.start + pl.size <= m.memory_slices, "{} {}", m.id, p.name);
                assert_eq!(pl.start % pl.size, 0, "{} {} aligned", m.id, p.name);
            }
            assert!(p.compute_slices <= m.compute_slices);
            assert!(usize::from(p.max_count) <= p.placements.len().max(1));
            assert!(p.memory_mib < m.memory_mib, "{} {}", m.id, p.name);
            assert!(p.min_memory_mib() <= p.memory_mib, "{} {}", m.id, p.name);
            assert_eq!(p.variant, Variant::of_name(p.name), "{} {}", m.id, p.name);
            if let Some(u) = p.units {
                assert!(u.copy_engines >= 1, "{} {}", m.id, p.name);
            }
            assert!(p.name.starts_with(&format!("{}g.", p.compute_slices)));
            assert_eq!(m.profile(p.name), Some(p));
            assert_eq!(m.profile_by_id(p.id), Some(p));
        }
        let largest = m.largest_profile();
        assert_eq!(largest.compute_slices, m.compute_slices);
        assert_eq!(largest.memory_slices, m.memory_slices);
        assert!(m.is_balanced(largest));
    }
}

#[test]
fn finds_models_by_loose_ids() {
    assert_eq!(gpu_model("H100-80GB").unwrap().id, "h100-80gb");
    assert_eq!(gpu_model("h100_80gb").unwrap().id, "h100-80gb");
    assert_eq!(gpu_model("h100-nvl").unwrap().id, "h100-94gb");
    assert_eq!(gpu_model("H200").unwrap().id, "h200-141gb");
    assert_eq!(gpu_model("a30").unwrap().id, "a30-24gb");
    assert!(gpu_model("h100").is_none(), "ambiguous: 80GB or NVL");
    assert!(gpu_model("v100-32gb").is_none());
}

#[test]
fn profiles_by_name_accept_the_nvml_prefix() {
    let m = gpu_model("a100-80gb").unwrap();
    assert_eq!(m.profile("MIG 1g.10gb").unwrap().id, 19);
    assert_eq!(m.profile("1G.10GB+ME").unwrap().id, 20);
    assert!(m.profile("1g.5gb").is_none());
    assert_eq!(
        m.profile("3g.40gb").unwrap().memory_gib_label(),
        "39.25 GiB"
    );
}

#[test]
fn maps_nvml_names_and_memory_to_models() {
    let gib = |g: u64| g << 30;
    let id = |n: &str, mem: u64| GpuModel::from_nvml_name(n, mem).map(|m| m.id);
    assert_eq!(id("NVIDIA A100-SXM4-80GB", 81_920 << 20), Some("a100-80gb"));
    assert_eq!(id("NVIDIA A100 80GB PCIe", 81_920 << 20), Some("a100-80gb"));
    assert_eq!(id("NVIDIA A100-PCIE-40GB", 40_537 << 20), Some("a100-40gb"));
    assert_eq!(id("NVIDIA H100 80GB HBM3", 81_559 << 20), Some("h100-80gb"));
    assert_eq!(id("NVIDIA H100 PCIe", 81_559 << 20), Some("h100-pcie-80gb"));
    assert_eq!(id("NVIDIA H800", 81_559 << 20), Some("h800-80gb"));
    assert_eq!(id("NVIDIA A800-SXM4-80GB", 81_920 << 20), Some("a800-80gb"));
    assert_eq!(id("NVIDIA GH200 480GB", 97_280 << 20), Some("gh200-96gb"));
    assert_eq!(
        id("NVIDIA RTX PRO 6000 Blackwell Server Edition", 97_887 << 20),
        Some("rtx-pro-6000-96gb")
    );
    assert_eq!(
        id("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", 0),
        Some("rtx-pro-6000-96gb")
    );
    assert_eq!(id("NVIDIA H100 NVL", 95_830 << 20), Some("h100-94gb"));
    assert_eq!(id("NVIDIA H200", gib(140)), Some("h200-141gb"));
    assert_eq!(id("NVIDIA H200 NVL", 0), Some("h200-141gb"));
    assert_eq!(id("NVIDIA A30", gib(24)), Some("a30-24gb"));
    // Not in the catalog, though the names contain a catalog family.
    assert_eq!(id("NVIDIA RTX A3000 Laptop GPU", gib(6)), None);
    assert_eq!(id("NVIDIA RTX 6000 Ada Generation", gib(48)), None);
    assert_eq!(id("NVIDIA RTX PRO 5000 Blackwell", gib(48)), None);
    assert_eq!(
        id("NVIDIA GH200 144G HBM3e", gib(144)),
        None,
        "no 144GB table"
    );
    assert_eq!(id("NVIDIA A100-SXM4-80GB", 0), None, "two A100 variants");
    assert_eq!(
        id("NVIDIA A100-SXM4-80GB", gib(16)),
        None,
        "memory fits no variant"
    );
    assert_eq!(id("Tesla T4", gib(16)), None);
}

/// The memory tolerance is a few percent: an H100 SXM 64GB is not an
/// `h100-80gb`, while the NVML totals of the real cards, which sit a little
/// off the catalog's figure, still match.
#[test]
fn memory_must_be_within_a_few_percent() {
    let id = |n: &str, mib: u64| GpuModel::from_nvml_name(n, mib << 20).map(|m| m.id);
    assert_eq!(id("NVIDIA H100 80GB HBM3", 65_536), None, "H100 SXM 64GB");
    assert_eq!(
        id("NVIDIA H100 80GB HBM3", 81_559 * 96 / 100),
        Some("h100-80gb")
    );
    assert_eq!(id("NVIDIA H100 80GB HBM3", 81_559 * 94 / 100), None);
    assert_eq!(id("NVIDIA A100-SXM4-40GB", 40_960 * 106 / 100), None);
    assert_eq!(id("NVIDIA H200", 143_771 + 1_000), Some("h200-141gb"));
}

#[test]
fn suffixes_name_their_variant() {
    assert_eq!(Variant::of_name("1g.24gb"), Variant::Plain);
    assert_eq!(Variant::of_name("1g.10gb+me"), Variant::Me);
    assert_eq!(Variant::of_name("1g.24gb+me.all"), Variant::MeAll);
    assert_eq!(Variant::of_name("2g.48gb-me"), Variant::NoMe);
    assert_eq!(Variant::of_name("4g.96gb+gfx"), Variant::Gfx);
    let m = gpu_model("rtx-pro-6000-96gb").unwrap();
    let p = |n: &str| m.profile(n).unwrap();
    assert!(p("1g.24gb+me.all").media_extensions);
    assert!(p("1g.24gb+me").media_extensions);
    assert!(!p("1g.24gb-me").media_extensions);
    assert!(!p("1g.24gb+gfx").media_extensions);
    assert_eq!(p("1g.24gb+me.all").id, 65);
    assert_eq!(p("1g.24gb-me").id, 67);
    assert_eq!(p("1g.24gb+gfx").id, 47);
    assert_eq!(p("1g.24gb+me.all").units.unwrap().decoders, 4);
    assert_eq!(p("1g.24gb-me").units.unwrap().decoders, 0);
}

/// Plans count on the smallest memory any known driver prints.
#[test]
fn fitting_uses_the_smallest_driver_figure() {
    let h100 = gpu_model("h100-80gb").unwrap();
    let p = h100.profile("1g.10gb").unwrap();
    assert_eq!(p.memory_gib_label(), "9.75 GiB");
    assert_eq!(p.min_memory_mib(), lgip_mib(962));
    assert_eq!(p.memory_bytes(), lgip_mib(962) << 20);
    assert_eq!(
        h100.profile("7g.80gb").unwrap().min_memory_mib(),
        lgip_mib(7925)
    );
    let h200 = gpu_model("h200-141gb").unwrap();
    assert_eq!(
        h200.profile("1g.35gb").unwrap().min_memory_mib(),
        lgip_mib(3225)
    );
    assert_eq!(
        h200.profile("4g.71gb").unwrap().min_memory_mib(),
        lgip_mib(6950)
    );
    for (name, hundredths) in [("2g.35gb", 3225), ("7g.141gb", 13975), ("1g.18gb", 1600)] {
        assert_eq!(
            h200.profile(name).unwrap().min_memory_mib(),
            lgip_mib(hundredths),
            "{name}"
        );
    }
    let rtx = gpu_model("rtx-pro-6000-96gb").unwrap();
    assert_eq!(
        rtx.profile("1g.24gb-me").unwrap().min_memory_mib(),
        lgip_mib(2312)
    );
    assert_eq!(
        rtx.profile("2g.48gb").unwrap().min_memory_mib(),
        lgip_mib(4650)
    );
    assert_eq!(
        rtx.profile("4g.96gb").unwrap().min_memory_mib(),
        lgip_mib(9512)
    );
    // R560 prints more on H100 NVL: the table's own figures stay the minimum.
    let nvl = gpu_model("h100-94gb").unwrap();
    assert_eq!(
        nvl.profile("7g.94gb").unwrap().min_memory_mib(),
        lgip_mib(9262)
    );
    // A model that fits 9.75 GiB but not 9.62 GiB does not get a 1g.10gb.
    let need = (lgip_mib(975) - 32) << 20;
    let chosen = crate::planner::choose_profile(h100, need, crate::planner::PlanOptions::default());
    assert_eq!(chosen.unwrap().name, "2g.20gb");
}

#[test]
fn gpus_without_a_table_are_not_planned() {
    for (id, why) in WITHOUT_TABLE {
        assert!(
            gpu_model(id).is_none(),
            "{id} has a table and is listed without one"
        );
        assert!(!why.is_empty());
    }
}

#[test]
fn balanced_ladder_drops_media_and_memory_heavy_profiles() {
    let names = |id: &str| {
        let m = gpu_model(id).unwrap();
        m.profiles
            .iter()
            .filter(|p| m.is_balanced(p))
            .map(|p| p.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("a100-80gb"),
        ["1g.10gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]
    );
    assert_eq!(
        names("a100-40gb"),
        ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]
    );
    assert_eq!(names("a30-24gb"), ["1g.6gb", "2g.12gb", "4g.24gb"]);
    assert_eq!(
        names("rtx-pro-6000-96gb"),
        ["1g.24gb", "2g.48gb", "4g.96gb"]
    );
    assert_eq!(
        names("h200-141gb"),
        ["1g.18gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"]
    );
}

#[test]
fn k8s_resource_names_follow_the_device_plugin() {
    let m = gpu_model("a100-80gb").unwrap();
    assert_eq!(
        m.profile("1g.10gb").unwrap().k8s_resource(),
        "nvidia.com/mig-1g.10gb"
    );
    assert_eq!(
        m.profile("1g.10gb+me").unwrap().k8s_resource(),
        "nvidia.com/mig-1g.10gb.me"
    );
}
