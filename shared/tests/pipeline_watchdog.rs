//! The watchdog's sweep, against the in-memory adapters and a fixture ERDDAP server over real
//! HTTP: lost work counted, a listing whose message died sent again, and sessions nobody
//! closed wound up, each closed once.

mod common;

use chrono::Utc;
use common::{erddap_world, t};
use trawl::messages::WorkMessage;
use trawl::model::SessionStatus;
use trawl::pipeline::finalize::{finalize_session, Finalized};
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::schedule::run_now;
use trawl::ports::{ObjectStore, ResourceStates, SessionLedger, SourceRegistry};

#[tokio::test]
async fn the_watchdog_counts_lost_work_and_the_session_still_closes_once() {
    let w = erddap_world(5, &[]).await;
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
    let w = erddap_world(2, &[]).await;
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
async fn a_listing_page_whose_message_died_is_sent_again_by_a_tick_within_the_session() {
    // 1,100 datasets: page 1 holds 999 (and the allDatasets row), page 2 the other 101.
    let w = erddap_world(1100, &[]).await;
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
        source: trawl::messages::SourceSnapshot::from(
            &w.store.get_source("src").await.unwrap().unwrap().source,
        ),
        page: 2,
        cursor: Some("2".into()),
        delivered: 0,
    };
    handle_message(&w.svc, "m", &page.to_json(), 1).await;
    w.drain().await;
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
    let w = erddap_world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    w.drain().await;
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
