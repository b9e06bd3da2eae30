//! Packing replicas onto the fewest GPUs: the search behind
//! [`crate::planner::plan`].
//!
//! A replica may take any candidate profile whose memory holds its need, so
//! replicas fall into memory classes: class `k` is the replicas whose smallest
//! fitting profile has the `k`-th smallest memory, and a replica of class `k`
//! fits exactly the slices of class `k` or above. Since those sets are nested,
//! a GPU's slices serve as much as they can when each slice, largest first,
//! takes a replica of the highest class it holds (an exchange argument: any
//! other matching can be swapped into this one without changing the slices).
//!
//! **Throughput targets.** A replica with a tokens/s target fits only the
//! profiles that hold its need *and* decode fast enough, so its fitting set
//! is no longer a memory up-set: a fast-but-small replica skips `3g.40gb`
//! for `4g.40gb` of the same memory. The argument above needs only that the
//! fitting sets are nested, so the classes are cut from the chain they form
//! (with every memory up-set nested with all of them, which keeps the memory
//! classes where no target splits them): level `k` is the candidates of the
//! `k`-th set that the next lacks. With modelled rates, which grow with
//! compute slices as memory does in every catalog table, the sets are always
//! nested. Measured rates can break that (a `3g` measured faster than a
//! `4g`); such a mix is packed first-fit and says so ([`Fallback::Unordered`]).
//!
//! **Exact search.** Every multiset of candidate profiles that has a placement
//! on one GPU (the catalog's start slots, counts and the one-`+me` rule, via
//! [`layout::place_profiles`]) is enumerated once; subsets of a placeable set
//! are placeable, so the enumeration stops extending a set as soon as it does
//! not place. Each set is reduced to its slices per class (the least memory
//! one among sets with the same slices per class). A dynamic
//! programme over the replicas still to place (one count per class) then
//! chooses one GPU configuration at a time and keeps, per state, the fewest
//! GPUs and then the least slice memory (the needs are fixed, so that is the
//! least idle memory inside slices). Configurations with a slice that would
//! serve nobody are skipped: the same set without that slice is also in the
//! list and costs less. The fewest distinct profiles is found by re-running
//! the programme on subsets of the candidates, smallest first, until one
//! reaches the same GPUs and memory; memoisation makes each run cost at most
//! states x configurations.
//!
//! **Fallback.** The state count is the product over classes of
//! `replicas + 1`. Beyond [`EXACT_STATES`] the planner packs first-fit
//! decreasing on each replica's smallest profile and reports a lower bound
//! (memory slots, compute slices, and per class the slices of that class or
//! above one GPU can hold), so the plan states how far it may be from optimal.

use std::collections::HashSet;

use crate::catalog::{GpuModel, Profile};
use crate::layout;

/// The largest search the exact programme runs: the product over memory
/// classes of `replicas + 1`. 20 000 covers, for example, 140 replicas of one
/// class, 4 classes of 10 replicas each, or 5 classes of 6.
pub const EXACT_STATES: usize = 20_000;

/// A GPU's replicas: `(item, candidate profile index)`.
type Bin = Vec<(usize, usize)>;

/// Why the exact search did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// More states than [`EXACT_STATES`].
    TooLarge,
    /// Throughput targets (or measured rates) gave replicas sets of fitting
    /// profiles that are not nested, so no order of classes exists.
    Unordered,
}

/// Where each replica goes.
pub(crate) struct Packed {
    /// Per GPU, `(item, candidate profile index)`.
    pub bins: Vec<Vec<(usize, usize)>>,
    /// `None` when the exact search ran.
    pub fallback: Option<Fallback>,
    /// No plan uses fewer GPUs (equal to the GPUs used when exact).
    pub lower_bound: u32,
}

/// The candidates an item may take, as bits over `cands` (bit `i` for
/// `cands[i]`).
pub(crate) type Fits = u32;

/// Packs items onto GPUs of `gpu` using only `cands` (sorted smallest
/// first); item `i` may take the candidates in `fits[i]` (never empty).
pub(crate) fn pack(gpu: &GpuModel, cands: &[&'static Profile], fits: &[Fits]) -> Packed {
    assert!(cands.len() < 32, "a profile set fits a u32 mask");
    if fits.is_empty() {
        return Packed {
            bins: Vec::new(),
            fallback: None,
            lower_bound: 0,
        };
    }
    let configs = enumerate(gpu, cands);
    let sets = up_sets(cands, fits);
    let Some(levels) = Levels::new(cands, fits, &sets) else {
        return Packed {
            bins: first_fit(cands, fits, &configs),
            fallback: Some(Fallback::Unordered),
            lower_bound: lower_bound(gpu, cands, fits, &sets, &configs),
        };
    };
    let mut counts = vec![0u32; levels.count];
    for &c in &levels.class {
        counts[c] += 1;
    }
    let states = counts
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n as usize + 1));
    if states.is_some_and(|s| s <= EXACT_STATES) {
        let memory_of: Vec<u64> = cands.iter().map(|p| p.memory_bytes()).collect();
        let space = Space {
            counts: &counts,
            levels: levels.count,
            memory_of: &memory_of,
            level_of: &levels.level_of,
            configs: &configs,
        };
        let (gpus, per_gpu) = space.best();
        return Packed {
            bins: assign(
                &per_gpu.iter().map(|&i| &configs[i]).collect::<Vec<_>>(),
                cands,
                &levels.level_of,
                &levels.class,
            ),
            fallback: None,
            lower_bound: gpus,
        };
    }
    Packed {
        bins: first_fit(cands, fits, &configs),
        fallback: Some(Fallback::TooLarge),
        lower_bound: lower_bound(gpu, cands, fits, &sets, &configs),
    }
}

/// The candidate sets the classes are cut from: each item's fitting set,
/// and the memory up-sets (the candidates with at least a given memory)
/// that are nested with every one of those. Without throughput targets the
/// fitting sets are memory up-sets, and the classes are the memory classes.
fn up_sets(cands: &[&'static Profile], fits: &[Fits]) -> Vec<Fits> {
    let mut items: Vec<Fits> = fits.to_vec();
    items.sort_unstable();
    items.dedup();
    let nested = |a: Fits, b: Fits| a & b == a || a & b == b;
    let mut sets = items.clone();
    for p in cands {
        let up = cands
            .iter()
            .enumerate()
            .filter(|(_, q)| q.memory_bytes() >= p.memory_bytes())
            .fold(0, |m, (i, _)| m | 1 << i);
        if items.iter().all(|&f| nested(f, up)) {
            sets.push(up);
        }
    }
    sets.sort_unstable();
    sets.dedup();
    sets
}

/// Classes as a chain: level `k` holds the candidates of the `k`-th set
/// (largest first) that the next one lacks, and an item of class `k` fits
/// exactly the candidates of level `k` or above.
struct Levels {
    count: usize,
    level_of: Vec<usize>,
    class: Vec<usize>,
}

impl Levels {
    /// `None` if the sets are not nested.
    fn new(cands: &[&'static Profile], fits: &[Fits], sets: &[Fits]) -> Option<Levels> {
        let mut chain: Vec<Fits> = sets.to_vec();
        chain.sort_by_key(|s| std::cmp::Reverse(s.count_ones()));
        if chain.windows(2).any(|w| w[1] & !w[0] != 0 || w[0] == w[1]) {
            return None;
        }
        let level_of = (0..cands.len())
            .map(|c| chain.iter().rposition(|s| s & (1 << c) != 0).unwrap_or(0))
            .collect();
        let class = fits
            .iter()
            .map(|f| {
                chain
                    .iter()
                    .position(|s| s == f)
                    .expect("every fitting set is in the chain")
            })
            .collect();
        Some(Levels {
            count: chain.len(),
            level_of,
            class,
        })
    }
}

/// Every multiset of candidates (counts per candidate) that one GPU can hold.
fn enumerate(gpu: &GpuModel, cands: &[&'static Profile]) -> Vec<Vec<u8>> {
    fn rec(
        gpu: &GpuModel,
        cands: &[&'static Profile],
        from: usize,
        counts: &mut Vec<u8>,
        out: &mut Vec<Vec<u8>>,
    ) {
        for i in from..cands.len() {
            counts[i] += 1;
            if placeable(gpu, cands, counts) {
                out.push(counts.clone());
                rec(gpu, cands, i, counts, out);
            }
            counts[i] -= 1;
        }
    }
    let mut out = Vec::new();
    rec(gpu, cands, 0, &mut vec![0; cands.len()], &mut out);
    out
}

fn profiles_of(cands: &[&'static Profile], counts: &[u8]) -> Vec<&'static Profile> {
    counts
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| std::iter::repeat_n(cands[i], usize::from(n)))
        .collect()
}

fn placeable(gpu: &GpuModel, cands: &[&'static Profile], counts: &[u8]) -> bool {
    layout::place_profiles(gpu, &profiles_of(cands, counts)).is_ok()
}

struct Space<'a> {
    counts: &'a [u32],
    /// Number of classes.
    levels: usize,
    /// Per candidate, its memory.
    memory_of: &'a [u64],
    level_of: &'a [usize],
    configs: &'a [Vec<u8>],
}

/// One GPU configuration as the programme sees it.
struct Config {
    /// Index into the enumerated profile multisets.
    index: usize,
    /// Slices per memory class.
    slices: Vec<u8>,
    memory: u64,
}

impl Space<'_> {
    /// The best plan: GPUs, and per GPU the index of its profile multiset.
    fn best(&self) -> (u32, Vec<usize>) {
        let p = self.level_of.len();
        let all = (1u32 << p) - 1;
        let (target, per_gpu) = self.solve(all);
        // Fewest distinct profiles: the smallest subset reaching the same
        // GPUs and memory, subsets of equal size in candidate order.
        let mut masks: Vec<u32> = (1..all).collect();
        masks.sort_by_key(|m| {
            (
                m.count_ones(),
                (0..p).filter(|i| m & (1 << i) != 0).collect::<Vec<_>>(),
            )
        });
        let top = self.counts.iter().rposition(|&n| n > 0).unwrap_or(0);
        for mask in masks {
            if mask.count_ones() >= all.count_ones() {
                break;
            }
            // The largest class needs a slice of its class or above.
            if !(0..p).any(|i| mask & (1 << i) != 0 && self.level_of[i] >= top) {
                continue;
            }
            let got = self.solve(mask);
            if got.0 == target {
                return (target.0, got.1);
            }
        }
        (target.0, per_gpu)
    }

    /// Fewest GPUs, then least slice memory, with the candidates in `mask`.
    /// `((u32::MAX, _), _)` if they cannot hold every replica.
    fn solve(&self, mask: u32) -> ((u32, u64), Vec<usize>) {
        let nl = self.levels;
        // Per slices-per-class vector, the configuration with the least
        // memory (the first enumerated among equals).
        let mut seen: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut configs: Vec<Config> = Vec::new();
        for (index, c) in self.configs.iter().enumerate() {
            if c.iter()
                .enumerate()
                .any(|(i, &n)| n > 0 && mask & (1 << i) == 0)
            {
                continue;
            }
            let mut slices = vec![0u8; nl];
            let mut memory = 0;
            for (i, &n) in c.iter().enumerate() {
                slices[self.level_of[i]] += n;
                memory += u64::from(n) * self.memory_of[i];
            }
            match seen.get(&slices) {
                Some(&k) if configs[k].memory <= memory => {}
                Some(&k) => {
                    configs[k] = Config {
                        index,
                        slices,
                        memory,
                    }
                }
                None => {
                    seen.insert(slices.clone(), configs.len());
                    configs.push(Config {
                        index,
                        slices,
                        memory,
                    });
                }
            }
        }
        // Among equal plans the programme keeps the first configuration it
        // tries: the fullest first, so GPUs fill in order.
        configs.sort_by(|a, b| {
            (b.memory, b.slices.iter().rev().collect::<Vec<_>>())
                .cmp(&(a.memory, a.slices.iter().rev().collect::<Vec<_>>()))
                .then(a.index.cmp(&b.index))
        });
        let radix: Vec<usize> = self.counts.iter().map(|&n| n as usize + 1).collect();
        let size: usize = radix.iter().product();
        let mut memo: Vec<Option<(u32, u64, u32)>> = vec![None; size];
        memo[0] = Some((0, 0, u32::MAX));
        let encode = |r: &[u32]| {
            r.iter()
                .zip(&radix)
                .rev()
                .fold(0usize, |acc, (&n, &b)| acc * b + n as usize)
        };
        let start: Vec<u32> = self.counts.to_vec();
        self.dp(&start, &configs, &mut memo, &encode);
        let best = memo[encode(&start)].unwrap();
        if best.0 == u32::MAX {
            return ((u32::MAX, u64::MAX), Vec::new());
        }
        let mut per_gpu = Vec::new();
        let mut r = start;
        while r.iter().any(|&n| n > 0) {
            let (_, _, choice) = memo[encode(&r)].unwrap();
            let c = &configs[choice as usize];
            per_gpu.push(c.index);
            r = serve(&c.slices, &r).expect("the memo's choice serves");
        }
        ((best.0, best.1), per_gpu)
    }

    fn dp(
        &self,
        r: &[u32],
        configs: &[Config],
        memo: &mut Vec<Option<(u32, u64, u32)>>,
        encode: &dyn Fn(&[u32]) -> usize,
    ) -> (u32, u64) {
        let key = encode(r);
        if let Some((g, m, _)) = memo[key] {
            return (g, m);
        }
        let mut best = (u32::MAX, u64::MAX, u32::MAX);
        for (k, c) in configs.iter().enumerate() {
            let Some(next) = serve(&c.slices, r) else {
                continue;
            };
            let (g, m) = self.dp(&next, configs, memo, encode);
            if g == u32::MAX {
                continue;
            }
            let cand = (g + 1, m + c.memory);
            if cand < (best.0, best.1) {
                best = (cand.0, cand.1, k as u32);
            }
        }
        memo[key] = Some(best);
        (best.0, best.1)
    }
}

/// The replicas left after one GPU with `slices` (per class) serves `r`,
/// each slice largest first taking the highest class it holds; `None` if a
/// slice would serve nobody.
fn serve(slices: &[u8], r: &[u32]) -> Option<Vec<u32>> {
    let mut left = r.to_vec();
    for level in (0..slices.len()).rev() {
        for _ in 0..slices[level] {
            let c = (0..=level).rev().find(|&c| left[c] > 0)?;
            left[c] -= 1;
        }
    }
    Some(left)
}

/// Items onto the chosen GPUs: all slices, largest class first (then GPU,
/// then candidate order), each takes the next item of the highest class it
/// holds. GPUs are ordered largest configuration first.
fn assign(
    per_gpu: &[&Vec<u8>],
    cands: &[&'static Profile],
    level_of: &[usize],
    class: &[usize],
) -> Vec<Vec<(usize, usize)>> {
    // Each GPU as its candidates, largest first.
    let size = |c: usize| (cands[c].memory_slices, cands[c].compute_slices);
    let mut gpus: Vec<Vec<usize>> = per_gpu
        .iter()
        .map(|counts| {
            let mut v: Vec<usize> = counts
                .iter()
                .enumerate()
                .flat_map(|(i, &n)| std::iter::repeat_n(i, usize::from(n)))
                .collect();
            v.sort_by(|&a, &b| size(b).cmp(&size(a)).then(a.cmp(&b)));
            v
        })
        .collect();
    gpus.sort_by(|a, b| {
        let ka: Vec<_> = a.iter().map(|&c| (size(c), std::cmp::Reverse(c))).collect();
        let kb: Vec<_> = b.iter().map(|&c| (size(c), std::cmp::Reverse(c))).collect();
        kb.cmp(&ka)
    });
    let mut slices: Vec<(usize, usize, usize)> = gpus
        .iter()
        .enumerate()
        .flat_map(|(g, v)| v.iter().map(move |&c| (level_of[c], g, c)))
        .collect();
    slices.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let levels = level_of.iter().max().map_or(0, |m| m + 1);
    let mut queues: Vec<std::collections::VecDeque<usize>> = vec![Default::default(); levels];
    for (item, &c) in class.iter().enumerate() {
        queues[c].push_back(item);
    }
    let mut bins: Vec<Vec<(usize, usize)>> = vec![Vec::new(); gpus.len()];
    for (level, g, c) in slices {
        let item = (0..=level)
            .rev()
            .find_map(|k| queues[k].pop_front())
            .expect("the search serves every slice");
        bins[g].push((item, c));
    }
    debug_assert!(queues.iter().all(|q| q.is_empty()));
    bins
}

/// First-fit decreasing on each item's smallest candidate, with placeable
/// sets looked up in the enumeration.
fn first_fit(
    cands: &[&'static Profile],
    item_fits: &[Fits],
    configs: &[Vec<u8>],
) -> Vec<Vec<(usize, usize)>> {
    let fits: HashSet<&[u8]> = configs.iter().map(Vec::as_slice).collect();
    let mut items: Vec<(usize, usize)> = item_fits
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            debug_assert!(f != 0, "every item fits some candidate");
            (i, f.trailing_zeros() as usize)
        })
        .collect();
    items.sort_by(|a, b| {
        let key = |c: usize| {
            let p = cands[c];
            (p.memory_slices, p.compute_slices, p.min_memory_mib())
        };
        key(b.1).cmp(&key(a.1)).then(a.0.cmp(&b.0))
    });
    let used: Vec<usize> = {
        let mut u: Vec<usize> = items.iter().map(|i| i.1).collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    let mut bins: Vec<(Vec<u8>, Bin)> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for &(item, c) in &items {
        let mut placed = None;
        for (k, &b) in open.iter().enumerate() {
            let mut counts = bins[b].0.clone();
            counts[c] += 1;
            if fits.contains(counts.as_slice()) {
                bins[b].0 = counts;
                bins[b].1.push((item, c));
                placed = Some(k);
                break;
            }
        }
        let k = match placed {
            Some(k) => k,
            None => {
                let mut counts = vec![0u8; cands.len()];
                counts[c] = 1;
                bins.push((counts, vec![(item, c)]));
                open.push(bins.len() - 1);
                open.len() - 1
            }
        };
        // A GPU that takes none of the profiles in use is closed for good.
        let b = open[k];
        let full = used.iter().all(|&u| {
            let mut counts = bins[b].0.clone();
            counts[u] += 1;
            !fits.contains(counts.as_slice())
        });
        if full {
            open.remove(k);
        }
    }
    bins.into_iter().map(|(_, items)| items).collect()
}

/// No plan uses fewer GPUs: the larger of the memory-slot, compute-slice and
/// per-set bounds (for each candidate set of [`up_sets`], the items that
/// fit only inside it over the most slices of it one GPU holds; with memory
/// classes, the replicas of a class or above over the slices of that class
/// or above).
fn lower_bound(
    gpu: &GpuModel,
    cands: &[&'static Profile],
    fits: &[Fits],
    sets: &[Fits],
    configs: &[Vec<u8>],
) -> u32 {
    let div = |a: u64, b: u64| a.div_ceil(b.max(1));
    let fitting = |f: Fits| {
        cands
            .iter()
            .enumerate()
            .filter(move |(i, _)| f & (1 << i) != 0)
            .map(|(_, p)| p)
    };
    let slots: u64 = fits
        .iter()
        .map(|&f| u64::from(fitting(f).map(|p| p.memory_slices).min().unwrap()))
        .sum();
    let compute: u64 = fits
        .iter()
        .map(|&f| u64::from(fitting(f).map(|p| p.compute_slices).min().unwrap()))
        .sum();
    let mut bound =
        div(slots, u64::from(gpu.memory_slices)).max(div(compute, u64::from(gpu.compute_slices)));
    for &set in sets {
        let wanted = fits.iter().filter(|&&f| f & set == f).count() as u64;
        let most = configs
            .iter()
            .map(|c| {
                c.iter()
                    .enumerate()
                    .filter(|&(i, _)| set & (1 << i) != 0)
                    .map(|(_, &n)| u64::from(n))
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0);
        if wanted > 0 {
            bound = bound.max(div(wanted, most));
        }
    }
    bound as u32
}
