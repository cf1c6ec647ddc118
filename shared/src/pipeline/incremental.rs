//! Incremental harvesting: with `options.incremental`, a session lists only what changed
//! since its *base*, the newest closed session whose listing was complete (CKAN
//! `metadata_modified`, OAI-PMH `from`).
//!
//! Rules, each closing a gap incremental harvesters are known for:
//! - the window starts an hour before the base session started ([`OVERLAP`]): clocks differ
//!   and a record edited while the base was listing must not fall between two windows;
//! - the base's failed resources are listed again (they did not change, so the window alone
//!   would never retry them); their ids are kept beside the base's summary at close;
//! - an incremental listing proves nothing about deletions, so it never deletes stale
//!   resources; a full listing runs when there is no base, when the base's failed ids are
//!   unreadable, or when the last full listing is older than `full_listing_every_days`.

use super::Services;
use crate::documents::{self, FailedIds};
use crate::keys;
use crate::model::Session;
use crate::ports::{SourceEntry, StoreError};
use chrono::{DateTime, Duration, Utc};

/// How far before the base session's start an incremental window opens.
pub const OVERLAP: Duration = Duration::hours(1);

fn failed_ids_key(session: &Session) -> String {
    keys::failed_ids_key(&session.source_id, &session.stamp())
}

/// Where a new session of `entry` starts listing: `Some((since, base session id))` for an
/// incremental one, `None` for a full listing.
pub async fn window(
    svc: &Services,
    entry: &SourceEntry,
    now: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
    let options = &entry.source.options;
    if !options.incremental || !entry.source.protocol.lists_incrementally() {
        return Ok(None);
    }
    let full_every = Duration::days(i64::from(options.full_listing_every_days));
    match entry.last_full_listing_at {
        Some(full) if now - full < full_every => {}
        _ => return Ok(None),
    }
    let Some(base_id) = &entry.incremental_base else {
        return Ok(None);
    };
    let Some(base) = svc.store.get_session(base_id).await? else {
        return Ok(None);
    };
    if svc.objects.get(&failed_ids_key(&base)).await?.is_none() {
        tracing::warn!(source = %entry.source.id, base = %base.id, "base session's failed ids unreadable; listing everything");
        return Ok(None);
    }
    Ok(Some((base.started_at - OVERLAP, base.id)))
}

/// Keeps the ids of a session's failed resources, for an incremental session to retry.
/// Written before the session closes, so a base always has them.
pub async fn keep_failed_ids(svc: &Services, session: &Session) -> Result<(), StoreError> {
    let mut failed = Vec::new();
    let mut after = None;
    loop {
        let (markers, next) = svc.store.session_markers(&session.id, after).await?;
        failed.extend(
            markers
                .into_iter()
                .filter(|m| m.outcome == Some(crate::model::Outcome::Failed))
                .map(|m| m.resource_id),
        );
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    documents::put(
        svc.objects.as_ref(),
        &failed_ids_key(session),
        &FailedIds(failed),
    )
    .await
}

/// The failed ids a base session kept.
pub async fn failed_ids(svc: &Services, base_id: &str) -> Result<Vec<String>, StoreError> {
    let base = svc
        .store
        .get_session(base_id)
        .await?
        .ok_or_else(|| StoreError::permanent(format!("base session {base_id} is gone")))?;
    let key = failed_ids_key(&base);
    let FailedIds(ids) = documents::get(svc.objects.as_ref(), &key)
        .await?
        .ok_or_else(|| StoreError::permanent(format!("{key} is missing")))?;
    Ok(ids)
}
