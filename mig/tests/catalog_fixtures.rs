//! Every catalog table against the `nvidia-smi mig -lgip` (and, where
//! recorded, `-lgipp`) output transcribed under `tests/fixtures/lgip/`, one
//! file per GPU id. A file's first line names its source, its second the
//! driver branch (as the table or its `memory_by_driver` names it) whose
//! memory figures it holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mig_slices::catalog::{gpu_model, gpu_models, lgip_mib, GpuModel, Placement, Units};

/// One `-lgip` profile: the two lines of a row.
#[derive(Debug, PartialEq)]
struct Row {
    name: String,
    id: u32,
    total: u8,
    memory_hundredths: u64,
    sms: u16,
    units: Units,
}

#[derive(Debug)]
struct Fixture {
    source: String,
    driver: String,
    rows: Vec<Row>,
    /// `-lgipp`: profile id → placements; empty when not recorded.
    placements: BTreeMap<u32, Vec<Placement>>,
}

fn num<T: std::str::FromStr>(token: &str, line: &str) -> T {
    token
        .parse()
        .unwrap_or_else(|_| panic!("`{token}` is not a number in `{line}`"))
}

/// `9.75` → 975: memory as `-lgip` prints it, in hundredths of a GiB.
fn hundredths(token: &str) -> u64 {
    let (whole, frac) = token.split_once('.').expect("memory has two decimals");
    assert_eq!(frac.len(), 2, "`{token}`");
    num::<u64>(whole, token) * 100 + num::<u64>(frac, token)
}

/// `{0,3,6,9}:3` → placements.
fn placements(text: &str) -> Vec<Placement> {
    let (starts, size) = text
        .trim()
        .trim_start_matches('{')
        .split_once("}:")
        .unwrap_or_else(|| panic!("`{text}` is no -lgipp placement set"));
    let size: u8 = num(size.trim(), text);
    starts
        .split(',')
        .map(|s| Placement {
            start: num(s.trim(), text),
            size,
        })
        .collect()
}

fn parse(text: &str) -> Fixture {
    let mut lines = text.lines();
    let source = lines
        .next()
        .and_then(|l| l.strip_prefix("# source: "))
        .expect("first line: `# source: ...`")
        .to_string();
    let driver = lines
        .next()
        .and_then(|l| l.strip_prefix("# driver: "))
        .expect("second line: `# driver: ...`")
        .to_string();
    let mut rows = Vec::new();
    let mut placements_by_id = BTreeMap::new();
    let mut pending: Option<Vec<String>> = None;
    for line in lines {
        if let Some((_, rest)) = line.split_once("Profile ID ") {
            let id: u32 = num(rest.split_whitespace().next().unwrap(), line);
            let set = &line[line.find('{').expect("a placement set")..];
            placements_by_id.insert(id, placements(set));
            continue;
        }
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split_whitespace()
            .filter(|t| *t != "|")
            .collect();
        if cells.get(1) == Some(&"MIG") {
            assert!(pending.is_none(), "a row without its second line: {line}");
            pending = Some(cells.iter().map(|c| c.to_string()).collect());
        } else if let Some(first) = pending.take() {
            // gpu, MIG, name, id, free/total, memory, p2p, sm, dec, enc
            assert_eq!(first.len(), 10, "{first:?}");
            assert_eq!(cells.len(), 3, "second line of {first:?}: {line}");
            let total = first[4].split_once('/').expect("free/total").1;
            rows.push(Row {
                name: first[2].clone(),
                id: num(&first[3], line),
                total: num(total, line),
                memory_hundredths: hundredths(&first[5]),
                sms: num(&first[7], line),
                units: Units {
                    copy_engines: num(cells[0], line),
                    decoders: num(&first[8], line),
                    encoders: num(&first[9], line),
                    jpeg: num(cells[1], line),
                    ofa: num(cells[2], line),
                },
            });
        }
    }
    assert!(pending.is_none(), "the last row lacks its second line");
    Fixture {
        source,
        driver,
        rows,
        placements: placements_by_id,
    }
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lgip")
}

/// Every fixture, by the GPU id its file is named for.
fn fixtures() -> BTreeMap<String, Fixture> {
    std::fs::read_dir(fixture_dir())
        .expect("tests/fixtures/lgip exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| {
            let id = p.file_stem().unwrap().to_str().unwrap().to_string();
            (id, parse(&std::fs::read_to_string(&p).unwrap()))
        })
        .collect()
}

/// The memory a table holds for a driver branch: its own figures, or the
/// profile's `memory_by_driver` entry for that branch.
fn table_memory(model: &GpuModel, p: &mig_slices::catalog::Profile, driver: &str) -> u64 {
    if driver == model.driver {
        return p.memory_mib;
    }
    p.memory_by_driver
        .iter()
        .find(|(branch, _)| *branch == driver)
        .map_or(p.memory_mib, |&(_, mib)| mib)
}

#[test]
fn every_table_matches_its_recorded_lgip() {
    let all = fixtures();
    assert!(!all.is_empty());
    for (id, f) in &all {
        let model =
            gpu_model(id).unwrap_or_else(|| panic!("fixture {id}.txt names no catalog GPU"));
        assert!(!f.source.trim().is_empty(), "{id}: source");
        let known_driver = f.driver == model.driver
            || model
                .profiles
                .iter()
                .any(|p| p.memory_by_driver.iter().any(|(b, _)| *b == f.driver));
        assert!(
            known_driver,
            "{id}: driver `{}` is not the table's",
            f.driver
        );
        let names: Vec<&str> = model.profiles.iter().map(|p| p.name).collect();
        let recorded: Vec<&str> = f.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, recorded, "{id}: profile names in -lgip order");
        for (p, r) in model.profiles.iter().zip(&f.rows) {
            let at = format!("{id} {}", p.name);
            assert_eq!(p.id, r.id, "{at}: id");
            assert_eq!(p.max_count, r.total, "{at}: instances");
            assert_eq!(
                table_memory(model, p, &f.driver),
                lgip_mib(r.memory_hundredths),
                "{at}: memory on {}",
                f.driver
            );
            assert!(p.min_memory_mib() <= lgip_mib(r.memory_hundredths), "{at}");
            assert_eq!(p.sms, Some(r.sms), "{at}: SMs");
            assert_eq!(p.units, Some(r.units), "{at}: CE/DEC/ENC/JPG/OFA");
            if !f.placements.is_empty() {
                let recorded = f
                    .placements
                    .get(&p.id)
                    .unwrap_or_else(|| panic!("{at}: no -lgipp line"));
                assert_eq!(p.placements, recorded.as_slice(), "{at}: placements");
            }
        }
        if !f.placements.is_empty() {
            assert_eq!(
                f.placements.len(),
                model.profiles.len(),
                "{id}: -lgipp lines"
            );
        }
    }
}

/// The GPUs whose table has no recorded output behind a fixture: the list
/// is explicit so that adding a fixture or a GPU forces updating it.
#[test]
fn gpus_without_a_fixture_are_exactly_these() {
    let all = fixtures();
    let without: Vec<&str> = gpu_models()
        .iter()
        .map(|m| m.id)
        .filter(|id| !all.contains_key(*id))
        .collect();
    assert_eq!(
        without,
        [
            "a100-40gb",
            "a100-80gb",
            "a800-80gb",
            "a30-24gb",
            "h100-pcie-80gb",
            "h100-94gb",
            "h800-80gb",
        ]
    );
}

#[test]
fn the_parser_reads_rows_and_placements() {
    let f = parse(
        "# source: test\n# driver: R0\n\
         |   0  MIG 1g.24gb+me.all  65     1/1        23.62      No     46     4     4   |\n\
         |                                                               1     4     1   |\n\
         GPU  0 Profile ID 65 Placements: {0,3,6,9}:3\n\
         GPU  0 Profile ID  0 Placement : {0}:12\n",
    );
    assert_eq!(f.driver, "R0");
    assert_eq!(
        f.rows,
        [Row {
            name: "1g.24gb+me.all".into(),
            id: 65,
            total: 1,
            memory_hundredths: 2362,
            sms: 46,
            units: Units {
                copy_engines: 1,
                decoders: 4,
                encoders: 4,
                jpeg: 4,
                ofa: 1,
            },
        }]
    );
    assert_eq!(f.placements[&65].len(), 4);
    assert_eq!(f.placements[&65][3], Placement { start: 9, size: 3 });
    assert_eq!(f.placements[&0], [Placement { start: 0, size: 12 }]);
}
