//! `trawl run SOURCE --resources ID…` on an embedded run's data directory: only the named
//! datasets are harvested (an unknown one counted failed), nothing is deleted as stale, and
//! a selection over the cap is refused before anything starts.

mod common;
use common::trawl;

use trawl::model::{SessionStatus, Trigger};
use trawl_fixtures::{ErddapConfig, ErddapFixture};

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_resources_harvests_only_those_and_deletes_nothing() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 8,
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("trawl-run-selection-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.display().to_string();
    let full = trawl(strings(&[
        "harvest",
        "erddap",
        &fixture.base_url(),
        "--id",
        "ocean",
        "--internal",
        "--quiet",
        "--data-dir",
        &data,
    ]))
    .await;
    assert!(full.status.success(), "{full:?}");
    // Gone upstream: a listing would tombstone it; a selection that does not name it must not.
    fixture.remove_dataset("ds_0005");

    let run = trawl(strings(&[
        "--json",
        "run",
        "ocean",
        "--resources",
        "ds_0002",
        "no_such_dataset",
        "--data-dir",
        &data,
    ]))
    .await;
    assert!(run.status.success(), "{run:?}");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["status"], "partially_failed", "{report}");
    assert_eq!(report["counters"]["total"], 2);
    assert_eq!(report["counters"]["unchanged"], 1);
    assert_eq!(report["counters"]["failed"], 1);

    let snapshot = trawl::local::DiskStore::open(&dir)
        .unwrap()
        .snapshot()
        .unwrap();
    let session = snapshot
        .sessions
        .iter()
        .find(|s| s.id == report["session_id"])
        .unwrap();
    assert_eq!(session.trigger, Some(Trigger::Selection));
    assert_eq!(session.status, SessionStatus::PartiallyFailed);
    let state = |id: &str| {
        snapshot
            .resources
            .iter()
            .find(|r| r.resource_id == id)
            .unwrap()
    };
    assert_eq!(state("ds_0005").missing_listings, 0, "no tombstone");
    assert_eq!(state("ds_0002").last_session, session.id);
    assert_ne!(state("ds_0003").last_session, session.id);

    // Over the cap, or an unknown source: refused, exit 2, nothing started.
    let many: Vec<String> = (0..1001).map(|i| format!("d{i}")).collect();
    let mut args = strings(&["run", "ocean", "--data-dir", &data, "--resources"]);
    args.extend(many);
    let refused = trawl(args).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("more than 1000"),
        "{refused:?}"
    );
    let unknown = trawl(strings(&[
        "run",
        "nope",
        "--resources",
        "a",
        "--data-dir",
        &data,
    ]))
    .await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no source nope"));
    let after = trawl::local::DiskStore::open(&dir)
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(after.sessions.len(), snapshot.sessions.len());
    let _ = std::fs::remove_dir_all(&dir);
}
