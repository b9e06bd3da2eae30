//! From a recorded [`NvmlSnapshot`] to the slices workers can be pinned to.
//!
//! Pure, so every rule here is tested on recorded data. Anything surprising
//! (MIG on with no instances, a pending mode change, an unreadable GPU)
//! becomes a warning in the result rather than a silently shorter list: an
//! operator looking at "0 slices" must be told why.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::snapshot::{GpuRecord, MigDeviceRecord, NvmlSnapshot};
use crate::catalog::{with_live_memory, GpuModel, LiveDifference, Profile};
use crate::SliceId;

const GIB: u64 = 1 << 30;

/// Slices found on this machine, with the reasons for anything left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// Ordered by GPU index, then GPU-instance id, then compute-instance id,
    /// so listings are stable however NVML enumerates the MIG slots.
    pub slices: Vec<DiscoveredSlice>,
    /// One sentence each, naming the GPU concerned.
    pub warnings: Vec<String>,
}

impl Discovered {
    /// The slice a worker pinned to `id` runs on, so it can learn its own
    /// profile and memory.
    pub fn find(&self, id: &SliceId) -> Option<&DiscoveredSlice> {
        self.slices.iter().find(|s| &s.id == id)
    }
}

/// A GPU slice: a MIG device, or a whole GPU when MIG is off or unsupported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredSlice {
    /// [`SliceId::Mig`] or [`SliceId::Gpu`]; its text is what
    /// `CUDA_VISIBLE_DEVICES` takes. Serialised as that text.
    #[serde(with = "slice_id_text")]
    pub id: SliceId,
    /// The MIG profile as NVML names it (`1g.10gb`, `1g.10gb+me`,
    /// `1c.3g.40gb`), or `gpu.<N>gb` for a whole GPU, where N is the memory in
    /// GiB rounded up: NVIDIA's own names round up the same way (`1g.10gb` has
    /// 9.5 GiB, an H100 "80GB" reports 79.6 GiB, an H200 "141GB" 140.4 GiB).
    pub profile: String,
    /// Memory of this slice as its own NVML handle reports it; for a MIG
    /// device never the parent card's.
    pub memory_bytes: u64,
    /// `GPU-<uuid>` of the physical GPU (the slice itself for a whole GPU).
    pub gpu_uuid: String,
    pub gpu_index: u32,
    pub gpu_name: String,
    /// `None` for a whole GPU.
    pub gpu_instance_id: Option<u32>,
    /// `None` for a whole GPU.
    pub compute_instance_id: Option<u32>,
    /// Slices of the GPU instance (the `3` of `3g.40gb`); `None` for a whole GPU.
    pub gpu_instance_slices: Option<u8>,
    /// Compute slices this device gets: the `1` of `1c.3g.40gb`, otherwise the
    /// GPU-instance count. NVML's attributes win over the name when recorded.
    /// `None` for a whole GPU.
    pub compute_slices: Option<u8>,
    /// Streaming multiprocessors of the MIG device, when NVML reported them.
    pub multiprocessor_count: Option<u32>,
}

/// Maps a snapshot to slices. Never fails: what cannot be mapped is left out
/// with a warning.
pub fn slices(snapshot: &NvmlSnapshot) -> Discovered {
    let mut out = Discovered::default();
    for error in &snapshot.errors {
        out.warnings.push(format!("NVML: {error}"));
    }
    if snapshot.gpus.is_empty() {
        out.warnings.push(
            "NVML is loaded but lists no GPU (in a container, was it started with GPUs attached?)"
                .to_string(),
        );
    }
    let mut seen = HashSet::new();
    let mut gpus: Vec<&GpuRecord> = snapshot.gpus.iter().collect();
    gpus.sort_by_key(|g| g.index);
    for gpu in gpus {
        map_gpu(gpu, &mut seen, &mut out);
    }
    out.slices.sort_by_key(|s| {
        (
            s.gpu_index,
            s.gpu_instance_id,
            s.compute_instance_id,
            s.id.to_string(),
        )
    });
    out
}

fn map_gpu(gpu: &GpuRecord, seen: &mut HashSet<String>, out: &mut Discovered) {
    let label = format!("GPU {} ({}, {})", gpu.index, gpu.name, gpu.uuid);
    let id = match gpu.uuid.parse::<SliceId>() {
        Ok(id @ SliceId::Gpu(_)) => id,
        _ => {
            out.warnings.push(format!(
                "{label}: skipped, its UUID does not start with `GPU-`"
            ));
            return;
        }
    };
    if !seen.insert(gpu.uuid.clone()) {
        out.warnings
            .push(format!("{label}: skipped, NVML listed this UUID twice"));
        return;
    }
    for error in &gpu.errors {
        out.warnings.push(format!("{label}: {error}"));
    }
    if let Some(found) = catalog_profiles(gpu) {
        for d in &found.differences {
            tracing::warn!(
                gpu = %gpu.name,
                uuid = %gpu.uuid,
                catalog = d.gpu,
                profile = d.profile,
                table_mib = d.table_mib,
                live_mib = d.live_mib,
                "the driver's GPU-instance profile memory differs from the catalog; this machine's slices are sized by the driver's figure"
            );
            out.warnings.push(format!(
                "{label}: {d}; this machine's slices are sized by the driver's figure"
            ));
        }
    }
    let mig_on = match gpu.mig_mode {
        None => false,
        Some(mode) => {
            match (mode.current, mode.pending) {
                (false, true) => out.warnings.push(format!(
                    "{label}: MIG mode is set to turn on but is still off until the GPU is reset \
                     (`nvidia-smi -r -i {}`) or the machine reboots; serving it as a whole GPU until then",
                    gpu.index
                )),
                (true, false) => out.warnings.push(format!(
                    "{label}: MIG mode is set to turn off but is still on until the GPU is reset \
                     (`nvidia-smi -r -i {}`) or the machine reboots; serving its MIG devices until then",
                    gpu.index
                )),
                _ => {}
            }
            mode.current
        }
    };
    if !mig_on {
        if !gpu.mig_devices.is_empty() {
            out.warnings.push(format!(
                "{label}: MIG mode is off yet NVML listed {} MIG device(s); ignoring them",
                gpu.mig_devices.len()
            ));
        }
        out.slices.push(DiscoveredSlice {
            id,
            profile: format!("gpu.{}gb", gib_rounded_up(gpu.memory_total_bytes)),
            memory_bytes: gpu.memory_total_bytes,
            gpu_uuid: gpu.uuid.clone(),
            gpu_index: gpu.index,
            gpu_name: gpu.name.clone(),
            gpu_instance_id: None,
            compute_instance_id: None,
            gpu_instance_slices: None,
            compute_slices: None,
            multiprocessor_count: None,
        });
        return;
    }
    if gpu.mig_devices.is_empty() {
        if !gpu.errors.is_empty() {
            out.warnings.push(format!(
                "{label}: MIG mode is on but none of its MIG devices could be read, \
                 so it offers 0 slices (NVML errors above)"
            ));
            return;
        }
        out.warnings.push(format!(
            "{label}: MIG mode is on but it has no GPU instances yet, so it offers 0 slices; \
             create instances (`nvidia-smi mig -i {} -cgi <profiles> -C`) or turn MIG off",
            gpu.index
        ));
        return;
    }
    let mut by_gpu_instance: BTreeMap<u32, Vec<&MigDeviceRecord>> = BTreeMap::new();
    for mig in &gpu.mig_devices {
        if let Some(slice) = map_mig(gpu, &label, mig, seen, &mut out.warnings) {
            by_gpu_instance
                .entry(mig.gpu_instance_id)
                .or_default()
                .push(mig);
            out.slices.push(slice);
        }
    }
    // Compute instances of one GPU instance share its memory, and each MIG
    // handle reports all of it: two workers sizing themselves from it would
    // together ask for twice what exists.
    for (gi, migs) in by_gpu_instance {
        if migs.len() > 1 {
            let uuids: Vec<&str> = migs.iter().map(|m| m.uuid.as_str()).collect();
            out.warnings.push(format!(
                "{label}: MIG devices {} share GPU instance {gi} and its {:.1} GiB of memory; \
                 each reports the full amount, so size their workers for a share of it",
                uuids.join(", "),
                migs[0].memory_total_bytes as f64 / GIB as f64
            ));
        }
    }
}

fn map_mig(
    gpu: &GpuRecord,
    label: &str,
    mig: &MigDeviceRecord,
    seen: &mut HashSet<String>,
    warnings: &mut Vec<String>,
) -> Option<DiscoveredSlice> {
    let id = match mig.uuid.parse::<SliceId>() {
        Ok(id @ SliceId::Mig(_)) => id,
        _ => {
            warnings.push(format!(
                "{label}: MIG device {} (`{}`) skipped, its UUID does not start with `MIG-`",
                mig.index, mig.uuid
            ));
            return None;
        }
    };
    if !seen.insert(mig.uuid.clone()) {
        warnings.push(format!(
            "{label}: MIG device {} skipped, NVML listed {} twice",
            mig.index, mig.uuid
        ));
        return None;
    }
    let named = profile_from_name(&mig.name);
    let parsed = named.map(parse_profile).unwrap_or_default();
    let gpu_instance_slices = mig
        .attributes
        .and_then(|a| u8::try_from(a.gpu_instance_slice_count).ok())
        .or(parsed.gpu_instance_slices);
    let compute_slices = mig
        .attributes
        .and_then(|a| u8::try_from(a.compute_instance_slice_count).ok())
        .or(parsed.compute_slices)
        .or(parsed.gpu_instance_slices);
    let profile = match named {
        Some(p) => p.to_string(),
        None => {
            let gb = gib_rounded_up(mig.memory_total_bytes);
            let fallback = match gpu_instance_slices {
                Some(g) => format!("{g}g.{gb}gb"),
                None => format!("mig.{gb}gb"),
            };
            warnings.push(format!(
                "{label}: MIG device {} has the name `{}`, which holds no ` MIG <profile>`; \
                 calling it `{fallback}` from its size",
                mig.uuid, mig.name
            ));
            fallback
        }
    };
    if mig.memory_total_bytes >= gpu.memory_total_bytes {
        warnings.push(format!(
            "{label}: MIG device {} reports {} bytes, as much as the whole card; \
             that is the parent GPU's figure, not the slice's",
            mig.uuid, mig.memory_total_bytes
        ));
    }
    Some(DiscoveredSlice {
        id,
        profile,
        memory_bytes: mig.memory_total_bytes,
        gpu_uuid: gpu.uuid.clone(),
        gpu_index: gpu.index,
        gpu_name: gpu.name.clone(),
        gpu_instance_id: Some(mig.gpu_instance_id),
        compute_instance_id: Some(mig.compute_instance_id),
        gpu_instance_slices,
        compute_slices,
        multiprocessor_count: mig.attributes.map(|a| a.multiprocessor_count),
    })
}

/// Memory in GiB, rounded up (see [`DiscoveredSlice::profile`]).
pub fn gib_rounded_up(bytes: u64) -> u64 {
    bytes.div_ceil(GIB)
}

/// The profile part of a MIG device's NVML name: the text after the last
/// `" MIG "` (`"NVIDIA A100-SXM4-80GB MIG 1g.10gb"` → `"1g.10gb"`).
pub fn profile_from_name(name: &str) -> Option<&str> {
    let (_, profile) = name.rsplit_once(" MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then_some(profile)
}

/// Slice counts read from a profile name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfileSlices {
    /// The `<n>` of `<n>g`.
    pub gpu_instance_slices: Option<u8>,
    /// The `<n>` of a leading `<n>c.`, present only when a compute instance
    /// is smaller than its GPU instance.
    pub compute_slices: Option<u8>,
}

/// Reads `[<c>c.]<g>g.<mem>gb[+<extra>]` (`1g.10gb`, `1g.10gb+me`,
/// `1c.3g.40gb`). Unknown shapes give `None`s rather than an error, since a
/// new driver may name new profiles and the slice is usable all the same.
pub fn parse_profile(profile: &str) -> ProfileSlices {
    let mut out = ProfileSlices::default();
    for part in profile.split(['.', '+']) {
        let count = |suffix: char| part.strip_suffix(suffix).and_then(|n| n.parse::<u8>().ok());
        if let Some(n) = count('c') {
            out.compute_slices.get_or_insert(n);
        } else if let Some(n) = count('g') {
            out.gpu_instance_slices.get_or_insert(n);
        }
    }
    out
}

/// Serialises a [`SliceId`] as the text `CUDA_VISIBLE_DEVICES` takes.
mod slice_id_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::SliceId;

    pub fn serialize<S: Serializer>(id: &SliceId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SliceId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A GPU's catalog model with the profiles as this machine's driver sizes
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogMatch {
    pub model: &'static GpuModel,
    /// The model's profiles, memory replaced by the driver's where the
    /// snapshot recorded it ([`GpuRecord::instance_profiles`]).
    pub profiles: Vec<Profile>,
    /// Profiles whose driver memory differs from the table's.
    pub differences: Vec<LiveDifference>,
}

/// The catalog model of a recorded GPU (by NVML name and memory), with the
/// live profile memory laid over its table; `None` when the GPU is not in
/// the catalog.
pub fn catalog_profiles(gpu: &GpuRecord) -> Option<CatalogMatch> {
    let model = GpuModel::from_nvml_name(&gpu.name, gpu.memory_total_bytes)?;
    let live: Vec<(u32, u64)> = gpu
        .instance_profiles
        .iter()
        .map(|p| (p.id, p.memory_size_mb))
        .collect();
    let (profiles, differences) = with_live_memory(model, &live);
    Some(CatalogMatch {
        model,
        profiles,
        differences,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::snapshot::{InstanceProfileRecord, MigAttributesRecord, MigModeRecord};

    fn gpu(index: u32, mig: Option<(bool, bool)>, devices: Vec<MigDeviceRecord>) -> GpuRecord {
        GpuRecord {
            index,
            uuid: format!("GPU-0000000{index}-aaaa-bbbb-cccc-dddddddddddd"),
            name: "NVIDIA A100-SXM4-40GB".into(),
            pci_bus_id: None,
            memory_total_bytes: 40 * GIB,
            mig_mode: mig.map(|(current, pending)| MigModeRecord { current, pending }),
            mig_devices: devices,
            instance_profiles: vec![],
            errors: vec![],
        }
    }

    fn mig(index: u32, profile: &str, gi: u32, ci: u32, mib: u64) -> MigDeviceRecord {
        MigDeviceRecord {
            index,
            uuid: format!("MIG-{index:08x}-1111-2222-3333-{gi:06x}{ci:06x}"),
            name: format!("NVIDIA A100-SXM4-40GB MIG {profile}"),
            gpu_instance_id: gi,
            compute_instance_id: ci,
            memory_total_bytes: mib << 20,
            attributes: None,
        }
    }

    fn snapshot(gpus: Vec<GpuRecord>) -> NvmlSnapshot {
        NvmlSnapshot {
            driver_version: Some("550.54.15".into()),
            cuda_driver_version: Some(12040),
            gpus,
            errors: vec![],
        }
    }

    #[test]
    fn parses_profile_names() {
        assert_eq!(
            profile_from_name("NVIDIA H100 80GB HBM3 MIG 1g.10gb"),
            Some("1g.10gb")
        );
        assert_eq!(profile_from_name("NVIDIA H100 80GB HBM3"), None);
        assert_eq!(profile_from_name("NVIDIA A100 MIG "), None);
        let p = parse_profile("3g.40gb");
        assert_eq!((p.gpu_instance_slices, p.compute_slices), (Some(3), None));
        let p = parse_profile("1g.10gb+me");
        assert_eq!((p.gpu_instance_slices, p.compute_slices), (Some(1), None));
        let p = parse_profile("1c.3g.40gb");
        assert_eq!(
            (p.gpu_instance_slices, p.compute_slices),
            (Some(3), Some(1))
        );
        assert_eq!(parse_profile("weird"), ProfileSlices::default());
    }

    #[test]
    fn rounds_whole_gpu_memory_up_to_gib() {
        assert_eq!(gib_rounded_up(81559 << 20), 80);
        assert_eq!(gib_rounded_up(80 * GIB), 80);
        assert_eq!(gib_rounded_up(143771 << 20), 141);
        assert_eq!(gib_rounded_up(0), 0);
    }

    #[test]
    fn orders_by_gpu_then_instance_ids_whatever_the_slot_order() {
        let s = snapshot(vec![
            gpu(1, None, vec![]),
            gpu(
                0,
                Some((true, true)),
                vec![
                    mig(0, "1g.5gb", 13, 0, 4864),
                    mig(1, "2g.10gb", 5, 0, 9856),
                    mig(2, "1g.5gb", 11, 0, 4864),
                ],
            ),
        ]);
        let d = slices(&s);
        let keys: Vec<_> = d
            .slices
            .iter()
            .map(|s| (s.gpu_index, s.gpu_instance_id))
            .collect();
        assert_eq!(
            keys,
            [(0, Some(5)), (0, Some(11)), (0, Some(13)), (1, None)]
        );
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn pending_disable_keeps_mig_devices_and_warns() {
        let d = slices(&snapshot(vec![gpu(
            0,
            Some((true, false)),
            vec![mig(0, "7g.40gb", 0, 0, 40192)],
        )]));
        assert_eq!(d.slices.len(), 1);
        assert_eq!(d.slices[0].profile, "7g.40gb");
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].contains("set to turn off"),
            "{}",
            d.warnings[0]
        );
    }

    #[test]
    fn shared_gpu_instance_is_flagged_and_compute_slices_come_from_the_c() {
        let d = slices(&snapshot(vec![gpu(
            0,
            Some((true, true)),
            vec![
                mig(0, "1c.3g.20gb", 2, 0, 19968),
                mig(1, "2c.3g.20gb", 2, 1, 19968),
            ],
        )]));
        assert_eq!(d.slices.len(), 2);
        assert_eq!(d.slices[0].compute_slices, Some(1));
        assert_eq!(d.slices[1].compute_slices, Some(2));
        assert_eq!(d.slices[0].gpu_instance_slices, Some(3));
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].contains("share GPU instance 2"),
            "{}",
            d.warnings[0]
        );
    }

    #[test]
    fn attributes_win_over_the_name_and_fill_in_a_nameless_profile() {
        let mut m = mig(0, "", 7, 0, 4864);
        m.name = "NVIDIA A100-SXM4-40GB".into();
        m.attributes = Some(MigAttributesRecord {
            multiprocessor_count: 14,
            gpu_instance_slice_count: 1,
            compute_instance_slice_count: 1,
            memory_size_mb: 4864,
        });
        let d = slices(&snapshot(vec![gpu(0, Some((true, true)), vec![m])]));
        let s = &d.slices[0];
        assert_eq!(s.profile, "1g.5gb");
        assert_eq!(
            (
                s.gpu_instance_slices,
                s.compute_slices,
                s.multiprocessor_count
            ),
            (Some(1), Some(1), Some(14))
        );
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].contains("calling it `1g.5gb`"));
    }

    #[test]
    fn bad_uuids_duplicates_and_parent_memory_are_reported() {
        let mut bad = mig(0, "1g.5gb", 7, 0, 4864);
        bad.uuid = "3f2c...".into();
        let dup = mig(1, "1g.5gb", 8, 0, 4864);
        let whole_card = mig(2, "7g.40gb", 0, 0, 40 * 1024);
        let mut d = slices(&snapshot(vec![gpu(
            0,
            Some((true, true)),
            vec![bad, dup.clone(), dup, whole_card],
        )]));
        assert_eq!(d.slices.len(), 2);
        d.warnings.sort();
        assert_eq!(d.warnings.len(), 3, "{:?}", d.warnings);
        assert!(d
            .warnings
            .iter()
            .any(|w| w.contains("does not start with `MIG-`")));
        assert!(d.warnings.iter().any(|w| w.contains("twice")));
        assert!(d
            .warnings
            .iter()
            .any(|w| w.contains("as much as the whole card")));
    }

    #[test]
    fn unreadable_mig_devices_are_not_mistaken_for_no_instances() {
        let mut g = gpu(0, Some((true, true)), vec![]);
        g.errors
            .push("MIG device 0 skipped, NVML failed to read its UUID: unknown error".into());
        let d = slices(&snapshot(vec![g]));
        assert!(d.slices.is_empty());
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        assert!(d.warnings[0]
            .ends_with("MIG device 0 skipped, NVML failed to read its UUID: unknown error"));
        assert!(d.warnings[1].contains("none of its MIG devices could be read"));
        assert!(!d.warnings[1].contains("no GPU instances"));
    }

    #[test]
    fn no_gpu_and_read_errors_become_warnings() {
        let mut s = snapshot(vec![]);
        s.errors
            .push("GPU 0: skipped, NVML failed to read its UUID: GPU lost".into());
        let d = slices(&s);
        assert!(d.slices.is_empty());
        assert_eq!(d.warnings.len(), 2);
        assert!(d.warnings[0].starts_with("NVML: GPU 0: skipped"));
        assert!(d.warnings[1].contains("lists no GPU"));
    }

    fn live(id: u32, memory_size_mb: u64) -> InstanceProfileRecord {
        InstanceProfileRecord {
            id,
            slice_count: 1,
            instance_count: 7,
            multiprocessor_count: 14,
            copy_engine_count: 1,
            decoder_count: 0,
            encoder_count: 0,
            jpeg_count: 0,
            ofa_count: 0,
            memory_size_mb,
        }
    }

    #[test]
    fn live_profile_memory_overrides_the_table_and_a_difference_is_a_warning() {
        let mut g = gpu(0, Some((true, false)), vec![]);
        // The table's 1g.5gb is 4.75 GiB (4864 MiB); this driver says 4800.
        g.instance_profiles = vec![live(19, 4800), live(0, 40192)];
        let found = catalog_profiles(&g).unwrap();
        assert_eq!(found.model.id, "a100-40gb");
        let p = |id: u32| found.profiles.iter().find(|p| p.id == id).unwrap();
        assert_eq!(p(19).min_memory_mib(), 4800);
        assert_eq!(p(0).min_memory_mib(), 40192);
        assert_eq!(p(15).min_memory_mib(), 9856, "not reported: the table's");
        assert_eq!(found.differences.len(), 1, "{:?}", found.differences);
        let recorded = snapshot(vec![g]);
        let json = recorded.to_json_pretty();
        assert!(json.contains("\"instance_profiles\""));
        assert_eq!(NvmlSnapshot::from_json(&json).unwrap(), recorded);
        let d = slices(&recorded);
        let w: Vec<_> = d.warnings.iter().filter(|w| w.contains("1g.5gb")).collect();
        assert_eq!(w.len(), 1, "{:?}", d.warnings);
        assert!(
            w[0].contains("4800 MiB") && w[0].contains("4864 MiB"),
            "{}",
            w[0]
        );
        assert!(w[0].starts_with("GPU 0 (NVIDIA A100-SXM4-40GB"), "{}", w[0]);
    }

    #[test]
    fn matching_live_profiles_and_unknown_gpus_warn_of_nothing() {
        let mut g = gpu(0, Some((true, false)), vec![]);
        g.instance_profiles = vec![live(19, 4864)];
        assert!(catalog_profiles(&g).unwrap().differences.is_empty());
        g.name = "Tesla T4".into();
        assert!(catalog_profiles(&g).is_none());
    }
}
