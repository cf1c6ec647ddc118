//! The pipeline end to end on LocalStack: scheduler → SQS → harvester → stream → finalizer,
//! against a fixture ERDDAP server with broken datasets.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use trawl::model::{Outcome, ReasonCode, Session, SessionStatus, SourceSpec};
use trawl::pipeline::finalize::{finalize_session, Finalized};
use trawl_e2e::{get_json, list_objects, lock_stack, runner, unique_source_id};
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};
use trawl_runner::{Faults, Runner};

const TIMEOUT: Duration = Duration::from_secs(240);

/// 50 datasets; one gone (404), one whose server keeps failing (500), one malformed.
async fn catalog_with_three_broken() -> ErddapFixture {
    ErddapFixture::start(ErddapConfig {
        datasets: 50,
        failures: BTreeMap::from([
            ("ds_0003".to_string(), Failure::NotFound),
            ("ds_0007".to_string(), Failure::ServerError),
            ("ds_0011".to_string(), Failure::Malformed),
        ]),
        port: 0,
        ..Default::default()
    })
    .await
    .expect("fixture starts")
}

async fn register(
    runner: &Runner,
    prefix: &str,
    fixture: &ErddapFixture,
    schedule: &str,
) -> String {
    let id = unique_source_id(prefix);
    let source = SourceSpec {
        id: id.clone(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: schedule.into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    runner.services.store.put_source(&source).await.unwrap();
    id
}

async fn harvest_now(runner: &Runner, source_id: &str, at: DateTime<Utc>) -> Session {
    let report = runner
        .invoke_scheduler(json!({"source_id": source_id, "scheduled_time": at}))
        .await
        .unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    runner
        .run_until_closed(&report.started, TIMEOUT)
        .await
        .unwrap();
    runner
        .services
        .store
        .get_session(&report.started[0])
        .await
        .unwrap()
        .unwrap()
}

fn at_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_datasets_with_three_broken_harvest_47_then_a_rerun_finds_47_unchanged() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = catalog_with_three_broken().await;
    let source_id = register(&runner, "e2e-basic", &fixture, "cron(0 3 1 1 ? *)").await;
    let first_time = at_second(Utc::now());

    let session = harvest_now(&runner, &source_id, first_time).await;
    assert_eq!(session.status, SessionStatus::PartiallyFailed);
    let c = session.counters;
    assert_eq!(
        (c.total, c.harvested, c.unchanged, c.failed, c.remaining),
        (50, 47, 0, 3, 0)
    );
    assert!(session.ended_at.is_some());

    // Records, raw responses and logs in S3.
    let records = list_objects(&runner, &format!("records/{source_id}/"))
        .await
        .unwrap();
    let raw = list_objects(&runner, &format!("raw/{source_id}/"))
        .await
        .unwrap();
    let logs = list_objects(&runner, &format!("logs/{source_id}/"))
        .await
        .unwrap();
    assert_eq!(records.len(), 47);
    assert_eq!(raw.len(), 47);
    // Logs are written per batch, a JSON line per resource: every resource has its line.
    let mut logged = std::collections::BTreeSet::new();
    for key in logs.keys() {
        let body = runner.services.objects.get(key).await.unwrap().unwrap();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: serde_json::Value = serde_json::from_slice(line).unwrap();
            logged.insert(line["resource_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        logged.len(),
        50,
        "every resource has a log line for the session"
    );
    assert!(logs.len() < 50, "batches share log objects: {}", logs.len());
    let record = get_json(&runner, &format!("records/{source_id}/ds_0001.json"))
        .await
        .unwrap();
    assert_eq!(record["id"], "ds_0001");
    assert!(
        record["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{record}"
    );
    assert!(
        record["variables"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{record}"
    );
    assert!(record["bounding_box"]["north"].is_number(), "{record}");
    let raw_info = get_json(&runner, &format!("raw/{source_id}/ds_0001.json"))
        .await
        .unwrap();
    assert!(
        raw_info["table"]["rows"].is_array(),
        "the raw ERDDAP response is kept as sent"
    );

    // Per-resource status in DynamoDB.
    let store = &runner.services.store;
    let ok = store
        .get_resource(&source_id, "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.last_outcome, Outcome::Harvested);
    assert_eq!(ok.history.len(), 1);
    assert!(ok.content_hash.is_some() && ok.record_key.is_some() && ok.log_key.is_some());
    let reason_of = |id: &'static str| {
        let store = store.clone();
        let source_id = source_id.clone();
        async move {
            let state = store.get_resource(&source_id, id).await.unwrap().unwrap();
            assert_eq!(state.last_outcome, Outcome::Failed, "{id}");
            state.last_reason.unwrap()
        }
    };
    assert_eq!(reason_of("ds_0003").await.code, ReasonCode::NotFound);
    let exhausted = reason_of("ds_0007").await;
    assert_eq!(
        (exhausted.code, exhausted.http_status),
        (ReasonCode::RetriesExhausted, Some(500))
    );
    assert_eq!(reason_of("ds_0011").await.code, ReasonCode::ParseError);
    // The log object is its batch's (a JSON line per resource): ds_0001's line in it.
    let log = trawl::documents::ResourceLog::find(
        &runner
            .services
            .objects
            .get(ok.log_key.as_ref().unwrap())
            .await
            .unwrap()
            .unwrap(),
        "ds_0001",
    )
    .unwrap();
    assert_eq!(log.outcome, Outcome::Harvested);
    assert!(log.requests[0].url.ends_with("/info/ds_0001/index.json"));
    assert_eq!(
        fixture.requests("/erddap/info/ds_0007/"),
        u64::from(runner.services.settings.max_receive_count),
        "the 500 is retried through SQS up to maxReceiveCount, then counted"
    );

    // Summary and source state.
    let summary = get_json(
        &runner,
        &trawl::keys::summary_key(&source_id, &session.stamp()),
    )
    .await
    .unwrap();
    assert_eq!(summary["status"], "partially_failed");
    assert_eq!(summary["counters"]["harvested"], 47);
    assert_eq!(
        summary["reasons"],
        json!({"NOT_FOUND": 1, "PARSE_ERROR": 1, "RETRIES_EXHAUSTED": 1})
    );
    assert_eq!(summary["failed_resources"].as_array().unwrap().len(), 3);
    let entry = store.get_source(&source_id).await.unwrap().unwrap();
    assert_eq!(entry.running_session, None, "the source is ready again");
    assert_eq!(entry.last_session.as_deref(), Some(session.id.as_str()));
    assert_eq!(entry.last_status, Some(SessionStatus::PartiallyFailed));

    // A redelivered completion closes nothing a second time.
    assert_eq!(
        finalize_session(&runner.services, &session.id)
            .await
            .unwrap(),
        Finalized::AlreadyClosed
    );
    let again = store.get_session(&session.id).await.unwrap().unwrap();
    assert_eq!(again.ended_at, session.ended_at);
    assert_eq!(again.status, session.status);

    // Second run: same content, so nothing is written to S3 at all.
    let logs_before = list_objects(&runner, &format!("logs/{source_id}/"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = harvest_now(&runner, &source_id, first_time + ChronoDuration::minutes(1)).await;
    let c = second.counters;
    assert_eq!(
        (c.total, c.harvested, c.unchanged, c.failed),
        (50, 0, 47, 3)
    );
    assert_eq!(
        list_objects(&runner, &format!("records/{source_id}/"))
            .await
            .unwrap(),
        records
    );
    assert_eq!(
        list_objects(&runner, &format!("raw/{source_id}/"))
            .await
            .unwrap(),
        raw
    );
    let logs_after = list_objects(&runner, &format!("logs/{source_id}/"))
        .await
        .unwrap();
    let mut logged_again = Vec::new();
    for key in logs_after.keys().filter(|k| !logs_before.contains_key(*k)) {
        let body = runner.services.objects.get(key).await.unwrap().unwrap();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: serde_json::Value = serde_json::from_slice(line).unwrap();
            logged_again.push(line["resource_id"].as_str().unwrap().to_string());
        }
    }
    logged_again.sort();
    assert_eq!(
        logged_again,
        ["ds_0003", "ds_0007", "ds_0011"],
        "only the three failures log again"
    );
    let state = store
        .get_resource(&source_id, "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.last_outcome, Outcome::Unchanged);
    assert_eq!(state.history.len(), 2);
    assert_eq!(state.content_hash, ok.content_hash);

    // The compare-and-swap that reconciling stored content relies on: a state read before
    // the last write no longer matches; the current one does, exactly once.
    let mut renamed = state.clone();
    renamed.raw_key = Some("raw/elsewhere.json".into());
    assert!(!store.replace_resource(&ok, &renamed).await.unwrap());
    assert!(store.replace_resource(&state, &renamed).await.unwrap());
    assert!(!store.replace_resource(&state, &renamed).await.unwrap());
    assert_eq!(
        store.get_resource(&source_id, "ds_0001").await.unwrap(),
        Some(renamed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_ends_with_identical_counters() {
    let _lock = lock_stack();
    let runner = runner(Faults {
        duplicate_every_message: true,
        ..Faults::default()
    })
    .await
    .unwrap();
    let fixture = catalog_with_three_broken().await;
    let source_id = register(&runner, "e2e-twice", &fixture, "cron(0 3 1 1 ? *)").await;

    let session = harvest_now(&runner, &source_id, at_second(Utc::now())).await;
    let c = session.counters;
    assert_eq!(
        (c.total, c.harvested, c.unchanged, c.failed, c.remaining),
        (50, 47, 0, 3, 0)
    );
    assert_eq!(session.status, SessionStatus::PartiallyFailed);
    let stats = runner.stats.snapshot();
    assert!(stats["duplicates_sent"] >= 50, "{stats:?}");
    assert!(stats["messages"] >= 100, "{stats:?}");
    assert_eq!(
        list_objects(&runner, &format!("records/{source_id}/"))
            .await
            .unwrap()
            .len(),
        47
    );
    // Every resource has exactly one settled marker.
    let (markers, next) = runner
        .services
        .store
        .session_markers(&session.id, None)
        .await
        .unwrap();
    assert!(next.is_none());
    assert_eq!(markers.len(), 50);
    assert!(markers.iter().all(|m| m.outcome.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_scheduler_invocation_creates_and_sends_nothing_twice() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    // Fires at 04:17 every day; the tick at 04:20 covers (04:15, 04:20].
    let source_id = register(&runner, "e2e-tick", &fixture, "17 4 * * *").await;
    let tick: DateTime<Utc> = "2026-11-23T04:20:00Z".parse().unwrap();

    let first = runner.tick(tick).await.unwrap();
    let expected = format!("{source_id}@20261123T041700Z");
    assert!(first.started.contains(&expected), "{first:?}");
    let listed = fixture.requests("/erddap/info/index.json");
    let second = runner.tick(tick).await.unwrap();
    assert!(second.already_started.contains(&expected), "{second:?}");
    assert!(!second.started.contains(&expected));
    assert_eq!(
        fixture.requests("/erddap/info/index.json"),
        listed,
        "not listed again"
    );
    // The next tick's window does not include 04:17 again.
    let next = runner
        .tick(tick + ChronoDuration::minutes(5))
        .await
        .unwrap();
    assert!(!next
        .started
        .iter()
        .chain(&next.already_started)
        .any(|s| s.starts_with(&source_id)));

    runner
        .run_until_closed(std::slice::from_ref(&expected), TIMEOUT)
        .await
        .unwrap();
    let session = runner
        .services
        .store
        .get_session(&expected)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.status, SessionStatus::Succeeded);
    assert_eq!(
        (session.counters.total, session.counters.harvested),
        (5, 5),
        "each resource counted once"
    );
    assert_eq!(
        fixture.dataset_info_requests(),
        5,
        "each dataset fetched once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_work_can_be_listed_and_replayed_without_double_counting() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let source_id = register(&runner, "e2e-dlq", &fixture, "cron(0 3 1 1 ? *)").await;
    let report = runner
        .invoke_scheduler(json!({"source_id": source_id, "scheduled_time": at_second(Utc::now())}))
        .await
        .unwrap();
    let session_id = report.started[0].clone();
    // A copy of one of the session's work messages sits in the dead-letter queue.
    let message = trawl::messages::WorkMessage::Resource {
        session_id: session_id.clone(),
        source: trawl::messages::SourceSnapshot::from(
            &runner
                .services
                .store
                .get_source(&source_id)
                .await
                .unwrap()
                .unwrap()
                .source,
        ),
        resource_id: "ds_0002".into(),
        deferrals: 0,
    };
    let sqs = aws_sdk_sqs::Client::new(&trawl::aws::sdk_config().await);
    sqs.send_message()
        .queue_url(runner.stack.get("WorkDeadLetterQueueUrl").unwrap())
        .message_body(message.to_json())
        .send()
        .await
        .unwrap();

    let listed = runner.dlq_list().await.unwrap();
    let ours: Vec<_> = listed
        .iter()
        .filter(|m| m["body"]["session_id"] == session_id.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{listed:?}");
    assert_eq!(ours[0]["body"]["resource_id"], "ds_0002");
    let again = runner.dlq_list().await.unwrap();
    assert!(
        again
            .iter()
            .any(|m| m["body"]["session_id"] == session_id.as_str()),
        "listing does not consume: {again:?}"
    );

    assert!(runner.dlq_replay().await.unwrap() >= 1);
    assert!(runner.dlq_list().await.unwrap().is_empty());
    runner
        .run_until_closed(std::slice::from_ref(&session_id), TIMEOUT)
        .await
        .unwrap();
    let session = runner
        .services
        .store
        .get_session(&session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            session.counters.total,
            session.counters.harvested,
            session.counters.remaining
        ),
        (3, 3, 0)
    );
    // Copies may run concurrently and both fetch; only one of them counts.
    let state = runner
        .services
        .store
        .get_resource(&source_id, "ds_0002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.history.len(), 1, "counted once: {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_gone_upstream_is_moved_aside_after_two_complete_listings_and_counted_once() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    let source_id = register(&runner, "e2e-stale", &fixture, "cron(0 3 1 1 ? *)").await;
    let t0 = at_second(Utc::now());
    harvest_now(&runner, &source_id, t0).await;
    fixture.remove_dataset("ds_0003");

    let second = harvest_now(&runner, &source_id, t0 + ChronoDuration::minutes(1)).await;
    // A redelivered finalizer repeats the check: the tombstone does not advance twice.
    let again = trawl::pipeline::stale::settle(&runner.services, &second)
        .await
        .unwrap();
    assert_eq!(again.tombstoned, ["ds_0003"]);
    let store = &runner.services.store;
    let state = store
        .get_resource(&source_id, "ds_0003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((state.missing_listings, state.is_live()), (1, true));
    let record = format!("records/{source_id}/ds_0003.json");
    assert!(list_objects(&runner, &record)
        .await
        .unwrap()
        .contains_key(&record));

    let third = harvest_now(&runner, &source_id, t0 + ChronoDuration::minutes(2)).await;
    let summary = get_json(
        &runner,
        &trawl::keys::summary_key(&source_id, &third.stamp()),
    )
    .await
    .unwrap();
    assert_eq!(summary["stale"]["deleted"], json!(["ds_0003"]), "{summary}");
    assert!(list_objects(&runner, &record).await.unwrap().is_empty());
    let moved = format!("deleted/{record}");
    assert!(list_objects(&runner, &moved)
        .await
        .unwrap()
        .contains_key(&moved));
    let state = store
        .get_resource(&source_id, "ds_0003")
        .await
        .unwrap()
        .unwrap();
    assert!(!state.is_live());
    assert_eq!(state.record_key.as_deref(), Some(moved.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn politeness_limits_hold_across_concurrent_harvester_invocations() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    // Slow answers, so requests would pile up at the server without a limit: the runner
    // plays 5 concurrent invocations of 10 messages each.
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 10,
        failures: (1..=10)
            .map(|i| {
                (
                    format!("ds_{i:04}"),
                    Failure::Slow(Duration::from_millis(300)),
                )
            })
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let id = unique_source_id("e2e-polite");
    let source = SourceSpec {
        id: id.clone(),
        protocol: "erddap".into(),
        base_url: fixture.base_url(),
        schedule: "cron(0 3 1 1 ? *)".into(),
        enabled: true,
        internal: true,
        options: trawl::model::SourceOptions {
            max_in_flight: Some(2),
            requests_per_second: Some(5),
            ..Default::default()
        },
    }
    .validate()
    .unwrap();
    runner.services.store.put_source(&source).await.unwrap();

    let session = harvest_now(&runner, &id, at_second(Utc::now())).await;
    let c = session.counters;
    assert_eq!((c.total, c.remaining), (10, 0));
    assert_eq!(c.harvested + c.failed, 10);
    assert!(
        c.harvested >= 8,
        "a limit delays requests, it should rarely fail them: {c:?}"
    );
    assert!(
        fixture.max_concurrent_info_requests() <= 2,
        "{} in flight at once",
        fixture.max_concurrent_info_requests()
    );
    assert!(
        fixture.max_info_requests_in_a_second() <= 5,
        "{} in one second",
        fixture.max_info_requests_in_a_second()
    );
}

/// DynamoDB's markers: 250 ids are written in transactions of up to 100, and writing them
/// again (a late or redelivered copy of the page) keeps the markers that exist, counted
/// ones included, as the local store does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_markers_are_only_added_where_missing() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let store = runner.services.store.clone();
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let source_id = register(&runner, "e2e-markers", &fixture, "0 3 1 1 *").await;
    let session = Session::start(
        &source_id,
        "2026-11-23T03:00:00Z".parse().unwrap(),
        Utc::now(),
    );
    store.create_session(&session).await.unwrap();
    let ids: Vec<String> = (0..250).map(|i| format!("r{i:03}")).collect();
    store
        .put_pending_markers(&session.id, &ids[..120])
        .await
        .unwrap();
    // Count one of them, as a harvester would.
    let counted = trawl::model::ResourceState::next(
        None,
        &source_id,
        "r007",
        &session.id,
        Outcome::Harvested,
        None,
        Utc::now(),
        None,
    );
    assert_eq!(
        store.record_outcome(&session.id, &counted).await.unwrap(),
        trawl::ports::Counting::Counted
    );
    // The whole page again: the 120 exist (one counted), 130 are new.
    store.put_pending_markers(&session.id, &ids).await.unwrap();
    let mut markers = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store.session_markers(&session.id, after).await.unwrap();
        markers.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(markers.len(), 250);
    let settled: Vec<&str> = markers
        .iter()
        .filter(|m| m.outcome.is_some())
        .map(|m| m.resource_id.as_str())
        .collect();
    assert_eq!(settled, ["r007"]);
}

/// The benchmark bills the functions' requests: the runner's own looks at the sessions it
/// waits for (nothing makes them on AWS, where the stream wakes the finalizer) are not among
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runners_looks_at_a_session_are_not_billed_to_the_functions() {
    use trawl::ports::PageState;
    let _lock = lock_stack();
    let functions = trawl::aws::RequestCounter::default();
    let runner = trawl_runner::connect_local_counted(Faults::default(), Some(&functions), None)
        .await
        .unwrap();
    let fixture = catalog_with_three_broken().await;
    let source_id = register(&runner, "e2e-looks", &fixture, "cron(0 3 1 1 ? *)").await;
    let store = &runner.services.store;
    let now = at_second(Utc::now());
    // A session that owes its first page: the finalizer is not woken, nothing else runs.
    let session = Session::start(&source_id, now, now);
    store.create_session(&session).await.unwrap();
    functions.reset();
    let open = runner
        .run_until_closed_or_stalled(
            std::slice::from_ref(&session.id),
            TIMEOUT,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(
        open,
        std::slice::from_ref(&session.id),
        "the runner looked until it stalled"
    );
    let counted = functions.snapshot();
    assert!(
        !counted.contains_key("DynamoDB.GetItem"),
        "the runner's looks were counted as the functions': {counted:?}"
    );
    // What goes through the functions' clients still counts.
    store.get_session(&session.id).await.unwrap();
    assert_eq!(functions.snapshot()["DynamoDB.GetItem"].requests, 1);
    // Closed, so no later test finds it running.
    let empty_last_page = PageState {
        page: 0,
        ids_key: String::new(),
        count: 0,
        next_cursor: None,
        sent: true,
        error: None,
        listed: 0,
        expected_total: Some(0),
        problems: vec![],
        listed_at: Some(now),
        deleted_upstream: 0,
    };
    assert!(store
        .commit_page(&session.id, &empty_last_page)
        .await
        .unwrap());
    store.close_session(&session.id, now).await.unwrap();
}
