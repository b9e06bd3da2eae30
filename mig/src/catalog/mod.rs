//! GPU models that support MIG, and the GPU-instance profiles each offers.
//!
//! The planner works from this table rather than from a live driver so that a
//! layout can be planned (and tested) on a machine without the GPU. The
//! figures are what the driver reports, not marketing numbers: a `1g.10gb`
//! slice on an A100 80GB holds 9.50 GiB, and a plan that trusted the name would
//! put a 10 GB model into it and fail at load time.
//!
//! # Layout
//!
//! - this file: the types, [`lgip_mib`], the lookups;
//! - [`ampere`], [`hopper`], [`blackwell`]: one table per GPU, each naming the
//!   output or document its figures were transcribed from;
//! - [`live`]: the memory a running driver reports, laid over a table.
//!
//! # Where the figures come from
//!
//! - Profile names, instance limits, copy engines and media units: NVIDIA
//!   *Multi-Instance GPU User Guide*, section "Supported MIG Profiles".
//! - Profile ids, memory (GiB) and SM counts: `nvidia-smi mig -lgip` output.
//!   Memory is kept as `-lgip` prints it (two decimals of GiB, which the driver
//!   derives from a size on a 1/16-GiB grid; [`lgip_mib`] restores that size).
//! - Placements: `nvidia-smi mig -lgipp` output, `{starts}:size` in memory
//!   slots.
//!
//! Memory moves by a fraction of a GiB between driver branches. Each table
//! keeps the figures of one branch ([`GpuModel::driver`]) and lists, per
//! profile, what other branches were seen printing
//! ([`Profile::memory_by_driver`]); fitting uses the smallest of them
//! ([`Profile::min_memory_mib`]) so that a plan holds on every driver. A test
//! (`mig/tests/catalog_fixtures.rs`) checks each table against the recorded
//! outputs under `mig/tests/fixtures/lgip/`.

mod ampere;
mod blackwell;
mod hopper;
pub mod live;
#[cfg(test)]
mod tests;

pub use live::{with_live_memory, LiveDifference};

use serde::Serialize;

const MIB: u64 = 1 << 20;

/// A window a GPU instance may occupy: memory slots `start..start + size`.
///
/// MIG places instances on the memory axis (8 slots on A100/H100/H200, 4 on
/// A30, 12 on RTX PRO 6000 Blackwell); compute slices follow from the
/// profile. `-lgipp` prints these as `{0,2,4}:2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Placement {
    pub start: u8,
    pub size: u8,
}

/// What a profile's name suffix says about media engines and graphics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// No suffix: the profile's share of the media engines.
    Plain,
    /// `+me`: adds the GPU's otherwise unassigned media engines; one per GPU.
    Me,
    /// `+me.all`: every media engine of the GPU; one per GPU.
    MeAll,
    /// `-me`: no media engine at all, pure compute.
    NoMe,
    /// `+gfx`: graphics APIs enabled in the instance (GB20x).
    Gfx,
}

impl Variant {
    /// The variant a profile name's suffix names (`1g.24gb+me.all` →
    /// [`Variant::MeAll`]). A const fn so the tables can derive it.
    pub const fn of_name(name: &str) -> Variant {
        let b = name.as_bytes();
        if ends_with(b, b"+me.all") {
            Variant::MeAll
        } else if ends_with(b, b"+me") {
            Variant::Me
        } else if ends_with(b, b"-me") {
            Variant::NoMe
        } else if ends_with(b, b"+gfx") {
            Variant::Gfx
        } else {
            Variant::Plain
        }
    }

    /// Whether the instance takes media engines that no other instance on
    /// the GPU may then have (`+me`, `+me.all`).
    pub const fn claims_media(self) -> bool {
        matches!(self, Variant::Me | Variant::MeAll)
    }
}

const fn ends_with(s: &[u8], suffix: &[u8]) -> bool {
    if s.len() < suffix.len() {
        return false;
    }
    let offset = s.len() - suffix.len();
    let mut i = 0;
    while i < suffix.len() {
        if s[offset + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Copy engines and media units of an instance, as the two-line `-lgip` row
/// prints them (`CE`, `DEC`, `ENC`, `JPG`, `OFA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Units {
    pub copy_engines: u8,
    pub decoders: u8,
    pub encoders: u8,
    pub jpeg: u8,
    pub ofa: u8,
}

/// A GPU-instance profile (`nvidia-smi mig -lgip` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Short name as NVML and `nvidia-smi -L` report it, e.g. `1g.10gb`,
    /// `1g.10gb+me`, `1g.24gb+me.all`.
    pub name: &'static str,
    /// GPU-instance profile id, what `nvidia-smi mig -cgi` takes.
    pub id: u32,
    /// Compute slices (the `1g` in `1g.10gb`), of the GPU's
    /// [`GpuModel::compute_slices`].
    pub compute_slices: u8,
    /// Memory slots the instance occupies, of the GPU's
    /// [`GpuModel::memory_slices`]. A `3g` instance takes 4 of 8, which is
    /// why `3g.40gb` and `4g.40gb` hold the same memory.
    pub memory_slices: u8,
    /// Memory of the instance in MiB, as `-lgip` prints it on the driver
    /// branch the table was taken from ([`GpuModel::driver`]). Other branches
    /// may print less: plan with [`min_memory_mib`](Self::min_memory_mib).
    pub memory_mib: u64,
    /// `(driver branch, MiB)` for branches seen printing a figure other than
    /// [`memory_mib`](Self::memory_mib), e.g. `("R525", 9856)`.
    pub memory_by_driver: &'static [(&'static str, u64)],
    /// SMs of the instance, where a recorded `-lgip` gave them.
    pub sms: Option<u16>,
    /// Copy engines and media units, where a source gave them.
    pub units: Option<Units>,
    /// The name's suffix: `+me`, `+me.all`, `-me`, `+gfx` or none.
    pub variant: Variant,
    /// `+me` and `+me.all` profiles carry media engines that only one
    /// instance per GPU may have ([`Variant::claims_media`]).
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
    /// Driver branch whose `-lgip` memory figures the table holds (`R550`).
    pub driver: &'static str,
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
    /// `NVIDIA A100-SXM4-80GB` and `NVIDIA A100 80GB PCIe`). Every word must
    /// be present, matched whole, so that `A30` does not match `RTX A3000`
    /// nor `H200` `GH200`.
    pub nvml_names: &'static [&'static str],
    /// Words that must not be in the NVML name (`PCIe` for the SXM H100).
    pub nvml_excludes: &'static [&'static str],
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

/// A profile with the figures every table has; copy engines, media units
/// are added with `Profile::with_units`, other drivers' memory with
/// `Profile::on_drivers` (or [`with_drivers`] for a whole ladder).
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
    let variant = Variant::of_name(name);
    Profile {
        name,
        id,
        compute_slices,
        memory_slices,
        memory_mib,
        memory_by_driver: &[],
        sms,
        units: None,
        variant,
        media_extensions: variant.claims_media(),
        max_count,
        placements,
    }
}

impl Profile {
    /// The profile with its copy engines and media units.
    const fn with_units(mut self, u: Units) -> Profile {
        self.units = Some(u);
        self
    }

    /// The profile with what other driver branches print for its memory.
    const fn on_drivers(mut self, figures: &'static [(&'static str, u64)]) -> Profile {
        self.memory_by_driver = figures;
        self
    }
}

/// `CE/DEC/ENC/JPG/OFA` as `-lgip` prints them.
const fn units(copy_engines: u8, decoders: u8, encoders: u8, jpeg: u8, ofa: u8) -> Units {
    Units {
        copy_engines,
        decoders,
        encoders,
        jpeg,
        ofa,
    }
}

/// The seven-profile ladder shared by A100, H100 and H200 (ids 19, 20, 15, 14,
/// 9, 5, 0 and the placements of the user guide's A100 `-lgipp` example),
/// with the memory and SM figures of one GPU model.
///
/// Arguments are `(name, memory in hundredths of a GiB, SMs)` per profile,
/// in `-lgip` order; `None` SMs where no output gave them.
const fn ladder8(p: [(&'static str, u64, Option<u16>); 7]) -> [Profile; 7] {
    [
        profile(p[0].0, 19, 1, 1, lgip_mib(p[0].1), p[0].2, 7, EIGHT_1),
        profile(p[1].0, 20, 1, 1, lgip_mib(p[1].1), p[1].2, 1, EIGHT_1),
        profile(p[2].0, 15, 1, 2, lgip_mib(p[2].1), p[2].2, 4, EIGHT_2_1G),
        profile(p[3].0, 14, 2, 2, lgip_mib(p[3].1), p[3].2, 3, EIGHT_2_2G),
        profile(p[4].0, 9, 3, 4, lgip_mib(p[4].1), p[4].2, 2, EIGHT_4_3G),
        profile(p[5].0, 5, 4, 4, lgip_mib(p[5].1), p[5].2, 1, EIGHT_4_4G),
        profile(p[6].0, 0, 7, 8, lgip_mib(p[6].1), p[6].2, 1, EIGHT_8),
    ]
}

/// Copy engines and media units of the Hopper ladder, as `-lgip` prints them
/// on H100 80GB and GH200 96GB (recorded; see the fixtures), in ladder order.
const HOPPER_UNITS: [Units; 7] = [
    units(1, 1, 0, 1, 0),
    units(1, 1, 0, 1, 1),
    units(1, 1, 0, 1, 0),
    units(2, 2, 0, 2, 0),
    units(3, 3, 0, 3, 0),
    units(4, 4, 0, 4, 0),
    units(8, 7, 0, 7, 1),
];

/// `ladder` with `units` laid over it, profile by profile.
const fn with_units(mut ladder: [Profile; 7], u: [Units; 7]) -> [Profile; 7] {
    let mut i = 0;
    while i < 7 {
        ladder[i].units = Some(u[i]);
        i += 1;
    }
    ladder
}

/// `ladder` with other drivers' memory figures, `(profile index, list)`.
const fn with_drivers(
    mut ladder: [Profile; 7],
    o: &[(usize, &'static [(&'static str, u64)])],
) -> [Profile; 7] {
    let mut i = 0;
    while i < o.len() {
        ladder[o[i].0].memory_by_driver = o[i].1;
        i += 1;
    }
    ladder
}

/// Every catalog GPU, by family: Ampere, then Hopper, then Blackwell.
static MODELS: [GpuModel; 11] = [
    ampere::A100_40GB,
    ampere::A100_80GB,
    ampere::A800_80GB,
    ampere::A30_24GB,
    hopper::H100_80GB,
    hopper::H100_PCIE_80GB,
    hopper::H100_94GB,
    hopper::H800_80GB,
    hopper::H200_141GB,
    hopper::GH200_96GB,
    blackwell::RTX_PRO_6000_96GB,
];

/// GPUs that support MIG but have no table yet, with why: no source found
/// gives their profile ids and memory, and a table must not be guessed
/// (a planner that trusts a guessed size overcommits the slice). Listed so
/// that `--gpu` can say so instead of "unknown GPU".
pub const WITHOUT_TABLE: &[(&str, &str)] = &[
    (
        "b200-180gb",
        "only the 1g/2g rows of a recorded -lgip were found (NVIDIA/mig-parted \
         #166, #187): the 3g, 4g and 7g ids and memory are unknown",
    ),
    (
        "gb200-186gb",
        "only the 1g/2g rows of a recorded -lgip were found (NVIDIA/gpu-operator \
         #1303, NVIDIA/mig-parted #227, whose names differ): the 3g, 4g and 7g \
         ids and memory are unknown",
    ),
    (
        "b300-288gb",
        "no recorded -lgip found: profile ids, memory and SMs unknown",
    ),
    (
        "gh200-144gb",
        "only the 1g/2g rows of a recorded -lgip were found (NVIDIA/mig-parted \
         #139): the 3g, 4g and 7g ids and memory are unknown",
    ),
    (
        "h20-96gb",
        "no recorded -lgip found: profile names, ids, memory and SMs unknown",
    ),
    (
        "rtx-pro-5000-48gb",
        "no recorded -lgip found: profile ids, memory and SMs unknown",
    ),
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

    /// The profile with the most memory (then the most compute, then
    /// without a suffix: `4g.96gb` over `4g.96gb+gfx`): the whole GPU as one
    /// instance.
    pub fn largest_profile(&self) -> &'static Profile {
        self.profiles
            .iter()
            .max_by_key(|p| {
                (
                    p.min_memory_mib(),
                    p.compute_slices,
                    p.variant == Variant::Plain,
                )
            })
            .expect("every catalog GPU has profiles")
    }

    /// Whether a profile belongs to the balanced ladder the planner uses by
    /// default: no suffix (`+me`, `+me.all`, `-me`, `+gfx`), and no more
    /// memory slots than the smallest profile with the same compute slices
    /// (which leaves out `1g.20gb` on A100 80GB, `1g.10gb` on A100 40GB and
    /// their kin).
    ///
    /// A memory-heavy `1g` profile lets a large model load onto one compute
    /// slice, where it decodes too slowly to serve; `+me` spends the GPU's only
    /// media engines on a model that does not use them; `-me` and `+gfx` hold
    /// what the plain profile holds under another name. All stay available
    /// when asked for.
    pub fn is_balanced(&self, profile: &Profile) -> bool {
        if profile.variant != Variant::Plain {
            return false;
        }
        let lightest = self
            .profiles
            .iter()
            .filter(|p| p.compute_slices == profile.compute_slices && p.variant == Variant::Plain)
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
    /// The name picks the family (`A100`, `H100` without `PCIe`); the memory
    /// picks the variant, since NVML names an H100 NVL `NVIDIA H100 NVL` but
    /// an A100 80GB `NVIDIA A100-SXM4-80GB` or `NVIDIA A100 80GB PCIe`. A
    /// memory more than [`MEMORY_TOLERANCE_PERCENT`] away from every variant
    /// gives `None` rather than a guess (an H100 SXM 64GB is no
    /// `h100-80gb`); `memory_bytes == 0` (unknown) is accepted only when the
    /// family has a single variant.
    pub fn from_nvml_name(name: &str, memory_bytes: u64) -> Option<&'static GpuModel> {
        let words: Vec<String> = name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_uppercase)
            .collect();
        let has = |n: &&str| words.iter().any(|w| w.eq_ignore_ascii_case(n));
        let family: Vec<&'static GpuModel> = MODELS
            .iter()
            .filter(|m| m.nvml_names.iter().all(has) && !m.nvml_excludes.iter().any(has))
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
            .filter(|m| m.memory_mib.abs_diff(mib) * 100 <= m.memory_mib * MEMORY_TOLERANCE_PERCENT)
    }
}

/// How far (in percent of the catalog figure) an NVML memory total may be
/// from a model's and still be that model. NVML totals of one model differ
/// by well under 1 %; the nearest other variant of a family is 15 % away
/// (H100 80GB and 94GB).
pub const MEMORY_TOLERANCE_PERCENT: u64 = 5;

impl Profile {
    /// The smallest memory any known driver branch prints for this profile:
    /// [`memory_mib`](Self::memory_mib) or one of
    /// [`memory_by_driver`](Self::memory_by_driver). What a plan may count
    /// on whichever driver the machine runs.
    pub fn min_memory_mib(&self) -> u64 {
        self.memory_by_driver
            .iter()
            .map(|&(_, mib)| mib)
            .fold(self.memory_mib, u64::min)
    }

    /// Memory of the instance in bytes that a plan may fill: the smallest
    /// any known driver gives ([`min_memory_mib`](Self::min_memory_mib)),
    /// so a plan never overcommits a slice on another driver.
    pub fn memory_bytes(&self) -> u64 {
        self.min_memory_mib() * MIB
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
