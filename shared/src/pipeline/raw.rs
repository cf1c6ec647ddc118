//! Raw responses where their source keeps them (`options.raw`): read back for the status
//! API and the CLI, and the sweep of batch raw objects no state names any more.
//!
//! With `batch`, the raw responses of one harvester batch share an object, which stays
//! needed while any state names a range of it. A resource that changes is named in a newer
//! object; one deleted as stale has its bytes copied under `deleted/` (`pipeline::stale`); a
//! batch retried after a crash leaves an object no state ever named. So when a session
//! closes, the batch objects of the source's earlier sessions that no state names are
//! deleted ([`sweep`]). Earlier sessions only: they are closed and the source is held by the
//! closing one, so nothing can come to name their objects (a late copy of an old session's
//! message finds its marker settled and names nothing), while a late copy of the closing
//! session's message may still write into its folder.
//!
//! What a batch object costs in storage: it is kept whole while one of its resources is
//! unchanged since, so a catalog changing a few resources at a time keeps up to a batch's
//! size (10) of raw bytes per resource in the worst case. `resource` keeps exactly one copy.

use super::Services;
use crate::keys;
use crate::model::ResourceState;
use crate::ports::StoreError;
use bytes::Bytes;
use std::collections::HashSet;

/// The raw response a state names: a range of a batch's object, or a whole object; `None`
/// when none is kept or the object is gone.
pub async fn read(svc: &Services, state: &ResourceState) -> Result<Option<Bytes>, StoreError> {
    match state.raw() {
        Some(raw) => match raw.range {
            Some(range) => {
                svc.objects
                    .get_range(&raw.key, range.offset, range.length)
                    .await
            }
            None => svc.objects.get(&raw.key).await,
        },
        None => Ok(None),
    }
}

/// Deletes the batch raw objects of the source's sessions before `session_stamp` that no
/// resource state names; how many. Housekeeping: the caller logs a failure and closes the
/// session anyway (the next close sweeps again).
pub async fn sweep(
    svc: &Services,
    source_id: &str,
    session_stamp: &str,
) -> Result<u64, StoreError> {
    let prefix = keys::raw_batches_prefix(source_id);
    let earlier: Vec<String> = svc
        .objects
        .folders(&prefix)
        .await?
        .into_iter()
        .filter(|folder| folder[prefix.len()..].trim_end_matches('/') < session_stamp)
        .collect();
    if earlier.is_empty() {
        return Ok(0);
    }
    // Only the names in those folders are kept, not every state's.
    let mut named = HashSet::new();
    let mut after = None;
    loop {
        let (states, next) = svc.store.list_resources(source_id, after).await?;
        for key in states.into_iter().filter_map(|s| s.raw_key) {
            if earlier
                .iter()
                .any(|folder| key.starts_with(folder.as_str()))
            {
                named.insert(key);
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut deleted = 0;
    for folder in earlier {
        let files = svc.objects.files(&folder).await?;
        if files.iter().all(|key| !named.contains(key)) {
            deleted += svc.objects.delete_prefix(&folder).await?;
            continue;
        }
        for key in files.iter().filter(|key| !named.contains(*key)) {
            svc.objects.delete(key).await?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        tracing::info!(source = %source_id, deleted, "batch raw objects no state names were removed");
    }
    Ok(deleted)
}
