//! GeoNode through the pipeline stages (in-memory adapters) against the fixture site over real
//! HTTP: paged by pk, datasets only, incremental listings.

mod common;

use common::{incremental, world};
use trawl::model::SessionStatus;
use trawl::ports::ResourceStates;
use trawl_fixtures::{GeoNodeConfig, GeoNodeFixture, GeoNodeVersion};

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
    w.set_options(incremental(7)).await;
    fixture.touch(&pks[77]);
    let changes = w.harvest("2026-11-24").await;
    assert!(changes.since.is_some());
    assert_eq!((changes.counters.total, changes.counters.harvested), (1, 1));
}

#[tokio::test]
async fn a_geonode_3_site_lists_its_layers_and_their_boxes_come_out_in_degrees() {
    let fixture = GeoNodeFixture::start(GeoNodeConfig {
        datasets: 9,
        version: GeoNodeVersion::V3,
        ..Default::default()
    })
    .await
    .unwrap();
    let w = world("geonode", fixture.base_url()).await;
    let s = w.harvest("2026-11-23").await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    assert_eq!((s.counters.total, s.counters.harvested), (9, 9));
    let (mut boxed, mut noted) = (0, 0);
    for pk in fixture.pks() {
        let r = w.record(&pk).await;
        assert!(r.title.is_some());
        match r.bounding_box {
            Some(b) => {
                // The fixture's boxes, projected or not, lie within these degrees.
                assert!((-80.0..=103.0).contains(&b.west), "{pk}: {b:?}");
                assert!((-30.0..=31.0).contains(&b.south), "{pk}: {b:?}");
                assert!(b.west < b.east && b.south < b.north, "{pk}: {b:?}");
                boxed += 1;
            }
            None => {
                assert!(r.notes[0].contains("EPSG:2876"), "{:?}", r.notes);
                noted += 1;
            }
        }
    }
    // Every layer is one or the other, and the fixture serves both.
    assert_eq!(boxed + noted, 9);
    assert!(boxed > 0 && noted > 0, "{boxed} boxed, {noted} noted");
}
