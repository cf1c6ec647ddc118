//! Where things live: DynamoDB keys of the single state table and S3 object keys.
//!
//! Table layout (one table, `pk`/`sk`):
//! - source:   `SOURCES` / `{source_id}`
//! - session:  `SESSION#{session_id}` / `SESSION` (the only items the finalizer's stream filter passes)
//! - page:     `SESSION#{session_id}` / `PAGE#{n:08}`
//! - marker:   `SESSION#{session_id}` / `RESOURCE#{resource_id}` (pending until counted, then the outcome)
//! - resource: `RESOURCES#{source_id}` / `{resource_id}`

pub const SOURCES_PK: &str = "SOURCES";
pub const SESSION_SK: &str = "SESSION";
pub const MARKER_PREFIX: &str = "RESOURCE#";
pub const PAGE_PREFIX: &str = "PAGE#";

pub fn session_pk(session_id: &str) -> String {
    format!("SESSION#{session_id}")
}

pub fn page_sk(page: u32) -> String {
    format!("{PAGE_PREFIX}{page:08}")
}

pub fn marker_sk(resource_id: &str) -> String {
    format!("{MARKER_PREFIX}{resource_id}")
}

pub fn resources_pk(source_id: &str) -> String {
    format!("RESOURCES#{source_id}")
}

/// Remote ids can hold `/`, `:` or spaces (OAI identifiers, CSW UUID URNs): escape everything
/// outside a safe set so each id maps to exactly one key segment.
pub fn key_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn record_key(source_id: &str, resource_id: &str) -> String {
    format!("records/{source_id}/{}.json", key_segment(resource_id))
}

pub fn raw_key(source_id: &str, resource_id: &str, extension: &str) -> String {
    format!("raw/{source_id}/{}.{extension}", key_segment(resource_id))
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

pub fn summary_key(source_id: &str, session_stamp: &str) -> String {
    format!("sessions/{source_id}/{session_stamp}/summary.json")
}

/// The stale check's report of a session (`documents::StaleReport`).
pub fn stale_report_key(source_id: &str, session_stamp: &str) -> String {
    format!("sessions/{source_id}/{session_stamp}/stale.json")
}

/// A session's failed resource ids (`documents::FailedIds`).
pub fn failed_ids_key(source_id: &str, session_stamp: &str) -> String {
    format!("sessions/{source_id}/{session_stamp}/failed.json")
}

pub fn page_ids_key(source_id: &str, session_stamp: &str, page: u32) -> String {
    format!("sessions/{source_id}/{session_stamp}/pages/{page:08}.json")
}

/// A resource's document as the listing delivered it (data.json), for the harvester.
pub fn staged_key(source_id: &str, session_stamp: &str, resource_id: &str) -> String {
    format!(
        "sessions/{source_id}/{session_stamp}/staged/{}.json",
        key_segment(resource_id)
    )
}

/// Where a stale resource's object goes when its source moves deleted resources aside:
/// `records/s/x.json` → `deleted/records/s/x.json`.
pub fn deleted_key(key: &str) -> String {
    format!("deleted/{key}")
}

/// Where an unreadable work message is kept so nothing is lost.
pub fn rejected_key(day: &str, message_id: &str) -> String {
    format!("rejected/{day}/{}.json", key_segment(message_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_characters_are_escaped_reversibly_distinct() {
        assert_eq!(key_segment("ds_0001"), "ds_0001");
        assert_eq!(key_segment("oai:a/b c"), "oai%3Aa%2Fb%20c");
        assert_ne!(key_segment("a/b"), key_segment("a%2Fb"));
        assert_eq!(record_key("s", "urn:x"), "records/s/urn%3Ax.json");
    }

    #[test]
    fn pages_sort_in_order() {
        assert!(page_sk(9) < page_sk(10));
        assert_eq!(page_sk(1), "PAGE#00000001");
    }
}
