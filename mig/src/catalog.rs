//! GPU models that support MIG, and the GPU-instance profiles each offers.
//!
//! The planner works from this table rather than from a live driver so that a
//! layout can be planned (and tested) on a machine without the GPU. The
//! figures are what the driver reports, not marketing numbers: a `1g.10gb`
//! slice on an A100 80GB holds 9.50 GiB, and a plan that trusted the name would
//! put a 10 GB model into it and fail at load time.
//!
//! # Where the figures come from
//!
//! - Profile names, instance limits and the memory-slice and compute-slice
//!   fractions: NVIDIA *Multi-Instance GPU User Guide*, section "Supported MIG
//!   Profiles" (tables for A30, A100, H100, H200).
//! - Profile ids, memory (GiB) and SM counts: `nvidia-smi mig -lgip` output.
//!   Memory is kept as `-lgip` prints it (two decimals of GiB, which the driver
//!   derives from a size on a 1/16-GiB grid; [`lgip_mib`] restores that size). The
//!   figures move by a fraction of a GiB between driver releases; each table
//!   names the output it was taken from.
//! - Placements: `nvidia-smi mig -lgipp` output, `{starts}:size` in memory
//!   slots.
//!
//! Per-model notes say which figures were checked against recorded output and
//! which are carried over from a sibling GPU; the H200 table has the most of
//! the latter.

use serde::Serialize;

const MIB: u64 = 1 << 20;

/// A window a GPU instance may occupy: memory slots `start..start + size`.
///
/// MIG places instances on the memory axis (8 slots on A100/H100/H200, 4 on
/// A30); compute slices follow from the profile. `-lgipp` prints these as
/// `{0,2,4}:2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Placement {
    pub start: u8,
    pub size: u8,
}

/// A GPU-instance profile (`nvidia-smi mig -lgip` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Short name as NVML and `nvidia-smi -L` report it, e.g. `1g.10gb`,
    /// `1g.10gb+me`.
    pub name: &'static str,
    /// GPU-instance profile id, what `nvidia-smi mig -cgi` takes.
    pub id: u32,
    /// Compute slices (the `1g` in `1g.10gb`), of 7 (4 on A30).
    pub compute_slices: u8,
    /// Memory slots the instance occupies, of 8 (4 on A30). A `3g` instance
    /// takes 4 of 8, which is why `3g.40gb` and `4g.40gb` hold the same memory.
    pub memory_slices: u8,
    /// Memory of the instance in MiB, as `-lgip` reports it.
    pub memory_mib: u64,
    /// SMs of the instance, where a recorded `-lgip` gave them.
    pub sms: Option<u16>,
    /// `+me` profiles carry the GPU's media engines (NVDEC/NVJPG/OFA); only one
    /// instance per GPU may have them.
    pub media_extensions: bool,
    /// Most instances of this profile one GPU can hold.
    pub max_count: u8,
    /// Where an instance of this profile may start (`-lgipp`).
    pub placements: &'static [Placement],
}

/// A MIG-capable GPU model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GpuModel {
    /// Id used on the command line and in plans, e.g. `a100-80gb`.
    pub id: &'static str,
    /// Marketing name, for humans.
    pub name: &'static str,
    /// Compute slices MIG divides the GPU into.
    pub compute_slices: u8,
    /// Memory slots placements are counted in.
    pub memory_slices: u8,
    /// Memory of the whole GPU (MIG off) in MiB, as NVML reports it; used to
    /// tell 40GB from 80GB cards that share a name.
    pub memory_mib: u64,
    /// SMs of the whole GPU with MIG off. MIG leaves some unused (an A100 has
    /// 108, its `7g.40gb` instance 98).
    pub sms: u16,
    /// Words of the NVML device name that identify the family (`A100` matches
    /// `NVIDIA A100-SXM4-80GB` and `NVIDIA A100 80GB PCIe`). Matched as whole
    /// words so that `A30` does not match `RTX A3000` nor `H200` `GH200`.
    pub nvml_names: &'static [&'static str],
    /// Profiles in `-lgip` order.
    pub profiles: &'static [Profile],
}

/// MiB for a memory figure as `nvidia-smi mig -lgip` prints it, in hundredths
/// of a GiB (`962` for `9.62`).
///
/// The driver's sizes sit on a 1/16-GiB (64 MiB) grid and `-lgip` truncates
/// them to two decimals, so snapping back to the grid recovers the exact size
/// (`9.62` is 9856 MiB, what NVML's `memorySizeMB` holds).
pub const fn lgip_mib(hundredths: u64) -> u64 {
    let mib_x100 = hundredths * 1024;
    let grid = 64 * 100;
    (mib_x100 + grid / 2) / grid * 64
}

const fn at(start: u8, size: u8) -> Placement {
    Placement { start, size }
}

// Placement sets, as `nvidia-smi mig -lgipp` prints them.
const EIGHT_1: &[Placement] = &[
    at(0, 1),
    at(1, 1),
    at(2, 1),
    at(3, 1),
    at(4, 1),
    at(5, 1),
    at(6, 1),
];
const EIGHT_2_1G: &[Placement] = &[at(0, 2), at(2, 2), at(4, 2), at(6, 2)];
const EIGHT_2_2G: &[Placement] = &[at(0, 2), at(2, 2), at(4, 2)];
const EIGHT_4_3G: &[Placement] = &[at(0, 4), at(4, 4)];
const EIGHT_4_4G: &[Placement] = &[at(0, 4)];
const EIGHT_8: &[Placement] = &[at(0, 8)];
const FOUR_1: &[Placement] = &[at(0, 1), at(1, 1), at(2, 1), at(3, 1)];
const FOUR_2: &[Placement] = &[at(0, 2), at(2, 2)];
const FOUR_4: &[Placement] = &[at(0, 4)];

#[allow(clippy::too_many_arguments)]
const fn profile(
    name: &'static str,
    id: u32,
    compute_slices: u8,
    memory_slices: u8,
    memory_mib: u64,
    sms: Option<u16>,
    max_count: u8,
    placements: &'static [Placement],
) -> Profile {
    // `+me` is the only suffix these GPUs use; checking the last byte keeps
    // this a const fn.
    let bytes = name.as_bytes();
    let media_extensions = bytes.len() > 3
        && bytes[bytes.len() - 3] == b'+'
        && bytes[bytes.len() - 2] == b'm'
        && bytes[bytes.len() - 1] == b'e';
    Profile {
        name,
        id,
        compute_slices,
        memory_slices,
        memory_mib,
        sms,
        media_extensions,
        max_count,
        placements,
    }
}

/// The seven-profile ladder shared by A100, H100 and H200 (ids 19, 20, 15, 14,
/// 9, 5, 0 and the placements of the user guide's A100 `-lgipp` example),
/// with the memory and SM figures of one GPU model.
///
/// Arguments are `(name, memory in hundredths of a GiB, SMs)` per profile,
/// in `-lgip` order.
const fn ladder8(p: [(&'static str, u64, u16); 7]) -> [Profile; 7] {
    [
        profile(p[0].0, 19, 1, 1, lgip_mib(p[0].1), Some(p[0].2), 7, EIGHT_1),
        profile(p[1].0, 20, 1, 1, lgip_mib(p[1].1), Some(p[1].2), 1, EIGHT_1),
        profile(
            p[2].0,
            15,
            1,
            2,
            lgip_mib(p[2].1),
            Some(p[2].2),
            4,
            EIGHT_2_1G,
        ),
        profile(
            p[3].0,
            14,
            2,
            2,
            lgip_mib(p[3].1),
            Some(p[3].2),
            3,
            EIGHT_2_2G,
        ),
        profile(
            p[4].0,
            9,
            3,
            4,
            lgip_mib(p[4].1),
            Some(p[4].2),
            2,
            EIGHT_4_3G,
        ),
        profile(
            p[5].0,
            5,
            4,
            4,
            lgip_mib(p[5].1),
            Some(p[5].2),
            1,
            EIGHT_4_4G,
        ),
        profile(p[6].0, 0, 7, 8, lgip_mib(p[6].1), Some(p[6].2), 1, EIGHT_8),
    ]
}

/// A100-SXM4-40GB. Ids, memory, SMs and placements: the `-lgip` and `-lgipp`
/// output in the MIG User Guide, "Getting Started with MIG" → "List GPU
/// Instance Profiles" (checked).
const A100_40GB: [Profile; 7] = ladder8([
    ("1g.5gb", 475, 14),
    ("1g.5gb+me", 475, 14),
    ("1g.10gb", 962, 14),
    ("2g.10gb", 962, 28),
    ("3g.20gb", 1950, 42),
    ("4g.20gb", 1950, 56),
    ("7g.40gb", 3925, 98),
]);

/// A100-SXM4-80GB. Memory and SMs: `-lgip` recorded on an A100-SXM4-80GB with
/// driver 550.54.14 (checked). Placements: the guide states the A100 80GB
/// shares the 40GB geometry (its `-lgipp` was not seen recorded).
const A100_80GB: [Profile; 7] = ladder8([
    ("1g.10gb", 950, 14),
    ("1g.10gb+me", 950, 14),
    ("1g.20gb", 1950, 14),
    ("2g.20gb", 1950, 28),
    ("3g.40gb", 3925, 42),
    ("4g.40gb", 3925, 56),
    ("7g.80gb", 7875, 98),
]);

/// H100 80GB HBM3 (SXM5). Memory and SMs: `-lgip` recorded on H100 SXM5 80GB
/// (checked); placements: `-lgipp` recorded on H100 (checked). The H100 PCIe
/// has 114 SMs, so its per-profile SM counts may be lower than these.
const H100_80GB: [Profile; 7] = ladder8([
    ("1g.10gb", 975, 16),
    ("1g.10gb+me", 975, 16),
    ("1g.20gb", 1962, 26),
    ("2g.20gb", 1962, 32),
    ("3g.40gb", 3950, 60),
    ("4g.40gb", 3950, 64),
    ("7g.80gb", 7925, 132),
]);

/// H100 NVL (94GB). Memory and SMs: `-lgip` recorded on an H100 NVL (checked;
/// another driver printed 93.12 for `7g.94gb`); placements: NVIDIA's H100 NVL
/// `-lgipp` example (checked).
const H100_94GB: [Profile; 7] = ladder8([
    ("1g.12gb", 1062, 16),
    ("1g.12gb+me", 1062, 16),
    ("1g.24gb", 2150, 26),
    ("2g.24gb", 2150, 32),
    ("3g.47gb", 4612, 60),
    ("4g.47gb", 4612, 64),
    ("7g.94gb", 9262, 132),
]);

/// H200 141GB. Names and limits: the guide's H200 table (checked).
/// `1g.18gb`, `1g.18gb+me`, `2g.35gb` and `7g.141gb` memory and SMs: a recorded
/// `-lgip` (checked). `3g.71gb` SMs: 60 as CUDA reports it (checked).
/// Not seen recorded, so carried over: `1g.35gb` memory equal to `2g.35gb`'s
/// (as every sibling GPU has it), `3g.71gb`/`4g.71gb` memory 69.75 GiB (CUDA
/// reports 69.8 GiB on a `3g.71gb`; the ratio to `7g` matches H100 NVL), the
/// `1g.35gb` and `4g.71gb` SM counts of the H100, and the A100/H100
/// placements.
const H200_141GB: [Profile; 7] = ladder8([
    ("1g.18gb", 1600, 16),
    ("1g.18gb+me", 1600, 16),
    ("1g.35gb", 3250, 26),
    ("2g.35gb", 3250, 32),
    ("3g.71gb", 6975, 60),
    ("4g.71gb", 6975, 64),
    ("7g.141gb", 14000, 132),
]);

/// A30 24GB: 4 compute slices on 4 memory slots. Ids, memory, SMs and
/// placements: `-lgip` and `-lgipp` recorded on an A30 (checked; some drivers
/// print 23.50 for `4g.24gb`). Limits: the guide's A30 table.
const A30_24GB: [Profile; 5] = [
    profile("1g.6gb", 14, 1, 1, lgip_mib(581), Some(14), 4, FOUR_1),
    profile("1g.6gb+me", 21, 1, 1, lgip_mib(581), Some(14), 1, FOUR_1),
    profile("2g.12gb", 5, 2, 2, lgip_mib(1169), Some(28), 2, FOUR_2),
    profile("2g.12gb+me", 6, 2, 2, lgip_mib(1169), Some(28), 1, FOUR_2),
    profile("4g.24gb", 0, 4, 4, lgip_mib(2344), Some(56), 1, FOUR_4),
];

static MODELS: [GpuModel; 6] = [
    GpuModel {
        id: "a100-40gb",
        name: "NVIDIA A100 40GB",
        compute_slices: 7,
        memory_slices: 8,
        memory_mib: 40_960,
        sms: 108,
        nvml_names: &["A100"],
        profiles: &A100_40GB,
    },
    GpuModel {
        id: "a100-80gb",
        name: "NVIDIA A100 80GB",
        compute_slices: 7,
        memory_slices: 8,
        memory_mib: 81_920,
        sms: 108,
        nvml_names: &["A100"],
        profiles: &A100_80GB,
    },
    GpuModel {
        id: "a30-24gb",
        name: "NVIDIA A30 24GB",
        compute_slices: 4,
        memory_slices: 4,
        memory_mib: 24_576,
        sms: 56,
        nvml_names: &["A30"],
        profiles: &A30_24GB,
    },
    GpuModel {
        id: "h100-80gb",
        name: "NVIDIA H100 80GB",
        compute_slices: 7,
        memory_slices: 8,
        memory_mib: 81_559,
        sms: 132,
        nvml_names: &["H100"],
        profiles: &H100_80GB,
    },
    GpuModel {
        id: "h100-94gb",
        name: "NVIDIA H100 NVL 94GB",
        compute_slices: 7,
        memory_slices: 8,
        memory_mib: 95_830,
        sms: 132,
        nvml_names: &["H100"],
        profiles: &H100_94GB,
    },
    GpuModel {
        id: "h200-141gb",
        name: "NVIDIA H200 141GB",
        compute_slices: 7,
        memory_slices: 8,
        memory_mib: 143_771,
        sms: 132,
        nvml_names: &["H200"],
        profiles: &H200_141GB,
    },
];

/// Every GPU model in the catalog.
pub fn gpu_models() -> &'static [GpuModel] {
    &MODELS
}

/// Lowercase with `-`, `_`, `.` and spaces removed, so `H100-80GB`,
/// `h100_80gb` and `h10080gb` compare equal.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' ' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A GPU model by id, ignoring case and separators (`H100-80GB`, `h100_80gb`).
/// A few short names are accepted where they are unambiguous: `a30`,
/// `h100-nvl`, `h200`.
pub fn gpu_model(id: &str) -> Option<&'static GpuModel> {
    let key = squash(id);
    let key = match key.as_str() {
        "a30" => "a3024gb",
        "h100nvl" | "h100nvl94gb" => "h10094gb",
        "h200" => "h200141gb",
        _ => key.as_str(),
    };
    MODELS.iter().find(|m| squash(m.id) == key)
}

impl GpuModel {
    /// A profile by name, ignoring case and an optional `MIG ` prefix
    /// (`MIG 1g.10gb` is how NVML names the device).
    pub fn profile(&self, name: &str) -> Option<&'static Profile> {
        let name = name.trim();
        let name = name
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("mig "))
            .map_or(name, |_| name[4..].trim_start());
        self.profiles
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// A profile by the id `nvidia-smi mig -cgi` takes.
    pub fn profile_by_id(&self, id: u32) -> Option<&'static Profile> {
        self.profiles.iter().find(|p| p.id == id)
    }

    /// The profile with the most memory (then the most compute): the whole
    /// GPU as one instance.
    pub fn largest_profile(&self) -> &'static Profile {
        self.profiles
            .iter()
            .max_by_key(|p| (p.memory_mib, p.compute_slices))
            .expect("every catalog GPU has profiles")
    }

    /// Whether a profile belongs to the balanced ladder the planner uses by
    /// default: no media extensions, and no more memory slots than the
    /// smallest profile with the same compute slices (which leaves out
    /// `1g.20gb` on A100 80GB, `1g.10gb` on A100 40GB and their kin).
    ///
    /// A memory-heavy `1g` profile lets a large model load onto one compute
    /// slice, where it decodes too slowly to serve; `+me` spends the GPU's only
    /// media engines on a model that does not use them. Both stay available
    /// when asked for.
    pub fn is_balanced(&self, profile: &Profile) -> bool {
        if profile.media_extensions {
            return false;
        }
        let lightest = self
            .profiles
            .iter()
            .filter(|p| p.compute_slices == profile.compute_slices && !p.media_extensions)
            .map(|p| p.memory_slices)
            .min()
            .unwrap_or(profile.memory_slices);
        profile.memory_slices <= lightest
    }

    /// Memory of one memory slot: the full-GPU profile's memory over the slot
    /// count. Used to value the slots a plan leaves free.
    pub fn slot_memory_bytes(&self) -> u64 {
        self.largest_profile().memory_bytes() / u64::from(self.memory_slices)
    }

    /// The catalog model for an NVML device name and its total memory (with
    /// MIG off, or the parent GPU's total with MIG on).
    ///
    /// The name picks the family (`A100`, `H100`); the memory picks the
    /// variant, since NVML names an H100 NVL `NVIDIA H100 NVL` but an
    /// A100 80GB `NVIDIA A100-SXM4-80GB` or `NVIDIA A100 80GB PCIe`. A memory
    /// more than a quarter away from every variant gives `None` rather than a
    /// guess; `memory_bytes == 0` (unknown) is accepted only when the family
    /// has a single variant.
    pub fn from_nvml_name(name: &str, memory_bytes: u64) -> Option<&'static GpuModel> {
        let words: Vec<String> = name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_uppercase)
            .collect();
        let family: Vec<&'static GpuModel> = MODELS
            .iter()
            .filter(|m| m.nvml_names.iter().any(|n| words.iter().any(|w| w == n)))
            .collect();
        if memory_bytes == 0 {
            return match family.as_slice() {
                [only] => Some(only),
                _ => None,
            };
        }
        let mib = memory_bytes / MIB;
        family
            .into_iter()
            .min_by_key(|m| m.memory_mib.abs_diff(mib))
            .filter(|m| m.memory_mib.abs_diff(mib) * 4 <= m.memory_mib)
    }
}

impl Profile {
    /// Memory of the instance in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib * MIB
    }

    /// The extended resource the NVIDIA device plugin advertises for this
    /// profile under the `mixed` MIG strategy. The plugin turns `+` into `.`
    /// (resource names may not contain `+`), so `1g.10gb+me` becomes
    /// `nvidia.com/mig-1g.10gb.me`.
    pub fn k8s_resource(&self) -> String {
        format!("nvidia.com/mig-{}", self.name.replace('+', "."))
    }

    /// Memory as `-lgip` prints it, e.g. `9.75 GiB`.
    pub fn memory_gib_label(&self) -> String {
        format!("{:.2} GiB", self.memory_mib as f64 / 1024.0)
    }

    /// Whether an instance of this profile may start at memory slot `start`.
    pub fn allows_start(&self, start: u8) -> bool {
        self.placements.iter().any(|p| p.start == start)
    }
}

#[cfg(test)]
mod tests {
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
                    assert_eq!(pl.start % pl.size.min(4), 0, "{} {} aligned", m.id, p.name);
                }
                assert!(p.compute_slices <= m.compute_slices);
                assert!(usize::from(p.max_count) <= p.placements.len().max(1));
                assert!(p.memory_mib < m.memory_mib, "{} {}", m.id, p.name);
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
        assert_eq!(id("NVIDIA H100 PCIe", 81_559 << 20), Some("h100-80gb"));
        assert_eq!(id("NVIDIA H100 NVL", 95_830 << 20), Some("h100-94gb"));
        assert_eq!(id("NVIDIA H200", gib(140)), Some("h200-141gb"));
        assert_eq!(id("NVIDIA H200 NVL", 0), Some("h200-141gb"));
        assert_eq!(id("NVIDIA A30", gib(24)), Some("a30-24gb"));
        // Not in the catalog, though the names contain a catalog family.
        assert_eq!(id("NVIDIA RTX A3000 Laptop GPU", gib(6)), None);
        assert_eq!(id("NVIDIA GH200 480GB", gib(96)), None);
        assert_eq!(id("NVIDIA A100-SXM4-80GB", 0), None, "two A100 variants");
        assert_eq!(
            id("NVIDIA A100-SXM4-80GB", gib(16)),
            None,
            "memory fits no variant"
        );
        assert_eq!(id("Tesla T4", gib(16)), None);
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
}
