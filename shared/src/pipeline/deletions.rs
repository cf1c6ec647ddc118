//! Deletions a person decides: the ones a source with `on_stale: hold` keeps pending, and
//! resources already moved under `deleted/` that an operator wants back.
//!
//! 1. [`held`]: the source's pending deletions (the stale check marked them held).
//! 2. [`approve`]: applies them as `on_stale: move` would (record and raw response moved
//!    under `deleted/`, the state marked deleted, its history kept).
//! 3. [`restore`]: discards a pending deletion (the resource stays, its tombstone lifted), or
//!    brings a moved resource back from `deleted/` with its history.
//!
//! Both changes are refused while the source has a running session: its harvesters and its
//! stale check write the same states and objects. Each state is written by compare-and-swap
//! against the one read, so a change that raced anything else is reported, not applied
//! blindly; objects are moved before the state says so, and moving again finds them moved.

use super::stale::{content_type, take_out};
use super::Services;
use crate::keys;
use crate::model::{RawLocation, ResourceState, StaleAction};
use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error("no source {0}")]
    UnknownSource(String),
    #[error("source {source_id} has a running session ({session}): deletions are decided between sessions; wait for it or abort it")]
    SessionRunning { source_id: String, session: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a decision did: the resources it changed, and the named ones it left, with why.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub done: Vec<String>,
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub resource_id: String,
    pub why: String,
}

/// The source's resources whose deletion is held for an operator, in id order.
pub async fn held(svc: &Services, source_id: &str) -> Result<Vec<ResourceState>, StoreError> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let (states, next) = svc.store.list_resources(source_id, after).await?;
        found.extend(states.into_iter().filter(ResourceState::deletion_held));
        match next {
            Some(n) => after = Some(n),
            None => return Ok(found),
        }
    }
}

/// Applies the held deletions of `ids` (every held one when `ids` is empty): moved aside.
pub async fn approve(
    svc: &Services,
    source_id: &str,
    ids: &[String],
) -> Result<Decision, DeletionError> {
    between_sessions(svc, source_id).await?;
    let mut decision = Decision::default();
    for (id, state) in targets(svc, source_id, ids).await? {
        let Some(current) = state.filter(ResourceState::deletion_held) else {
            decision.skip(id, "no deletion of it is pending");
            continue;
        };
        let mut next = current.clone();
        take_out(svc, &mut next, StaleAction::Move, svc.clock.now()).await?;
        decision.settle(svc, id, &current, &next).await?;
    }
    if !decision.done.is_empty() {
        tracing::info!(source = %source_id, deleted = decision.done.len(), "held deletions approved");
    }
    Ok(decision)
}

/// Discards the held deletions of `ids` (every held one when `ids` is empty), and brings
/// back the named resources already moved under `deleted/`, with their history.
pub async fn restore(
    svc: &Services,
    source_id: &str,
    ids: &[String],
) -> Result<Decision, DeletionError> {
    between_sessions(svc, source_id).await?;
    let mut decision = Decision::default();
    for (id, state) in targets(svc, source_id, ids).await? {
        let Some(current) = state else {
            decision.skip(id, "the source has no such resource");
            continue;
        };
        let mut next = current.clone();
        if current.deletion_held() {
            next.deletion_held_at = None;
        } else if !current.is_live() {
            match bring_back(svc, &current).await? {
                Ok((record, raw)) => {
                    next.record_key = record;
                    next.set_raw(raw);
                    next.deleted_at = None;
                }
                Err(why) => {
                    decision.skip(id, why);
                    continue;
                }
            }
        } else {
            decision.skip(id, "it is neither deleted nor held for deletion");
            continue;
        }
        // Another `stale_after_listings` complete listings before it is deleted (or held)
        // again, should the source still not list it.
        next.missing_listings = 0;
        decision.settle(svc, id, &current, &next).await?;
    }
    if !decision.done.is_empty() {
        tracing::info!(source = %source_id, restored = decision.done.len(), "deletions discarded or undone");
    }
    Ok(decision)
}

impl Decision {
    fn skip(&mut self, resource_id: String, why: impl Into<String>) {
        self.skipped.push(Skipped {
            resource_id,
            why: why.into(),
        });
    }

    async fn settle(
        &mut self,
        svc: &Services,
        id: String,
        current: &ResourceState,
        next: &ResourceState,
    ) -> Result<(), StoreError> {
        if svc.store.replace_resource(current, next).await? {
            self.done.push(id);
        } else {
            self.skip(id, "its state changed meanwhile; look again and retry");
        }
        Ok(())
    }
}

async fn between_sessions(svc: &Services, source_id: &str) -> Result<(), DeletionError> {
    let entry = svc
        .store
        .get_source(source_id)
        .await?
        .ok_or_else(|| DeletionError::UnknownSource(source_id.to_string()))?;
    match entry.running_session {
        Some(session) => Err(DeletionError::SessionRunning {
            source_id: source_id.to_string(),
            session,
        }),
        None => Ok(()),
    }
}

/// The resources a decision is about: the named ones (with their states, if any), or every
/// held one when none is named.
async fn targets(
    svc: &Services,
    source_id: &str,
    ids: &[String],
) -> Result<Vec<(String, Option<ResourceState>)>, StoreError> {
    if ids.is_empty() {
        return Ok(held(svc, source_id)
            .await?
            .into_iter()
            .map(|s| (s.resource_id.clone(), Some(s)))
            .collect());
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push((id.clone(), svc.store.get_resource(source_id, id).await?));
    }
    Ok(out)
}

/// Moves a deleted resource's record and raw response back from `deleted/`; where they
/// are now, or why they cannot come back. (A raw response a batch's object held was copied
/// into an object of its own when the resource was moved aside, so it comes back as one.)
#[allow(clippy::type_complexity)]
async fn bring_back(
    svc: &Services,
    state: &ResourceState,
) -> Result<Result<(Option<String>, Option<RawLocation>), String>, StoreError> {
    let Some(record) = state.record_key.as_deref() else {
        return Ok(Err(
            "its record was removed for good (on_stale: remove); the next harvest that lists it fetches it again".into(),
        ));
    };
    let raw = state.raw();
    let moved: Vec<(&str, String)> = [Some(record), raw.as_ref().map(|r| r.key.as_str())]
        .into_iter()
        .flatten()
        .filter_map(|key| Some((key, keys::live_key(key)?)))
        .collect();
    // Every object is found before any is moved, so a missing one leaves the rest in place.
    for (key, target) in &moved {
        if svc.objects.get(key).await?.is_none() && svc.objects.get(target).await?.is_none() {
            return Ok(Err(format!(
                "{key} is gone (expired by the retention rules?); the next harvest that lists it fetches it again"
            )));
        }
    }
    let record = move_back(svc, record).await?;
    let raw = match raw {
        // Not under `deleted/` (a range of a batch object): it stays where it is.
        Some(raw) if !keys::is_deleted_key(&raw.key) => Some(raw),
        Some(raw) => Some(RawLocation::object(move_back(svc, &raw.key).await?)),
        None => None,
    };
    Ok(Ok((Some(record), raw)))
}

/// Moves one object back from `deleted/`; where it is now.
async fn move_back(svc: &Services, key: &str) -> Result<String, StoreError> {
    let Some(target) = keys::live_key(key) else {
        return Ok(key.to_string());
    };
    // Absent when an earlier attempt moved it back and stopped before the state said so.
    if let Some(body) = svc.objects.get(key).await? {
        svc.objects
            .put(&target, body, content_type(&target))
            .await?;
        svc.objects.delete(key).await?;
    }
    Ok(target)
}
