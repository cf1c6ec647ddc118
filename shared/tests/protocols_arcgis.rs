//! ArcGIS Online / Portal through the pipeline stages (in-memory adapters) against the fixture
//! portal over real HTTP: paged by `nextStart`, errors sent with HTTP 200, items gone before
//! their fetch.

mod common;

use common::{t, world};
use trawl::model::{ReasonCode, SessionStatus};
use trawl::pipeline::schedule::run_now;
use trawl::ports::ResourceStates;
use trawl_fixtures::{ArcGisConfig, ArcGisFixture, ArcGisQuirks};

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
    w.handle_each_once(1).await;
    let state = w.store.get_resource("src", &ids[2]).await.unwrap().unwrap();
    assert_eq!(state.last_reason.unwrap().code, ReasonCode::NotFound);
}
