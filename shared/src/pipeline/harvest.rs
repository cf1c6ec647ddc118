//! Stage 2: one unit of work from the queue: a resource to harvest (or a page to list).
//!
//! For a resource: fetch its metadata, normalize it, store record + raw in the object store
//! unless the content hash is unchanged, then hand the outcome and its log line to the
//! batch's [`Tally`], which writes the batch's logs and counts every outcome in one
//! transaction (markers + session counters + resource states). A redelivered message finds
//! its marker settled and changes nothing.

use super::content::{reconcile, record_change, store_content, unclaimed_content};
use super::listing::{list_page, PageResult};
use super::tally::{BatchedRaw, OutcomeToCount, Tally};
use super::Services;
use crate::documents::ResourceLog;
use crate::keys;
use crate::messages::{SourceSnapshot, WorkMessage};
use crate::model::{
    session::split_session_id, Outcome, RawStorage, Reason, ReasonCode, ResourceState,
};
use crate::ports::{Counting, StoreError};
use crate::protocols::{FetchContext, FetchError, InlineDocuments, Remote};
use bytes::Bytes;
use serde_json::json;
use std::time::Duration;

/// What to tell the queue about a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done with it (counted now, counted before, put back for later, or kept aside as
    /// unreadable): delete it.
    Done,
    /// Leave it for redelivery; the handler shortens its visibility to [`retry_delay`].
    Retry,
}

/// The server asked us to come back later (429/503 with `Retry-After`): the message is sent
/// again with that delay (SQS caps delays at 15 minutes) instead of burning a receive. After
/// this many deferrals it is retried like any transient failure, so it is still counted.
pub const MAX_DEFERRALS: u32 = 5;
const MAX_DELAY_SECS: u32 = 900;

/// Exponential backoff with jitter for a transient failure on receive `receive_count`:
/// 5 s, 10 s, 20 s, … capped at `cap` (the queue's visibility timeout, which would apply
/// anyway), each drawn uniformly from its upper half so retries of one burst spread out.
pub fn retry_delay(receive_count: u32, cap: Duration) -> Duration {
    let exp = Duration::from_secs(5) * 2u32.saturating_pow(receive_count.saturating_sub(1).min(16));
    let ceiling = exp.min(cap).max(Duration::from_secs(1));
    let half = ceiling / 2;
    half + Duration::from_millis(crate::random::u64() % (half.as_millis() as u64 + 1))
}

/// Handles one work message body on its own (a batch of one). Never fails as a whole:
/// problems become a disposition.
pub async fn handle_message(
    svc: &Services,
    message_id: &str,
    body: &str,
    receive_count: u32,
) -> Disposition {
    handle_in_batch(svc, &Tally::new(), message_id, body, receive_count).await
}

/// Handles one work message of a batch whose outcomes are counted together by `tally`.
pub async fn handle_in_batch(
    svc: &Services,
    tally: &Tally,
    message_id: &str,
    body: &str,
    receive_count: u32,
) -> Disposition {
    // Until this message is finished, the batch's count waits for it.
    let _entered = tally.enter();
    let message = match serde_json::from_str::<WorkMessage>(body) {
        Ok(m) => m,
        Err(e) => return reject(svc, message_id, body, &e.to_string()).await,
    };
    let final_attempt = receive_count >= svc.settings.max_receive_count;
    let result = match &message {
        WorkMessage::Resource {
            session_id,
            source,
            resource_id,
            deferrals,
        } => match harvest_resource(svc, tally, session_id, source, resource_id, receive_count)
            .await
        {
            Ok(ResourceAttempt::Throttled(wait)) if *deferrals < MAX_DEFERRALS => {
                defer(svc, &message, wait).await
            }
            Ok(ResourceAttempt::Throttled(_)) => Ok(Disposition::Retry),
            Ok(ResourceAttempt::Counted | ResourceAttempt::AlreadyCounted) => Ok(Disposition::Done),
            Ok(ResourceAttempt::Retry) => Ok(Disposition::Retry),
            Err(e) => Err(e),
        },
        WorkMessage::ListPage {
            session_id,
            source,
            page,
            cursor,
            delivered,
        } => match list_page(
            svc,
            session_id,
            source,
            *page,
            cursor.clone(),
            *delivered,
            final_attempt,
        )
        .await
        {
            Ok(PageResult::Retry(reason)) => {
                tracing::warn!(session = %session_id, page, %reason, receive_count, "listing page will be retried");
                Ok(Disposition::Retry)
            }
            Ok(_) => Ok(Disposition::Done),
            Err(e) => Err(e),
        },
    };
    result.unwrap_or_else(|e| {
        // A permanent failure is retried too (the queue's receive count bounds it, then the
        // DLQ keeps the message): what failed here may not be this resource's to count.
        tracing::error!(message_id, session = %message.session_id(), error = %e, permanent = e.is_permanent(), "storage failed; message will be retried");
        Disposition::Retry
    })
}

/// What became of one resource message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceAttempt {
    /// Its outcome (harvested, unchanged or failed) was counted now.
    Counted,
    /// A redelivery: its outcome was counted before.
    AlreadyCounted,
    /// A transient failure: try again.
    Retry,
    /// The server said when to come back (seconds).
    Throttled(u32),
}

/// Sends the message again, delayed as the server asked, and lets go of this copy. A crash
/// in between leaves two copies, which the marker condition makes harmless.
async fn defer(
    svc: &Services,
    message: &WorkMessage,
    wait: u32,
) -> Result<Disposition, StoreError> {
    let mut later = message.clone();
    if let WorkMessage::Resource { deferrals, .. } = &mut later {
        *deferrals += 1;
    }
    let delay = Duration::from_secs(u64::from(wait.clamp(1, MAX_DELAY_SECS)));
    svc.queue.send_delayed(&[later], delay).await?;
    tracing::info!(session = %message.session_id(), delay_secs = delay.as_secs(), "server asked to wait; message deferred");
    Ok(Disposition::Done)
}

pub async fn harvest_resource(
    svc: &Services,
    tally: &Tally,
    session_id: &str,
    source: &SourceSnapshot,
    resource_id: &str,
    receive_count: u32,
) -> Result<ResourceAttempt, StoreError> {
    let previous = tally
        .previous(svc.store.as_ref(), &source.id, resource_id)
        .await?;
    // The resource item is written in the same transaction as the marker: if it names this
    // session, this resource is already counted and the message is a redelivery.
    if previous
        .as_ref()
        .is_some_and(|p| p.last_session == session_id)
    {
        // An earlier receive of this message may have written content after a copy
        // counted, then died (or failed) before naming it (`reconcile`); a message comes
        // back only after such a receive, so a later receive makes sure the state follows
        // the object. The first receive of a copy costs nothing extra.
        if receive_count > 1 {
            reconcile(svc, source, resource_id, session_id).await?;
        }
        return Ok(ResourceAttempt::AlreadyCounted);
    }

    let catalog = super::open_catalog(source)?;
    let mut requests = Vec::new();
    let result = if svc.session_aborted(session_id).await? {
        // Counted, not fetched: the operator wants this session over.
        Err(Reason::new(
            ReasonCode::Aborted,
            "the session was aborted by an operator",
        ))
    } else {
        let inline = SessionInline {
            svc,
            source,
            session_id,
        };
        let mut ctx = FetchContext {
            remote: Remote {
                http: &svc.http,
                source,
                requests: &mut requests,
            },
            inline: &inline,
        };
        let fetched = match catalog.fetch(&mut ctx, resource_id).await {
            Ok(fetched) => Ok(fetched),
            Err(FetchError::Remote(reason)) => Err(reason),
            Err(FetchError::Store(e)) => return Err(e),
        };
        fetched.and_then(|f| {
            let record = catalog.normalize(source, resource_id, &f)?;
            Ok((f, record))
        })
    };

    let now = svc.clock.now();
    let returning = previous
        .as_ref()
        .is_some_and(ResourceState::awaits_restoring);
    let mut title = None;
    let mut change = None;
    let mut batched_raw = None;
    let (outcome, reason, content) = match result {
        Ok((fetched, record)) => {
            title = Some(record.title.clone());
            let hash = record.content_hash();
            // A resource coming back after a deletion is written again where live records
            // are, even with the content it had.
            let unchanged = !returning
                && previous.as_ref().is_some_and(|p| {
                    p.content_hash.as_deref() == Some(&hash) && p.record_key.is_some()
                });
            if unchanged {
                (Outcome::Unchanged, None, None)
            } else {
                // Before the new record replaces the old one; a restoration is its own kind.
                if !returning {
                    change = Some(record_change(svc, previous.as_ref(), &record).await?);
                }
                match store_content(svc, source, resource_id, &fetched, &record, hash).await {
                    Ok(stored) => {
                        if source.options.raw == RawStorage::Batch {
                            batched_raw = Some(BatchedRaw {
                                body: fetched.body.clone(),
                                extension: source.protocol.raw_extension(),
                            });
                        }
                        (Outcome::Harvested, None, Some(stored.into_parts()))
                    }
                    // The same write would fail the same way: counted, not retried.
                    Err(e) if e.is_permanent() => {
                        tracing::error!(session = %session_id, resource = %resource_id, error = %e, "the record cannot be stored; counted as failed");
                        let reason = Reason::new(ReasonCode::StorageError, e.to_string());
                        (Outcome::Failed, Some(reason), None)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(reason) if reason.retryable() && receive_count < svc.settings.max_receive_count => {
            tracing::warn!(session = %session_id, resource = %resource_id, %reason, receive_count, "transient failure; will retry");
            return Ok(match reason.retry_after_secs {
                Some(secs) => ResourceAttempt::Throttled(secs),
                None => ResourceAttempt::Retry,
            });
        }
        // Counted as failed, but an uncounted attempt may have written content: keep it named.
        Err(reason) => (
            Outcome::Failed,
            Some(reason.exhausted(receive_count)),
            unclaimed_content(svc, source, resource_id, previous.as_ref())
                .await?
                .map(|c| c.into_parts()),
        ),
    };
    let wrote_content = outcome == Outcome::Harvested;

    // An unchanged resource writes nothing to S3: its outcome is in its state's history, and
    // the log of the session that last changed (or failed) it stays its newest log. Other
    // logs are written with the batch's (see `tally.rs`), which also names them in the state.
    let log = (outcome != Outcome::Unchanged).then(|| ResourceLog {
        session_id: session_id.to_string(),
        source_id: source.id.clone(),
        resource_id: resource_id.to_string(),
        at: now,
        attempt: Some(receive_count),
        outcome,
        reason: reason.clone(),
        content_hash: content
            .as_ref()
            .map(|c| c.0.clone())
            .or_else(|| previous.as_ref().and_then(|p| p.content_hash.clone())),
        kept_unclaimed_content: outcome == Outcome::Failed && content.is_some(),
        requests,
    });

    let mut state = ResourceState::next(
        previous.as_ref(),
        &source.id,
        resource_id,
        session_id,
        outcome,
        reason.clone(),
        now,
        content,
    );
    if let Some(title) = title {
        state.title = title;
    }
    if outcome == Outcome::Failed && !svc.session_lists_catalog(session_id).await? {
        state.keep_absence_of(previous.as_ref());
    }
    let restored = returning && wrote_content;
    if restored {
        state.mark_restored();
    }
    // Carried on the state's newest history entry, so the marker settled with this count
    // (once, whichever copy counts) says what changed; the summary reads it from there.
    if let Some(change) = change.filter(|_| wrote_content) {
        state.mark_change(change);
    }
    let counting = tally
        .count(
            svc.store.as_ref(),
            svc.objects.as_ref(),
            OutcomeToCount {
                session_id: session_id.to_string(),
                state,
                log,
                raw: batched_raw,
            },
        )
        .await?;
    match counting {
        Counting::Counted => match &reason {
            Some(r) => {
                tracing::info!(session = %session_id, resource = %resource_id, outcome = outcome.as_str(), reason = %r, "resource counted")
            }
            None => {
                tracing::debug!(session = %session_id, resource = %resource_id, outcome = outcome.as_str(), "resource counted")
            }
        },
        Counting::AlreadyCounted => {
            tracing::info!(session = %session_id, resource = %resource_id, "already counted (redelivery)");
            // A copy counted first, perhaps before our write landed: the state must name
            // what the record object holds now.
            if wrote_content {
                reconcile(svc, source, resource_id, session_id).await?;
            }
        }
    }
    if restored && counting == Counting::Counted {
        // The copies the deletion moved aside, now that the state names the live ones.
        // After the count, so a crash leaves at worst an extra copy under `deleted/`.
        for key in previous.iter().flat_map(|p| [&p.record_key, &p.raw_key]) {
            if let Some(key) = key.as_deref().filter(|k| keys::is_deleted_key(k)) {
                svc.objects.delete(key).await?;
            }
        }
    }
    if wrote_content && counting == Counting::Counted && source.options.raw != RawStorage::Resource
    {
        // The resource's own raw object, from before its source stored raw responses in
        // batches (or stopped storing them): no state names it any more.
        if let Some(own) = previous.as_ref().and_then(ResourceState::raw).filter(|r| {
            r.range.is_none() && !keys::is_deleted_key(&r.key) && !keys::is_raw_batch_key(&r.key)
        }) {
            svc.objects.delete(&own.key).await?;
        }
    }
    Ok(ResourceAttempt::Counted)
}

/// The document the listing delivered for this resource (data.json), kept beside the session.
/// The documents this session's listing delivered whole, kept beside the session.
pub(crate) struct SessionInline<'a> {
    svc: &'a Services,
    source: &'a SourceSnapshot,
    session_id: &'a str,
}

#[async_trait::async_trait]
impl InlineDocuments for SessionInline<'_> {
    async fn document(&self, resource_id: &str) -> Result<Option<Bytes>, StoreError> {
        let (_, stamp) =
            split_session_id(self.session_id).unwrap_or((&self.source.id, self.session_id));
        self.svc
            .objects
            .get(&keys::staged_key(&self.source.id, stamp, resource_id))
            .await
    }
}

/// An unreadable message cannot be counted (we do not know its session), but it must not be
/// lost or block its batch: keep it in the object store and delete it from the queue.
async fn reject(svc: &Services, message_id: &str, body: &str, why: &str) -> Disposition {
    let day = svc.clock.now().format("%Y-%m-%d").to_string();
    let key = keys::rejected_key(&day, message_id);
    let doc = json!({"message_id": message_id, "error": why, "body": body});
    tracing::error!(message_id, error = why, key = %key, "unreadable work message set aside");
    match svc
        .objects
        .put(&key, Bytes::from(doc.to_string()), "application/json")
        .await
    {
        Ok(()) => Disposition::Done,
        Err(e) => {
            tracing::error!(message_id, error = %e, "could not set the message aside; leaving it on the queue");
            Disposition::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_exponentially_with_jitter_up_to_the_cap() {
        let cap = Duration::from_secs(180);
        for _ in 0..200 {
            let first = retry_delay(1, cap);
            assert!((Duration::from_millis(2500)..=Duration::from_secs(5)).contains(&first));
            let third = retry_delay(3, cap);
            assert!((Duration::from_secs(10)..=Duration::from_secs(20)).contains(&third));
            let late = retry_delay(30, cap);
            assert!((Duration::from_secs(90)..=cap).contains(&late), "{late:?}");
        }
        let draws: std::collections::HashSet<Duration> =
            (0..50).map(|_| retry_delay(4, cap)).collect();
        assert!(draws.len() > 10, "jittered, not fixed: {draws:?}");
        assert!(retry_delay(5, Duration::from_secs(6)) <= Duration::from_secs(6));
    }
}
