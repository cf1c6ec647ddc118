//! [`SessionLedger`] on the table: a session's item and its pages' and markers' items share
//! the partition `keys::session_pk`; each counting step is one conditional transaction over
//! them (and the source's item, when a session starts or closes).

use super::codec::{
    key, marker, marker_resource_id, page_item, page_state, parse_session, pending_marker_item,
    resource_item, s, session_item, Item,
};
use super::expressions::{self, Feed};
use super::{condition_failed, condition_met, DynamoStore};
use crate::aws::errors::store_error;
use crate::keys::{self, MARKER_PREFIX, SESSION_SK, SOURCES_PK};
use crate::model::ledger::{self, Tally};
use crate::model::{ResourceState, Session};
use crate::ports::{
    Closing, Counting, Marker, PageState, SessionLedger, SessionStart, SourceRegistry, StoreError,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::{BTreeMap, HashSet};

/// Markers outlive their session by this long, then DynamoDB's TTL removes them.
const MARKER_TTL_DAYS: i64 = 90;

impl DynamoStore {
    /// A transaction's put of `item`, on the condition `expression` states.
    fn put(&self, item: Item, expression: expressions::Expression) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .feed(expression)
            .build()
            .map_err(store_error)
    }

    /// Settles a resource's pending marker with its outcome; fails if it is not pending.
    fn settle_item(
        &self,
        session_id: &str,
        state: &ResourceState,
    ) -> Result<TransactWriteItem, StoreError> {
        let settle = self.update(
            keys::session_pk(session_id),
            keys::marker_sk(&state.resource_id),
            expressions::settle(state),
        );
        Ok(TransactWriteItem::builder()
            .update(settle.build().map_err(store_error)?)
            .build())
    }

    /// Counts a [`Tally`] in a session (its markers' conditions are items of their own).
    fn count_item(&self, session_id: &str, tally: &Tally) -> Result<TransactWriteItem, StoreError> {
        let update = self.update(
            keys::session_pk(session_id),
            SESSION_SK.into(),
            expressions::count(tally),
        );
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(store_error)?)
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

#[async_trait]
impl SessionLedger for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<SessionStart, StoreError> {
        let put = self.put(session_item(session), expressions::create_only())?;
        let claim = self
            .update(
                SOURCES_PK.into(),
                session.source_id.clone(),
                expressions::claim_source(&session.id),
            )
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
        Ok(self
            .get(keys::session_pk(session_id), keys::page_sk(page))
            .await?
            .map(|item| page_state(page, &item)))
    }

    async fn listed_before(
        &self,
        session_id: &str,
        resource_ids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let keys = resource_ids
            .iter()
            .map(|id| key(keys::session_pk(session_id), keys::marker_sk(id)))
            .collect();
        let found = self
            .batch_get(keys, Some("sk"))
            .await?
            .iter()
            .filter_map(marker_resource_id)
            .collect();
        Ok(found)
    }

    async fn commit_page(&self, session_id: &str, page: &PageState) -> Result<bool, StoreError> {
        let writes = expressions::commit_page(&ledger::commit_page(page));
        let put = self.put(page_item(session_id, page), writes.page)?;
        let counts = self.update(
            keys::session_pk(session_id),
            SESSION_SK.into(),
            writes.session,
        );
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
            .feed(expressions::mark_page_sent())
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
            let put = self.put(
                pending_marker_item(session_id, id, expires),
                expressions::create_only(),
            )?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        // Conditional puts, a transaction of up to 100 at a time: an existing marker (maybe
        // counted by a copy of the page that delivered first) must never be reset to pending.
        // A transaction whose condition fails on some markers says which: those exist, and
        // the rest are written again without them. One put per marker would make a
        // redelivered page outlive the harvester's timeout.
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
            .feed(expressions::request_abort())
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
        let close = self
            .update(
                keys::session_pk(session_id),
                SESSION_SK.into(),
                expressions::close(&closure),
            )
            .build()
            .map_err(store_error)?;
        let mut closed = session.clone();
        closure.apply(&mut closed);
        let release = ledger::release(&closed);
        let source_update = self
            .update(
                SOURCES_PK.into(),
                session.source_id.clone(),
                expressions::release(&release),
            )
            .build()
            .map_err(store_error)?;
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
        Ok((items.iter().map(marker).collect(), next))
    }
}
