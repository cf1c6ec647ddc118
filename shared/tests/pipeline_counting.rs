//! How a session counts, against the in-memory adapters and a fixture ERDDAP server over real
//! HTTP: every resource once whatever the deliveries, unchanged content written nowhere, one
//! session per source at a time, a batch counted together, an abort counting what remains.

mod common;

use common::{erddap_world, sqs_event, t};
use std::time::Duration;
use trawl::model::{Outcome, SessionStatus};
use trawl::pipeline::finalize::{finalize_session, Finalized};
use trawl::pipeline::harvest::handle_message;
use trawl::pipeline::schedule::run_now;
use trawl::ports::{ObjectStore, ResourceStates, SessionLedger, SourceRegistry};
use trawl_fixtures::Failure;

#[tokio::test]
async fn a_session_counts_every_resource_once_and_closes_once() {
    let w = erddap_world(
        10,
        &[
            ("ds_0002", Failure::NotFound),
            ("ds_0005", Failure::ServerError),
        ],
    )
    .await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(report.started, ["src@20261122T120000Z"]);
    assert_eq!(w.queue.len(), 10);
    let id = &report.started[0];

    w.drain().await;
    let s = w.session(id).await;
    assert_eq!(
        (
            s.counters.total,
            s.counters.harvested,
            s.counters.failed,
            s.counters.remaining
        ),
        (10, 8, 2, 0)
    );
    assert_eq!(
        w.fixture.requests("/erddap/info/ds_0005/"),
        3,
        "retried up to max_receive_count"
    );
    assert_eq!(w.objects.keys("records/src/").len(), 8);

    assert_eq!(
        finalize_session(&w.svc, id).await.unwrap(),
        Finalized::Closed(SessionStatus::PartiallyFailed)
    );
    assert_eq!(
        finalize_session(&w.svc, id).await.unwrap(),
        Finalized::AlreadyClosed
    );
    assert!(w
        .store
        .get_source("src")
        .await
        .unwrap()
        .unwrap()
        .running_session
        .is_none());
    assert_eq!(
        w.objects
            .keys("sessions/src/20261122T120000Z/summary.json")
            .len(),
        1
    );
}

#[tokio::test]
async fn handling_every_message_twice_changes_no_counter() {
    let w = erddap_world(10, &[("ds_0003", Failure::Malformed)]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    w.drain_handling_twice().await;
    let s = w.session(&report.started[0]).await;
    assert_eq!(
        (
            s.counters.total,
            s.counters.harvested,
            s.counters.failed,
            s.counters.remaining
        ),
        (10, 9, 1, 0)
    );
}

#[tokio::test]
async fn unchanged_content_writes_no_record_and_changed_content_does() {
    let w = erddap_world(4, &[]).await;
    let first = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    w.drain().await;
    finalize_session(&w.svc, &first.started[0]).await.unwrap();
    let before = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();

    w.fixture.bump_version("ds_0001");
    let objects_before = w.objects.keys("");
    let second = run_now(&w.svc, "src", t("2026-11-23T12:00:00Z"))
        .await
        .unwrap();
    w.drain().await;
    let s = w.session(&second.started[0]).await;
    assert_eq!((s.counters.harvested, s.counters.unchanged), (1, 3));
    // Besides the session's own listing page, only the changed dataset wrote anything:
    // its record, raw response and log. The three unchanged ones wrote nothing at all.
    let written: Vec<String> = w
        .objects
        .keys("")
        .into_iter()
        .filter(|k| !objects_before.contains(k) && !k.starts_with("sessions/"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].starts_with("logs/src/20261123T120000Z/ds_0001-"),
        "{written:?}"
    );
    let unchanged = w
        .store
        .get_resource("src", "ds_0002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.history.len(), 2);
    assert!(
        unchanged
            .log_key
            .as_deref()
            .unwrap()
            .starts_with("logs/src/20261122T120000Z/"),
        "the newest log is still the first session's"
    );
    let after = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(before.content_hash, after.content_hash);
    assert_eq!(after.last_outcome, Outcome::Harvested);
    assert_eq!(
        w.store
            .get_resource("src", "ds_0002")
            .await
            .unwrap()
            .unwrap()
            .last_outcome,
        Outcome::Unchanged
    );
}

#[tokio::test]
async fn a_source_with_a_running_session_is_not_started_again() {
    let w = erddap_world(2, &[]).await;
    let first = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(first.started.len(), 1);
    let other = run_now(&w.svc, "src", t("2026-11-22T13:00:00Z"))
        .await
        .unwrap();
    assert_eq!(other.busy, ["src"]);
    let same = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(same.already_started, ["src@20261122T120000Z"]);
    assert_eq!(w.queue.len(), 2, "nothing sent twice");
}

/// An SQS batch is counted together (`pipeline::tally`): one log object for the batch's
/// session with a line per attempt, each state naming it, and a copy of a message inside
/// the same batch counting nothing (its attempt is logged, not counted).
#[tokio::test]
async fn a_batch_is_logged_and_counted_together_and_a_copy_in_it_counts_nothing() {
    let w = erddap_world(6, &[("ds_0004", Failure::NotFound)]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let session_id = report.started[0].clone();
    let mut bodies = w.list_into_bodies().await;
    assert_eq!(bodies.len(), 6);
    bodies.push(bodies[0].clone());
    let event = sqs_event(bodies.iter().map(|body| (body.as_str(), 1)));
    let response = trawl::handlers::harvester(&w.svc, event).await;
    assert!(response.batch_item_failures.is_empty());

    let c = w.session(&session_id).await.counters;
    assert_eq!((c.harvested, c.failed, c.remaining), (5, 1, 0), "{c:?}");
    let logs = w.objects.keys("logs/");
    assert_eq!(logs.len(), 1, "one log object for the batch: {logs:?}");
    let body = w.objects.get(&logs[0]).await.unwrap().unwrap();
    let lines: Vec<serde_json::Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7, "a line per attempt, the copy's included");
    let copied: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let copies = lines
        .iter()
        .filter(|l| l["resource_id"] == copied["resource_id"])
        .count();
    assert_eq!(copies, 2, "{copied}");
    for id in ["ds_0001", "ds_0004", "ds_0006"] {
        let state = w.store.get_resource("src", id).await.unwrap().unwrap();
        assert_eq!(state.log_key.as_deref(), Some(logs[0].as_str()));
        let line = trawl::documents::ResourceLog::find(&body, id).unwrap();
        assert_eq!(line.resource_id, id);
        assert_eq!(
            line.outcome,
            if id == "ds_0004" {
                Outcome::Failed
            } else {
                Outcome::Harvested
            }
        );
    }
}

#[tokio::test]
async fn an_aborted_session_counts_its_remaining_work_as_aborted_without_fetching() {
    let w = erddap_world(6, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    for _ in 0..2 {
        let m = w.queue.pop().unwrap();
        handle_message(&w.svc, "m", &m.to_json(), 1).await;
    }
    assert!(w.store.request_abort(&id).await.unwrap());
    // Harvesters may remember "not aborted" for a moment; wait that out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fetched_before = w.fixture.requests("/erddap/info/");
    w.drain().await;
    assert_eq!(
        w.fixture.requests("/erddap/info/"),
        fetched_before,
        "nothing fetched after the abort"
    );
    let s = w.session(&id).await;
    assert_eq!(
        (
            s.counters.harvested,
            s.counters.failed,
            s.counters.remaining
        ),
        (2, 4, 0)
    );
    assert_eq!(
        finalize_session(&w.svc, &id).await.unwrap(),
        Finalized::Closed(SessionStatus::Aborted)
    );
    assert!(
        !w.store.request_abort(&id).await.unwrap(),
        "a closed session cannot be aborted"
    );
    assert!(w
        .store
        .get_source("src")
        .await
        .unwrap()
        .unwrap()
        .running_session
        .is_none());
    let summary: serde_json::Value = serde_json::from_slice(
        &w.objects
            .get("sessions/src/20261122T120000Z/summary.json")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["status"], "aborted");
    assert_eq!(summary["reasons"]["ABORTED"], 4);
}
