//! [`StateStore`](crate::ports::StateStore) on one DynamoDB table (layout in `keys.rs`).
//!
//! Every counting step of the ledger (`model::ledger`) is a conditional write, most of them a
//! conditional `TransactWriteItems`: a page is committed only if its item does not exist yet,
//! an outcome is counted only while its resource's marker is pending, a session closes only
//! while it is running with nothing remaining. So a redelivered message or stream record
//! finds its condition failed and changes nothing: a failed condition is an answer ("already
//! done"), not an error. `TransactionConflict` is retried here with jittered backoff (the SDK
//! does not).
//!
//! - `mod.rs`: [`DynamoStore`], its client calls (get, transaction, batch get, query) and the
//!   retry/backoff around them.
//! - `codec.rs`: items to and from the model's types.
//! - `expressions.rs`: the update and condition expressions each ledger change is written as.
//! - `registry.rs`, `ledger.rs`, `resources.rs`: the ports `SourceRegistry`, `SessionLedger`
//!   and `ResourceStates`.

mod codec;
mod expressions;
mod ledger;
mod registry;
mod resources;

use super::errors::store_error;
use crate::ports::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{KeysAndAttributes, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use codec::{s, Item};
use expressions::{Expression, Feed};

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.item)
    }

    /// Runs a transaction. `Ok(None)`: committed. `Ok(Some(codes))`: cancelled, with one
    /// cancellation code per item (`Some("ConditionalCheckFailed")` where a condition failed).
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<Option<String>>>, StoreError> {
        let mut attempt = 0u32;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let codes = match result {
                Ok(_) => return Ok(None),
                Err(SdkError::ServiceError(e)) => match e.err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                        .collect::<Vec<_>>(),
                    _ => return Err(store_error(SdkError::ServiceError(e))),
                },
                Err(e) => return Err(store_error(e)),
            };
            let conflict = codes.iter().any(|c| {
                matches!(
                    c.as_deref(),
                    Some("TransactionConflict" | "ThrottlingError")
                )
            });
            if conflict && attempt < 8 {
                attempt += 1;
                tracing::debug!(attempt, ?codes, "transaction conflict; retrying");
                backoff(attempt).await;
                continue;
            }
            if conflict {
                return Err(StoreError::new("transaction kept conflicting"));
            }
            return Ok(Some(codes));
        }
    }

    /// A transaction's update of item `pk`/`sk` as `expression` says.
    fn update(
        &self,
        pk: String,
        sk: String,
        expression: Expression,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .feed(expression)
    }

    /// BatchGetItem over any number of keys (strongly consistent): 100 a request, and the
    /// keys the table could not serve asked again after a backoff.
    async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        for chunk in keys.chunks(100) {
            let mut wanted = chunk.to_vec();
            let mut attempt = 0;
            while !wanted.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut wanted)))
                    .set_projection_expression(projection.map(str::to_string))
                    .consistent_read(true)
                    .build()
                    .map_err(store_error)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(store_error)?;
                items.extend(
                    out.responses()
                        .and_then(|r| r.get(&self.table))
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                if let Some(left) = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                {
                    wanted = left;
                    backoff(attempt).await;
                    attempt += 1;
                }
            }
        }
        Ok(items)
    }

    /// BatchWriteItem deletes of any number of keys: 25 a request, the requests the table
    /// left unprocessed sent again after a backoff.
    async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        for chunk in keys.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_error)?;
            let mut attempt = 0;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut requests))
                    .send()
                    .await
                    .map_err(store_error)?;
                if let Some(left) = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .filter(|left| !left.is_empty())
                {
                    requests = left.clone();
                    backoff(attempt).await;
                    attempt += 1;
                }
            }
        }
        Ok(())
    }

    /// One page of a partition (optionally only sort keys with `prefix`), after sort key
    /// `after`; returns the items and the sort key to continue from.
    async fn query_page(
        &self,
        pk: String,
        prefix: Option<&str>,
        after: Option<String>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", s(&pk))
            .consistent_read(true);
        query = match prefix {
            Some(p) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(p)),
            None => query.key_condition_expression("pk = :pk"),
        };
        if let Some(sk) = after {
            query = query
                .exclusive_start_key("pk", s(&pk))
                .exclusive_start_key("sk", s(sk));
        }
        let out = query.send().await.map_err(store_error)?;
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get("sk"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok((out.items.unwrap_or_default(), next))
    }
}

/// Whether item `index` of a cancelled transaction was cancelled by its own condition.
fn condition_failed(codes: &[Option<String>], index: usize) -> bool {
    codes.get(index).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed")
}

async fn backoff(attempt: u32) {
    let base = 20u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % base;
    tokio::time::sleep(std::time::Duration::from_millis(base / 2 + jitter)).await;
}

/// The answer of a conditional write: `true` if it was written, `false` if its condition
/// failed (an answer, not an error), or the error.
pub(crate) fn condition_met<T, E>(result: Result<T, SdkError<E>>) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    if_condition_met(result).map(|output| output.is_some())
}

/// The output of a conditional write, `None` if its condition failed.
pub(crate) fn if_condition_met<T, E>(
    result: Result<T, SdkError<E>>,
) -> Result<Option<T>, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(output) => Ok(Some(output)),
        Err(e)
            if e.as_service_error()
                .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(None)
        }
        Err(e) => Err(store_error(e)),
    }
}
