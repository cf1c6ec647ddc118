//! [`RequestGate`] on the state table: in-flight slots are leases (`GATE#{source}` /
//! `SLOT#{n}`) taken with a conditional put and given back with a conditional delete; the pace
//! is one item per source (`GATE#{source}` / `PACE`) holding when its next request may be sent,
//! moved on by a conditional update per request. Everything expires by TTL.

use super::dynamodb::{condition_met, if_condition_met};
use crate::keys;
use crate::politeness::{pace_interval, token, Admission, Limits, Permit, RequestGate};
use crate::ports::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
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
    AttributeValue::S(keys::gate_pk(source_id))
}

fn now_millis() -> u64 {
    now_micros() / 1000
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
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
            let slot = crate::random::u32() % max;
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", gate_pk(source_id))
                .item("sk", AttributeValue::S(keys::slot_sk(slot)))
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

    /// An update of the source's pace item.
    fn update_pace(&self, source_id: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", gate_pk(source_id))
            .key("sk", AttributeValue::S(keys::PACE_SK.into()))
    }

    /// Reserves the request's place in the source's pace: now if the source is idle, else one
    /// interval after the last reservation, if that is at most `max_delay` away. The delay
    /// until that place, or `None`.
    ///
    /// One write when idle, two when queueing: DynamoDB has no `max()` to fold both cases into
    /// one update, and a conditional update is what keeps concurrent invocations from taking
    /// the same place.
    async fn reserve_pace(
        &self,
        source_id: &str,
        per_second: u32,
        max_delay: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        let interval = pace_interval(per_second).as_micros() as u64;
        let now = now_micros();
        let expires = n(now / 1_000_000 + 3600);
        let idle = self
            .update_pace(source_id)
            .update_expression("SET next_send = :next, expires_at = :exp")
            .condition_expression("attribute_not_exists(next_send) OR next_send <= :now")
            .expression_attribute_values(":next", n(now + interval))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":exp", expires.clone())
            .send()
            .await;
        if condition_met(idle)? {
            return Ok(Some(Duration::ZERO));
        }
        let queued = self
            .update_pace(source_id)
            .update_expression("SET next_send = next_send + :interval, expires_at = :exp")
            .condition_expression("next_send > :now AND next_send <= :latest")
            .expression_attribute_values(":interval", n(interval))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":latest", n(now + max_delay.as_micros() as u64))
            .expression_attribute_values(":exp", expires)
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        // A failed condition: the place is beyond `max_delay`, or the source went idle in
        // between; either way the caller tries again shortly.
        let Some(output) = if_condition_met(queued)? else {
            return Ok(None);
        };
        let next_send = output
            .attributes()
            .and_then(|a| a.get("next_send"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| StoreError::new("the pace update returned no next_send"))?;
        Ok(Some(Duration::from_micros(
            (next_send - interval).saturating_sub(now),
        )))
    }
}

#[async_trait]
impl RequestGate for DynamoGate {
    async fn try_acquire(
        &self,
        source_id: &str,
        limits: &Limits,
        lease: Duration,
        max_delay: Duration,
    ) -> Result<Admission, StoreError> {
        let permit = Permit {
            source_id: source_id.to_string(),
            slot: None,
            token: token(),
            delay: Duration::ZERO,
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
        let Some(rps) = limits.requests_per_second else {
            return Ok(Admission::Admitted(permit));
        };
        match self.reserve_pace(source_id, rps, max_delay).await? {
            Some(delay) => Ok(Admission::Admitted(Permit { delay, ..permit })),
            None => {
                self.release(&permit).await?;
                Ok(Admission::Wait(pace_interval(rps)))
            }
        }
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
            .key("sk", AttributeValue::S(keys::slot_sk(slot)))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(permit.token.clone()))
            .send()
            .await;
        // A failed condition: someone took the slot over after our lease ran out; theirs now.
        condition_met(result).map(|_| ())
    }
}
