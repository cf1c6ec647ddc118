//! DCAT-US `data.json` through the pipeline stages (in-memory adapters) against the fixture
//! catalog over real HTTP: one download for the whole catalog, identifiers missing or
//! repeated, and a catalog that does not parse.

mod common;

use common::world;
use trawl::model::SessionStatus;
use trawl::ports::ObjectStore;

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
