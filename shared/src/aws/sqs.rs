//! [`WorkQueue`] on SQS: batches of 10, per-entry failures retried (`SendMessageBatch` can
//! answer 200 while failing some entries).

use super::errors::sdk_error;
use crate::messages::WorkMessage;
use crate::ports::{StoreError, WorkQueue};
use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use futures::future::BoxFuture;
use futures::StreamExt;
use std::time::Duration;

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
        }
    }

    async fn send_batch(&self, batch: &[WorkMessage], delay_secs: i32) -> Result<(), StoreError> {
        let mut pending: Vec<(String, String, &str)> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| (m.entry_id(i), m.to_json(), m.source_id()))
            .collect();
        for attempt in 0..6u32 {
            let entries = pending
                .iter()
                .map(|(id, body, source_id)| {
                    // The message group is the source: a standard queue then delivers as a
                    // fair queue, so one huge or slow source's backlog does not hold back
                    // the other sources' messages.
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .message_group_id(*source_id)
                        .set_delay_seconds((delay_secs > 0).then_some(delay_secs))
                        .build()
                        .expect("id and body set")
                })
                .collect();
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error(format_args!("sqs send"), e))?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                return Err(StoreError::permanent(format!(
                    "sqs rejected a message: {} {}",
                    f.code(),
                    f.message().unwrap_or_default()
                )));
            }
            pending.retain(|(id, _, _)| failed.iter().any(|f| f.id() == id));
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        Err(StoreError::new(format!(
            "sqs kept failing {} entries",
            pending.len()
        )))
    }
}

#[async_trait]
impl WorkQueue for SqsQueue {
    async fn send_delayed(
        &self,
        messages: &[WorkMessage],
        delay: Duration,
    ) -> Result<(), StoreError> {
        let delay_secs = delay.as_secs().min(900) as i32;
        let sends: Vec<BoxFuture<'_, Result<(), StoreError>>> = messages
            .chunks(10)
            .map(|batch| -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(self.send_batch(batch, delay_secs))
            })
            .collect();
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(sends)
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| sdk_error(format_args!("sqs change visibility"), e))?;
        Ok(())
    }
}

/// The messages in a dead-letter queue, without consuming them: each received message stays
/// hidden while we look, so the next receive shows new ones (making them visible at once
/// would show the same first ten again); two empty receives in a row mean all were seen.
/// Then all are made visible again.
pub async fn dead_letters(
    client: &Client,
    dlq_url: &str,
) -> Result<Vec<serde_json::Value>, StoreError> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let mut seen = std::collections::BTreeMap::new();
    let mut handles = Vec::new();
    let mut empty_rounds = 0;
    while empty_rounds < 2 {
        let out = client
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| sdk_error("sqs dlq", e))?;
        let messages = out.messages.unwrap_or_default();
        empty_rounds = if messages.is_empty() {
            empty_rounds + 1
        } else {
            0
        };
        for m in &messages {
            let body = m.body().unwrap_or_default();
            seen.entry(m.message_id().unwrap_or_default().to_string())
                .or_insert_with(|| {
                    serde_json::json!({
                        "message_id": m.message_id(),
                        "receive_count": m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount)),
                        "body": serde_json::from_str::<serde_json::Value>(body).unwrap_or_else(|_| serde_json::json!(body)),
                    })
                });
            handles.extend(m.receipt_handle().map(str::to_string));
        }
    }
    for handle in handles {
        client
            .change_message_visibility()
            .queue_url(dlq_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| sdk_error("sqs dlq", e))?;
    }
    Ok(seen.into_values().collect())
}

/// Moves every dead-lettered message back to the work queue; returns how many. Replaying is
/// safe: a message whose resource was counted meanwhile (by a retry or the watchdog) counts
/// nothing.
pub async fn replay_dead_letters(
    client: &Client,
    dlq_url: &str,
    work_url: &str,
) -> Result<u64, StoreError> {
    let mut moved = 0;
    loop {
        let out = client
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .send()
            .await
            .map_err(|e| sdk_error("sqs dlq", e))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        for m in &messages {
            client
                .send_message()
                .queue_url(work_url)
                .message_body(m.body().unwrap_or_default())
                .send()
                .await
                .map_err(|e| sdk_error("sqs dlq", e))?;
            client
                .delete_message()
                .queue_url(dlq_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .map_err(|e| sdk_error("sqs dlq", e))?;
            moved += 1;
        }
    }
}
