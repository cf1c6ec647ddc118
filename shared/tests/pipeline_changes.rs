//! What a session changed in the catalog: its summary's `changes` section, read from the
//! markers the harvester settled (so a redelivered message changes nothing twice).

mod common;

use common::{erddap_world, t};
use serde_json::json;
use trawl::model::SourceOptions;
use trawl::pipeline::schedule::run_now;
use trawl::ports::ResourceStates;

#[tokio::test]
async fn a_sessions_summary_lists_what_it_added_changed_removed_and_restored() {
    let w = erddap_world(8, &[]).await;
    w.set_options(SourceOptions {
        stale_after_listings: 1,
        ..SourceOptions::default()
    })
    .await;
    let first = w.harvest("2026-11-01").await;
    let changes = &w.summary(&first).await["changes"];
    assert_eq!(changes["added"]["count"], 8);
    assert_eq!(changes["added"]["ids"][0], "ds_0001");
    assert_eq!(changes["changed"]["count"], 0);

    w.fixture.bump_version("ds_0003");
    w.fixture.remove_dataset("ds_0006");
    let second = w.harvest("2026-11-02").await;
    let changes = &w.summary(&second).await["changes"];
    assert_eq!(changes["added"]["count"], 0, "{changes}");
    assert_eq!(changes["changed"]["count"], 1);
    let changed = &changes["changed"]["resources"][0];
    assert_eq!(changed["resource_id"], "ds_0003");
    let fields: Vec<&str> = changed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(fields.contains(&"title"), "{fields:?}");
    assert!(
        !fields.contains(&"keywords") && !fields.contains(&"id"),
        "{fields:?}"
    );
    assert_eq!(changes["removed"], json!({"count": 1, "ids": ["ds_0006"]}));

    w.fixture.restore_dataset("ds_0006");
    let third = w.harvest("2026-11-03").await;
    let changes = &w.summary(&third).await["changes"];
    assert_eq!(changes["restored"], json!({"count": 1, "ids": ["ds_0006"]}));
    assert_eq!(
        (
            changes["added"]["count"].as_u64(),
            changes["changed"]["count"].as_u64()
        ),
        (Some(0), Some(0)),
        "a restoration is not counted as added or changed: {changes}"
    );
    let state = w
        .store
        .get_resource("src", "ds_0003")
        .await
        .unwrap()
        .unwrap();
    assert!(
        state.history[1].change.is_some(),
        "the resource's history keeps it too"
    );
}

#[tokio::test]
async fn a_change_is_counted_once_however_often_its_message_is_delivered() {
    let w = erddap_world(5, &[]).await;
    w.harvest("2026-11-01").await;
    w.fixture.bump_version("ds_0002");
    let report = run_now(&w.svc, "src", t("2026-11-02T12:00:00Z"))
        .await
        .unwrap();
    w.drain_handling_twice().await;
    let session = w.session(&report.started[0]).await;
    trawl::pipeline::finalize::finalize_session(&w.svc, &session.id)
        .await
        .unwrap();
    let session = w.session(&session.id).await;
    let changes = &w.summary(&session).await["changes"];
    assert_eq!(changes["changed"]["count"], 1, "{changes}");
    assert_eq!(changes["changed"]["resources"][0]["resource_id"], "ds_0002");
    assert!(changes["changed"]["resources"][0]["fields"].is_array());
}

#[tokio::test]
async fn a_summary_lists_at_most_a_hundred_ids_of_a_kind_with_the_whole_count() {
    let w = erddap_world(130, &[]).await;
    let first = w.harvest("2026-11-01").await;
    let added = &w.summary(&first).await["changes"]["added"];
    assert_eq!(added["count"], 130);
    assert_eq!(added["ids"].as_array().unwrap().len(), 100);
}
