//! `trawl prune`: the bucket's retention rules applied to a data directory.

#[test]
fn prune_removes_expired_session_folders_and_refuses_a_retention_shorter_than_a_base_session() {
    let dir = std::env::temp_dir().join(format!("trawl-prune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for path in [
        "sessions/src/20200101T000000Z/summary.json",
        "sessions/src/20200101T000000Z/alerts.json",
        "logs/src/20200101T000000Z/a-1.ndjson",
        "records/src/a.json",
    ] {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"{}").unwrap();
    }
    let trawl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(args)
            .output()
            .unwrap()
    };
    let data = dir.to_str().unwrap();
    let pruned = trawl(&["prune", "--data-dir", data, "--json"]);
    assert!(pruned.status.success(), "{pruned:?}");
    let report: serde_json::Value = serde_json::from_slice(&pruned.stdout).unwrap();
    assert_eq!(report["session_folders"], 2);
    assert!(!dir.join("sessions/src/20200101T000000Z").exists());
    assert!(dir.join("records/src/a.json").exists());
    let too_short = trawl(&["prune", "--data-dir", data, "--log-days", "3"]);
    assert!(!too_short.status.success());
    std::fs::remove_dir_all(&dir).ok();
}
