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

use super::Services;
use crate::keys;
use crate::messages::SourceSnapshot;
use crate::model::{Record, RecordChange, ResourceState};
use crate::ports::StoreError;
use crate::protocols::Fetched;
use bytes::Bytes;

/// Where a resource's content lives and which content it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredContent {
    pub hash: String,
    pub record_key: String,
    pub raw_key: String,
}

impl StoredContent {
    /// The (hash, record key, raw key) triple [`ResourceState::next`] takes.
    pub fn into_parts(self) -> (String, String, String) {
        (self.hash, self.record_key, self.raw_key)
    }
}

/// Writes the raw response and the normalized record.
pub async fn store_content(
    svc: &Services,
    source: &SourceSnapshot,
    resource_id: &str,
    fetched: &Fetched,
    record: &Record,
) -> Result<StoredContent, StoreError> {
    let raw_key = raw_key(source, resource_id);
    let record_key = keys::record_key(&source.id, resource_id);
    let record_json = serde_json::to_vec_pretty(record).expect("records serialize");
    let (raw, rec) = tokio::join!(
        svc.objects
            .put(&raw_key, fetched.body.clone(), fetched.content_type),
        svc.objects
            .put(&record_key, Bytes::from(record_json), "application/json"),
    );
    raw?;
    rec?;
    Ok(StoredContent {
        hash: record.content_hash(),
        record_key,
        raw_key,
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

fn raw_key(source: &SourceSnapshot, resource_id: &str) -> String {
    keys::raw_key(&source.id, resource_id, source.protocol.raw_extension())
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
    Ok(Some(StoredContent {
        hash: record.content_hash(),
        record_key,
        raw_key: raw_key(source, resource_id),
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
        next.raw_key = Some(found.raw_key);
        if svc.store.replace_resource(&state, &next).await? {
            tracing::info!(session = %session_id, resource = %resource_id, hash = %found.hash, "state now names the content an uncounted attempt wrote");
            return Ok(());
        }
    }
    Err(StoreError::new(format!(
        "resource {resource_id}: state kept changing while naming its stored content"
    )))
}
