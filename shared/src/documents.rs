//! The documents Trawl keeps beside its state, one type each, written and read through that
//! type: the session summary, a resource's log line, a listing page's ids, the stale check's
//! report and a session's failed ids. Where each lives is in `keys.rs`.

use crate::http::RequestLog;
use crate::model::{Counters, Outcome, Reason, RecordChange, SessionStatus};
use crate::ports::{ObjectStore, StoreError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `sessions/{source}/{stamp}/summary.json`: how a session ended, written when it closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub source_id: String,
    pub status: SessionStatus,
    pub scheduled_time: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: f64,
    pub counters: Counters,
    pub listing_error: Option<String>,
    pub listing: SummaryListing,
    /// Failed resources per reason code.
    pub reasons: BTreeMap<String, u64>,
    /// The first failed resources, with their reasons (at most `SUMMARY_FAILED_LIMIT`).
    pub failed_resources: Vec<FailedResource>,
    pub failed_resources_truncated: bool,
    /// Resources this session brought back after they had been deleted (records and raw
    /// responses back under `records/` and `raw/`), the first `SUMMARY_FAILED_LIMIT` of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<String>,
    /// How many were restored in all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restored_count: u64,
    /// Markers still pending when the summary was written (0 for a session that closed).
    pub pending_markers: u64,
    /// Deletions this session's stale check kept pending for an operator (`on_stale: hold`;
    /// their ids are `stale.held`): what an alert reads.
    #[serde(default)]
    pub held_deletions: u64,
    pub stale: Option<StaleReport>,
    /// What the session changed in the catalog.
    #[serde(default)]
    pub changes: SessionChanges,
    pub records_prefix: String,
}

/// A session's changes to the catalog: counts, and the first [`SessionChanges::LISTED`] ids of
/// each kind, so a session of a million resources keeps a small summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionChanges {
    /// Resources harvested for the first time (no record before).
    pub added: ChangedIds,
    /// Records whose content changed, with the top-level fields that did.
    pub changed: ChangedRecords,
    /// Resources deleted by this session's stale check or by the server's word.
    pub removed: ChangedIds,
    /// Deleted resources this session brought back.
    pub restored: ChangedIds,
}

impl SessionChanges {
    /// How many ids of each kind a summary lists.
    pub const LISTED: usize = 100;

    /// Counts one settled marker's change.
    pub fn count(&mut self, resource_id: &str, change: Option<&RecordChange>, restored: bool) {
        if restored {
            self.restored.add(resource_id);
        }
        match change {
            Some(RecordChange::Added) => self.added.add(resource_id),
            Some(RecordChange::Changed { fields }) => {
                self.changed.count += 1;
                if self.changed.resources.len() < Self::LISTED {
                    self.changed.resources.push(ChangedRecord {
                        resource_id: resource_id.to_string(),
                        fields: fields.clone(),
                    });
                }
            }
            None => {}
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedIds {
    pub count: u64,
    /// The first [`SessionChanges::LISTED`], in resource-id order.
    pub ids: Vec<String>,
}

impl ChangedIds {
    pub fn add(&mut self, resource_id: &str) {
        self.count += 1;
        if self.ids.len() < SessionChanges::LISTED {
            self.ids.push(resource_id.to_string());
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedRecords {
    pub count: u64,
    /// The first [`SessionChanges::LISTED`], in resource-id order.
    pub resources: Vec<ChangedRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedRecord {
    pub resource_id: String,
    /// The top-level record fields whose values changed; absent when not known (the record
    /// it replaced was overwritten by an attempt that was not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryListing {
    pub complete: bool,
    pub incremental_since: Option<DateTime<Utc>>,
    pub listed: u64,
    pub expected_total: Option<u64>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedResource {
    pub resource_id: String,
    pub reason: Reason,
}

/// One resource's attempt, a line of its batch's log (`logs/…`, NDJSON): written by the
/// harvester, and by the watchdog for what it counts lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLog {
    pub session_id: String,
    pub source_id: String,
    pub resource_id: String,
    pub at: DateTime<Utc>,
    /// The message's receive count; `None` for an outcome the watchdog gave.
    pub attempt: Option<u32>,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    /// The content the state names after this attempt.
    pub content_hash: Option<String>,
    /// A failure that found content an uncounted attempt wrote (see `pipeline::content`).
    pub kept_unclaimed_content: bool,
    pub requests: Vec<RequestLog>,
}

impl ResourceLog {
    /// `resource_id`'s line in a batch log.
    pub fn find(body: &[u8], resource_id: &str) -> Option<ResourceLog> {
        body.split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice::<ResourceLog>(line).ok())
            .find(|line| line.resource_id == resource_id)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `sessions/{source}/{stamp}/pages/…`: what one listing page found, saved before the page
/// is committed so that a redelivered page sends exactly the ids that were counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageDocument {
    pub session_id: String,
    pub page: u32,
    pub cursor: Option<String>,
    pub next_cursor: Option<String>,
    pub error: Option<String>,
    pub expected_total: Option<u64>,
    pub problems: Vec<String>,
    /// Ids added to the last page of an incremental session: its base's failed resources.
    pub retried_from_base: u64,
    /// Resources the server reported deleted that were deleted now.
    pub deleted_upstream: Vec<String>,
    pub requests: Vec<RequestLog>,
    pub resource_ids: Vec<String>,
}

/// Ids `from..from + len` of a page document's `resource_ids`, and how many it holds in all.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PageIds {
    pub ids: Vec<String>,
    pub total: usize,
}

impl PageIds {
    /// Reads only the stretch asked for from a page document: a page of a million ids is
    /// delivered a chunk at a time, and each chunk's invocation holds its chunk, not the page.
    pub fn read(body: &[u8], from: usize, len: usize) -> serde_json::Result<PageIds> {
        use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct Document(std::ops::Range<usize>);
        struct Ids(std::ops::Range<usize>);
        impl<'de> DeserializeSeed<'de> for Document {
            type Value = PageIds;
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PageIds, D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Document {
            type Value = PageIds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a page document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PageIds, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "resource_ids" {
                        found = Some(map.next_value_seed(Ids(self.0.clone()))?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                found.ok_or_else(|| serde::de::Error::missing_field("resource_ids"))
            }
        }
        impl<'de> DeserializeSeed<'de> for Ids {
            type Value = PageIds;
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PageIds, D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de> Visitor<'de> for Ids {
            type Value = PageIds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of resource ids")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PageIds, A::Error> {
                let mut out = PageIds::default();
                loop {
                    let more = if self.0.contains(&out.total) {
                        seq.next_element::<String>()?.map(|id| out.ids.push(id))
                    } else {
                        seq.next_element::<IgnoredAny>()?.map(|_| ())
                    };
                    if more.is_none() {
                        return Ok(out);
                    }
                    out.total += 1;
                }
            }
        }
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let ids = Document(from..from.saturating_add(len)).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(ids)
    }
}

/// Reads a stretch of a page document's ids ([`PageIds::read`]).
pub async fn get_page_ids(
    objects: &dyn ObjectStore,
    key: &str,
    from: usize,
    len: usize,
) -> Result<Option<PageIds>, StoreError> {
    let Some(body) = objects.get(key).await? else {
        return Ok(None);
    };
    PageIds::read(&body, from, len)
        .map(Some)
        .map_err(|e| StoreError::permanent(format!("{key} does not parse: {e}")))
}

/// `sessions/{source}/{stamp}/stale.json`: what the stale check did in a session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleReport {
    /// Why nothing was considered for deletion, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Live resources the source knows, this session's harvests included.
    pub known: u64,
    /// Known resources this listing did not include.
    pub missing: u64,
    /// Missing resources that got (or advanced) a tombstone and were kept.
    pub tombstoned: Vec<String>,
    /// Resources deleted in this session: missing from enough consecutive listings, or
    /// declared deleted by the server (those are also in `deleted_upstream`).
    pub deleted: Vec<String>,
    /// Resources the server declared deleted (OAI-PMH `status="deleted"`), deleted at once
    /// as the listing met them, whatever the listing (incremental ones included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_upstream: Vec<String>,
    /// The shrink guard held deletions back: the listing missed more than
    /// `max_shrink_percent` of the known resources (an alert says so).
    #[serde(default, skip_serializing_if = "is_false")]
    pub shrink_guard: bool,
    /// Resources the rules would have deleted, kept pending for an operator
    /// (`on_stale: hold`): held now or still held from an earlier session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

/// `sessions/{source}/{stamp}/failed.json`: the session's failed resource ids, which an
/// incremental session listing changes since it retries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FailedIds(pub Vec<String>);

/// `sessions/{source}/{stamp}/selection.json`: the resources a selection session harvests,
/// written before the session exists, so every listing of its page 1 (a retry, the
/// watchdog's resend) reads the same ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionDocument {
    pub session_id: String,
    pub resource_ids: Vec<String>,
}

/// Writes a document as compact JSON (listing pages: thousands of ids).
pub async fn put<T: Serialize>(
    objects: &dyn ObjectStore,
    key: &str,
    document: &T,
) -> Result<(), StoreError> {
    let body = serde_json::to_vec(document);
    write(objects, key, body).await
}

/// Writes a document as indented JSON: the ones operators open (summaries, stale reports).
pub async fn put_readable<T: Serialize>(
    objects: &dyn ObjectStore,
    key: &str,
    document: &T,
) -> Result<(), StoreError> {
    let body = serde_json::to_vec_pretty(document);
    write(objects, key, body).await
}

async fn write(
    objects: &dyn ObjectStore,
    key: &str,
    body: serde_json::Result<Vec<u8>>,
) -> Result<(), StoreError> {
    let body = body.map_err(|e| StoreError::permanent(format!("{key}: {e}")))?;
    objects
        .put(key, Bytes::from(body), "application/json")
        .await
}

/// Reads a document: `None` if there is none; a document that does not parse is a permanent
/// error (it will not parse next time either).
pub async fn get<T: DeserializeOwned>(
    objects: &dyn ObjectStore,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let Some(body) = objects.get(key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| StoreError::permanent(format!("{key} does not parse: {e}")))
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReasonCode;

    #[test]
    fn a_log_line_is_found_by_its_resource_among_the_batchs() {
        let line = |id: &str, attempt| ResourceLog {
            session_id: "s@1".into(),
            source_id: "s".into(),
            resource_id: id.into(),
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            attempt,
            outcome: Outcome::Failed,
            reason: Some(Reason::new(ReasonCode::Lost, "deadline")),
            content_hash: None,
            kept_unclaimed_content: false,
            requests: vec![],
        };
        let mut body = Vec::new();
        for l in [line("a", Some(1)), line("b", None)] {
            serde_json::to_writer(&mut body, &l).unwrap();
            body.push(b'\n');
        }
        assert_eq!(ResourceLog::find(&body, "b"), Some(line("b", None)));
        assert_eq!(ResourceLog::find(&body, "a"), Some(line("a", Some(1))));
        assert_eq!(ResourceLog::find(&body, "c"), None);
        assert_eq!(ResourceLog::find(b"not json\n", "a"), None);
    }

    #[test]
    fn a_stretch_of_a_pages_ids_is_read_alone() {
        let page = PageDocument {
            session_id: "s@1".into(),
            page: 3,
            cursor: Some("2".into()),
            next_cursor: None,
            error: None,
            expected_total: Some(5),
            problems: vec!["p".into()],
            retried_from_base: 0,
            deleted_upstream: vec!["gone".into()],
            requests: vec![],
            resource_ids: ["a", "b\"q", "c", "d", "e"].map(String::from).to_vec(),
        };
        let body = serde_json::to_vec(&page).unwrap();
        let read = |from, len| PageIds::read(&body, from, len).unwrap();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            read(0, 2),
            PageIds {
                ids: ids(&["a", "b\"q"]),
                total: 5
            }
        );
        assert_eq!(
            read(3, 10),
            PageIds {
                ids: ids(&["d", "e"]),
                total: 5
            }
        );
        assert_eq!(
            read(5, 10),
            PageIds {
                ids: vec![],
                total: 5
            }
        );
        assert_eq!(read(0, usize::MAX).ids, page.resource_ids);
        assert!(PageIds::read(br#"{"page": 1}"#, 0, 1).is_err());
        assert!(PageIds::read(br#"{"resource_ids": ["a"]} x"#, 0, 1).is_err());
    }

    #[test]
    fn failed_ids_are_a_bare_list() {
        let ids = FailedIds(vec!["x".into(), "y".into()]);
        assert_eq!(serde_json::to_string(&ids).unwrap(), r#"["x","y"]"#);
    }
}
