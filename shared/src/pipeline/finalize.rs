//! Stage 3: close a session whose `remaining` reached zero, exactly once, and write its summary.

use super::Services;
use crate::documents::{self, FailedResource, SessionChanges, SessionSummary, SummaryListing};
use crate::keys;
use crate::model::{session::whole_second, Session, SessionStatus};
use crate::ports::{Closing, StoreError};
use std::collections::BTreeMap;

/// At most this many failed resources are listed by id in a summary; the counts are complete.
pub const SUMMARY_FAILED_LIMIT: usize = 1000;

#[derive(Debug, PartialEq, Eq)]
pub enum Finalized {
    /// Closed now, by this call.
    Closed(SessionStatus),
    /// Closed earlier (a redelivered stream record); the summary was written again.
    AlreadyClosed,
    /// Still running with work remaining, or unknown: nothing to do.
    NotReady,
}

pub async fn finalize_session(svc: &Services, session_id: &str) -> Result<Finalized, StoreError> {
    // Whole seconds, as the session item stores them, so the summary written before the
    // close is the one the closed session reads back.
    let now = whole_second(svc.clock.now());
    let mut expected = None;
    // Stale resources are settled while the session still holds its source, so the next
    // session cannot list (and harvest) while tombstones are being written.
    if let Some(session) = svc.store.get_session(session_id).await? {
        if session.status == SessionStatus::Running && session.counters.remaining == 0 {
            super::stale::settle(svc, &session).await?;
            if let Err(e) = super::raw::sweep(svc, &session.source_id, &session.stamp()).await {
                tracing::warn!(session = %session.id, error = %e, "batch raw objects not swept; the next close tries again");
            }
            super::incremental::keep_failed_ids(svc, &session).await?;
            // The summary is written before the close, as the session will read once
            // closed: a close whose summary never got written (a crash in between, then the
            // stream giving up on the record) would leave a closed session without one, and
            // nothing looks at closed sessions again.
            let closed = Session {
                status: session.closing_status(),
                ended_at: Some(now),
                ..session
            };
            let summary = write_summary(svc, &closed).await?;
            expected = Some((closed, summary));
        }
    }
    match svc.store.close_session(session_id, now).await? {
        Closing::Closed(session) => {
            let summary = match expected {
                Some((closed, summary)) if closed == *session => summary,
                _ => write_summary(svc, &session).await?,
            };
            announce(svc, &session, &summary).await;
            tracing::info!(session = %session.id, status = session.status.as_str(),
                total = session.counters.total, harvested = session.counters.harvested,
                unchanged = session.counters.unchanged, failed = session.counters.failed,
                "session closed");
            Ok(Finalized::Closed(session.status))
        }
        // The close committed but the summary may not have (a crash in between): rewrite it
        // from the stored session, which gives the same document.
        Closing::NotClosable(Some(session)) if session.status != SessionStatus::Running => {
            write_summary(svc, &session).await?;
            Ok(Finalized::AlreadyClosed)
        }
        Closing::NotClosable(_) => Ok(Finalized::NotReady),
    }
}

/// What the close tells operators: its metrics (where the functions print them) and its
/// alerts. Only the call that closed the session does this, after the close committed;
/// nothing here can fail the close.
async fn announce(svc: &Services, session: &Session, summary: &SessionSummary) {
    if svc.settings.emit_metrics {
        for document in super::metrics::session_metrics(summary) {
            super::metrics::print(&document);
        }
    }
    super::alerts::at_close(svc, session, summary).await;
}

/// The session summary: counters, reason counts and the failed resources. Written under
/// `keys::summary_key`.
pub async fn write_summary(
    svc: &Services,
    session: &Session,
) -> Result<SessionSummary, StoreError> {
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut pending = 0u64;
    let (mut restored, mut restored_count) = (Vec::new(), 0u64);
    // Read from the settled markers: each carries the change its one counted attempt made.
    let mut changes = SessionChanges::default();
    let mut after = None;
    loop {
        let (markers, next) = svc.store.session_markers(&session.id, after).await?;
        for m in markers {
            changes.count(&m.resource_id, m.change.as_ref(), m.restored);
            if m.restored {
                restored_count += 1;
                if restored.len() < SUMMARY_FAILED_LIMIT {
                    restored.push(m.resource_id.clone());
                }
            }
            match (&m.outcome, &m.reason) {
                (None, _) => pending += 1,
                (Some(_), Some(reason)) => {
                    *reasons.entry(reason.code.as_str().to_string()).or_default() += 1;
                    if failed.len() < SUMMARY_FAILED_LIMIT {
                        failed.push(FailedResource {
                            resource_id: m.resource_id,
                            reason: reason.clone(),
                        });
                    }
                }
                (Some(_), None) => {}
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let stale = super::stale::stored_report(svc, session).await?;
    for id in stale.iter().flat_map(|s| &s.deleted) {
        changes.removed.add(id);
    }
    let c = &session.counters;
    let ended = session.ended_at.unwrap_or(session.started_at);
    let summary = SessionSummary {
        session_id: session.id.clone(),
        source_id: session.source_id.clone(),
        status: session.status,
        scheduled_time: session.scheduled_time,
        started_at: session.started_at,
        ended_at: session.ended_at,
        duration_seconds: (ended - session.started_at).num_milliseconds() as f64 / 1000.0,
        counters: session.counters,
        listing_error: session.listing_error.clone(),
        listing: SummaryListing {
            complete: session.listing_complete(),
            incremental_since: session.since,
            listed: session.listing.listed,
            expected_total: session.listing.expected_total,
            problems: session.listing_problems(),
        },
        reasons,
        failed_resources_truncated: (c.failed as usize) > SUMMARY_FAILED_LIMIT,
        failed_resources: failed,
        restored,
        restored_count,
        pending_markers: pending,
        held_deletions: stale.as_ref().map_or(0, |s| s.held.len() as u64),
        stale,
        changes,
        records_prefix: keys::records_prefix(&session.source_id),
    };
    let key = keys::summary_key(&session.source_id, &session.stamp());
    documents::put_readable(svc.objects.as_ref(), &key, &summary).await?;
    Ok(summary)
}
