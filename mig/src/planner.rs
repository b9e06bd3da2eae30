//! Which MIG profile each model replica gets, and how replicas pack onto GPUs.
//!
//! The point of MIG for serving is cost: seven small models that each idle on
//! a whole GPU fit one GPU as seven `1g` slices. [`plan`] picks for every
//! replica the smallest profile its memory need fits, packs the slices onto
//! as few GPUs as the placement rules allow, and reports what that saves
//! against one whole GPU per replica. A replica may also ask for a decode
//! rate ([`Demand::tokens_per_second`]): it then takes only profiles fast
//! enough for it ([`crate::throughput`]). [`assign`] does the matching half
//! for slices that exist already.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::{GpuModel, Profile};
use crate::layout::{self, Placed};
use crate::need::{fmt_gib, MemoryNeed};
use crate::packing::{self, Fallback, Fits};
use crate::throughput::Rate;

/// Replicas of one model and what each needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    pub model: String,
    pub need: MemoryNeed,
    pub replicas: u32,
    /// The decode rate each replica must reach, in tokens/s of one stream:
    /// the replica takes only profiles whose rate ([`Rate::of`]) is at
    /// least this. `None`: memory alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Measured decode rates of this model, profile name -> tokens/s; they
    /// replace the modelled rate of those profiles.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measured: BTreeMap<String, f64>,
}

impl Demand {
    pub fn new(model: impl Into<String>, need: MemoryNeed, replicas: u32) -> Self {
        Demand {
            model: model.into(),
            need,
            replicas,
            tokens_per_second: None,
            measured: BTreeMap::new(),
        }
    }

    /// The same demand with a decode-rate target (tokens/s per replica).
    pub fn with_tokens_per_second(mut self, tokens_per_second: f64) -> Self {
        self.tokens_per_second = Some(tokens_per_second);
        self
    }

    /// The same demand with a measured rate for one profile.
    pub fn with_measured(mut self, profile: impl Into<String>, tokens_per_second: f64) -> Self {
        self.measured.insert(profile.into(), tokens_per_second);
        self
    }

    /// This model's decode rate on `profile`: measured if given, else
    /// modelled from the weights (the bytes each token reads).
    pub fn rate(&self, gpu: &GpuModel, profile: &Profile) -> Option<Rate> {
        Rate::of(gpu, profile, self.need.weights_bytes, &self.measured)
    }

    /// Whether a replica may take `profile`: it holds the need and, with a
    /// target, decodes at least that fast.
    pub fn fits(&self, gpu: &GpuModel, profile: &Profile) -> bool {
        profile.memory_bytes() >= self.need.total_bytes
            && self.tokens_per_second.is_none_or(|target| {
                self.rate(gpu, profile)
                    .is_some_and(|r| r.tokens_per_second >= target)
            })
    }

    /// A demand whose need is known only as a total in bytes (see
    /// [`MemoryNeed::total`]).
    pub fn from_bytes(model: impl Into<String>, bytes: u64, replicas: u32) -> Self {
        Demand::new(model, MemoryNeed::total(bytes), replicas)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Also consider `+me` and memory-heavy profiles (`1g.20gb` on an A100
    /// 80GB). Off in this default (the library's callers pick); `mig-gateway
    /// plan` turns it on unless `--profiles balanced`. See
    /// [`GpuModel::is_balanced`] for what the balanced set leaves out.
    pub all_profiles: bool,
}

/// A plan for one GPU model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    #[serde(rename = "gpu_model", serialize_with = "model_id")]
    pub gpu: &'static GpuModel,
    pub options: PlanOptions,
    /// How the GPU count was found.
    pub search: Search,
    /// GPUs in use, numbered from 0 in the order they were opened.
    pub gpus: Vec<GpuPlan>,
    /// Models no profile can hold, once per model with its replica count.
    pub unplaceable: Vec<Unplaceable>,
    pub cost: Cost,
    /// Memory inside slices that the replicas' needs leave unused.
    pub idle_in_slices_bytes: u64,
    /// Memory of slots no slice takes, on the GPUs in use.
    pub unallocated_bytes: u64,
}

/// Whether the plan is the optimum or a heuristic's, and the bound it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Search {
    /// The exact search ran: no plan uses fewer GPUs, none with as many has
    /// less idle memory inside slices, and none with both as low uses fewer
    /// distinct profiles. False beyond [`packing::EXACT_STATES`], or when
    /// throughput targets leave no order of classes (see [`packing`]).
    pub exact: bool,
    /// No plan uses fewer GPUs; equal to the GPUs used when `exact`.
    pub lower_bound: u32,
    /// Why the exact search did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuPlan {
    pub index: u32,
    /// `[0 1][2][3][4 5 6 7]`, see [`layout::slot_map`].
    pub slot_map: String,
    /// Sorted by start slot.
    pub instances: Vec<PlannedInstance>,
    pub free_slots: Vec<u8>,
    pub free_compute_slices: u8,
    /// Memory of the free slots (each slot valued at the full-GPU profile's
    /// memory over the slot count).
    pub unallocated_bytes: u64,
    pub idle_in_slices_bytes: u64,
}

/// One GPU instance of the plan and the replica it serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedInstance {
    #[serde(serialize_with = "profile_name")]
    pub profile: &'static Profile,
    /// The id `nvidia-smi mig -cgi` takes.
    pub profile_id: u32,
    pub start: u8,
    pub model: String,
    /// Replica number within the model, from 0.
    pub replica: u32,
    pub need: MemoryNeed,
    /// Profile memory the need leaves unused.
    pub idle_bytes: u64,
    /// The replica's decode-rate target, tokens/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// The model's decode rate on this profile, measured or modelled;
    /// `None` where neither is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_rate: Option<Rate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unplaceable {
    pub model: String,
    pub replicas: u32,
    pub need: MemoryNeed,
    pub reason: String,
}

/// The plan against the baseline of one whole GPU per replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub replicas_placed: u32,
    /// GPUs the replicas would take without MIG: one each.
    pub whole_gpus: u32,
    /// GPUs the plan uses.
    pub mig_gpus: u32,
    pub gpus_saved: u32,
}

fn model_id<S: serde::Serializer>(m: &&'static GpuModel, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.id)
}

fn profile_name<S: serde::Serializer>(p: &&'static Profile, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name)
}

/// The profiles a plan may use, smallest first: by memory, then compute
/// slices (so `1g.20gb` comes before `2g.20gb` when both are allowed), then
/// name.
pub fn candidate_profiles(gpu: &GpuModel, options: PlanOptions) -> Vec<&'static Profile> {
    let mut v: Vec<&'static Profile> = gpu
        .profiles
        .iter()
        .filter(|p| options.all_profiles || gpu.is_balanced(p))
        .collect();
    v.sort_by(|a, b| {
        (
            a.min_memory_mib(),
            a.compute_slices,
            a.media_extensions,
            a.name,
        )
            .cmp(&(
                b.min_memory_mib(),
                b.compute_slices,
                b.media_extensions,
                b.name,
            ))
    });
    v
}

/// The smallest allowed profile whose memory holds `need_bytes`.
pub fn choose_profile(
    gpu: &GpuModel,
    need_bytes: u64,
    options: PlanOptions,
) -> Option<&'static Profile> {
    candidate_profiles(gpu, options)
        .into_iter()
        .find(|p| p.memory_bytes() >= need_bytes)
}

/// The smallest allowed profile a replica of `demand` may take: it holds
/// the need and meets the throughput target ([`Demand::fits`]).
pub fn choose_profile_for(
    gpu: &GpuModel,
    demand: &Demand,
    options: PlanOptions,
) -> Option<&'static Profile> {
    candidate_profiles(gpu, options)
        .into_iter()
        .find(|p| demand.fits(gpu, p))
}

/// Why no allowed profile fits `demand`: too little memory anywhere, or no
/// profile that holds it decodes fast enough.
fn unfit_reason(gpu: &GpuModel, cands: &[&'static Profile], demand: &Demand) -> String {
    let holding: Vec<&'static Profile> = cands
        .iter()
        .copied()
        .filter(|p| p.memory_bytes() >= demand.need.total_bytes)
        .collect();
    let Some(target) = demand.tokens_per_second.filter(|_| !holding.is_empty()) else {
        return too_large(gpu, &demand.need);
    };
    let fastest = holding
        .iter()
        .filter_map(|p| demand.rate(gpu, p).map(|r| (p, r)))
        .max_by(|a, b| a.1.tokens_per_second.total_cmp(&b.1.tokens_per_second));
    match fastest {
        Some((p, r)) => format!(
            "needs {} tok/s; the fastest profile, {}, gives {}",
            fmt_rate(target),
            p.name,
            r
        ),
        None => format!(
            "needs {} tok/s; no decode rate is known on {} (no bandwidth figure): give measured rates",
            fmt_rate(target),
            gpu.id
        ),
    }
}

/// `60`, `12.5`: a rate as given, without trailing zeros.
fn fmt_rate(r: f64) -> String {
    let s = format!("{r:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Why no profile of `gpu` holds `need`.
fn too_large(gpu: &GpuModel, need: &MemoryNeed) -> String {
    let largest = gpu.largest_profile();
    format!(
        "needs {}; the largest profile on {}, {}, has {}",
        fmt_gib(need.total_bytes, 1),
        gpu.id,
        largest.name,
        largest.memory_gib_label()
    )
}

#[derive(Debug, Clone, Copy)]
struct Item {
    demand: usize,
    replica: u32,
    profile: &'static Profile,
}

/// What running the plan costs at a price per GPU-hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub gpus: u32,
    /// USD per GPU and hour, as given.
    pub per_gpu_hour: f64,
    /// USD per hour for the plan's GPUs.
    pub per_hour: f64,
}

impl fmt::Display for Price {
    /// `cost: 2 GPUs x $2.50/h = $5.00/h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cost: {} GPU{} x ${:.2}/h = ${:.2}/h",
            self.gpus,
            if self.gpus == 1 { "" } else { "s" },
            self.per_gpu_hour,
            self.per_hour
        )
    }
}

/// Plans `demands` on GPUs of model `gpu`, as many as it takes.
///
/// Every replica may take any allowed profile its need fits
/// ([`candidate_profiles`]) and, with a throughput target, that decodes
/// fast enough ([`Demand::fits`]). The plan uses the fewest GPUs; among those, the
/// least memory inside slices that needs leave idle; among those, the fewest
/// distinct profiles (see [`packing`] for the search and its proof sketch).
/// That is exact up to [`packing::EXACT_STATES`]; beyond, the replicas are
/// packed first-fit decreasing on their smallest profile and
/// [`Plan::search`] holds a lower bound, so the plan states its gap. Every
/// GPU it returns is a layout the driver accepts, and the same demands give
/// the same plan.
pub fn plan(gpu: &'static GpuModel, demands: &[Demand], options: PlanOptions) -> Plan {
    let cands = candidate_profiles(gpu, options);
    let mut items = Vec::new();
    let mut fits: Vec<Fits> = Vec::new();
    let mut unplaceable = Vec::new();
    for (d, demand) in demands.iter().enumerate() {
        if demand.replicas == 0 {
            continue;
        }
        let mask: Fits = cands
            .iter()
            .enumerate()
            .filter(|(_, p)| demand.fits(gpu, p))
            .fold(0, |m, (i, _)| m | 1 << i);
        if mask == 0 {
            unplaceable.push(Unplaceable {
                model: demand.model.clone(),
                replicas: demand.replicas,
                need: demand.need,
                reason: unfit_reason(gpu, &cands, demand),
            });
            continue;
        }
        let profile = cands[mask.trailing_zeros() as usize];
        for replica in 0..demand.replicas {
            items.push(Item {
                demand: d,
                replica,
                profile,
            });
            fits.push(mask);
        }
    }
    let packed = packing::pack(gpu, &cands, &fits);
    let bins: Vec<Vec<Item>> = packed
        .bins
        .iter()
        .map(|bin| {
            bin.iter()
                .map(|&(item, c)| Item {
                    profile: cands[c],
                    ..items[item]
                })
                .collect()
        })
        .collect();

    let gpus: Vec<GpuPlan> = bins
        .iter()
        .enumerate()
        .map(|(index, bin)| gpu_plan(gpu, index as u32, bin, demands))
        .collect();
    let replicas_placed = items.len() as u32;
    let mig_gpus = gpus.len() as u32;
    Plan {
        gpu,
        options,
        search: Search {
            exact: packed.fallback.is_none(),
            lower_bound: packed.lower_bound,
            fallback: packed.fallback,
        },
        idle_in_slices_bytes: gpus.iter().map(|g| g.idle_in_slices_bytes).sum(),
        unallocated_bytes: gpus.iter().map(|g| g.unallocated_bytes).sum(),
        gpus,
        unplaceable,
        cost: Cost {
            replicas_placed,
            whole_gpus: replicas_placed,
            mig_gpus,
            gpus_saved: replicas_placed - mig_gpus,
        },
    }
}

fn gpu_plan(gpu: &'static GpuModel, index: u32, bin: &[Item], demands: &[Demand]) -> GpuPlan {
    let profiles: Vec<&'static Profile> = bin.iter().map(|i| i.profile).collect();
    let placed = layout::place_profiles(gpu, &profiles).expect("every bin was checked to fit");
    // Replicas of one profile take its slots in the order they were packed.
    let mut taken = vec![false; bin.len()];
    let instances: Vec<PlannedInstance> = placed
        .iter()
        .map(|p| {
            let k = (0..bin.len())
                .find(|&k| !taken[k] && bin[k].profile.name == p.profile.name)
                .expect("one placement per item");
            taken[k] = true;
            let demand = &demands[bin[k].demand];
            PlannedInstance {
                profile: p.profile,
                profile_id: p.profile.id,
                start: p.start,
                model: demand.model.clone(),
                replica: bin[k].replica,
                need: demand.need,
                idle_bytes: p
                    .profile
                    .memory_bytes()
                    .saturating_sub(demand.need.total_bytes),
                tokens_per_second: demand.tokens_per_second,
                decode_rate: demand.rate(gpu, p.profile),
            }
        })
        .collect();
    let free_slots = layout::free_slots(gpu, &placed);
    let used_compute: u8 = placed.iter().map(|p| p.profile.compute_slices).sum();
    GpuPlan {
        index,
        slot_map: layout::slot_map(gpu, &placed),
        unallocated_bytes: free_slots.len() as u64 * gpu.slot_memory_bytes(),
        idle_in_slices_bytes: instances.iter().map(|i| i.idle_bytes).sum(),
        free_slots,
        free_compute_slices: gpu.compute_slices.saturating_sub(used_compute),
        instances,
    }
}

impl GpuPlan {
    /// The instances as the layout module sees them, for validation.
    pub fn placed(&self) -> Vec<Placed> {
        self.instances
            .iter()
            .map(|i| Placed {
                profile: i.profile,
                start: i.start,
            })
            .collect()
    }
}

impl Plan {
    /// Replicas the plan could not place.
    pub fn replicas_unplaceable(&self) -> u32 {
        self.unplaceable.iter().map(|u| u.replicas).sum()
    }

    /// "7 replicas on 1 GPU instead of 7 (saves 6)".
    pub fn cost_line(&self) -> String {
        let c = &self.cost;
        if c.replicas_placed == 0 {
            return "no replica placed".to_string();
        }
        let s = |n: u32, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{} on {} instead of {} (saves {})",
            s(c.replicas_placed, "replica", "replicas"),
            s(c.mig_gpus, "GPU", "GPUs"),
            c.whole_gpus,
            c.gpus_saved
        )
    }
}

impl Plan {
    /// What running the plan's GPUs costs at `per_gpu_hour` USD each.
    pub fn price(&self, per_gpu_hour: f64) -> Price {
        Price {
            gpus: self.cost.mig_gpus,
            per_gpu_hour,
            per_hour: f64::from(self.cost.mig_gpus) * per_gpu_hour,
        }
    }

    /// For a plan beyond the exact search: how far it may be from optimal.
    pub fn search_line(&self) -> String {
        let s = &self.search;
        if s.exact {
            return "optimal: fewest GPUs, then least idle memory, then fewest profiles"
                .to_string();
        }
        let gap = self.cost.mig_gpus.saturating_sub(s.lower_bound);
        let why = match s.fallback {
            Some(Fallback::Unordered) => "throughput targets the exact search cannot order",
            _ => "mix beyond the exact search",
        };
        format!(
            "first-fit ({why}): at least {} GPU{} needed, gap {}",
            s.lower_bound,
            if s.lower_bound == 1 { "" } else { "s" },
            gap
        )
    }
}

impl fmt::Display for Plan {
    /// A table for humans: per GPU its slot map and instances, then idle
    /// memory, the cost line and the models that fit nowhere.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "MIG plan for {} ({}), {} profiles",
            self.gpu.id,
            self.gpu.name,
            if self.options.all_profiles {
                "all"
            } else {
                "balanced"
            }
        )?;
        let who = |i: &PlannedInstance| format!("{} #{}", i.model, i.replica);
        let all = self.gpus.iter().flat_map(|g| &g.instances);
        let w_profile = all.clone().map(|i| i.profile.name.len()).max().unwrap_or(0);
        let w_who = all.clone().map(|i| who(i).len()).max().unwrap_or(0);
        let need = |i: &PlannedInstance| fmt_gib(i.need.total_bytes, 1);
        let w_need = all.clone().map(|i| need(i).len()).max().unwrap_or(0);
        let idle = |i: &PlannedInstance| fmt_gib(i.idle_bytes, 1);
        let w_idle = all.map(|i| idle(i).len()).max().unwrap_or(0);
        for g in &self.gpus {
            writeln!(f, "GPU {}  {}", g.index, g.slot_map)?;
            for i in &g.instances {
                let line = format!(
                    "  {:<wp$} @{}  {:<ww$}  need {:<wn$}  idle {:<wi$}",
                    i.profile.name,
                    i.start,
                    who(i),
                    need(i),
                    idle(i),
                    wp = w_profile,
                    ww = w_who,
                    wn = w_need,
                    wi = w_idle,
                );
                // The rate only where the replica asked for one, so plans
                // without targets read as before.
                match (i.tokens_per_second, i.decode_rate) {
                    (Some(target), Some(rate)) => {
                        writeln!(f, "{line}  {rate} (target {})", fmt_rate(target))?
                    }
                    _ => writeln!(f, "{}", line.trim_end())?,
                }
            }
            let slots = if g.free_slots.is_empty() {
                "none".to_string()
            } else {
                format!(
                    "{} ({})",
                    g.free_slots
                        .iter()
                        .map(u8::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    fmt_gib(g.unallocated_bytes, 1)
                )
            };
            writeln!(
                f,
                "  free slots: {slots}; compute slices unused: {} of {}",
                g.free_compute_slices, self.gpu.compute_slices
            )?;
        }
        if !self.gpus.is_empty() {
            writeln!(
                f,
                "idle: {} inside slices, {} in free slots",
                fmt_gib(self.idle_in_slices_bytes, 1),
                fmt_gib(self.unallocated_bytes, 1)
            )?;
        }
        writeln!(f, "{}", self.cost_line())?;
        if !self.search.exact {
            writeln!(f, "{}", self.search_line())?;
        }
        if !self.unplaceable.is_empty() {
            writeln!(f, "not placed:")?;
            for u in &self.unplaceable {
                writeln!(f, "  {} x{}: {}", u.model, u.replicas, u.reason)?;
            }
        }
        Ok(())
    }
}

/// A slice that exists already (found by discovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExistingSlice {
    /// `MIG-<uuid>`, or any id the caller uses.
    pub id: String,
    pub profile: String,
    /// Memory of the slice as NVML reports it.
    pub memory_bytes: u64,
}

/// Replicas matched to existing slices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// In demand order, then replica order.
    pub assigned: Vec<SliceAssignment>,
    pub unassigned: Vec<UnassignedReplica>,
    /// Slices no replica got, smallest first.
    pub free: Vec<ExistingSlice>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SliceAssignment {
    /// The slice's id, as given in [`ExistingSlice::id`].
    pub slice: String,
    pub profile: String,
    pub memory_bytes: u64,
    pub model: String,
    pub replica: u32,
    pub need_bytes: u64,
    pub idle_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnassignedReplica {
    pub model: String,
    pub replica: u32,
    pub need_bytes: u64,
    pub reason: String,
}

/// Gives each replica the smallest free slice its need fits.
///
/// Replicas are served largest need first, so a large model is not left
/// without a slice because a small one took the only slice big enough; with
/// the smallest fitting slice each time, this places as many replicas as any
/// matching can. Ties break by demand order, replica number, then slice
/// memory and id, so the result is deterministic.
pub fn assign(demands: &[Demand], slices: &[ExistingSlice]) -> Assignment {
    let mut order: Vec<(usize, u32)> = demands
        .iter()
        .enumerate()
        .flat_map(|(d, demand)| (0..demand.replicas).map(move |r| (d, r)))
        .collect();
    order.sort_by(|a, b| {
        demands[b.0]
            .need
            .total_bytes
            .cmp(&demands[a.0].need.total_bytes)
            .then(a.cmp(b))
    });
    let mut free: Vec<ExistingSlice> = slices.to_vec();
    free.sort_by(|a, b| (a.memory_bytes, &a.id).cmp(&(b.memory_bytes, &b.id)));
    let mut taken = vec![false; free.len()];
    let mut assigned = Vec::new();
    let mut unassigned = Vec::new();
    for (d, replica) in order {
        let demand = &demands[d];
        let need = demand.need.total_bytes;
        match (0..free.len()).find(|&k| !taken[k] && free[k].memory_bytes >= need) {
            Some(k) => {
                taken[k] = true;
                assigned.push((
                    d,
                    SliceAssignment {
                        slice: free[k].id.clone(),
                        profile: free[k].profile.clone(),
                        memory_bytes: free[k].memory_bytes,
                        model: demand.model.clone(),
                        replica,
                        need_bytes: need,
                        idle_bytes: free[k].memory_bytes - need,
                    },
                ));
            }
            None => unassigned.push((
                d,
                UnassignedReplica {
                    model: demand.model.clone(),
                    replica,
                    need_bytes: need,
                    reason: no_slice_reason(need, &free),
                },
            )),
        }
    }
    assigned.sort_by_key(|(d, a)| (*d, a.replica));
    unassigned.sort_by_key(|(d, u)| (*d, u.replica));
    Assignment {
        assigned: assigned.into_iter().map(|(_, a)| a).collect(),
        unassigned: unassigned.into_iter().map(|(_, u)| u).collect(),
        free: free
            .into_iter()
            .zip(taken)
            .filter(|(_, t)| !t)
            .map(|(s, _)| s)
            .collect(),
    }
}

impl fmt::Display for UnassignedReplica {
    /// `llama-70b #0: needs 130.0 GiB; the largest slice, ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{}: {}", self.model, self.replica, self.reason)
    }
}

impl fmt::Display for SliceAssignment {
    /// `smollm2-135m #0 on MIG-... (1g.10gb, idle 9.1 GiB)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} #{} on {} ({}, idle {})",
            self.model,
            self.replica,
            self.slice,
            self.profile,
            fmt_gib(self.idle_bytes, 1)
        )
    }
}

fn no_slice_reason(need: u64, slices: &[ExistingSlice]) -> String {
    let need_s = fmt_gib(need, 1);
    let big: Vec<&str> = slices
        .iter()
        .filter(|s| s.memory_bytes >= need)
        .map(|s| s.id.as_str())
        .collect();
    match slices.last() {
        None => format!("needs {need_s}; there are no slices"),
        Some(largest) if big.is_empty() => format!(
            "needs {need_s}; the largest slice, {} ({}), has {}",
            largest.id,
            largest.profile,
            fmt_gib(largest.memory_bytes, 2)
        ),
        Some(_) => format!(
            "needs {need_s}; the {} slice{} with room for it ({}) went to replicas needing as much or more",
            big.len(),
            if big.len() == 1 { "" } else { "s" },
            big.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::gpu_model;
    use crate::need::{gb, gib, memory_need, ModelShape, GIB};

    fn model(id: &str) -> &'static GpuModel {
        gpu_model(id).unwrap()
    }

    fn check(plan: &Plan) {
        for g in &plan.gpus {
            layout::validate_placed(plan.gpu, &g.placed()).unwrap();
        }
    }

    #[test]
    fn seven_small_models_share_one_a100_80gb() {
        let demands: Vec<Demand> = (0..7)
            .map(|i| Demand::new(format!("small-{i}"), MemoryNeed::total(gb(4.0)), 1))
            .collect();
        let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
        check(&p);
        assert_eq!(p.gpus.len(), 1);
        assert!(p.gpus[0]
            .instances
            .iter()
            .all(|i| i.profile.name == "1g.10gb"));
        assert_eq!(p.gpus[0].slot_map, "[0][1][2][3][4][5][6] 7");
        assert_eq!(
            p.cost,
            Cost {
                replicas_placed: 7,
                whole_gpus: 7,
                mig_gpus: 1,
                gpus_saved: 6
            }
        );
        assert_eq!(p.cost_line(), "7 replicas on 1 GPU instead of 7 (saves 6)");
        assert!(p.unplaceable.is_empty());
    }

    #[test]
    fn seven_b_fp16_models_get_2g_or_1g_20gb_with_all_profiles() {
        let demands: Vec<Demand> = ["mistral-7b", "llama-2-7b", "qwen2-7b"]
            .iter()
            .map(|m| Demand::new(*m, MemoryNeed::total(gb(14.0)), 1))
            .collect();
        let gpu = model("a100-80gb");
        let p = plan(gpu, &demands, PlanOptions::default());
        check(&p);
        assert_eq!(p.gpus.len(), 1);
        assert_eq!(p.gpus[0].slot_map, "[0 1][2 3][4 5] 6 7");
        assert!(p.gpus[0]
            .instances
            .iter()
            .all(|i| i.profile.name == "2g.20gb"));

        let all = PlanOptions { all_profiles: true };
        let p = plan(gpu, &demands, all);
        check(&p);
        assert!(p.gpus[0]
            .instances
            .iter()
            .all(|i| i.profile.name == "1g.20gb"));
        assert_eq!(p.gpus[0].free_compute_slices, 4);
    }

    #[test]
    fn a_70b_fp16_model_fits_no_80gb_profile_and_the_plan_says_why() {
        let demands = [Demand::new(
            "llama-2-70b",
            MemoryNeed::weights(gb(140.0)),
            1,
        )];
        for (id, largest) in [
            ("a100-80gb", "7g.80gb, has 78.75 GiB"),
            ("h100-80gb", "7g.80gb, has 79.25 GiB"),
        ] {
            let p = plan(model(id), &demands, PlanOptions { all_profiles: true });
            assert!(p.gpus.is_empty());
            assert_eq!(p.replicas_unplaceable(), 1);
            assert_eq!(
                p.unplaceable[0].reason,
                format!("needs 130.9 GiB; the largest profile on {id}, {largest}")
            );
            assert_eq!(p.cost_line(), "no replica placed");
        }
    }

    /// 140 GB of f16 weights is 130.4 GiB, and `7g.141gb` holds 139.75 GiB
    /// on the smallest-printing driver (the one plans count on): the weights
    /// fit an H200 with 8.9 GiB to spare. A KV cache for 8 requests of 4k
    /// tokens (10 GiB) does not.
    #[test]
    fn a_70b_fp16_model_fits_an_h200_only_with_a_small_cache() {
        let gpu = model("h200-141gb");
        let weights = [Demand::new(
            "llama-2-70b",
            MemoryNeed::weights(gb(140.0)),
            1,
        )];
        let p = plan(gpu, &weights, PlanOptions::default());
        check(&p);
        let i = &p.gpus[0].instances[0];
        assert_eq!(i.profile.name, "7g.141gb");
        assert_eq!(fmt_gib(i.idle_bytes, 1), "8.9 GiB");
        assert_eq!(p.cost_line(), "1 replica on 1 GPU instead of 1 (saves 0)");

        let shape = ModelShape {
            weights_bytes: gb(140.0),
            layers: 80,
            kv_heads: 8,
            head_dim: 128,
            kv_dtype_bytes: 2,
        };
        let cached = [Demand::new("llama-2-70b", memory_need(&shape, 4096, 8), 1)];
        let p = plan(gpu, &cached, PlanOptions::default());
        assert!(p.gpus.is_empty());
        assert_eq!(
            p.unplaceable[0].reason,
            "needs 140.9 GiB; the largest profile on h200-141gb, 7g.141gb, has 140.00 GiB"
        );
    }

    #[test]
    fn replicas_spread_over_more_gpus_when_one_is_full() {
        let demands = [
            Demand::new("big", MemoryNeed::total(gib(30.0)), 3),
            Demand::new("small", MemoryNeed::total(gib(2.0)), 3),
            Demand::new("huge", MemoryNeed::total(gib(500.0)), 2),
        ];
        let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
        check(&p);
        // 3g.40gb x3 need two GPUs; the 1g slices fill the gap on each.
        assert_eq!(p.gpus.len(), 2);
        assert_eq!(p.gpus[0].slot_map, "[0 1 2 3][4 5 6 7]");
        assert_eq!(p.gpus[1].slot_map, "[0 1 2 3][4][5][6] 7");
        assert_eq!(p.cost.replicas_placed, 6);
        assert_eq!(p.cost.gpus_saved, 4);
        assert_eq!(p.replicas_unplaceable(), 2);
        let text = p.to_string();
        assert!(
            text.contains("6 replicas on 2 GPUs instead of 6 (saves 4)"),
            "{text}"
        );
        assert!(text.contains("  huge x2: needs 500.0 GiB"), "{text}");
    }

    #[test]
    fn large_fleets_plan_quickly_and_tightly() {
        let demands = [
            Demand::new("small", MemoryNeed::total(gib(2.0)), 700),
            Demand::new("mid", MemoryNeed::total(gib(15.0)), 300),
        ];
        let p = plan(model("h100-80gb"), &demands, PlanOptions::default());
        // 300 x 2g.20gb fill 100 GPUs three each, a 1g.10gb takes slot 6 on
        // each, and the other 600 go seven per GPU: 186 GPUs, which is also
        // the compute bound (1300 compute slices / 7).
        assert_eq!(p.cost.replicas_placed, 1000);
        assert_eq!(p.gpus.len(), 186);
    }

    /// Issue 20's first mix: first-fit put both `3g.40gb` on GPU 0 and
    /// needed 3 GPUs.
    #[test]
    fn the_mix_first_fit_spread_over_three_gpus_fits_two() {
        let demands = [
            Demand::new("m30", MemoryNeed::total(gb(30.0)), 2),
            Demand::new("m15", MemoryNeed::total(gb(15.0)), 3),
            Demand::new("m5", MemoryNeed::total(gb(5.0)), 2),
        ];
        let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
        check(&p);
        assert_eq!(p.gpus.len(), 2, "{p}");
        assert!(p.search.exact);
        let mut got: Vec<Vec<&str>> = p
            .gpus
            .iter()
            .map(|g| {
                let mut v: Vec<&str> = g.instances.iter().map(|i| i.profile.name).collect();
                v.sort_unstable();
                v
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                vec!["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"],
                vec!["2g.20gb", "2g.20gb", "3g.40gb"],
            ]
        );
    }

    /// Issue 20's second mix: with every profile, `1g.20gb` x 3 and
    /// `1g.10gb` x 2 share one H100.
    #[test]
    fn all_profiles_put_three_20gb_and_two_5gb_models_on_one_h100() {
        let demands = [
            Demand::new("big", MemoryNeed::total(gb(20.0)), 3),
            Demand::new("small", MemoryNeed::total(gb(5.0)), 2),
        ];
        let gpu = model("h100-80gb");
        let p = plan(gpu, &demands, PlanOptions { all_profiles: true });
        check(&p);
        assert_eq!(p.gpus.len(), 1, "{p}");
        let mut names: Vec<&str> = p.gpus[0].instances.iter().map(|i| i.profile.name).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["1g.10gb", "1g.10gb", "1g.20gb", "1g.20gb", "1g.20gb"]
        );
        // The balanced ladder has no 1g.20gb: 2g.20gb x 3 leave one compute
        // slice, so two GPUs.
        let p = plan(gpu, &demands, PlanOptions::default());
        check(&p);
        assert_eq!(p.gpus.len(), 2, "{p}");
    }

    #[test]
    fn beyond_the_exact_search_the_plan_states_its_gap() {
        let demands: Vec<Demand> = (0..6)
            .map(|i| {
                Demand::new(
                    format!("m{i}"),
                    MemoryNeed::total(gib(1.0 + 7.0 * i as f64)),
                    40,
                )
            })
            .collect();
        let p = plan(
            model("a100-80gb"),
            &demands,
            PlanOptions { all_profiles: true },
        );
        check(&p);
        assert!(!p.search.exact);
        assert!(p.search.lower_bound as usize <= p.gpus.len());
        let text = p.to_string();
        assert!(
            text.contains("first-fit (mix beyond the exact search): at least"),
            "{text}"
        );
    }

    /// The best (GPUs, idle memory in slices, distinct profiles) by brute
    /// force: every partition of the replicas into GPUs, every fitting
    /// profile for each replica, the layout module's placement check.
    fn brute_force(
        gpu: &'static GpuModel,
        needs: &[u64],
        options: PlanOptions,
    ) -> (usize, u64, u32) {
        let fits = |r: usize, p: &Profile| p.memory_bytes() >= needs[r];
        brute_force_with(gpu, needs, &fits, options)
    }

    /// [`brute_force`] where replica `r` may take profile `p` when
    /// `fits(r, p)`.
    fn brute_force_with(
        gpu: &'static GpuModel,
        needs: &[u64],
        fits: &dyn Fn(usize, &Profile) -> bool,
        options: PlanOptions,
    ) -> (usize, u64, u32) {
        let cands = candidate_profiles(gpu, options);
        // Per group of replicas: profile set (bits) -> least slice memory.
        let group_options = |group: &[usize]| -> Vec<(u32, u64)> {
            let mut best: std::collections::BTreeMap<u32, u64> = Default::default();
            let mut choice = vec![0usize; group.len()];
            'outer: loop {
                let ok = group.iter().zip(&choice).all(|(&r, &c)| fits(r, cands[c]));
                if ok {
                    let profiles: Vec<&'static Profile> =
                        choice.iter().map(|&c| cands[c]).collect();
                    if layout::place_profiles(gpu, &profiles).is_ok() {
                        let bits = choice.iter().fold(0u32, |b, &c| b | 1 << c);
                        let mem: u64 = profiles.iter().map(|p| p.memory_bytes()).sum();
                        let e = best.entry(bits).or_insert(u64::MAX);
                        *e = (*e).min(mem);
                    }
                }
                for c in choice.iter_mut() {
                    *c += 1;
                    if *c < cands.len() {
                        continue 'outer;
                    }
                    *c = 0;
                }
                break;
            }
            best.into_iter().collect()
        };
        let n = needs.len();
        let mut best = (usize::MAX, u64::MAX, u32::MAX);
        // Set partitions as restricted growth strings.
        let mut rgs = vec![0usize; n];
        loop {
            let blocks = rgs.iter().max().map_or(0, |m| m + 1);
            let groups: Vec<Vec<usize>> = (0..blocks)
                .map(|b| (0..n).filter(|&r| rgs[r] == b).collect())
                .collect();
            // Combine the groups' options: (profile bits, memory).
            let mut combos: Vec<(u32, u64)> = vec![(0, 0)];
            for g in &groups {
                let opts = group_options(g);
                combos = combos
                    .iter()
                    .flat_map(|&(b, m)| opts.iter().map(move |&(ob, om)| (b | ob, m + om)))
                    .collect();
            }
            for (bits, mem) in combos {
                best = best.min((blocks, mem, bits.count_ones()));
            }
            // Next restricted growth string.
            let mut k = n;
            loop {
                if k <= 1 {
                    let need: u64 = needs.iter().sum();
                    return (best.0, best.1 - need, best.2);
                }
                k -= 1;
                let max_before = rgs[..k].iter().max().copied().unwrap_or(0);
                if rgs[k] <= max_before {
                    rgs[k] += 1;
                    rgs[k + 1..].iter_mut().for_each(|x| *x = 0);
                    break;
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

        /// With throughput targets (and modelled rates) the planner still
        /// matches the brute force, whose replicas may take any profile that
        /// holds them and decodes fast enough.
        #[test]
        fn plans_with_targets_are_optimal_against_brute_force(
            gpu in 0usize..6,
            all_profiles in proptest::prelude::any::<bool>(),
            mix in proptest::collection::vec((1u64..=80_000, 1u32..=2, 0usize..6), 1..=3),
        ) {
            let gpu = &crate::catalog::gpu_models()[gpu % crate::catalog::gpu_models().len()];
            let options = PlanOptions { all_profiles };
            let largest = gpu.largest_profile().memory_bytes();
            // Targets as fractions of the whole GPU's rate for the model.
            let shares = [0.0, 0.1, 0.2, 0.3, 0.5, 0.9];
            let demands: Vec<Demand> = mix
                .iter()
                .enumerate()
                .map(|(i, &(mib, r, t))| {
                    let bytes = (u128::from(largest) * u128::from(mib) / 80_000) as u64;
                    let d = Demand::new(format!("m{i}"), MemoryNeed::total(bytes), r);
                    let whole = d.rate(gpu, gpu.largest_profile()).unwrap().tokens_per_second;
                    if shares[t] > 0.0 { d.with_tokens_per_second(whole * shares[t]) } else { d }
                })
                .collect();
            let owner: Vec<usize> = demands
                .iter()
                .enumerate()
                .flat_map(|(k, d)| std::iter::repeat_n(k, d.replicas as usize))
                .collect();
            let needs: Vec<u64> = owner.iter().map(|&k| demands[k].need.total_bytes).collect();
            proptest::prop_assume!(needs.len() <= 5);
            let p = plan(gpu, &demands, options);
            check(&p);
            proptest::prop_assert!(p.search.exact);
            for i in p.gpus.iter().flat_map(|g| &g.instances) {
                let d = demands.iter().find(|d| d.model == i.model).unwrap();
                proptest::prop_assert!(d.fits(gpu, i.profile));
            }
            // Replicas no profile fits are left out of both.
            let fits = |r: usize, p: &Profile| demands[owner[r]].fits(gpu, p);
            let cands = candidate_profiles(gpu, options);
            let placed: Vec<usize> = (0..needs.len())
                .filter(|&r| cands.iter().any(|c| fits(r, c)))
                .collect();
            proptest::prop_assume!(!placed.is_empty());
            let sub_needs: Vec<u64> = placed.iter().map(|&r| needs[r]).collect();
            let sub_fits = |r: usize, p: &Profile| fits(placed[r], p);
            let distinct = p
                .gpus
                .iter()
                .flat_map(|g| g.instances.iter().map(|i| i.profile.name))
                .collect::<std::collections::BTreeSet<_>>()
                .len() as u32;
            let got = (p.gpus.len(), p.idle_in_slices_bytes, distinct);
            proptest::prop_assert_eq!(got, brute_force_with(gpu, &sub_needs, &sub_fits, options), "{}", p);
        }

        /// The planner's (GPUs, idle memory, distinct profiles) equals the
        /// brute force's on random small mixes.
        #[test]
        fn plans_are_optimal_against_brute_force(
            gpu in 0usize..6,
            all_profiles in proptest::prelude::any::<bool>(),
            mix in proptest::collection::vec((1u64..=80_000, 1u32..=2), 1..=3),
        ) {
            let gpu = &crate::catalog::gpu_models()[gpu % crate::catalog::gpu_models().len()];
            let options = PlanOptions { all_profiles };
            let largest = gpu.largest_profile().memory_bytes();
            let demands: Vec<Demand> = mix
                .iter()
                .enumerate()
                .map(|(i, &(mib, r))| Demand::new(format!("m{i}"), MemoryNeed::total((u128::from(largest) * u128::from(mib) / 80_000) as u64), r))
                .collect();
            let needs: Vec<u64> = demands
                .iter()
                .flat_map(|d| std::iter::repeat_n(d.need.total_bytes, d.replicas as usize))
                .collect();
            proptest::prop_assume!(needs.len() <= 5);
            let p = plan(gpu, &demands, options);
            check(&p);
            let distinct = p
                .gpus
                .iter()
                .flat_map(|g| g.instances.iter().map(|i| i.profile.name))
                .collect::<std::collections::BTreeSet<_>>()
                .len() as u32;
            let got = (p.gpus.len(), p.idle_in_slices_bytes, distinct);
            proptest::prop_assert!(p.search.exact);
            proptest::prop_assert_eq!(got, brute_force(gpu, &needs, options), "{}", p);
        }
    }

    /// Issue 20: 7B fp16 replicas (14 GB read per token) asking for 80, 40
    /// and 20 tok/s on an A100 80GB take `4g.40gb` (~83), `2g.20gb` (~42)
    /// and `1g.20gb` (~21): the fast one skips `3g.40gb` (~62) although it
    /// holds the memory, and all three share one GPU.
    #[test]
    fn throughput_targets_pick_profiles_fast_enough() {
        let gpu = model("a100-80gb");
        let d = |name: &str, tps: f64| {
            Demand::new(name, MemoryNeed::total(gb(14.0)), 1).with_tokens_per_second(tps)
        };
        let demands = [d("fast", 80.0), d("mid", 40.0), d("slow", 20.0)];
        let p = plan(gpu, &demands, PlanOptions { all_profiles: true });
        check(&p);
        assert!(p.search.exact);
        assert_eq!(p.gpus.len(), 1, "{p}");
        let got: BTreeMap<&str, &str> = p.gpus[0]
            .instances
            .iter()
            .map(|i| (i.model.as_str(), i.profile.name))
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([("fast", "4g.40gb"), ("mid", "2g.20gb"), ("slow", "1g.20gb")])
        );
        for i in &p.gpus[0].instances {
            let rate = i.decode_rate.unwrap().tokens_per_second;
            assert!(rate >= i.tokens_per_second.unwrap(), "{p}");
        }
        assert_eq!(
            choose_profile_for(gpu, &demands[0], PlanOptions::default()).map(|p| p.name),
            Some("4g.40gb")
        );
        // Without targets the same replicas take the smallest memory.
        let plain: Vec<Demand> = demands
            .iter()
            .map(|d| Demand::new(d.model.clone(), d.need, 1))
            .collect();
        let p = plan(gpu, &plain, PlanOptions { all_profiles: true });
        assert!(p.gpus[0]
            .instances
            .iter()
            .all(|i| i.profile.name == "1g.20gb"));
        // The table prints the rate beside the target.
        let text = plan(gpu, &demands, PlanOptions { all_profiles: true }).to_string();
        assert!(
            text.contains(
                "4g.40gb @0  fast #0  need 13.0 GiB  idle 26.2 GiB  ~83 tok/s (target 80)"
            ),
            "{text}"
        );
    }

    /// What makes modelled targets always exact (see [`packing`]): in every
    /// catalog table a profile with more memory never has fewer compute
    /// slices, so the sets "holds the need and has enough compute" are
    /// nested. A GPU that breaks this still gets valid plans, first-fit
    /// ([`Fallback::Unordered`]), and the packing's docs need a word.
    #[test]
    fn more_memory_never_means_fewer_compute_slices() {
        for gpu in crate::catalog::gpu_models() {
            for p in gpu.profiles {
                for q in gpu.profiles {
                    assert!(
                        p.memory_mib <= q.memory_mib || p.compute_slices >= q.compute_slices,
                        "{}: {} has more memory than {} but fewer compute slices",
                        gpu.id,
                        p.name,
                        q.name
                    );
                }
            }
        }
    }

    #[test]
    fn a_target_no_profile_reaches_is_unplaceable_naming_the_fastest() {
        let gpu = model("a100-80gb");
        let demands = [
            Demand::new("llama-7b", MemoryNeed::total(gb(14.0)), 2).with_tokens_per_second(200.0),
            Demand::new("ok", MemoryNeed::total(gb(14.0)), 1).with_tokens_per_second(60.0),
        ];
        let p = plan(gpu, &demands, PlanOptions::default());
        check(&p);
        assert_eq!(p.replicas_unplaceable(), 2);
        assert_eq!(
            p.unplaceable[0].reason,
            "needs 200 tok/s; the fastest profile, 7g.80gb, gives ~146 tok/s"
        );
        assert_eq!(p.gpus[0].instances[0].profile.name, "3g.40gb");
        // A measured rate counts: 210 measured on 7g.80gb places it.
        let measured = [demands[0].clone().with_measured("7g.80gb", 210.0)];
        let p = plan(gpu, &measured, PlanOptions::default());
        assert!(p.unplaceable.is_empty(), "{p}");
        assert_eq!(p.gpus.len(), 2);
        let i = &p.gpus[0].instances[0];
        assert_eq!(i.profile.name, "7g.80gb");
        assert_eq!(i.decode_rate.unwrap().to_string(), "210 tok/s measured");
        // Memory first: a model no profile holds says so, target or not.
        let huge =
            [Demand::new("huge", MemoryNeed::total(gb(200.0)), 1).with_tokens_per_second(1.0)];
        let p = plan(gpu, &huge, PlanOptions::default());
        assert!(p.unplaceable[0]
            .reason
            .starts_with("needs 186.3 GiB; the largest profile"));
    }

    /// A measured rate below the model's moves the replica up; one above it
    /// moves it down.
    #[test]
    fn measured_rates_override_the_model() {
        let gpu = model("h100-80gb");
        let base = Demand::new("m", MemoryNeed::total(gb(14.0)), 1).with_tokens_per_second(60.0);
        // Modelled: 2g.20gb ~68 meets 60.
        assert_eq!(
            choose_profile_for(gpu, &base, PlanOptions::default())
                .unwrap()
                .name,
            "2g.20gb"
        );
        let slower = base.clone().with_measured("2g.20gb", 50.0);
        assert_eq!(
            choose_profile_for(gpu, &slower, PlanOptions::default())
                .unwrap()
                .name,
            "3g.40gb"
        );
        let faster = base.with_measured("1g.10gb", 61.0);
        // 1g.10gb (9.75 GiB) does not hold 13.0 GiB: memory still decides.
        assert_eq!(
            choose_profile_for(gpu, &faster, PlanOptions::default())
                .unwrap()
                .name,
            "2g.20gb"
        );
        let small = Demand::new("s", MemoryNeed::total(gb(5.0)), 1)
            .with_tokens_per_second(60.0)
            .with_measured("1g.10gb", 61.0);
        assert_eq!(
            choose_profile_for(gpu, &small, PlanOptions::default())
                .unwrap()
                .name,
            "1g.10gb"
        );
    }

    /// Measured rates that make `3g.40gb` fast for one model and `4g.40gb`
    /// for another give fitting sets that are not nested: the plan is
    /// first-fit, valid, and says why.
    #[test]
    fn unordered_fitting_sets_fall_back_to_first_fit_and_say_so() {
        let gpu = model("a100-80gb");
        let a = Demand::new("a", MemoryNeed::total(gb(30.0)), 1)
            .with_tokens_per_second(100.0)
            .with_measured("3g.40gb", 120.0)
            .with_measured("4g.40gb", 90.0);
        let b = Demand::new("b", MemoryNeed::total(gb(30.0)), 1)
            .with_tokens_per_second(100.0)
            .with_measured("3g.40gb", 90.0)
            .with_measured("4g.40gb", 120.0);
        let p = plan(gpu, &[a, b], PlanOptions::default());
        check(&p);
        assert!(!p.search.exact);
        assert_eq!(p.search.fallback, Some(Fallback::Unordered));
        assert!(p.unplaceable.is_empty());
        for i in p.gpus.iter().flat_map(|g| &g.instances) {
            assert!(i.decode_rate.unwrap().tokens_per_second >= 100.0, "{p}");
        }
        assert!(
            p.to_string()
                .contains("first-fit (throughput targets the exact search cannot order)"),
            "{p}"
        );
    }

    #[test]
    fn the_price_line_multiplies_gpus_by_the_hourly_price() {
        let demands = [Demand::new("m", MemoryNeed::total(gb(30.0)), 3)];
        let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
        assert_eq!(p.gpus.len(), 2);
        let price = p.price(2.5);
        assert_eq!(price.per_hour, 5.0);
        assert_eq!(price.to_string(), "cost: 2 GPUs x $2.50/h = $5.00/h");
        let one = plan(model("a100-80gb"), &demands[..0], PlanOptions::default());
        assert_eq!(
            one.price(1.0).to_string(),
            "cost: 0 GPUs x $1.00/h = $0.00/h"
        );
        let v = serde_json::to_value(price).unwrap();
        assert_eq!(v["per_gpu_hour"], 2.5);
        assert_eq!(v["gpus"], 2);
    }

    #[test]
    fn the_table_shows_slots_needs_and_idle_memory() {
        let demands = [
            Demand::new("smollm2-135m", MemoryNeed::total(gib(0.4)), 2),
            Demand::new("qwen2.5-7b", MemoryNeed::total(gb(16.0)), 1),
        ];
        let p = plan(model("a100-80gb"), &demands, PlanOptions::default());
        assert_eq!(
            p.to_string(),
            "\
MIG plan for a100-80gb (NVIDIA A100 80GB), balanced profiles
GPU 0  [0 1][2][3] 4 5 6 7
  2g.20gb @0  qwen2.5-7b #0    need 14.9 GiB  idle 4.6 GiB
  1g.10gb @2  smollm2-135m #0  need 0.4 GiB   idle 9.1 GiB
  1g.10gb @3  smollm2-135m #1  need 0.4 GiB   idle 9.1 GiB
  free slots: 4, 5, 6, 7 (39.4 GiB); compute slices unused: 3 of 7
idle: 22.8 GiB inside slices, 39.4 GiB in free slots
3 replicas on 1 GPU instead of 3 (saves 2)
"
        );
    }

    #[test]
    fn plans_serialise_with_names_not_whole_catalog_entries() {
        let demands = [Demand::new("m", MemoryNeed::total(GIB), 1)];
        let p = plan(model("a30-24gb"), &demands, PlanOptions::default());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["gpu_model"], "a30-24gb");
        assert_eq!(v["gpus"][0]["instances"][0]["profile"], "1g.6gb");
        assert_eq!(v["gpus"][0]["instances"][0]["profile_id"], 14);
        assert_eq!(v["cost"]["gpus_saved"], 0);
    }

    fn slice(id: &str, profile: &str, gib_: f64) -> ExistingSlice {
        ExistingSlice {
            id: id.into(),
            profile: profile.into(),
            memory_bytes: gib(gib_),
        }
    }

    #[test]
    fn assigns_the_smallest_slice_that_fits_largest_need_first() {
        let slices = [
            slice("MIG-c", "3g.40gb", 39.25),
            slice("MIG-a", "1g.10gb", 9.5),
            slice("MIG-b", "1g.10gb", 9.5),
            slice("MIG-d", "2g.20gb", 19.5),
        ];
        let demands = [
            Demand::new("tiny", MemoryNeed::total(gib(1.0)), 2),
            Demand::new("mid", MemoryNeed::total(gib(12.0)), 1),
            Demand::new("big", MemoryNeed::total(gib(30.0)), 2),
        ];
        let a = assign(&demands, &slices);
        let got: Vec<(&str, u32, &str)> = a
            .assigned
            .iter()
            .map(|s| (s.model.as_str(), s.replica, s.slice.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("tiny", 0, "MIG-a"),
                ("tiny", 1, "MIG-b"),
                ("mid", 0, "MIG-d"),
                ("big", 0, "MIG-c"),
            ]
        );
        assert_eq!(a.assigned[2].profile, "2g.20gb");
        assert_eq!(
            a.assigned[0].to_string(),
            "tiny #0 on MIG-a (1g.10gb, idle 8.5 GiB)"
        );
        assert_eq!(a.unassigned.len(), 1);
        assert_eq!(a.unassigned[0].model, "big");
        assert_eq!(a.unassigned[0].replica, 1);
        assert_eq!(
            a.unassigned[0].reason,
            "needs 30.0 GiB; the 1 slice with room for it (MIG-c) went to replicas needing as much or more"
        );
        assert!(a.free.is_empty());
        assert!(a.unassigned[0]
            .to_string()
            .starts_with("big #1: needs 30.0 GiB; "));
    }

    #[test]
    fn reports_when_no_slice_is_large_enough() {
        let slices = [
            slice("MIG-a", "1g.10gb", 9.5),
            slice("MIG-b", "2g.20gb", 19.5),
        ];
        let a = assign(
            &[Demand::new("70b", MemoryNeed::total(gib(130.0)), 1)],
            &slices,
        );
        assert_eq!(
            a.unassigned[0].reason,
            "needs 130.0 GiB; the largest slice, MIG-b (2g.20gb), has 19.50 GiB"
        );
        assert_eq!(a.free.len(), 2);
        assert_eq!(a.free[0].id, "MIG-a");
        let a = assign(&[Demand::new("m", MemoryNeed::total(1), 1)], &[]);
        assert_eq!(a.unassigned[0].reason, "needs 0.0 GiB; there are no slices");
    }
}
