//! The tenants file: who may call, with which keys, which models, within
//! which limits. Read whole and checked whole: a file with one bad field is
//! refused with its line and the field's name, never half applied.
//!
//! ```toml
//! [[tenant]]
//! name = "search"
//! keys = ["sha256:…"]            # `mig-gateway tenant add-key` writes these
//! models = ["minilm-l6", "qwen*"] # names or globs
//! priority = "critical"           # critical | standard | sheddable
//! max_concurrency = 8             # requests at once (default: no limit)
//! tokens_per_minute = 60000       # prompt + generated (default: no limit)
//! admin = false                   # sees workers' addresses in ListModels
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::keys::KeyHash;

/// Longest tenant name, in bytes (it is a metric label).
pub const MAX_TENANT_NAME_BYTES: usize = 64;
/// Longest model name or glob in `models`, in bytes.
pub const MAX_MODEL_PATTERN_BYTES: usize = 128;
/// Most tenants one file may hold (the `tenant` label's cardinality).
pub const MAX_TENANTS: usize = 1000;

/// A tenant's class, for admission under overload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    #[default]
    Standard,
    Sheddable,
}

/// One tenant, checked.
#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    /// Names and globs of the models it may call.
    models: Vec<glob::Pattern>,
    pub priority: Priority,
    /// Requests it may have running at once.
    pub max_concurrency: Option<u32>,
    /// Prompt plus generated tokens per minute.
    pub tokens_per_minute: Option<u64>,
    /// Sees the workers' internal addresses in `ListModels` (operators,
    /// load tests that measure a worker straight).
    pub admin: bool,
}

impl Tenant {
    /// Whether `models` lets it call `model`.
    pub fn may_call(&self, model: &str) -> bool {
        self.models.iter().any(|p| p.matches(model))
    }

    /// Its `models` entries, as written.
    pub fn model_patterns(&self) -> Vec<String> {
        self.models.iter().map(|p| p.as_str().to_string()).collect()
    }
}

/// Every tenant, and its keys' hashes for the lookup of each call.
#[derive(Debug, Default)]
pub struct Tenants {
    by_key: HashMap<KeyHash, Arc<Tenant>>,
    tenants: Vec<Arc<Tenant>>,
}

impl Tenants {
    /// The tenant a key belongs to: one hash and one lookup.
    pub fn find(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.by_key.get(&KeyHash::of(key))
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// How many keys the tenants hold together.
    pub fn keys(&self) -> usize {
        self.by_key.len()
    }

    /// Whether `name` is a tenant of this file (metric labels take only these).
    pub fn has(&self, name: &str) -> bool {
        self.tenants.iter().any(|t| t.name == name)
    }

    /// Reads and checks a tenants file.
    pub fn load(path: &Path) -> Result<Tenants, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("tenants file `{}`: {e}", path.display()))?;
        Tenants::parse(&text).map_err(|e| format!("tenants file `{}`: {e}", path.display()))
    }

    /// Checks the text of a tenants file; an error names the line and field.
    pub fn parse(text: &str) -> Result<Tenants, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            // toml's own message names the line and column, then the problem.
            let line = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            format!("{line}{}", e.message().trim())
        })?;
        if raw.tenant.len() > MAX_TENANTS {
            return Err(format!("{} tenants, limit {MAX_TENANTS}", raw.tenant.len()));
        }
        let mut tenants = Tenants::default();
        let mut names = HashSet::new();
        for entry in raw.tenant {
            let at = |span: std::ops::Range<usize>, field: &str, problem: String| {
                format!("line {}: `{field}` {problem}", line_of(text, span.start))
            };
            let name = entry.name.get_ref();
            if name.is_empty()
                || name.len() > MAX_TENANT_NAME_BYTES
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                || name.starts_with('_')
            {
                return Err(at(
                    entry.name.span(),
                    "name",
                    format!(
                        "must be 1 to {MAX_TENANT_NAME_BYTES} letters, digits, `-` or `_`, \
                         not starting with `_`"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(at(
                    entry.name.span(),
                    "name",
                    format!("`{name}` is given to two tenants"),
                ));
            }
            if entry.models.get_ref().is_empty() {
                return Err(at(
                    entry.models.span(),
                    "models",
                    "is empty: list the model names or globs this tenant may call".into(),
                ));
            }
            let mut models = Vec::new();
            for pattern in entry.models.get_ref() {
                let text_of = pattern.get_ref();
                if text_of.is_empty() || text_of.len() > MAX_MODEL_PATTERN_BYTES {
                    return Err(at(
                        pattern.span(),
                        "models",
                        format!("holds an entry of {} bytes; 1 to {MAX_MODEL_PATTERN_BYTES} are allowed", text_of.len()),
                    ));
                }
                models.push(
                    glob::Pattern::new(text_of).map_err(|e| {
                        at(pattern.span(), "models", format!("holds a bad glob: {e}"))
                    })?,
                );
            }
            if let Some(n) = &entry.max_concurrency {
                if *n.get_ref() == 0 {
                    return Err(at(n.span(), "max_concurrency", "must be at least 1".into()));
                }
            }
            if let Some(n) = &entry.tokens_per_minute {
                if *n.get_ref() == 0 {
                    return Err(at(
                        n.span(),
                        "tokens_per_minute",
                        "must be at least 1".into(),
                    ));
                }
            }
            let tenant = Arc::new(Tenant {
                name: name.clone(),
                models,
                priority: entry.priority.unwrap_or_default(),
                max_concurrency: entry.max_concurrency.map(Spanned::into_inner),
                tokens_per_minute: entry.tokens_per_minute.map(Spanned::into_inner),
                admin: entry.admin.unwrap_or(false),
            });
            for key in entry.keys.unwrap_or_default() {
                let hash = KeyHash::parse(key.get_ref())
                    .map_err(|problem| at(key.span(), "keys", problem))?;
                if let Some(other) = tenants.by_key.insert(hash, tenant.clone()) {
                    return Err(at(
                        key.span(),
                        "keys",
                        format!("holds a key that tenant `{}` holds too", other.name),
                    ));
                }
            }
            tenants.tenants.push(tenant);
        }
        Ok(tenants)
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tenant: Vec<RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Spanned<String>,
    /// `sha256:<64 hex>` each.
    keys: Option<Vec<Spanned<String>>>,
    models: Spanned<Vec<Spanned<String>>>,
    priority: Option<Priority>,
    max_concurrency: Option<Spanned<u32>>,
    tokens_per_minute: Option<Spanned<u64>>,
    admin: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::keys::new_key;

    fn hash(key: &str) -> String {
        KeyHash::of(key).to_string()
    }

    #[test]
    fn a_file_maps_keys_to_tenants_and_models_by_glob() {
        let (a, b) = (new_key(), new_key());
        let text = format!(
            r#"
[[tenant]]
name = "search"
keys = ["{}"]
models = ["minilm-l6", "qwen*"]
priority = "critical"
max_concurrency = 2
tokens_per_minute = 600

[[tenant]]
name = "batch"
keys = ["{}"]
models = ["*"]
"#,
            hash(&a),
            hash(&b)
        );
        let tenants = Tenants::parse(&text).unwrap();
        assert_eq!((tenants.len(), tenants.keys()), (2, 2));
        let search = tenants.find(&a).unwrap();
        assert_eq!(search.name, "search");
        assert_eq!(search.priority, Priority::Critical);
        assert_eq!(search.max_concurrency, Some(2));
        assert!(search.may_call("qwen2.5-0.5b") && search.may_call("minilm-l6"));
        assert!(!search.may_call("smollm2-135m"));
        let batch = tenants.find(&b).unwrap();
        assert_eq!(
            (batch.priority, batch.tokens_per_minute),
            (Priority::Standard, None)
        );
        assert!(batch.may_call("anything"));
        assert!(tenants.find("mig_not-a-key").is_none());
        assert!(tenants.has("batch") && !tenants.has("_unknown"));
    }

    #[test]
    fn the_example_in_deploy_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tenants.toml");
        let tenants = Tenants::load(&path).unwrap();
        assert_eq!((tenants.len(), tenants.keys()), (2, 0));
        assert!(tenants.has("search") && tenants.has("batch"));
    }

    #[test]
    fn a_bad_file_is_refused_with_its_line_and_field() {
        let good = hash(&new_key());
        let cases = [
            (
                "[[tenant]]\nname = \"a\"\nmodels = []\n".to_string(),
                "line 3: `models` is empty",
            ),
            (
                "[[tenant]]\nname = \"a\"\nmodels = [\"x\"]\nmax_concurrency = 0\n".into(),
                "line 4: `max_concurrency` must be at least 1",
            ),
            (
                "[[tenant]]\nname = \"a\"\nmodels = [\"x\"]\nkeys = [\"plain-key\"]\n".into(),
                "line 4: `keys`",
            ),
            (
                "[[tenant]]\nname = \"_unknown\"\nmodels = [\"x\"]\n".into(),
                "line 2: `name` must be",
            ),
            (
                "[[tenant]]\nname = \"a\"\nmodels = [\"[x\"]\n".into(),
                "line 3: `models` holds a bad glob",
            ),
            (
                "[[tenant]]\nname = \"a\"\nmodels = [\"x\"]\nmax_concurency = 2\n".into(),
                "line 4: unknown field `max_concurency`",
            ),
            (
                "[[tenant]]\nname = \"a\"\nmodels = [\"x\"]\npriority = \"urgent\"\n".into(),
                "line 4: unknown variant `urgent`",
            ),
            (
                format!(
                    "[[tenant]]\nname = \"a\"\nmodels = [\"x\"]\nkeys = [\"{good}\"]\n\
                     [[tenant]]\nname = \"b\"\nmodels = [\"x\"]\nkeys = [\"{good}\"]\n"
                ),
                "line 8: `keys` holds a key that tenant `a` holds too",
            ),
            (
                "[[tenant]]\nname = \"a\"\nmodels = [\"x\"]\n[[tenant]]\nname = \"a\"\nmodels = [\"y\"]\n"
                    .into(),
                "line 5: `name` `a` is given to two tenants",
            ),
        ];
        for (text, expected) in cases {
            let e = Tenants::parse(&text).unwrap_err();
            assert!(e.starts_with(expected), "{expected:?} in {e:?}");
        }
    }
}
