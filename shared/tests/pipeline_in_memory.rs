//! The pipeline stages against the in-memory adapters and a fixture ERDDAP server over real
//! HTTP: the accounting rules, without an emulator.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use trawl::local::{MemoryObjects, MemoryQueue, MemoryStore};
use trawl::messages::WorkMessage;
use trawl::model::{Outcome, SessionStatus, SourceOptions, SourceSpec, StaleAction};
use trawl::pipeline::finalize::{finalize_session, Finalized};
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::listing::{list_page, PageResult};
use trawl::pipeline::schedule::run_now;
use trawl::pipeline::stale::{self, StaleReport};
use trawl::pipeline::{Services, Settings};
use trawl::politeness::MemoryGate;
use trawl::ports::{ObjectStore, WorkQueue};
use trawl::ports::{ResourceStates, SessionLedger, SourceRegistry};
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

struct World {
    svc: Services,
    store: Arc<MemoryStore>,
    objects: Arc<MemoryObjects>,
    queue: Arc<MemoryQueue>,
    fixture: ErddapFixture,
}

async fn world(datasets: usize, failures: &[(&str, Failure)]) -> World {
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets,
        failures: failures
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let store = Arc::new(MemoryStore::default());
    let objects = Arc::new(MemoryObjects::default());
    let queue = Arc::new(MemoryQueue::default());
    let settings = Settings {
        max_receive_count: 3,
        http_timeout: Duration::from_millis(500),
        ..Settings::default()
    };
    let svc = Services::new(store.clone(), objects.clone(), queue.clone(), settings);
    let source = SourceSpec {
        id: "src".into(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    store.put_source(&source).await.unwrap();
    World {
        svc,
        store,
        objects,
        queue,
        fixture,
    }
}

impl World {
    async fn session(&self, id: &str) -> trawl::model::Session {
        self.store
            .get_session(id)
            .await
            .unwrap()
            .expect("session exists")
    }
}

/// Drains the queue like SQS would: retried messages come back with a higher receive count.
/// With `twice`, every message is handled a second time.
async fn drain(w: &World, twice: bool) {
    let mut receives: HashMap<String, u32> = HashMap::new();
    while let Some(message) = w.queue.pop() {
        let body = message.to_json();
        let count = receives.entry(body.clone()).or_insert(0);
        *count += 1;
        let disposition = handle_message(&w.svc, "m", &body, *count).await;
        if twice {
            handle_message(&w.svc, "m", &body, *count).await;
        }
        if disposition == Disposition::Retry {
            w.queue.send(&[message]).await.unwrap();
        }
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_session_counts_every_resource_once_and_closes_once() {
    let w = world(
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

    drain(&w, false).await;
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
    let w = world(10, &[("ds_0003", Failure::Malformed)]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    drain(&w, true).await;
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
    let w = world(4, &[]).await;
    let first = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    drain(&w, false).await;
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
    drain(&w, false).await;
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
    let w = world(2, &[]).await;
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

#[tokio::test]
async fn a_redelivered_listing_page_sends_nothing_new() {
    let w = world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = &report.started[0];
    let source =
        trawl::messages::SourceRef::from(&w.store.get_source("src").await.unwrap().unwrap().source);
    let again = list_page(&w.svc, id, &source, 1, None, false)
        .await
        .unwrap();
    assert!(matches!(again, PageResult::AlreadyListed), "{again:?}");
    assert_eq!(w.queue.len(), 3);
    assert_eq!(w.session(id).await.counters.total, 3);
}

/// 1,999 datasets and the pseudo-dataset fill exactly two pages of `info/index`: the third
/// request gets ERDDAP's "no matching results", which ends the listing rather than failing it.
#[tokio::test]
async fn a_catalog_larger_than_a_page_is_listed_page_by_page_and_counts_as_complete() {
    let w = world(1_999, &[]).await;
    let first = harvest(&w, "2026-11-01").await;
    assert_eq!(first.status, SessionStatus::Succeeded, "{first:?}");
    assert_eq!(first.listing_error, None);
    assert_eq!(first.listing.problems, Vec::<String>::new());
    assert_eq!(
        (first.counters.total, first.counters.harvested),
        (1_999, 1_999)
    );
    assert_eq!(w.fixture.requests("/erddap/info/index.json"), 3);
    assert_eq!(w.fixture.requests("/erddap/tabledap/"), 0);

    // A dataset removed while the listing is between pages shifts the ones after it: the
    // first id of page 2 moves onto page 1, already listed, and this listing misses it. That
    // costs it a tombstone, never a deletion: the next listing finds it again.
    let order = w.fixture.dataset_ids_in_listing_order();
    let (removed, shifted) = (order[10].clone(), order[999].clone());
    let report = run_now(&w.svc, "src", t("2026-11-02T12:00:00Z"))
        .await
        .unwrap();
    w.fixture.remove_dataset(&removed);
    drain(&w, false).await;
    finalize_session(&w.svc, &report.started[0]).await.unwrap();
    let second = w.session(&report.started[0]).await;
    // Page 1 still had the removed one (its fetch then finds it gone); page 2 lost `shifted`.
    assert_eq!(second.counters.total, 1_998, "{second:?}");
    let stale = stale_report(&w, &second).await;
    assert_eq!(
        (stale.missing, stale.tombstoned, stale.deleted),
        (1, vec![shifted.clone()], vec![])
    );

    let third = harvest(&w, "2026-11-03").await;
    assert_eq!(third.counters.total, 1_998);
    let stale = stale_report(&w, &third).await;
    assert_eq!(
        (stale.missing, stale.tombstoned, stale.deleted),
        (1, vec![removed], vec![])
    );
    let state = w
        .store
        .get_resource("src", &shifted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((state.missing_listings, state.deleted_at), (0, None));
}

#[tokio::test]
async fn a_listing_that_keeps_failing_closes_the_session_as_failed() {
    let w = world(3, &[]).await;
    // Point the source at a path where info/index does not exist: a permanent 404.
    let mut entry = w.store.get_source("src").await.unwrap().unwrap().source;
    entry.base_url = format!("{}/missing", w.fixture.base_url());
    w.store.put_source(&entry).await.unwrap();
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = &report.started[0];
    let s = w.session(id).await;
    assert_eq!(s.counters.remaining, 0);
    assert!(
        s.listing_error
            .as_deref()
            .is_some_and(|e| e.contains("NOT_FOUND")),
        "{s:?}"
    );
    assert_eq!(
        finalize_session(&w.svc, id).await.unwrap(),
        Finalized::Closed(SessionStatus::Failed)
    );
}

#[tokio::test]
async fn an_unreadable_message_is_set_aside_not_retried() {
    let w = world(1, &[]).await;
    let d = handle_message(&w.svc, "msg-1", "{not json", 1).await;
    assert_eq!(d, Disposition::Done);
    let kept = w.objects.keys("rejected/");
    assert_eq!(kept.len(), 1);
    assert!(kept[0].ends_with("/msg-1.json"));
    let unknown = WorkMessage::Resource {
        session_id: "nope@1".into(),
        source: trawl::messages::SourceRef::from(
            &w.store.get_source("src").await.unwrap().unwrap().source,
        ),
        resource_id: "ds_0001".into(),
        deferrals: 0,
    };
    // A message for a session with no pending marker counts nothing.
    assert_eq!(
        handle_message(&w.svc, "m", &unknown.to_json(), 1).await,
        Disposition::Done
    );
    assert!(w.store.get_session("nope@1").await.unwrap().is_none());
}

#[tokio::test]
async fn a_remote_that_keeps_timing_out_is_retried_then_counted_as_failed() {
    // The client times out at 500 ms; this dataset answers after 800 ms.
    let w = world(3, &[("ds_0002", Failure::Slow(Duration::from_millis(800)))]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    drain(&w, false).await;
    let s = w.session(&report.started[0]).await;
    assert_eq!(
        (
            s.counters.harvested,
            s.counters.failed,
            s.counters.remaining
        ),
        (2, 1, 0)
    );
    let state = w
        .store
        .get_resource("src", "ds_0002")
        .await
        .unwrap()
        .unwrap();
    let reason = state.last_reason.unwrap();
    assert_eq!(reason.code, trawl::model::ReasonCode::RetriesExhausted);
    assert!(reason.detail.contains("TIMEOUT"), "{reason}");
    assert_eq!(w.fixture.requests("/erddap/info/ds_0002/"), 3);
}

#[tokio::test]
async fn a_source_not_marked_internal_cannot_reach_loopback_by_address_or_by_name() {
    let w = world(2, &[]).await;
    let mut source = w.store.get_source("src").await.unwrap().unwrap().source;
    let by_name = w.fixture.base_url().replace("127.0.0.1", "localhost");
    for (i, base_url) in [w.fixture.base_url(), by_name].into_iter().enumerate() {
        source.internal = false;
        source.base_url = base_url;
        w.store.put_source(&source).await.unwrap();
        let at = t("2026-11-22T12:00:00Z") + chrono::Duration::hours(i as i64);
        let report = run_now(&w.svc, "src", at).await.unwrap();
        let id = &report.started[0];
        let s = w.session(id).await;
        let error = s.listing_error.clone().unwrap_or_default();
        assert!(
            error.contains("BLOCKED_ADDRESS"),
            "{}: {error}",
            source.base_url
        );
        assert_eq!(
            finalize_session(&w.svc, id).await.unwrap(),
            Finalized::Closed(SessionStatus::Failed)
        );
    }
    assert_eq!(w.fixture.requests("/"), 0, "no request reached the server");
}

#[tokio::test]
async fn one_bad_body_in_a_batch_fails_nothing_and_a_transient_failure_reports_only_itself() {
    let w = world(3, &[("ds_0002", Failure::ServerError)]).await;
    run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let mut records = Vec::new();
    let mut i = 0;
    let mut broken_message = String::new();
    while let Some(m) = w.queue.pop() {
        i += 1;
        if matches!(&m, WorkMessage::Resource { resource_id, .. } if resource_id == "ds_0002") {
            broken_message = format!("id-{i}");
        }
        records.push(
            serde_json::json!({"messageId": format!("id-{i}"), "body": m.to_json(),
            "attributes": {"ApproximateReceiveCount": "1"}}),
        );
    }
    records.push(serde_json::json!({"messageId": "garbage", "body": "<xml/>", "attributes": {"ApproximateReceiveCount": "1"}}));
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    let response = trawl::handlers::harvester(&w.svc, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    // Only the 500 (ds_0002) is handed back; the garbage is set aside.
    assert_eq!(failed, [broken_message.as_str()]);
    assert_eq!(w.objects.keys("rejected/").len(), 1);
}

#[tokio::test]
async fn a_flaky_listing_is_retried_through_the_queue_as_a_list_page() {
    let w = world(4, &[("allDatasets", Failure::ServerError)]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    // The scheduler could not list: page 1 went to the queue instead.
    assert_eq!(w.queue.len(), 1);
    let page = w.queue.pop().unwrap();
    assert!(
        matches!(page, WorkMessage::ListPage { page: 1, .. }),
        "{page:?}"
    );
    // First receive still fails and is retried; then the server recovers.
    assert_eq!(
        handle_message(&w.svc, "p", &page.to_json(), 1).await,
        Disposition::Retry
    );
    w.fixture.set_failure("allDatasets", None);
    assert_eq!(
        handle_message(&w.svc, "p", &page.to_json(), 2).await,
        Disposition::Done
    );
    assert_eq!(w.queue.len(), 4);
    drain(&w, false).await;
    assert_eq!(
        finalize_session(&w.svc, &id).await.unwrap(),
        Finalized::Closed(SessionStatus::Succeeded)
    );
    assert_eq!(w.session(&id).await.counters.harvested, 4);
}

#[tokio::test]
async fn a_listing_failing_on_its_last_receive_closes_the_session_as_failed() {
    let w = world(4, &[("allDatasets", Failure::ServerError)]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    drain(&w, false).await;
    let s = w.session(&id).await;
    assert_eq!((s.counters.total, s.counters.remaining), (0, 0));
    assert!(
        s.listing_error
            .as_deref()
            .is_some_and(|e| e.contains("RETRIES_EXHAUSTED")),
        "{s:?}"
    );
    assert_eq!(
        finalize_session(&w.svc, &id).await.unwrap(),
        Finalized::Closed(SessionStatus::Failed)
    );
}

#[tokio::test]
async fn the_watchdog_counts_lost_work_and_the_session_still_closes_once() {
    let w = world(5, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    // Two messages are harvested; three are lost (never delivered).
    let mut lost = Vec::new();
    for i in 0..5 {
        let m = w.queue.pop().unwrap();
        if i < 2 {
            handle_message(&w.svc, "m", &m.to_json(), 1).await;
        } else {
            lost.push(m);
        }
    }
    let deadline = chrono::Duration::minutes(i64::from(w.svc.settings.session_deadline_minutes));
    let early = trawl::pipeline::watchdog::sweep(&w.svc, Utc::now())
        .await
        .unwrap();
    assert!(early.expired.is_empty(), "not past the deadline yet");

    let late = Utc::now() + deadline + chrono::Duration::minutes(1);
    let sweep = trawl::pipeline::watchdog::sweep(&w.svc, late)
        .await
        .unwrap();
    assert_eq!(sweep.expired, std::slice::from_ref(&id));
    assert_eq!(sweep.lost_resources, 3);
    let s = w.session(&id).await;
    assert_eq!(
        (
            s.counters.harvested,
            s.counters.failed,
            s.counters.remaining
        ),
        (2, 3, 0)
    );
    // Nothing remains, so the sweep closes it too (as the stream's record will again).
    assert_eq!(sweep.closed, std::slice::from_ref(&id));
    assert_eq!(s.status, SessionStatus::PartiallyFailed);
    assert_eq!(
        finalize_session(&w.svc, &id).await.unwrap(),
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
    // The listing comes in the server's order (ERDDAP sorts by title), so ask the messages.
    let lost_ids: Vec<String> = lost
        .iter()
        .map(|m| match m {
            WorkMessage::Resource { resource_id, .. } => resource_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    for lost_id in &lost_ids {
        let state = w.store.get_resource("src", lost_id).await.unwrap().unwrap();
        assert_eq!(
            state.last_reason.unwrap().code,
            trawl::model::ReasonCode::Lost
        );
    }

    // A lost message that turns up after all counts nothing.
    assert_eq!(
        handle_message(&w.svc, "m", &lost[0].to_json(), 1).await,
        Disposition::Done
    );
    let after = w.session(&id).await;
    assert_eq!(after.counters, s.counters);
    assert_eq!(
        w.fixture
            .requests(&format!("/erddap/info/{}/", lost_ids[0])),
        0
    );
    assert!(trawl::pipeline::watchdog::sweep(&w.svc, late)
        .await
        .unwrap()
        .expired
        .is_empty());
}

#[tokio::test]
async fn the_watchdog_winds_up_a_session_whose_first_page_never_arrived() {
    let w = world(2, &[]).await;
    // A scheduler that died right after creating the session.
    let session = trawl::model::Session::start("src", t("2026-11-22T12:00:00Z"), Utc::now());
    w.store.create_session(&session).await.unwrap();
    let late = Utc::now() + chrono::Duration::days(1);
    let sweep = trawl::pipeline::watchdog::sweep(&w.svc, late)
        .await
        .unwrap();
    assert_eq!((sweep.lost_pages, sweep.lost_resources), (1, 0));
    let s = w.session(&session.id).await;
    assert_eq!(s.counters.remaining, 0);
    assert!(
        s.listing_error
            .as_deref()
            .is_some_and(|e| e.contains("LOST")),
        "{s:?}"
    );
    assert_eq!(sweep.closed, std::slice::from_ref(&session.id));
    assert_eq!(s.status, SessionStatus::Failed);
    assert_eq!(
        finalize_session(&w.svc, &session.id).await.unwrap(),
        Finalized::AlreadyClosed
    );
}

#[tokio::test]
async fn an_aborted_session_counts_its_remaining_work_as_aborted_without_fetching() {
    let w = world(6, &[]).await;
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
    drain(&w, false).await;
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

/// One whole session on `day` (a date): start, drain, finalize.
async fn harvest(w: &World, day: &str) -> trawl::model::Session {
    let report = run_now(&w.svc, "src", t(&format!("{day}T12:00:00Z")))
        .await
        .unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    drain(w, false).await;
    finalize_session(&w.svc, &report.started[0]).await.unwrap();
    w.session(&report.started[0]).await
}

async fn stale_report(w: &World, session: &trawl::model::Session) -> StaleReport {
    stale::stored_report(&w.svc, session)
        .await
        .unwrap()
        .expect("a stale report beside the summary")
}

async fn set_options(w: &World, options: SourceOptions) {
    let mut source = w.store.get_source("src").await.unwrap().unwrap().source;
    source.options = options;
    w.store.put_source(&source).await.unwrap();
}

#[tokio::test]
async fn a_dataset_gone_upstream_is_tombstoned_then_moved_aside_after_two_complete_listings() {
    let w = world(10, &[]).await;
    harvest(&w, "2026-11-01").await;
    w.fixture.remove_dataset("ds_0004");

    // First listing without it: a tombstone, nothing deleted. A repeated check (a
    // redelivered finalizer) does not advance the tombstone.
    let report = run_now(&w.svc, "src", t("2026-11-02T12:00:00Z"))
        .await
        .unwrap();
    drain(&w, false).await;
    let second = w.session(&report.started[0]).await;
    stale::settle(&w.svc, &second).await.unwrap();
    finalize_session(&w.svc, &second.id).await.unwrap();
    let stale = stale_report(&w, &second).await;
    assert_eq!(
        (
            stale.known,
            stale.missing,
            stale.tombstoned.clone(),
            stale.deleted.len()
        ),
        (10, 1, vec!["ds_0004".to_string()], 0)
    );
    let state = w
        .store
        .get_resource("src", "ds_0004")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.missing_listings, 1);
    assert!(state.is_live());
    assert_eq!(
        w.objects.keys("records/src/ds_0004").len(),
        1,
        "kept for now"
    );

    // Second consecutive complete listing without it: moved under deleted/.
    let third = harvest(&w, "2026-11-03").await;
    let stale = stale_report(&w, &third).await;
    assert_eq!(stale.deleted, ["ds_0004"]);
    assert!(w.objects.keys("records/src/ds_0004").is_empty());
    assert!(w.objects.keys("raw/src/ds_0004").is_empty());
    assert_eq!(w.objects.keys("deleted/records/src/ds_0004.json").len(), 1);
    assert_eq!(w.objects.keys("deleted/raw/src/ds_0004.json").len(), 1);
    let state = w
        .store
        .get_resource("src", "ds_0004")
        .await
        .unwrap()
        .unwrap();
    assert!(!state.is_live());
    assert_eq!(
        state.record_key.as_deref(),
        Some("deleted/records/src/ds_0004.json")
    );
    let summary: serde_json::Value = serde_json::from_slice(
        &w.objects
            .get("sessions/src/20261103T120000Z/summary.json")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["stale"]["deleted"], serde_json::json!(["ds_0004"]));

    // A deleted resource is no longer known: the next listing finds nothing missing.
    let fourth = harvest(&w, "2026-11-04").await;
    let stale = stale_report(&w, &fourth).await;
    assert_eq!((stale.known, stale.missing), (9, 0));
}

#[tokio::test]
async fn a_resource_listed_again_loses_its_tombstone() {
    let w = world(6, &[]).await;
    harvest(&w, "2026-11-01").await;
    let hide = SourceOptions {
        exclude: vec!["ds_0002".into()],
        ..SourceOptions::default()
    };
    set_options(&w, hide.clone()).await;
    harvest(&w, "2026-11-02").await;
    let state = w
        .store
        .get_resource("src", "ds_0002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.missing_listings, 1);

    set_options(&w, SourceOptions::default()).await;
    harvest(&w, "2026-11-03").await;
    let state = w
        .store
        .get_resource("src", "ds_0002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((state.missing_listings, state.missing_session), (0, None));

    // Missing again: the count starts over, so it is not deleted yet.
    set_options(&w, hide).await;
    let session = harvest(&w, "2026-11-04").await;
    assert_eq!(stale_report(&w, &session).await.tombstoned, ["ds_0002"]);
    assert!(w
        .store
        .get_resource("src", "ds_0002")
        .await
        .unwrap()
        .unwrap()
        .is_live());
}

#[tokio::test]
async fn a_listing_that_shrank_by_more_than_half_deletes_nothing_and_says_why() {
    let w = world(10, &[]).await;
    harvest(&w, "2026-11-01").await;
    for i in 1..=6 {
        w.fixture.remove_dataset(&format!("ds_{i:04}"));
    }
    for day in ["2026-11-02", "2026-11-03", "2026-11-04"] {
        let session = harvest(&w, day).await;
        let stale = stale_report(&w, &session).await;
        assert_eq!((stale.known, stale.missing), (10, 6));
        assert!(stale.tombstoned.is_empty() && stale.deleted.is_empty());
        let why = stale.skipped.unwrap();
        assert!(why.contains("max_shrink_percent"), "{why}");
    }
    assert_eq!(w.objects.keys("records/src/").len(), 10);
    assert_eq!(
        w.store
            .get_resource("src", "ds_0001")
            .await
            .unwrap()
            .unwrap()
            .missing_listings,
        0
    );
}

#[tokio::test]
async fn a_failed_listing_deletes_nothing() {
    let w = world(5, &[]).await;
    harvest(&w, "2026-11-01").await;
    w.fixture
        .set_failure(trawl_fixtures::ALL_DATASETS, Some(Failure::ServerError));
    for day in ["2026-11-02", "2026-11-03"] {
        let session = harvest(&w, day).await;
        assert_eq!(session.status, SessionStatus::Failed);
        let stale = stale_report(&w, &session).await;
        assert!(
            stale
                .skipped
                .as_deref()
                .is_some_and(|s| s.contains("incomplete")),
            "{stale:?}"
        );
        assert_eq!(stale.missing, 0, "nothing was even compared");
    }
    assert_eq!(w.objects.keys("records/src/").len(), 5);
}

#[tokio::test]
async fn a_source_set_to_remove_deletes_for_good_after_its_own_count() {
    let w = world(5, &[]).await;
    set_options(
        &w,
        SourceOptions {
            stale_after_listings: 1,
            on_stale: StaleAction::Remove,
            ..SourceOptions::default()
        },
    )
    .await;
    harvest(&w, "2026-11-01").await;
    w.fixture.remove_dataset("ds_0005");
    let session = harvest(&w, "2026-11-02").await;
    assert_eq!(stale_report(&w, &session).await.deleted, ["ds_0005"]);
    assert!(w.objects.keys("records/src/ds_0005").is_empty());
    assert!(w.objects.keys("deleted/").is_empty());
    let state = w
        .store
        .get_resource("src", "ds_0005")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((state.record_key, state.raw_key), (None, None));
    assert!(state.deleted_at.is_some());
}

#[tokio::test]
async fn a_server_asking_to_wait_defers_the_message_without_burning_receives_then_it_is_counted() {
    let w = world(3, &[("ds_0002", Failure::Throttled(7))]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    // Each deferral is a fresh message (receive count 1) with one more deferral on it.
    let mut seen_deferrals = Vec::new();
    let mut receives: HashMap<String, u32> = HashMap::new();
    while let Some(message) = w.queue.pop() {
        if let WorkMessage::Resource {
            resource_id,
            deferrals,
            ..
        } = &message
        {
            if resource_id == "ds_0002" {
                seen_deferrals.push(*deferrals);
            }
        }
        let body = message.to_json();
        let count = receives.entry(body.clone()).or_insert(0);
        *count += 1;
        if handle_message(&w.svc, "m", &body, *count).await == Disposition::Retry {
            w.queue.send(&[message]).await.unwrap();
        }
    }
    assert_eq!(seen_deferrals, [0, 1, 2, 3, 4, 5, 5, 5]);
    assert_eq!(
        w.fixture.requests("/erddap/info/ds_0002/"),
        u64::from(trawl::pipeline::harvest::MAX_DEFERRALS) + 3,
        "deferred five times, then retried up to max_receive_count"
    );
    let s = w.session(&report.started[0]).await;
    assert_eq!(
        (
            s.counters.harvested,
            s.counters.failed,
            s.counters.remaining
        ),
        (2, 1, 0)
    );
    let reason = w
        .store
        .get_resource("src", "ds_0002")
        .await
        .unwrap()
        .unwrap()
        .last_reason
        .unwrap();
    assert_eq!(
        (reason.code, reason.http_status),
        (trawl::model::ReasonCode::RetriesExhausted, Some(503))
    );
}

/// Every dataset answers slowly, so concurrent requests overlap at the server.
async fn slow_world(datasets: usize) -> World {
    let slow: Vec<(String, Failure)> = (1..=datasets)
        .map(|i| {
            (
                format!("ds_{i:04}"),
                Failure::Slow(Duration::from_millis(150)),
            )
        })
        .collect();
    let slow: Vec<(&str, Failure)> = slow
        .iter()
        .map(|(id, f)| (id.as_str(), f.clone()))
        .collect();
    let mut w = world(datasets, &slow).await;
    w.svc.http = w
        .svc
        .http
        .clone()
        .with_gate(Arc::new(MemoryGate::default()));
    w
}

/// Handles every queued message at once, as many concurrent invocations would; messages to
/// retry come back in the next round with a higher receive count, as SQS would bring them.
async fn harvest_all_at_once(w: &World) {
    let mut round = 0;
    while !w.queue.is_empty() {
        round += 1;
        let mut messages = Vec::new();
        while let Some(m) = w.queue.pop() {
            messages.push(m);
        }
        let handled =
            futures::future::join_all(messages.iter().map(|m| async move {
                (m, handle_message(&w.svc, "m", &m.to_json(), round).await)
            }))
            .await;
        for (m, d) in handled {
            if d == Disposition::Retry {
                w.queue.send(std::slice::from_ref(m)).await.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn requests_in_flight_stay_within_the_sources_limit_however_many_run_at_once() {
    // Without a limit, twelve concurrent messages overlap at the server...
    let w = slow_world(12).await;
    run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    harvest_all_at_once(&w).await;
    assert!(w.fixture.max_concurrent_info_requests() > 2);

    // ... with one, never more than it allows, and everything is still harvested.
    let w = slow_world(12).await;
    set_options(
        &w,
        SourceOptions {
            max_in_flight: Some(2),
            ..SourceOptions::default()
        },
    )
    .await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    harvest_all_at_once(&w).await;
    assert!(w.fixture.max_concurrent_info_requests() <= 2);
    let s = w.session(&report.started[0]).await;
    assert_eq!((s.counters.harvested, s.counters.remaining), (12, 0));
}

#[tokio::test]
async fn requests_per_second_stay_within_the_sources_limit() {
    let w = slow_world(10).await;
    set_options(
        &w,
        SourceOptions {
            requests_per_second: Some(4),
            ..SourceOptions::default()
        },
    )
    .await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // With a 500 ms HTTP timeout as the wait budget, some requests find no room in time:
    // they come back THROTTLED (retryable) and are retried like any transient failure.
    drain(&w, false).await;
    // Within any one second at the server, not per calendar second: paced requests do not
    // bunch up on either side of a second's boundary.
    assert!(w.fixture.max_info_requests_in_a_second() <= 4);
    assert!(
        started.elapsed() >= 9 * trawl::politeness::pace_interval(4),
        "10 requests at 4/s are 9 intervals apart, first to last"
    );
    let s = w.session(&report.started[0]).await;
    assert_eq!(s.counters.remaining, 0);
    assert_eq!(s.counters.harvested + s.counters.failed, 10);
}

/// What a harvester attempt does before it counts: fetch, normalize, write the content.
/// A test stops there to play an attempt that crashed or lost the race to count.
async fn write_content_uncounted(
    w: &World,
    message: &WorkMessage,
) -> trawl::pipeline::content::StoredContent {
    let WorkMessage::Resource {
        source,
        resource_id,
        ..
    } = message
    else {
        panic!("{message:?}")
    };
    let catalog = trawl::protocols::open(source).unwrap();
    let mut requests = Vec::new();
    let mut ctx = trawl::protocols::FetchContext {
        remote: trawl::protocols::Remote {
            http: &w.svc.http,
            source,
            requests: &mut requests,
        },
        inline: &NoInline,
    };
    let Ok(fetched) = catalog.fetch(&mut ctx, resource_id).await else {
        panic!("{resource_id} could not be fetched")
    };
    let record = catalog.normalize(source, resource_id, &fetched).unwrap();
    trawl::pipeline::content::store_content(&w.svc, source, resource_id, &fetched, &record)
        .await
        .unwrap()
}

async fn record_hash(w: &World, key: &str) -> String {
    let body = w.objects.get(key).await.unwrap().expect("record object");
    serde_json::from_slice::<trawl::model::Record>(&body)
        .unwrap()
        .content_hash()
}

fn resource_id_of(message: &WorkMessage) -> String {
    match message {
        WorkMessage::Resource { resource_id, .. } => resource_id.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failure_counted_after_an_uncounted_attempt_wrote_content_keeps_that_content_named() {
    let w = world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = &report.started[0];
    let message = w.queue.pop().unwrap();
    let resource = resource_id_of(&message);

    // The first attempt writes the record, then its invocation dies before counting.
    let written = write_content_uncounted(&w, &message).await;
    // The redelivery meets a server that now fails for good.
    w.fixture.set_failure(&resource, Some(Failure::NotFound));
    assert_eq!(
        handle_message(&w.svc, "m", &message.to_json(), 2).await,
        Disposition::Done
    );

    let state = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.last_outcome, Outcome::Failed);
    assert_eq!(state.content_hash.as_deref(), Some(written.hash.as_str()));
    assert_eq!(
        state.record_key.as_deref(),
        Some(written.record_key.as_str())
    );
    assert_eq!(state.raw_key.as_deref(), Some(written.raw_key.as_str()));
    assert!(w.objects.get(&written.raw_key).await.unwrap().is_some());
    assert_eq!(record_hash(&w, &written.record_key).await, written.hash);
    assert!(
        state.last_harvested_at.is_none(),
        "the failure did not fetch"
    );
    let log = trawl::documents::ResourceLog::find(
        &w.objects
            .get(state.log_key.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap(),
        &state.resource_id,
    )
    .unwrap();
    assert!(log.kept_unclaimed_content);
    let s = w.session(id).await;
    assert_eq!((s.counters.failed, s.counters.harvested), (1, 0));

    // Next session the content is named already: a failure finds nothing unclaimed.
    drain(&w, false).await;
    finalize_session(&w.svc, id).await.unwrap();
    let next = harvest(&w, "2026-11-23").await;
    assert_eq!(next.counters.failed, 1);
    let state = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.content_hash.as_deref(), Some(written.hash.as_str()));
}

#[tokio::test]
async fn an_attempt_that_wrote_content_after_a_copy_counted_a_failure_points_the_state_at_it() {
    let w = world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    let message = w.queue.pop().unwrap();
    let resource = resource_id_of(&message);

    // One copy meets a truncated body and counts a permanent failure; nothing is written.
    w.fixture.set_failure(&resource, Some(Failure::NotFound));
    handle_message(&w.svc, "m", &message.to_json(), 1).await;
    let failed = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.last_outcome, Outcome::Failed);
    assert_eq!(failed.content_hash, None);
    let counters = w.session(&id).await.counters;

    // The other copy had fetched before that and writes its record after the count.
    w.fixture.set_failure(&resource, None);
    let written = write_content_uncounted(&w, &message).await;
    let WorkMessage::Resource { source, .. } = &message else {
        unreachable!()
    };
    // Reconciling for another session touches nothing: that session does not own the state.
    trawl::pipeline::content::reconcile(&w.svc, source, &resource, "src@20261121T120000Z")
        .await
        .unwrap();
    assert_eq!(
        w.store
            .get_resource("src", &resource)
            .await
            .unwrap()
            .unwrap(),
        failed
    );

    trawl::pipeline::content::reconcile(&w.svc, source, &resource, &id)
        .await
        .unwrap();
    let state = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.content_hash.as_deref(), Some(written.hash.as_str()));
    assert_eq!(
        state.record_key.as_deref(),
        Some(written.record_key.as_str())
    );
    assert_eq!(state.last_outcome, Outcome::Failed, "the count stands");
    assert_eq!(state.history, failed.history);
    assert_eq!(w.session(&id).await.counters, counters);

    // A stale compare-and-swap writes nothing.
    assert!(!w.store.replace_resource(&failed, &failed).await.unwrap());
}

/// An SQS batch is counted together (`pipeline::tally`): one log object for the batch's
/// session with a line per attempt, each state naming it, and a copy of a message inside
/// the same batch counting nothing (its attempt is logged, not counted).
#[tokio::test]
async fn a_batch_is_logged_and_counted_together_and_a_copy_in_it_counts_nothing() {
    let w = world(6, &[("ds_0004", Failure::NotFound)]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let session_id = report.started[0].clone();
    let mut bodies = Vec::new();
    while let Some(m) = w.queue.pop() {
        match m {
            WorkMessage::Resource { .. } => bodies.push(m.to_json()),
            page => {
                handle_message(&w.svc, "p", &page.to_json(), 1).await;
            }
        }
    }
    assert_eq!(bodies.len(), 6);
    bodies.push(bodies[0].clone());
    let records: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            serde_json::json!({"messageId": format!("id-{i}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1"}})
        })
        .collect();
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
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
async fn a_listing_page_whose_message_died_is_sent_again_by_a_tick_within_the_session() {
    // 1,100 datasets: page 1 holds 999 (and the allDatasets row), page 2 the other 101.
    let w = world(1100, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    // Page 2's message dies (every receive crashed, so it sits in the DLQ uncounted).
    let mut resources = Vec::new();
    while let Some(m) = w.queue.pop() {
        if matches!(m, WorkMessage::Resource { .. }) {
            resources.push(m);
        }
    }
    for m in &resources {
        handle_message(&w.svc, "m", &m.to_json(), 1).await;
    }
    let started = w.session(&id).await.started_at;
    // Not before a page message could still be alive: receives × the longest backoff.
    let soon = started + chrono::Duration::minutes(5);
    let early = trawl::pipeline::watchdog::sweep(&w.svc, soon)
        .await
        .unwrap();
    assert!(early.resumed_listings.is_empty(), "{early:?}");
    assert!(w.queue.is_empty());

    let later = started + chrono::Duration::minutes(30);
    let sweep = trawl::pipeline::watchdog::sweep(&w.svc, later)
        .await
        .unwrap();
    assert_eq!(sweep.resumed_listings, std::slice::from_ref(&id));
    assert!(sweep.expired.is_empty());
    match w.queue.pop() {
        Some(WorkMessage::ListPage {
            page: 2, cursor, ..
        }) => assert_eq!(cursor.as_deref(), Some("2")),
        other => panic!("expected page 2 again, got {other:?}"),
    }
    let page = WorkMessage::ListPage {
        session_id: id.clone(),
        source: trawl::messages::SourceRef::from(
            &w.store.get_source("src").await.unwrap().unwrap().source,
        ),
        page: 2,
        cursor: Some("2".into()),
    };
    handle_message(&w.svc, "m", &page.to_json(), 1).await;
    drain(&w, false).await;
    let s = w.session(&id).await;
    assert_eq!((s.counters.total, s.counters.remaining), (1100, 0));
    assert_eq!(s.counters.harvested, 1100);
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );
    // Once delivered, later ticks leave the listing alone.
    let again = trawl::pipeline::watchdog::sweep(&w.svc, later + chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert!(again.resumed_listings.is_empty());
}

#[tokio::test]
async fn a_session_with_nothing_remaining_whose_stream_record_was_lost_is_closed_by_a_tick() {
    let w = world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    drain(&w, false).await;
    // Everything is counted, but no finalizer ran (the stream mapping gave up on the record).
    let s = w.session(&id).await;
    assert_eq!(
        (s.status, s.counters.remaining),
        (SessionStatus::Running, 0)
    );
    let sweep =
        trawl::pipeline::watchdog::sweep(&w.svc, s.started_at + chrono::Duration::minutes(30))
            .await
            .unwrap();
    assert_eq!(sweep.closed, std::slice::from_ref(&id));
    let closed = w.session(&id).await;
    assert_eq!(closed.status, SessionStatus::Succeeded);
    let summary = trawl::keys::summary_key("src", &closed.stamp());
    assert!(w.objects.get(&summary).await.unwrap().is_some());
    assert!(w
        .store
        .get_source("src")
        .await
        .unwrap()
        .unwrap()
        .running_session
        .is_none());
}

#[tokio::test]
async fn a_late_copy_of_a_page_never_resets_markers_already_counted() {
    let w = world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    drain(&w, false).await;
    let before = w.session(&id).await.counters;
    // The copy that committed the page writes its markers only now (it was slow).
    let ids: Vec<String> = (1..=3).map(|i| format!("ds_{i:04}")).collect();
    w.store.put_pending_markers(&id, &ids).await.unwrap();
    let (markers, _) = w.store.session_markers(&id, None).await.unwrap();
    assert_eq!(markers.len(), 3);
    assert!(
        markers
            .iter()
            .all(|m| m.outcome == Some(Outcome::Harvested)),
        "{markers:?}"
    );
    assert_eq!(w.session(&id).await.counters, before);
}

#[tokio::test]
async fn a_receive_after_one_that_wrote_content_and_died_points_the_state_at_that_content() {
    let w = world(1, &[]).await;
    let first = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    drain(&w, false).await;
    finalize_session(&w.svc, &first.started[0]).await.unwrap();
    let report = run_now(&w.svc, "src", t("2026-11-23T12:00:00Z"))
        .await
        .unwrap();
    let message = w.queue.pop().unwrap();
    // One copy counts the resource (unchanged)...
    handle_message(&w.svc, "m", &message.to_json(), 1).await;
    let counted = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.last_session, report.started[0]);
    // ...while another wrote newer content after it, and died before naming it.
    let key = counted.record_key.clone().unwrap();
    let mut record: trawl::model::Record =
        serde_json::from_slice(&w.objects.get(&key).await.unwrap().unwrap()).unwrap();
    record.title = Some("Edited upstream between the two fetches".into());
    w.objects
        .put(
            &key,
            serde_json::to_vec(&record).unwrap().into(),
            "application/json",
        )
        .await
        .unwrap();
    // The dead copy's message comes back (its second receive): the state follows the object.
    assert_eq!(
        handle_message(&w.svc, "m", &message.to_json(), 2).await,
        Disposition::Done
    );
    let state = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.content_hash, Some(record.content_hash()));
    // Counted once all the same.
    let c = w.session(&report.started[0]).await.counters;
    assert_eq!(
        (c.total, c.unchanged, c.harvested, c.remaining),
        (1, 1, 0, 0)
    );
}

/// Objects that refuse one record's key, the way a store refuses a key it cannot hold.
struct RefusingRecord {
    inner: Arc<MemoryObjects>,
    refused: &'static str,
    permanent: bool,
    refusals: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl ObjectStore for RefusingRecord {
    async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
        content_type: &str,
    ) -> Result<(), trawl::ports::StoreError> {
        if key == self.refused {
            let n = self
                .refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let what = format!("{key}: File name too long (os error 36)");
            if self.permanent {
                return Err(trawl::ports::StoreError::permanent(what));
            }
            if n == 0 {
                return Err(trawl::ports::StoreError::new(what));
            }
        }
        self.inner.put(key, body, content_type).await
    }
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, trawl::ports::StoreError> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), trawl::ports::StoreError> {
        self.inner.delete(key).await
    }
    async fn folders(&self, prefix: &str) -> Result<Vec<String>, trawl::ports::StoreError> {
        self.inner.folders(prefix).await
    }
}

async fn harvest_refusing(permanent: bool) -> (World, trawl::model::Session, u32) {
    let mut w = world(4, &[]).await;
    let objects = Arc::new(RefusingRecord {
        inner: w.objects.clone(),
        refused: "records/src/ds_0001.json",
        permanent,
        refusals: Default::default(),
    });
    w.svc.objects = objects.clone();
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    drain(&w, false).await;
    let session = w.session(&report.started[0]).await;
    let refusals = objects.refusals.load(std::sync::atomic::Ordering::Relaxed);
    (w, session, refusals)
}

#[tokio::test]
async fn a_record_the_store_refuses_for_good_is_counted_failed_not_retried() {
    let (w, s, refusals) = harvest_refusing(true).await;
    assert_eq!(refusals, 1, "a permanent refusal is not tried again");
    assert_eq!(
        (
            s.counters.remaining,
            s.counters.harvested,
            s.counters.failed
        ),
        (0, 3, 1)
    );
    let state = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.last_outcome, Outcome::Failed);
    let reason = state.last_reason.unwrap();
    assert_eq!(reason.code, trawl::model::ReasonCode::StorageError);
    assert!(reason.detail.contains("File name too long"), "{reason:?}");
}

#[tokio::test]
async fn a_record_the_store_refuses_once_is_stored_on_the_next_receive() {
    let (w, s, refusals) = harvest_refusing(false).await;
    assert_eq!(refusals, 2, "a transient refusal is retried");
    assert_eq!((s.counters.remaining, s.counters.harvested), (0, 4));
    assert!(w
        .objects
        .get("records/src/ds_0001.json")
        .await
        .unwrap()
        .is_some());
}

/// For fetches outside a session: nothing was delivered inline.
struct NoInline;

#[async_trait::async_trait]
impl trawl::protocols::InlineDocuments for NoInline {
    async fn document(&self, _: &str) -> Result<Option<bytes::Bytes>, trawl::ports::StoreError> {
        Ok(None)
    }
}
