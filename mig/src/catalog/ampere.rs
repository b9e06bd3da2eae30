//! Ampere (GA100): A100 40GB and 80GB, A800 80GB, A30.

use super::{
    at, ladder8, lgip_mib, profile, units, with_units, GpuModel, Placement, Profile, Units,
};

/// Copy engines and media units of the A100 ladder: the user guide's A100
/// table ("Supported MIG Profiles" → "A100 MIG Profiles"; A100 has no
/// NVENC), which the guide says the 80GB card shares under its own names.
const A100_UNITS: [Units; 7] = [
    units(1, 0, 0, 0, 0),
    units(1, 1, 0, 1, 1),
    units(1, 1, 0, 0, 0),
    units(2, 1, 0, 0, 0),
    units(3, 2, 0, 0, 0),
    units(4, 2, 0, 0, 0),
    units(7, 5, 0, 1, 1),
];

/// A100-SXM4-40GB. Ids, memory, SMs and placements: the `-lgip` and `-lgipp`
/// output in the MIG User Guide, "Getting Started with MIG" → "List GPU
/// Instance Profiles" (checked). Units: [`A100_UNITS`].
const A100_40GB_PROFILES: [Profile; 7] = with_units(
    ladder8([
        ("1g.5gb", 475, Some(14)),
        ("1g.5gb+me", 475, Some(14)),
        ("1g.10gb", 962, Some(14)),
        ("2g.10gb", 962, Some(28)),
        ("3g.20gb", 1950, Some(42)),
        ("4g.20gb", 1950, Some(56)),
        ("7g.40gb", 3925, Some(98)),
    ]),
    A100_UNITS,
);

pub(super) const A100_40GB: GpuModel = GpuModel {
    id: "a100-40gb",
    name: "NVIDIA A100 40GB",
    driver: "R450 (user guide example)",
    compute_slices: 7,
    memory_slices: 8,
    memory_mib: 40_960,
    sms: 108,
    nvml_names: &["A100"],
    nvml_excludes: &[],
    profiles: &A100_40GB_PROFILES,
};

/// A100-SXM4-80GB. Memory and SMs: `-lgip` recorded on an A100-SXM4-80GB with
/// driver 550.54.14 (checked). Placements: the guide states the A100 80GB
/// shares the 40GB geometry (its `-lgipp` was not seen recorded). Units:
/// [`A100_UNITS`].
const A100_80GB_PROFILES: [Profile; 7] = with_units(
    ladder8([
        ("1g.10gb", 950, Some(14)),
        ("1g.10gb+me", 950, Some(14)),
        ("1g.20gb", 1950, Some(14)),
        ("2g.20gb", 1950, Some(28)),
        ("3g.40gb", 3925, Some(42)),
        ("4g.40gb", 3925, Some(56)),
        ("7g.80gb", 7875, Some(98)),
    ]),
    A100_UNITS,
);

pub(super) const A100_80GB: GpuModel = GpuModel {
    id: "a100-80gb",
    name: "NVIDIA A100 80GB",
    driver: "R550",
    compute_slices: 7,
    memory_slices: 8,
    memory_mib: 81_920,
    sms: 108,
    nvml_names: &["A100"],
    nvml_excludes: &[],
    profiles: &A100_80GB_PROFILES,
};

/// A800 80GB (NVML: `NVIDIA A800-SXM4-80GB`, `NVIDIA A800 80GB PCIe`), the
/// export variant of the A100 80GB on the same GA100 die. Profile names and
/// limits: NVIDIA mig-parted `deployments/systemd/config-default.yaml`
/// configures A800-80GB with the A100-80GB profiles. Ids, memory, SMs,
/// units and placements: not seen recorded; carried over from the A100
/// 80GB table, which the same die and memory size make the expected figures.
/// NVML name and whole-GPU memory (`NVIDIA A800 80GB PCIe`, 81,920 MiB,
/// driver 580.119.02): `nvidia-smi` in Project-HAMi/HAMi issue #1903.
pub(super) const A800_80GB: GpuModel = GpuModel {
    id: "a800-80gb",
    name: "NVIDIA A800 80GB",
    driver: "R550 (A100 80GB figures, not recorded on an A800)",
    nvml_names: &["A800"],
    ..A100_80GB
};

const FOUR_1: &[Placement] = &[at(0, 1), at(1, 1), at(2, 1), at(3, 1)];
const FOUR_2: &[Placement] = &[at(0, 2), at(2, 2)];
const FOUR_4: &[Placement] = &[at(0, 4)];

/// A30 24GB: 4 compute slices on 4 memory slots. Ids, memory, SMs and
/// placements: `-lgip` and `-lgipp` recorded on an A30 (checked; some drivers
/// print 23.50 for `4g.24gb`). Limits, copy engines and media units: the
/// guide's A30 table (A30 has no NVENC).
const A30_24GB_PROFILES: [Profile; 5] = [
    profile("1g.6gb", 14, 1, 1, lgip_mib(581), Some(14), 4, FOUR_1)
        .with_units(units(1, 0, 0, 0, 0)),
    profile("1g.6gb+me", 21, 1, 1, lgip_mib(581), Some(14), 1, FOUR_1)
        .with_units(units(1, 1, 0, 1, 1)),
    profile("2g.12gb", 5, 2, 2, lgip_mib(1169), Some(28), 2, FOUR_2)
        .with_units(units(2, 2, 0, 0, 0)),
    profile("2g.12gb+me", 6, 2, 2, lgip_mib(1169), Some(28), 1, FOUR_2)
        .with_units(units(2, 2, 0, 1, 1)),
    profile("4g.24gb", 0, 4, 4, lgip_mib(2344), Some(56), 1, FOUR_4)
        .with_units(units(4, 4, 0, 1, 1)),
];

pub(super) const A30_24GB: GpuModel = GpuModel {
    id: "a30-24gb",
    name: "NVIDIA A30 24GB",
    driver: "not stated in the recording",
    compute_slices: 4,
    memory_slices: 4,
    memory_mib: 24_576,
    sms: 56,
    nvml_names: &["A30"],
    nvml_excludes: &[],
    profiles: &A30_24GB_PROFILES,
};
