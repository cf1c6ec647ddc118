//! Where things live: every key of the state table and every object key of the bucket. The
//! code spells keys only here (the finalizer's stream filter in `template.yaml` repeats the
//! session item's `SESSION`), so this is the whole layout.
//!
//! Table items (one table, `pk` / `sk`):
//! - source:    `SOURCES` / `{source_id}`: its configuration and its run state
//! - session:   `SESSION#{session_id}` / `SESSION` (the only items the finalizer's stream filter
//!   in `template.yaml` passes)
//! - page:      `SESSION#{session_id}` / `PAGE#{n:08}` (a committed listing page)
//! - marker:    `SESSION#{session_id}` / `RESOURCE#{resource_id}` (pending until counted, then
//!   the outcome)
//! - resource:  `RESOURCES#{source_id}` / `{resource_id}` (its state)
//! - gate slot: `GATE#{source_id}` / `SLOT#{n:04}` (a lease on one in-flight request)
//! - gate pace: `GATE#{source_id}` / `PACE` (when the source's next request may be sent)
//!
//! Bucket objects (`{id}` is a [`key_segment`], `{stamp}` a session id's stamp):
//! - `records/{source_id}/{id}.json`: a resource's record
//! - `raw/{source_id}/{id}.{ext}`: the response it was made from (`options.raw: resource`)
//! - `raw/{source_id}/batches/{stamp}/{first_id}-{random:08x}.{ext}`: one batch's responses
//!   one after another (`options.raw: batch`); a state names its offset and length
//! - `logs/{source_id}/{stamp}/{first_id}-{random:08x}.ndjson`: one batch's log lines
//! - `sessions/{source_id}/{stamp}/`: one session's documents (a source's sessions are the
//!   folders under `sessions/{source_id}/`):
//!   - `summary.json`, `stale.json`, `failed.json`, `alerts.json` (the embedded run's alerts)
//!   - `pages/{n:08}-{attempt:016x}.json`: a listing page's ids, one object per listing attempt
//!     ([`page_attempt_ids_key`]; [`page_ids_key`] names a page the watchdog gave up on)
//!   - `staged/{id}.json`: a resource's document as the listing delivered it
//! - `deleted/{key}`: a stale resource's object, moved aside
//! - `alerts/{source_id}/no_success.json`: when the "no success" alert last fired
//! - `rejected/{day}/{message_id}.json`: an unreadable work message

pub const SOURCES_PK: &str = "SOURCES";
pub const SESSION_SK: &str = "SESSION";
pub const SESSION_PREFIX: &str = "SESSION#";
pub const MARKER_PREFIX: &str = "RESOURCE#";
pub const PAGE_PREFIX: &str = "PAGE#";
pub const RESOURCES_PREFIX: &str = "RESOURCES#";
pub const GATE_PREFIX: &str = "GATE#";
pub const SLOT_PREFIX: &str = "SLOT#";
pub const PACE_SK: &str = "PACE";

pub fn session_pk(session_id: &str) -> String {
    format!("{SESSION_PREFIX}{session_id}")
}

/// The session id of a session partition's key (the inverse of [`session_pk`]).
pub fn session_id_of_pk(pk: &str) -> Option<&str> {
    pk.strip_prefix(SESSION_PREFIX)
}

pub fn page_sk(page: u32) -> String {
    format!("{PAGE_PREFIX}{page:08}")
}

pub fn marker_sk(resource_id: &str) -> String {
    format!("{MARKER_PREFIX}{resource_id}")
}

pub fn resources_pk(source_id: &str) -> String {
    format!("{RESOURCES_PREFIX}{source_id}")
}

/// The partition of a source's request gate: its slots and its pace.
pub fn gate_pk(source_id: &str) -> String {
    format!("{GATE_PREFIX}{source_id}")
}

pub fn slot_sk(slot: u32) -> String {
    format!("{SLOT_PREFIX}{slot:04}")
}

/// The longest resource id Trawl keeps (bytes): a DynamoDB sort key holds at most 1,024, and
/// the marker's carries a prefix. A longer id is a listing problem (`pipeline::listing`).
pub const MAX_RESOURCE_ID_BYTES: usize = 1000;

/// The longest object key segment (bytes): a file name holds at most 255, and a segment is
/// followed by an extension or an attempt's random part.
const MAX_SEGMENT_BYTES: usize = 160;

/// Remote ids can hold `/`, `:` or spaces (OAI identifiers, CSW UUID URNs): escape everything
/// outside a safe set so each id maps to exactly one key segment. An id whose escaped form is
/// longer than a file name allows keeps a readable prefix and gets a hash of the whole id:
/// `~` is always escaped, so a shortened segment never equals another id's full one.
pub fn key_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() <= MAX_SEGMENT_BYTES {
        return out;
    }
    use sha2::Digest;
    let hash = hex::encode(&sha2::Sha256::digest(id.as_bytes())[..16]);
    // Cut before an escape that would be split.
    let mut cut = 96;
    while out.as_bytes()[cut - 1] == b'%' || out.as_bytes()[cut - 2] == b'%' {
        cut -= 1;
    }
    format!("{}~{hash}", &out[..cut])
}

pub fn record_key(source_id: &str, resource_id: &str) -> String {
    format!(
        "{}{}.json",
        records_prefix(source_id),
        key_segment(resource_id)
    )
}

/// The folder of a source's records.
pub fn records_prefix(source_id: &str) -> String {
    format!("records/{source_id}/")
}

pub fn raw_key(source_id: &str, resource_id: &str, extension: &str) -> String {
    format!("raw/{source_id}/{}.{extension}", key_segment(resource_id))
}

/// The raw responses of one batch's resources of one session, one after another
/// (`options.raw: batch`, see `pipeline::tally`). Named like [`batch_log_key`], and for the
/// same reason. Under `raw/{source_id}/`, so purging a source removes them; in a folder per
/// session, so the sweep of objects no state names any more reads only closed sessions'.
pub fn raw_batch_key(
    source_id: &str,
    session_stamp: &str,
    first_resource_id: &str,
    extension: &str,
) -> String {
    format!(
        "{}{session_stamp}/{}-{:08x}.{extension}",
        raw_batches_prefix(source_id),
        key_segment(first_resource_id),
        crate::random::u32()
    )
}

/// The folder whose subfolders hold a source's batch raw objects, one per session stamp.
pub fn raw_batches_prefix(source_id: &str) -> String {
    format!("raw/{source_id}/batches/")
}

/// Whether `key` is a batch's raw object (shared by the resources of one batch).
pub fn is_raw_batch_key(key: &str) -> bool {
    key.strip_prefix("raw/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, rest)| rest.starts_with("batches/"))
}

/// The logs of one batch's resources of one session, a JSON line each (see
/// `pipeline::tally`). Named after the batch's first resource, plus a random part: a retried
/// batch must not overwrite the log a counted resource's state already names.
pub fn batch_log_key(source_id: &str, session_stamp: &str, first_resource_id: &str) -> String {
    format!(
        "logs/{source_id}/{session_stamp}/{}-{:08x}.ndjson",
        key_segment(first_resource_id),
        crate::random::u32()
    )
}

/// Every folder of the bucket that holds a source's objects: its records, raw responses,
/// logs, sessions and what deletions moved aside (what purging a source removes).
pub fn source_prefixes(source_id: &str) -> Vec<String> {
    let live = [
        records_prefix(source_id),
        format!("raw/{source_id}/"),
        format!("logs/{source_id}/"),
        sessions_prefix(source_id),
    ];
    let moved = [deleted_key(&live[0]), deleted_key(&live[1])];
    live.into_iter().chain(moved).collect()
}

/// The folder whose subfolders are a source's sessions, one per stamp.
pub fn sessions_prefix(source_id: &str) -> String {
    format!("sessions/{source_id}/")
}

/// The folder of one session's documents.
fn session_folder(source_id: &str, session_stamp: &str) -> String {
    format!("{}{session_stamp}/", sessions_prefix(source_id))
}

pub fn summary_key(source_id: &str, session_stamp: &str) -> String {
    format!("{}summary.json", session_folder(source_id, session_stamp))
}

/// The stale check's report of a session (`documents::StaleReport`).
pub fn stale_report_key(source_id: &str, session_stamp: &str) -> String {
    format!("{}stale.json", session_folder(source_id, session_stamp))
}

/// The alerts a session raised, as the embedded run writes them beside its summary.
pub fn session_alerts_key(source_id: &str, session_stamp: &str) -> String {
    format!("{}alerts.json", session_folder(source_id, session_stamp))
}

/// When the "no success" alert last fired for a source (its once-a-day memory).
pub fn no_success_alert_key(source_id: &str) -> String {
    format!("alerts/{source_id}/no_success.json")
}

/// A session's failed resource ids (`documents::FailedIds`).
pub fn failed_ids_key(source_id: &str, session_stamp: &str) -> String {
    format!("{}failed.json", session_folder(source_id, session_stamp))
}

/// The resources a selection session was asked to harvest (`documents::SelectionDocument`).
pub fn selection_key(source_id: &str, session_stamp: &str) -> String {
    format!("{}selection.json", session_folder(source_id, session_stamp))
}

pub fn page_ids_key(source_id: &str, session_stamp: &str, page: u32) -> String {
    format!(
        "{}pages/{page:08}.json",
        session_folder(source_id, session_stamp)
    )
}

/// One listing attempt's copy of a page's ids: two racing attempts must not overwrite each
/// other's, because the committed page points at the ids that were counted.
pub fn page_attempt_ids_key(
    source_id: &str,
    session_stamp: &str,
    page: u32,
    attempt: u64,
) -> String {
    format!(
        "{}pages/{page:08}-{attempt:016x}.json",
        session_folder(source_id, session_stamp)
    )
}

/// A resource's document as the listing delivered it (data.json), for the harvester.
pub fn staged_key(source_id: &str, session_stamp: &str, resource_id: &str) -> String {
    format!(
        "{}staged/{}.json",
        session_folder(source_id, session_stamp),
        key_segment(resource_id)
    )
}

/// Where a stale resource's object goes when its source moves deleted resources aside:
/// `records/s/x.json` → `deleted/records/s/x.json`.
pub fn deleted_key(key: &str) -> String {
    format!("{DELETED_PREFIX}{key}")
}

/// Where deleted records and raw responses are moved (`options.on_stale: move`).
const DELETED_PREFIX: &str = "deleted/";

/// Where an object moved aside by a deletion came from: `deleted/records/s/x.json` →
/// `records/s/x.json`; `None` for a key not under `deleted/`.
pub fn live_key(key: &str) -> Option<String> {
    key.strip_prefix(DELETED_PREFIX).map(str::to_string)
}

/// Whether `key` is a record or raw response moved aside by a deletion.
pub fn is_deleted_key(key: &str) -> bool {
    key.starts_with(DELETED_PREFIX)
}

/// Where an unreadable work message is kept so nothing is lost.
pub fn rejected_key(day: &str, message_id: &str) -> String {
    format!("rejected/{day}/{}.json", key_segment(message_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_get_a_bounded_stable_segment_distinct_per_id() {
        for id in [
            "x".repeat(300),
            "%".repeat(90),
            format!("oai:{}", "é/".repeat(200)),
            "a".repeat(MAX_RESOURCE_ID_BYTES),
        ] {
            let seg = key_segment(&id);
            assert!(seg.len() <= MAX_SEGMENT_BYTES, "{} bytes: {seg}", seg.len());
            assert_eq!(seg, key_segment(&id), "stable");
            assert!(seg.contains('~'), "{seg}");
            // A readable prefix, never a split escape.
            let prefix = seg.split('~').next().unwrap();
            assert!(
                !prefix.ends_with('%') && prefix.rfind('%').is_none_or(|i| i + 3 <= prefix.len()),
                "{prefix}"
            );
            let record = record_key("src", &id);
            let name = record.rsplit('/').next().unwrap();
            assert!(name.len() <= 255, "{record}");
        }
        // Ids that share the readable prefix differ in the hash.
        let a = key_segment(&format!("{}a", "x".repeat(300)));
        let b = key_segment(&format!("{}b", "x".repeat(300)));
        assert_ne!(a, b);
        // Short ids are unchanged, and no short id can spell a shortened segment.
        assert_eq!(
            key_segment(&"y".repeat(MAX_SEGMENT_BYTES)),
            "y".repeat(MAX_SEGMENT_BYTES)
        );
        assert!(key_segment(&a).contains("%7E"));
    }

    #[test]
    fn unsafe_characters_are_escaped_reversibly_distinct() {
        assert_eq!(key_segment("ds_0001"), "ds_0001");
        assert_eq!(key_segment("oai:a/b c"), "oai%3Aa%2Fb%20c");
        assert_ne!(key_segment("a/b"), key_segment("a%2Fb"));
        assert_eq!(record_key("s", "urn:x"), "records/s/urn%3Ax.json");
    }

    #[test]
    fn table_keys_are_spelled_as_documented() {
        assert_eq!(session_pk("s@1"), "SESSION#s@1");
        assert_eq!(session_id_of_pk("SESSION#s@1"), Some("s@1"));
        assert_eq!(session_id_of_pk("RESOURCES#s"), None);
        assert_eq!(marker_sk("oai:x"), "RESOURCE#oai:x");
        assert_eq!(resources_pk("s"), "RESOURCES#s");
        assert_eq!(gate_pk("s"), "GATE#s");
        assert_eq!(slot_sk(7), "SLOT#0007");
        assert_eq!(PACE_SK, "PACE");
    }

    #[test]
    fn object_keys_are_spelled_as_documented() {
        assert_eq!(records_prefix("s"), "records/s/");
        assert_eq!(raw_key("s", "a/b", "xml"), "raw/s/a%2Fb.xml");
        assert_eq!(sessions_prefix("s"), "sessions/s/");
        assert_eq!(summary_key("s", "1"), "sessions/s/1/summary.json");
        assert_eq!(stale_report_key("s", "1"), "sessions/s/1/stale.json");
        assert_eq!(failed_ids_key("s", "1"), "sessions/s/1/failed.json");
        assert_eq!(
            page_ids_key("s", "1", 2),
            "sessions/s/1/pages/00000002.json"
        );
        assert_eq!(
            staged_key("s", "1", "a b"),
            "sessions/s/1/staged/a%20b.json"
        );
        assert_eq!(deleted_key("records/s/x.json"), "deleted/records/s/x.json");
        assert_eq!(
            live_key(&deleted_key("raw/s/x.xml")).as_deref(),
            Some("raw/s/x.xml")
        );
        assert_eq!(live_key("records/s/x.json"), None);
        assert_eq!(
            rejected_key("2026-01-02", "m/1"),
            "rejected/2026-01-02/m%2F1.json"
        );
        let log = batch_log_key("s", "1", "a:b");
        assert!(
            log.starts_with("logs/s/1/a%3Ab-") && log.ends_with(".ndjson"),
            "{log}"
        );
    }

    #[test]
    fn pages_sort_in_order() {
        assert!(page_sk(9) < page_sk(10));
        assert_eq!(page_sk(1), "PAGE#00000001");
    }
}
