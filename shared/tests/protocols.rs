//! Each protocol through the pipeline stages (in-memory adapters) against its fixture server
//! over real HTTP: paged listings, the listing's integrity check, and what each protocol's
//! quirks do to a session.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use trawl::local::{MemoryObjects, MemoryQueue, MemoryStore};
use trawl::model::{Outcome, ReasonCode, Record, Session, SessionStatus, SourceSpec};
use trawl::pipeline::finalize::finalize_session;
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::schedule::run_now;
use trawl::pipeline::{Services, Settings};
use trawl::ports::{ObjectStore, WorkQueue};
use trawl::ports::{ResourceStates, SessionLedger, SourceRegistry};
use trawl_fixtures::ckan::{CkanConfig, CkanFixture, CkanQuirks};
use trawl_fixtures::oai::{OaiConfig, OaiFixture, OaiQuirks};

struct World {
    svc: Services,
    store: Arc<MemoryStore>,
    objects: Arc<MemoryObjects>,
    queue: Arc<MemoryQueue>,
}

async fn world(protocol: &str, base_url: String) -> World {
    let store = Arc::new(MemoryStore::default());
    let objects = Arc::new(MemoryObjects::default());
    let queue = Arc::new(MemoryQueue::default());
    let settings = Settings {
        max_receive_count: 3,
        http_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let svc = Services::new(store.clone(), objects.clone(), queue.clone(), settings);
    let source = SourceSpec {
        id: "src".into(),
        protocol: protocol.into(),
        base_url,
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
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

impl World {
    /// One whole session: start (lists page 1), drain the queue like SQS would, finalize.
    async fn harvest(&self, day: &str) -> Session {
        let report = run_now(&self.svc, "src", t(&format!("{day}T12:00:00Z")))
            .await
            .unwrap();
        assert_eq!(report.started.len(), 1, "{report:?}");
        let mut receives: HashMap<String, u32> = HashMap::new();
        while let Some(message) = self.queue.pop() {
            let body = message.to_json();
            let count = receives.entry(body.clone()).or_insert(0);
            *count += 1;
            if handle_message(&self.svc, "m", &body, *count).await == Disposition::Retry {
                self.queue.send(&[message]).await.unwrap();
            }
        }
        let id = &report.started[0];
        finalize_session(&self.svc, id).await.unwrap();
        self.store.get_session(id).await.unwrap().unwrap()
    }

    async fn summary(&self, session: &Session) -> serde_json::Value {
        let key = trawl::keys::summary_key(&session.source_id, &session.stamp());
        serde_json::from_slice(&self.objects.get(&key).await.unwrap().unwrap()).unwrap()
    }

    async fn record(&self, id: &str) -> Record {
        let key = trawl::keys::record_key("src", id);
        serde_json::from_slice(&self.objects.get(&key).await.unwrap().expect(id)).unwrap()
    }
}

#[tokio::test]
async fn a_ckan_portal_capping_rows_is_listed_page_by_page_and_verified_against_its_count() {
    let fixture = CkanFixture::start(CkanConfig {
        datasets: 25,
        rows_cap: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("ckan", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (25, 25));
    assert_eq!(s.listing.listed, 25);
    assert_eq!(s.listing.expected_total, Some(25));
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );
    // Asked for 1000 rows, got 10 per page: three searches, not one.
    assert_eq!(fixture.requests("/api/3/action/package_search"), 3);

    let ids = fixture.dataset_ids();
    let record = w.record(&ids[0]).await;
    assert!(record.title.is_some());
    assert!(!record.keywords.is_empty());
    assert!(record.links.iter().any(|l| l.rel == "landing"
        && l.href
            == format!(
                "{}/dataset/{}",
                fixture.base_url(),
                fixture.dataset_name(&ids[0]).unwrap()
            )));
    let summary = w.summary(&s).await;
    assert_eq!(summary["listing"]["complete"], true);

    // Unchanged upstream: nothing written again; one dataset edited: harvested again.
    fixture.touch(&ids[3]);
    let again = w.harvest("2026-11-24").await;
    assert_eq!(
        (again.counters.unchanged, again.counters.harvested),
        (24, 1)
    );
}

#[tokio::test]
async fn a_ckan_page_served_twice_makes_the_listing_incomplete_and_deletes_nothing() {
    let fixture = CkanFixture::start(CkanConfig {
        datasets: 25,
        rows_cap: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("ckan", fixture.base_url()).await;
    let first = w.harvest("2026-11-23").await;
    assert_eq!(first.counters.harvested, 25);

    // Page 2 (asked from start=9, one row back to check nothing moved) answers page 1
    // again, and a dataset on the lost page is gone.
    fixture.set_quirks(CkanQuirks {
        repeat_page_at_start: Some(9),
        ..Default::default()
    });
    let ids = fixture.dataset_ids();
    fixture.remove(&ids[12]);
    for day in ["2026-11-24", "2026-11-25", "2026-11-26"] {
        let s = w.harvest(day).await;
        // Pages 1 and 3 count (page 3 from row 18, after the repeat's 10 rows from row 9);
        // the repeat adds nothing and is not counted twice.
        assert_eq!(s.counters.total, 10 + 6, "{day}");
        assert_eq!(s.counters.remaining, 0);
        assert_eq!(s.counters.unchanged, 16);
        let problems = s.listing_problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("page 2: the catalog changed between pages")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("page 2: 10 ids were already listed")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("announced 24 resources but 16")),
            "{problems:?}"
        );
        let summary = w.summary(&s).await;
        assert_eq!(summary["listing"]["complete"], false);
        assert!(summary["stale"]["skipped"]
            .as_str()
            .unwrap()
            .contains("the listing was incomplete"));
    }
    // Three incomplete listings later, every record is still there.
    for id in &ids {
        let state = w.store.get_resource("src", id).await.unwrap().unwrap();
        assert!(state.is_live(), "{id} deleted after incomplete listings");
        assert_eq!(state.missing_listings, 0);
    }
}

#[tokio::test]
async fn a_ckan_count_that_disagrees_with_the_pages_is_reported() {
    let fixture = CkanFixture::start(CkanConfig {
        datasets: 12,
        rows_cap: 5,
        quirks: CkanQuirks {
            count_offset: -2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("ckan", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    // The count says 10, but pages overlap by a row (to see the catalog shift), so the
    // last page, asked from row 8, brings all 12: more than announced, which is reported
    // (an incomplete listing deletes nothing) rather than 2 packages silently left out.
    assert_eq!(s.counters.total, 12);
    assert_eq!(s.listing.expected_total, Some(10));
    assert_eq!(
        s.listing_problems(),
        ["the server announced 10 resources but 12 distinct ones were listed"]
    );

    let fixture = CkanFixture::start(CkanConfig {
        datasets: 12,
        rows_cap: 5,
        quirks: CkanQuirks {
            count_offset: 3,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("ckan", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.counters.total, 12);
    assert_eq!(
        s.listing_problems(),
        ["the server announced 15 resources but 12 distinct ones were listed"]
    );
}

#[tokio::test]
async fn a_missing_ckan_package_is_not_found_and_ckans_error_body_is_kept() {
    let fixture = CkanFixture::start(CkanConfig {
        datasets: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.dataset_ids();
    fixture.set_failure(&ids[1], Some(trawl_fixtures::Failure::NotFound));
    let w = world("ckan", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!((s.counters.harvested, s.counters.failed), (4, 1));
    let state = w.store.get_resource("src", &ids[1]).await.unwrap().unwrap();
    let reason = state.last_reason.unwrap();
    assert_eq!(reason.code, ReasonCode::NotFound);
    assert!(reason.detail.contains("Not Found"), "{reason}");
}

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
    while let Some(message) = w.queue.pop() {
        handle_message(&w.svc, "m", &message.to_json(), 3).await;
    }
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

async fn set_options(w: &World, options: trawl::model::SourceOptions) {
    let mut source = w.store.get_source("src").await.unwrap().unwrap().source;
    source.options = options;
    w.store.put_source(&source).await.unwrap();
}

fn incremental(full_listing_every_days: u32) -> trawl::model::SourceOptions {
    trawl::model::SourceOptions {
        incremental: true,
        full_listing_every_days,
        ..Default::default()
    }
}

#[tokio::test]
async fn an_incremental_ckan_source_lists_changes_and_its_failures_and_only_full_listings_delete() {
    let fixture = CkanFixture::start(CkanConfig {
        datasets: 25,
        rows_cap: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.dataset_ids();
    let w = world("ckan", fixture.base_url()).await;
    set_options(&w, incremental(7)).await;

    // No base yet: a full listing. One package fails.
    fixture.set_failure(&ids[5], Some(trawl_fixtures::Failure::NotFound));
    let first = w.harvest("2026-11-23").await;
    assert_eq!(first.since, None);
    assert_eq!((first.counters.harvested, first.counters.failed), (24, 1));

    // Next: only what changed since (one edited package) plus what failed last time.
    fixture.set_failure(&ids[5], None);
    fixture.touch(&ids[9]);
    let searches = fixture.requests("/api/3/action/package_search");
    let second = w.harvest("2026-11-24").await;
    assert_eq!(
        second.since,
        Some(first.started_at - trawl::pipeline::incremental::OVERLAP)
    );
    assert_eq!(second.base_session.as_deref(), Some(first.id.as_str()));
    assert_eq!(
        (second.counters.total, second.counters.harvested),
        (2, 2),
        "the edited package and the one that failed"
    );
    assert_eq!(second.listing.listed, 1);
    assert_eq!(second.listing.expected_total, Some(1));
    assert!(
        second.listing_problems().is_empty(),
        "{:?}",
        second.listing_problems()
    );
    assert_eq!(
        fixture.requests("/api/3/action/package_search") - searches,
        1
    );
    let summary = w.summary(&second).await;
    assert!(summary["listing"]["incremental_since"].is_string());
    assert!(summary["stale"]["skipped"]
        .as_str()
        .unwrap()
        .contains("incremental"));

    // A package gone upstream is not noticed by incremental listings...
    fixture.remove(&ids[20]);
    let third = w.harvest("2026-11-25").await;
    assert!(third.since.is_some());
    assert_eq!(
        w.store
            .get_resource("src", &ids[20])
            .await
            .unwrap()
            .unwrap()
            .missing_listings,
        0
    );
    // ...and is by the full listing that comes when the last one is old enough.
    set_options(&w, incremental(0)).await;
    let fourth = w.harvest("2026-11-26").await;
    assert_eq!(fourth.since, None);
    assert_eq!(fourth.counters.total, 24);
    assert_eq!(
        w.store
            .get_resource("src", &ids[20])
            .await
            .unwrap()
            .unwrap()
            .missing_listings,
        1
    );
}

#[tokio::test]
async fn an_incremental_oai_source_with_nothing_new_gets_no_records_match_and_an_empty_complete_session(
) {
    let fixture = OaiFixture::start(OaiConfig {
        records: 12,
        page_size: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.identifiers();
    let w = world("oai-pmh", fixture.base_url()).await;
    set_options(&w, incremental(7)).await;
    assert_eq!(w.harvest("2026-11-23").await.counters.harvested, 12);

    let quiet = w.harvest("2026-11-24").await;
    assert!(quiet.since.is_some());
    assert_eq!(quiet.status, SessionStatus::Succeeded);
    assert_eq!(quiet.counters.total, 0);
    assert!(quiet.listing_problems().is_empty());

    fixture.touch(&ids[7]);
    let changed = w.harvest("2026-11-25").await;
    assert_eq!((changed.counters.total, changed.counters.harvested), (1, 1));
    assert_eq!(
        w.store
            .get_resource("src", &ids[7])
            .await
            .unwrap()
            .unwrap()
            .last_session,
        changed.id
    );
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
        if deleted_now {
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
            assert_eq!(state.missing_listings, 1);
        }
    }
}

#[tokio::test]
async fn a_data_json_catalog_is_downloaded_once_and_each_dataset_harvested_from_it() {
    let fixture = trawl_fixtures::DcatFixture::start(trawl_fixtures::DcatConfig {
        datasets: 30,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.identifiers();
    let w = world("dcat", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (30, 30));
    assert_eq!((s.listing.listed, s.listing.expected_total), (30, Some(30)));
    assert_eq!(
        fixture.requests("/data.json"),
        1,
        "one download for 30 datasets"
    );
    // Identifiers are URLs as often as not: each still maps to one record.
    let url_id = ids
        .iter()
        .find(|i| i.starts_with("http"))
        .expect("a URL identifier");
    let record = w.record(url_id).await;
    assert_eq!(record.id, *url_id);
    assert!(record.title.is_some());
    let raw = w
        .objects
        .get(&trawl::keys::raw_key("src", url_id, "json"))
        .await
        .unwrap()
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        raw["identifier"],
        url_id.as_str(),
        "the dataset's own JSON is kept raw"
    );

    fixture.touch(&ids[4]);
    let again = w.harvest("2026-11-24").await;
    assert_eq!(
        (again.counters.unchanged, again.counters.harvested),
        (29, 1)
    );
}

#[tokio::test]
async fn data_json_datasets_without_or_repeating_an_identifier_are_skipped_and_noted() {
    let fixture = trawl_fixtures::DcatFixture::start(trawl_fixtures::DcatConfig {
        datasets: 12,
        quirks: trawl_fixtures::DcatQuirks {
            duplicate_identifier: Some(5),
            missing_identifier: Some(8),
            empty_identifier: None,
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("dcat", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(
        s.counters.total, 10,
        "12 entries, one without an id, one repeating one"
    );
    assert_eq!(s.counters.harvested, 10);
    let problems = s.listing_problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("dataset #9") && p.contains("no identifier")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("dataset #6 repeats identifier")),
        "{problems:?}"
    );
    let summary = w.summary(&s).await;
    assert_eq!(summary["listing"]["complete"], false);
}

#[tokio::test]
async fn a_broken_data_json_fails_the_listing_and_the_session_closes_failed() {
    let fixture = trawl_fixtures::DcatFixture::start(trawl_fixtures::DcatConfig {
        datasets: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    fixture.set_failure("data.json", Some(trawl_fixtures::Failure::Malformed));
    let w = world("dcat", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Failed);
    assert!(
        s.listing_error.as_deref().unwrap().contains("PARSE_ERROR"),
        "{:?}",
        s.listing_error
    );
}

use trawl_fixtures::{CswConfig, CswFixture, CswQuirks};

async fn csw(records: usize, quirks: CswQuirks) -> (CswFixture, World) {
    let fixture = CswFixture::start(CswConfig {
        records,
        max_records_cap: 10,
        quirks,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("csw", fixture.base_url()).await;
    (fixture, w)
}

#[tokio::test]
async fn a_csw_catalogue_is_paged_by_start_position_and_its_iso_records_normalized() {
    let (fixture, w) = csw(45, CswQuirks::default()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (45, 45));
    assert_eq!((s.listing.listed, s.listing.expected_total), (45, Some(45)));
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );
    assert_eq!(fixture.list_pages_served(), 5, "100 asked, 10 a page");
    let ids = fixture.identifiers();
    let r = w.record(&ids[0]).await;
    assert!(r.title.is_some() && r.summary.is_some() && r.institution.is_some());
    assert!(r.license.is_some());
    assert_eq!(r.keywords.len(), 3);
    let b = r.bounding_box.expect("an ISO bounding box");
    assert!(b.west <= b.east && b.south <= b.north);
    assert!(r
        .links
        .iter()
        .any(|l| l.rel == "data" && !l.href.contains("&amp;")));
    // An ongoing record (`endPosition indeterminatePosition="now"`) has a start and no end.
    let ongoing = w.record(&ids[4]).await.time_range.unwrap();
    assert!(ongoing.start.is_some());

    fixture.touch(&ids[17]);
    let again = w.harvest("2026-11-24").await;
    assert_eq!(
        (again.counters.unchanged, again.counters.harvested),
        (44, 1)
    );
}

#[tokio::test]
async fn csw_paging_traps_are_survived_or_reported() {
    struct Case {
        name: &'static str,
        quirks: CswQuirks,
        harvested_all: bool,
        complete: bool,
    }
    let cases = [
        Case {
            name: "nextRecord missing",
            quirks: CswQuirks {
                next_record_missing: true,
                ..Default::default()
            },
            harvested_all: true,
            complete: true,
        },
        Case {
            name: "nextRecord past the end",
            quirks: CswQuirks {
                next_record_past_end: true,
                ..Default::default()
            },
            harvested_all: true,
            complete: true,
        },
        Case {
            name: "fewer records than asked",
            quirks: CswQuirks {
                fewer_than_requested: Some(7),
                ..Default::default()
            },
            harvested_all: true,
            complete: true,
        },
        Case {
            name: "nextRecord behind the start",
            quirks: CswQuirks {
                next_record_behind_start: Some(11),
                ..Default::default()
            },
            harvested_all: true,
            complete: false,
        },
        Case {
            name: "a zero-record page",
            quirks: CswQuirks {
                zero_record_page_at: Some(11),
                ..Default::default()
            },
            harvested_all: false,
            complete: false,
        },
        Case {
            name: "an unstable sort",
            quirks: CswQuirks {
                unstable_sort_seed: Some(7),
                ..Default::default()
            },
            harvested_all: false,
            complete: false,
        },
    ];
    for case in cases {
        let (_fixture, w) = csw(35, case.quirks).await;
        let s = w.harvest("2026-11-23").await;
        assert_eq!(s.counters.remaining, 0, "{}", case.name);
        assert_eq!(
            s.counters.total == 35,
            case.harvested_all,
            "{}: total {}",
            case.name,
            s.counters.total
        );
        assert_eq!(s.counters.harvested, s.counters.total, "{}", case.name);
        assert_eq!(
            s.listing_problems().is_empty(),
            case.complete,
            "{}: {:?}",
            case.name,
            s.listing_problems()
        );
    }
}

#[tokio::test]
async fn an_incremental_csw_source_filters_on_dct_modified_and_a_vanished_record_is_not_found() {
    let (fixture, w) = csw(20, CswQuirks::default()).await;
    set_options(&w, incremental(7)).await;
    assert_eq!(w.harvest("2026-11-23").await.counters.harvested, 20);
    let ids = fixture.identifiers();
    fixture.touch(&ids[3]);
    let s = w.harvest("2026-11-24").await;
    assert!(s.since.is_some());
    assert_eq!((s.counters.total, s.counters.harvested), (1, 1));
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );

    // Listed, then gone before its fetch: GetRecordById answers empty.
    set_options(&w, trawl::model::SourceOptions::default()).await;
    let report = run_now(&w.svc, "src", t("2026-11-25T12:00:00Z"))
        .await
        .unwrap();
    fixture.remove(&ids[8]);
    while let Some(message) = w.queue.pop() {
        handle_message(&w.svc, "m", &message.to_json(), 3).await;
    }
    let state = w.store.get_resource("src", &ids[8]).await.unwrap().unwrap();
    assert_eq!(state.last_session, report.started[0]);
    assert_eq!(state.last_reason.unwrap().code, ReasonCode::NotFound);
}

use trawl_fixtures::{ArcGisConfig, ArcGisFixture, ArcGisQuirks, GeoNodeConfig, GeoNodeFixture};

#[tokio::test]
async fn a_geonode_site_is_paged_by_pk_and_its_datasets_normalized() {
    let fixture = GeoNodeFixture::start(GeoNodeConfig {
        datasets: 130,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("geonode", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (130, 130));
    assert_eq!(
        (s.listing.listed, s.listing.expected_total),
        (130, Some(130))
    );
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );
    let pks = fixture.pks();
    let r = w.record(&pks[0]).await;
    assert!(r.title.is_some() && r.bounding_box.is_some());
    assert!(r.links.iter().any(|l| l.rel == "wms"));
    // Maps and documents share the pk sequence but are not datasets: none was listed.
    let mut known = 0;
    let mut after = None;
    loop {
        let (states, next) = w.store.list_resources("src", after).await.unwrap();
        known += states.len();
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(known, 130);

    // Incremental: only what was edited (GeoNode's own last_updated filter).
    set_options(&w, incremental(7)).await;
    fixture.touch(&pks[77]);
    let changes = w.harvest("2026-11-24").await;
    assert!(changes.since.is_some());
    assert_eq!((changes.counters.total, changes.counters.harvested), (1, 1));
}

#[tokio::test]
async fn an_arcgis_portal_is_paged_by_next_start_and_errors_sent_with_200_are_caught() {
    let fixture = ArcGisFixture::start(ArcGisConfig {
        items: 150,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.item_ids();
    fixture.remove(&ids[10]);
    let w = world("arcgis", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (149, 149));
    assert!(
        s.listing_problems().is_empty(),
        "{:?}",
        s.listing_problems()
    );
    let r = w.record(&ids[0]).await;
    assert!(r.title.is_some());
    assert!(r.links[0]
        .href
        .ends_with(&format!("/home/item.html?id={}", ids[0])));

    // A search page answering `{"error": {"code": 498}}` with HTTP 200 fails the listing
    // (nothing is deleted), it is not read as an empty page.
    fixture.set_quirks(ArcGisQuirks {
        error_in_200_on_search_page: Some(101),
        ..Default::default()
    });
    let broken = w.harvest("2026-11-24").await;
    assert_eq!(broken.counters.total, 100);
    let error = broken.listing_error.clone().unwrap();
    assert!(
        error.contains("498") && error.contains("Invalid token"),
        "{error}"
    );
    assert!(w.summary(&broken).await["stale"]["skipped"].is_string());

    // A portal whose nextStart never moves: the listing stops and says so.
    fixture.set_quirks(ArcGisQuirks {
        next_start_stuck: true,
        ..Default::default()
    });
    let stuck = w.harvest("2026-11-25").await;
    assert_eq!(stuck.counters.total, 100);
    assert!(
        stuck
            .listing_problems()
            .iter()
            .any(|p| p.contains("does not move on")),
        "{:?}",
        stuck.listing_problems()
    );
}

#[tokio::test]
async fn an_arcgis_item_gone_before_its_fetch_is_not_found() {
    let fixture = ArcGisFixture::start(ArcGisConfig {
        items: 5,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.item_ids();
    let w = world("arcgis", fixture.base_url()).await;
    run_now(&w.svc, "src", t("2026-11-23T12:00:00Z"))
        .await
        .unwrap();
    fixture.remove(&ids[2]);
    while let Some(message) = w.queue.pop() {
        handle_message(&w.svc, "m", &message.to_json(), 1).await;
    }
    let state = w.store.get_resource("src", &ids[2]).await.unwrap().unwrap();
    assert_eq!(state.last_reason.unwrap().code, ReasonCode::NotFound);
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
