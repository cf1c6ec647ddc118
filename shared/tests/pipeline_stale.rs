//! Resources gone upstream, against the in-memory adapters and a fixture ERDDAP server over
//! real HTTP: tombstoned, then moved aside or removed after enough complete listings, and
//! never deleted on a listing that failed or shrank too much.

mod common;

use common::{erddap_world, t};
use trawl::model::{SessionStatus, SourceOptions, StaleAction};
use trawl::pipeline::finalize::finalize_session;
use trawl::pipeline::schedule::run_now;
use trawl::pipeline::{deletions, stale};
use trawl::ports::{ObjectStore, ResourceStates, SourceRegistry};
use trawl_fixtures::Failure;

#[tokio::test]
async fn a_dataset_gone_upstream_is_tombstoned_then_moved_aside_after_two_complete_listings() {
    let w = erddap_world(10, &[]).await;
    w.harvest("2026-11-01").await;
    w.fixture.remove_dataset("ds_0004");

    // First listing without it: a tombstone, nothing deleted. A repeated check (a
    // redelivered finalizer) does not advance the tombstone.
    let report = run_now(&w.svc, "src", t("2026-11-02T12:00:00Z"))
        .await
        .unwrap();
    w.drain().await;
    let second = w.session(&report.started[0]).await;
    stale::settle(&w.svc, &second).await.unwrap();
    finalize_session(&w.svc, &second.id).await.unwrap();
    let stale = w.stale_report(&second).await;
    assert_eq!(
        (
            stale.known,
            stale.missing,
            stale.tombstoned.clone(),
            stale.deleted.len()
        ),
        (10, 1, vec!["ds_0004".to_string()], 0)
    );
    let state = w.state("ds_0004").await;
    assert_eq!(state.missing_listings, 1);
    assert!(state.is_live());
    assert_eq!(
        w.objects.keys("records/src/ds_0004").len(),
        1,
        "kept for now"
    );

    // Second consecutive complete listing without it: moved under deleted/.
    let third = w.harvest("2026-11-03").await;
    let stale = w.stale_report(&third).await;
    assert_eq!(stale.deleted, ["ds_0004"]);
    assert!(w.objects.keys("records/src/ds_0004").is_empty());
    assert!(w.objects.keys("raw/src/ds_0004").is_empty());
    assert_eq!(w.objects.keys("deleted/records/src/ds_0004.json").len(), 1);
    assert_eq!(w.objects.keys("deleted/raw/src/ds_0004.json").len(), 1);
    let state = w.state("ds_0004").await;
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
    let fourth = w.harvest("2026-11-04").await;
    let stale = w.stale_report(&fourth).await;
    assert_eq!((stale.known, stale.missing), (9, 0));
}

#[tokio::test]
async fn a_deleted_resource_that_comes_back_is_restored_with_its_record_where_live_ones_are() {
    let w = erddap_world(10, &[]).await;
    w.set_options(SourceOptions {
        stale_after_listings: 1,
        ..SourceOptions::default()
    })
    .await;
    w.harvest("2026-11-01").await;
    let record_before = w.objects.keys("records/src/ds_0004");
    w.fixture.remove_dataset("ds_0004");
    let deleted = w.harvest("2026-11-02").await;
    assert_eq!(w.stale_report(&deleted).await.deleted, ["ds_0004"]);

    // Back with the same content.
    w.fixture.restore_dataset("ds_0004");
    let back = w.harvest("2026-11-03").await;
    assert_eq!(
        back.counters.harvested, 1,
        "written again: {:?}",
        back.counters
    );
    assert_eq!(back.counters.unchanged, 9);
    let state = w.state("ds_0004").await;
    assert!(state.is_live());
    assert_eq!(
        state.record_key.as_deref(),
        Some("records/src/ds_0004.json")
    );
    assert_eq!(state.raw_key.as_deref(), Some("raw/src/ds_0004.json"));
    assert!(state.history.last().unwrap().restored);
    assert_eq!(w.objects.keys("records/src/ds_0004"), record_before);
    assert_eq!(w.objects.keys("raw/src/ds_0004").len(), 1);
    assert!(
        w.objects.keys("deleted/").is_empty(),
        "the aside copies are gone"
    );
    let summary = w.summary(&back).await;
    assert_eq!(
        summary["restored"],
        serde_json::json!(["ds_0004"]),
        "{summary}"
    );
    assert_eq!(summary["restored_count"], 1);

    // And from then on it is an ordinary resource.
    let after = w.harvest("2026-11-04").await;
    assert_eq!(after.counters.unchanged, 10);
    assert!(w.summary(&after).await.get("restored").is_none());
}

#[tokio::test]
async fn a_resource_listed_again_loses_its_tombstone() {
    let w = erddap_world(6, &[]).await;
    w.harvest("2026-11-01").await;
    let hide = SourceOptions {
        exclude: vec!["ds_0002".into()],
        ..SourceOptions::default()
    };
    w.set_options(hide.clone()).await;
    w.harvest("2026-11-02").await;
    let state = w.state("ds_0002").await;
    assert_eq!(state.missing_listings, 1);

    w.set_options(SourceOptions::default()).await;
    w.harvest("2026-11-03").await;
    let state = w.state("ds_0002").await;
    assert_eq!((state.missing_listings, state.missing_session), (0, None));

    // Missing again: the count starts over, so it is not deleted yet.
    w.set_options(hide).await;
    let session = w.harvest("2026-11-04").await;
    assert_eq!(w.stale_report(&session).await.tombstoned, ["ds_0002"]);
    assert!(w.state("ds_0002").await.is_live());
}

#[tokio::test]
async fn a_listing_that_shrank_by_more_than_half_deletes_nothing_and_says_why() {
    let w = erddap_world(10, &[]).await;
    w.harvest("2026-11-01").await;
    for i in 1..=6 {
        w.fixture.remove_dataset(&format!("ds_{i:04}"));
    }
    for day in ["2026-11-02", "2026-11-03", "2026-11-04"] {
        let session = w.harvest(day).await;
        let stale = w.stale_report(&session).await;
        assert_eq!((stale.known, stale.missing), (10, 6));
        assert!(stale.tombstoned.is_empty() && stale.deleted.is_empty());
        let why = stale.skipped.unwrap();
        assert!(why.contains("max_shrink_percent"), "{why}");
    }
    assert_eq!(w.objects.keys("records/src/").len(), 10);
    assert_eq!(w.state("ds_0001").await.missing_listings, 0);
}

#[tokio::test]
async fn a_failed_listing_deletes_nothing() {
    let w = erddap_world(5, &[]).await;
    w.harvest("2026-11-01").await;
    w.fixture
        .set_failure(trawl_fixtures::ALL_DATASETS, Some(Failure::ServerError));
    for day in ["2026-11-02", "2026-11-03"] {
        let session = w.harvest(day).await;
        assert_eq!(session.status, SessionStatus::Failed);
        let stale = w.stale_report(&session).await;
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
    let w = erddap_world(5, &[]).await;
    w.set_options(SourceOptions {
        stale_after_listings: 1,
        on_stale: StaleAction::Remove,
        ..SourceOptions::default()
    })
    .await;
    w.harvest("2026-11-01").await;
    w.fixture.remove_dataset("ds_0005");
    let session = w.harvest("2026-11-02").await;
    assert_eq!(w.stale_report(&session).await.deleted, ["ds_0005"]);
    assert!(w.objects.keys("records/src/ds_0005").is_empty());
    assert!(w.objects.keys("deleted/").is_empty());
    let state = w.state("ds_0005").await;
    assert_eq!((state.record_key, state.raw_key), (None, None));
    assert!(state.deleted_at.is_some());
}

#[tokio::test]
async fn a_source_set_to_hold_keeps_its_deletions_pending_until_an_operator_approves_them() {
    let w = erddap_world(6, &[]).await;
    w.set_options(SourceOptions {
        stale_after_listings: 1,
        on_stale: StaleAction::Hold,
        ..SourceOptions::default()
    })
    .await;
    w.harvest("2026-11-01").await;
    w.fixture.remove_dataset("ds_0002");
    w.fixture.remove_dataset("ds_0005");

    // Due for deletion, but held: still in the catalog, listed in the summary with a count.
    let session = w.harvest("2026-11-02").await;
    let stale = w.stale_report(&session).await;
    assert_eq!(
        (stale.held.clone(), stale.deleted.len()),
        (vec!["ds_0002".to_string(), "ds_0005".to_string()], 0)
    );
    let summary = w.summary(&session).await;
    assert_eq!(summary["held_deletions"], 2);
    assert_eq!(
        summary["stale"]["held"],
        serde_json::json!(["ds_0002", "ds_0005"])
    );
    assert_eq!(
        w.objects.keys("records/src/ds_0002").len(),
        1,
        "not deleted"
    );
    let held: Vec<String> = deletions::held(&w.svc, "src")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.resource_id)
        .collect();
    assert_eq!(held, ["ds_0002", "ds_0005"]);

    // Still missing next time: still held, not deleted.
    let later = w.harvest("2026-11-03").await;
    assert_eq!(w.stale_report(&later).await.held, ["ds_0002", "ds_0005"]);
    assert!(w.objects.keys("deleted/").is_empty());

    // Approving one applies the source's deletion to it alone: moved aside, history kept.
    let decision = deletions::approve(
        &w.svc,
        "src",
        &["ds_0002".to_string(), "ds_0001".to_string()],
    )
    .await
    .unwrap();
    assert_eq!(decision.done, ["ds_0002"]);
    assert_eq!(
        decision.skipped[0].resource_id, "ds_0001",
        "nothing pending for it"
    );
    let state = w.state("ds_0002").await;
    assert!(!state.is_live() && !state.deletion_held());
    assert_eq!(state.history.len(), 1, "its history is kept");
    assert_eq!(w.objects.keys("deleted/records/src/ds_0002.json").len(), 1);
    assert!(w.objects.keys("records/src/ds_0002").is_empty());
    assert_eq!(
        deletions::held(&w.svc, "src").await.unwrap().len(),
        1,
        "ds_0005 still waits"
    );

    // Restoring discards ds_0005's pending deletion and brings ds_0002 back from deleted/.
    let decision = deletions::restore(
        &w.svc,
        "src",
        &["ds_0005".to_string(), "ds_0002".to_string()],
    )
    .await
    .unwrap();
    assert_eq!(decision.done, ["ds_0005", "ds_0002"], "{decision:?}");
    let back = w.state("ds_0002").await;
    assert!(back.is_live());
    assert_eq!(back.record_key.as_deref(), Some("records/src/ds_0002.json"));
    assert_eq!(
        back.history, state.history,
        "its history comes back with it"
    );
    assert!(w.objects.keys("deleted/").is_empty());
    assert!(w
        .objects
        .get("records/src/ds_0002.json")
        .await
        .unwrap()
        .is_some());
    assert!(deletions::held(&w.svc, "src").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_held_resource_listed_again_is_no_longer_pending() {
    let w = erddap_world(4, &[]).await;
    w.set_options(SourceOptions {
        stale_after_listings: 1,
        on_stale: StaleAction::Hold,
        ..SourceOptions::default()
    })
    .await;
    w.harvest("2026-11-01").await;
    w.fixture.remove_dataset("ds_0003");
    w.harvest("2026-11-02").await;
    assert_eq!(deletions::held(&w.svc, "src").await.unwrap().len(), 1);
    w.fixture.restore_dataset("ds_0003");
    let session = w.harvest("2026-11-03").await;
    assert!(deletions::held(&w.svc, "src").await.unwrap().is_empty());
    assert_eq!(w.summary(&session).await["held_deletions"], 0);
    assert_eq!(
        deletions::approve(&w.svc, "src", &[])
            .await
            .unwrap()
            .done
            .len(),
        0,
        "nothing left to approve"
    );
}

#[tokio::test]
async fn deletions_are_not_decided_while_the_source_has_a_running_session() {
    let w = erddap_world(3, &[]).await;
    w.harvest("2026-11-01").await;
    run_now(&w.svc, "src", t("2026-11-02T12:00:00Z"))
        .await
        .unwrap();
    let refused = deletions::approve(&w.svc, "src", &[]).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("running session (src@20261102T120000Z)"),
        "{refused}"
    );
    assert!(matches!(
        deletions::restore(&w.svc, "src", &["ds_0001".to_string()]).await,
        Err(deletions::DeletionError::SessionRunning { .. })
    ));
}

#[tokio::test]
async fn a_source_is_purged_only_between_sessions_and_leaves_nothing() {
    let w = erddap_world(3, &[]).await;
    w.harvest("2026-11-01").await;
    run_now(&w.svc, "src", t("2026-11-02T12:00:00Z"))
        .await
        .unwrap();
    let refused = trawl::pipeline::sources::purge(&w.svc, "src")
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("running session (src@20261102T120000Z)"),
        "{refused}"
    );
    assert!(
        !w.objects.keys("records/src/").is_empty(),
        "nothing removed"
    );
    w.drain().await;
    trawl::pipeline::finalize::finalize_session(&w.svc, "src@20261102T120000Z")
        .await
        .unwrap();
    let purged = trawl::pipeline::sources::purge(&w.svc, "src")
        .await
        .unwrap();
    assert_eq!(purged.states, 3);
    for prefix in ["records/src/", "raw/src/", "logs/src/", "sessions/src/"] {
        assert!(w.objects.keys(prefix).is_empty(), "{prefix}");
    }
    assert!(w
        .store
        .list_resources("src", None)
        .await
        .unwrap()
        .0
        .is_empty());
    assert!(w.store.get_source("src").await.unwrap().is_none());
}
