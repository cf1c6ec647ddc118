//! The embedded run's state in SQLite (`DiskStore`): the same pipeline as the in-memory
//! store, persisted as it goes and reopened by the next run.

mod common;

use common::temp_dir;
use std::sync::Arc;
use trawl::local::{run::harvest_once, DiskStore, FileObjects, MemoryQueue};
use trawl::model::{Outcome, ResourceState, SourceSpec};
use trawl::pipeline::{Services, Settings};
use trawl::ports::Counting;
use trawl::ports::{ResourceStates, SessionLedger, SourceRegistry};
use trawl_fixtures::{ErddapConfig, ErddapFixture, Failure};

fn source(base_url: String) -> trawl::model::Source {
    SourceSpec {
        id: "ocean".into(),
        protocol: "erddap".into(),
        base_url,
        schedule: "rate(1 day)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap()
}

/// One embedded session into `dir`, the store opened and saved the way `trawl harvest` does.
async fn harvest(dir: &std::path::Path, fixture: &ErddapFixture) -> trawl::model::Session {
    let store = Arc::new(DiskStore::open(dir).unwrap());
    let queue = Arc::new(MemoryQueue::with_delays());
    let svc = Services::new(
        store.clone(),
        Arc::new(FileObjects::new(dir)),
        queue.clone(),
        Settings::default(),
    );
    svc.store
        .put_source(&source(fixture.base_url()))
        .await
        .unwrap();
    let run = harvest_once(&svc, &queue, "ocean", chrono::Utc::now(), 8, &|_| {})
        .await
        .unwrap();
    store.save().unwrap();
    run.session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_persists_its_states_and_the_next_run_finds_them_unchanged() {
    // 1,200 datasets: two listing pages, and more markers and states than one SQL page.
    let fixture = ErddapFixture::start(ErddapConfig {
        datasets: 1_200,
        failures: [("ds_0007".to_string(), Failure::NotFound)].into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = temp_dir("runs");
    let first = harvest(&dir, &fixture).await;
    assert_eq!(
        (first.counters.harvested, first.counters.failed),
        (1_199, 1)
    );
    assert!(dir.join("state.db").exists());

    fixture.bump_version("ds_0100");
    fixture.remove_dataset("ds_0200");
    let second = harvest(&dir, &fixture).await;
    assert_eq!(
        (
            second.counters.total,
            second.counters.harvested,
            second.counters.unchanged,
            second.counters.failed
        ),
        (1_199, 1, 1_197, 1),
        "{second:?}"
    );

    let store = DiskStore::open(&dir).unwrap();
    let state = store
        .get_resource("ocean", "ds_0100")
        .await
        .unwrap()
        .unwrap();
    let outcomes: Vec<Outcome> = state.history.iter().map(|h| h.outcome).collect();
    assert_eq!(outcomes, [Outcome::Harvested, Outcome::Harvested]);
    // Gone upstream: tombstoned by the second (complete) listing, the state on disk says so.
    let gone = store
        .get_resource("ocean", "ds_0200")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.missing_listings, 1);
    let entry = store.get_source("ocean").await.unwrap().unwrap();
    assert_eq!(entry.last_session.as_deref(), Some(second.id.as_str()));
    assert_eq!(entry.running_session, None);
    let snapshot = store.snapshot().unwrap();
    assert_eq!(snapshot.sessions.len(), 2);
    assert_eq!(snapshot.resources.len(), 1_200);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn state(resource_id: &str, session_id: &str) -> ResourceState {
    ResourceState::next(
        None,
        "ocean",
        resource_id,
        session_id,
        Outcome::Harvested,
        None,
        chrono::Utc::now(),
        None,
    )
}

#[tokio::test]
async fn a_batch_counts_each_resource_once_and_a_closed_sessions_markers_are_dropped() {
    let dir = temp_dir("markers");
    let store = DiskStore::open(&dir).unwrap();
    store
        .put_source(&source("http://127.0.0.1:1/erddap".into()))
        .await
        .unwrap();
    let session = trawl::model::Session::start("ocean", chrono::Utc::now(), chrono::Utc::now());
    store.create_session(&session).await.unwrap();
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    store.put_pending_markers(&session.id, &ids).await.unwrap();

    // A copy of "a" in the same batch, and "z" that was never listed: neither counts.
    let batch: Vec<(String, ResourceState)> = ["a", "a", "b", "z"]
        .iter()
        .map(|id| (session.id.clone(), state(id, &session.id)))
        .collect();
    let counted: Vec<Counting> = store
        .record_outcomes(&batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        counted,
        [
            Counting::Counted,
            Counting::AlreadyCounted,
            Counting::Counted,
            Counting::AlreadyCounted
        ]
    );
    let (markers, _) = store.session_markers(&session.id, None).await.unwrap();
    let settled: Vec<(String, Option<Outcome>)> = markers
        .into_iter()
        .map(|m| (m.resource_id, m.outcome))
        .collect();
    assert_eq!(
        settled,
        [
            ("a".to_string(), Some(Outcome::Harvested)),
            ("b".to_string(), Some(Outcome::Harvested)),
            ("c".to_string(), None)
        ]
    );

    // `trawl serve` opening the same directory meanwhile sees what is committed (at the
    // latest by `save`), and opening it clears nothing.
    store.save().unwrap();
    let other = DiskStore::open(&dir).unwrap();
    assert!(other.get_resource("ocean", "b").await.unwrap().is_some());
    assert!(other.get_resource("ocean", "z").await.unwrap().is_none());
    drop(other);
    let (still, _) = store.session_markers(&session.id, None).await.unwrap();
    assert_eq!(still.len(), 3, "a running session's markers survive a save");

    // Closed, its markers have done their work: the next save drops them.
    store
        .record_outcome(&session.id, &state("c", &session.id))
        .await
        .unwrap();
    assert!(matches!(
        store
            .close_session(&session.id, chrono::Utc::now())
            .await
            .unwrap(),
        trawl::ports::Closing::Closed(_)
    ));
    store.save().unwrap();
    let (gone, _) = store.session_markers(&session.id, None).await.unwrap();
    assert!(gone.is_empty(), "{gone:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
