//! [`StateStore`] on one DynamoDB table (layout in `keys.rs`). Every counting step is a
//! conditional `TransactWriteItems`; a failed condition is an answer ("already done"), not an
//! error. `TransactionConflict` is retried here with jittered backoff (the SDK does not).

use super::errors::store_error;
use crate::keys::{self, MARKER_PREFIX, SESSION_SK, SOURCES_PK};
use crate::model::ledger::{self, Tally};
use crate::model::{
    session::rfc3339, Counters, ListingCheck, Outcome, Reason, ResourceState, Session,
    SessionStatus, Source, SourceOptions,
};
use crate::ports::{
    Closing, Counting, Marker, PageState, ResourceStates, SessionLedger, SessionStart, SourceEntry,
    SourceRegistry, StoreError,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

type Item = HashMap<String, AttributeValue>;

/// Markers outlive their session by this long, then DynamoDB's TTL removes them.
const MARKER_TTL_DAYS: i64 = 90;

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

    fn update(
        &self,
        pk: String,
        sk: String,
        expression: &str,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(expression)
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

    /// Settles a resource's pending marker with its outcome; fails if it is not pending.
    fn settle_item(
        &self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut settle = self
            .update(
                keys::session_pk(session_id),
                keys::marker_sk(&state.resource_id),
                "SET #status = :outcome, settled_at = :at",
            )
            .condition_expression("#status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":outcome", s(state.last_outcome.as_str()))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":at", s(rfc3339(state.last_attempt_at)));
        if let Some(reason) = &state.last_reason {
            settle = settle
                .update_expression("SET #status = :outcome, settled_at = :at, reason = :reason")
                .expression_attribute_values(
                    ":reason",
                    s(serde_json::to_string(reason).expect("reasons serialize")),
                );
        }
        Ok(TransactWriteItem::builder()
            .update(settle.build().map_err(store_error)?)
            .build())
    }

    /// Counts a [`Tally`] in a session (its markers' conditions are items of their own).
    fn count_item(&self, session_id: &str, tally: &Tally) -> Result<TransactWriteItem, StoreError> {
        let mut expression = String::from("ADD remaining :minus");
        let mut update = self
            .update(keys::session_pk(session_id), SESSION_SK.into(), "")
            .expression_attribute_values(
                ":minus",
                AttributeValue::N(format!("-{}", tally.settled())),
            );
        for (i, (outcome, count)) in tally.counters().into_iter().enumerate() {
            expression.push_str(&format!(", #o{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#o{i}"), outcome.counter())
                .expression_attribute_values(format!(":c{i}"), n(count));
        }
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .update_expression(expression)
                    .build()
                    .map_err(store_error)?,
            )
            .build())
    }

    fn state_item(&self, state: &ResourceState) -> Result<TransactWriteItem, StoreError> {
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(resource_item(state)))
                    .build()
                    .map_err(store_error)?,
            )
            .build())
    }

    /// One transaction for `chunk` of `outcomes`; `Ok(false)` if it was cancelled.
    async fn transact_batch(
        &self,
        outcomes: &[(String, ResourceState)],
        chunk: &[usize],
    ) -> Result<bool, StoreError> {
        let mut items = Vec::with_capacity(chunk.len() * 2 + 1);
        let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
        for &i in chunk {
            let (session_id, state) = &outcomes[i];
            items.push(self.settle_item(session_id, state)?);
            items.push(self.state_item(state)?);
            tallies
                .entry(session_id.as_str())
                .or_default()
                .add(state.last_outcome);
        }
        for (session_id, tally) in &tallies {
            items.push(self.count_item(session_id, tally)?);
        }
        Ok(self.transact(items).await?.is_none())
    }
}

fn condition_failed(codes: &[Option<String>], index: usize) -> bool {
    codes.get(index).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed")
}

#[async_trait]
impl SourceRegistry for DynamoStore {
    async fn put_source(&self, source: &Source) -> Result<(), StoreError> {
        // An update, not a put: the run state on the same item must survive config edits.
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(SOURCES_PK))
            .key("sk", s(&source.id))
            .update_expression(
                "SET protocol = :p, base_url = :u, schedule = :s, enabled = :e, internal = :i, options = :o, updated_at = :t",
            )
            .expression_attribute_values(":p", s(source.protocol.to_string()))
            .expression_attribute_values(":u", s(&source.base_url))
            .expression_attribute_values(":s", s(&source.schedule))
            .expression_attribute_values(":e", AttributeValue::Bool(source.enabled))
            .expression_attribute_values(":i", AttributeValue::Bool(source.internal))
            .expression_attribute_values(":o", s(serde_json::to_string(&source.options).expect("options serialize")))
            .expression_attribute_values(":t", s(rfc3339(Utc::now())))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn remove_source(&self, id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(SOURCES_PK))
            .key("sk", s(id))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(running_session)")
            .send()
            .await;
        condition_met(result)
    }

    async fn get_source(&self, id: &str) -> Result<Option<SourceEntry>, StoreError> {
        self.get(SOURCES_PK.into(), id.into())
            .await?
            .map(|item| source_entry(&item))
            .transpose()
    }

    async fn list_sources(&self) -> Result<Vec<SourceEntry>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(SOURCES_PK))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut sources = Vec::new();
        while let Some(item) = pages.next().await {
            sources.push(source_entry(&item.map_err(store_error)?)?);
        }
        Ok(sources)
    }
}

#[async_trait]
impl SessionLedger for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<SessionStart, StoreError> {
        let mut item = session_item(session);
        item.insert("pk".into(), s(keys::session_pk(&session.id)));
        item.insert("sk".into(), s(SESSION_SK));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(store_error)?;
        let claim = self
            .update(SOURCES_PK.into(), session.source_id.clone(), "SET running_session = :sid")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(running_session) OR running_session = :sid)",
            )
            .expression_attribute_values(":sid", s(&session.id))
            .build()
            .map_err(store_error)?;
        let codes = match self
            .transact(vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder().update(claim).build(),
            ])
            .await?
        {
            None => return Ok(SessionStart::Created),
            Some(codes) => codes,
        };
        if condition_failed(&codes, 0) {
            if let Some(existing) = self.get_session(&session.id).await? {
                return Ok(SessionStart::AlreadyExists(Box::new(existing)));
            }
        }
        match self.get_source(&session.source_id).await? {
            None => Ok(SessionStart::UnknownSource),
            Some(entry) => Ok(SessionStart::SourceBusy {
                running: entry.running_session.unwrap_or_default(),
            }),
        }
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.get(keys::session_pk(id), SESSION_SK.into())
            .await?
            .map(|item| parse_session(&item))
            .transpose()
    }

    async fn get_page(&self, session_id: &str, page: u32) -> Result<Option<PageState>, StoreError> {
        let Some(item) = self
            .get(keys::session_pk(session_id), keys::page_sk(page))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(PageState {
            page,
            ids_key: get_s(&item, "ids_key").unwrap_or_default(),
            count: get_n(&item, "count"),
            next_cursor: get_s(&item, "next_cursor"),
            sent: matches!(item.get("sent"), Some(AttributeValue::Bool(true))),
            error: get_s(&item, "error"),
            listed: get_n(&item, "listed"),
            expected_total: get_opt_n(&item, "expected_total"),
            problems: get_list(&item, "problems"),
            listed_at: get_s(&item, "listed_at").and_then(|t| t.parse().ok()),
        }))
    }

    async fn listed_before(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let keys = resource_ids
            .iter()
            .map(|id| {
                HashMap::from([
                    ("pk".into(), s(keys::session_pk(session_id))),
                    ("sk".into(), s(keys::marker_sk(id))),
                ])
            })
            .collect();
        let found = self
            .batch_get(keys, Some("sk"))
            .await?
            .iter()
            .filter_map(|item| {
                get_s(item, "sk").and_then(|sk| sk.strip_prefix(MARKER_PREFIX).map(str::to_string))
            })
            .collect();
        Ok(found)
    }

    async fn commit_page(&self, session_id: &str, page: &PageState) -> Result<bool, StoreError> {
        let mut item: Item = HashMap::from([
            ("pk".into(), s(keys::session_pk(session_id))),
            ("sk".into(), s(keys::page_sk(page.page))),
            ("ids_key".into(), s(&page.ids_key)),
            ("count".into(), n(page.count)),
            ("sent".into(), AttributeValue::Bool(false)),
        ]);
        if let Some(c) = &page.next_cursor {
            item.insert("next_cursor".into(), s(c));
        }
        if let Some(e) = &page.error {
            item.insert("error".into(), s(e));
        }
        if let Some(at) = page.listed_at {
            item.insert("listed_at".into(), s(rfc3339(at)));
        }
        item.insert("listed".into(), n(page.listed));
        if let Some(t) = page.expected_total {
            item.insert("expected_total".into(), n(t));
        }
        if !page.problems.is_empty() {
            item.insert("problems".into(), string_list(&page.problems));
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(store_error)?;
        let change = ledger::commit_page(page);
        let mut sets = Vec::new();
        if change.listing_error.is_some() {
            sets.push("listing_error = :error");
        }
        if change.expected_total.is_some() {
            sets.push("expected_total = :expected");
        }
        if !change.problems.is_empty() {
            sets.push(
                "listing_problems = list_append(if_not_exists(listing_problems, :none), :problems)",
            );
        }
        let mut expression = "ADD #total :count, remaining :delta, listed :listed".to_string();
        if !sets.is_empty() {
            expression.push_str(" SET ");
            expression.push_str(&sets.join(", "));
        }
        let mut counts = self
            .update(keys::session_pk(session_id), SESSION_SK.into(), &expression)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#total", "total")
            .expression_attribute_values(":count", n(change.total))
            .expression_attribute_values(":listed", n(change.listed))
            .expression_attribute_values(":delta", AttributeValue::N(change.remaining.to_string()));
        if let Some(e) = &change.listing_error {
            counts = counts.expression_attribute_values(":error", s(e));
        }
        if let Some(t) = change.expected_total {
            counts = counts.expression_attribute_values(":expected", n(t));
        }
        if !change.problems.is_empty() {
            counts = counts
                .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
                .expression_attribute_values(":problems", string_list(&change.problems));
        }
        let codes = self
            .transact(vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder()
                    .update(counts.build().map_err(store_error)?)
                    .build(),
            ])
            .await?;
        match codes {
            None => Ok(true),
            Some(codes) if condition_failed(&codes, 0) => Ok(false),
            Some(codes) => Err(StoreError::permanent(format!(
                "page commit cancelled for session {session_id}: {codes:?}"
            ))),
        }
    }

    async fn mark_page_sent(&self, session_id: &str, page: u32) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::session_pk(session_id)))
            .key("sk", s(keys::page_sk(page)))
            .update_expression("SET sent = :t")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn put_pending_markers(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<(), StoreError> {
        let expires = (Utc::now() + Duration::days(MARKER_TTL_DAYS)).timestamp();
        let marker = |id: &String| -> Result<TransactWriteItem, StoreError> {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(HashMap::from([
                    ("pk".into(), s(keys::session_pk(session_id))),
                    ("sk".into(), s(keys::marker_sk(id))),
                    ("status".into(), s("pending")),
                    ("expires_at".into(), AttributeValue::N(expires.to_string())),
                ])))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(store_error)?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        // Conditional puts, a transaction of up to 100 at a time: an existing marker (maybe
        // counted by a copy of the page that delivered first) must never be reset to pending,
        // which unconditional batch writes did. A transaction whose condition fails on some
        // markers says which: those exist, and the rest are written again without them. A
        // page of 1,000 costs 10 requests where one conditional put per marker cost 1,000
        // (a redelivered page then outlived the harvester's timeout on every receive).
        let chunks: Vec<Vec<String>> = resource_ids.chunks(100).map(<[String]>::to_vec).collect();
        let writes: Vec<BoxFuture<'_, Result<(), StoreError>>> = chunks
            .into_iter()
            .map(|mut chunk| -> BoxFuture<'_, Result<(), StoreError>> {
                Box::pin(async move {
                    while !chunk.is_empty() {
                        let items = chunk.iter().map(marker).collect::<Result<Vec<_>, _>>()?;
                        let Some(codes) = self.transact(items).await? else {
                            return Ok(());
                        };
                        let before = chunk.len();
                        let mut i = 0;
                        chunk.retain(|_| {
                            let exists = condition_failed(&codes, i);
                            i += 1;
                            !exists
                        });
                        if chunk.len() == before {
                            return Err(StoreError::new(format!(
                                "markers for session {session_id} not written: {codes:?}"
                            )));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(writes)
            .buffer_unordered(4)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn record_outcome(
        &self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<Counting, StoreError> {
        let codes = self
            .transact(vec![
                self.settle_item(session_id, state)?,
                self.count_item(session_id, &Tally::of([state.last_outcome]))?,
                self.state_item(state)?,
            ])
            .await?;
        match codes {
            None => Ok(Counting::Counted),
            Some(codes) if condition_failed(&codes, 0) => Ok(Counting::AlreadyCounted),
            Some(codes) => Err(StoreError::new(format!("outcome not recorded: {codes:?}"))),
        }
    }

    /// The whole batch in one transaction: every marker's condition, every state, and one
    /// counter update per session with the batch's sums. If any condition fails (a copy of a
    /// message was counted before), the transaction changes nothing and the batch is counted
    /// one by one, which tells each resource's answer apart.
    async fn record_outcomes(
        &self,
        outcomes: &[(String, ResourceState)],
    ) -> Vec<Result<Counting, StoreError>> {
        let mut results: Vec<Option<Result<Counting, StoreError>>> =
            (0..outcomes.len()).map(|_| None).collect();
        // Two copies of one message in a batch would be two updates of one item, which a
        // transaction refuses: the second copy is counted alone, after.
        let mut seen = HashSet::new();
        let (together, alone): (Vec<usize>, Vec<usize>) = (0..outcomes.len()).partition(|&i| {
            let (session_id, state) = &outcomes[i];
            seen.insert((session_id.clone(), state.resource_id.clone()))
        });
        // Two items per resource and at most one per session: 32 resources stay within
        // TransactWriteItems' 100 items.
        for chunk in together.chunks(32) {
            if chunk.len() == 1 {
                let (session_id, state) = &outcomes[chunk[0]];
                results[chunk[0]] = Some(self.record_outcome(session_id, state).await);
                continue;
            }
            match self.transact_batch(outcomes, chunk).await {
                Ok(true) => {
                    for &i in chunk {
                        results[i] = Some(Ok(Counting::Counted));
                    }
                }
                Ok(false) => {
                    tracing::info!(
                        resources = chunk.len(),
                        "a batch count was cancelled (a redelivered copy?); counting one by one"
                    );
                    for &i in chunk {
                        let (session_id, state) = &outcomes[i];
                        results[i] = Some(self.record_outcome(session_id, state).await);
                    }
                }
                Err(e) => {
                    for &i in chunk {
                        results[i] = Some(Err(StoreError::new(&e)));
                    }
                }
            }
        }
        for i in alone {
            let (session_id, state) = &outcomes[i];
            results[i] = Some(self.record_outcome(session_id, state).await);
        }
        results
            .into_iter()
            .map(|r| r.expect("every outcome answered"))
            .collect()
    }

    async fn request_abort(&self, session_id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::session_pk(session_id)))
            .key("sk", s(SESSION_SK))
            .update_expression("SET abort_requested = :yes")
            // ledger::may_abort
            .condition_expression("#status = :running AND remaining > :zero")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":running", s("running"))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        condition_met(result)
    }

    async fn close_session(
        &self,
        session_id: &str,
        ended_at: DateTime<Utc>,
    ) -> Result<Closing, StoreError> {
        let Some(session) = self.get_session(session_id).await? else {
            return Ok(Closing::NotClosable(None));
        };
        let Some(closure) = ledger::close(&session, ended_at) else {
            return Ok(Closing::NotClosable(Some(Box::new(session))));
        };
        let status = closure.status;
        let close = self
            .update(
                keys::session_pk(session_id),
                SESSION_SK.into(),
                "SET #status = :closed, ended_at = :ended",
            )
            .condition_expression("#status = :running AND remaining = :zero")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":closed", s(status.as_str()))
            .expression_attribute_values(":running", s("running"))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":ended", s(rfc3339(closure.ended_at)))
            .build()
            .map_err(store_error)?;
        let mut closed = session.clone();
        closure.apply(&mut closed);
        let release = ledger::release(&closed);
        let mut sets = "SET last_session = :sid, last_status = :closed".to_string();
        if release.incremental_base {
            sets.push_str(", incremental_base = :sid");
        }
        if release.full_listing_at.is_some() {
            sets.push_str(", last_full_listing_at = :started");
        }
        let mut source_update = self
            .update(
                SOURCES_PK.into(),
                session.source_id.clone(),
                &format!("{sets} REMOVE running_session"),
            )
            .condition_expression("running_session = :sid")
            .expression_attribute_values(":sid", s(session_id))
            .expression_attribute_values(":closed", s(status.as_str()));
        if let Some(at) = release.full_listing_at {
            source_update = source_update.expression_attribute_values(":started", s(rfc3339(at)));
        }
        let source_update = source_update.build().map_err(store_error)?;
        let mut items = vec![
            TransactWriteItem::builder().update(close.clone()).build(),
            TransactWriteItem::builder().update(source_update).build(),
        ];
        let mut codes = self.transact(items.clone()).await?;
        if let Some(c) = &codes {
            if !condition_failed(c, 0) && condition_failed(c, 1) {
                // The source was removed (or no longer names this session): close anyway.
                tracing::warn!(session = %session_id, "source does not hold this session; closing the session alone");
                items.truncate(1);
                codes = self.transact(items).await?;
            }
        }
        match codes {
            None => Ok(Closing::Closed(Box::new(closed))),
            Some(_) => Ok(Closing::NotClosable(
                self.get_session(session_id).await?.map(Box::new),
            )),
        }
    }

    async fn session_markers(
        &self,
        session_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<Marker>, Option<String>), StoreError> {
        let (items, next) = self
            .query_page(keys::session_pk(session_id), Some(MARKER_PREFIX), after)
            .await?;
        let markers = items
            .iter()
            .map(|item| Marker {
                resource_id: get_s(item, "sk")
                    .and_then(|sk| sk.strip_prefix(MARKER_PREFIX).map(str::to_string))
                    .unwrap_or_default(),
                outcome: get_s(item, "status").and_then(|s| Outcome::parse(&s)),
                reason: get_s(item, "reason").and_then(|r| serde_json::from_str::<Reason>(&r).ok()),
            })
            .collect();
        Ok((markers, next))
    }
}

#[async_trait]
impl ResourceStates for DynamoStore {
    async fn get_resource(
        &self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        let Some(item) = self
            .get(keys::resources_pk(source_id), resource_id.into())
            .await?
        else {
            return Ok(None);
        };
        resource_state(&item).map(Some)
    }

    /// One BatchGetItem per 100 resources.
    async fn get_resources(
        &self,
        wanted: &[(String, String)],
    ) -> Result<HashMap<(String, String), ResourceState>, StoreError> {
        let unique: BTreeSet<&(String, String)> = wanted.iter().collect();
        let keys = unique
            .into_iter()
            .map(|(source_id, resource_id)| {
                HashMap::from([
                    ("pk".into(), s(keys::resources_pk(source_id))),
                    ("sk".into(), s(resource_id)),
                ])
            })
            .collect();
        let mut found = HashMap::new();
        for item in self.batch_get(keys, None).await? {
            let state = resource_state(&item)?;
            found.insert((state.source_id.clone(), state.resource_id.clone()), state);
        }
        Ok(found)
    }

    async fn list_resources(
        &self,
        source_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<ResourceState>, Option<String>), StoreError> {
        let (items, next) = self
            .query_page(keys::resources_pk(source_id), None, after)
            .await?;
        let states = items
            .iter()
            .map(resource_state)
            .collect::<Result<Vec<ResourceState>, StoreError>>()?;
        Ok((states, next))
    }

    async fn mark_missing(&self, state: &ResourceState) -> Result<bool, StoreError> {
        let missing = state
            .missing_session
            .clone()
            .ok_or_else(|| StoreError::permanent("mark_missing needs missing_session"))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(resource_item(state)))
            .condition_expression(
                "attribute_not_exists(missing_session) OR missing_session <> :sid",
            )
            .expression_attribute_values(":sid", s(missing))
            .send()
            .await;
        condition_met(result)
    }

    async fn replace_resource(
        &self,
        current: &ResourceState,
        next: &ResourceState,
    ) -> Result<bool, StoreError> {
        // The `state` attribute is the whole state as JSON, so comparing it is comparing all.
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(resource_item(next)))
            .condition_expression("#state = :current")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(
                ":current",
                s(serde_json::to_string(current).expect("states serialize")),
            )
            .send()
            .await;
        condition_met(result)
    }
}

impl DynamoStore {
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

/// A resource's item: the whole state as JSON, plus the attributes conditions look at.
/// The state a resource item holds (the inverse of [`resource_item`]).
fn resource_state(item: &Item) -> Result<ResourceState, StoreError> {
    let key = || {
        format!(
            "{}/{}",
            get_s(item, "pk").unwrap_or_default(),
            get_s(item, "sk").unwrap_or_default()
        )
    };
    let state = get_s(item, "state")
        .ok_or_else(|| StoreError::permanent(format!("resource item {} without state", key())))?;
    serde_json::from_str(&state)
        .map_err(|e| StoreError::permanent(format!("resource item {}: {e}", key())))
}

fn resource_item(state: &ResourceState) -> Item {
    let mut item: Item = HashMap::from([
        ("pk".into(), s(keys::resources_pk(&state.source_id))),
        ("sk".into(), s(&state.resource_id)),
        ("last_outcome".into(), s(state.last_outcome.as_str())),
        ("last_session".into(), s(&state.last_session)),
        (
            "state".into(),
            s(serde_json::to_string(state).expect("states serialize")),
        ),
    ]);
    if let Some(missing) = &state.missing_session {
        item.insert("missing_session".into(), s(missing));
    }
    item
}

fn session_item(session: &Session) -> Item {
    let c = &session.counters;
    let mut item: Item = HashMap::from([
        ("source_id".into(), s(&session.source_id)),
        ("scheduled_time".into(), s(rfc3339(session.scheduled_time))),
        ("started_at".into(), s(rfc3339(session.started_at))),
        ("status".into(), s(session.status.as_str())),
        ("total".into(), n(c.total)),
        ("remaining".into(), n(c.remaining)),
        ("harvested".into(), n(c.harvested)),
        ("unchanged".into(), n(c.unchanged)),
        ("failed".into(), n(c.failed)),
    ]);
    if let Some(e) = session.ended_at {
        item.insert("ended_at".into(), s(rfc3339(e)));
    }
    if let Some(since) = session.since {
        item.insert("since".into(), s(rfc3339(since)));
    }
    if let Some(base) = &session.base_session {
        item.insert("base_session".into(), s(base));
    }
    item
}

fn parse_session(item: &Item) -> Result<Session, StoreError> {
    let id = get_s(item, "pk")
        .and_then(|pk| pk.strip_prefix("SESSION#").map(str::to_string))
        .ok_or_else(|| StoreError::permanent("session item without pk"))?;
    let time = |k: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        get_s(item, k)
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| StoreError::permanent(format!("session {id} {k}: {e}")))
            })
            .transpose()
    };
    Ok(Session {
        source_id: get_s(item, "source_id").unwrap_or_default(),
        scheduled_time: time("scheduled_time")?
            .ok_or_else(|| StoreError::permanent("session without scheduled_time"))?,
        started_at: time("started_at")?
            .ok_or_else(|| StoreError::permanent("session without started_at"))?,
        ended_at: time("ended_at")?,
        status: get_s(item, "status")
            .and_then(|s| SessionStatus::parse(&s))
            .ok_or_else(|| StoreError::permanent(format!("session {id} has no valid status")))?,
        counters: Counters {
            total: get_n(item, "total"),
            remaining: get_n(item, "remaining"),
            harvested: get_n(item, "harvested"),
            unchanged: get_n(item, "unchanged"),
            failed: get_n(item, "failed"),
        },
        listing_error: get_s(item, "listing_error"),
        abort_requested: matches!(
            item.get("abort_requested"),
            Some(AttributeValue::Bool(true))
        ),
        since: time("since")?,
        base_session: get_s(item, "base_session"),
        listing: ListingCheck {
            listed: get_n(item, "listed"),
            expected_total: get_opt_n(item, "expected_total"),
            problems: get_list(item, "listing_problems"),
        },
        id,
    })
}

fn source_entry(item: &Item) -> Result<SourceEntry, StoreError> {
    let id = get_s(item, "sk").unwrap_or_default();
    let bad = |field: &str| StoreError::permanent(format!("source {id}: bad or missing {field}"));
    let source = Source {
        protocol: get_s(item, "protocol")
            .and_then(|p| crate::model::Protocol::parse(&p))
            .ok_or_else(|| bad("protocol"))?,
        base_url: get_s(item, "base_url").ok_or_else(|| bad("base_url"))?,
        schedule: get_s(item, "schedule").ok_or_else(|| bad("schedule"))?,
        enabled: matches!(item.get("enabled"), Some(AttributeValue::Bool(true))),
        internal: matches!(item.get("internal"), Some(AttributeValue::Bool(true))),
        options: match get_s(item, "options") {
            Some(o) => serde_json::from_str::<SourceOptions>(&o).map_err(|_| bad("options"))?,
            None => SourceOptions::default(),
        },
        id: id.clone(),
    };
    Ok(SourceEntry {
        source,
        running_session: get_s(item, "running_session"),
        last_session: get_s(item, "last_session"),
        last_status: get_s(item, "last_status").and_then(|s| SessionStatus::parse(&s)),
        incremental_base: get_s(item, "incremental_base"),
        last_full_listing_at: get_s(item, "last_full_listing_at")
            .map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
            .transpose()
            .map_err(|_| bad("last_full_listing_at"))?,
    })
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn get_opt_n(item: &Item, key: &str) -> Option<u64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn get_list(item: &Item, key: &str) -> Vec<String> {
    item.get(key)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

fn string_list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(s).collect())
}

fn get_n(item: &Item, key: &str) -> u64 {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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
