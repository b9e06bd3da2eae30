//! Discovery mapping on NVML snapshots recorded as JSON (`tests/fixtures/nvml/`).

use std::path::PathBuf;

use mig_slices::discovery::{slices, Discovered, DiscoveredSlice, NvmlSnapshot};
use mig_slices::SliceId;

const MIB: u64 = 1 << 20;

fn fixture_text(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/nvml", name]
        .iter()
        .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> NvmlSnapshot {
    NvmlSnapshot::from_json(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn mig_id(uuid: &str) -> SliceId {
    SliceId::Mig(uuid.to_string())
}

fn gpu_id(uuid: &str) -> SliceId {
    SliceId::Gpu(uuid.to_string())
}

const A100: &str = "GPU-4b8d2f0e-93a1-6c57-0d2e-7f1a9c3b5e64";
const A100_NAME: &str = "NVIDIA A100-SXM4-80GB";

fn a100_mig(uuid: &str, profile: &str, mib: u64, gi: u32, slices: u8, sms: u32) -> DiscoveredSlice {
    DiscoveredSlice {
        id: mig_id(uuid),
        profile: profile.to_string(),
        memory_bytes: mib * MIB,
        gpu_uuid: A100.to_string(),
        gpu_index: 0,
        gpu_name: A100_NAME.to_string(),
        gpu_instance_id: Some(gi),
        compute_instance_id: Some(0),
        gpu_instance_slices: Some(slices),
        compute_slices: Some(slices),
        multiprocessor_count: Some(sms),
    }
}

fn whole_gpu(uuid: &str, index: u32, name: &str, mib: u64, profile: &str) -> DiscoveredSlice {
    DiscoveredSlice {
        id: gpu_id(uuid),
        profile: profile.to_string(),
        memory_bytes: mib * MIB,
        gpu_uuid: uuid.to_string(),
        gpu_index: index,
        gpu_name: name.to_string(),
        gpu_instance_id: None,
        compute_instance_id: None,
        gpu_instance_slices: None,
        compute_slices: None,
        multiprocessor_count: None,
    }
}

#[test]
fn mig_on_with_mixed_profiles_next_to_a_whole_h100() {
    let snapshot = fixture("a100_mig_mixed_h100_whole.json");
    assert_eq!(snapshot.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(snapshot.cuda_driver_version, Some(12040));
    let d = slices(&snapshot);
    let h100 = "GPU-e1c07a52-6f3d-4b09-8a2e-51d96c0f7b38";
    assert_eq!(
        d,
        Discovered {
            slices: vec![
                a100_mig(
                    "MIG-9c2e41d7-5b0a-5f3e-8d61-2a7f0c4e9b13",
                    "3g.40gb",
                    40192,
                    2,
                    3,
                    42
                ),
                a100_mig(
                    "MIG-3f71b0a8-c24d-5e96-a13b-7d08e5f26c41",
                    "2g.20gb",
                    19968,
                    3,
                    2,
                    28
                ),
                a100_mig(
                    "MIG-e05a9d3c-71f2-5b84-9c0e-4f6a2b8d1e57",
                    "1g.10gb",
                    9728,
                    9,
                    1,
                    14
                ),
                a100_mig(
                    "MIG-71d4c8e2-0a9b-5d3f-b6e1-93c5f27a4d08",
                    "1g.10gb",
                    9728,
                    10,
                    1,
                    14
                ),
                whole_gpu(h100, 1, "NVIDIA H100 80GB HBM3", 81559, "gpu.80gb"),
            ],
            warnings: vec![],
        }
    );

    // The pitfall: each MIG slice carries its own memory, never the card's.
    let card = snapshot.gpus[0].memory_total_bytes;
    for s in d.slices.iter().filter(|s| matches!(s.id, SliceId::Mig(_))) {
        assert!(
            s.memory_bytes < card / 2,
            "{} sized like the whole card",
            s.id
        );
    }

    // A worker finds itself by the id it was started with.
    let me: SliceId = "MIG-e05a9d3c-71f2-5b84-9c0e-4f6a2b8d1e57".parse().unwrap();
    assert_eq!(d.find(&me).unwrap().gpu_instance_id, Some(9));
    assert_eq!(d.find(&gpu_id(h100)).unwrap().profile, "gpu.80gb");
    // The A100's own UUID is no slice: with MIG on CUDA sees no whole GPU there.
    assert_eq!(d.find(&gpu_id(A100)), None);
}

#[test]
fn h200_with_mig_off_is_one_whole_gpu_slice() {
    let d = slices(&fixture("h200_mig_off.json"));
    let uuid = "GPU-a7f3c915-2e6b-8d40-c1f9-06b4e8d25a73";
    assert_eq!(
        d,
        Discovered {
            slices: vec![whole_gpu(uuid, 0, "NVIDIA H200", 143771, "gpu.141gb")],
            warnings: vec![],
        }
    );
}

/// NVML's own snapshot from the first lent GPU (`mig-gateway slices --json
/// --raw` on an H200, driver 580, 2026-12-04): the same whole-GPU slice the
/// hand-written fixture above predicted.
#[test]
fn a_real_h200_snapshot_is_one_whole_gpu_slice() {
    let d = slices(&fixture("h200_mig_off_driver580.json"));
    let uuid = "GPU-a6bc9419-1db7-9f8d-90a2-23ee128627fb";
    assert_eq!(
        d,
        Discovered {
            slices: vec![whole_gpu(uuid, 0, "NVIDIA H200", 143771, "gpu.141gb")],
            warnings: vec![],
        }
    );
}

#[test]
fn mig_on_without_instances_gives_no_slice_and_says_so() {
    let d = slices(&fixture("a100_mig_on_no_instances.json"));
    assert!(d.slices.is_empty());
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    let w = &d.warnings[0];
    for part in [
        "GPU 0",
        "NVIDIA A100-SXM4-40GB",
        "GPU-5d0e8b21-c4a7-3f96-e2b0-8a1c7d4f6e92",
        "no GPU instances",
        "0 slices",
        "nvidia-smi mig -i 0 -cgi",
    ] {
        assert!(w.contains(part), "warning `{w}` lacks `{part}`");
    }
}

#[test]
fn pending_mig_enable_serves_the_whole_gpu_and_reports_the_change() {
    let d = slices(&fixture("h100_mig_pending_enable.json"));
    let uuid = "GPU-0c6b3e8f-94d2-a715-3b7e-f2d0c5a9184b";
    assert_eq!(
        d.slices,
        vec![whole_gpu(
            uuid,
            0,
            "NVIDIA H100 80GB HBM3",
            81559,
            "gpu.80gb"
        )]
    );
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    let w = &d.warnings[0];
    assert!(w.contains(uuid), "{w}");
    assert!(w.contains("set to turn on but is still off"), "{w}");
    assert!(w.contains("nvidia-smi -r -i 0"), "{w}");
}

#[test]
fn gpu_without_mig_support_is_whole_and_a_lost_gpu_is_a_warning() {
    let d = slices(&fixture("l4_no_mig_one_gpu_lost.json"));
    let uuid = "GPU-8e2a5c07-d1b4-9f36-70ae-c3f81b9d2e45";
    // 23034 MiB is 22.5 GiB: rounded up, not to the marketed 24 GB.
    assert_eq!(
        d.slices,
        vec![whole_gpu(uuid, 0, "NVIDIA L4", 23034, "gpu.23gb")]
    );
    assert_eq!(
        d.warnings,
        vec![
            "NVML: GPU 1: skipped, NVML failed to read its UUID: device fell off the bus or has \
             otherwise become inacessible"
                .to_string()
        ]
    );
}

#[test]
fn every_fixture_round_trips_through_json_unchanged() {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures/nvml"]
        .iter()
        .collect();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let text = fixture_text(&name);
        let snapshot = fixture(&name);
        let again = snapshot.to_json_pretty();
        assert_eq!(NvmlSnapshot::from_json(&again).unwrap(), snapshot, "{name}");
        // Same JSON document too: no field dropped, renamed or added.
        let recorded: serde_json::Value = serde_json::from_str(&text).unwrap();
        let written: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(written, recorded, "{name}");
    }
}

#[test]
fn discovered_slices_serialise_with_textual_ids_and_read_back() {
    let d = slices(&fixture("a100_mig_mixed_h100_whole.json"));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["slices"][0]["id"],
        "MIG-9c2e41d7-5b0a-5f3e-8d61-2a7f0c4e9b13"
    );
    assert_eq!(
        json["slices"][4]["id"],
        "GPU-e1c07a52-6f3d-4b09-8a2e-51d96c0f7b38"
    );
    assert_eq!(
        json["slices"][4]["gpu_instance_id"],
        serde_json::Value::Null
    );
    let back: Discovered = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}
