//! The operator commands against the stack deployed into LocalStack (as `.ci/run` starts
//! it): the binary is run with the standard AWS environment, the runner plays the Lambda
//! service so a started session actually completes.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;
use trawl_e2e::{lock_stack, runner, unique_source_id};
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};
use trawl_runner::{repo_root, Faults};

async fn trawl(args: &[&str]) -> Output {
    let mut all: Vec<String> = vec![
        "--stack-outputs".into(),
        repo_root().join(".local/stack.json").display().to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(&all)
            .env(
                "AWS_ENDPOINT_URL",
                std::env::var("AWS_ENDPOINT_URL")
                    .unwrap_or_else(|_| "http://127.0.0.1:4566".into()),
            )
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
            .env("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
            .output()
            .expect("the trawl binary runs")
    })
    .await
    .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

fn refused(o: &Output, says: &str) {
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(says), "expected {says:?} in {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_registers_runs_follows_and_removes_a_source() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 6,
        failures: [("ds_0002".to_string(), Failure::NotFound)].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let id = unique_source_id("cli");
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("source.json");
    let spec = serde_json::json!({"id": id, "protocol": "erddap", "base_url": fixture.base_url(),
        "schedule": "cron(0 3 * * ? *)", "internal": true});
    std::fs::write(&file, spec.to_string()).unwrap();
    let file = file.display().to_string();

    assert!(ok(&trawl(&["sources", "add", &file]).await).contains(&format!("added source {id}")));
    refused(&trawl(&["sources", "add", &file]).await, "exists");
    let listed = json(&trawl(&["--json", "sources", "list"]).await);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["source"]["id"] == id.as_str()));
    let table = ok(&trawl(&["sources", "list"]).await);
    assert!(table.starts_with("SOURCE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("erddap")),
        "{table}"
    );

    // A bad file is refused with the field named, and nothing changes.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, serde_json::json!({"id": id, "protocol": "erddap", "base_url": "ftp://x", "schedule": "cron(0 3 * * ? *)"}).to_string()).unwrap();
    refused(
        &trawl(&["sources", "update", &bad.display().to_string()]).await,
        "base_url",
    );

    // Harvest now: the session starts from the CLI, the (played) functions finish it.
    let started = json(&trawl(&["--json", "run", &id]).await);
    let session_id = started["started"][0].as_str().unwrap().to_string();
    runner
        .run_until_closed(std::slice::from_ref(&session_id), Duration::from_secs(120))
        .await
        .unwrap();
    let session = json(&trawl(&["--json", "session", &session_id]).await);
    assert_eq!(session["session"]["status"], "partially_failed");
    assert_eq!(session["session"]["counters"]["harvested"], 5);
    assert_eq!(session["summary"]["reasons"]["NOT_FOUND"], 1);
    let text = ok(&trawl(&["session", &session_id]).await);
    assert!(
        text.contains("resources  total 6, harvested 5, unchanged 0, failed 1"),
        "{text}"
    );
    assert!(text.contains("listing    complete (6 listed)"), "{text}");

    let resource = ok(&trawl(&["resource", &id, "ds_0002"]).await);
    assert!(
        resource.contains("last       failed (NOT_FOUND"),
        "{resource}"
    );
    assert!(
        resource.contains("/info/ds_0002/index.json"),
        "the request URL: {resource}"
    );
    refused(&trawl(&["abort", &session_id]).await, "not running");
    assert!(json(&trawl(&["--json", "dlq", "list"]).await).is_array());

    let sessions = ok(&trawl(&["sessions", &id]).await);
    assert!(sessions.starts_with("SESSION"), "{sessions}");
    assert!(
        sessions
            .lines()
            .any(|l| l.starts_with(&session_id) && l.contains("partially_failed")),
        "{sessions}"
    );

    // A dry run: reachable, counted, one resource fetched, nothing written.
    let before = json(&trawl(&["--json", "sources", "show", &id]).await);
    let check = json(&trawl(&["--json", "check", &id]).await);
    assert_eq!(check["reachable"], true);
    assert_eq!(check["resources_listed"], 6);
    assert_eq!(check["sample_resource"], "ds_0001");
    assert!(check["estimated_seconds"].as_f64().is_some(), "{check}");
    assert_eq!(
        json(&trawl(&["--json", "sources", "show", &id]).await),
        before
    );
    assert_eq!(
        json(&trawl(&["--json", "sessions", &id]).await)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Harvest a selection now: only the named datasets, one of them unknown upstream.
    let selected = json(
        &trawl(&[
            "--json",
            "run",
            &id,
            "--resources",
            "ds_0003",
            "no_such_dataset",
        ])
        .await,
    );
    let selection_id = selected["started"][0].as_str().unwrap().to_string();
    runner
        .run_until_closed(
            std::slice::from_ref(&selection_id),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let selection = json(&trawl(&["--json", "session", &selection_id]).await);
    assert_eq!(selection["session"]["trigger"], "selection");
    let c = &selection["session"]["counters"];
    assert_eq!(
        (
            c["total"].as_u64(),
            c["unchanged"].as_u64(),
            c["failed"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert!(selection["summary"]["stale"]["skipped"]
        .as_str()
        .is_some_and(|s| s.contains("selection")));
    let text = ok(&trawl(&["session", &selection_id]).await);
    assert!(
        text.contains("listing    a selection of 2 named resources"),
        "{text}"
    );
    refused(&trawl(&["run", &id, "--resources", ""]).await, "empty id");

    assert!(ok(&trawl(&["sources", "remove", &id]).await).contains("removed"));
    refused(&trawl(&["sources", "show", &id]).await, "no source");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_source_added_again_starts_clean_and_its_session_says_what_changed() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let id = unique_source_id("purge");
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("source.json");
    let spec = serde_json::json!({"id": id, "protocol": "erddap", "base_url": fixture.base_url(),
        "schedule": "cron(0 3 * * ? *)", "internal": true});
    std::fs::write(&file, spec.to_string()).unwrap();
    let file = file.display().to_string();
    let harvest = || async {
        ok(&trawl(&["sources", "add", &file]).await);
        let started = json(&trawl(&["--json", "run", &id]).await);
        let session_id = started["started"][0].as_str().unwrap().to_string();
        runner
            .run_until_closed(std::slice::from_ref(&session_id), Duration::from_secs(120))
            .await
            .unwrap();
        session_id
    };

    let first = harvest().await;
    let changes = json(&trawl(&["--json", "session", &first, "--changes"]).await);
    assert_eq!(changes["changes"]["added"]["count"], 5, "{changes}");
    let text = ok(&trawl(&["session", &first, "--changes"]).await);
    assert!(
        text.starts_with("added 5, changed 0, removed 0, restored 0"),
        "{text}"
    );

    let purged = json(&trawl(&["--json", "sources", "remove", &id, "--purge"]).await);
    assert_eq!(purged["purged"]["states"], 5, "{purged}");
    // Five records, five raw responses, the batch logs and the session's documents.
    assert!(
        purged["purged"]["objects"].as_u64().unwrap() > 10,
        "{purged}"
    );
    refused(&trawl(&["sources", "show", &id]).await, "no source");
    refused(&trawl(&["resource", &id, "ds_0001"]).await, "ds_0001");

    let second = harvest().await;
    let session = json(&trawl(&["--json", "session", &second]).await);
    assert_eq!(
        session["session"]["counters"]["harvested"], 5,
        "all new again"
    );
    assert_eq!(session["session"]["counters"]["unchanged"], 0);
    let sessions = json(&trawl(&["--json", "sessions", &id]).await);
    assert_eq!(
        sessions.as_array().unwrap().len(),
        1,
        "the old session is not listed"
    );

    ok(&trawl(&["sources", "remove", &id, "--purge"]).await);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_keeping_raw_responses_in_batches_shows_each_one_s_exact_bytes() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 12,
        ..Default::default()
    })
    .await
    .unwrap();
    let id = unique_source_id("cli-raw");
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("source.json");
    let spec = serde_json::json!({"id": id, "protocol": "erddap", "base_url": fixture.base_url(),
        "schedule": "cron(0 3 * * ? *)", "internal": true, "options": {"raw": "batch"}});
    std::fs::write(&file, spec.to_string()).unwrap();
    ok(&trawl(&["sources", "add", &file.display().to_string()]).await);

    let started = json(&trawl(&["--json", "run", &id]).await);
    let session_id = started["started"][0].as_str().unwrap().to_string();
    runner
        .run_until_closed(std::slice::from_ref(&session_id), Duration::from_secs(120))
        .await
        .unwrap();
    let session = json(&trawl(&["--json", "session", &session_id]).await);
    assert_eq!(session["session"]["counters"]["harvested"], 12);

    for ds in ["ds_0001", "ds_0007", "ds_0012"] {
        let shown = ok(&trawl(&["resource", &id, ds]).await);
        let raw_line = shown
            .lines()
            .find(|l| l.starts_with("raw "))
            .unwrap_or_else(|| panic!("{shown}"));
        assert!(
            raw_line.contains(&format!("raw/{id}/batches/")) && raw_line.contains(" bytes "),
            "a range of a batch's object: {raw_line}"
        );
        let served = reqwest::get(format!("{}/info/{ds}/index.json", fixture.base_url()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let raw = trawl(&["resource", &id, ds, "--raw"]).await;
        assert!(raw.status.success(), "{raw:?}");
        assert_eq!(raw.stdout, served.to_vec(), "{ds}: exactly its bytes");
    }
}
