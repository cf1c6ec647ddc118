//! Content written by an attempt that did not count it (it crashed, or another copy of its
//! message counted first), against the in-memory adapters and a fixture ERDDAP server over
//! real HTTP: the resource's state ends up naming the content that is stored.

mod common;

use common::{erddap_world, t, ErddapWorld};
use trawl::messages::WorkMessage;
use trawl::model::Outcome;
use trawl::pipeline::finalize::finalize_session;
use trawl::pipeline::harvest::{handle_message, Disposition};
use trawl::pipeline::schedule::run_now;
use trawl::ports::{ObjectStore, ResourceStates};
use trawl_fixtures::Failure;

/// What a harvester attempt does before it counts: fetch, normalize, write the content.
/// A test stops there to play an attempt that crashed or lost the race to count.
async fn write_content_uncounted(
    w: &ErddapWorld,
    message: &WorkMessage,
) -> trawl::pipeline::content::StoredContent {
    let WorkMessage::Resource {
        source,
        resource_id,
        ..
    } = message
    else {
        panic!("{message:?}")
    };
    let catalog = trawl::protocols::open(source).unwrap();
    let mut requests = Vec::new();
    let mut ctx = trawl::protocols::FetchContext {
        remote: trawl::protocols::Remote {
            http: &w.svc.http,
            source,
            requests: &mut requests,
        },
        // Outside a session: nothing was delivered inline.
        inline: &std::collections::HashMap::new(),
    };
    let Ok(fetched) = catalog.fetch(&mut ctx, resource_id).await else {
        panic!("{resource_id} could not be fetched")
    };
    let record = catalog.normalize(source, resource_id, &fetched).unwrap();
    let hash = record.content_hash();
    trawl::pipeline::content::store_content(&w.svc, source, resource_id, &fetched, &record, hash)
        .await
        .unwrap()
}

async fn record_hash(w: &ErddapWorld, key: &str) -> String {
    let body = w.objects.get(key).await.unwrap().expect("record object");
    serde_json::from_slice::<trawl::model::Record>(&body)
        .unwrap()
        .content_hash()
}

fn resource_id_of(message: &WorkMessage) -> String {
    match message {
        WorkMessage::Resource { resource_id, .. } => resource_id.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failure_counted_after_an_uncounted_attempt_wrote_content_keeps_that_content_named() {
    let w = erddap_world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = &report.started[0];
    let message = w.queue.pop().unwrap();
    let resource = resource_id_of(&message);

    // The first attempt writes the record, then its invocation dies before counting.
    let written = write_content_uncounted(&w, &message).await;
    // The redelivery meets a server that now fails for good.
    w.fixture.set_failure(&resource, Some(Failure::NotFound));
    assert_eq!(
        handle_message(&w.svc, "m", &message.to_json(), 2).await,
        Disposition::Done
    );

    let state = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.last_outcome, Outcome::Failed);
    assert_eq!(state.content_hash.as_deref(), Some(written.hash.as_str()));
    assert_eq!(
        state.record_key.as_deref(),
        Some(written.record_key.as_str())
    );
    let raw = written.raw.expect("a source's own raw object by default");
    assert_eq!(state.raw(), Some(raw.clone()));
    assert!(w.objects.get(&raw.key).await.unwrap().is_some());
    assert_eq!(record_hash(&w, &written.record_key).await, written.hash);
    assert!(
        state.last_harvested_at.is_none(),
        "the failure did not fetch"
    );
    let log = trawl::documents::ResourceLog::find(
        &w.objects
            .get(state.log_key.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap(),
        &state.resource_id,
    )
    .unwrap();
    assert!(log.kept_unclaimed_content);
    let s = w.session(id).await;
    assert_eq!((s.counters.failed, s.counters.harvested), (1, 0));

    // Next session the content is named already: a failure finds nothing unclaimed.
    w.drain().await;
    finalize_session(&w.svc, id).await.unwrap();
    let next = w.harvest("2026-11-23").await;
    assert_eq!(next.counters.failed, 1);
    let state = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.content_hash.as_deref(), Some(written.hash.as_str()));
}

#[tokio::test]
async fn an_attempt_that_wrote_content_after_a_copy_counted_a_failure_points_the_state_at_it() {
    let w = erddap_world(3, &[]).await;
    let report = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    let id = report.started[0].clone();
    let message = w.queue.pop().unwrap();
    let resource = resource_id_of(&message);

    // One copy meets a truncated body and counts a permanent failure; nothing is written.
    w.fixture.set_failure(&resource, Some(Failure::NotFound));
    handle_message(&w.svc, "m", &message.to_json(), 1).await;
    let failed = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.last_outcome, Outcome::Failed);
    assert_eq!(failed.content_hash, None);
    let counters = w.session(&id).await.counters;

    // The other copy had fetched before that and writes its record after the count.
    w.fixture.set_failure(&resource, None);
    let written = write_content_uncounted(&w, &message).await;
    let WorkMessage::Resource { source, .. } = &message else {
        unreachable!()
    };
    // Reconciling for another session touches nothing: that session does not own the state.
    trawl::pipeline::content::reconcile(&w.svc, source, &resource, "src@20261121T120000Z")
        .await
        .unwrap();
    assert_eq!(
        w.store
            .get_resource("src", &resource)
            .await
            .unwrap()
            .unwrap(),
        failed
    );

    trawl::pipeline::content::reconcile(&w.svc, source, &resource, &id)
        .await
        .unwrap();
    let state = w
        .store
        .get_resource("src", &resource)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.content_hash.as_deref(), Some(written.hash.as_str()));
    assert_eq!(
        state.record_key.as_deref(),
        Some(written.record_key.as_str())
    );
    assert_eq!(state.last_outcome, Outcome::Failed, "the count stands");
    assert_eq!(state.history, failed.history);
    assert_eq!(w.session(&id).await.counters, counters);

    // A stale compare-and-swap writes nothing.
    assert!(!w.store.replace_resource(&failed, &failed).await.unwrap());
}

#[tokio::test]
async fn a_receive_after_one_that_wrote_content_and_died_points_the_state_at_that_content() {
    let w = erddap_world(1, &[]).await;
    let first = run_now(&w.svc, "src", t("2026-11-22T12:00:00Z"))
        .await
        .unwrap();
    w.drain().await;
    finalize_session(&w.svc, &first.started[0]).await.unwrap();
    let report = run_now(&w.svc, "src", t("2026-11-23T12:00:00Z"))
        .await
        .unwrap();
    let message = w.queue.pop().unwrap();
    // One copy counts the resource (unchanged)...
    handle_message(&w.svc, "m", &message.to_json(), 1).await;
    let counted = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.last_session, report.started[0]);
    // ...while another wrote newer content after it, and died before naming it.
    let key = counted.record_key.clone().unwrap();
    let mut record: trawl::model::Record =
        serde_json::from_slice(&w.objects.get(&key).await.unwrap().unwrap()).unwrap();
    record.title = Some("Edited upstream between the two fetches".into());
    w.objects
        .put(
            &key,
            serde_json::to_vec(&record).unwrap().into(),
            "application/json",
        )
        .await
        .unwrap();
    // The dead copy's message comes back (its second receive): the state follows the object.
    assert_eq!(
        handle_message(&w.svc, "m", &message.to_json(), 2).await,
        Disposition::Done
    );
    let state = w
        .store
        .get_resource("src", "ds_0001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.content_hash, Some(record.content_hash()));
    // Counted once all the same.
    let c = w.session(&report.started[0]).await.counters;
    assert_eq!(
        (c.total, c.unchanged, c.harvested, c.remaining),
        (1, 1, 0, 0)
    );
}
