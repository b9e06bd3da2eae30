//! Blackwell: RTX PRO 6000 Blackwell (GB202).
//!
//! B200, GB200, B300/GB300 and RTX PRO 5000 Blackwell support MIG too, but no
//! recorded `-lgip` was found for them; see [`super::WITHOUT_TABLE`].

use super::{at, lgip_mib, profile, units, GpuModel, Placement, Profile, Units};

// RTX PRO 6000 placements: 12 memory slots, `{0,3,6,9}:3`, `{0,6}:6`,
// `{0}:12` as `-lgipp` prints them.
const TWELVE_3: &[Placement] = &[at(0, 3), at(3, 3), at(6, 3), at(9, 3)];
const TWELVE_6: &[Placement] = &[at(0, 6), at(6, 6)];
const TWELVE_12: &[Placement] = &[at(0, 12)];

/// RTX PRO 6000 Blackwell (Server, Workstation and Max-Q Workstation
/// editions, 96GB): 4 compute slices on 12 memory slots. Ids, memory, SMs,
/// copy engines, media units, limits and placements: `nvidia-smi mig -lgip`
/// and `-lgipp` recorded with driver 610.43.02 on an RTX PRO 6000 Blackwell
/// Server Edition, in the blog post "Slicing GPUs in Kubernetes with NVIDIA
/// Multi-Instance GPU (MIG)" (Utho Cloud, 2026; fixture
/// `rtx-pro-6000-96gb.txt`). Names, limits and units agree with the guide's
/// "RTX PRO 6000 Blackwell MIG Profiles" table.
///
/// Another driver (bigstack-oss/cubecos issue #312, "Support Nvidia H200 NVL
/// and Nvidia RTX PRO 6000 Blackwell Server Edition"; version not stated)
/// prints less: 23.12 GiB for the `1g.24gb` profiles and 46.50 for the
/// `2g.48gb` ones. Its `4g.96gb` figure was not seen.
const CUBECOS_1G: &[(&str, u64)] = &[("cubecos#312", lgip_mib(2312))];
const CUBECOS_2G: &[(&str, u64)] = &[("cubecos#312", lgip_mib(4650))];

/// One RTX PRO 6000 profile from its `-lgip` figures: name, id, compute
/// slices, memory in hundredths of a GiB, SMs, limit, CE/DEC/ENC/JPG/OFA.
/// Memory slots and placements follow from the compute slices (3 slots per
/// slice), as `-lgipp` prints them.
const fn rtx(row: (&'static str, u32, u8, u64, u16, u8, Units)) -> Profile {
    let (name, id, slices, hundredths, sms, max, u) = row;
    let (slots, placements, other) = match slices {
        1 => (3, TWELVE_3, CUBECOS_1G),
        2 => (6, TWELVE_6, CUBECOS_2G),
        _ => (12, TWELVE_12, &[] as &[(&str, u64)]),
    };
    profile(
        name,
        id,
        slices,
        slots,
        lgip_mib(hundredths),
        Some(sms),
        max,
        placements,
    )
    .with_units(u)
    .on_drivers(other)
}

const RTX_PRO_6000_96GB_PROFILES: [Profile; 11] = [
    rtx(("1g.24gb", 14, 1, 2362, 46, 4, units(1, 1, 1, 1, 0))),
    rtx(("1g.24gb+me", 21, 1, 2362, 46, 1, units(1, 1, 1, 1, 1))),
    rtx(("1g.24gb+gfx", 47, 1, 2362, 46, 4, units(1, 1, 1, 1, 0))),
    rtx(("1g.24gb+me.all", 65, 1, 2362, 46, 1, units(1, 4, 4, 4, 1))),
    rtx(("1g.24gb-me", 67, 1, 2362, 46, 4, units(1, 0, 0, 0, 0))),
    rtx(("2g.48gb", 5, 2, 4738, 94, 2, units(2, 2, 2, 2, 0))),
    rtx(("2g.48gb+gfx", 35, 2, 4738, 94, 2, units(2, 2, 2, 2, 0))),
    rtx(("2g.48gb+me.all", 64, 2, 4738, 94, 1, units(2, 4, 4, 4, 1))),
    rtx(("2g.48gb-me", 66, 2, 4738, 94, 2, units(2, 0, 0, 0, 0))),
    rtx(("4g.96gb", 0, 4, 9512, 188, 1, units(4, 4, 4, 4, 1))),
    rtx(("4g.96gb+gfx", 32, 4, 9512, 188, 1, units(4, 4, 4, 4, 1))),
];

pub(super) const RTX_PRO_6000_96GB: GpuModel = GpuModel {
    id: "rtx-pro-6000-96gb",
    name: "NVIDIA RTX PRO 6000 Blackwell 96GB",
    driver: "R610 (610.43.02)",
    compute_slices: 4,
    memory_slices: 12,
    // 97,887 MiB: what CUDA reports for the whole card in the same post.
    memory_mib: 97_887,
    sms: 188,
    nvml_names: &["RTX", "PRO", "6000"],
    nvml_excludes: &[],
    profiles: &RTX_PRO_6000_96GB_PROFILES,
};
