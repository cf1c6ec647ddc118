//! CKAN through the pipeline stages (in-memory adapters) against the fixture portal over real
//! HTTP: pages capped by the portal, the listing checked against its count, pages served
//! twice, missing packages, and incremental listings.

mod common;

use common::{incremental, world};
use trawl::model::{ReasonCode, SessionStatus};
use trawl::ports::ResourceStates;
use trawl_fixtures::ckan::{CkanConfig, CkanFixture, CkanQuirks};

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
    w.set_options(incremental(7)).await;

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
    w.set_options(incremental(0)).await;
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
