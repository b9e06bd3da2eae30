//! API keys: made here, shown once, kept only as their SHA-256.
//!
//! `mig-gateway tenant add-key` draws a fresh key, writes its hash into the
//! tenant's `keys` (the rest of the file, comments included, untouched), and
//! prints the key once; the gateway picks the file up on its next reload.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::file::Tenants;

/// How a key hash starts in the tenants file.
pub const KEY_HASH_PREFIX: &str = "sha256:";
/// How every key this gateway makes starts (so a leaked one is recognisable
/// to secret scanners).
pub const KEY_PREFIX: &str = "mig_";
/// Longest key a client may present, in bytes; longer ones are refused
/// before hashing.
pub const MAX_KEY_BYTES: usize = 256;

/// The SHA-256 of an API key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// Reads `sha256:<64 hex digits>`; the error never repeats the text.
    pub fn parse(text: &str) -> Result<KeyHash, String> {
        let form = format!("must be `{KEY_HASH_PREFIX}` and 64 hex digits (`mig-gateway tenant add-key` writes them), never a key itself");
        let hex = text
            .strip_prefix(KEY_HASH_PREFIX)
            .ok_or_else(|| form.clone())?;
        if hex.len() != 64 {
            return Err(form);
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| form.clone())?;
        }
        Ok(KeyHash(bytes))
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(KEY_HASH_PREFIX)?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not the key, but logs have no use for it whole.
        write!(f, "KeyHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// A fresh API key: `mig_` and 256 random bits in hex.
pub fn new_key() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut key = String::from(KEY_PREFIX);
    for b in bytes {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// Adds a fresh key to `tenant` in the tenants file at `path` and returns
/// it. The file is rewritten whole (through a temporary file and a rename,
/// so the gateway never reads half of it) only if the result still loads.
pub fn add_key(path: &Path, tenant: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("tenants file `{}`: {e}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        format!("tenants file `{}`: {}", path.display(), e.message())
    })?;
    let tenants = doc
        .get_mut("tenant")
        .and_then(|t| t.as_array_of_tables_mut())
        .ok_or_else(|| format!("tenants file `{}` has no `[[tenant]]`", path.display()))?;
    let mut names = Vec::new();
    let mut entry = None;
    for table in tenants.iter_mut() {
        let name = table.get("name").and_then(|n| n.as_str()).unwrap_or("");
        names.push(name.to_string());
        if name == tenant {
            entry = Some(table);
        }
    }
    let Some(table) = entry else {
        return Err(format!(
            "no tenant `{}` in `{}`; its tenants: {}",
            mig_serve::limits::shown(tenant),
            path.display(),
            names.join(", ")
        ));
    };
    let key = new_key();
    let hash = KeyHash::of(&key).to_string();
    match table.get_mut("keys").and_then(|k| k.as_array_mut()) {
        Some(keys) => keys.push(hash),
        None => {
            let mut keys = toml_edit::Array::new();
            keys.push(hash);
            table.insert("keys", toml_edit::value(keys));
        }
    }
    let updated = doc.to_string();
    Tenants::parse(&updated)
        .map_err(|e| format!("tenants file `{}` would not load: {e}", path.display()))?;
    // Same folder (a rename does not cross file systems), same permissions.
    let temporary = path.with_extension("toml.new");
    let permissions = std::fs::metadata(path).map(|m| m.permissions());
    std::fs::write(&temporary, updated)
        .and_then(|()| match permissions {
            Ok(p) => std::fs::set_permissions(&temporary, p),
            Err(_) => Ok(()),
        })
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("writing `{}`: {e}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_reads_back_and_never_takes_a_plain_key() {
        let key = new_key();
        assert!(key.starts_with("mig_") && key.len() == 68);
        let hash = KeyHash::of(&key);
        assert_eq!(KeyHash::parse(&hash.to_string()).unwrap(), hash);
        let e = KeyHash::parse(&key).unwrap_err();
        assert!(!e.contains(&key), "{e}");
        assert!(KeyHash::parse("sha256:zz").is_err());
        assert!(format!("{hash:?}").len() < 20);
    }

    #[test]
    fn add_key_writes_the_hash_keeps_the_rest_and_the_key_works() {
        let dir = std::env::temp_dir().join(format!("mig-add-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tenants.toml");
        std::fs::write(
            &path,
            "# our tenants\n[[tenant]]\nname = \"a\"\nmodels = [\"x\"]\n\n[[tenant]]\nname = \"b\" # batch jobs\nmodels = [\"*\"]\n",
        )
        .unwrap();
        let first = add_key(&path, "b").unwrap();
        let second = add_key(&path, "b").unwrap();
        assert_ne!(first, second);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# our tenants") && text.contains("# batch jobs"),
            "{text}"
        );
        assert!(!text.contains(&first) && text.contains(&KeyHash::of(&first).to_string()));
        let tenants = Tenants::load(&path).unwrap();
        assert_eq!(tenants.find(&first).unwrap().name, "b");
        assert_eq!(tenants.find(&second).unwrap().name, "b");
        let e = add_key(&path, "c").unwrap_err();
        assert!(e.contains("no tenant `c`") && e.contains("a, b"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
