//! Placement rules: which sets of GPU instances one GPU can hold.
//!
//! MIG does not let instances go anywhere there is room. Each profile may start
//! only at the slots `nvidia-smi mig -lgipp` lists (a `3g` instance at slot 0
//! or 4, never 2), and instances may not share a memory slot. So "3g + 3g + 1g"
//! fails on an A100 although it adds up to 7 compute slices: the two `3g`
//! instances take all 8 memory slots. Checking this here, before anything runs
//! `nvidia-smi`, turns a driver's "Insufficient Resources" into an error that
//! names the slot.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::catalog::{GpuModel, Profile};

/// A GPU instance as a user writes it: a profile at a start slot, `1g.10gb@2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Instance {
    pub profile: String,
    pub start: u8,
}

/// A GPU instance checked against a GPU model's profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placed {
    #[serde(serialize_with = "profile_name")]
    pub profile: &'static Profile,
    pub start: u8,
}

fn profile_name<S: serde::Serializer>(p: &&'static Profile, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("`{instance}` is not `<profile>@<start slot>` (e.g. `1g.10gb@2`)")]
    BadInstance { instance: String },
    #[error("profile `{profile}` does not exist on {gpu} (profiles: {known})")]
    UnknownProfile {
        gpu: &'static str,
        profile: String,
        known: String,
    },
    #[error(
        "`{profile}` cannot start at slot {start} on {gpu}; allowed starts: {}",
        list(allowed)
    )]
    BadStart {
        gpu: &'static str,
        profile: &'static str,
        start: u8,
        allowed: Vec<u8>,
    },
    #[error("slot {slot} is taken by both `{first}` and `{second}`")]
    Overlap {
        slot: u8,
        first: String,
        second: String,
    },
    #[error("{count} instances of `{profile}` exceed its limit of {max} per GPU")]
    TooMany {
        profile: &'static str,
        count: usize,
        max: u8,
    },
    #[error(
        "`{first}` and `{second}` both take the GPU's media engines; only one instance per GPU may"
    )]
    MediaTwice {
        first: &'static str,
        second: &'static str,
    },
    #[error("{wanted} do not fit on one {gpu}: {why}")]
    NoFit {
        gpu: &'static str,
        wanted: String,
        why: String,
    },
}

fn list(v: &[u8]) -> String {
    v.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
}

impl Placed {
    /// One past the last memory slot the instance takes.
    pub fn end(&self) -> u8 {
        self.start + self.profile.memory_slices
    }

    /// The memory slots the instance takes.
    pub fn slots(&self) -> std::ops::Range<u8> {
        self.start..self.end()
    }

    pub fn instance(&self) -> Instance {
        Instance {
            profile: self.profile.name.to_string(),
            start: self.start,
        }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.profile, self.start)
    }
}

impl fmt::Display for Placed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.profile.name, self.start)
    }
}

impl FromStr for Instance {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LayoutError::BadInstance {
            instance: s.to_string(),
        };
        let (profile, start) = s.trim().split_once('@').ok_or_else(bad)?;
        let profile = profile.trim();
        if profile.is_empty() {
            return Err(bad());
        }
        Ok(Instance {
            profile: profile.to_string(),
            start: start.trim().parse().map_err(|_| bad())?,
        })
    }
}

/// Parses instances separated by `,` or `+`: `2g.20gb@0 + 1g.10gb@2`.
pub fn parse_instances(s: &str) -> Result<Vec<Instance>, LayoutError> {
    s.split([',', '+'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        // `+me` belongs to the profile name, not the separator.
        .fold(Vec::<String>::new(), |mut parts, p| {
            match parts.last_mut() {
                Some(last) if p.starts_with("me@") || p == "me" || p.starts_with("me ") => {
                    last.push('+');
                    last.push_str(p);
                }
                _ => parts.push(p.to_string()),
            }
            parts
        })
        .iter()
        .map(|p| p.parse())
        .collect()
}

fn resolve(gpu: &GpuModel, profile: &str) -> Result<&'static Profile, LayoutError> {
    gpu.profile(profile)
        .ok_or_else(|| LayoutError::UnknownProfile {
            gpu: gpu.id,
            profile: profile.to_string(),
            known: gpu
                .profiles
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks a set of instances on one GPU and returns them resolved, sorted by
/// start slot.
///
/// Errors, in the order checked: an unknown profile, a start the profile may
/// not take, more instances of a profile than one GPU holds, two instances on
/// one slot. The first error found is returned.
pub fn validate(gpu: &GpuModel, instances: &[Instance]) -> Result<Vec<Placed>, LayoutError> {
    let mut placed = Vec::with_capacity(instances.len());
    for i in instances {
        let profile = resolve(gpu, &i.profile)?;
        if !profile.allows_start(i.start) {
            return Err(LayoutError::BadStart {
                gpu: gpu.id,
                profile: profile.name,
                start: i.start,
                allowed: profile.placements.iter().map(|p| p.start).collect(),
            });
        }
        placed.push(Placed {
            profile,
            start: i.start,
        });
    }
    check_counts(placed.iter().map(|p| p.profile))?;
    placed.sort_by_key(|p| (p.start, p.profile.memory_slices));
    let mut owner: Vec<Option<Placed>> = vec![None; usize::from(gpu.memory_slices)];
    for p in &placed {
        for slot in p.slots() {
            let cell = &mut owner[usize::from(slot)];
            if let Some(first) = cell {
                return Err(LayoutError::Overlap {
                    slot,
                    first: first.to_string(),
                    second: p.to_string(),
                });
            }
            *cell = Some(*p);
        }
    }
    Ok(placed)
}

/// Validates resolved instances (what the planner produces).
pub fn validate_placed(gpu: &GpuModel, placed: &[Placed]) -> Result<Vec<Placed>, LayoutError> {
    let instances: Vec<Instance> = placed.iter().map(Placed::instance).collect();
    validate(gpu, &instances)
}

fn check_counts<'a>(profiles: impl Iterator<Item = &'a Profile>) -> Result<(), LayoutError> {
    let mut counts: Vec<(&Profile, usize)> = Vec::new();
    for p in profiles {
        match counts.iter_mut().find(|(q, _)| q.name == p.name) {
            Some((_, n)) => *n += 1,
            None => counts.push((p, 1)),
        }
    }
    if let Some((p, n)) = counts.iter().find(|(p, n)| *n > usize::from(p.max_count)) {
        return Err(LayoutError::TooMany {
            profile: p.name,
            count: *n,
            max: p.max_count,
        });
    }
    // The GPU has one set of media engines (NVJPG/OFA): across all `+me`
    // profiles (A30 has two), one instance may hold them.
    let mut media = counts.iter().filter(|(p, _)| p.media_extensions);
    if let (Some((first, _)), Some((second, _))) = (media.next(), media.next()) {
        return Err(LayoutError::MediaTwice {
            first: first.name,
            second: second.name,
        });
    }
    Ok(())
}

/// Finds a start slot for each profile so that all fit on one GPU.
///
/// Deterministic: profiles are tried largest first (memory slots, then compute
/// slices, then name) and each at its allowed starts in `-lgipp` order, with
/// backtracking (`3g + 2g + 2g` fits only with the `3g` at slot 4). Copies of one profile take increasing starts, which cuts the
/// search to combinations; seven `1g` instances on eight slots is the worst
/// case and takes microseconds. Returns the instances sorted by start slot.
pub fn find_placements(gpu: &GpuModel, profiles: &[&str]) -> Result<Vec<Placed>, LayoutError> {
    let resolved = profiles
        .iter()
        .map(|p| resolve(gpu, p))
        .collect::<Result<Vec<_>, _>>()?;
    place_profiles(gpu, &resolved)
}

/// [`find_placements`] for profiles already resolved against `gpu`.
pub fn place_profiles(
    gpu: &GpuModel,
    profiles: &[&'static Profile],
) -> Result<Vec<Placed>, LayoutError> {
    check_counts(profiles.iter().copied())?;
    let mut order: Vec<&'static Profile> = profiles.to_vec();
    order.sort_by(|a, b| {
        (b.memory_slices, b.compute_slices)
            .cmp(&(a.memory_slices, a.compute_slices))
            .then_with(|| a.name.cmp(b.name))
    });
    let wanted = || order.iter().map(|p| p.name).collect::<Vec<_>>().join(" + ");
    let slots: u32 = order.iter().map(|p| u32::from(p.memory_slices)).sum();
    if slots > u32::from(gpu.memory_slices) {
        return Err(LayoutError::NoFit {
            gpu: gpu.id,
            wanted: wanted(),
            why: format!(
                "they need {slots} memory slots and the GPU has {}",
                gpu.memory_slices
            ),
        });
    }
    let compute: u32 = order.iter().map(|p| u32::from(p.compute_slices)).sum();
    if compute > u32::from(gpu.compute_slices) {
        return Err(LayoutError::NoFit {
            gpu: gpu.id,
            wanted: wanted(),
            why: format!(
                "they need {compute} compute slices and the GPU has {}",
                gpu.compute_slices
            ),
        });
    }
    let mut used = 0u32; // bit i: memory slot i taken
    let mut starts = Vec::with_capacity(order.len());
    if !search(&order, &mut used, &mut starts) {
        return Err(LayoutError::NoFit {
            gpu: gpu.id,
            wanted: wanted(),
            why: "no choice of allowed start slots keeps them apart".to_string(),
        });
    }
    let mut placed: Vec<Placed> = order
        .iter()
        .zip(starts)
        .map(|(&profile, start)| Placed { profile, start })
        .collect();
    placed.sort_by_key(|p| p.start);
    Ok(placed)
}

/// The slots `start..start + size` as bits.
pub(crate) fn mask(start: u8, size: u8) -> u32 {
    ((1u32 << size) - 1) << start
}

/// Depth-first over each profile's allowed starts in `-lgipp` order around
/// the slots `used`, pushing one start per profile of `order` onto `starts`;
/// whether all were placed.
pub(crate) fn search(order: &[&'static Profile], used: &mut u32, starts: &mut Vec<u8>) -> bool {
    let i = starts.len();
    let Some(profile) = order.get(i) else {
        return true;
    };
    // Identical profiles are interchangeable: only try increasing starts.
    let floor = match (i.checked_sub(1), starts.last()) {
        (Some(prev), Some(&s)) if order[prev].name == profile.name => Some(s),
        _ => None,
    };
    for pl in profile.placements {
        if floor.is_some_and(|f| pl.start <= f) {
            continue;
        }
        let m = mask(pl.start, pl.size);
        if *used & m != 0 {
            continue;
        }
        *used |= m;
        starts.push(pl.start);
        if search(order, used, starts) {
            return true;
        }
        starts.pop();
        *used &= !m;
    }
    false
}

/// The memory slots no instance takes, ascending.
pub fn free_slots(gpu: &GpuModel, placed: &[Placed]) -> Vec<u8> {
    (0..gpu.memory_slices)
        .filter(|s| !placed.iter().any(|p| p.slots().contains(s)))
        .collect()
}

/// The slots as brackets, one per instance, free slots bare:
/// `[0 1][2][3][4 5 6 7]`, or `[0][1][2][3][4][5][6] 7`.
pub fn slot_map(gpu: &GpuModel, placed: &[Placed]) -> String {
    let mut out = String::new();
    let mut slot = 0u8;
    while slot < gpu.memory_slices {
        match placed.iter().find(|p| p.start == slot) {
            Some(p) => {
                let inner = p
                    .slots()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push('[');
                out.push_str(&inner);
                out.push(']');
                slot = p.end();
            }
            None => {
                out.push(' ');
                out.push_str(&slot.to_string());
                out.push(' ');
                slot += 1;
            }
        }
    }
    out.replace("  ", " ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::gpu_model;

    fn a100() -> &'static GpuModel {
        gpu_model("a100-80gb").unwrap()
    }

    fn fits(profiles: &[&str]) -> Result<Vec<Placed>, LayoutError> {
        let placed = find_placements(a100(), profiles)?;
        validate_placed(a100(), &placed).expect("found placements validate");
        Ok(placed)
    }

    #[test]
    fn finds_the_examples_that_fit() {
        let p = fits(&["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]).unwrap();
        assert_eq!(slot_map(a100(), &p), "[0 1][2][3][4 5 6 7]");
        assert_eq!(fits(&["1g.10gb"; 7]).unwrap().len(), 7);
        let p = fits(&["4g.40gb", "3g.40gb"]).unwrap();
        assert_eq!(slot_map(a100(), &p), "[0 1 2 3][4 5 6 7]");
        let p = fits(&["2g.20gb", "2g.20gb", "2g.20gb", "1g.10gb"]).unwrap();
        assert_eq!(slot_map(a100(), &p), "[0 1][2 3][4 5][6] 7");
        assert_eq!(
            fits(&["7g.80gb"]).unwrap()[0],
            Placed {
                profile: a100().profile("7g.80gb").unwrap(),
                start: 0
            }
        );
    }

    #[test]
    fn rejects_the_examples_that_do_not_fit() {
        assert_eq!(
            fits(&["4g.40gb", "4g.40gb"]).unwrap_err().to_string(),
            "2 instances of `4g.40gb` exceed its limit of 1 per GPU"
        );
        assert_eq!(
            fits(&["3g.40gb", "3g.40gb", "1g.10gb"])
                .unwrap_err()
                .to_string(),
            "3g.40gb + 3g.40gb + 1g.10gb do not fit on one a100-80gb: \
             they need 9 memory slots and the GPU has 8"
        );
        // Fits only with the 3g at slot 4: at slot 0 it leaves 4-7, and 2g
        // instances may not start at 6.
        let p = fits(&["2g.20gb", "3g.40gb", "2g.20gb"]).unwrap();
        assert_eq!(slot_map(a100(), &p), "[0 1][2 3][4 5 6 7]");
        assert!(fits(&["2g.20gb", "2g.20gb", "2g.20gb", "1g.20gb"]).is_ok());
        assert!(matches!(
            fits(&["4g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]).unwrap_err(),
            LayoutError::NoFit { .. }
        ));
        assert!(matches!(
            fits(&["1g.10gb"; 8]).unwrap_err(),
            LayoutError::TooMany {
                count: 8,
                max: 7,
                ..
            }
        ));
    }

    #[test]
    fn an_explicit_overlap_names_the_slot_and_both_instances() {
        let e = validate(a100(), &parse_instances("2g.20gb@0 + 1g.10gb@1").unwrap()).unwrap_err();
        assert_eq!(
            e,
            LayoutError::Overlap {
                slot: 1,
                first: "2g.20gb@0".into(),
                second: "1g.10gb@1".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "slot 1 is taken by both `2g.20gb@0` and `1g.10gb@1`"
        );
    }

    #[test]
    fn a_start_outside_the_placements_lists_the_allowed_ones() {
        let e = validate(a100(), &["3g.40gb@2".parse().unwrap()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`3g.40gb` cannot start at slot 2 on a100-80gb; allowed starts: 0, 4"
        );
        let e = validate(a100(), &["1g.10gb@7".parse().unwrap()]).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("allowed starts: 0, 1, 2, 3, 4, 5, 6"),
            "{e}"
        );
    }

    #[test]
    fn unknown_profiles_and_counts_are_reported() {
        let e = validate(a100(), &["1g.5gb@0".parse().unwrap()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "profile `1g.5gb` does not exist on a100-80gb (profiles: 1g.10gb, 1g.10gb+me, \
             1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb)"
        );
        let two_me = parse_instances("1g.10gb+me@0, 1g.10gb+me@1").unwrap();
        assert_eq!(two_me[0].profile, "1g.10gb+me");
        assert_eq!(
            validate(a100(), &two_me).unwrap_err().to_string(),
            "2 instances of `1g.10gb+me` exceed its limit of 1 per GPU"
        );
        assert!(matches!(
            "1g.10gb".parse::<Instance>(),
            Err(LayoutError::BadInstance { .. })
        ));
        assert!(matches!(
            "@3".parse::<Instance>(),
            Err(LayoutError::BadInstance { .. })
        ));
    }

    /// On every catalog GPU the cheap checks (memory slots, compute slices,
    /// per-profile limits) already decide whether a multiset fits; the search
    /// only has to find the starts. Checked over every multiset within the
    /// limits, so an edit to a placement table that breaks this shows here.
    #[test]
    fn within_the_limits_every_multiset_has_a_placement() {
        fn each(m: &GpuModel, i: usize, cur: &mut Vec<&'static Profile>, n: &mut usize) {
            let Some(p) = m.profiles.get(i) else {
                let slots: u32 = cur.iter().map(|p| u32::from(p.memory_slices)).sum();
                let compute: u32 = cur.iter().map(|p| u32::from(p.compute_slices)).sum();
                let media = cur.iter().filter(|p| p.media_extensions).count();
                if slots <= u32::from(m.memory_slices)
                    && compute <= u32::from(m.compute_slices)
                    && media <= 1
                {
                    let placed = place_profiles(m, cur).unwrap_or_else(|e| panic!("{e}"));
                    validate_placed(m, &placed).unwrap();
                    *n += 1;
                }
                return;
            };
            for k in 0..=p.max_count {
                cur.extend(std::iter::repeat_n(p, usize::from(k)));
                each(m, i + 1, cur, n);
                cur.truncate(cur.len() - usize::from(k));
            }
        }
        for m in crate::catalog::gpu_models() {
            let mut n = 0;
            each(m, 0, &mut Vec::new(), &mut n);
            assert!(n > 10, "{}: {n} layouts", m.id);
        }
    }

    #[test]
    fn one_media_instance_per_gpu_across_profiles() {
        let a30 = gpu_model("a30-24gb").unwrap();
        assert!(find_placements(a30, &["2g.12gb+me", "1g.6gb", "1g.6gb"]).is_ok());
        let e = find_placements(a30, &["2g.12gb+me", "1g.6gb+me"]).unwrap_err();
        assert!(matches!(e, LayoutError::MediaTwice { .. }), "{e}");
        assert!(e.to_string().contains("media engines"), "{e}");
    }

    #[test]
    fn a30_has_four_slots() {
        let a30 = gpu_model("a30-24gb").unwrap();
        let p = find_placements(a30, &["2g.12gb", "1g.6gb", "1g.6gb"]).unwrap();
        assert_eq!(slot_map(a30, &p), "[0 1][2][3]");
        assert!(find_placements(a30, &["2g.12gb", "2g.12gb", "1g.6gb"]).is_err());
        assert_eq!(free_slots(a30, &p), Vec::<u8>::new());
    }

    #[test]
    fn validated_instances_are_sorted_and_free_slots_listed() {
        let placed = validate(a100(), &parse_instances("1g.10gb@6, 3g.40gb@0").unwrap()).unwrap();
        assert_eq!(placed[0].profile.name, "3g.40gb");
        assert_eq!(free_slots(a100(), &placed), vec![4, 5, 7]);
        assert_eq!(slot_map(a100(), &placed), "[0 1 2 3] 4 5 [6] 7");
    }
}
