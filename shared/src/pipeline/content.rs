//! A resource's stored content (its normalized record and the raw response beside it), and
//! how the resource state is kept naming what the object store actually holds.
//!
//! Content is written *before* the counting transaction, so a crash never loses a record.
//! The price: an attempt can write content and then not be the one counted. It crashed
//! before counting, or a redelivered copy counted first (perhaps a permanent failure such as
//! a truncated body). Its record object then holds content the state does not name. The
//! rule that closes that gap is "the state follows the object":
//! - whoever counts a failure first looks for such unclaimed content and names it
//!   ([`unclaimed_content`]); the outcome stays failed, the content is kept;
//! - an attempt that wrote content and then finds the resource already counted re-reads the
//!   object and points the state at it ([`reconcile`]).
//!
//! Every writer that loses the race to count runs `reconcile` after its own write, so the
//! last write to the object is always followed by a reconcile that sees it.
//!
//! Where the raw response goes is the source's `options.raw`: its own object beside the
//! record (`resource`), nowhere (`none`), or, with `batch`, into the batch's one raw object,
//! which the batch's [`super::tally::Tally`] writes just before it counts (so no state ever
//! names a batch object that was not written whole). Content found by `unclaimed_content` or
//! `reconcile` is named with its raw response only under `resource`, whose key the resource
//! id alone gives; under `batch` the object an uncounted attempt wrote is not known, so such
//! content is named without a raw response until the resource changes again.

use super::Services;
use crate::keys;
use crate::messages::SourceSnapshot;
use crate::model::{Content, RawLocation, RawStorage, Record, RecordChange, ResourceState};
use crate::ports::StoreError;
use crate::protocols::Fetched;
use bytes::Bytes;

/// Where a resource's content lives and which content it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredContent {
    pub hash: String,
    pub record_key: String,
    /// `None` when no raw response is kept, or (`options.raw: batch`) until the batch's
    /// raw object is written.
    pub raw: Option<RawLocation>,
}

impl StoredContent {
    /// The (hash, record key, raw location) triple [`ResourceState::next`] takes.
    pub fn into_parts(self) -> Content {
        (self.hash, self.record_key, self.raw)
    }
}

/// Writes the normalized record, and the raw response beside it when the source keeps one
/// object per resource (`options.raw: resource`); `batch` leaves the raw response to the
/// batch's count, `none` keeps none. `hash` is the record's [`Record::content_hash`], which
/// the caller has compared already (it serializes and hashes the whole record).
pub async fn store_content(
    svc: &Services,
    source: &SourceSnapshot,
    resource_id: &str,
    fetched: &Fetched,
    record: &Record,
    hash: String,
) -> Result<StoredContent, StoreError> {
    let record_key = keys::record_key(&source.id, resource_id);
    let record_json = serde_json::to_vec_pretty(record).expect("records serialize");
    let put_record = svc
        .objects
        .put(&record_key, Bytes::from(record_json), "application/json");
    let raw = match own_raw_key(source, resource_id) {
        Some(raw_key) => {
            let put_raw = svc
                .objects
                .put(&raw_key, fetched.body.clone(), fetched.content_type);
            let (raw, rec) = tokio::join!(put_raw, put_record);
            raw?;
            rec?;
            Some(RawLocation::object(raw_key))
        }
        None => {
            put_record.await?;
            None
        }
    };
    Ok(StoredContent {
        hash,
        record_key,
        raw,
    })
}

/// How `record` (whose hash differs from the one `previous` names) differs from the record
/// it replaces: added when there was none, else the top-level fields whose values changed.
/// Read before the new record is written over the old one, and only when the hash differs.
/// The fields are unknown (`None`) when the stored record is not the one `previous` names
/// (an uncounted attempt already wrote over it, or it does not parse).
pub async fn record_change(
    svc: &Services,
    previous: Option<&ResourceState>,
    record: &Record,
) -> Result<RecordChange, StoreError> {
    let Some((hash, key)) =
        previous.and_then(|p| Some((p.content_hash.as_deref()?, p.record_key.as_deref()?)))
    else {
        return Ok(RecordChange::Added);
    };
    let before = svc
        .objects
        .get(key)
        .await?
        .and_then(|body| serde_json::from_slice::<Record>(&body).ok())
        .filter(|before| before.content_hash() == hash);
    let value = |r: &Record| serde_json::to_value(r).expect("records serialize");
    Ok(RecordChange::Changed {
        fields: before.map(|before| RecordChange::changed_fields(&value(&before), &value(record))),
    })
}

/// The resource's own raw object, where its source keeps one (`options.raw: resource`).
fn own_raw_key(source: &SourceSnapshot, resource_id: &str) -> Option<String> {
    (source.options.raw == RawStorage::Resource)
        .then(|| keys::raw_key(&source.id, resource_id, source.protocol.raw_extension()))
}

/// The content the record object holds, if there is a readable one.
async fn stored_content(
    svc: &Services,
    source: &SourceSnapshot,
    resource_id: &str,
) -> Result<Option<StoredContent>, StoreError> {
    let record_key = keys::record_key(&source.id, resource_id);
    let Some(body) = svc.objects.get(&record_key).await? else {
        return Ok(None);
    };
    // Objects are written whole, so an unreadable one was not written by Trawl's current
    // model; leave it alone rather than name it.
    let Ok(record) = serde_json::from_slice::<Record>(&body) else {
        tracing::warn!(key = %record_key, "record object does not parse; left unnamed");
        return Ok(None);
    };
    // The record and its raw response are written at once, so an attempt cut off between
    // the two can leave the record without its raw object: named only if it is there.
    let raw = match own_raw_key(source, resource_id) {
        Some(key) => svc
            .objects
            .get_range(&key, 0, 0)
            .await?
            .map(|_| RawLocation::object(key)),
        None => None,
    };
    Ok(Some(StoredContent {
        hash: record.content_hash(),
        record_key,
        raw,
    }))
}

/// Whether `state` names `content` where it is: the same hash *and* the record key. A
/// resource deleted as stale keeps its last hash but no key, and its object is gone; the
/// same content written again after it came back is not named by that hash alone.
fn names(state: &ResourceState, content: &StoredContent) -> bool {
    state.content_hash.as_deref() == Some(&content.hash)
        && state.record_key.as_deref() == Some(&content.record_key)
}

/// Content in the object store that `previous` does not name: written by an attempt that was
/// never counted. Read when counting a failure, so the failure keeps it named.
pub async fn unclaimed_content(
    svc: &Services,
    source: &SourceSnapshot,
    resource_id: &str,
    previous: Option<&ResourceState>,
) -> Result<Option<StoredContent>, StoreError> {
    let found = stored_content(svc, source, resource_id).await?;
    Ok(found.filter(|c| !previous.is_some_and(|p| names(p, c))))
}

/// After this attempt wrote content and found the resource already counted for
/// `session_id`: point the state at what the record object holds now. Compare-and-swap on
/// the whole state, so a racing counter or reconciler is never overwritten blindly.
pub async fn reconcile(
    svc: &Services,
    source: &SourceSnapshot,
    resource_id: &str,
    session_id: &str,
) -> Result<(), StoreError> {
    for _ in 0..5 {
        let Some(state) = svc.store.get_resource(&source.id, resource_id).await? else {
            return Ok(());
        };
        // A later session owns the state now; its own count names its content.
        if state.last_session != session_id {
            return Ok(());
        }
        let Some(found) = stored_content(svc, source, resource_id).await? else {
            return Ok(());
        };
        if names(&state, &found) {
            return Ok(());
        }
        let mut next = state.clone();
        next.content_hash = Some(found.hash.clone());
        next.record_key = Some(found.record_key);
        next.set_raw(found.raw);
        if svc.store.replace_resource(&state, &next).await? {
            tracing::info!(session = %session_id, resource = %resource_id, hash = %found.hash, "state now names the content an uncounted attempt wrote");
            return Ok(());
        }
    }
    Err(StoreError::new(format!(
        "resource {resource_id}: state kept changing while naming its stored content"
    )))
}
