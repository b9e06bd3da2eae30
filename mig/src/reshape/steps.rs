//! From the layout a machine has to the layout a plan wants, destroying as
//! few GPU instances as possible.
//!
//! A live instance is kept when the plan has the same profile at the same
//! start slot on the GPU it maps to; everything else on that GPU is destroyed
//! and the plan's other instances are created. Two choices decide how much
//! survives, and both are searched exhaustively:
//! - which live GPU each plan GPU goes to (a plan numbers its GPUs from 0 in
//!   the order it opened them, which says nothing about the machine);
//! - where on the GPU each planned profile goes: the start slots in
//!   `plan.json` are one valid placement, and another valid one may keep more
//!   (a plan's `1g.10gb@2` can stay at slot 5 where it already runs).
//!
//! A plan may use fewer GPUs than the machine has. Live GPUs no plan GPU
//! maps to are left as they are: nothing on them is destroyed, and nothing
//! on them serves the plan ([`GpuSteps::plan_gpu`] is `None`). So the
//! fewest-destroys mapping takes an empty GPU over one it would have to
//! clear, and the caller decides what to do with the rest.
//!
//! The search is small: at most 8 GPUs and 7 instances per GPU, so every
//! subset of a GPU's live instances (128) is tried as the kept set, the rest
//! of the plan placed around it by the placement rules of [`crate::layout`]
//! (memoised), and the plan GPUs are matched to live GPUs by trying every
//! injective mapping with the per-pair costs precomputed.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::control::{LiveGpu, LiveInstance, MigControl, MigError};
use crate::catalog::{gpu_model, GpuModel, Profile};
use crate::layout::{self, Instance, LayoutError, Placed};

/// The target: `plan.json` as `mig-gateway plan --out` writes it (a
/// serialised [`crate::planner::Plan`]; fields not needed here are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub gpu_model: String,
    pub gpus: Vec<TargetGpu>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGpu {
    /// The plan's GPU number (from 0, in the order the plan opened GPUs).
    pub index: u32,
    pub instances: Vec<TargetInstance>,
}

/// One GPU instance of the plan and the model replica it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInstance {
    pub profile: String,
    pub start: u8,
    pub model: String,
    pub replica: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReshapeError {
    /// The plan file is not JSON of a plan; `path` names the field
    /// (`gpus[1].instances[0].start`).
    #[error("plan: {path}: {message}")]
    Json { path: String, message: String },
    #[error("the plan is for GPU model `{0}`, which is not in the catalog")]
    UnknownGpuModel(String),
    #[error("the plan is for {plan}, but GPU {gpu} is {live}")]
    ModelMismatch {
        plan: String,
        gpu: u32,
        live: String,
    },
    #[error("the plan uses {plan} GPUs, but this machine has {live} with MIG on")]
    TooFewGpus { plan: usize, live: usize },
    /// A plan GPU whose instances break the placement rules.
    #[error("plan GPU {gpu}: {source}")]
    Layout {
        gpu: u32,
        #[source]
        source: LayoutError,
    },
}

impl Target {
    /// Reads `plan.json`. Errors name the field that is missing or wrong.
    pub fn from_json(s: &str) -> Result<Target, ReshapeError> {
        let de = &mut serde_json::Deserializer::from_str(s);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // serde_json appends " at line L column C"; keep it, it helps
            // find the spot in a hand-edited file.
            ReshapeError::Json {
                path: if path == "." {
                    "(top level)".to_string()
                } else {
                    path
                },
                message: inner.to_string(),
            }
        })
    }
}

/// What to do on every live GPU, in live GPU order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reshape {
    /// The catalog id of the plan's (and every live GPU's) model.
    pub gpu_model: String,
    /// One entry per live GPU, sorted by GPU index, including GPUs with
    /// nothing to do.
    pub gpus: Vec<GpuSteps>,
}

/// The steps for one live GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuSteps {
    /// Live GPU index.
    pub gpu: u32,
    /// The plan GPU this GPU becomes; `None` when the plan has fewer GPUs
    /// than the machine and this one is left as it is (then `keep` holds all
    /// its instances and no model is planned on them).
    pub plan_gpu: Option<u32>,
    /// Live instances that stay, sorted by start slot.
    pub keep: Vec<LiveInstance>,
    /// Live instances to destroy, sorted by start slot.
    pub destroy: Vec<LiveInstance>,
    /// Instances to create, in the order [`apply_gpu`] creates them (largest
    /// first), each with the start slot the step planner chose.
    pub create: Vec<TargetInstance>,
    /// The GPU's whole layout once the steps are done: every instance of the
    /// plan GPU at the start chosen for it, sorted by start. A kept instance
    /// is the entry with its profile and start ([`GpuSteps::target_of`]).
    pub target: Vec<TargetInstance>,
}

impl GpuSteps {
    /// The plan's instance (model and replica) a kept instance serves.
    pub fn target_of(&self, kept: &LiveInstance) -> Option<&TargetInstance> {
        self.target
            .iter()
            .find(|t| t.start == kept.start && t.profile.eq_ignore_ascii_case(&kept.profile))
    }

    /// Whether the GPU needs any change.
    pub fn is_noop(&self) -> bool {
        self.destroy.is_empty() && self.create.is_empty()
    }
}

impl Reshape {
    /// Live instances kept for the plan (on GPUs the plan maps to).
    pub fn kept(&self) -> usize {
        self.planned().map(|g| g.keep.len()).sum()
    }

    pub fn destroyed(&self) -> usize {
        self.gpus.iter().map(|g| g.destroy.len()).sum()
    }

    pub fn created(&self) -> usize {
        self.gpus.iter().map(|g| g.create.len()).sum()
    }

    /// Live instances on GPUs outside the plan, left as they are.
    pub fn untouched(&self) -> usize {
        self.gpus
            .iter()
            .filter(|g| g.plan_gpu.is_none())
            .map(|g| g.keep.len())
            .sum()
    }

    /// The GPUs the plan maps to, in live GPU order.
    pub fn planned(&self) -> impl Iterator<Item = &GpuSteps> {
        self.gpus.iter().filter(|g| g.plan_gpu.is_some())
    }
}

/// The plan's profiles resolved against the GPU model, validated.
struct PlanGpu<'a> {
    index: u32,
    instances: &'a [TargetInstance],
    profiles: Vec<&'static Profile>,
}

/// How one plan GPU lands on one live GPU.
#[derive(Debug, Clone)]
struct Fit {
    /// `(live instance, plan instance)` pairs kept.
    kept: Vec<(usize, usize)>,
    /// Start slot chosen for each plan instance.
    starts: Vec<u8>,
}

impl Fit {
    /// (destroyed, created): what the mapping search minimises.
    fn cost(&self, live: usize, planned: usize) -> (usize, usize) {
        (live - self.kept.len(), planned - self.kept.len())
    }
}

/// Plans the steps from `live` to `target`: see the module doc for what is
/// kept and how the choice is searched.
///
/// Among choices that destroy equally few instances, the one creating the
/// fewest wins, then the plan's own start slots, then the lowest live GPU
/// for the lowest plan GPU, so the same inputs give the same steps.
pub fn plan_steps(live: &[LiveGpu], target: &Target) -> Result<Reshape, ReshapeError> {
    let model = gpu_model(&target.gpu_model)
        .ok_or_else(|| ReshapeError::UnknownGpuModel(target.gpu_model.clone()))?;
    let mut live: Vec<&LiveGpu> = live.iter().collect();
    live.sort_by_key(|g| g.index);
    for g in &live {
        if gpu_model(&g.model).is_none_or(|m| m.id != model.id) {
            return Err(ReshapeError::ModelMismatch {
                plan: model.id.to_string(),
                gpu: g.index,
                live: g.model.clone(),
            });
        }
    }
    if target.gpus.len() > live.len() {
        return Err(ReshapeError::TooFewGpus {
            plan: target.gpus.len(),
            live: live.len(),
        });
    }
    let plan: Vec<PlanGpu> = target
        .gpus
        .iter()
        .map(|g| resolve_plan_gpu(model, g))
        .collect::<Result<_, _>>()?;

    let mut placer = Placer::default();
    // fits[p][l]: plan GPU p on live GPU l.
    let fits: Vec<Vec<Fit>> = plan
        .iter()
        .map(|p| {
            live.iter()
                .map(|l| best_fit(model, &l.instances, p, &mut placer))
                .collect()
        })
        .collect();
    let costs: Vec<Vec<(usize, usize)>> = fits
        .iter()
        .zip(&plan)
        .map(|(row, p)| {
            row.iter()
                .zip(&live)
                .map(|(f, l)| f.cost(l.instances.len(), p.instances.len()))
                .collect()
        })
        .collect();
    let mapping = best_mapping(&costs, live.len());

    let gpus = live
        .iter()
        .enumerate()
        .map(|(l, g)| match mapping.iter().position(|&m| m == l) {
            Some(p) => steps_for(model, g, &plan[p], &fits[p][l]),
            None => GpuSteps {
                gpu: g.index,
                plan_gpu: None,
                keep: sorted(g.instances.clone()),
                destroy: Vec::new(),
                create: Vec::new(),
                target: Vec::new(),
            },
        })
        .collect();
    Ok(Reshape {
        gpu_model: model.id.to_string(),
        gpus,
    })
}

fn sorted(mut v: Vec<LiveInstance>) -> Vec<LiveInstance> {
    v.sort_by_key(|x| (x.start, x.gi_id));
    v
}

fn resolve_plan_gpu<'a>(
    model: &'static GpuModel,
    g: &'a TargetGpu,
) -> Result<PlanGpu<'a>, ReshapeError> {
    let bad = |source| ReshapeError::Layout {
        gpu: g.index,
        source,
    };
    let wanted: Vec<Instance> = g
        .instances
        .iter()
        .map(|i| Instance {
            profile: i.profile.clone(),
            start: i.start,
        })
        .collect();
    layout::validate(model, &wanted).map_err(bad)?;
    let profiles: Vec<&'static Profile> = g
        .instances
        .iter()
        .map(|i| model.profile(&i.profile).expect("validated"))
        .collect();
    // Slots and starts are checked; this adds the compute-slice budget.
    layout::place_profiles(model, &profiles).map_err(bad)?;
    Ok(PlanGpu {
        index: g.index,
        instances: &g.instances,
        profiles,
    })
}

/// The injective mapping plan GPU → live GPU with the least total cost;
/// the first found in lexicographic order among equals.
fn best_mapping(costs: &[Vec<(usize, usize)>], live: usize) -> Vec<usize> {
    fn go(
        costs: &[Vec<(usize, usize)>],
        live: usize,
        used: &mut Vec<bool>,
        cur: &mut Vec<usize>,
        sum: (usize, usize),
        best: &mut Option<((usize, usize), Vec<usize>)>,
    ) {
        // Costs only grow, so a partial sum at or above the best cannot end
        // below it.
        if best.as_ref().is_some_and(|(b, _)| sum >= *b) {
            return;
        }
        let p = cur.len();
        if p == costs.len() {
            *best = Some((sum, cur.clone()));
            return;
        }
        for l in 0..live {
            if used[l] {
                continue;
            }
            used[l] = true;
            cur.push(l);
            let c = costs[p][l];
            go(costs, live, used, cur, (sum.0 + c.0, sum.1 + c.1), best);
            cur.pop();
            used[l] = false;
        }
    }
    let mut best = None;
    go(
        costs,
        live,
        &mut vec![false; live],
        &mut Vec::new(),
        (0, 0),
        &mut best,
    );
    best.map(|(_, m)| m).unwrap_or_default()
}

/// The placement of one plan GPU on one live GPU that keeps the most live
/// instances.
fn best_fit(
    model: &'static GpuModel,
    live: &[LiveInstance],
    plan: &PlanGpu,
    placer: &mut Placer,
) -> Fit {
    // Live instances that could be kept at all: a profile the plan has, at a
    // start the profile allows, on slots the GPU has.
    let live_profiles: Vec<Option<&'static Profile>> = live
        .iter()
        .map(|x| {
            model
                .profile(&x.profile)
                .filter(|p| p.allows_start(x.start))
                .filter(|p| plan.profiles.iter().any(|q| q.name == p.name))
        })
        .collect();
    // The plan's own placement keeps what already sits where the plan put it.
    let own: Vec<(usize, usize)> = live
        .iter()
        .enumerate()
        .filter_map(|(i, x)| {
            let p = live_profiles[i]?;
            plan.instances
                .iter()
                .zip(&plan.profiles)
                .position(|(t, q)| t.start == x.start && q.name == p.name)
                .map(|j| (i, j))
        })
        .collect();
    let own_fit = Fit {
        kept: own,
        starts: plan.instances.iter().map(|t| t.start).collect(),
    };
    let candidates: Vec<usize> = (0..live.len())
        .filter(|&i| live_profiles[i].is_some())
        .collect();
    // A GPU the driver reports holds at most 8 instances (one per memory
    // slot); a longer list is not a layout, and only the plan's own
    // placement is tried on it.
    if candidates.len() > MAX_SEARCHED {
        return own_fit;
    }
    // Larger kept sets first; within a size, ascending masks.
    let n = candidates.len();
    let mut masks: Vec<u32> = (0..1u32 << n).collect();
    masks.sort_by_key(|m| (std::cmp::Reverse(m.count_ones()), *m));
    for mask in masks {
        let k = mask.count_ones() as usize;
        if k <= own_fit.kept.len() {
            return own_fit;
        }
        let kept: Vec<usize> = (0..n)
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| candidates[b])
            .collect();
        if let Some(fit) = fit_with(model, live, &live_profiles, &kept, plan, placer) {
            return fit;
        }
    }
    own_fit
}

/// The plan placed around the live instances `kept` (kept where they are),
/// if it fits.
fn fit_with(
    model: &'static GpuModel,
    live: &[LiveInstance],
    live_profiles: &[Option<&'static Profile>],
    kept: &[usize],
    plan: &PlanGpu,
    placer: &mut Placer,
) -> Option<Fit> {
    let mut used = 0u32;
    let mut taken = vec![false; plan.instances.len()];
    let mut pairs = Vec::with_capacity(kept.len());
    for &i in kept {
        let p = live_profiles[i].expect("candidates have profiles");
        let m = layout::mask(live[i].start, p.memory_slices);
        if used & m != 0 {
            return None;
        }
        used |= m;
        // A plan instance of the same profile: the one at this start if any,
        // else the first free one.
        let same = |j: &usize| !taken[*j] && plan.profiles[*j].name == p.name;
        let j = (0..plan.instances.len())
            .filter(same)
            .find(|&j| plan.instances[j].start == live[i].start)
            .or_else(|| (0..plan.instances.len()).find(same))?;
        taken[j] = true;
        pairs.push((i, j));
    }
    let mut rest: Vec<usize> = (0..plan.instances.len()).filter(|&j| !taken[j]).collect();
    rest.sort_by(|&a, &b| {
        let (pa, pb) = (plan.profiles[a], plan.profiles[b]);
        (pb.memory_slices, pb.compute_slices)
            .cmp(&(pa.memory_slices, pa.compute_slices))
            .then_with(|| pa.name.cmp(pb.name))
            .then(a.cmp(&b))
    });
    let order: Vec<&'static Profile> = rest.iter().map(|&j| plan.profiles[j]).collect();
    let starts = placer.place(model, used, &order)?;
    let mut all = vec![0u8; plan.instances.len()];
    for &(i, j) in &pairs {
        all[j] = live[i].start;
    }
    for (&j, s) in rest.iter().zip(starts) {
        all[j] = s;
    }
    pairs.sort_unstable();
    Some(Fit {
        kept: pairs,
        starts: all,
    })
}

/// Most keepable live instances on one GPU whose subsets are searched.
const MAX_SEARCHED: usize = 12;

/// Start slots for profiles (sorted largest first) around the slots `used`,
/// by the placement rules; memoised, since plan GPUs repeat and many kept
/// sets leave the same free slots.
#[derive(Default)]
struct Placer {
    memo: HashMap<PlaceKey, Option<Vec<u8>>>,
}

/// GPU model id, slots taken, profile names in placement order.
type PlaceKey = (&'static str, u32, Vec<&'static str>);

impl Placer {
    fn place(
        &mut self,
        model: &'static GpuModel,
        used: u32,
        order: &[&'static Profile],
    ) -> Option<Vec<u8>> {
        let key = (model.id, used, order.iter().map(|p| p.name).collect());
        self.memo
            .entry(key)
            .or_insert_with(|| {
                let mut starts = Vec::with_capacity(order.len());
                let mut used = used;
                layout::search(order, &mut used, &mut starts).then_some(starts)
            })
            .clone()
    }
}

fn steps_for(model: &'static GpuModel, live: &LiveGpu, plan: &PlanGpu, fit: &Fit) -> GpuSteps {
    let kept_live: Vec<usize> = fit.kept.iter().map(|&(i, _)| i).collect();
    let kept_plan: Vec<usize> = fit.kept.iter().map(|&(_, j)| j).collect();
    let keep = sorted(
        kept_live
            .iter()
            .map(|&i| live.instances[i].clone())
            .collect(),
    );
    let destroy = sorted(
        (0..live.instances.len())
            .filter(|i| !kept_live.contains(i))
            .map(|i| live.instances[i].clone())
            .collect(),
    );
    let at = |j: usize| TargetInstance {
        profile: plan.profiles[j].name.to_string(),
        start: fit.starts[j],
        ..plan.instances[j].clone()
    };
    let mut create: Vec<usize> = (0..plan.instances.len())
        .filter(|j| !kept_plan.contains(j))
        .collect();
    create.sort_by(|&a, &b| {
        let (pa, pb) = (plan.profiles[a], plan.profiles[b]);
        (pb.memory_slices, pb.compute_slices)
            .cmp(&(pa.memory_slices, pa.compute_slices))
            .then(fit.starts[a].cmp(&fit.starts[b]))
    });
    let mut target: Vec<TargetInstance> = (0..plan.instances.len()).map(at).collect();
    target.sort_by_key(|t| t.start);
    debug_assert!(
        layout::validate(
            model,
            &target
                .iter()
                .map(|t| Instance {
                    profile: t.profile.clone(),
                    start: t.start
                })
                .collect::<Vec<_>>()
        )
        .is_ok(),
        "the chosen layout follows the placement rules"
    );
    GpuSteps {
        gpu: live.index,
        plan_gpu: Some(plan.index),
        keep,
        destroy,
        create: create.into_iter().map(at).collect(),
        target,
    }
}

/// Carries out one GPU's steps: destroys every instance in `destroy`, then
/// creates `create` in its order (largest first). With everything destroyed
/// before anything is created, each create finds its slots free. Stops at the
/// first error and returns it; what was done stays done (read
/// [`MigControl::gpus`] to see where it stopped).
pub fn apply_gpu(
    control: &mut dyn MigControl,
    steps: &GpuSteps,
) -> Result<Vec<LiveInstance>, MigError> {
    for x in &steps.destroy {
        control.destroy(steps.gpu, x.gi_id)?;
    }
    let mut created = Vec::with_capacity(steps.create.len());
    for c in &steps.create {
        created.push(control.create(steps.gpu, &c.profile, c.start)?);
    }
    Ok(created)
}

/// Slot map of live instances; instances whose profile the model lacks are
/// left out (they cannot be drawn on its slots).
fn live_map(model: &GpuModel, instances: &[LiveInstance]) -> String {
    let placed: Vec<Placed> = instances
        .iter()
        .filter_map(|x| {
            model.profile(&x.profile).map(|profile| Placed {
                profile,
                start: x.start,
            })
        })
        .collect();
    layout::slot_map(model, &placed)
}

fn target_map(model: &GpuModel, instances: &[TargetInstance]) -> String {
    let placed: Vec<Placed> = instances
        .iter()
        .filter_map(|t| {
            model.profile(&t.profile).map(|profile| Placed {
                profile,
                start: t.start,
            })
        })
        .collect();
    layout::slot_map(model, &placed)
}

impl fmt::Display for Reshape {
    /// The dry run: per live GPU its slot map before and after, what stays,
    /// then the numbered steps in the order [`apply_gpu`] takes them, and a
    /// summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let model = gpu_model(&self.gpu_model);
        let map_live = |v: &[LiveInstance]| model.map_or_else(String::new, |m| live_map(m, v));
        let map_target =
            |v: &[TargetInstance]| model.map_or_else(String::new, |m| target_map(m, v));
        let mut n = 0;
        for g in &self.gpus {
            let before: Vec<LiveInstance> = g.keep.iter().chain(&g.destroy).cloned().collect();
            match g.plan_gpu {
                None => {
                    writeln!(f, "GPU {}: not in the plan, left as it is", g.gpu)?;
                    writeln!(f, "  now:    {}", map_live(&before))?;
                    continue;
                }
                Some(p) => writeln!(f, "GPU {} <- plan GPU {p}", g.gpu)?,
            }
            writeln!(f, "  before: {}", map_live(&before))?;
            writeln!(f, "  after:  {}", map_target(&g.target))?;
            for k in &g.keep {
                match g.target_of(k) {
                    Some(t) => writeln!(f, "  keep {k} for {} #{}", t.model, t.replica)?,
                    None => writeln!(f, "  keep {k}")?,
                }
            }
            for d in &g.destroy {
                n += 1;
                writeln!(f, "  {n}. destroy {d}")?;
            }
            for c in &g.create {
                n += 1;
                writeln!(
                    f,
                    "  {n}. create GPU {} {} @{} for {} #{}",
                    g.gpu, c.profile, c.start, c.model, c.replica
                )?;
            }
        }
        write!(
            f,
            "{} kept, {} destroyed, {} created",
            self.kept(),
            self.destroyed(),
            self.created()
        )?;
        let outside: Vec<String> = self
            .gpus
            .iter()
            .filter(|g| g.plan_gpu.is_none())
            .map(|g| g.gpu.to_string())
            .collect();
        if !outside.is_empty() {
            write!(
                f,
                "; GPU{} {} outside the plan ({} instance{} left as they are)",
                if outside.len() == 1 { "" } else { "s" },
                outside.join(", "),
                self.untouched(),
                if self.untouched() == 1 { "" } else { "s" },
            )?;
        }
        writeln!(f)
    }
}
