//! `trawl sources apply`: the registered sources made to match a file, here on an embedded
//! run's data directory (the deployed stack goes through the same function and registry port).

use std::path::Path;
use std::process::Output;

fn trawl(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
        .args(args)
        .output()
        .expect("the trawl binary runs")
}

fn registered(dir: &Path) -> Vec<(String, String)> {
    let store = trawl::local::DiskStore::open(dir).unwrap();
    store
        .snapshot()
        .unwrap()
        .sources
        .into_iter()
        .map(|e| (e.source.id, e.source.schedule))
        .collect()
}

#[test]
fn a_sources_file_is_applied_idempotently_and_pruned_only_when_asked() {
    let dir = std::env::temp_dir().join(format!("trawl-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let yaml = dir.join("sources.yaml");
    std::fs::write(
        &yaml,
        "- id: a\n  protocol: erddap\n  base_url: https://a.example.org/erddap\n  schedule: rate(1 day)\n\
         - id: b\n  protocol: ckan\n  base_url: https://b.example.org\n  schedule: rate(1 day)\n",
    )
    .unwrap();
    let yaml = yaml.to_str().unwrap();

    let first = trawl(&["sources", "apply", yaml, "--data-dir", data]);
    assert!(first.status.success(), "{first:?}");
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.contains("added a") && out.contains("added b"), "{out}");
    let again = trawl(&["sources", "apply", yaml, "--data-dir", data]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "2 unchanged");

    // A changed schedule, a new source, and `b` no longer in the file.
    let json = dir.join("sources.json");
    std::fs::write(
        &json,
        r#"[{"id": "a", "protocol": "erddap", "base_url": "https://a.example.org/erddap", "schedule": "rate(6 hours)"},
            {"id": "c", "protocol": "csw", "base_url": "https://c.example.org/csw?service=CSW", "schedule": "rate(1 day)"}]"#,
    )
    .unwrap();
    let json = json.to_str().unwrap();
    let dry = trawl(&[
        "sources",
        "apply",
        json,
        "--prune",
        "--dry-run",
        "--data-dir",
        data,
    ]);
    let out = String::from_utf8_lossy(&dry.stdout);
    for line in ["would add c", "would update a", "would remove b"] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert_eq!(
        registered(Path::new(data)),
        [
            ("a".into(), "rate(1440 minutes)".into()),
            ("b".into(), "rate(1440 minutes)".into())
        ],
        "a dry run changes nothing"
    );
    let without_prune = trawl(&["sources", "apply", json, "--data-dir", data]);
    assert!(without_prune.status.success());
    assert_eq!(
        registered(Path::new(data)).len(),
        3,
        "b stays without --prune"
    );
    let pruned = trawl(&[
        "sources",
        "apply",
        json,
        "--prune",
        "--data-dir",
        data,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(report["removed"], serde_json::json!(["b"]));
    assert_eq!(
        registered(Path::new(data)),
        [
            ("a".into(), "rate(360 minutes)".into()),
            ("c".into(), "rate(1440 minutes)".into())
        ]
    );

    // A bad file names the source and the field, and changes nothing.
    std::fs::write(
        dir.join("bad.yaml"),
        "- id: d\n  protocol: gopher\n  base_url: x\n  schedule: rate(1 day)\n",
    )
    .unwrap();
    let bad = trawl(&[
        "sources",
        "apply",
        dir.join("bad.yaml").to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("source #1") && err.contains("protocol"),
        "{err}"
    );
    assert_eq!(registered(Path::new(data)).len(), 2);
    std::fs::remove_dir_all(&dir).ok();
}
