//! Per-resource state: the last outcome, its history and where its artifacts are.

use super::reason::Reason;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many sessions of history a resource keeps (enough for a dashboard sparkline).
pub const HISTORY_LEN: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// New or changed content: record, raw response and log were written.
    Harvested,
    /// Same content hash as last time: nothing was written to the object store.
    Unchanged,
    Failed,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Harvested => "harvested",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "harvested" => Outcome::Harvested,
            "unchanged" => Outcome::Unchanged,
            "failed" => Outcome::Failed,
            _ => return None,
        })
    }

    /// The session counter this outcome increments.
    pub fn counter(&self) -> &'static str {
        self.as_str()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub session_id: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub at: DateTime<Utc>,
    /// This session brought the resource back after it had been deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
    /// What this session's harvest changed in the record: new, or which fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<RecordChange>,
}

/// How a harvested record differs from the one it replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RecordChange {
    /// The resource had no record before.
    Added,
    /// The record's content hash differed: the top-level record fields whose values differ
    /// (`None` when the previous record could not be read as it was, so they are not known).
    Changed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fields: Option<Vec<String>>,
    },
}

impl RecordChange {
    /// The top-level fields whose values differ between two records (as JSON objects), in
    /// name order; a field present in one only counts as changed.
    pub fn changed_fields(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
        let empty = serde_json::Map::new();
        let before = before.as_object().unwrap_or(&empty);
        let after = after.as_object().unwrap_or(&empty);
        let names: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        names
            .into_iter()
            .filter(|name| before.get(*name) != after.get(*name))
            .cloned()
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceState {
    pub source_id: String,
    pub resource_id: String,
    pub last_outcome: Outcome,
    pub last_reason: Option<Reason>,
    pub last_session: String,
    pub last_attempt_at: DateTime<Utc>,
    /// When content was last fetched successfully (harvested or unchanged).
    pub last_harvested_at: Option<DateTime<Utc>>,
    pub content_hash: Option<String>,
    /// The record's title when last fetched (for searching without reading records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub record_key: Option<String>,
    /// The object holding its raw response (see [`ResourceState::raw`]).
    pub raw_key: Option<String>,
    /// Where in `raw_key` the raw response is, when that object is a batch's
    /// (`options.raw: batch`); `None`: the whole object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_range: Option<ByteRange>,
    pub log_key: Option<String>,
    /// Newest last, at most [`HISTORY_LEN`] entries.
    pub history: Vec<HistoryEntry>,
    /// The tombstone: consecutive complete listings this resource was missing from.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing_listings: u32,
    /// The session whose listing last found it missing (a repeated check counts once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_session: Option<String>,
    /// When it was deleted as stale; a deleted resource is no longer part of the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// When the stale rules decided to delete it and its source (`on_stale: hold`) kept the
    /// deletion pending for an operator to approve or discard; listed again, it is lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_held_at: Option<DateTime<Utc>>,
}

/// Bytes `offset..offset + length` of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

/// Where a resource's raw response is kept: a whole object, or a range of a batch's object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawLocation {
    pub key: String,
    pub range: Option<ByteRange>,
}

impl RawLocation {
    /// A whole object.
    pub fn object(key: impl Into<String>) -> RawLocation {
        RawLocation {
            key: key.into(),
            range: None,
        }
    }
}

/// What a counted harvest stored: the record's content hash, its key and where the raw
/// response went (`None` when none was kept).
pub type Content = (String, String, Option<RawLocation>);

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ResourceState {
    /// The state after this session's outcome, carrying over what the outcome did not change.
    #[allow(clippy::too_many_arguments)]
    pub fn next(
        previous: Option<&ResourceState>,
        source_id: &str,
        resource_id: &str,
        session_id: &str,
        outcome: Outcome,
        reason: Option<Reason>,
        at: DateTime<Utc>,
        content: Option<Content>,
    ) -> ResourceState {
        let mut history: Vec<HistoryEntry> =
            previous.map(|p| p.history.clone()).unwrap_or_default();
        history.push(HistoryEntry {
            session_id: session_id.to_string(),
            outcome,
            reason: reason.clone(),
            at,
            restored: false,
            change: None,
        });
        if history.len() > HISTORY_LEN {
            history.drain(..history.len() - HISTORY_LEN);
        }
        let (content_hash, record_key, raw) = match content {
            Some((h, r, w)) => (Some(h), Some(r), w),
            None => (
                previous.and_then(|p| p.content_hash.clone()),
                previous.and_then(|p| p.record_key.clone()),
                previous.and_then(ResourceState::raw),
            ),
        };
        let last_harvested_at = match outcome {
            Outcome::Failed => previous.and_then(|p| p.last_harvested_at),
            _ => Some(at),
        };
        ResourceState {
            source_id: source_id.to_string(),
            resource_id: resource_id.to_string(),
            last_outcome: outcome,
            last_reason: reason,
            last_session: session_id.to_string(),
            last_attempt_at: at,
            last_harvested_at,
            content_hash,
            title: previous.and_then(|p| p.title.clone()),
            record_key,
            raw_key: raw.as_ref().map(|r| r.key.clone()),
            raw_range: raw.and_then(|r| r.range),
            // The previous log until this outcome's is written (`pipeline::tally` names it);
            // an unchanged resource writes none, so the previous one stays the newest.
            log_key: previous.and_then(|p| p.log_key.clone()),
            history,
            // Listed again: whatever tombstone it had is lifted.
            missing_listings: 0,
            missing_session: None,
            deleted_at: None,
            deletion_held_at: None,
        }
    }

    /// After a failure in a session that named the resource without listing it (a
    /// selection): the failure proves nothing about whether it is still upstream, so its
    /// tombstone, or its deletion, stays as `previous` had it. (A listing that lists it, or
    /// a fetch that succeeds, does lift them.)
    pub fn keep_absence_of(&mut self, previous: Option<&ResourceState>) {
        if let Some(p) = previous {
            self.missing_listings = p.missing_listings;
            self.missing_session = p.missing_session.clone();
            self.deleted_at = p.deleted_at;
        }
    }

    /// Where its raw response is, if one is kept.
    pub fn raw(&self) -> Option<RawLocation> {
        Some(RawLocation {
            key: self.raw_key.clone()?,
            range: self.raw_range,
        })
    }

    /// Names `raw` as its raw response (none kept: `None`).
    pub fn set_raw(&mut self, raw: Option<RawLocation>) {
        self.raw_range = raw.as_ref().and_then(|r| r.range);
        self.raw_key = raw.map(|r| r.key);
    }

    /// Whether the resource is part of the source's catalog (not deleted as stale).
    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }

    /// Whether its record is still where a deletion put it: deleted, or listed again but
    /// not yet fetched back (a failed attempt lifts the deletion, not the record).
    pub fn awaits_restoring(&self) -> bool {
        !self.is_live()
            || [&self.record_key, &self.raw_key]
                .into_iter()
                .flatten()
                .any(|key| crate::keys::is_deleted_key(key))
    }

    /// Marks the newest outcome as the one that brought the resource back.
    pub fn mark_restored(&mut self) {
        if let Some(last) = self.history.last_mut() {
            last.restored = true;
        }
    }

    /// Records what this session's harvest changed in the record.
    pub fn mark_change(&mut self, change: RecordChange) {
        if let Some(last) = self.history.last_mut() {
            last.change = Some(change);
        }
    }

    /// What this session's outcome (the newest) changed in the record, if anything.
    pub fn change_now(&self) -> Option<&RecordChange> {
        self.history
            .last()
            .filter(|h| h.session_id == self.last_session)
            .and_then(|h| h.change.as_ref())
    }

    /// Whether a deletion of it waits for an operator (`on_stale: hold`).
    pub fn deletion_held(&self) -> bool {
        self.is_live() && self.deletion_held_at.is_some()
    }

    /// Whether the newest outcome (this session's) brought the resource back.
    pub fn restored_now(&self) -> bool {
        self.history
            .last()
            .is_some_and(|h| h.restored && h.session_id == self.last_session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_that_proves_nothing_keeps_the_tombstone_and_the_deletion() {
        let t = Utc::now();
        let mut gone =
            ResourceState::next(None, "s", "r", "s@1", Outcome::Harvested, None, t, None);
        gone.missing_listings = 2;
        gone.missing_session = Some("s@2".into());
        gone.deleted_at = Some(t);
        let mut failed =
            ResourceState::next(Some(&gone), "s", "r", "s@3", Outcome::Failed, None, t, None);
        assert!(failed.is_live(), "a listing's failure lifts the deletion");
        failed.keep_absence_of(Some(&gone));
        assert_eq!(
            (
                failed.missing_listings,
                failed.missing_session.as_deref(),
                failed.deleted_at
            ),
            (2, Some("s@2"), Some(t))
        );
        assert_eq!(failed.last_session, "s@3", "the attempt is still recorded");
    }

    #[test]
    fn history_is_capped_and_content_survives_a_failure() {
        let t = Utc::now();
        let mut state = ResourceState::next(
            None,
            "s",
            "r",
            "s@1",
            Outcome::Harvested,
            None,
            t,
            Some((
                "h1".into(),
                "records/s/r.json".into(),
                Some(RawLocation::object("raw/s/r.json")),
            )),
        );
        for i in 2..=40 {
            state = ResourceState::next(
                Some(&state),
                "s",
                "r",
                &format!("s@{i}"),
                Outcome::Failed,
                Some(Reason::not_found("gone")),
                t,
                None,
            );
        }
        assert_eq!(state.history.len(), HISTORY_LEN);
        assert_eq!(state.history.last().unwrap().session_id, "s@40");
        assert_eq!(
            state.history.first().unwrap().session_id,
            format!("s@{}", 41 - HISTORY_LEN)
        );
        assert_eq!(
            state.content_hash.as_deref(),
            Some("h1"),
            "a failure keeps the last good content"
        );
        assert_eq!(state.last_harvested_at, Some(t));
        assert_eq!(state.last_outcome, Outcome::Failed);
    }

    #[test]
    fn changed_fields_are_the_top_level_fields_whose_values_differ() {
        let before =
            serde_json::json!({"title": "A", "keywords": ["x"], "summary": "s", "gone": 1});
        let after =
            serde_json::json!({"title": "A", "keywords": ["x", "y"], "summary": "t", "new": 2});
        assert_eq!(
            RecordChange::changed_fields(&before, &after),
            ["gone", "keywords", "new", "summary"]
        );
        assert!(RecordChange::changed_fields(&after, &after).is_empty());
    }

    #[test]
    fn a_listing_that_finds_a_held_resource_again_lifts_the_hold() {
        let t = Utc::now();
        let mut state =
            ResourceState::next(None, "s", "r", "s@1", Outcome::Harvested, None, t, None);
        state.deletion_held_at = Some(t);
        assert!(state.deletion_held());
        let again = ResourceState::next(
            Some(&state),
            "s",
            "r",
            "s@2",
            Outcome::Unchanged,
            None,
            t,
            None,
        );
        assert!(!again.deletion_held());
    }
}
