//! CSW through the pipeline stages (in-memory adapters) against the fixture catalogue over real
//! HTTP: paging by start position and its traps, ISO records normalized, incremental
//! listings.

mod common;

use common::{incremental, t, world, World};
use trawl::model::{ReasonCode, SessionStatus};
use trawl::pipeline::schedule::run_now;
use trawl::ports::ResourceStates;
use trawl_fixtures::{CswConfig, CswFixture, CswQuirks, CswSchemas};

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
    w.set_options(incremental(7)).await;
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
    w.set_options(trawl::model::SourceOptions::default()).await;
    let report = run_now(&w.svc, "src", t("2026-11-25T12:00:00Z"))
        .await
        .unwrap();
    fixture.remove(&ids[8]);
    w.handle_each_once(3).await;
    let state = w.store.get_resource("src", &ids[8]).await.unwrap().unwrap();
    assert_eq!(state.last_session, report.started[0]);
    assert_eq!(state.last_reason.unwrap().code, ReasonCode::NotFound);
}

async fn csw_offering(schemas: CswSchemas) -> (CswFixture, World) {
    let fixture = CswFixture::start(CswConfig {
        records: 12,
        max_records_cap: 10,
        schemas,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("csw", fixture.base_url()).await;
    (fixture, w)
}

#[tokio::test]
async fn a_catalogue_without_iso_19139_is_harvested_in_iso_19115_3_or_else_dublin_core() {
    let (iso, w) = csw_offering(CswSchemas::Iso19139).await;
    w.harvest("2026-11-23").await;
    let ids = iso.identifiers();
    let reference = w.record(&ids[3]).await;
    assert_eq!(iso.get_record_requests(&ids[3]), 1);

    for (schemas, requests_each) in [(CswSchemas::Iso19115_3, 2), (CswSchemas::DublinCoreOnly, 3)] {
        let (fixture, w) = csw_offering(schemas).await;
        let s = w.harvest("2026-11-23").await;
        assert_eq!(s.status, SessionStatus::Succeeded, "{schemas:?}");
        assert_eq!(
            (s.counters.harvested, s.counters.failed),
            (12, 0),
            "{schemas:?}"
        );
        // Each schema the server lacks costs one refused (or empty) request.
        assert_eq!(
            fixture.get_record_requests(&ids[3]),
            requests_each,
            "{schemas:?}"
        );
        let r = w.record(&ids[3]).await;
        assert_eq!(r.title, reference.title, "{schemas:?}");
        assert_eq!(r.summary, reference.summary, "{schemas:?}");
        assert_eq!(r.keywords, reference.keywords, "{schemas:?}");
        assert_eq!(r.institution, reference.institution, "{schemas:?}");
        assert_eq!(r.license, reference.license, "{schemas:?}");
        assert_eq!(r.bounding_box, reference.bounding_box, "{schemas:?}");
        let hrefs = |r: &trawl::model::Record| -> Vec<String> {
            r.links
                .iter()
                .filter(|l| l.rel == "data")
                .map(|l| l.href.clone())
                .collect()
        };
        assert_eq!(hrefs(&r), hrefs(&reference), "{schemas:?}");
        assert!(r.dates.modified.is_some(), "{schemas:?}");
        if schemas == CswSchemas::Iso19115_3 {
            assert_eq!(r.time_range, reference.time_range);
            assert_eq!(r.language.as_deref(), Some("eng"));
        }
    }
}

#[tokio::test]
async fn an_unknown_id_is_not_found_after_every_schema_came_back_empty() {
    let (fixture, w) = csw_offering(CswSchemas::Iso19115_3).await;
    let ids = fixture.identifiers();
    fixture.set_failure(&ids[0], Some(trawl_fixtures::Failure::NotFound));
    let s = w.harvest("2026-11-23").await;
    assert_eq!((s.counters.harvested, s.counters.failed), (11, 1));
    assert_eq!(w.summary(&s).await["reasons"]["NOT_FOUND"], 1);
    assert_eq!(fixture.get_record_requests(&ids[0]), 3, "one per schema");
}
