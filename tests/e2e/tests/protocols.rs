//! One session per protocol through the deployed pipeline on LocalStack (scheduler → SQS →
//! harvester → stream → finalizer), each against its fixture server: paged listings across
//! several list-page messages, counters, records, raw responses and statuses.

use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::Duration;
use trawl::model::{Outcome, ReasonCode, Session, SessionStatus, SourceSpec};
use trawl_e2e::{get_json, list_objects, lock_stack, runner, unique_source_id};
use trawl_fixtures::ckan::{CkanConfig, CkanFixture, CkanQuirks};
use trawl_fixtures::oai::{OaiConfig, OaiFixture};
use trawl_fixtures::Failure;
use trawl_runner::{Faults, Runner};

const TIMEOUT: Duration = Duration::from_secs(240);

async fn register(runner: &Runner, protocol: &str, base_url: String) -> String {
    let id = unique_source_id(&format!("e2e-{protocol}"));
    let source = SourceSpec {
        id: id.clone(),
        protocol: protocol.into(),
        base_url,
        schedule: "cron(0 3 1 1 ? *)".into(),
        enabled: true,
        internal: true,
        options: Default::default(),
    }
    .validate()
    .unwrap();
    runner.services.store.put_source(&source).await.unwrap();
    id
}

async fn harvest_now(runner: &Runner, source_id: &str) -> Session {
    let at = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let report = runner
        .invoke_scheduler(json!({"source_id": source_id, "scheduled_time": at}))
        .await
        .unwrap();
    assert_eq!(report.started.len(), 1, "{report:?}");
    runner
        .run_until_closed(&report.started, TIMEOUT)
        .await
        .unwrap();
    runner
        .services
        .store
        .get_session(&report.started[0])
        .await
        .unwrap()
        .unwrap()
}

async fn summary(runner: &Runner, session: &Session) -> serde_json::Value {
    get_json(
        runner,
        &trawl::keys::summary_key(&session.source_id, &session.stamp()),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ckan_portal_is_harvested_across_pages_with_one_package_gone() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = CkanFixture::start(CkanConfig {
        datasets: 120,
        rows_cap: 50,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.dataset_ids();
    fixture.set_failure(&ids[7], Some(Failure::NotFound));
    let source_id = register(&runner, "ckan", fixture.base_url()).await;

    let s = harvest_now(&runner, &source_id).await;
    assert_eq!(s.status, SessionStatus::PartiallyFailed);
    let c = s.counters;
    assert_eq!(
        (c.total, c.harvested, c.failed, c.remaining),
        (120, 119, 1, 0)
    );
    assert_eq!(fixture.requests("/api/3/action/package_search"), 3);
    assert_eq!(
        (s.listing.listed, s.listing.expected_total),
        (120, Some(120))
    );
    let first = summary(&runner, &s).await;
    assert_eq!(first["listing"]["complete"], true, "{first}");
    assert_eq!(first["reasons"], json!({"NOT_FOUND": 1}));

    let records = list_objects(&runner, &format!("records/{source_id}/"))
        .await
        .unwrap();
    assert_eq!(records.len(), 119);
    let record = get_json(&runner, &format!("records/{source_id}/{}.json", ids[0]))
        .await
        .unwrap();
    assert_eq!(record["id"], ids[0].as_str());
    assert!(record["title"].as_str().is_some_and(|t| !t.is_empty()));
    let raw = get_json(&runner, &format!("raw/{source_id}/{}.json", ids[0]))
        .await
        .unwrap();
    assert_eq!(
        raw["result"]["id"],
        ids[0].as_str(),
        "the raw package_show answer"
    );
    let gone = runner
        .services
        .store
        .get_resource(&source_id, &ids[7])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.last_outcome, Outcome::Failed);
    assert_eq!(gone.last_reason.unwrap().code, ReasonCode::NotFound);

    // The portal serves page 1 again for page 2 (asked from start=49, one row back to check
    // nothing moved): the duplicates are found in DynamoDB, counted once, and the listing is
    // reported incomplete.
    fixture.set_quirks(CkanQuirks {
        repeat_page_at_start: Some(49),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = harvest_now(&runner, &source_id).await;
    let c = again.counters;
    // Page 3 is asked from row 98 (after the repeat's 50 rows from row 49): rows 98..120.
    assert_eq!(
        (c.total, c.unchanged, c.failed, c.remaining),
        (72, 71, 1, 0)
    );
    let problems = again.listing_problems();
    for expected in [
        "page 2: the catalog changed between pages",
        "page 2: 50 ids were already listed",
        "page 3: the catalog changed between pages",
        "announced 120 resources but 72",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
    assert_eq!(problems.len(), 4, "{problems:?}");
    let summary = summary(&runner, &again).await;
    assert_eq!(summary["listing"]["complete"], false);
    assert!(summary["stale"]["skipped"]
        .as_str()
        .is_some_and(|s| s.contains("incomplete")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oai_pmh_repository_is_harvested_by_resumption_token_with_deleted_records_left_out() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = OaiFixture::start(OaiConfig {
        records: 90,
        page_size: 25,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.identifiers();
    fixture.delete(&ids[3]);
    fixture.delete(&ids[60]);
    let source_id = register(&runner, "oai-pmh", fixture.base_url()).await;

    let s = harvest_now(&runner, &source_id).await;
    assert_eq!(s.status, SessionStatus::Succeeded);
    let c = s.counters;
    assert_eq!(
        (c.total, c.harvested, c.failed, c.remaining),
        (88, 88, 0, 0)
    );
    assert_eq!(fixture.list_pages_served(), 4);
    assert_eq!((s.listing.listed, s.listing.expected_total), (90, Some(90)));
    assert_eq!(summary(&runner, &s).await["listing"]["complete"], true);

    let records = list_objects(&runner, &format!("records/{source_id}/"))
        .await
        .unwrap();
    assert_eq!(records.len(), 88);
    let key = trawl::keys::record_key(&source_id, &ids[0]);
    let record = get_json(&runner, &key).await.unwrap();
    assert_eq!(record["id"], ids[0].as_str());
    assert!(record["title"].as_str().is_some_and(|t| !t.is_empty()));
    let raw = list_objects(&runner, &format!("raw/{source_id}/"))
        .await
        .unwrap();
    assert!(raw.keys().all(|k| k.ends_with(".xml")), "{raw:?}");
    assert_eq!(raw.len(), 88);
    assert!(runner
        .services
        .store
        .get_resource(&source_id, &ids[3])
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_ckan_source_lists_only_what_changed_since_its_base_session() {
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let fixture = CkanFixture::start(CkanConfig {
        datasets: 40,
        rows_cap: 15,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = fixture.dataset_ids();
    let source_id = register(&runner, "ckan", fixture.base_url()).await;
    let store = &runner.services.store;
    let mut source = store.get_source(&source_id).await.unwrap().unwrap().source;
    source.options.incremental = true;
    store.put_source(&source).await.unwrap();

    let full = harvest_now(&runner, &source_id).await;
    assert_eq!((full.since, full.counters.harvested), (None, 40));
    let entry = store.get_source(&source_id).await.unwrap().unwrap();
    assert_eq!(entry.incremental_base.as_deref(), Some(full.id.as_str()));
    assert_eq!(entry.last_full_listing_at, Some(full.started_at));

    fixture.touch(&ids[2]);
    fixture.touch(&ids[33]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let changes = harvest_now(&runner, &source_id).await;
    assert!(changes.since.is_some());
    assert_eq!(changes.base_session.as_deref(), Some(full.id.as_str()));
    assert_eq!((changes.counters.total, changes.counters.harvested), (2, 2));
    assert_eq!(changes.status, SessionStatus::Succeeded);
    let entry = store.get_source(&source_id).await.unwrap().unwrap();
    assert_eq!(entry.incremental_base.as_deref(), Some(changes.id.as_str()));
    assert_eq!(
        entry.last_full_listing_at,
        Some(full.started_at),
        "an incremental listing is not a full one"
    );
}

/// One source per remaining protocol, each harvested once on LocalStack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csw_dcat_geonode_and_arcgis_sources_each_complete_a_session() {
    use trawl_fixtures::{
        ArcGisConfig, ArcGisFixture, CswConfig, CswFixture, DcatConfig, DcatFixture, GeoNodeConfig,
        GeoNodeFixture,
    };
    let _lock = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let csw = CswFixture::start(CswConfig {
        records: 60,
        max_records_cap: 25,
        ..Default::default()
    })
    .await
    .unwrap();
    let dcat = DcatFixture::start(DcatConfig {
        datasets: 40,
        ..Default::default()
    })
    .await
    .unwrap();
    let geonode = GeoNodeFixture::start(GeoNodeConfig {
        datasets: 30,
        ..Default::default()
    })
    .await
    .unwrap();
    let arcgis = ArcGisFixture::start(ArcGisConfig {
        items: 120,
        ..Default::default()
    })
    .await
    .unwrap();
    for (protocol, base_url, expected, extension) in [
        ("csw", csw.base_url(), 60, "xml"),
        ("dcat", dcat.base_url(), 40, "json"),
        ("geonode", geonode.base_url(), 30, "json"),
        ("arcgis", arcgis.base_url(), 120, "json"),
    ] {
        let source_id = register(&runner, protocol, base_url).await;
        let s = harvest_now(&runner, &source_id).await;
        assert_eq!(s.status, SessionStatus::Succeeded, "{protocol}");
        let c = s.counters;
        assert_eq!(
            (c.total, c.harvested, c.failed, c.remaining),
            (expected, expected, 0, 0),
            "{protocol}"
        );
        assert_eq!(s.listing.expected_total, Some(expected), "{protocol}");
        assert_eq!(
            summary(&runner, &s).await["listing"]["complete"],
            true,
            "{protocol}"
        );
        let records = list_objects(&runner, &format!("records/{source_id}/"))
            .await
            .unwrap();
        assert_eq!(records.len() as u64, expected, "{protocol}");
        let raw = list_objects(&runner, &format!("raw/{source_id}/"))
            .await
            .unwrap();
        assert_eq!(raw.len() as u64, expected, "{protocol}");
        assert!(
            raw.keys().all(|k| k.ends_with(extension)),
            "{protocol}: {raw:?}"
        );
        let (key, _) = records.iter().next().unwrap();
        let record = get_json(&runner, key).await.unwrap();
        assert!(
            record["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{protocol}: {record}"
        );
    }
    // data.json was downloaded once for its 40 datasets.
    assert_eq!(dcat.requests("/data.json"), 1);
}
