//! Metric handles registered once and found again by name and label values,
//! without building a key. Every request updates a dozen series; registering
//! one with the recorder (label strings allocated, the key hashed, the
//! registry locked) cost more than the update, about a tenth of the
//! gateway's CPU per request. Label values here are low cardinality (see
//! `crate::metrics`), so the cache stays as small as the exposition.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use metrics::Label;

/// One kind of handle (counters, gauges or histograms), by name and labels.
pub(crate) struct Handles<H> {
    by_hash: RwLock<HashMap<u64, Vec<Entry<H>>>>,
}

struct Entry<H> {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    handle: H,
}

impl<H> Entry<H> {
    fn is(&self, name: &str, labels: &[(&'static str, &str)]) -> bool {
        self.name == name
            && self.labels.len() == labels.len()
            && self
                .labels
                .iter()
                .zip(labels)
                .all(|((k, v), (key, value))| k == key && v == value)
    }
}

impl<H: Clone> Handles<H> {
    pub(crate) fn new() -> Self {
        Handles {
            by_hash: RwLock::new(HashMap::new()),
        }
    }

    /// The handle of `name` with `labels`, registered by `register` the
    /// first time.
    pub(crate) fn get(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        register: impl FnOnce(Vec<Label>) -> H,
    ) -> H {
        let hash = hash_of(name, labels);
        if let Some(found) = self.read().get(&hash).and_then(|entries| {
            entries
                .iter()
                .find(|e| e.is(name, labels))
                .map(|e| e.handle.clone())
        }) {
            return found;
        }
        let mut by_hash = self.write();
        let entries = by_hash.entry(hash).or_default();
        if let Some(entry) = entries.iter().find(|e| e.is(name, labels)) {
            return entry.handle.clone();
        }
        let handle = register(
            labels
                .iter()
                .map(|(key, value)| Label::new(*key, value.to_string()))
                .collect(),
        );
        entries.push(Entry {
            name,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            handle: handle.clone(),
        });
        handle
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<u64, Vec<Entry<H>>>> {
        // Poisoned only by a panic inside a map operation: the map is
        // still whole.
        self.by_hash.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<u64, Vec<Entry<H>>>> {
        self.by_hash.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn hash_of(name: &str, labels: &[(&'static str, &str)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    for (key, value) in labels {
        key.hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_handle_is_registered_once_per_name_and_labels() {
        let handles = Handles::<String>::new();
        let registered = Cell::new(0);
        let register = |labels: Vec<Label>| {
            registered.set(registered.get() + 1);
            labels
                .iter()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let a = handles.get("x", &[("model", "m"), ("code", "OK")], register);
        assert_eq!(a, "model=m,code=OK");
        let again = handles.get("x", &[("model", "m"), ("code", "OK")], register);
        assert_eq!(again, a);
        assert_eq!(registered.get(), 1, "found again, not registered again");
        // Another value, another name, the same values under other keys:
        // each its own handle.
        assert_eq!(
            handles.get("x", &[("model", "m"), ("code", "CANCELLED")], register),
            "model=m,code=CANCELLED"
        );
        assert_eq!(
            handles.get("y", &[("model", "m"), ("code", "OK")], register),
            "model=m,code=OK"
        );
        assert_eq!(
            handles.get("x", &[("tenant", "m"), ("code", "OK")], register),
            "tenant=m,code=OK"
        );
        assert_eq!(handles.get("x", &[("model", "m")], register), "model=m");
        assert_eq!(registered.get(), 5);
    }
}
