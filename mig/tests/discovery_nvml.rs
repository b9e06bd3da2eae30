//! Discovery against whatever NVML this machine has. Most development and CI
//! machines have no NVIDIA driver, which must give a clear "no NVML", never
//! a failure; on a GPU machine the same test checks the live snapshot maps.

use mig_slices::discovery::{discover, slices, Discovery, DiscoveryError, NvmlSnapshot};
use nvml_wrapper::error::NvmlError;

#[test]
fn discover_reports_no_nvml_with_a_reason_or_maps_the_live_gpus() {
    match discover() {
        Discovery::NoNvml { reason } => {
            eprintln!("no NVML here: {reason}");
            assert!(!reason.trim().is_empty());
            // Without the driver the reason carries the loader's own words.
            if std::path::Path::new("/dev/nvidiactl").exists() {
                eprintln!("driver device present but NVML unavailable: {reason}");
            } else {
                assert!(reason.contains("NVML"), "{reason}");
            }
        }
        Discovery::Nvml {
            snapshot,
            discovered,
        } => {
            // A live snapshot must survive the JSON used for fixtures and map
            // to the same result after it.
            let again = NvmlSnapshot::from_json(&snapshot.to_json_pretty()).unwrap();
            assert_eq!(again, snapshot);
            assert_eq!(slices(&again), discovered);
            for s in &discovered.slices {
                assert!(s.memory_bytes > 0, "{s:?}");
                assert!(s.gpu_uuid.starts_with("GPU-"), "{s:?}");
            }
        }
    }
}

#[test]
fn a_missing_library_becomes_no_nvml_naming_the_loader_error() {
    // Loading a library that does not exist gives the same libloading error
    // as a machine without the driver.
    let err = nvml_wrapper::Nvml::builder()
        .lib_path(std::ffi::OsStr::new("libnvidia-ml-absent-for-test.so.1"))
        .init()
        .expect_err("no such library");
    let d = Discovery::from_read(Err(DiscoveryError::from_init(err)));
    let Discovery::NoNvml { reason } = &d else {
        panic!("{d:?}");
    };
    assert!(reason.contains("cannot load the NVML library"), "{reason}");
    assert!(
        reason.contains("libnvidia-ml-absent-for-test.so.1"),
        "{reason}"
    );
    assert!(d.slices().is_empty());
    assert!(d.warnings().is_empty());
    assert_eq!(d.find(&"GPU-x".parse().unwrap()), None);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["source"], "no_nvml");
    assert_eq!(json["reason"], reason.as_str());
}

#[test]
fn driver_not_loaded_and_other_init_failures_are_told_apart() {
    let not_loaded = DiscoveryError::from_init(NvmlError::DriverNotLoaded);
    assert!(matches!(not_loaded, DiscoveryError::DriverNotLoaded));
    assert_eq!(
        not_loaded.to_string(),
        "NVML loaded but the NVIDIA kernel driver is not running"
    );
    let denied = DiscoveryError::from_init(NvmlError::NoPermission);
    assert!(matches!(denied, DiscoveryError::Init(_)));
    assert!(denied.to_string().contains("permission"), "{denied}");
}

#[test]
fn a_read_snapshot_becomes_nvml_with_its_mapping() {
    let snapshot = NvmlSnapshot {
        driver_version: Some("550.90.07".into()),
        cuda_driver_version: Some(12040),
        gpus: vec![],
        errors: vec![],
    };
    let d = Discovery::from_read(Ok(snapshot.clone()));
    let Discovery::Nvml {
        snapshot: kept,
        discovered,
    } = &d
    else {
        panic!("{d:?}");
    };
    assert_eq!(kept, &snapshot);
    assert!(discovered.slices.is_empty());
    assert_eq!(d.warnings().len(), 1);
    assert!(d.warnings()[0].contains("lists no GPU"));
    assert_eq!(serde_json::to_value(&d).unwrap()["source"], "nvml");
}
