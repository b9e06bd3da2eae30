//! From a checked fleet file and the slices this machine has to concrete
//! workers: which model goes on which slice. Pure: the inventory comes in as
//! data, so every rule is tested without NVML or a GPU.
//!
//! Rules:
//! - A slice serves one worker. Explicit slices are taken first, then
//!   `profile`/`count` requests, then `auto`.
//! - Except on purpose: the slices of a `shared = true` model may overlap
//!   any other (a note says which workers share what: they do not isolate).
//! - `auto` uses free MIG slices when the machine has any (the planner gives
//!   each replica the smallest slice its memory need fits). Otherwise it cuts
//!   the free CPU cores into equal slices, one per replica (on a 2-core
//!   machine with two models: `cpu:0` and `cpu:1`).
//! - Whole GPUs (MIG off) are used only when named (`slices = ["GPU-..."]`):
//!   an unpartitioned GPU is the operator's call, not the planner's.

use std::collections::HashSet;

use mig_slices::discovery::DiscoveredSlice;
use mig_slices::planner::{self, Demand, ExistingSlice};
use mig_slices::{CoreSet, SliceId};

use crate::fleet::{ModelPlan, ModelSource, Want};

/// The slices a machine offers.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// What NVML found: MIG devices, and whole GPUs that have MIG off.
    pub gpu: Vec<DiscoveredSlice>,
    /// The cores this process may run on.
    pub cores: Vec<usize>,
}

impl Inventory {
    fn mig_slices(&self) -> impl Iterator<Item = &DiscoveredSlice> {
        self.gpu.iter().filter(|s| matches!(s.id, SliceId::Mig(_)))
    }
}

/// One worker for the supervisor to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub model: String,
    pub source: ModelSource,
    pub slice: SliceId,
    /// The slice's profile when NVML named it (GPU slices).
    pub profile: Option<String>,
    pub threads: Option<usize>,
    pub args: Vec<String>,
}

/// Every worker of the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub launches: Vec<Launch>,
    /// `(model, address)` of workers that run already.
    pub remote: Vec<(String, String)>,
    /// Things the operator should know (shared cores, MIG-off GPUs skipped).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResolveError {
    #[error(
        "slice `{slice}` is given to both `{first}` and `{second}`; a slice serves one worker \
         (unless `shared = true`)"
    )]
    SliceTwice {
        slice: String,
        first: String,
        second: String,
    },
    #[error("`{model}`: slice `{slice}` was not found on this machine (found: {found})")]
    UnknownSlice {
        model: String,
        slice: String,
        found: String,
    },
    #[error("`{model}`: core {core} of `{slice}` is not available to this process (available: {available})")]
    UnknownCore {
        model: String,
        slice: String,
        core: usize,
        available: String,
    },
    #[error("`{model}`: wants {wanted} free `{profile}` slice(s), {free} free (found: {found})")]
    NotEnoughProfile {
        model: String,
        profile: String,
        wanted: u32,
        free: usize,
        found: String,
    },
    #[error("`{model}`: `slices = \"auto\"` on MIG slices needs a `path` the gateway can read: {reason}")]
    Need { model: String, reason: String },
    #[error("`auto` could not place every replica on the free MIG slices: {0}")]
    Unplaced(String),
    #[error("`{model}` has a `path`: its workers are started by `mig-gateway up`, not `serve`")]
    NeedsSupervisor { model: String },
}

/// Each slice taken so far, by which model, and whether it may be shared.
#[derive(Default)]
struct Taken(Vec<(SliceId, String, bool)>);

impl Taken {
    /// Takes `slice` for `model`. A slice that overlaps one already taken (a
    /// CPU slice sharing a core, the same GPU slice) is an error, unless
    /// either side is `shared`: then it is allowed, and the returned notes
    /// say who shares what.
    fn take(
        &mut self,
        slice: &SliceId,
        model: &str,
        shared: bool,
    ) -> Result<Vec<String>, ResolveError> {
        let mut notes = Vec::new();
        for (held, holder, held_shared) in &self.0 {
            let what = match (slice, held) {
                (SliceId::Cpu(a), SliceId::Cpu(b)) => {
                    let common: Vec<usize> = a
                        .cores()
                        .iter()
                        .copied()
                        .filter(|c| b.cores().contains(c))
                        .collect();
                    match CoreSet::from_cores(&common) {
                        Some(cores) if common.len() == 1 => format!("core {cores}"),
                        Some(cores) => format!("cores {cores}"),
                        None => continue,
                    }
                }
                _ if held == slice => format!("slice {slice}"),
                _ => continue,
            };
            if !(shared || *held_shared) {
                return Err(ResolveError::SliceTwice {
                    slice: if held == slice {
                        slice.to_string()
                    } else {
                        format!("{slice} (overlaps {held})")
                    },
                    first: holder.clone(),
                    second: model.to_string(),
                });
            }
            notes.push(format!(
                "`{holder}` on {held} and `{model}` on {slice} share {what} (`shared = true`): \
                 they do not isolate"
            ));
        }
        self.0.push((slice.clone(), model.to_string(), shared));
        Ok(notes)
    }
}

/// Places every model of the fleet. `need` gives a model's memory need in
/// bytes per replica (read from its file); it is called only for `auto`
/// models on machines with MIG slices.
pub fn resolve(
    models: &[ModelPlan],
    inventory: &Inventory,
    need: impl Fn(&ModelPlan) -> Result<u64, String>,
) -> Result<Resolved, ResolveError> {
    let mut out = Resolved::default();
    let mut taken = Taken::default();
    let found = || {
        let ids: Vec<String> = inventory.gpu.iter().map(|s| s.id.to_string()).collect();
        if ids.is_empty() {
            "no GPU slices".to_string()
        } else {
            ids.join(", ")
        }
    };
    let launch = |m: &ModelPlan, slice: SliceId, profile: Option<String>| Launch {
        model: m.name.clone(),
        source: m
            .source
            .clone()
            .expect("checked: models the gateway starts have a source"),
        slice,
        profile,
        threads: m.threads,
        args: m.args.clone(),
    };

    // 1. Explicit slices.
    for m in models {
        match &m.want {
            Want::Remote { addresses } => {
                for a in addresses {
                    out.remote.push((m.name.clone(), a.clone()));
                }
            }
            Want::Slices(slices) => {
                for slice in slices {
                    let profile = match slice {
                        SliceId::Cpu(cores) => {
                            if let Some(&core) =
                                cores.cores().iter().find(|c| !inventory.cores.contains(c))
                            {
                                return Err(ResolveError::UnknownCore {
                                    model: m.name.clone(),
                                    slice: slice.to_string(),
                                    core,
                                    available: CoreSet::from_cores(&inventory.cores)
                                        .map(|c| c.to_string())
                                        .unwrap_or_else(|| "none".into()),
                                });
                            }
                            None
                        }
                        gpu => match inventory.gpu.iter().find(|s| &s.id == gpu) {
                            Some(s) => Some(s.profile.clone()),
                            None => {
                                return Err(ResolveError::UnknownSlice {
                                    model: m.name.clone(),
                                    slice: gpu.to_string(),
                                    found: found(),
                                })
                            }
                        },
                    };
                    out.notes.extend(taken.take(slice, &m.name, m.shared)?);
                    out.launches.push(launch(m, slice.clone(), profile));
                }
            }
            Want::Profile { .. } | Want::Auto { .. } => {}
        }
    }

    // 2. Profile requests, from the slices still free.
    for m in models {
        let Want::Profile { profile, count } = &m.want else {
            continue;
        };
        let free: Vec<&DiscoveredSlice> = inventory
            .mig_slices()
            .filter(|s| &s.profile == profile)
            .filter(|s| !out.launches.iter().any(|l| l.slice == s.id))
            .collect();
        if free.len() < *count as usize {
            return Err(ResolveError::NotEnoughProfile {
                model: m.name.clone(),
                profile: profile.clone(),
                wanted: *count,
                free: free.len(),
                found: found(),
            });
        }
        for s in free.into_iter().take(*count as usize) {
            out.notes.extend(taken.take(&s.id, &m.name, false)?);
            out.launches
                .push(launch(m, s.id.clone(), Some(s.profile.clone())));
        }
    }

    // 3. Auto.
    let auto: Vec<(&ModelPlan, u32)> = models
        .iter()
        .filter_map(|m| match m.want {
            Want::Auto { replicas } => Some((m, replicas)),
            _ => None,
        })
        .collect();
    if auto.is_empty() {
        return Ok(out);
    }
    // The slices exist already: what they decode at is what there is.
    for (m, _) in &auto {
        if let Some(t) = m.tokens_per_second {
            out.notes.push(format!(
                "`{}`: `tokens_per_second = {t}` sizes profiles in `mig-gateway plan`; \
                 `auto` places on the slices found, by memory only",
                m.name
            ));
        }
    }
    // Compute instances that share one GPU instance (`1c.3g.40gb` twice)
    // each report the whole instance's memory: `auto` would count it twice.
    let shares_instance = |s: &DiscoveredSlice| {
        s.gpu_instance_id.is_some()
            && inventory.mig_slices().any(|o| {
                o.id != s.id && o.gpu_uuid == s.gpu_uuid && o.gpu_instance_id == s.gpu_instance_id
            })
    };
    let shared: Vec<String> = inventory
        .mig_slices()
        .filter(|s| shares_instance(s))
        .map(|s| s.id.to_string())
        .collect();
    if !shared.is_empty() {
        out.notes.push(format!(
            "`auto` skips MIG devices that share a GPU instance (and its memory): {}; name them in `slices` to use them",
            shared.join(", ")
        ));
    }
    let free_mig: Vec<&DiscoveredSlice> = inventory
        .mig_slices()
        .filter(|s| !shares_instance(s))
        .filter(|s| !out.launches.iter().any(|l| l.slice == s.id))
        .collect();
    let whole_gpus = inventory
        .gpu
        .iter()
        .filter(|s| matches!(s.id, SliceId::Gpu(_)))
        .count();
    if !free_mig.is_empty() {
        let mut demands = Vec::new();
        for (m, replicas) in &auto {
            let bytes = need(m).map_err(|reason| ResolveError::Need {
                model: m.name.clone(),
                reason,
            })?;
            demands.push(Demand::from_bytes(&m.name, bytes, *replicas));
        }
        let existing: Vec<ExistingSlice> = free_mig
            .iter()
            .map(|s| ExistingSlice {
                id: s.id.to_string(),
                profile: s.profile.clone(),
                memory_bytes: s.memory_bytes,
            })
            .collect();
        let assignment = planner::assign(&demands, &existing);
        if !assignment.unassigned.is_empty() {
            let reasons: Vec<String> = assignment
                .unassigned
                .iter()
                .map(|u| u.to_string())
                .collect();
            return Err(ResolveError::Unplaced(reasons.join("; ")));
        }
        for a in &assignment.assigned {
            let m = auto
                .iter()
                .find(|(m, _)| m.name == a.model)
                .expect("the planner assigns only the models it was given")
                .0;
            let slice: SliceId = a
                .slice
                .parse()
                .expect("the planner returns the slice ids it was given");
            out.notes.extend(taken.take(&slice, &m.name, false)?);
            out.launches.push(launch(m, slice, Some(a.profile.clone())));
        }
        return Ok(out);
    }

    if whole_gpus > 0 {
        out.notes.push(format!(
            "{whole_gpus} GPU(s) with MIG off: `auto` uses CPU slices; name a `GPU-<uuid>` in `slices` to use a whole GPU"
        ));
    }
    let held: HashSet<usize> = out
        .launches
        .iter()
        .filter_map(|l| l.slice.cores())
        .flat_map(|c| c.cores().iter().copied())
        .collect();
    let free: Vec<usize> = inventory
        .cores
        .iter()
        .copied()
        .filter(|c| !held.contains(c))
        .collect();
    let total: u32 = auto.iter().map(|(_, r)| r).sum();
    let slices = cpu_slices(&free, &inventory.cores, total as usize, &mut out.notes);
    let mut slices = slices.into_iter();
    for (m, replicas) in auto {
        for _ in 0..replicas {
            let slice = slices
                .next()
                .expect("cpu_slices returns one slice per replica");
            out.launches.push(launch(m, slice, None));
        }
    }
    Ok(out)
}

/// Cuts `free` cores into `n` equal contiguous CPU slices. With fewer free
/// cores than slices, cores are shared round-robin (from all cores if none is
/// free) and a note says so.
fn cpu_slices(free: &[usize], all: &[usize], n: usize, notes: &mut Vec<String>) -> Vec<SliceId> {
    if n == 0 {
        return Vec::new();
    }
    if free.len() >= n {
        let per = free.len() / n;
        return free
            .chunks(per)
            .take(n)
            .map(|chunk| SliceId::Cpu(CoreSet::from_cores(chunk).expect("chunks are not empty")))
            .collect();
    }
    let pool = if free.is_empty() { all } else { free };
    notes.push(format!(
        "{n} auto replicas share {} core(s): CPU slices overlap, so they do not isolate",
        pool.len()
    ));
    (0..n)
        .map(|i| {
            SliceId::Cpu(
                CoreSet::from_cores(&[pool[i % pool.len()]]).expect("one core is not empty"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use std::path::Path;

    const GIB: u64 = 1 << 30;

    fn fleet(text: &str) -> Vec<ModelPlan> {
        Fleet::parse(text, Path::new("f.toml")).unwrap()
    }

    fn cpu(cores: &[usize]) -> Inventory {
        Inventory {
            gpu: Vec::new(),
            cores: cores.to_vec(),
        }
    }

    fn gpu_slice(id: &str, profile: &str, gib: f64) -> DiscoveredSlice {
        DiscoveredSlice {
            id: id.parse().unwrap(),
            profile: profile.into(),
            memory_bytes: (gib * GIB as f64) as u64,
            gpu_uuid: "GPU-0000".into(),
            gpu_index: 0,
            gpu_name: "NVIDIA A100-SXM4-80GB".into(),
            gpu_instance_id: Some(1),
            compute_instance_id: Some(0),
            gpu_instance_slices: None,
            compute_slices: None,
            multiprocessor_count: None,
        }
    }

    /// An A100-80GB cut as 3g.40gb + 2g.20gb + 1g.10gb + 1g.10gb.
    fn a100_mixed() -> Inventory {
        let mut gpu = vec![
            gpu_slice("MIG-3g", "3g.40gb", 39.25),
            gpu_slice("MIG-2g", "2g.20gb", 19.5),
            gpu_slice("MIG-1a", "1g.10gb", 9.5),
            gpu_slice("MIG-1b", "1g.10gb", 9.5),
        ];
        for (slice, gi) in gpu.iter_mut().zip([2, 3, 9, 10]) {
            slice.gpu_instance_id = Some(gi);
        }
        Inventory {
            gpu,
            cores: vec![0, 1],
        }
    }

    fn slices_of(r: &Resolved) -> Vec<(String, String)> {
        r.launches
            .iter()
            .map(|l| (l.model.clone(), l.slice.to_string()))
            .collect()
    }

    fn no_need(_: &ModelPlan) -> Result<u64, String> {
        panic!("CPU placement needs no memory figure")
    }

    const TWO_AUTO: &str = "[[model]]\nname = \"a\"\npath = \"a.gguf\"\n\
                            [[model]]\nname = \"b\"\npath = \"b\"\n";

    #[test]
    fn auto_gives_each_model_its_own_core_on_two_cores() {
        let r = resolve(&fleet(TWO_AUTO), &cpu(&[0, 1]), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [("a".into(), "cpu:0".into()), ("b".into(), "cpu:1".into())]
        );
        assert!(r.notes.is_empty());
    }

    #[test]
    fn a_throughput_target_is_noted_as_the_planners_business() {
        let text = "[[model]]\nname = \"a\"\npath = \"a.gguf\"\ntokens_per_second = 60\n";
        let r = resolve(&fleet(text), &cpu(&[0, 1]), no_need).unwrap();
        assert_eq!(slices_of(&r).len(), 1);
        assert_eq!(
            r.notes,
            ["`a`: `tokens_per_second = 60` sizes profiles in `mig-gateway plan`; `auto` places on the slices found, by memory only"]
        );
    }

    #[test]
    fn auto_splits_more_cores_evenly_and_around_explicit_slices() {
        let r = resolve(&fleet(TWO_AUTO), &cpu(&[0, 1, 2, 3]), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [
                ("a".into(), "cpu:0-1".into()),
                ("b".into(), "cpu:2-3".into())
            ]
        );
        let text = "[[model]]\nname = \"a\"\npath = \"a.gguf\"\nslices = [\"cpu:0\"]\n\
                    [[model]]\nname = \"b\"\npath = \"b\"\nreplicas = 2\n";
        let r = resolve(&fleet(text), &cpu(&[0, 1, 2]), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [
                ("a".into(), "cpu:0".into()),
                ("b".into(), "cpu:1".into()),
                ("b".into(), "cpu:2".into())
            ]
        );
    }

    #[test]
    fn too_few_cores_share_with_a_note() {
        let r = resolve(&fleet(TWO_AUTO), &cpu(&[3]), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [("a".into(), "cpu:3".into()), ("b".into(), "cpu:3".into())]
        );
        assert!(r.notes[0].contains("share 1 core"), "{:?}", r.notes);
    }

    #[test]
    fn a_slice_or_core_serves_one_worker() {
        let text = "[[model]]\nname = \"a\"\npath = \"a\"\nslices = [\"cpu:0-1\"]\n\
                    [[model]]\nname = \"b\"\npath = \"b\"\nslices = [\"cpu:1\"]\n";
        let e = resolve(&fleet(text), &cpu(&[0, 1]), no_need).unwrap_err();
        assert!(
            matches!(&e, ResolveError::SliceTwice { first, second, .. } if first == "a" && second == "b"),
            "{e}"
        );
        let text = "[[model]]\nname = \"a\"\npath = \"a\"\nslices = [\"cpu:5\"]\n";
        let e = resolve(&fleet(text), &cpu(&[0, 1]), no_need).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`a`: core 5 of `cpu:5` is not available to this process (available: 0-1)"
        );
    }

    #[test]
    fn profile_requests_take_free_slices_of_that_profile() {
        let text = "[[model]]\nname = \"a\"\npath = \"a\"\nprofile = \"1g.10gb\"\ncount = 2\n";
        let r = resolve(&fleet(text), &a100_mixed(), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [("a".into(), "MIG-1a".into()), ("a".into(), "MIG-1b".into())]
        );
        assert_eq!(r.launches[0].profile.as_deref(), Some("1g.10gb"));
        let text = "[[model]]\nname = \"a\"\npath = \"a\"\nslices = [\"MIG-1a\"]\n\
                    [[model]]\nname = \"b\"\npath = \"b\"\nprofile = \"1g.10gb\"\ncount = 2\n";
        let e = resolve(&fleet(text), &a100_mixed(), no_need).unwrap_err();
        assert!(
            matches!(
                e,
                ResolveError::NotEnoughProfile {
                    wanted: 2,
                    free: 1,
                    ..
                }
            ),
            "{e}"
        );
        let text = "[[model]]\nname = \"a\"\npath = \"a\"\nslices = [\"MIG-nope\"]\n";
        let e = resolve(&fleet(text), &a100_mixed(), no_need).unwrap_err();
        assert!(e.to_string().contains("MIG-nope` was not found"), "{e}");
    }

    #[test]
    fn auto_on_mig_gives_each_replica_the_smallest_slice_that_fits() {
        let text = "[[model]]\nname = \"small\"\npath = \"s\"\n\
                    [[model]]\nname = \"mid\"\npath = \"m\"\n";
        let need = |m: &ModelPlan| {
            Ok(match m.name.as_str() {
                "small" => GIB,
                _ => 15 * GIB,
            })
        };
        let r = resolve(&fleet(text), &a100_mixed(), need).unwrap();
        let placed = slices_of(&r);
        assert!(
            placed.contains(&("small".into(), "MIG-1a".into())),
            "{placed:?}"
        );
        assert!(
            placed.contains(&("mid".into(), "MIG-2g".into())),
            "{placed:?}"
        );

        let huge = |_: &ModelPlan| Ok(100 * GIB);
        let e = resolve(&fleet(text), &a100_mixed(), huge).unwrap_err();
        assert!(matches!(e, ResolveError::Unplaced(_)), "{e}");
    }

    #[test]
    fn auto_skips_compute_instances_sharing_a_gpu_instance() {
        let mut inventory = a100_mixed();
        // Two compute instances of one 3g GPU instance, each reporting its 39 GiB.
        inventory.gpu[0].id = "MIG-c1".parse().unwrap();
        let mut twin = inventory.gpu[0].clone();
        twin.id = "MIG-c2".parse().unwrap();
        inventory.gpu.push(twin);
        let text = "[[model]]\nname = \"big\"\npath = \"b\"\n";
        let e = resolve(&fleet(text), &inventory, |_| Ok(30 * GIB)).unwrap_err();
        assert!(matches!(e, ResolveError::Unplaced(_)), "{e}");
        let small = resolve(&fleet(text), &inventory, |_| Ok(GIB)).unwrap();
        assert!(
            small.notes[0].contains("MIG-c1, MIG-c2"),
            "{:?}",
            small.notes
        );
        assert!(!small.launches[0].slice.to_string().starts_with("MIG-c"));
    }

    #[test]
    fn whole_gpus_are_used_only_when_named() {
        let mut inventory = cpu(&[0, 1]);
        inventory.gpu.push(gpu_slice("GPU-aaaa", "gpu.80gb", 79.6));
        let r = resolve(&fleet(TWO_AUTO), &inventory, no_need).unwrap();
        assert_eq!(r.launches[0].slice.to_string(), "cpu:0");
        assert!(r.notes[0].contains("MIG off"), "{:?}", r.notes);
        let text = "[[model]]\nname = \"a\"\npath = \"a\"\nslices = [\"GPU-aaaa\"]\n";
        let r = resolve(&fleet(text), &inventory, no_need).unwrap();
        assert_eq!(r.launches[0].profile.as_deref(), Some("gpu.80gb"));
    }

    #[test]
    fn shared_slices_may_overlap_on_purpose_with_a_note() {
        let text = "[[model]]\nname = \"victim\"\npath = \"m\"\nslices = [\"cpu:0\"]\n\
                    [[model]]\nname = \"noisy\"\npath = \"m\"\nslices = [\"cpu:1\"]\n\
                    [[model]]\nname = \"victim-shared\"\npath = \"m\"\nslices = [\"cpu:0\"]\nshared = true\n\
                    [[model]]\nname = \"noisy-shared\"\npath = \"m\"\nslices = [\"cpu:0\"]\nshared = true\n";
        let r = resolve(&fleet(text), &cpu(&[0, 1]), no_need).unwrap();
        assert_eq!(r.launches.len(), 4);
        assert_eq!(
            r.notes,
            [
                "`victim` on cpu:0 and `victim-shared` on cpu:0 share core 0 (`shared = true`): they do not isolate",
                "`victim` on cpu:0 and `noisy-shared` on cpu:0 share core 0 (`shared = true`): they do not isolate",
                "`victim-shared` on cpu:0 and `noisy-shared` on cpu:0 share core 0 (`shared = true`): they do not isolate",
            ]
        );

        // Slices of several sizes for one model on a small machine.
        let text = "[[model]]\nname = \"m\"\npath = \"m\"\nslices = [\"cpu:0\", \"cpu:0-1\"]\nshared = true\n";
        let r = resolve(&fleet(text), &cpu(&[0, 1]), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [("m".into(), "cpu:0".into()), ("m".into(), "cpu:0-1".into())]
        );
        assert_eq!(r.notes.len(), 1);
        assert!(r.notes[0].contains("share core 0 "), "{:?}", r.notes);

        // Without `shared` the same lists are refused, either side first.
        let text = "[[model]]\nname = \"m\"\npath = \"m\"\nslices = [\"cpu:0\", \"cpu:0-1\"]\n";
        let e = resolve(&fleet(text), &cpu(&[0, 1]), no_need).unwrap_err();
        assert_eq!(
            e.to_string(),
            "slice `cpu:0-1 (overlaps cpu:0)` is given to both `m` and `m`; a slice serves one \
             worker (unless `shared = true`)"
        );
        let text = "[[model]]\nname = \"a\"\npath = \"a\"\nslices = [\"cpu:0-1\"]\nshared = true\n\
                    [[model]]\nname = \"b\"\npath = \"b\"\nslices = [\"cpu:1\"]\n";
        let r = resolve(&fleet(text), &cpu(&[0, 1]), no_need).unwrap();
        assert!(r.notes[0].contains("share core 1 "), "{:?}", r.notes);
    }

    #[test]
    fn the_deploy_isolation_and_compare_fleets_fit_two_cores() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let load = |name: &str| Fleet::load(&deploy.join(name)).unwrap();
        let r = resolve(&load("fleet-isolation.toml"), &cpu(&[0, 1]), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [
                ("victim".into(), "cpu:0".into()),
                ("noisy".into(), "cpu:1".into()),
                ("victim-shared".into(), "cpu:0".into()),
                ("noisy-shared".into(), "cpu:0".into()),
            ]
        );
        assert!(r.launches.iter().all(|l| l.threads == Some(1)));
        let r = resolve(&load("fleet-compare.toml"), &cpu(&[0, 1]), no_need).unwrap();
        assert_eq!(
            slices_of(&r),
            [
                ("smollm2-135m".into(), "cpu:0".into()),
                ("smollm2-135m".into(), "cpu:0-1".into()),
            ]
        );
        let r = resolve(&load("fleet-identity.toml"), &cpu(&[0, 1]), no_need).unwrap();
        assert_eq!(r.launches[0].source, ModelSource::Identity);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn the_identity_model_needs_only_the_fixed_overhead() {
        let text = "[[model]]\nname = \"identity\"\nidentity = true\n";
        let plans = fleet(text);
        assert_eq!(
            crate::fleet::model_file::replica_need_bytes(&plans[0]),
            Ok(mig_slices::need::OVERHEAD_BYTES)
        );
        let r = resolve(
            &plans,
            &a100_mixed(),
            crate::fleet::model_file::replica_need_bytes,
        )
        .unwrap();
        assert_eq!(r.launches[0].source, ModelSource::Identity);
        assert_eq!(r.launches[0].profile.as_deref(), Some("1g.10gb"));
    }
}
