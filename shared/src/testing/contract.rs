//! The state store contract: what every [`StateStore`] must do, whatever it keeps rows in.
//! (And, at the end, the object store contract: what every [`ObjectStore`] must do.)
//! Each case is one rule of `model::ledger` (or of the ports' documentation) seen through a
//! store, including the conditional answers: a page committed twice, a redelivered count, a
//! session closed twice. A backend runs all of them with one line:
//!
//! ```ignore
//! trawl::state_store_contract!(MemoryStore::default());
//! ```
//!
//! The expression is evaluated inside each (async) test, so it may `.await`. Cases make ids
//! of their own, unique per process and call, so they can share one table.

use crate::model::{
    Closing, Counting, Outcome, PageState, Protocol, Reason, ResourceState, Session, SessionStart,
    SessionStatus, Source, SourceEntry,
};
use crate::ports::{ObjectStore, StateStore};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::atomic::{AtomicU32, Ordering};

/// Every case's name, in one list: the macro makes one test of each.
#[macro_export]
macro_rules! state_store_contract {
    ($make:expr) => {
        $crate::state_store_contract!(@cases $make;
            a_source_keeps_its_run_state_across_edits,
            a_source_is_removed_only_when_idle,
            a_session_starts_once_and_alone,
            a_page_commits_once,
            a_page_of_an_unknown_session_is_refused,
            markers_are_only_added_where_missing,
            a_redelivered_count_counts_nothing,
            a_batch_count_answers_each_resource,
            a_counted_change_is_read_back_on_its_marker_once,
            a_session_closes_once_and_releases_its_source,
            an_aborted_session_closes_aborted,
            a_finished_session_refuses_an_abort,
            a_stale_tombstone_is_written_once_per_session,
            a_resource_is_replaced_only_if_unchanged,
            resources_and_markers_page_in_id_order,
            a_sources_resources_are_removed_together,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let store = $make;
                $crate::testing::contract::$case(&store).await;
            }
        )*
    };
}

/// The object store contract's cases, run on a store with one line:
///
/// ```ignore
/// trawl::object_store_contract!(MemoryObjects::default());
/// ```
#[macro_export]
macro_rules! object_store_contract {
    ($make:expr) => {
        $crate::object_store_contract!(@cases $make;
            an_object_reads_back_as_written,
            a_range_reads_back_exactly_its_bytes,
            a_range_of_a_missing_object_is_none,
            a_range_past_the_end_is_refused,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let objects = $make;
                $crate::testing::contract::$case(&objects).await;
            }
        )*
    };
}

fn unique(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = Utc::now().timestamp_subsec_nanos();
    format!(
        "{what}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

fn source(id: &str) -> Source {
    Source {
        id: id.to_string(),
        protocol: Protocol::Ckan,
        base_url: "https://catalog.example/".into(),
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal: false,
        options: Default::default(),
    }
}

fn page(page: u32, ids: &[String], next: Option<&str>) -> PageState {
    PageState {
        page,
        ids_key: format!("ids/{page}.json"),
        count: ids.len() as u64,
        next_cursor: next.map(str::to_string),
        sent: false,
        error: None,
        listed: ids.len() as u64,
        expected_total: None,
        problems: Vec::new(),
        listed_at: Some(at(page.into())),
        deleted_upstream: 0,
    }
}

fn state(session: &Session, resource_id: &str, outcome: Outcome) -> ResourceState {
    let reason = (outcome == Outcome::Failed).then(|| Reason::http(404, "gone"));
    let content = (outcome == Outcome::Harvested).then(|| {
        (
            format!("hash-{resource_id}"),
            format!("records/{resource_id}.json"),
            Some(crate::model::RawLocation::object(format!(
                "raw/{resource_id}"
            ))),
        )
    });
    ResourceState::next(
        None,
        &session.source_id,
        resource_id,
        &session.id,
        outcome,
        reason,
        at(60),
        content,
    )
}

/// A registered source with a session started (and its source claimed).
async fn running(store: &dyn StateStore) -> Session {
    let source_id = unique("src");
    store.put_source(&source(&source_id)).await.unwrap();
    let session = Session::start(&source_id, at(0), at(1));
    assert_eq!(
        store.create_session(&session).await.unwrap(),
        SessionStart::Created
    );
    session
}

/// A running session whose one page listed `ids` (markers written, page sent).
async fn listed(store: &dyn StateStore, ids: &[String]) -> Session {
    let session = running(store).await;
    assert!(store
        .commit_page(&session.id, &page(0, ids, None))
        .await
        .unwrap());
    store.put_pending_markers(&session.id, ids).await.unwrap();
    store.mark_page_sent(&session.id, 0).await.unwrap();
    session
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ds-{i:03}")).collect()
}

async fn read_session(store: &dyn StateStore, id: &str) -> Session {
    store.get_session(id).await.unwrap().expect("the session")
}

async fn entry(store: &dyn StateStore, id: &str) -> SourceEntry {
    store.get_source(id).await.unwrap().expect("the source")
}

pub async fn a_source_keeps_its_run_state_across_edits(store: &dyn StateStore) {
    let session = running(store).await;
    let mut edited = source(&session.source_id);
    edited.base_url = "https://elsewhere.example/".into();
    edited.enabled = false;
    store.put_source(&edited).await.unwrap();
    let e = entry(store, &session.source_id).await;
    assert_eq!(e.source, edited, "the edit is stored");
    assert_eq!(
        e.running_session.as_deref(),
        Some(session.id.as_str()),
        "an edit keeps the run state"
    );
    assert!(store
        .list_sources()
        .await
        .unwrap()
        .iter()
        .any(|x| x.source.id == session.source_id));
    assert_eq!(store.get_source(&unique("nobody")).await.unwrap(), None);
}

pub async fn a_source_is_removed_only_when_idle(store: &dyn StateStore) {
    let session = running(store).await;
    assert!(
        !store.remove_source(&session.source_id).await.unwrap(),
        "a source with a running session stays"
    );
    let idle = unique("idle");
    store.put_source(&source(&idle)).await.unwrap();
    assert_eq!(entry(store, &idle).await, SourceEntry::new(source(&idle)));
    assert!(store.remove_source(&idle).await.unwrap());
    assert_eq!(store.get_source(&idle).await.unwrap(), None);
    assert!(!store.remove_source(&idle).await.unwrap(), "removed once");
}

pub async fn a_session_starts_once_and_alone(store: &dyn StateStore) {
    let session = running(store).await;
    assert_eq!(
        store.create_session(&session).await.unwrap(),
        SessionStart::AlreadyExists(Box::new(session.clone())),
        "a retried start finds the session it created"
    );
    let later = Session::start(&session.source_id, at(3600), at(3601));
    assert_eq!(
        store.create_session(&later).await.unwrap(),
        SessionStart::SourceBusy {
            running: session.id.clone()
        }
    );
    assert_eq!(store.get_session(&later.id).await.unwrap(), None);
    let orphan = Session::start(&unique("unregistered"), at(0), at(0));
    assert_eq!(
        store.create_session(&orphan).await.unwrap(),
        SessionStart::UnknownSource
    );
    assert_eq!(
        read_session(store, &session.id).await,
        session,
        "stored as started"
    );
}

pub async fn a_page_commits_once(store: &dyn StateStore) {
    let s = running(store).await;
    let mut first = page(0, &ids(3), Some("cursor-1"));
    first.expected_total = Some(5);
    first.problems = vec!["page 0 lists ds-001 twice".into()];
    assert!(store.commit_page(&s.id, &first).await.unwrap());
    let counted = read_session(store, &s.id).await;
    assert_eq!(
        (counted.counters.total, counted.counters.remaining),
        (3, 4),
        "three resources and the next page are owed"
    );
    assert!(
        !store.commit_page(&s.id, &first).await.unwrap(),
        "a redelivered page is committed once"
    );
    assert_eq!(
        read_session(store, &s.id).await,
        counted,
        "and counted once"
    );
    assert_eq!(store.get_page(&s.id, 0).await.unwrap(), Some(first.clone()));
    store.mark_page_sent(&s.id, 0).await.unwrap();
    assert!(store.get_page(&s.id, 0).await.unwrap().unwrap().sent);
    assert_eq!(store.get_page(&s.id, 1).await.unwrap(), None);

    let mut failed = page(1, &[], None);
    failed.error = Some("HTTP_ERROR 500 on page 1".into());
    failed.expected_total = Some(4);
    failed.problems = vec!["page 1 failed".into()];
    assert!(store.commit_page(&s.id, &failed).await.unwrap());
    let after = read_session(store, &s.id).await;
    assert_eq!((after.counters.total, after.counters.remaining), (3, 3));
    assert_eq!(
        after.listing_error.as_deref(),
        Some("HTTP_ERROR 500 on page 1")
    );
    assert_eq!(after.listing.listed, 3);
    assert_eq!(after.listing.expected_total, Some(4));
    assert_eq!(
        after.listing.problems,
        ["page 0 lists ds-001 twice", "page 1 failed"],
        "problems add up in page order"
    );
}

pub async fn a_page_of_an_unknown_session_is_refused(store: &dyn StateStore) {
    let nobody = unique("nobody@20261202T120000Z");
    assert!(store
        .commit_page(&nobody, &page(0, &ids(2), None))
        .await
        .is_err());
    assert_eq!(store.get_session(&nobody).await.unwrap(), None);
}

pub async fn markers_are_only_added_where_missing(store: &dyn StateStore) {
    let all = ids(5);
    let s = listed(store, &all[..3]).await;
    let before = store.listed_before(&s.id, &all).await.unwrap();
    assert_eq!(before.len(), 3);
    assert!(before.contains("ds-000") && !before.contains("ds-003"));
    let counted = state(&s, "ds-001", Outcome::Harvested);
    assert_eq!(
        store.record_outcome(&s.id, &counted).await.unwrap(),
        Counting::Counted
    );
    // A late copy of the page writes its markers again: the counted one stays counted.
    store.put_pending_markers(&s.id, &all).await.unwrap();
    let (markers, _) = store.session_markers(&s.id, None).await.unwrap();
    let settled: Vec<(&str, Option<Outcome>)> = markers
        .iter()
        .map(|m| (m.resource_id.as_str(), m.outcome))
        .collect();
    assert_eq!(
        settled,
        [
            ("ds-000", None),
            ("ds-001", Some(Outcome::Harvested)),
            ("ds-002", None),
            ("ds-003", None),
            ("ds-004", None),
        ]
    );
    assert_eq!(
        store.record_outcome(&s.id, &counted).await.unwrap(),
        Counting::AlreadyCounted
    );
    assert_eq!(read_session(store, &s.id).await.counters.harvested, 1);
}

pub async fn a_redelivered_count_counts_nothing(store: &dyn StateStore) {
    let s = listed(store, &ids(2)).await;
    let failed = state(&s, "ds-000", Outcome::Failed);
    assert_eq!(
        store.record_outcome(&s.id, &failed).await.unwrap(),
        Counting::Counted
    );
    assert_eq!(
        store.get_resource(&s.source_id, "ds-000").await.unwrap(),
        Some(failed.clone()),
        "the state is stored with the count"
    );
    let retried = state(&s, "ds-000", Outcome::Harvested);
    assert_eq!(
        store.record_outcome(&s.id, &retried).await.unwrap(),
        Counting::AlreadyCounted
    );
    assert_eq!(
        store.get_resource(&s.source_id, "ds-000").await.unwrap(),
        Some(failed.clone()),
        "a copy counted nothing and stored nothing"
    );
    let unlisted = state(&s, "ds-999", Outcome::Harvested);
    assert_eq!(
        store.record_outcome(&s.id, &unlisted).await.unwrap(),
        Counting::AlreadyCounted,
        "a resource the session never listed is not counted"
    );
    assert_eq!(
        store.get_resource(&s.source_id, "ds-999").await.unwrap(),
        None
    );
    let c = read_session(store, &s.id).await.counters;
    assert_eq!((c.total, c.remaining, c.failed, c.harvested), (2, 1, 1, 0));
    let (markers, _) = store.session_markers(&s.id, None).await.unwrap();
    assert_eq!(markers[0].outcome, Some(Outcome::Failed));
    assert_eq!(markers[0].reason, failed.last_reason);
}

pub async fn a_counted_change_is_read_back_on_its_marker_once(store: &dyn StateStore) {
    use crate::model::RecordChange;
    let s = listed(store, &ids(3)).await;
    let mut added = state(&s, "ds-000", Outcome::Harvested);
    added.mark_change(RecordChange::Added);
    let mut changed = state(&s, "ds-001", Outcome::Harvested);
    let fields = RecordChange::Changed {
        fields: Some(vec!["keywords".into(), "title".into()]),
    };
    changed.mark_change(fields.clone());
    let results = store
        .record_outcomes(&[(s.id.clone(), added), (s.id.clone(), changed)])
        .await;
    assert!(results.iter().all(|r| r == &Ok(Counting::Counted)));
    // A copy that saw other fields counts nothing, so the marker keeps the counted change.
    let mut copy = state(&s, "ds-001", Outcome::Harvested);
    copy.mark_change(RecordChange::Changed { fields: None });
    assert_eq!(
        store.record_outcome(&s.id, &copy).await.unwrap(),
        Counting::AlreadyCounted
    );
    let unchanged = state(&s, "ds-002", Outcome::Unchanged);
    store.record_outcome(&s.id, &unchanged).await.unwrap();
    let (markers, _) = store.session_markers(&s.id, None).await.unwrap();
    let changes: Vec<Option<RecordChange>> = markers.into_iter().map(|m| m.change).collect();
    assert_eq!(changes, [Some(RecordChange::Added), Some(fields), None]);
}

pub async fn a_batch_count_answers_each_resource(store: &dyn StateStore) {
    let a = listed(store, &ids(40)).await;
    let b = listed(store, &ids(2)).await;
    assert_eq!(
        store
            .record_outcome(&a.id, &state(&a, "ds-005", Outcome::Unchanged))
            .await
            .unwrap(),
        Counting::Counted
    );
    // 40 resources of two sessions, one counted before and one twice in the batch: more
    // than one transaction holds, and a cancelled one must not hide the others' answers.
    let mut batch: Vec<(String, ResourceState)> = ids(40)
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let outcome = [Outcome::Harvested, Outcome::Unchanged, Outcome::Failed][i % 3];
            (a.id.clone(), state(&a, id, outcome))
        })
        .collect();
    batch.push((b.id.clone(), state(&b, "ds-001", Outcome::Harvested)));
    batch.push((a.id.clone(), state(&a, "ds-010", Outcome::Harvested)));
    let results = store.record_outcomes(&batch).await;
    let answers: Vec<Counting> = results.into_iter().map(Result::unwrap).collect();
    for (i, answer) in answers.iter().enumerate() {
        let expected = if i == 5 || i == 41 {
            Counting::AlreadyCounted
        } else {
            Counting::Counted
        };
        assert_eq!(*answer, expected, "answer {i} of the batch");
    }
    let c = read_session(store, &a.id).await.counters;
    assert_eq!(c.remaining, 0);
    assert_eq!((c.harvested, c.unchanged, c.failed), (14, 14, 12));
    let c = read_session(store, &b.id).await.counters;
    assert_eq!((c.remaining, c.harvested), (1, 1));
    let keys: Vec<(String, String)> = ["ds-000", "ds-039", "ds-777"]
        .iter()
        .map(|id| (a.source_id.clone(), id.to_string()))
        .collect();
    let found = store.get_resources(&keys).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&keys[0]], batch[0].1);
}

pub async fn a_session_closes_once_and_releases_its_source(store: &dyn StateStore) {
    let s = listed(store, &ids(2)).await;
    match store.close_session(&s.id, at(90)).await.unwrap() {
        Closing::NotClosable(Some(open)) => assert_eq!(open.counters.remaining, 2),
        other => panic!("a session owing work closed: {other:?}"),
    }
    for (id, outcome) in [("ds-000", Outcome::Harvested), ("ds-001", Outcome::Failed)] {
        store
            .record_outcome(&s.id, &state(&s, id, outcome))
            .await
            .unwrap();
    }
    let ended = at(120) + chrono::Duration::milliseconds(250);
    let Closing::Closed(closed) = store.close_session(&s.id, ended).await.unwrap() else {
        panic!("a finished session did not close");
    };
    assert_eq!(closed.status, SessionStatus::PartiallyFailed);
    assert_eq!(closed.ended_at, Some(at(120)), "closed at whole seconds");
    assert_eq!(
        read_session(store, &s.id).await,
        *closed,
        "the closed session is the one read back"
    );
    let e = entry(store, &s.source_id).await;
    assert_eq!(e.running_session, None);
    assert_eq!(e.last_session.as_deref(), Some(s.id.as_str()));
    assert_eq!(e.last_status, Some(SessionStatus::PartiallyFailed));
    assert_eq!(e.incremental_base.as_deref(), Some(s.id.as_str()));
    assert_eq!(e.last_full_listing_at, Some(s.started_at));
    match store.close_session(&s.id, at(130)).await.unwrap() {
        Closing::NotClosable(Some(again)) => assert_eq!(*again, *closed),
        other => panic!("closed twice: {other:?}"),
    }
    assert_eq!(
        store
            .close_session(&unique("nobody@x"), at(0))
            .await
            .unwrap(),
        Closing::NotClosable(None)
    );
    let next = Session::start(&s.source_id, at(86_400), at(86_401));
    assert_eq!(
        store.create_session(&next).await.unwrap(),
        SessionStart::Created,
        "the released source starts its next session"
    );
}

pub async fn an_aborted_session_closes_aborted(store: &dyn StateStore) {
    let s = listed(store, &ids(1)).await;
    assert!(store.request_abort(&s.id).await.unwrap());
    assert!(read_session(store, &s.id).await.abort_requested);
    store
        .record_outcome(&s.id, &state(&s, "ds-000", Outcome::Harvested))
        .await
        .unwrap();
    let Closing::Closed(closed) = store.close_session(&s.id, at(60)).await.unwrap() else {
        panic!("not closed");
    };
    assert_eq!(closed.status, SessionStatus::Aborted);
    let e = entry(store, &s.source_id).await;
    assert_eq!(e.last_status, Some(SessionStatus::Aborted));
    assert_eq!(
        e.incremental_base, None,
        "an aborted session is no incremental base"
    );
    assert!(
        !store.request_abort(&s.id).await.unwrap(),
        "a closed session is not aborted"
    );
    assert!(!store.request_abort(&unique("nobody@x")).await.unwrap());
}

pub async fn a_stale_tombstone_is_written_once_per_session(store: &dyn StateStore) {
    let s = listed(store, &ids(1)).await;
    let harvested = state(&s, "ds-000", Outcome::Harvested);
    store.record_outcome(&s.id, &harvested).await.unwrap();
    let mut missing = harvested.clone();
    missing.missing_listings = 1;
    missing.missing_session = Some("later@1".into());
    assert!(store.mark_missing(&missing).await.unwrap());
    let mut again = missing.clone();
    again.missing_listings = 2;
    assert!(
        !store.mark_missing(&again).await.unwrap(),
        "a repeated stale check counts once"
    );
    assert_eq!(
        store.get_resource(&s.source_id, "ds-000").await.unwrap(),
        Some(missing.clone())
    );
    let mut next = missing.clone();
    next.missing_listings = 2;
    next.missing_session = Some("later@2".into());
    assert!(store.mark_missing(&next).await.unwrap());
    assert_eq!(
        store
            .get_resource(&s.source_id, "ds-000")
            .await
            .unwrap()
            .unwrap()
            .missing_listings,
        2
    );
}

pub async fn a_resource_is_replaced_only_if_unchanged(store: &dyn StateStore) {
    let s = listed(store, &ids(1)).await;
    let harvested = state(&s, "ds-000", Outcome::Harvested);
    store.record_outcome(&s.id, &harvested).await.unwrap();
    let mut deleted = harvested.clone();
    deleted.deleted_at = Some(at(300));
    let mut stale_view = harvested.clone();
    stale_view.title = Some("an older read".into());
    assert!(!store.replace_resource(&stale_view, &deleted).await.unwrap());
    assert!(store.replace_resource(&harvested, &deleted).await.unwrap());
    assert!(
        !store.replace_resource(&harvested, &deleted).await.unwrap(),
        "swapped once"
    );
    assert_eq!(
        store.get_resource(&s.source_id, "ds-000").await.unwrap(),
        Some(deleted)
    );
}

pub async fn resources_and_markers_page_in_id_order(store: &dyn StateStore) {
    // Byte order, as DynamoDB sorts keys: upper case before lower, '-' before digits.
    let mut all: Vec<String> = (0..230).map(|i| format!("ds-{i:04}")).collect();
    all.extend([
        "DS-upper".to_string(),
        "ds-".to_string(),
        "ds-ü".to_string(),
    ]);
    let s = listed(store, &all).await;
    let batch: Vec<(String, ResourceState)> = all
        .iter()
        .map(|id| (s.id.clone(), state(&s, id, Outcome::Unchanged)))
        .collect();
    for result in store.record_outcomes(&batch).await {
        assert_eq!(result.unwrap(), Counting::Counted);
    }
    let mut expected = all.clone();
    expected.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store.list_resources(&s.source_id, after).await.unwrap();
        seen.extend(page.into_iter().map(|r| r.resource_id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, expected, "resources");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store.session_markers(&s.id, after).await.unwrap();
        assert!(page.iter().all(|m| m.outcome == Some(Outcome::Unchanged)));
        seen.extend(page.into_iter().map(|m| m.resource_id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, expected, "markers");
}

pub async fn a_finished_session_refuses_an_abort(store: &dyn StateStore) {
    let s = listed(store, &ids(1)).await;
    store
        .record_outcome(&s.id, &state(&s, "ds-000", Outcome::Harvested))
        .await
        .unwrap();
    assert!(
        !store.request_abort(&s.id).await.unwrap(),
        "nothing remains: its stale check may be deleting already"
    );
    assert!(!read_session(store, &s.id).await.abort_requested);
    let Closing::Closed(closed) = store.close_session(&s.id, at(60)).await.unwrap() else {
        panic!("not closed");
    };
    assert_eq!(closed.status, SessionStatus::Succeeded);
}

pub async fn a_sources_resources_are_removed_together(store: &dyn StateStore) {
    // More than one DynamoDB batch (25) and page of the listing.
    let purged = listed(store, &ids(60)).await;
    let kept = listed(store, &ids(2)).await;
    for s in [&purged, &kept] {
        let (markers, _) = store.session_markers(&s.id, None).await.unwrap();
        let outcomes: Vec<(String, ResourceState)> = markers
            .iter()
            .map(|m| (s.id.clone(), state(s, &m.resource_id, Outcome::Harvested)))
            .collect();
        store.record_outcomes(&outcomes).await;
    }
    assert_eq!(store.remove_resources(&purged.source_id).await.unwrap(), 60);
    let (left, next) = store.list_resources(&purged.source_id, None).await.unwrap();
    assert!(left.is_empty() && next.is_none());
    assert_eq!(
        store
            .get_resource(&purged.source_id, "ds-007")
            .await
            .unwrap(),
        None
    );
    let (other, _) = store.list_resources(&kept.source_id, None).await.unwrap();
    assert_eq!(other.len(), 2, "another source's states stay");
    assert_eq!(store.remove_resources(&purged.source_id).await.unwrap(), 0);
}

// The object store contract.

/// Three responses one after another, as a batch's raw object holds them.
fn batch_body() -> (Bytes, [(u64, u64); 3]) {
    let parts: [&[u8]; 3] = [b"{\"first\": 1}", b"<second>\xc3\xa9</second>", b"third\n"];
    let mut body = Vec::new();
    let mut ranges = [(0, 0); 3];
    for (i, part) in parts.iter().enumerate() {
        ranges[i] = (body.len() as u64, part.len() as u64);
        body.extend_from_slice(part);
    }
    (Bytes::from(body), ranges)
}

pub async fn an_object_reads_back_as_written(objects: &dyn ObjectStore) {
    let key = format!("contract/{}/whole.json", unique("objects"));
    let (body, _) = batch_body();
    objects
        .put(&key, body.clone(), "application/json")
        .await
        .unwrap();
    assert_eq!(objects.get(&key).await.unwrap(), Some(body));
    objects.delete(&key).await.unwrap();
    assert_eq!(objects.get(&key).await.unwrap(), None);
}

pub async fn a_range_reads_back_exactly_its_bytes(objects: &dyn ObjectStore) {
    let key = format!("contract/{}/batch.raw", unique("objects"));
    let (body, ranges) = batch_body();
    objects
        .put(&key, body.clone(), "application/octet-stream")
        .await
        .unwrap();
    for (offset, length) in ranges {
        let part = objects.get_range(&key, offset, length).await.unwrap();
        assert_eq!(
            part.as_deref(),
            Some(&body[offset as usize..(offset + length) as usize]),
            "bytes {offset}+{length}"
        );
    }
    let whole = objects.get_range(&key, 0, body.len() as u64).await.unwrap();
    assert_eq!(whole, Some(body.clone()), "the whole object as one range");
    let empty = objects.get_range(&key, 3, 0).await.unwrap();
    assert_eq!(
        empty,
        Some(Bytes::new()),
        "an empty range of an object that exists"
    );
}

pub async fn a_range_of_a_missing_object_is_none(objects: &dyn ObjectStore) {
    let key = format!("contract/{}/missing.raw", unique("objects"));
    assert_eq!(objects.get_range(&key, 0, 10).await.unwrap(), None);
    assert_eq!(objects.get_range(&key, 0, 0).await.unwrap(), None);
}

pub async fn a_range_past_the_end_is_refused(objects: &dyn ObjectStore) {
    let key = format!("contract/{}/short.raw", unique("objects"));
    let (body, _) = batch_body();
    let size = body.len() as u64;
    objects
        .put(&key, body, "application/octet-stream")
        .await
        .unwrap();
    for (offset, length) in [(size - 2, 5), (size, 1), (size + 10, 3)] {
        let read = objects.get_range(&key, offset, length).await;
        assert!(
            read.as_ref().is_err_and(|e| e.is_permanent()),
            "bytes {offset}+{length} of {size}: {read:?}"
        );
    }
}
