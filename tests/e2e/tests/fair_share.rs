//! Work messages carry their source as the message group: on AWS a standard queue then
//! delivers as a fair queue (no source's backlog holds the others' messages back). Checked
//! against LocalStack's SQS, which keeps and returns the group, and through the runner,
//! which delivers LocalStack's queue the way a fair queue would.

use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use trawl::messages::{SourceSnapshot, WorkMessage};
use trawl::model::{SessionStatus, SourceSpec};
use trawl::ports::WorkQueue;
use trawl_e2e::{lock_stack, runner, unique_source_id};
use trawl_fixtures::{ErddapConfig, ErddapFixture};
use trawl_runner::Faults;

#[tokio::test]
async fn every_work_message_is_sent_in_its_sources_message_group() {
    trawl_runner::default_to_local_emulator();
    let config = trawl::aws::sdk_config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = format!("fair-share-{}", std::process::id());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let queue = trawl::aws::sqs::SqsQueue::new(client.clone(), url.clone());
    let message = |source: &str, resource: &str| WorkMessage::Resource {
        session_id: format!("{source}@1"),
        source: SourceSnapshot {
            id: source.into(),
            protocol: trawl::model::Protocol::Erddap,
            base_url: "https://e.example.org/erddap".into(),
            internal: false,
            options: Default::default(),
        },
        resource_id: resource.into(),
        deferrals: 0,
    };
    queue
        .send(&[
            message("big", "a"),
            message("small", "b"),
            message("big", "c"),
        ])
        .await
        .unwrap();
    let mut groups = Vec::new();
    for _ in 0..5 {
        let received = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap();
        for m in received.messages() {
            let body: WorkMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned();
            groups.push((body.source_id().to_string(), group));
        }
        if groups.len() == 3 {
            break;
        }
    }
    client.delete_queue().queue_url(&url).send().await.unwrap();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("big".to_string(), Some("big".to_string())),
            ("big".to_string(), Some("big".to_string())),
            ("small".to_string(), Some("small".to_string())),
        ]
    );
}

/// A large source's session started first, so all its messages are queued ahead of the small
/// ones': LocalStack alone hands the small sources nothing until the large one's backlog is
/// gone (first in, first out). Through the runner each small source has harvested all its
/// datasets while the large one has done at most half of its own, and every session closes
/// with each dataset counted once. (The closes themselves follow the table's stream, which
/// LocalStack delivers late under load; that is not a matter of the queue's fairness.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_sources_finish_while_a_large_one_harvests_behind_the_same_queue() {
    const LARGE: u64 = 1_000;
    const SMALL: u64 = 20;
    let _stack = lock_stack();
    let runner = runner(Faults::default()).await.unwrap();
    let catalog = |datasets| {
        ErddapFixture::start(ErddapConfig {
            datasets: datasets as usize,
            ..Default::default()
        })
    };
    let large = catalog(LARGE).await.unwrap();
    let smalls = [
        catalog(SMALL).await.unwrap(),
        catalog(SMALL).await.unwrap(),
        catalog(SMALL).await.unwrap(),
    ];
    let mut sessions = Vec::new();
    for (prefix, fixture) in
        std::iter::once(("large", &large)).chain(smalls.iter().map(|f| ("small", f)))
    {
        let id = unique_source_id(prefix);
        let source = SourceSpec {
            id: id.clone(),
            protocol: "erddap".into(),
            base_url: fixture.base_url(),
            schedule: "rate(1 day)".into(),
            enabled: true,
            internal: true,
            options: Default::default(),
        }
        .validate()
        .unwrap();
        runner.services.store.put_source(&source).await.unwrap();
        let report = runner
            .invoke_scheduler(json!({"source_id": id}))
            .await
            .unwrap();
        assert_eq!(report.started.len(), 1, "{report:?}");
        sessions.push(report.started[0].clone());
    }

    // While the runner works, note how far the large session was when each small one had
    // harvested everything.
    let store = runner.services.store.clone();
    let watched = sessions.clone();
    let watch = tokio::spawn(async move {
        let mut large_done_when_small_done = BTreeMap::new();
        while large_done_when_small_done.len() < watched.len() - 1 {
            let c = store
                .get_session(&watched[0])
                .await
                .unwrap()
                .unwrap()
                .counters;
            let large_done = c.harvested + c.unchanged + c.failed;
            for small in &watched[1..] {
                let c = store.get_session(small).await.unwrap().unwrap().counters;
                if c.total > 0 && c.remaining == 0 {
                    large_done_when_small_done
                        .entry(small.clone())
                        .or_insert(large_done);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        large_done_when_small_done
    });
    runner
        .run_until_closed(&sessions, Duration::from_secs(600))
        .await
        .unwrap();
    let large_done_when_small_done = watch.await.unwrap();
    let put_back = runner.stats.snapshot()["put_back_for_fairness"];
    println!("the large source's datasets done as each small one was: {large_done_when_small_done:?}; {put_back} messages put back");
    for (small, done) in &large_done_when_small_done {
        assert!(
            *done <= LARGE / 2,
            "{small} was done only once the large source had done {done} of {LARGE}"
        );
    }
    for (id, expected) in sessions.iter().zip([LARGE, SMALL, SMALL, SMALL]) {
        let s = runner
            .services
            .store
            .get_session(id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.status, SessionStatus::Succeeded, "{id}");
        assert_eq!(
            (s.counters.total, s.counters.harvested, s.counters.failed),
            (expected, expected, 0),
            "{id}"
        );
    }
}
