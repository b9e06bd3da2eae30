//! The order in which waiting requests get a worker: priority class first,
//! then fairly across tenants by tokens (deficit round robin: each turn a
//! tenant may start requests worth up to its deficit, so one tenant's 200
//! waiting streams cost another's single request one turn, not 200), then,
//! within a tenant, the earliest deadline first.
//!
//! Pure data: no clock, no lock; [`super::ModelQueue`] holds it under its lock.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::tenancy::file::Priority;

/// The classes, from first served to first shed.
pub const CLASSES: [Priority; 3] = [Priority::Critical, Priority::Standard, Priority::Sheddable];

/// Tokens a tenant's deficit grows by at each turn it cannot afford its
/// next request: less than one request (a prompt and its answer), so a
/// turn starts at most one request of the usual size.
pub const QUANTUM: u64 = 64;

fn class_index(p: Priority) -> usize {
    match p {
        Priority::Critical => 0,
        Priority::Standard => 1,
        Priority::Sheddable => 2,
    }
}

/// A waiting entry's identity, to take it out when it gives up.
pub type Id = u64;

#[derive(Debug)]
struct Entry<T> {
    id: Id,
    cost: u64,
    deadline: Option<Instant>,
    item: T,
}

#[derive(Debug)]
struct TenantQueue<T> {
    deficit: u64,
    /// Ordered by deadline (none last), then arrival.
    entries: Vec<Entry<T>>,
}

#[derive(Debug)]
struct Class<T> {
    tenants: BTreeMap<String, TenantQueue<T>>,
    /// Tenants with something waiting, in turn order.
    ring: VecDeque<String>,
    len: usize,
}

impl<T> Default for Class<T> {
    fn default() -> Self {
        Class {
            tenants: BTreeMap::new(),
            ring: VecDeque::new(),
            len: 0,
        }
    }
}

/// The waiting requests of one model.
#[derive(Debug)]
pub struct Waiting<T> {
    classes: [Class<T>; 3],
    next_id: Id,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting {
            classes: Default::default(),
            next_id: 0,
        }
    }
}

impl<T> Waiting<T> {
    pub fn len(&self) -> usize {
        self.classes.iter().map(|c| c.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests waiting in one class.
    pub fn len_of(&self, priority: Priority) -> usize {
        self.classes[class_index(priority)].len
    }

    /// Adds a request; `cost` is its tokens (prompt estimate plus what it
    /// may generate).
    pub fn push(
        &mut self,
        priority: Priority,
        tenant: &str,
        cost: u64,
        deadline: Option<Instant>,
        item: T,
    ) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        let class = &mut self.classes[class_index(priority)];
        let queue = class
            .tenants
            .entry(tenant.to_string())
            .or_insert_with(|| TenantQueue {
                deficit: 0,
                entries: Vec::new(),
            });
        if queue.entries.is_empty() {
            class.ring.push_back(tenant.to_string());
        }
        // Earliest deadline first; a request without one after those with
        // one; ties keep arrival order.
        let key = |e: &Entry<T>| (e.deadline.is_none(), e.deadline);
        let new_key = (deadline.is_none(), deadline);
        let at = queue.entries.partition_point(|e| key(e) <= new_key);
        queue.entries.insert(
            at,
            Entry {
                id,
                cost,
                deadline,
                item,
            },
        );
        class.len += 1;
        id
    }

    /// The next request to start: the first class with anything waiting,
    /// its tenants in deficit round robin by tokens.
    pub fn pop(&mut self) -> Option<T> {
        self.pop_eligible(|_| true)
    }

    /// [`Waiting::pop`] among the tenants `eligible` lets start one more
    /// (the others keep their place and their credit).
    pub fn pop_eligible(&mut self, eligible: impl Fn(&str) -> bool) -> Option<T> {
        let class = self
            .classes
            .iter_mut()
            .find(|c| c.len > 0 && c.ring.iter().any(|t| eligible(t)))?;
        let candidates = class.ring.iter().filter(|t| eligible(t)).count();
        loop {
            let tenant = class.ring.front()?.clone();
            if !eligible(&tenant) {
                class.ring.rotate_left(1);
                continue;
            }
            let queue = class.tenants.get_mut(&tenant)?;
            let cost = queue.entries[0].cost;
            if queue.deficit >= cost {
                queue.deficit -= cost;
                let entry = queue.entries.remove(0);
                class.len -= 1;
                if queue.entries.is_empty() {
                    // A tenant keeps no credit while it has nothing waiting.
                    class.tenants.remove(&tenant);
                    class.ring.pop_front();
                }
                return Some(entry.item);
            }
            // Not enough for its next request: credit for its next turn.
            // The only candidate need not wait for turns.
            if candidates == 1 {
                queue.deficit = cost;
                continue;
            }
            // Rounds in which no tenant could start anything are skipped
            // in one step, so a pop costs one pass over the tenants.
            let rounds = class
                .ring
                .iter()
                .filter(|t| eligible(t))
                .filter_map(|t| class.tenants.get(t))
                .map(|q| {
                    q.entries[0]
                        .cost
                        .saturating_sub(q.deficit)
                        .div_ceil(QUANTUM)
                })
                .min()
                .unwrap_or(1);
            if rounds > 1 {
                for t in &class.ring {
                    if !eligible(t) {
                        continue;
                    }
                    if let Some(q) = class.tenants.get_mut(t) {
                        q.deficit += (rounds - 1) * QUANTUM;
                    }
                }
            }
            let queue = class.tenants.get_mut(&tenant)?;
            queue.deficit += QUANTUM;
            class.ring.rotate_left(1);
        }
    }

    /// Takes out a request that gave up waiting.
    pub fn remove(&mut self, priority: Priority, tenant: &str, id: Id) -> Option<T> {
        let class = &mut self.classes[class_index(priority)];
        let queue = class.tenants.get_mut(tenant)?;
        let at = queue.entries.iter().position(|e| e.id == id)?;
        let entry = queue.entries.remove(at);
        class.len -= 1;
        if queue.entries.is_empty() {
            class.tenants.remove(tenant);
            class.ring.retain(|t| t != tenant);
        }
        Some(entry.item)
    }

    /// The newest request of the lowest class below `above` that has any,
    /// taken out to make room for a more important one.
    pub fn evict_below(&mut self, above: Priority) -> Option<(Priority, T)> {
        for priority in CLASSES.iter().rev() {
            if class_index(*priority) <= class_index(above) {
                return None;
            }
            let class = &mut self.classes[class_index(*priority)];
            // The tenant with the most waiting gives one up: its latest.
            let Some(tenant) = class
                .tenants
                .iter()
                .max_by_key(|(_, q)| q.entries.len())
                .map(|(t, _)| t.clone())
            else {
                continue;
            };
            let queue = class.tenants.get_mut(&tenant)?;
            let entry = queue.entries.pop()?;
            class.len -= 1;
            if queue.entries.is_empty() {
                class.tenants.remove(&tenant);
                class.ring.retain(|t| *t != tenant);
            }
            return Some((*priority, entry.item));
        }
        None
    }

    /// How many requests would start before a new one of `tenant` in
    /// `priority`: all of the classes above, and in its own class about one
    /// per waiting tenant for each request `tenant` already has waiting
    /// (round robin), at most the whole class.
    pub fn ahead_of(&self, priority: Priority, tenant: &str) -> usize {
        let index = class_index(priority);
        let above: usize = self.classes[..index].iter().map(|c| c.len).sum();
        let class = &self.classes[index];
        let own = class.tenants.get(tenant).map_or(0, |q| q.entries.len());
        let rounds = own + 1;
        let others: usize = class
            .tenants
            .iter()
            .filter(|(t, _)| t.as_str() != tenant)
            .map(|(_, q)| q.entries.len().min(rounds))
            .sum();
        above + own + others
    }

    /// Items whose deadline has passed, taken out.
    pub fn expired(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        for class in &mut self.classes {
            let mut emptied = Vec::new();
            for (tenant, queue) in class.tenants.iter_mut() {
                let before = queue.entries.len();
                let mut kept = Vec::with_capacity(before);
                for e in queue.entries.drain(..) {
                    if e.deadline.is_some_and(|d| d <= now) {
                        out.push(e.item);
                    } else {
                        kept.push(e);
                    }
                }
                queue.entries = kept;
                class.len -= before - queue.entries.len();
                if queue.entries.is_empty() {
                    emptied.push(tenant.clone());
                }
            }
            for tenant in emptied {
                class.tenants.remove(&tenant);
                class.ring.retain(|t| *t != tenant);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_tenants_crowd_does_not_starve_another() {
        let mut w = Waiting::default();
        for i in 0..200 {
            w.push(Priority::Standard, "a", 64, None, format!("a{i}"));
        }
        w.push(Priority::Standard, "b", 64, None, "b0".to_string());
        // One turn of `a` is a quantum's worth: one request of 64 tokens.
        let first: Vec<String> = (0..3).map(|_| w.pop().unwrap()).collect();
        assert!(first.contains(&"b0".to_string()), "{first:?}");
        assert_eq!(w.len(), 198);
        assert_eq!(w.ahead_of(Priority::Standard, "c"), 1);
    }

    #[test]
    fn fairness_is_by_tokens_not_by_requests() {
        let mut w = Waiting::default();
        // a asks for 1024 tokens a request, b for 64: over a long run b
        // starts about 16 requests for each of a's.
        for i in 0..50 {
            w.push(Priority::Standard, "a", 1024, None, ('a', i));
            w.push(Priority::Standard, "b", 64, None, ('b', i));
        }
        let order: Vec<(char, i32)> = (0..34).map(|_| w.pop().unwrap()).collect();
        let a = order.iter().filter(|(t, _)| *t == 'a').count();
        let b = order.len() - a;
        assert!((1..=3).contains(&a), "a started {a}, b {b}: {order:?}");
    }

    #[test]
    fn classes_go_in_order_and_the_lowest_is_evicted_first() {
        let mut w = Waiting::default();
        w.push(Priority::Sheddable, "s", 10, None, "s");
        w.push(Priority::Standard, "n", 10, None, "n");
        w.push(Priority::Critical, "c", 10, None, "c");
        assert_eq!(w.ahead_of(Priority::Critical, "x"), 1);
        assert_eq!(w.ahead_of(Priority::Sheddable, "x"), 3);
        assert_eq!(w.evict_below(Priority::Sheddable), None);
        assert_eq!(
            w.evict_below(Priority::Standard),
            Some((Priority::Sheddable, "s"))
        );
        assert_eq!(w.evict_below(Priority::Standard), None);
        assert_eq!(w.pop(), Some("c"));
        assert_eq!(w.pop(), Some("n"));
        assert_eq!(w.pop(), None);
        assert!(w.is_empty());
    }

    #[test]
    fn a_tenant_at_its_share_waits_while_another_starts() {
        let mut w = Waiting::default();
        w.push(Priority::Critical, "busy", 10, None, "busy");
        w.push(Priority::Standard, "idle", 10, None, "idle");
        // `busy` may not start more: the next class's tenant goes first.
        assert_eq!(w.pop_eligible(|t| t != "busy"), Some("idle"));
        assert_eq!(w.pop_eligible(|t| t != "busy"), None);
        assert_eq!(w.pop(), Some("busy"));
    }

    #[test]
    fn within_a_tenant_the_earliest_deadline_goes_first() {
        let now = Instant::now();
        let mut w = Waiting::default();
        w.push(Priority::Standard, "a", 1, None, "none");
        w.push(
            Priority::Standard,
            "a",
            1,
            Some(now + Duration::from_secs(9)),
            "late",
        );
        let id = w.push(
            Priority::Standard,
            "a",
            1,
            Some(now + Duration::from_secs(1)),
            "soon",
        );
        w.push(
            Priority::Standard,
            "a",
            1,
            Some(now + Duration::from_secs(5)),
            "mid",
        );
        assert_eq!(w.remove(Priority::Standard, "a", id), Some("soon"));
        assert_eq!(w.remove(Priority::Standard, "a", id), None);
        assert_eq!(w.expired(now + Duration::from_secs(6)), vec!["mid"]);
        assert_eq!(w.pop(), Some("late"));
        assert_eq!(w.pop(), Some("none"));
        assert_eq!(w.len_of(Priority::Standard), 0);
    }
}
