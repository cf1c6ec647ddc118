//! Selections (harvest named resources now) and a deployment's harvest, through the
//! scheduler handler, against the in-memory adapters and a fixture ERDDAP server.

mod common;

use common::{erddap_world, ErddapWorld};
use serde_json::json;
use trawl::handlers::{scheduler, HandlerError};
use trawl::messages::WorkMessage;
use trawl::model::selection::MAX_SELECTION_IDS;
use trawl::model::{Outcome, ReasonCode, Session, SessionStatus, SourceOptions, Trigger};
use trawl::pipeline::finalize::finalize_session;
use trawl::ports::{ResourceStates, SessionLedger, SourceRegistry, WorkQueue};

/// Starts a selection of `ids` at `at`, drains it and closes it.
async fn select(w: &ErddapWorld, ids: &[&str], at: &str) -> Session {
    let report = scheduler(
        &w.svc,
        json!({"source_id": "src", "resource_ids": ids, "scheduled_time": at}),
    )
    .await
    .unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    w.drain().await;
    finalize_session(&w.svc, &report.started[0]).await.unwrap();
    w.session(&report.started[0]).await
}

async fn outcomes(w: &ErddapWorld, session: &Session) -> Vec<(String, Option<Outcome>)> {
    let (markers, _) = w.store.session_markers(&session.id, None).await.unwrap();
    markers
        .into_iter()
        .map(|m| (m.resource_id, m.outcome))
        .collect()
}

#[tokio::test]
async fn a_selection_harvests_exactly_the_named_resources_and_counts_unknown_ones_failed() {
    let w = erddap_world(10, &[]).await;
    w.harvest("2026-11-01").await;

    let s = select(
        &w,
        &["ds_0007", "ds_0003", "no_such_dataset", "ds_0003"],
        "2026-11-02T08:00:00Z",
    )
    .await;

    assert_eq!(s.trigger, Some(Trigger::Selection));
    assert_eq!(s.status, SessionStatus::PartiallyFailed);
    let c = s.counters;
    assert_eq!(
        (c.total, c.remaining, c.unchanged, c.harvested, c.failed),
        (3, 0, 2, 0, 1)
    );
    assert_eq!(
        outcomes(&w, &s).await,
        [
            ("ds_0003".to_string(), Some(Outcome::Unchanged)),
            ("ds_0007".to_string(), Some(Outcome::Unchanged)),
            ("no_such_dataset".to_string(), Some(Outcome::Failed)),
        ]
    );
    let unknown = w
        .store
        .get_resource("src", "no_such_dataset")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unknown.last_reason.map(|r| r.code),
        Some(ReasonCode::NotFound)
    );
    let untouched = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(untouched.last_session, "src@20261101T120000Z");
    let summary = w.summary(&s).await;
    assert_eq!(
        summary["failed_resources"][0]["resource_id"],
        "no_such_dataset"
    );
    // The status API (and so the dashboard) says what kind of session it was.
    let path = format!("/api/sessions/{}", s.id.replace('@', "%40"));
    let response = trawl::api::handle(
        &w.svc,
        &trawl::api::ApiRequest {
            method: "GET",
            path: &path,
            query: Default::default(),
            may_decide: false,
        },
    )
    .await;
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(response.status, 200, "{body}");
    let brief = &body["brief"];
    assert_eq!(
        (brief["mode"].as_str(), brief["trigger"].as_str()),
        (Some("selection"), Some("selection")),
        "{body}"
    );
    // Its listing is no listing of the catalog, though nothing went wrong with it.
    assert_eq!(brief["listing_complete"], false);
    assert_eq!(body["listing_problems"], serde_json::json!([]));
    assert_eq!(summary["listing"]["complete"], false);
    assert!(w
        .stale_report(&s)
        .await
        .skipped
        .unwrap()
        .contains("selection"));
}

#[tokio::test]
async fn a_selection_deletes_nothing_and_is_no_listing_for_tombstones_or_incremental_bases() {
    let w = erddap_world(10, &[]).await;
    // No shrink guard: only the selection rule stands between it and deleting everything.
    w.set_options(SourceOptions {
        max_shrink_percent: 100,
        ..Default::default()
    })
    .await;
    w.harvest("2026-11-01").await;
    w.fixture.remove_dataset("ds_0004");
    let listing = w.harvest("2026-11-02").await;
    let tombstone = |w: &ErddapWorld| {
        let store = w.store.clone();
        async move {
            store
                .get_resource("src", "ds_0004")
                .await
                .unwrap()
                .unwrap()
                .missing_listings
        }
    };
    assert_eq!(tombstone(&w).await, 1);

    // A selection naming other datasets: ds_0004 is not "missing from" it.
    let s = select(&w, &["ds_0001"], "2026-11-02T18:00:00Z").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!(tombstone(&w).await, 1);
    let report = w.stale_report(&s).await;
    assert_eq!((report.tombstoned.len(), report.deleted.len()), (0, 0));
    let entry = w.store.get_source("src").await.unwrap().unwrap();
    assert_eq!(entry.incremental_base.as_deref(), Some(listing.id.as_str()));
    assert_eq!(entry.last_full_listing_at, Some(listing.started_at));

    // The next complete listing is the second in a row without it: deleted.
    let next = w.harvest("2026-11-03").await;
    assert_eq!(w.stale_report(&next).await.deleted, ["ds_0004"]);
}

#[tokio::test]
async fn a_selection_keeps_to_the_sources_include_and_exclude() {
    let w = erddap_world(5, &[]).await;
    w.set_options(SourceOptions {
        exclude: vec!["ds_0002".into()],
        ..Default::default()
    })
    .await;
    let s = select(&w, &["ds_0002", "ds_0003"], "2026-11-02T08:00:00Z").await;
    assert_eq!(s.counters.total, 1);
    assert_eq!(outcomes(&w, &s).await.len(), 1);
    let problems = s.listing_problems().join("; ");
    assert!(
        problems.contains("outside the source's include/exclude") && problems.contains("ds_0002"),
        "{problems}"
    );
}

#[tokio::test]
async fn a_selection_listed_again_by_the_watchdog_or_a_retry_counts_its_ids_once() {
    let w = erddap_world(5, &[]).await;
    let report = scheduler(
        &w.svc,
        json!({"source_id": "src", "resource_ids": ["ds_0001", "ds_0002"],
            "scheduled_time": "2026-11-02T08:00:00Z"}),
    )
    .await
    .unwrap();
    let id = &report.started[0];
    // Page 1 again, as a resent listing message would: it reads the same saved ids.
    let source = trawl::messages::SourceSnapshot::from(
        &w.store.get_source("src").await.unwrap().unwrap().source,
    );
    trawl::pipeline::listing::list_page(&w.svc, id, &source, 1, None, 0, false)
        .await
        .unwrap();
    w.drain().await;
    finalize_session(&w.svc, id).await.unwrap();
    let s = w.session(id).await;
    assert_eq!(
        (
            s.counters.total,
            s.counters.unchanged + s.counters.harvested
        ),
        (2, 2)
    );
    assert_eq!(s.status, SessionStatus::Succeeded);
}

#[tokio::test]
async fn a_deployment_starts_every_enabled_source_through_the_queue() {
    let w = erddap_world(3, &[]).await;
    let mut other = w.store.get_source("src").await.unwrap().unwrap().source;
    other.id = "off".into();
    other.enabled = false;
    w.store.put_source(&other).await.unwrap();

    let report = scheduler(&w.svc, json!({"deploy": true})).await.unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    assert!(report.started[0].starts_with("src@"));
    // Nothing was listed in the call: its first page is the queue's.
    let queued = w.queue.pop().expect("page 1 is queued");
    assert!(matches!(queued, WorkMessage::ListPage { page: 1, .. }));
    w.queue.send(&[queued]).await.unwrap();
    w.drain().await;
    finalize_session(&w.svc, &report.started[0]).await.unwrap();
    let s = w.session(&report.started[0]).await;
    assert_eq!(s.trigger, Some(Trigger::Deploy));
    assert_eq!((s.status, s.counters.total), (SessionStatus::Succeeded, 3));
}

#[tokio::test]
async fn bad_scheduler_events_are_refused_saying_why() {
    let w = erddap_world(1, &[]).await;
    let too_many: Vec<String> = (0..=MAX_SELECTION_IDS).map(|i| format!("d{i}")).collect();
    for (event, expected) in [
        (json!({"resource_ids": ["a"]}), "needs the source_id"),
        (
            json!({"source_id": "src", "resource_ids": []}),
            "at least one",
        ),
        (
            json!({"source_id": "src", "resource_ids": too_many}),
            "more than 1000",
        ),
        (
            json!({"source_id": "src", "resource_ids": [""]}),
            "empty id",
        ),
        (
            json!({"source_id": "src", "resource_ids": "ds_0001"}),
            "invalid type",
        ),
        (
            json!({"deploy": true, "source_id": "src"}),
            "neither source_id",
        ),
        (json!({"resource_id": ["a"]}), "unknown field"),
        (json!({}), "needs scheduled_time"),
    ] {
        match scheduler(&w.svc, event.clone()).await {
            Err(HandlerError::BadEvent(why)) => {
                assert!(why.contains(expected), "{event}: {why}")
            }
            other => panic!("{event}: {other:?}"),
        }
    }
    assert!(w.queue.pop().is_none(), "nothing was started");
    let unknown = scheduler(&w.svc, json!({"source_id": "nope", "resource_ids": ["a"]}))
        .await
        .unwrap();
    assert_eq!(unknown.errors, ["nope: no such source"]);
}

#[tokio::test]
async fn a_failed_fetch_in_a_selection_lifts_no_tombstone_and_undoes_no_deletion() {
    let w = erddap_world(6, &[]).await;
    w.harvest("2026-11-01").await;
    w.fixture.remove_dataset("ds_0004");
    w.harvest("2026-11-02").await;
    let state = |w: &ErddapWorld| {
        let store = w.store.clone();
        async move { store.get_resource("src", "ds_0004").await.unwrap().unwrap() }
    };
    assert_eq!(state(&w).await.missing_listings, 1);

    // Named (a webhook announcing its deletion, say): its fetch fails, proving nothing.
    let s = select(&w, &["ds_0004"], "2026-11-02T18:00:00Z").await;
    assert_eq!(s.counters.failed, 1);
    let after = state(&w).await;
    assert_eq!(after.last_outcome, Outcome::Failed);
    assert_eq!(after.missing_listings, 1, "the tombstone stays");

    // So the next complete listing is still the second without it.
    let next = w.harvest("2026-11-03").await;
    assert_eq!(w.stale_report(&next).await.deleted, ["ds_0004"]);
    select(&w, &["ds_0004"], "2026-11-03T18:00:00Z").await;
    let deleted = state(&w).await;
    assert!(!deleted.is_live(), "still deleted");
    assert_eq!(
        deleted.record_key.as_deref(),
        Some("deleted/records/src/ds_0004.json")
    );
}
