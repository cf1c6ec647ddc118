//! Work messages carry their source as the message group: on AWS a standard queue then
//! delivers as a fair queue (no source's backlog holds the others' messages back). Checked
//! against LocalStack's SQS, which keeps and returns the group.

use aws_sdk_sqs::types::MessageSystemAttributeName;
use trawl::messages::{SourceSnapshot, WorkMessage};
use trawl::ports::WorkQueue;

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
