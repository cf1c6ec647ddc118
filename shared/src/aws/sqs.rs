//! [`WorkQueue`] on SQS: batches of 10, per-entry failures retried (`SendMessageBatch` can
//! answer 200 while failing some entries).

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
        let mut pending: Vec<(String, String)> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| (m.entry_id(i), m.to_json()))
            .collect();
        for attempt in 0..6u32 {
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
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
                .map_err(|e| {
                    StoreError::new(format!(
                        "sqs send: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    ))
                })?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                return Err(StoreError::new(format!(
                    "sqs rejected a message: {} {}",
                    f.code(),
                    f.message().unwrap_or_default()
                )));
            }
            pending.retain(|(id, _)| failed.iter().any(|f| f.id() == id));
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
            .map_err(|e| {
                StoreError::new(format!(
                    "sqs change visibility: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }
}
