//! Hopper (GH100): H100 80GB (SXM and PCIe), H100 NVL 94GB, H800 80GB,
//! H200 141GB, GH200 96GB.

use super::{ladder8, lgip_mib, with_drivers, with_units, GpuModel, Profile, HOPPER_UNITS};

/// H100 80GB HBM3 (SXM5). Memory, SMs and units: `-lgip` recorded on an
/// H100 SXM5 80GB (checked; also printed in Joe Barrow's field notes,
/// jbarrow.ai/field_notes/nvidia-mig, fixture `h100-80gb.txt`); placements:
/// `-lgipp` recorded on H100 (checked). R525 prints less (issue 20): 9.62,
/// 19.50 and 39.25 GiB for the `1g.10gb`, `*.20gb` and `*.40gb` profiles.
const H100_80GB_PROFILES: [Profile; 7] = with_drivers(
    with_units(
        ladder8([
            ("1g.10gb", 975, Some(16)),
            ("1g.10gb+me", 975, Some(16)),
            ("1g.20gb", 1962, Some(26)),
            ("2g.20gb", 1962, Some(32)),
            ("3g.40gb", 3950, Some(60)),
            ("4g.40gb", 3950, Some(64)),
            ("7g.80gb", 7925, Some(132)),
        ]),
        HOPPER_UNITS,
    ),
    &[
        (0, &[("R525", lgip_mib(962))]),
        (1, &[("R525", lgip_mib(962))]),
        (2, &[("R525", lgip_mib(1950))]),
        (3, &[("R525", lgip_mib(1950))]),
        (4, &[("R525", lgip_mib(3925))]),
        (5, &[("R525", lgip_mib(3925))]),
    ],
);

pub(super) const H100_80GB: GpuModel = GpuModel {
    id: "h100-80gb",
    name: "NVIDIA H100 80GB (SXM5)",
    driver: "not stated in the recording",
    compute_slices: 7,
    memory_slices: 8,
    memory_mib: 81_559,
    sms: 132,
    nvml_names: &["H100"],
    nvml_excludes: &["PCIE", "NVL"],
    profiles: &H100_80GB_PROFILES,
};

/// H100 PCIe 80GB. Names, limits, units: the guide's H100 table, which
/// covers "H100 80GB (PCIe and SXM5)". Ids, memory and placements: not seen
/// recorded on a PCIe card; carried over from the SXM5 table above (same
/// die, same memory size, same guide table). SMs: not recorded; the PCIe
/// card has 114 SMs against the SXM5's 132, so the SXM5 counts do not carry
/// over and are left unknown.
const H100_PCIE_80GB_PROFILES: [Profile; 7] = {
    let mut p = H100_80GB_PROFILES;
    let mut i = 0;
    while i < p.len() {
        p[i].sms = None;
        i += 1;
    }
    p
};

pub(super) const H100_PCIE_80GB: GpuModel = GpuModel {
    id: "h100-pcie-80gb",
    name: "NVIDIA H100 PCIe 80GB",
    driver: "H100 SXM5 figures, not recorded on a PCIe card",
    sms: 114,
    nvml_names: &["H100", "PCIE"],
    nvml_excludes: &[],
    profiles: &H100_PCIE_80GB_PROFILES,
    ..H100_80GB
};

/// H800 80GB, the export variant of the H100 SXM5 80GB. Profile names and
/// limits: NVIDIA mig-parted `deployments/systemd/config-default.yaml`
/// configures H800-80GB with the H100-80GB profiles. Ids, memory, SMs,
/// units and placements: not seen recorded; carried over from the H100
/// 80GB table (same die and memory size).
pub(super) const H800_80GB: GpuModel = GpuModel {
    id: "h800-80gb",
    name: "NVIDIA H800 80GB",
    driver: "H100 80GB figures, not recorded on an H800",
    nvml_names: &["H800"],
    nvml_excludes: &["NVL"],
    ..H100_80GB
};

/// H100 NVL (94GB). Memory and SMs: `-lgip` recorded on an H100 NVL
/// (checked); placements: NVIDIA's H100 NVL `-lgipp` example (checked);
/// units: the guide's H100 94GB table. R560 prints more for every size
/// (10.75, 21.62, 46.38, 93.12 GiB: issue 20; the first three also in the
/// `-lgip` of NVIDIA/gpu-operator pull request #900 and NVIDIA/mig-parted
/// pull request #101, 2024), so the table's figures are already the
/// smallest; they are listed so an output of either driver can be checked.
const H100_94GB_PROFILES: [Profile; 7] = with_drivers(
    with_units(
        ladder8([
            ("1g.12gb", 1062, Some(16)),
            ("1g.12gb+me", 1062, Some(16)),
            ("1g.24gb", 2150, Some(26)),
            ("2g.24gb", 2150, Some(32)),
            ("3g.47gb", 4612, Some(60)),
            ("4g.47gb", 4612, Some(64)),
            ("7g.94gb", 9262, Some(132)),
        ]),
        HOPPER_UNITS,
    ),
    &[
        (0, &[("R560", lgip_mib(1075))]),
        (1, &[("R560", lgip_mib(1075))]),
        (2, &[("R560", lgip_mib(2162))]),
        (3, &[("R560", lgip_mib(2162))]),
        (4, &[("R560", lgip_mib(4638))]),
        (5, &[("R560", lgip_mib(4638))]),
        (6, &[("R560", lgip_mib(9312))]),
    ],
);

pub(super) const H100_94GB: GpuModel = GpuModel {
    id: "h100-94gb",
    name: "NVIDIA H100 NVL 94GB",
    driver: "not stated in the recording",
    compute_slices: 7,
    memory_slices: 8,
    memory_mib: 95_830,
    sms: 132,
    nvml_names: &["H100"],
    nvml_excludes: &["PCIE"],
    profiles: &H100_94GB_PROFILES,
};

/// H200 141GB. Names, limits and units: the guide's H200 table (checked).
/// `1g.18gb`, `1g.18gb+me`, `2g.35gb` and `7g.141gb` memory and SMs: a recorded
/// `-lgip` (checked). `3g.71gb` SMs: 60 as CUDA reports it (checked). Not
/// seen recorded on the table's driver, so carried over: `1g.35gb` memory
/// equal to `2g.35gb`'s, `3g.71gb`/`4g.71gb` memory 69.75 GiB (CUDA reports
/// 69.8 GiB on a `3g.71gb`), and the A100/H100 placements.
///
/// An earlier driver's full `-lgip` (NVIDIA/mig-parted issue #120, "Add
/// support for the NVIDIA H200 GPU", 2024; fixture `h200-141gb.txt`) gives
/// every id, limit, SM count (`1g.35gb` 26 and `4g.71gb` 64 included) and
/// unit, and prints less memory: 32.25 GiB for the `*.35gb` profiles, 69.50
/// for the `*.71gb` ones and 139.75 for `7g.141gb`.
const H200_141GB_PROFILES: [Profile; 7] = with_drivers(
    with_units(
        ladder8([
            ("1g.18gb", 1600, Some(16)),
            ("1g.18gb+me", 1600, Some(16)),
            ("1g.35gb", 3250, Some(26)),
            ("2g.35gb", 3250, Some(32)),
            ("3g.71gb", 6975, Some(60)),
            ("4g.71gb", 6975, Some(64)),
            ("7g.141gb", 14000, Some(132)),
        ]),
        HOPPER_UNITS,
    ),
    &[
        (2, &[(H200_EARLY, lgip_mib(3225))]),
        (3, &[(H200_EARLY, lgip_mib(3225))]),
        (4, &[(H200_EARLY, lgip_mib(6950))]),
        (5, &[(H200_EARLY, lgip_mib(6950))]),
        (6, &[(H200_EARLY, lgip_mib(13975))]),
    ],
);

/// The driver of the H200 `-lgip` in NVIDIA/mig-parted issue #120 (2024; its
/// version is not in the issue).
const H200_EARLY: &str = "early (mig-parted#120)";

pub(super) const H200_141GB: GpuModel = GpuModel {
    id: "h200-141gb",
    name: "NVIDIA H200 141GB",
    driver: "not stated in the recording",
    compute_slices: 7,
    memory_slices: 8,
    memory_mib: 143_771,
    sms: 132,
    nvml_names: &["H200"],
    nvml_excludes: &[],
    profiles: &H200_141GB_PROFILES,
};

/// GH200 96GB (NVML `NVIDIA GH200 480GB`, the Grace Hopper superchip with
/// 96 GB of HBM3). Ids, memory, SMs and units: `-lgip` recorded on a GH200
/// in kf-cuanschutz/NVIDIA_Grace_Hopper_benchmarking_logs_,
/// `Daily_installs_loggings/Lessons_learned_from_the_slurm_MIG_installation.md`
/// (fixture `gh200-96gb.txt`; driver not stated, mid-2024). Names and limits
/// match the guide's "H100 96GB product (H100 on GH200)" table. Placements:
/// no `-lgipp` seen; the guide gives the same memory fractions as H100, so
/// the H100 placements are carried over. Whole-GPU memory: 97,280 MiB as
/// OpenCL reports it on a GH200 480GB (mredenti/PowerCapping,
/// `configuration/OpenCL_benchmark.md`).
const GH200_96GB_PROFILES: [Profile; 7] = with_units(
    ladder8([
        ("1g.12gb", 1100, Some(16)),
        ("1g.12gb+me", 1100, Some(16)),
        ("1g.24gb", 2300, Some(26)),
        ("2g.24gb", 2300, Some(32)),
        ("3g.48gb", 4650, Some(60)),
        ("4g.48gb", 4650, Some(64)),
        ("7g.96gb", 9300, Some(132)),
    ]),
    HOPPER_UNITS,
);

pub(super) const GH200_96GB: GpuModel = GpuModel {
    id: "gh200-96gb",
    name: "NVIDIA GH200 96GB",
    driver: "not stated in the recording (2024)",
    compute_slices: 7,
    memory_slices: 8,
    memory_mib: 97_280,
    sms: 132,
    nvml_names: &["GH200"],
    nvml_excludes: &[],
    profiles: &GH200_96GB_PROFILES,
};
