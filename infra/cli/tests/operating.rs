//! Operating an embedded run's data directory: `trawl deletions` (a source with
//! `on_stale: hold` keeps what its listing lost until an operator decides) and
//! `trawl session ID --changes`.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use trawl_fixtures::{ErddapConfig, ErddapFixture};

fn data_dir() -> PathBuf {
    common::data_dir("deletions")
}

/// `trawl ARGS --data-dir DIR`.
async fn trawl(args: &[&str], dir: &Path) -> Output {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--data-dir".into(), dir.display().to_string()]);
    common::trawl(args).await
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

/// Session ids are whole seconds: the next harvest starts in the next one.
async fn harvest(sources: &Path, dir: &Path) -> Value {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let out = trawl(
        &[
            "harvest",
            "--sources",
            &sources.display().to_string(),
            "--quiet",
            "--json",
        ],
        dir,
    )
    .await;
    json(&out)
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_deletions_are_listed_approved_and_restored_from_the_command_line() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    let _cleanup = Cleanup(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let sources = dir.join("sources.json");
    let source = serde_json::json!({
        "id": "held", "protocol": "erddap", "base_url": fixture.base_url(),
        "schedule": "rate(1 day)", "internal": true,
        "options": {"stale_after_listings": 1, "on_stale": "hold"},
    });
    std::fs::write(&sources, source.to_string()).unwrap();
    harvest(&sources, &dir).await;
    fixture.remove_dataset("ds_0002");
    fixture.remove_dataset("ds_0004");
    let run = harvest(&sources, &dir).await;
    let session = run["session_id"].as_str().unwrap().to_string();

    let summary: Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!(
            "sessions/held/{}/summary.json",
            session.split_once('@').unwrap().1
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["held_deletions"], 2, "{summary}");

    let listed = json(&trawl(&["deletions", "list", "held", "--json"], &dir).await);
    let pending: Vec<&str> = listed["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(pending, ["ds_0002", "ds_0004"]);
    let text = trawl(&["deletions", "list", "held"], &dir).await;
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("2 pending"),
        "{text:?}"
    );

    let approved = json(&trawl(&["deletions", "approve", "held", "ds_0002", "--json"], &dir).await);
    assert_eq!(approved["done"], serde_json::json!(["ds_0002"]));
    assert!(dir.join("deleted/records/held/ds_0002.json").is_file());
    assert!(!dir.join("records/held/ds_0002.json").exists());

    // Restore with no id discards what is still pending; a named deleted one comes back.
    let kept = json(&trawl(&["deletions", "restore", "held", "--json"], &dir).await);
    assert_eq!(kept["done"], serde_json::json!(["ds_0004"]));
    let back = json(&trawl(&["deletions", "restore", "held", "ds_0002", "--json"], &dir).await);
    assert_eq!(back["done"], serde_json::json!(["ds_0002"]));
    assert!(dir.join("records/held/ds_0002.json").is_file());
    let none = json(&trawl(&["deletions", "list", "held", "--json"], &dir).await);
    assert_eq!(none["pending"], serde_json::json!([]));

    let unknown = trawl(&["deletions", "approve", "nosuch"], &dir).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no source nosuch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_changes_are_printed_with_the_fields_that_changed() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    let _cleanup = Cleanup(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let sources = dir.join("sources.json");
    let source = serde_json::json!({
        "id": "edited", "protocol": "erddap", "base_url": fixture.base_url(),
        "schedule": "rate(1 day)", "internal": true,
    });
    std::fs::write(&sources, source.to_string()).unwrap();
    let first = harvest(&sources, &dir).await;
    let first = first["session_id"].as_str().unwrap().to_string();
    fixture.bump_version("ds_0002");
    let second = harvest(&sources, &dir).await;
    let second = second["session_id"].as_str().unwrap().to_string();

    let added = json(&trawl(&["session", &first, "--changes", "--json"], &dir).await);
    assert_eq!(added["changes"]["added"]["count"], 4);
    let changed = json(&trawl(&["session", &second, "--changes", "--json"], &dir).await);
    assert_eq!(changed["changes"]["added"]["count"], 0);
    assert_eq!(
        changed["changes"]["changed"]["resources"][0]["resource_id"],
        "ds_0002"
    );
    let text = trawl(&["session", &second, "--changes"], &dir).await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.starts_with("added 0, changed 1, removed 0, restored 0"),
        "{text}"
    );
    assert!(
        text.contains("  ds_0002  (") && text.contains("title"),
        "{text}"
    );

    let nowhere = trawl(
        &["session", &second, "--changes"],
        &dir.join("nothing-here"),
    )
    .await;
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(
        !dir.join("nothing-here").exists(),
        "a mistyped directory is not created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_removed_with_purge_and_added_again_starts_clean() {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = data_dir();
    let _cleanup = Cleanup(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let sources = dir.join("sources.json");
    let source = serde_json::json!({
        "id": "again", "protocol": "erddap", "base_url": fixture.base_url(),
        "schedule": "rate(1 day)", "internal": true,
        "options": {"stale_after_listings": 1},
    });
    std::fs::write(&sources, source.to_string()).unwrap();
    harvest(&sources, &dir).await;
    fixture.remove_dataset("ds_0002");
    harvest(&sources, &dir).await;
    assert!(dir.join("deleted/records/again/ds_0002.json").is_file());

    let purged = json(&trawl(&["sources", "remove", "again", "--purge", "--json"], &dir).await);
    assert_eq!(purged["purged"]["states"], 4, "{purged}");
    assert!(
        purged["purged"]["objects"].as_u64().unwrap() >= 8,
        "{purged}"
    );
    for gone in [
        "records/again",
        "raw/again",
        "logs/again",
        "sessions/again",
        "deleted/records/again",
        "deleted/raw/again",
    ] {
        assert!(!dir.join(gone).exists(), "{gone} is left");
    }

    fixture.restore_dataset("ds_0002");
    let run = harvest(&sources, &dir).await;
    assert_eq!(
        run["counters"]["harvested"], 4,
        "everything is new again: {run}"
    );
    assert_eq!(run["counters"]["unchanged"], 0);
    let session = run["session_id"].as_str().unwrap().to_string();
    let changes = json(&trawl(&["session", &session, "--changes", "--json"], &dir).await);
    assert_eq!(changes["changes"]["added"]["count"], 4, "{changes}");
    assert_eq!(
        changes["changes"]["restored"]["count"], 0,
        "nothing of the old is left"
    );
    let sessions = std::fs::read_dir(dir.join("sessions/again"))
        .unwrap()
        .count();
    assert_eq!(sessions, 1, "only the new session's documents");

    let unknown = trawl(&["sources", "remove", "nosuch", "--purge"], &dir).await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no source nosuch"));
}
