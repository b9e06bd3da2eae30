//! The one GPU slice a process was given, found without being told: in a
//! Kubernetes pod the NVIDIA device plugin sets `NVIDIA_VISIBLE_DEVICES` to
//! the MIG device it allocated (`MIG-<uuid>`), and NVML inside the container
//! lists only what is visible. A worker started with `--slice visible`
//! takes its identity from there, so it reports the real slice.

use crate::SliceId;

use super::DiscoveredSlice;

/// The environment variables that name visible devices, in the order they
/// are read: the device plugin's, then CUDA's.
pub const VISIBLE_DEVICES_VARS: [&str; 2] = ["NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"];

/// The one visible GPU slice: the device a visible-devices variable names
/// when it names exactly one by UUID (`MIG-...` or `GPU-...`), else the one
/// MIG device NVML lists (or the one whole GPU, when none is in MIG mode).
/// `visible` is each variable's value, in [`VISIBLE_DEVICES_VARS`] order.
pub fn visible_slice(
    visible: &[Option<String>],
    discovered: Option<&[DiscoveredSlice]>,
) -> Result<SliceId, String> {
    for value in visible.iter().flatten() {
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if let [one] = entries.as_slice() {
            if let Ok(id @ (SliceId::Mig(_) | SliceId::Gpu(_))) = one.parse::<SliceId>() {
                return Ok(id);
            }
        }
    }
    let shown = visible
        .iter()
        .zip(VISIBLE_DEVICES_VARS)
        .filter_map(|(v, name)| {
            v.as_ref().map(|v| {
                // Bounded: an environment value is repeated, never whole.
                let cut: String = v.chars().take(64).collect();
                let more = if cut.len() < v.len() { "..." } else { "" };
                format!("{name}={cut}{more}")
            })
        })
        .collect::<Vec<_>>();
    let context = if shown.is_empty() {
        "no visible-devices variable is set".to_string()
    } else {
        shown.join(", ")
    };
    let Some(discovered) = discovered else {
        return Err(format!(
            "`--slice visible`: {context}, and NVML is unavailable to list the visible slice"
        ));
    };
    let migs: Vec<&DiscoveredSlice> = discovered
        .iter()
        .filter(|s| matches!(s.id, SliceId::Mig(_)))
        .collect();
    let pick: Vec<&DiscoveredSlice> = if migs.is_empty() {
        discovered.iter().collect()
    } else {
        migs
    };
    match pick.as_slice() {
        [one] => Ok(one.id.clone()),
        many => Err(format!(
            "`--slice visible` needs exactly one visible GPU slice: {context}, and NVML lists {}",
            many.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(id: &str) -> DiscoveredSlice {
        DiscoveredSlice {
            id: id.parse().unwrap(),
            profile: "1g.10gb".into(),
            memory_bytes: 1,
            gpu_uuid: "GPU-p".into(),
            gpu_index: 0,
            gpu_name: "NVIDIA A100-SXM4-80GB".into(),
            gpu_instance_id: None,
            compute_instance_id: None,
            gpu_instance_slices: None,
            compute_slices: None,
            multiprocessor_count: None,
        }
    }

    #[test]
    fn the_device_plugins_variable_names_the_slice() {
        let id = visible_slice(&[Some("MIG-abc".into()), None], None).unwrap();
        assert_eq!(id, SliceId::Mig("MIG-abc".into()));
        // CUDA's variable when the plugin's says `all`.
        let id = visible_slice(&[Some("all".into()), Some("GPU-x".into())], None).unwrap();
        assert_eq!(id, SliceId::Gpu("GPU-x".into()));
    }

    #[test]
    fn otherwise_nvml_must_list_exactly_one() {
        let one = [slice("GPU-p"), slice("MIG-1")];
        let id = visible_slice(&[Some("0".into()), None], Some(&one)).unwrap();
        assert_eq!(
            id,
            SliceId::Mig("MIG-1".into()),
            "the MIG device, not its parent"
        );
        let two = [slice("MIG-1"), slice("MIG-2")];
        let e = visible_slice(&[Some("all".into()), None], Some(&two)).unwrap_err();
        assert!(
            e.contains("NVML lists 2") && e.contains("NVIDIA_VISIBLE_DEVICES=all"),
            "{e}"
        );
        let e = visible_slice(&[None, None], None).unwrap_err();
        assert!(e.contains("NVML is unavailable"), "{e}");
    }
}
