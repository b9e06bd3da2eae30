//! The memory a running driver reports for each profile, laid over a table.
//!
//! The tables hold what `-lgip` printed on some driver; the machine at hand
//! may run another, whose figures differ by a fraction of a GiB. When NVML
//! reports the GPU-instance profiles (`nvmlDeviceGetGpuInstanceProfileInfo`),
//! those figures are the truth for this machine, and a difference from the
//! table is worth a warning: it is either a driver the table has not seen
//! or a table that is wrong.

use serde::Serialize;

use super::{GpuModel, Profile};

/// One profile whose live memory differs from the table's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveDifference {
    /// Catalog id of the GPU, e.g. `h100-80gb`.
    pub gpu: &'static str,
    /// Profile name, e.g. `1g.10gb`.
    pub profile: &'static str,
    /// What the table plans with ([`Profile::min_memory_mib`]).
    pub table_mib: u64,
    /// What the driver reports (`memorySizeMB`).
    pub live_mib: u64,
}

impl std::fmt::Display for LiveDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: the driver reports {} MiB, the catalog has {} MiB",
            self.gpu, self.profile, self.live_mib, self.table_mib
        )
    }
}

/// The profiles of `model` with the memory the driver reports (`live`: pairs
/// of profile id and MiB) in place of the table's, and the profiles where
/// the two differ.
///
/// A live figure replaces every driver's figure of that profile (the machine
/// runs one driver), so [`Profile::min_memory_mib`] of a returned profile is
/// the live figure. Profiles the driver did not report keep the table's
/// figures; live ids the table does not know are ignored (a newer driver may
/// add profiles, which the planner cannot place without their placements).
pub fn with_live_memory(
    model: &GpuModel,
    live: &[(u32, u64)],
) -> (Vec<Profile>, Vec<LiveDifference>) {
    let mut differences = Vec::new();
    let profiles = model
        .profiles
        .iter()
        .map(|p| {
            let Some(&(_, live_mib)) = live.iter().find(|(id, _)| *id == p.id) else {
                return *p;
            };
            if live_mib != p.min_memory_mib() {
                differences.push(LiveDifference {
                    gpu: model.id,
                    profile: p.name,
                    table_mib: p.min_memory_mib(),
                    live_mib,
                });
            }
            Profile {
                memory_mib: live_mib,
                memory_by_driver: &[],
                ..*p
            }
        })
        .collect();
    (profiles, differences)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{gpu_model, lgip_mib};

    #[test]
    fn matching_figures_give_no_difference_and_keep_the_table() {
        let m = gpu_model("a100-80gb").unwrap();
        let live: Vec<(u32, u64)> = m.profiles.iter().map(|p| (p.id, p.memory_mib)).collect();
        let (profiles, diffs) = with_live_memory(m, &live);
        assert!(diffs.is_empty(), "{diffs:?}");
        assert_eq!(profiles, m.profiles);
    }

    #[test]
    fn a_live_figure_replaces_every_driver_figure_and_is_reported() {
        let m = gpu_model("h100-80gb").unwrap();
        // R525's 9.62 GiB is the table's minimum; a driver printing 9.75
        // (the table's own branch) is reported against that minimum.
        let live = [(19, lgip_mib(975)), (0, m.largest_profile().memory_mib)];
        let (profiles, diffs) = with_live_memory(m, &live);
        assert_eq!(
            diffs,
            [LiveDifference {
                gpu: "h100-80gb",
                profile: "1g.10gb",
                table_mib: lgip_mib(962),
                live_mib: lgip_mib(975),
            }]
        );
        let one = profiles.iter().find(|p| p.id == 19).unwrap();
        assert_eq!(one.min_memory_mib(), lgip_mib(975));
        assert!(one.memory_by_driver.is_empty());
        // Not reported live: the table's figures, other drivers included.
        let plus_me = profiles.iter().find(|p| p.id == 20).unwrap();
        assert_eq!(plus_me.min_memory_mib(), lgip_mib(962));
        assert!(diffs[0].to_string().contains("9984 MiB"));
    }

    #[test]
    fn unknown_live_ids_are_ignored() {
        let m = gpu_model("a30-24gb").unwrap();
        let (profiles, diffs) = with_live_memory(m, &[(99, 1)]);
        assert!(diffs.is_empty());
        assert_eq!(profiles, m.profiles);
    }
}
