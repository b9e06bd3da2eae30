//! The labels dcgm-exporter puts on a MIG instance's series, spelled as it
//! spells them (NVIDIA/dcgm-exporter, `internal/pkg/rendermetrics`): the
//! parent GPU's UUID (`GPU-…`), the GPU instance id and profile, and the
//! node. The gateway's and the workers' per-slice series carry them too, so
//! PromQL joins a slice's tokens with DCGM's `DCGM_FI_PROF_GR_ENGINE_ACTIVE`
//! and `DCGM_FI_DEV_FB_USED` for the same instance
//! (`on (UUID, GPU_I_ID, Hostname) group_left`).

/// `UUID`, `GPU_I_ID`, `GPU_I_PROFILE`, `Hostname`, in that order.
pub const LABELS: [&str; 4] = ["UUID", "GPU_I_ID", "GPU_I_PROFILE", "Hostname"];

/// Values of [`LABELS`] for a slice: all empty on a CPU slice (and where
/// NVML named no parent GPU: `gpu` empty); `GPU_I_ID` and `GPU_I_PROFILE`
/// empty on a whole GPU, which dcgm-exporter labels without them. `node` is
/// the slice's node, `fallback_node` the one to use when it is empty.
pub fn label_values(
    gpu: &str,
    gpu_instance_id: &str,
    profile: &str,
    node: &str,
    fallback_node: impl FnOnce() -> String,
) -> [String; 4] {
    if gpu.is_empty() {
        return Default::default();
    }
    let instance_profile = if gpu_instance_id.is_empty() {
        String::new()
    } else {
        gpu_instance_profile(profile).to_string()
    };
    let node = if node.is_empty() {
        fallback_node()
    } else {
        node.to_string()
    };
    [
        gpu.to_string(),
        gpu_instance_id.to_string(),
        instance_profile,
        node,
    ]
}

/// The GPU instance's profile of a slice's profile: a compute instance
/// smaller than its GPU instance is named `1c.3g.40gb`, and dcgm-exporter's
/// `GPU_I_PROFILE` is the GPU instance's, `3g.40gb`.
pub fn gpu_instance_profile(profile: &str) -> &str {
    match profile.split_once('.') {
        Some((head, rest))
            if head.len() > 1
                && head.ends_with('c')
                && head[..head.len() - 1].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest
        }
        _ => profile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPU: &str = "GPU-0ba88705-8527-ed9e-bc07-1b45788d4ef9";

    #[test]
    fn labels_of_a_mig_slice_a_whole_gpu_and_a_cpu_slice() {
        let none = || panic!("the slice names its node");
        assert_eq!(
            label_values(GPU, "13", "1g.10gb", "node-a", none),
            [GPU, "13", "1g.10gb", "node-a"]
        );
        assert_eq!(
            label_values(GPU, "", "whole", "", || "gateway-node".into()),
            [GPU, "", "", "gateway-node"],
            "a whole GPU; a worker that names no node"
        );
        assert_eq!(
            label_values("", "", "cpu-1c", "node-a", none),
            <[String; 4]>::default()
        );
    }

    #[test]
    fn a_compute_instance_profile_names_its_gpu_instance() {
        assert_eq!(gpu_instance_profile("1c.3g.40gb"), "3g.40gb");
        assert_eq!(gpu_instance_profile("3g.40gb"), "3g.40gb");
        assert_eq!(gpu_instance_profile("1g.10gb+me"), "1g.10gb+me");
        assert_eq!(gpu_instance_profile("cpu-2c"), "cpu-2c");
        assert_eq!(gpu_instance_profile("c.x"), "c.x");
    }
}
