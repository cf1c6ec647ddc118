//! The watchdog: a session still running past its deadline (a lost message, a listing page
//! that never arrived, a crash between steps) is wound up instead of hanging forever.
//!
//! It settles every piece of work the session still owes through the same exactly-once
//! operations the harvester uses: missing pages are committed as failed, every still-pending
//! marker is counted as failed with reason `LOST`. A harvester racing it on the same resource
//! either counts first (the watchdog then sees "already counted") or finds the marker settled.
//! `remaining` then reaches zero and the finalizer closes the session as usual (partially
//! failed), setting the source back to ready.
//!
//! Before the deadline, on each tick, it repairs the two ways a session stalls without
//! anything left to retry it: a listing page whose message died is sent again (see
//! [`resume_listing`]), and a session with nothing remaining whose stream record was given up
//! on is closed.

use super::content::unclaimed_content;
use super::listing::read_ids;
use super::tally;
use super::Services;
use crate::documents::ResourceLog;
use crate::keys;
use crate::messages::SourceSnapshot;
use crate::model::{
    session::split_session_id, Outcome, Reason, ReasonCode, ResourceState, Session, SessionStatus,
};
use crate::ports::{Counting, PageState, StoreError};
use chrono::{DateTime, Duration};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sweep {
    /// Sessions found past their deadline and wound up.
    pub expired: Vec<String>,
    /// Resources counted as lost, over all of them.
    pub lost_resources: u64,
    pub lost_pages: u64,
    /// Running sessions whose stalled listing page was sent again.
    pub resumed_listings: Vec<String>,
    /// Sessions with nothing remaining that were still open, closed now.
    pub closed: Vec<String>,
}

/// Looks after every running session at `now`: winds up those past their deadline, sends a
/// stalled listing page again, closes those with nothing remaining that are still open.
pub async fn sweep(svc: &Services, now: DateTime<chrono::Utc>) -> Result<Sweep, StoreError> {
    let deadline = Duration::minutes(i64::from(svc.settings.session_deadline_minutes));
    let mut sweep = Sweep::default();
    for entry in svc.store.list_sources().await? {
        let Some(running) = entry.running_session.clone() else {
            continue;
        };
        let Some(session) = svc.store.get_session(&running).await? else {
            continue;
        };
        if session.status != SessionStatus::Running {
            continue;
        }
        if now - session.started_at > deadline {
            let (pages, resources) = expire(svc, &session).await?;
            tracing::warn!(session = %session.id, lost_pages = pages, lost_resources = resources, "session passed its deadline; unfinished work counted as lost");
            sweep.lost_pages += pages;
            sweep.lost_resources += resources;
            sweep.expired.push(session.id.clone());
        } else {
            // Best effort, like the close below: one session's trouble must not fail the
            // tick that starts every other source; the next tick tries again.
            match resume_listing(svc, &entry, &session, now).await {
                Ok(true) => sweep.resumed_listings.push(session.id.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(session = %session.id, error = %e, "could not check the listing")
                }
            }
        }
        // Nothing remains but the session is still open: its stream record was given up on
        // (the mapping's retries ran out) or never came. Closing is idempotent, so a close
        // racing the finalizer's is harmless.
        if let Err(e) = close_if_finished(svc, &session.id, now, &mut sweep).await {
            tracing::warn!(session = %session.id, error = %e, "could not close a finished session");
        }
    }
    Ok(sweep)
}

async fn close_if_finished(
    svc: &Services,
    session_id: &str,
    now: DateTime<chrono::Utc>,
    sweep: &mut Sweep,
) -> Result<(), StoreError> {
    let Some(current) = svc.store.get_session(session_id).await? else {
        return Ok(());
    };
    if current.status == SessionStatus::Running
        && current.counters.remaining == 0
        && now - current.started_at > stall_after(svc)
    {
        tracing::warn!(session = %current.id, "nothing remains but the session is open; closing it");
        super::finalize::finalize_session(svc, &current.id).await?;
        sweep.closed.push(current.id);
    }
    Ok(())
}

/// How long a listing page's message can live while it is being retried: every receive it
/// is allowed, each after at most the longest backoff.
fn stall_after(svc: &Services) -> Duration {
    let most = svc.settings.max_retry_delay * svc.settings.max_receive_count;
    Duration::from_std(most).unwrap_or_else(|_| Duration::minutes(15)) + Duration::minutes(1)
}

/// Sends the listing's next page again when its message died (a crash or timeout on each
/// of its receives put it in the DLQ): the first page that is not delivered, once it has
/// waited longer than a page's message can live. A page listed meanwhile by the original is
/// committed once all the same (the commit is conditional). Returns whether it sent one.
///
/// Why not let the deadline settle it: a page committed but never delivered holds its
/// resources in `remaining`, so the watchdog would count every one of them `LOST` hours
/// later, and a page never listed would cut the listing short.
async fn resume_listing(
    svc: &Services,
    entry: &crate::ports::SourceEntry,
    session: &Session,
    now: DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    let stall = stall_after(svc);
    if now - session.started_at <= stall {
        return Ok(false);
    }
    let mut page = 1;
    let mut cursor = None;
    let mut waiting_since = session.started_at;
    loop {
        match svc.store.get_page(&session.id, page).await? {
            Some(committed) if committed.sent => match committed.next_cursor {
                Some(next) => {
                    waiting_since = committed.listed_at.unwrap_or(waiting_since);
                    cursor = Some(next);
                    page += 1;
                }
                None => return Ok(false),
            },
            Some(committed) => {
                waiting_since = committed.listed_at.unwrap_or(waiting_since);
                break;
            }
            None => break,
        }
    }
    if now - waiting_since <= stall {
        return Ok(false);
    }
    tracing::warn!(session = %session.id, page, "listing page stalled (its message died); sending it again");
    svc.queue
        .send(&[crate::messages::WorkMessage::ListPage {
            session_id: session.id.clone(),
            source: SourceSnapshot::from(&entry.source),
            page,
            cursor,
            delivered: 0,
        }])
        .await?;
    Ok(true)
}

/// Settles everything `session` still owes; returns (pages, resources) counted as lost.
pub async fn expire(svc: &Services, session: &Session) -> Result<(u64, u64), StoreError> {
    let (_, stamp) = split_session_id(&session.id).unwrap_or((&session.source_id, &session.id));
    let mut lost_pages = 0;
    let mut page = 1;
    loop {
        match svc.store.get_page(&session.id, page).await? {
            Some(committed) => {
                // Its markers may never have been written (a crash after the commit).
                let ids = if committed.count == 0 {
                    Vec::new()
                } else {
                    read_ids(svc, &committed.ids_key).await?
                };
                svc.store.put_pending_markers(&session.id, &ids).await?;
                if committed.next_cursor.is_none() {
                    break;
                }
            }
            None => {
                let lost = PageState {
                    page,
                    ids_key: keys::page_ids_key(&session.source_id, stamp, page),
                    count: 0,
                    next_cursor: None,
                    sent: true,
                    error: Some(format!(
                        "page {page}: {}: listing page never arrived before the deadline",
                        ReasonCode::Lost
                    )),
                    listed: 0,
                    expected_total: None,
                    problems: Vec::new(),
                    listed_at: Some(svc.clock.now()),
                    deleted_upstream: 0,
                };
                if svc.store.commit_page(&session.id, &lost).await? {
                    lost_pages += 1;
                }
                break;
            }
        }
        page += 1;
    }

    // To keep content an uncounted attempt wrote named (see `content.rs`).
    let source = svc
        .store
        .get_source(&session.source_id)
        .await?
        .map(|entry| SourceSnapshot::from(&entry.source));
    let mut lost_resources = 0;
    let mut after = None;
    loop {
        let (markers, next) = svc.store.session_markers(&session.id, after).await?;
        // A page's lost resources are logged and counted together, as a harvester batch is.
        let mut lost = Vec::new();
        for marker in markers.into_iter().filter(|m| m.outcome.is_none()) {
            let previous = svc
                .store
                .get_resource(&session.source_id, &marker.resource_id)
                .await?;
            let reason = Reason::new(
                ReasonCode::Lost,
                "not harvested before the session's deadline",
            );
            let unclaimed = match &source {
                Some(source) => {
                    unclaimed_content(svc, source, &marker.resource_id, previous.as_ref()).await?
                }
                None => None,
            };
            let now = svc.clock.now();
            let log = ResourceLog {
                session_id: session.id.clone(),
                source_id: session.source_id.clone(),
                resource_id: marker.resource_id.clone(),
                at: now,
                attempt: None,
                outcome: Outcome::Failed,
                reason: Some(reason.clone()),
                content_hash: unclaimed
                    .as_ref()
                    .map(|c| c.hash.clone())
                    .or_else(|| previous.as_ref().and_then(|p| p.content_hash.clone())),
                kept_unclaimed_content: unclaimed.is_some(),
                requests: Vec::new(),
            };
            let mut state = ResourceState::next(
                previous.as_ref(),
                &session.source_id,
                &marker.resource_id,
                &session.id,
                Outcome::Failed,
                Some(reason),
                now,
                unclaimed.map(|c| c.into_parts()),
            );
            if !session.lists_catalog() {
                state.keep_absence_of(previous.as_ref());
            }
            lost.push(tally::OutcomeToCount {
                session_id: session.id.clone(),
                state,
                log: Some(log),
                raw: None,
            });
        }
        for counted in tally::count_together(svc.store.as_ref(), svc.objects.as_ref(), lost).await {
            if counted? == Counting::Counted {
                lost_resources += 1;
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    Ok((lost_pages, lost_resources))
}
