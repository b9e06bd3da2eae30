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
mod tests;
