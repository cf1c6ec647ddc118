//! A session's listing, against the in-memory adapters and a fixture ERDDAP server over real
//! HTTP: page by page, retried through the queue as a list-page message, failing for good,
//! and copies of a page that count nothing twice.

mod common;

use common::{erddap_world, t};
use trawl::messages::WorkMessage;
use trawl::model::{Outcome, SessionStatus};
use trawl::pipeline::finalize::{finalize_session, Finalized};
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::listing::{list_page, PageResult};
use trawl::pipeline::schedule::run_now;
use trawl::ports::{ResourceStates, SessionLedger, SourceRegistry};
use trawl_fixtures::Failure;

#[tokio::test]
async fn a_redelivered_listing_page_sends_nothing_new() {
    let w = erddap_world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = &report.started[0];
    let source = trawl::messages::SourceSnapshot::from(
        &w.store.get_source("src").await.unwrap().unwrap().source,
    );
    let again = list_page(&w.svc, id, &source, 1, None, 0, false)
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
    let w = erddap_world(1_999, &[]).await;
    let first = w.harvest("2026-11-01").await;
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
    w.drain().await;
    finalize_session(&w.svc, &report.started[0]).await.unwrap();
    let second = w.session(&report.started[0]).await;
    // Page 1 still had the removed one (its fetch then finds it gone); page 2 lost `shifted`.
    assert_eq!(second.counters.total, 1_998, "{second:?}");
    let stale = w.stale_report(&second).await;
    assert_eq!(
        (stale.missing, stale.tombstoned, stale.deleted),
        (1, vec![shifted.clone()], vec![])
    );

    let third = w.harvest("2026-11-03").await;
    assert_eq!(third.counters.total, 1_998);
    let stale = w.stale_report(&third).await;
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
    let w = erddap_world(3, &[]).await;
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
async fn a_flaky_listing_is_retried_through_the_queue_as_a_list_page() {
    let w = erddap_world(4, &[("allDatasets", Failure::ServerError)]).await;
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
    w.drain().await;
    assert_eq!(
        finalize_session(&w.svc, &id).await.unwrap(),
        Finalized::Closed(SessionStatus::Succeeded)
    );
    assert_eq!(w.session(&id).await.counters.harvested, 4);
}

#[tokio::test]
async fn a_listing_failing_on_its_last_receive_closes_the_session_as_failed() {
    let w = erddap_world(4, &[("allDatasets", Failure::ServerError)]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    w.drain().await;
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
async fn a_late_copy_of_a_page_never_resets_markers_already_counted() {
    let w = erddap_world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    w.drain().await;
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

/// The next chunk (or page) is listed ahead: its message is sent in the middle of this
/// chunk's resources, so it is listed while the second half is harvested rather than after.
#[tokio::test]
async fn the_next_chunk_is_listed_from_the_middle_of_this_one() {
    let mut w = erddap_world(25, &[]).await;
    w.svc.settings.delivery_chunk = 10;
    run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let order: Vec<bool> = std::iter::from_fn(|| w.queue.pop())
        .map(|m| matches!(m, WorkMessage::ListPage { .. }))
        .collect();
    assert_eq!(order.len(), 11);
    assert_eq!(order.iter().position(|&page| page), Some(5), "{order:?}");
}

/// A page larger than the delivery chunk is fanned out a chunk a message: the queue never
/// holds more than about one and a half chunks of its resources, a copy of any of those messages counts nothing
/// twice, and every resource is counted once.
#[tokio::test]
async fn a_page_larger_than_the_delivery_chunk_is_fanned_out_a_chunk_at_a_time() {
    let mut w = erddap_world(25, &[]).await;
    w.svc.settings.delivery_chunk = 10;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    // The page is counted whole, delivered a chunk at a time.
    assert_eq!(w.session(&id).await.counters.total, 25);
    assert!(!w.store.get_page(&id, 1).await.unwrap().unwrap().sent);
    assert_eq!(
        w.queue.len(),
        11,
        "ten resources and the next chunk's message"
    );
    let mut most_queued = w.queue.len();
    let mut continuations = Vec::new();
    while let Some(message) = w.queue.pop() {
        if let WorkMessage::ListPage { delivered, .. } = &message {
            continuations.push(*delivered);
        }
        let body = message.to_json();
        // Every message arrives twice: a copy changes nothing.
        for _ in 0..2 {
            assert_eq!(
                handle_message(&w.svc, "m", &body, 1).await,
                Disposition::Done
            );
        }
        most_queued = most_queued.max(w.queue.len());
    }
    // The next chunk is listed ahead, from the middle of this one: at most the half chunk
    // left and the next chunk with its continuation, each twice here, as every continuation
    // arrives twice (the copy re-sends its chunk, which the markers make harmless).
    assert!(most_queued <= 2 * 11 + 5, "{most_queued}");
    assert!(
        continuations.contains(&10) && continuations.contains(&20),
        "{continuations:?}"
    );
    assert!(w.store.get_page(&id, 1).await.unwrap().unwrap().sent);
    finalize_session(&w.svc, &id).await.unwrap();
    let s = w.session(&id).await;
    assert_eq!(
        (s.counters.harvested, s.counters.remaining),
        (25, 0),
        "{s:?}"
    );
    assert_eq!(s.status, SessionStatus::Succeeded);
}
