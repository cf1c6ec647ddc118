//! OAI-PMH through the pipeline stages (in-memory adapters) against the fixture repository
//! over real HTTP: resumption tokens, deleted records, incremental listings, and a listing
//! page answered 503 with Retry-After.

mod common;

use common::{incremental, t, world};
use std::collections::HashMap;
use trawl::model::{Outcome, ReasonCode, SessionStatus};
use trawl::pipeline::finalize::finalize_session;
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::schedule::run_now;
use trawl::ports::{ObjectStore, ResourceStates, SessionLedger, WorkQueue};
use trawl_fixtures::oai::{OaiConfig, OaiFixture, OaiQuirks};
use trawl_fixtures::Failure;

#[tokio::test]
async fn an_oai_repository_is_listed_by_resumption_token_with_deleted_headers_in_its_total() {
    let fixture = OaiFixture::start(OaiConfig {
        records: 25,
        page_size: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.identifiers();
    fixture.delete(&ids[4]);
    fixture.delete(&ids[17]);
    let w = world("oai-pmh", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (23, 23));
    assert_eq!(
        s.listing.listed, 25,
        "deleted headers are listed, not harvested"
    );
    assert_eq!(s.listing.expected_total, Some(25));
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );
    assert!(w
        .store
        .get_resource("src", &ids[4])
        .await
        .unwrap()
        .is_none());

    let record = w.record(&ids[0]).await;
    assert!(record.title.is_some());
    assert!(!record.keywords.is_empty());
    let raw = w
        .objects
        .get(&trawl::keys::raw_key("src", &ids[0], "xml"))
        .await
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&raw).unwrap().contains("<GetRecord>"));

    fixture.touch(&ids[1]);
    let again = w.harvest("2026-11-24").await;
    assert_eq!(
        (again.counters.unchanged, again.counters.harvested),
        (22, 1)
    );
}

#[tokio::test]
async fn an_expired_resumption_token_ends_the_listing_incomplete_and_the_session_still_closes() {
    let fixture = OaiFixture::start(OaiConfig {
        records: 30,
        page_size: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("oai-pmh", fixture.base_url()).await;
    assert_eq!(w.harvest("2026-11-23").await.counters.harvested, 30);

    fixture.set_quirks(OaiQuirks {
        expire_tokens_after: Some(1),
        ..Default::default()
    });
    let s = w.harvest("2026-11-24").await;
    assert_eq!(s.counters.remaining, 0);
    assert_eq!(s.counters.total, 10, "only the first page was listed");
    let problems = s.listing_problems();
    assert!(
        problems.iter().any(|p| p.contains("badResumptionToken")),
        "{problems:?}"
    );
    let summary = w.summary(&s).await;
    assert_eq!(summary["listing"]["complete"], false);
    assert!(summary["stale"]["skipped"]
        .as_str()
        .unwrap()
        .contains("badResumptionToken"));
}

#[tokio::test]
async fn an_oai_record_gone_or_deleted_upstream_is_not_found() {
    let fixture = OaiFixture::start(OaiConfig {
        records: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("oai-pmh", fixture.base_url()).await;
    let ids = fixture.identifiers();
    // Deleted between the listing and the fetch: GetRecord answers a deleted header.
    let report = run_now(&w.svc, "src", t("2026-11-23T12:00:00Z"))
        .await
        .unwrap();
    fixture.delete(&ids[2]);
    w.handle_each_once(3).await;
    let s = w
        .store
        .get_session(&report.started[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.counters.harvested, s.counters.failed), (3, 1));
    let state = w.store.get_resource("src", &ids[2]).await.unwrap().unwrap();
    assert_eq!(state.last_outcome, Outcome::Failed);
    assert_eq!(state.last_reason.unwrap().code, ReasonCode::NotFound);
}

/// With OAI errors sent as the protocol says (200) and as Invenio sends them (422), and from a
/// repository whose granularity is days.
#[tokio::test]
async fn an_incremental_oai_source_with_nothing_new_gets_no_records_match_and_an_empty_complete_session(
) {
    for (error_status, day_granularity) in [(None, false), (Some(422), false), (None, true)] {
        let fixture = OaiFixture::start(OaiConfig {
            records: 12,
            page_size: 5,
            quirks: OaiQuirks {
                error_status,
                day_granularity,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let ids = fixture.identifiers();
        let w = world("oai-pmh", fixture.base_url()).await;
        w.set_options(incremental(7)).await;
        assert_eq!(w.harvest("2026-11-23").await.counters.harvested, 12);

        let quiet = w.harvest("2026-11-24").await;
        assert!(quiet.since.is_some());
        assert_eq!(
            quiet.status,
            SessionStatus::Succeeded,
            "{error_status:?}: {quiet:?}"
        );
        assert_eq!(quiet.counters.total, 0);
        assert!(quiet.listing_problems().is_empty(), "{error_status:?}");

        fixture.touch(&ids[7]);
        // A record gone meanwhile is `idDoesNotExist`: not found, not an HTTP error.
        fixture.set_failure(&ids[8], Some(Failure::NotFound));
        fixture.touch(&ids[8]);
        let changed = w.harvest("2026-11-25").await;
        assert_eq!(
            (changed.counters.total, changed.counters.harvested),
            (2, 1),
            "{error_status:?}"
        );
        assert_eq!(
            w.store
                .get_resource("src", &ids[7])
                .await
                .unwrap()
                .unwrap()
                .last_session,
            changed.id
        );
        let gone = w.store.get_resource("src", &ids[8]).await.unwrap().unwrap();
        let reason = gone.last_reason.unwrap();
        assert_eq!(
            reason.code,
            ReasonCode::NotFound,
            "{error_status:?}: {reason:?}"
        );
    }
}

#[tokio::test]
async fn a_record_an_oai_server_reports_deleted_is_deleted_at_once_only_if_it_tracks_deletions() {
    for (declared, deleted_now) in [("persistent", true), ("transient", true), ("no", false)] {
        let fixture = OaiFixture::start(OaiConfig {
            records: 10,
            page_size: 4,
            deleted_record: declared.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let ids = fixture.identifiers();
        let w = world("oai-pmh", fixture.base_url()).await;
        assert_eq!(w.harvest("2026-11-23").await.counters.harvested, 10);

        fixture.delete(&ids[6]);
        let s = w.harvest("2026-11-24").await;
        assert_eq!(s.counters.total, 9, "{declared}");
        assert!(
            s.listing_problems().is_empty(),
            "{declared}: {:?}",
            s.listing_problems()
        );
        let state = w.store.get_resource("src", &ids[6]).await.unwrap().unwrap();
        let stale = w.stale_report(&s).await;
        let summary = w.summary(&s).await;
        if deleted_now {
            // Listed where operators look for a session's deletions.
            assert_eq!(stale.deleted, [ids[6].clone()], "{declared}");
            assert_eq!(stale.deleted_upstream, [ids[6].clone()], "{declared}");
            assert_eq!(summary["stale"]["deleted"][0], ids[6].as_str(), "{summary}");
            assert_eq!(summary["stale"]["deleted_upstream"][0], ids[6].as_str());
            // The server's word: deleted now, record moved aside, no tombstone wait.
            assert!(state.deleted_at.is_some(), "{declared}");
            let record = state.record_key.unwrap();
            assert!(record.starts_with("deleted/"), "{record}");
            assert!(w.objects.get(&record).await.unwrap().is_some());
            assert!(w
                .objects
                .get(&trawl::keys::record_key("src", &ids[6]))
                .await
                .unwrap()
                .is_none());
        } else {
            // Gone without a word: tombstoned, deleted only after the usual listings.
            assert!(state.deleted_at.is_none(), "{declared}");
            assert!(stale.deleted.is_empty() && stale.deleted_upstream.is_empty());
            assert_eq!(state.missing_listings, 1);
        }
    }
}

#[tokio::test]
async fn an_oai_server_answering_503_with_retry_after_on_a_listing_page_is_retried_not_failed() {
    let fixture = OaiFixture::start(OaiConfig {
        records: 12,
        page_size: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    fixture.set_failure(
        trawl_fixtures::oai::LIST_IDENTIFIERS,
        Some(trawl_fixtures::Failure::Throttled(2)),
    );
    let w = world("oai-pmh", fixture.base_url()).await;
    let report = run_now(&w.svc, "src", t("2026-11-23T12:00:00Z"))
        .await
        .unwrap();
    // The first page could not be listed: it went to the queue as a unit of work.
    let queued = w.queue.pop().unwrap();
    assert!(matches!(
        queued,
        trawl::messages::WorkMessage::ListPage { page: 1, .. }
    ));
    assert_eq!(
        handle_message(&w.svc, "m", &queued.to_json(), 1).await,
        Disposition::Retry,
        "a 503 is transient"
    );
    // The server recovers; the redelivered page lists and the session completes.
    fixture.set_failure(trawl_fixtures::oai::LIST_IDENTIFIERS, None);
    w.queue.send(&[queued]).await.unwrap();
    let mut receives: HashMap<String, u32> = HashMap::new();
    while let Some(message) = w.queue.pop() {
        let body = message.to_json();
        let n = receives.entry(body.clone()).or_insert(1);
        *n += 1;
        handle_message(&w.svc, "m", &body, *n).await;
    }
    let id = &report.started[0];
    finalize_session(&w.svc, id).await.unwrap();
    let s = w.store.get_session(id).await.unwrap().unwrap();
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (12, 12));
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );
}
