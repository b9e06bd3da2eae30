//! Slice identities: the unit a worker is pinned to.

use std::fmt;
use std::str::FromStr;

/// A set of CPU cores, kept sorted and free of duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CoreSet(Vec<usize>);

impl CoreSet {
    /// A core set from any list of cores; `None` if it is empty.
    pub fn from_cores(cores: &[usize]) -> Option<CoreSet> {
        let mut cores = cores.to_vec();
        cores.sort_unstable();
        cores.dedup();
        (!cores.is_empty()).then_some(CoreSet(cores))
    }

    /// The cores, in increasing order.
    pub fn cores(&self) -> &[usize] {
        &self.0
    }

    /// Number of cores (never zero).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an empty core set does not parse.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a worker runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SliceId {
    /// A MIG device, as `CUDA_VISIBLE_DEVICES` takes it: `MIG-<uuid>`.
    Mig(String),
    /// A whole GPU (MIG off): `GPU-<uuid>`.
    Gpu(String),
    /// A set of CPU cores standing in for a MIG slice: `cpu:0`, `cpu:0-1`, `cpu:0,2`.
    Cpu(CoreSet),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SliceParseError {
    #[error("slice `{0}` is not `MIG-<uuid>`, `GPU-<uuid>` or `cpu:<cores>` (e.g. `cpu:0-1`)")]
    Unknown(String),
    #[error("slice `{slice}`: core list `{part}` is not a number or a range like `0-3`")]
    BadCores { slice: String, part: String },
    #[error("slice `{0}` names no core")]
    NoCores(String),
}

impl SliceId {
    /// The profile name reported in metrics and `served_by`. CPU slices are
    /// named by their core count (`cpu-1c`); GPU slices take the profile NVML
    /// reports, which the caller supplies.
    pub fn cpu_profile(&self) -> Option<String> {
        match self {
            SliceId::Cpu(cores) => Some(format!("cpu-{}c", cores.len())),
            _ => None,
        }
    }

    /// The cores of a CPU slice.
    pub fn cores(&self) -> Option<&CoreSet> {
        match self {
            SliceId::Cpu(cores) => Some(cores),
            _ => None,
        }
    }
}

impl FromStr for SliceId {
    type Err = SliceParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("MIG-") && s.len() > 4 {
            return Ok(SliceId::Mig(s.to_string()));
        }
        if s.starts_with("GPU-") && s.len() > 4 {
            return Ok(SliceId::Gpu(s.to_string()));
        }
        let Some(list) = s.strip_prefix("cpu:") else {
            return Err(SliceParseError::Unknown(s.to_string()));
        };
        let bad = |part: &str| SliceParseError::BadCores {
            slice: s.to_string(),
            part: part.to_string(),
        };
        let mut cores = Vec::new();
        for part in list.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: usize = a.parse().map_err(|_| bad(part))?;
                    let b: usize = b.parse().map_err(|_| bad(part))?;
                    if b < a {
                        return Err(bad(part));
                    }
                    cores.extend(a..=b);
                }
                None => cores.push(part.parse().map_err(|_| bad(part))?),
            }
        }
        cores.sort_unstable();
        cores.dedup();
        if cores.is_empty() {
            return Err(SliceParseError::NoCores(s.to_string()));
        }
        Ok(SliceId::Cpu(CoreSet(cores)))
    }
}

impl fmt::Display for CoreSet {
    /// Compact form: consecutive cores become ranges (`0-3,6`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl fmt::Display for SliceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SliceId::Mig(uuid) | SliceId::Gpu(uuid) => f.write_str(uuid),
            SliceId::Cpu(cores) => write!(f, "cpu:{cores}"),
        }
    }
}

/// A slice's size in compute units, from its profile: the GPU-instance
/// slices of a MIG profile (`3g.40gb`: 3; `1c.3g.40gb`: 1) or the cores of a
/// CPU slice (`cpu-2c`: 2). Dashboards divide tokens/s by it.
pub fn compute_units(profile: &str) -> Option<f64> {
    if let Some(cores) = profile
        .strip_prefix("cpu-")
        .and_then(|c| c.strip_suffix('c'))
    {
        return cores.parse().ok();
    }
    let first = profile.split('.').next()?;
    let number = first
        .strip_suffix('c')
        .or_else(|| first.strip_suffix('g'))?;
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_slices_and_prints_them_compactly() {
        let s: SliceId = "cpu:3,0-1,2".parse().unwrap();
        assert_eq!(s.cores().unwrap().cores(), &[0, 1, 2, 3]);
        assert_eq!(s.to_string(), "cpu:0-3");
        assert_eq!(s.cpu_profile().as_deref(), Some("cpu-4c"));
        let s: SliceId = "cpu:0,2".parse().unwrap();
        assert_eq!(s.to_string(), "cpu:0,2");
    }

    #[test]
    fn parses_gpu_and_mig_uuids_verbatim() {
        let m: SliceId = "MIG-4f5e6d7c-0000-1111-2222-333344445555".parse().unwrap();
        assert!(matches!(m, SliceId::Mig(_)));
        assert_eq!(m.to_string(), "MIG-4f5e6d7c-0000-1111-2222-333344445555");
        assert_eq!(m.cpu_profile(), None);
        assert!(matches!(
            "GPU-abc".parse::<SliceId>().unwrap(),
            SliceId::Gpu(_)
        ));
    }

    #[test]
    fn rejects_malformed_slices_with_the_offending_part() {
        assert_eq!(
            "cpu:1-x".parse::<SliceId>().unwrap_err(),
            SliceParseError::BadCores {
                slice: "cpu:1-x".into(),
                part: "1-x".into()
            }
        );
        assert_eq!(
            "cpu:3-1".parse::<SliceId>().unwrap_err().to_string(),
            "slice `cpu:3-1`: core list `3-1` is not a number or a range like `0-3`"
        );
        assert!(matches!(
            "cpu:".parse::<SliceId>(),
            Err(SliceParseError::NoCores(_))
        ));
        assert!(matches!(
            "0".parse::<SliceId>(),
            Err(SliceParseError::Unknown(_))
        ));
    }

    #[test]
    fn compute_units_of_mig_and_cpu_profiles() {
        assert_eq!(compute_units("1g.10gb"), Some(1.0));
        assert_eq!(compute_units("3g.40gb"), Some(3.0));
        assert_eq!(compute_units("1g.10gb+me"), Some(1.0));
        assert_eq!(compute_units("1c.3g.40gb"), Some(1.0));
        assert_eq!(compute_units("cpu-2c"), Some(2.0));
        assert_eq!(compute_units("gpu.80gb"), None);
        assert_eq!(compute_units(""), None);
    }
}
