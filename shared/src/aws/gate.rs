//! [`RequestGate`] on the state table: in-flight slots are leases (`GATE#{source}` /
//! `SLOT#{n}`) taken with a conditional put and given back with a conditional delete; the rate
//! budget is a counter per source and epoch second (`RATE#{second}`) that a conditional `ADD`
//! refuses to raise past the limit. Everything expires by TTL.

use super::dynamodb::condition_met;
use crate::politeness::{
    epoch_second, token, until_next_second, Admission, Limits, Permit, RequestGate,
};
use crate::ports::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub struct DynamoGate {
    client: Client,
    table: String,
}

/// How many slots one attempt tries before waiting (picked at random, so holders spread).
const SLOT_TRIES: u32 = 3;

fn gate_pk(source_id: &str) -> AttributeValue {
    AttributeValue::S(format!("GATE#{source_id}"))
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoGate {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoGate {
        DynamoGate {
            client,
            table: table.into(),
        }
    }

    /// Takes one free (or expired) slot; `None` if the tried ones are all held.
    async fn take_slot(
        &self,
        source_id: &str,
        max: u32,
        lease: Duration,
        token: &str,
    ) -> Result<Option<u32>, StoreError> {
        let now = now_millis();
        for _ in 0..SLOT_TRIES.min(max) {
            let slot = rand::random::<u32>() % max;
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", gate_pk(source_id))
                .item("sk", AttributeValue::S(format!("SLOT#{slot:04}")))
                .item("holder", AttributeValue::S(token.to_string()))
                .item("lease_until", n(now + lease.as_millis() as u64))
                .item("expires_at", n(now / 1000 + lease.as_secs() + 3600))
                .condition_expression("attribute_not_exists(pk) OR lease_until < :now")
                .expression_attribute_values(":now", n(now))
                .send()
                .await;
            if condition_met(result)? {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// Counts one request in this second's budget; `false` if the budget is spent.
    async fn spend_rate(&self, source_id: &str, per_second: u32) -> Result<bool, StoreError> {
        let second = epoch_second();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", gate_pk(source_id))
            .key("sk", AttributeValue::S(format!("RATE#{second}")))
            .update_expression("ADD admitted :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(admitted) OR admitted < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(u64::from(per_second)))
            .expression_attribute_values(":exp", n(second + 3600))
            .send()
            .await;
        condition_met(result)
    }
}

#[async_trait]
impl RequestGate for DynamoGate {
    async fn try_acquire(
        &self,
        source_id: &str,
        limits: &Limits,
        lease: Duration,
    ) -> Result<Admission, StoreError> {
        let permit = Permit {
            source_id: source_id.to_string(),
            slot: None,
            token: token(),
        };
        let permit = match limits.max_in_flight {
            None => permit,
            Some(max) => match self
                .take_slot(source_id, max.max(1), lease, &permit.token)
                .await?
            {
                Some(slot) => Permit {
                    slot: Some(slot),
                    ..permit
                },
                None => return Ok(Admission::Wait(Duration::from_millis(30))),
            },
        };
        if let Some(rps) = limits.requests_per_second {
            if !self.spend_rate(source_id, rps).await? {
                self.release(&permit).await?;
                return Ok(Admission::Wait(until_next_second()));
            }
        }
        Ok(Admission::Admitted(permit))
    }

    async fn release(&self, permit: &Permit) -> Result<(), StoreError> {
        let Some(slot) = permit.slot else {
            return Ok(());
        };
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", gate_pk(&permit.source_id))
            .key("sk", AttributeValue::S(format!("SLOT#{slot:04}")))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(permit.token.clone()))
            .send()
            .await;
        // A failed condition: someone took the slot over after our lease ran out; theirs now.
        condition_met(result).map(|_| ())
    }
}
