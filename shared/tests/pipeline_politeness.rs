//! Politeness towards the remote, against the in-memory adapters and a fixture ERDDAP server
//! over real HTTP: a server's "retry after" deferring a message, and a source's limits on
//! requests in flight and per second holding however many messages run at once.

mod common;

use common::{erddap_world, t, ErddapWorld};
use std::sync::Arc;
use std::time::Duration;
use trawl::messages::WorkMessage;
use trawl::model::SourceOptions;
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::schedule::run_now;
use trawl::politeness::MemoryGate;
use trawl::ports::{ResourceStates, WorkQueue};
use trawl_fixtures::Failure;

#[tokio::test]
async fn a_server_asking_to_wait_defers_the_message_without_burning_receives_then_it_is_counted() {
    let w = erddap_world(3, &[("ds_0002", Failure::Throttled(7))]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    // Each deferral is a fresh message (receive count 1) with one more deferral on it.
    let mut seen_deferrals = Vec::new();
    w.drain_observing(|message| {
        if let WorkMessage::Resource {
            resource_id,
            deferrals,
            ..
        } = message
        {
            if resource_id == "ds_0002" {
                seen_deferrals.push(*deferrals);
            }
        }
    })
    .await;
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
async fn slow_world(datasets: usize) -> ErddapWorld {
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
    let mut w = erddap_world(datasets, &slow).await;
    w.svc.http = w
        .svc
        .http
        .clone()
        .with_gate(Arc::new(MemoryGate::default()));
    w
}

/// Handles every queued message at once, as many concurrent invocations would; messages to
/// retry come back in the next round with a higher receive count, as SQS would bring them.
async fn harvest_all_at_once(w: &ErddapWorld) {
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
    w.set_options(SourceOptions {
        max_in_flight: Some(2),
        ..SourceOptions::default()
    })
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
    w.set_options(SourceOptions {
        requests_per_second: Some(4),
        ..SourceOptions::default()
    })
    .await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // With a 500 ms HTTP timeout as the wait budget, some requests find no room in time:
    // they come back THROTTLED (retryable) and are retried like any transient failure.
    w.drain().await;
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
