//! Stale resources: what to do about resources the source no longer lists.
//!
//! Run once per session, when nothing remains and before the session closes (so the next
//! session of the source cannot overlap it). Deleting on a bad listing is how mirrors get
//! wiped, so the rules are conservative:
//!
//! - only a *complete* listing counts: one that failed, was aborted, lost pages, or whose
//!   pages found integrity problems (ids repeated across pages, a repeated page, a total the
//!   server announced that disagrees with what was gathered) deletes nothing;
//! - a listing missing more than `max_shrink_percent` of the known resources deletes nothing
//!   (a server returning half its catalog is broken, not pruned);
//! - a missing resource first gets a tombstone; it is deleted only once it has been missing
//!   from `stale_after_listings` consecutive complete listings. Listed again, the tombstone
//!   goes away;
//! - with `on_stale: hold` that deletion is not applied: the resource is marked held and
//!   stays in the catalog until an operator approves or discards it (`pipeline::deletions`).
//!
//! Each tombstone is written conditionally on the session (a redelivered finalizer counts
//! nothing twice); objects are moved or removed before the state says so, so a crash in
//! between is repaired by the retry.

use super::Services;
use crate::documents;
use crate::keys;
use crate::model::{RawLocation, Session, StaleAction};
use crate::ports::StoreError;

pub use crate::documents::StaleReport;

/// Applies the stale rules for a session whose work is all counted. Idempotent.
pub async fn settle(svc: &Services, session: &Session) -> Result<StaleReport, StoreError> {
    let mut report = check(svc, session).await?;
    // What the server declared deleted was deleted as the listing went; it is this
    // session's deletions all the same, whether or not absence could delete anything.
    report.deleted_upstream = deleted_upstream(svc, session).await?;
    for id in &report.deleted_upstream {
        if !report.deleted.contains(id) {
            report.deleted.push(id.clone());
        }
    }
    documents::put_readable(svc.objects.as_ref(), &report_key(session), &report).await?;
    if !report.deleted.is_empty() || !report.tombstoned.is_empty() || !report.held.is_empty() {
        tracing::info!(session = %session.id, tombstoned = report.tombstoned.len(), deleted = report.deleted.len(), held = report.held.len(), "stale resources settled");
    }
    if let Some(why) = &report.skipped {
        tracing::info!(session = %session.id, %why, "no stale deletion");
    }
    Ok(report)
}

/// The ids the session's pages deleted on the server's word, from the page documents of
/// the pages that deleted any (none are read when the session counted none).
async fn deleted_upstream(svc: &Services, session: &Session) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    let mut page = 1;
    while ids.len() < session.listing.deleted_upstream as usize {
        let Some(state) = svc.store.get_page(&session.id, page).await? else {
            break;
        };
        if state.deleted_upstream > 0 {
            let document: Option<documents::PageDocument> =
                documents::get(svc.objects.as_ref(), &state.ids_key).await?;
            ids.extend(document.into_iter().flat_map(|d| d.deleted_upstream));
        }
        page += 1;
    }
    Ok(ids)
}

/// The report `settle` wrote for a session, if any.
pub async fn stored_report(
    svc: &Services,
    session: &Session,
) -> Result<Option<StaleReport>, StoreError> {
    documents::get(svc.objects.as_ref(), &report_key(session)).await
}

fn report_key(session: &Session) -> String {
    keys::stale_report_key(&session.source_id, &session.stamp())
}

async fn check(svc: &Services, session: &Session) -> Result<StaleReport, StoreError> {
    let mut report = StaleReport::default();
    if session.abort_requested {
        report.skipped = Some("the session was aborted: its listing is not trusted".into());
        return Ok(report);
    }
    if !session.lists_catalog() {
        report.skipped = Some(
            "a selection harvests the resources it names: it proves nothing about deletions".into(),
        );
        return Ok(report);
    }
    if let Some(since) = session.since {
        report.skipped = Some(format!(
            "an incremental listing (changes since {}) proves nothing about deletions",
            crate::model::session::rfc3339(since)
        ));
        return Ok(report);
    }
    let problems = session.listing_problems();
    if !problems.is_empty() {
        report.skipped = Some(format!(
            "the listing was incomplete ({})",
            problems.join("; ")
        ));
        return Ok(report);
    }
    let Some(entry) = svc.store.get_source(&session.source_id).await? else {
        report.skipped = Some("the source no longer exists".into());
        return Ok(report);
    };
    let options = entry.source.options;

    // The session's markers and the source's resources both come in resource-id order: they
    // are walked side by side, so the check holds a page of each whatever the catalog's size
    // (a set of every listed id would grow with the catalog).
    let mut listed = ListedIds::new(&session.id);
    let mut missing = Vec::new();
    let mut after = None;
    loop {
        let (states, next) = svc.store.list_resources(&session.source_id, after).await?;
        for state in states.into_iter().filter(|s| s.is_live()) {
            report.known += 1;
            if !listed.contains(svc, &state.resource_id).await? {
                missing.push(state);
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    report.missing = missing.len() as u64;
    if missing.is_empty() {
        return Ok(report);
    }
    // Integer arithmetic: missing / known > percent / 100.
    if report.missing * 100 > report.known * u64::from(options.max_shrink_percent) {
        report.skipped = Some(format!(
            "the listing shrank by {} of {} known resources ({}%), more than max_shrink_percent ({}%): nothing deleted",
            report.missing,
            report.known,
            report.missing * 100 / report.known.max(1),
            options.max_shrink_percent
        ));
        report.shrink_guard = true;
        return Ok(report);
    }

    let now = svc.clock.now();
    for previous in missing {
        let id = previous.resource_id.clone();
        let mut state = previous.clone();
        if state.missing_session.as_deref() == Some(session.id.as_str()) {
            // Settled by an earlier attempt of this check (or held by the listing).
            if state.deleted_at.is_some() {
                report.deleted.push(id);
            } else if state.deletion_held() {
                report.held.push(id);
            } else {
                report.tombstoned.push(id);
            }
            continue;
        }
        state.missing_listings += 1;
        state.missing_session = Some(session.id.clone());
        let delete = state.missing_listings >= options.stale_after_listings;
        let verdict = match (delete, options.on_stale) {
            (false, _) => Verdict::Tombstone,
            (true, StaleAction::Hold) => Verdict::Hold,
            (true, action) => Verdict::Delete(action),
        };
        match verdict {
            Verdict::Delete(action) => take_out(svc, &mut state, action, now).await?,
            Verdict::Hold => hold(&mut state, now),
            Verdict::Tombstone => {}
        }
        svc.store.mark_missing(&state).await?;
        match verdict {
            Verdict::Delete(_) => report.deleted.push(id),
            Verdict::Hold => report.held.push(id),
            Verdict::Tombstone => report.tombstoned.push(id),
        }
    }
    Ok(report)
}

/// What the stale check does to one missing resource.
#[derive(Clone, Copy)]
enum Verdict {
    Tombstone,
    Hold,
    Delete(StaleAction),
}

/// Marks a deletion held for an operator; a resource held before keeps when it was held.
fn hold(state: &mut crate::model::ResourceState, now: chrono::DateTime<chrono::Utc>) {
    state.deletion_held_at.get_or_insert(now);
}

/// A session's listed ids, read page by page as ever larger ids are asked about.
struct ListedIds<'a> {
    session_id: &'a str,
    page: std::collections::VecDeque<String>,
    /// Where the next page starts; `None` with `started` once the last page is read.
    next: Option<String>,
    started: bool,
}

impl<'a> ListedIds<'a> {
    fn new(session_id: &'a str) -> ListedIds<'a> {
        ListedIds {
            session_id,
            page: Default::default(),
            next: None,
            started: false,
        }
    }

    /// Whether `id` was listed; each call must ask about a larger id than the one before.
    async fn contains(&mut self, svc: &Services, id: &str) -> Result<bool, StoreError> {
        loop {
            while let Some(front) = self.page.front() {
                match front.as_str().cmp(id) {
                    std::cmp::Ordering::Less => {
                        self.page.pop_front();
                    }
                    std::cmp::Ordering::Equal => return Ok(true),
                    std::cmp::Ordering::Greater => return Ok(false),
                }
            }
            if self.started && self.next.is_none() {
                return Ok(false);
            }
            let (markers, next) = svc
                .store
                .session_markers(self.session_id, self.next.take())
                .await?;
            self.started = true;
            self.next = next;
            self.page = markers.into_iter().map(|m| m.resource_id).collect();
        }
    }
}

/// Deletes at once the resources a server reports deleted and says it tracks deletions for
/// (OAI-PMH `status="deleted"` headers with `deletedRecord` transient or persistent): that
/// is the server's own word, not an inference from absence, so no tombstone wait applies.
/// Idempotent per session like the tombstones; returns the ids deleted.
pub async fn delete_reported(
    svc: &Services,
    session: &Session,
    ids: &[String],
    action: StaleAction,
) -> Result<Vec<String>, StoreError> {
    let mut deleted = Vec::new();
    let now = svc.clock.now();
    for id in ids {
        let Some(previous) = svc.store.get_resource(&session.source_id, id).await? else {
            continue;
        };
        if !previous.is_live() {
            continue;
        }
        let mut state = previous;
        // Held like any other deletion where the source wants a person to decide; the
        // session's stale check lists it as held.
        let held = action == StaleAction::Hold;
        if held {
            hold(&mut state, now);
        } else {
            take_out(svc, &mut state, action, now).await?;
        }
        state.missing_listings += 1;
        state.missing_session = Some(session.id.clone());
        if svc.store.mark_missing(&state).await? && !held {
            deleted.push(id.clone());
        }
    }
    if !deleted.is_empty() {
        tracing::info!(session = %session.id, deleted = deleted.len(), "resources deleted upstream removed");
    }
    Ok(deleted)
}

/// Takes a resource out of the catalog: its record and raw response moved aside (or
/// removed) and its state marked deleted; the caller stores the state.
pub(crate) async fn take_out(
    svc: &Services,
    state: &mut crate::model::ResourceState,
    action: StaleAction,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let record = match &state.record_key {
        Some(key) => remove_object(svc, key, action).await?,
        None => None,
    };
    let raw = match state.raw() {
        Some(raw) if raw.range.is_some() => remove_batched_raw(svc, state, &raw, action).await?,
        Some(raw) => remove_object(svc, &raw.key, action)
            .await?
            .map(RawLocation::object),
        None => None,
    };
    state.record_key = record;
    state.set_raw(raw);
    state.deleted_at = Some(now);
    state.deletion_held_at = None;
    Ok(())
}

/// Moves (or removes) one of a stale resource's objects; returns where it is now.
async fn remove_object(
    svc: &Services,
    key: &str,
    action: StaleAction,
) -> Result<Option<String>, StoreError> {
    match action {
        StaleAction::Remove => {
            svc.objects.delete(key).await?;
            Ok(None)
        }
        // An approved held deletion is moved aside, recoverable as `move` leaves it.
        StaleAction::Move | StaleAction::Hold => {
            let target = keys::deleted_key(key);
            // Absent when an earlier attempt moved it already.
            if let Some(body) = svc.objects.get(key).await? {
                svc.objects.put(&target, body, content_type(key)).await?;
                svc.objects.delete(key).await?;
            }
            Ok(Some(target))
        }
    }
}

/// A raw response kept in a batch's object (`options.raw: batch`): the object is shared with
/// the batch's other resources, so it stays where it is (the sweep removes it once no state
/// names it, `pipeline::raw`). Moved aside, the resource's bytes are copied into an object of
/// their own under `deleted/`, where its own raw object would be, so restoring it and the
/// retention of `deleted/` treat it as any other; removed, the state just stops naming them.
async fn remove_batched_raw(
    svc: &Services,
    state: &crate::model::ResourceState,
    raw: &RawLocation,
    action: StaleAction,
) -> Result<Option<RawLocation>, StoreError> {
    let (StaleAction::Move | StaleAction::Hold, Some(range)) = (action, raw.range) else {
        return Ok(None);
    };
    let extension = raw.key.rsplit_once('.').map_or("raw", |(_, ext)| ext);
    let own = keys::raw_key(&state.source_id, &state.resource_id, extension);
    let target = keys::deleted_key(&own);
    // Copied again by a retry (the batch object stays): the same bytes.
    match svc
        .objects
        .get_range(&raw.key, range.offset, range.length)
        .await
    {
        Ok(Some(body)) => {
            svc.objects.put(&target, body, content_type(&own)).await?;
            Ok(Some(RawLocation::object(target)))
        }
        Ok(None) => {
            tracing::warn!(resource = %state.resource_id, key = %raw.key, "the batch raw object a deleted resource named is gone; its raw response is not kept");
            Ok(None)
        }
        Err(e) if e.is_permanent() => {
            tracing::warn!(resource = %state.resource_id, key = %raw.key, error = %e, "the raw response a deleted resource named does not read; not kept");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}
