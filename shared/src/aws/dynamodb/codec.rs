//! Items to and from the model's types: a session, a listing page, a marker, a resource's
//! state, a source. A stored item that does not read back is a permanent [`StoreError`]
//! naming the item: asking again reads the same item.

use crate::keys::{self, MARKER_PREFIX, SESSION_SK};
use crate::model::{
    session::rfc3339, Counters, ListingCheck, Outcome, Reason, ResourceState, Session,
    SessionStatus, Source, SourceOptions, Trigger,
};
use crate::ports::{Marker, PageState, SourceEntry, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub(super) type Item = HashMap<String, AttributeValue>;

/// An item's key, as `BatchGetItem` asks for it.
pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".into(), s(pk)), ("sk".into(), s(sk))])
}

/// A session's item.
pub(super) fn session_item(session: &Session) -> Item {
    let c = &session.counters;
    let mut item: Item = HashMap::from([
        ("pk".into(), s(keys::session_pk(&session.id))),
        ("sk".into(), s(SESSION_SK)),
        ("source_id".into(), s(&session.source_id)),
        ("scheduled_time".into(), s(rfc3339(session.scheduled_time))),
        ("started_at".into(), s(rfc3339(session.started_at))),
        ("status".into(), s(session.status.as_str())),
        ("total".into(), n(c.total)),
        ("remaining".into(), n(c.remaining)),
        ("harvested".into(), n(c.harvested)),
        ("unchanged".into(), n(c.unchanged)),
        ("failed".into(), n(c.failed)),
    ]);
    if let Some(e) = session.ended_at {
        item.insert("ended_at".into(), s(rfc3339(e)));
    }
    if let Some(since) = session.since {
        item.insert("since".into(), s(rfc3339(since)));
    }
    if let Some(base) = &session.base_session {
        item.insert("base_session".into(), s(base));
    }
    if let Some(trigger) = session.trigger {
        item.insert("trigger".into(), s(trigger.as_str()));
    }
    item
}

/// The session a session item holds, with what later updates added to it (counters, the
/// listing's findings, an abort).
pub(super) fn parse_session(item: &Item) -> Result<Session, StoreError> {
    let id = get_s(item, "pk")
        .and_then(|pk| keys::session_id_of_pk(&pk).map(str::to_string))
        .ok_or_else(|| StoreError::permanent("session item without pk"))?;
    let time = |k: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        get_s(item, k)
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| StoreError::permanent(format!("session {id} {k}: {e}")))
            })
            .transpose()
    };
    Ok(Session {
        source_id: get_s(item, "source_id").unwrap_or_default(),
        scheduled_time: time("scheduled_time")?
            .ok_or_else(|| StoreError::permanent("session without scheduled_time"))?,
        started_at: time("started_at")?
            .ok_or_else(|| StoreError::permanent("session without started_at"))?,
        ended_at: time("ended_at")?,
        status: get_s(item, "status")
            .and_then(|s| SessionStatus::parse(&s))
            .ok_or_else(|| StoreError::permanent(format!("session {id} has no valid status")))?,
        counters: Counters {
            total: get_n(item, "total"),
            remaining: get_n(item, "remaining"),
            harvested: get_n(item, "harvested"),
            unchanged: get_n(item, "unchanged"),
            failed: get_n(item, "failed"),
        },
        listing_error: get_s(item, "listing_error"),
        abort_requested: matches!(
            item.get("abort_requested"),
            Some(AttributeValue::Bool(true))
        ),
        since: time("since")?,
        base_session: get_s(item, "base_session"),
        trigger: get_s(item, "trigger").and_then(|t| Trigger::parse(&t)),
        listing: ListingCheck {
            listed: get_n(item, "listed"),
            expected_total: get_opt_n(item, "expected_total"),
            problems: get_list(item, "listing_problems"),
            deleted_upstream: get_n(item, "deleted_upstream"),
        },
        id,
    })
}

/// A committed listing page's item (not yet sent).
pub(super) fn page_item(session_id: &str, page: &PageState) -> Item {
    let mut item: Item = HashMap::from([
        ("pk".into(), s(keys::session_pk(session_id))),
        ("sk".into(), s(keys::page_sk(page.page))),
        ("ids_key".into(), s(&page.ids_key)),
        ("count".into(), n(page.count)),
        ("sent".into(), AttributeValue::Bool(false)),
    ]);
    if let Some(c) = &page.next_cursor {
        item.insert("next_cursor".into(), s(c));
    }
    if let Some(e) = &page.error {
        item.insert("error".into(), s(e));
    }
    if let Some(at) = page.listed_at {
        item.insert("listed_at".into(), s(rfc3339(at)));
    }
    item.insert("listed".into(), n(page.listed));
    if let Some(t) = page.expected_total {
        item.insert("expected_total".into(), n(t));
    }
    if !page.problems.is_empty() {
        item.insert("problems".into(), string_list(&page.problems));
    }
    if page.deleted_upstream > 0 {
        item.insert("deleted_upstream".into(), n(page.deleted_upstream));
    }
    item
}

/// The page a page item holds.
pub(super) fn page_state(page: u32, item: &Item) -> PageState {
    PageState {
        page,
        ids_key: get_s(item, "ids_key").unwrap_or_default(),
        count: get_n(item, "count"),
        next_cursor: get_s(item, "next_cursor"),
        sent: matches!(item.get("sent"), Some(AttributeValue::Bool(true))),
        error: get_s(item, "error"),
        listed: get_n(item, "listed"),
        expected_total: get_opt_n(item, "expected_total"),
        problems: get_list(item, "problems"),
        listed_at: get_s(item, "listed_at").and_then(|t| t.parse().ok()),
        deleted_upstream: get_n(item, "deleted_upstream"),
    }
}

/// A resource's pending marker in a session, removed by the table's TTL at `expires_at`
/// (epoch seconds).
pub(super) fn pending_marker_item(session_id: &str, resource_id: &str, expires_at: i64) -> Item {
    HashMap::from([
        ("pk".into(), s(keys::session_pk(session_id))),
        ("sk".into(), s(keys::marker_sk(resource_id))),
        ("status".into(), s("pending")),
        (
            "expires_at".into(),
            AttributeValue::N(expires_at.to_string()),
        ),
    ])
}

/// The resource id of a marker item's sort key.
pub(super) fn marker_resource_id(item: &Item) -> Option<String> {
    get_s(item, "sk").and_then(|sk| sk.strip_prefix(MARKER_PREFIX).map(str::to_string))
}

/// A marker: pending (no outcome), or settled with its outcome.
pub(super) fn marker(item: &Item) -> Marker {
    Marker {
        resource_id: marker_resource_id(item).unwrap_or_default(),
        outcome: get_s(item, "status").and_then(|s| Outcome::parse(&s)),
        reason: get_s(item, "reason").and_then(|r| serde_json::from_str::<Reason>(&r).ok()),
        restored: matches!(item.get("restored"), Some(AttributeValue::Bool(true))),
        change: get_s(item, "record_change").and_then(|c| serde_json::from_str(&c).ok()),
    }
}

/// The state a resource item holds (the inverse of [`resource_item`]).
pub(super) fn resource_state(item: &Item) -> Result<ResourceState, StoreError> {
    let key = || {
        format!(
            "{}/{}",
            get_s(item, "pk").unwrap_or_default(),
            get_s(item, "sk").unwrap_or_default()
        )
    };
    let json = match item.get("state") {
        Some(AttributeValue::B(deflated)) => inflate_state(deflated.as_ref())
            .map_err(|e| StoreError::permanent(format!("resource item {}: {e}", key())))?,
        // Written before states were deflated.
        Some(AttributeValue::S(json)) => json.clone().into_bytes(),
        _ => {
            return Err(StoreError::permanent(format!(
                "resource item {} without state",
                key()
            )))
        }
    };
    serde_json::from_slice(&json)
        .map_err(|e| StoreError::permanent(format!("resource item {}: {e}", key())))
}

/// A resource's item: the whole state as deflated JSON, its digest (what a conditional
/// replace compares), plus the attributes conditions look at. DynamoDB bills a write by the
/// KB of the item, twice in a transaction, and every count rewrites the state with its
/// history of up to [`crate::model::HISTORY_LEN`] sessions: deflated, the state is a few
/// hundred bytes where its JSON was kilobytes.
pub(super) fn resource_item(state: &ResourceState) -> Item {
    let json = serde_json::to_vec(state).expect("states serialize");
    let mut item: Item = HashMap::from([
        ("pk".into(), s(keys::resources_pk(&state.source_id))),
        ("sk".into(), s(&state.resource_id)),
        ("last_outcome".into(), s(state.last_outcome.as_str())),
        ("last_session".into(), s(&state.last_session)),
        (
            "state".into(),
            AttributeValue::B(deflate_state(&json).into()),
        ),
        ("state_digest".into(), state_digest(&json)),
    ]);
    if let Some(missing) = &state.missing_session {
        item.insert("missing_session".into(), s(missing));
    }
    item
}

/// What a conditional replace compares: the first 16 bytes of the SHA-256 of the state's JSON
/// (comparing the deflated bytes would also compare the compressor's version).
pub(super) fn state_digest(json: &[u8]) -> AttributeValue {
    use sha2::Digest;
    AttributeValue::B(sha2::Sha256::digest(json)[..16].to_vec().into())
}

fn deflate_state(json: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(json).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The JSON a deflated state holds, at most [`MAX_STATE_JSON`] bytes of it: DynamoDB caps an
/// item at 400 KB, and a state's history is bounded, so anything larger is not a state.
fn inflate_state(deflated: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_STATE_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("state does not inflate: {e}"))?;
    if json.len() as u64 > MAX_STATE_JSON {
        return Err(format!("state inflates past {MAX_STATE_JSON} bytes"));
    }
    Ok(json)
}

const MAX_STATE_JSON: u64 = 4 << 20;

/// A source's item: its configuration (`expressions::register_source`) and its run state
/// (`expressions::claim_source`, `expressions::release`).
pub(super) fn source_entry(item: &Item) -> Result<SourceEntry, StoreError> {
    let id = get_s(item, "sk").unwrap_or_default();
    let bad = |field: &str| StoreError::permanent(format!("source {id}: bad or missing {field}"));
    let source = Source {
        protocol: get_s(item, "protocol")
            .and_then(|p| crate::model::Protocol::parse(&p))
            .ok_or_else(|| bad("protocol"))?,
        base_url: get_s(item, "base_url").ok_or_else(|| bad("base_url"))?,
        schedule: get_s(item, "schedule").ok_or_else(|| bad("schedule"))?,
        enabled: matches!(item.get("enabled"), Some(AttributeValue::Bool(true))),
        internal: matches!(item.get("internal"), Some(AttributeValue::Bool(true))),
        options: match get_s(item, "options") {
            Some(o) => serde_json::from_str::<SourceOptions>(&o).map_err(|_| bad("options"))?,
            None => SourceOptions::default(),
        },
        id: id.clone(),
    };
    Ok(SourceEntry {
        source,
        running_session: get_s(item, "running_session"),
        last_session: get_s(item, "last_session"),
        last_status: get_s(item, "last_status").and_then(|s| SessionStatus::parse(&s)),
        incremental_base: get_s(item, "incremental_base"),
        last_full_listing_at: get_s(item, "last_full_listing_at")
            .map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
            .transpose()
            .map_err(|_| bad("last_full_listing_at"))?,
    })
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn string_list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(s).collect())
}

pub(super) fn get_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

/// A number attribute; 0 if absent (counters start at nothing).
pub(super) fn get_n(item: &Item, key: &str) -> u64 {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(super) fn get_opt_n(item: &Item, key: &str) -> Option<u64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn get_list(item: &Item, key: &str) -> Vec<String> {
    item.get(key)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::expressions::{self, Expression};
    use super::*;
    use crate::model::ledger;
    use crate::model::{Protocol, Reason, StaleAction};
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::seconds(seconds)
    }

    /// What DynamoDB does with the `SET a = :x, …` and `REMOVE a` clauses of an update: enough
    /// to read back what the store's updates wrote.
    fn apply(item: &mut Item, expression: &Expression) {
        let (sets, removes) = match expression.update.split_once(" REMOVE ") {
            Some((sets, removes)) => (sets, Some(removes)),
            None => (expression.update.as_str(), None),
        };
        let sets = sets.strip_prefix("SET ").expect("a SET update");
        for set in sets.split(", ") {
            let (name, placeholder) = set.split_once(" = ").expect("name = :value");
            item.insert(name.to_string(), expression.values[placeholder].clone());
        }
        for name in removes.into_iter().flat_map(|r| r.split(", ")) {
            item.remove(name);
        }
    }

    fn session() -> Session {
        let mut session = Session::start("ocean", at(0), at(2));
        session.status = SessionStatus::PartiallyFailed;
        session.ended_at = Some(at(90));
        session.since = Some(at(-86_400));
        session.base_session = Some("ocean@base".into());
        session.trigger = Some(Trigger::Schedule);
        session.counters = Counters {
            total: 9,
            remaining: 0,
            harvested: 5,
            unchanged: 3,
            failed: 1,
        };
        session
    }

    #[test]
    fn a_session_reads_back_as_written() {
        let session = session();
        let item = session_item(&session);
        assert_eq!(get_s(&item, "pk"), Some(format!("SESSION#{}", session.id)));
        assert_eq!(get_s(&item, "sk").as_deref(), Some("SESSION"));
        assert_eq!(get_s(&item, "status").as_deref(), Some("partially_failed"));
        assert_eq!(get_n(&item, "remaining"), 0);
        let read = parse_session(&item).unwrap();
        assert_eq!(read, session);
        assert_eq!(read.counters.harvested, 5);
        assert_eq!(read.base_session.as_deref(), Some("ocean@base"));
    }

    #[test]
    fn a_session_reads_what_updates_added() {
        let mut item = session_item(&Session::start("ocean", at(0), at(2)));
        item.insert("abort_requested".into(), AttributeValue::Bool(true));
        item.insert("listing_error".into(), s("page 2: timeout"));
        item.insert("listed".into(), n(40));
        item.insert("expected_total".into(), n(41));
        item.insert("listing_problems".into(), string_list(&["short".into()]));
        item.insert("deleted_upstream".into(), n(2));
        let read = parse_session(&item).unwrap();
        assert!(read.abort_requested);
        assert_eq!(read.listing_error.as_deref(), Some("page 2: timeout"));
        assert_eq!(
            read.listing,
            ListingCheck {
                listed: 40,
                expected_total: Some(41),
                problems: vec!["short".into()],
                deleted_upstream: 2,
            }
        );
    }

    #[test]
    fn a_garbled_session_is_a_permanent_error_naming_it() {
        let session = session();
        let mut item = session_item(&session);
        item.insert("status".into(), s("sleeping"));
        let e = parse_session(&item).unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert!(e.message.contains(&session.id), "{}", e.message);

        let mut item = session_item(&session);
        item.insert("started_at".into(), s("yesterday"));
        let e = parse_session(&item).unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert!(e.message.contains(&session.id), "{}", e.message);
        assert!(e.message.contains("started_at"), "{}", e.message);

        let mut item = session_item(&session);
        item.remove("pk");
        assert!(parse_session(&item).unwrap_err().is_permanent());
    }

    #[test]
    fn a_resource_state_reads_back_as_written() {
        let mut state = ResourceState::next(
            None,
            "ocean",
            "oai:x/1",
            "ocean@1",
            Outcome::Failed,
            Some(Reason::http(503, "busy")),
            at(5),
            None,
        );
        state.missing_session = Some("ocean@2".into());
        state.missing_listings = 2;
        let item = resource_item(&state);
        assert_eq!(get_s(&item, "pk").as_deref(), Some("RESOURCES#ocean"));
        assert_eq!(get_s(&item, "sk").as_deref(), Some("oai:x/1"));
        assert_eq!(get_s(&item, "last_outcome").as_deref(), Some("failed"));
        assert_eq!(get_s(&item, "missing_session").as_deref(), Some("ocean@2"));
        let read = resource_state(&item).unwrap();
        assert_eq!(read, state);
        assert_eq!(read.last_reason.unwrap().http_status, Some(503));
    }

    #[test]
    fn a_garbled_resource_is_a_permanent_error_naming_it() {
        let state = ResourceState::next(
            None,
            "ocean",
            "r1",
            "ocean@1",
            Outcome::Unchanged,
            None,
            at(5),
            None,
        );
        let mut item = resource_item(&state);
        item.remove("state");
        let e = resource_state(&item).unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert!(e.message.contains("RESOURCES#ocean/r1"), "{}", e.message);

        item.insert("state".into(), s("{\"source_id\":"));
        let e = resource_state(&item).unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert!(e.message.contains("RESOURCES#ocean/r1"), "{}", e.message);

        // Bytes that are not deflate, and a deflate bomb: errors, not memory.
        item.insert("state".into(), AttributeValue::B(vec![0xff; 64].into()));
        let e = resource_state(&item).unwrap_err();
        assert!(e.message.contains("does not inflate"), "{}", e.message);
        let bomb = deflate_state(&vec![b' '; 5 << 20]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        item.insert("state".into(), AttributeValue::B(bomb.into()));
        let e = resource_state(&item).unwrap_err();
        assert!(e.message.contains("inflates past"), "{}", e.message);
    }

    /// The state of a resource harvested in every one of its last [`HISTORY_LEN`] sessions,
    /// each one changing it: the largest history a resource keeps.
    fn long_lived_state() -> ResourceState {
        use crate::model::{RecordChange, HISTORY_LEN};
        let mut state = None;
        for n in 0..HISTORY_LEN as i64 + 5 {
            let mut next = ResourceState::next(
                state.as_ref(),
                "ocean-observatories",
                "sea_water_temperature_2026_station_42",
                &format!("ocean-observatories@2026120{}T0{}1500Z", n % 10, n % 7),
                Outcome::Harvested,
                None,
                at(n * 86_400),
                Some((
                    format!("{n:064x}"),
                    keys::record_key(
                        "ocean-observatories",
                        "sea_water_temperature_2026_station_42",
                    ),
                    Some(crate::model::RawLocation {
                        key: format!("raw/ocean-observatories/batch-{n:08x}.bin"),
                        range: Some(crate::model::ByteRange {
                            offset: 9_000 * n as u64,
                            length: 8_934,
                        }),
                    }),
                )),
            );
            next.title = Some("Sea water temperature, station 42 (hourly, QC'd)".into());
            next.log_key = Some(format!(
                "logs/ocean-observatories/session-{n}/batch-{n:08x}.jsonl"
            ));
            next.history.last_mut().unwrap().change = Some(RecordChange::Changed {
                fields: Some(vec!["title".into(), "time_coverage_end".into()]),
            });
            state = Some(next);
        }
        state.unwrap()
    }

    /// DynamoDB's size of an item: names and values, in bytes.
    fn item_bytes(item: &Item) -> usize {
        item.iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        AttributeValue::S(s) => s.len(),
                        AttributeValue::B(b) => b.as_ref().len(),
                        AttributeValue::N(n) => n.len(),
                        _ => 1,
                    }
            })
            .sum()
    }

    #[test]
    fn a_full_history_is_stored_deflated_in_one_write_unit_and_reads_back() {
        let state = long_lived_state();
        assert_eq!(state.history.len(), crate::model::HISTORY_LEN);
        let json = serde_json::to_vec(&state).unwrap();
        let item = resource_item(&state);
        // A write unit is 1 KB of item; the JSON alone would take several.
        assert!(json.len() > 3 * 1024, "{}", json.len());
        assert!(item_bytes(&item) <= 1024, "{} bytes", item_bytes(&item));
        assert_eq!(resource_state(&item).unwrap(), state);
    }

    #[test]
    fn an_item_written_before_states_were_deflated_reads_back() {
        let state = long_lived_state();
        let mut item = resource_item(&state);
        item.remove("state_digest");
        item.insert("state".into(), s(serde_json::to_string(&state).unwrap()));
        assert_eq!(resource_state(&item).unwrap(), state);
    }

    fn registered(source: &Source) -> Item {
        let mut item = key(keys::SOURCES_PK.into(), source.id.clone());
        apply(&mut item, &expressions::register_source(source, at(0)));
        item
    }

    fn ocean() -> Source {
        Source {
            id: "ocean".into(),
            protocol: Protocol::OaiPmh,
            base_url: "https://ocean.example/oai".into(),
            schedule: "rate(1 day)".into(),
            enabled: true,
            internal: true,
            options: SourceOptions {
                include: vec!["set:a".into()],
                stale_after_listings: 4,
                on_stale: StaleAction::default(),
                incremental: true,
                ..SourceOptions::default()
            },
        }
    }

    #[test]
    fn a_source_entry_reads_back_what_registering_and_releasing_wrote() {
        let source = ocean();
        let mut item = registered(&source);
        let entry = source_entry(&item).unwrap();
        assert_eq!(entry, SourceEntry::new(source.clone()));
        assert_eq!(entry.source.options.include, ["set:a"]);

        let mut session = Session::start("ocean", at(0), at(2));
        apply(&mut item, &expressions::claim_source(&session.id));
        assert_eq!(
            source_entry(&item).unwrap().running_session.as_deref(),
            Some(session.id.as_str())
        );

        session.status = SessionStatus::Succeeded;
        let release = ledger::release(&session);
        apply(&mut item, &expressions::release(&release));
        let read = source_entry(&item).unwrap();
        let mut expected = SourceEntry::new(source);
        release.apply(&mut expected);
        assert_eq!(read, expected);
        assert_eq!(read.running_session, None);
        assert_eq!(read.incremental_base.as_deref(), Some(session.id.as_str()));
        assert_eq!(read.last_full_listing_at, Some(at(2)));
    }

    #[test]
    fn a_garbled_source_is_a_permanent_error_naming_it() {
        let mut item = registered(&ocean());
        item.insert("protocol".into(), s("gopher"));
        let e = source_entry(&item).unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert_eq!(e.message, "source ocean: bad or missing protocol");

        let mut item = registered(&ocean());
        item.remove("base_url");
        let e = source_entry(&item).unwrap_err();
        assert!(e.is_permanent(), "{e:?}");
        assert_eq!(e.message, "source ocean: bad or missing base_url");

        let mut item = registered(&ocean());
        item.insert("options".into(), s("{\"on_stale\": \"shred\"}"));
        let e = source_entry(&item).unwrap_err();
        assert_eq!(e.message, "source ocean: bad or missing options");
    }

    #[test]
    fn a_page_reads_back_as_committed() {
        let page = PageState {
            page: 12,
            ids_key: "sessions/ocean/1/pages/00000012.json".into(),
            count: 100,
            next_cursor: Some("token-13".into()),
            sent: false,
            error: Some("slow".into()),
            listed: 101,
            expected_total: Some(5000),
            problems: vec!["duplicate id".into()],
            listed_at: Some(at(7)),
            deleted_upstream: 3,
        };
        let item = page_item("ocean@1", &page);
        assert_eq!(get_s(&item, "pk").as_deref(), Some("SESSION#ocean@1"));
        assert_eq!(get_s(&item, "sk").as_deref(), Some("PAGE#00000012"));
        assert_eq!(page_state(12, &item), page);
    }

    #[test]
    fn markers_read_back_pending_then_settled() {
        let mut item = pending_marker_item("ocean@1", "oai:x/1", 1_800_000_000);
        assert_eq!(get_s(&item, "sk").as_deref(), Some("RESOURCE#oai:x/1"));
        assert_eq!(item["expires_at"], AttributeValue::N("1800000000".into()));
        assert_eq!(
            marker(&item),
            Marker {
                resource_id: "oai:x/1".into(),
                outcome: None,
                reason: None,
                restored: false,
                change: None,
            }
        );
        let reason = Reason::http(404, "gone");
        item.insert("status".into(), s("failed"));
        item.insert("reason".into(), s(serde_json::to_string(&reason).unwrap()));
        assert_eq!(
            marker(&item),
            Marker {
                resource_id: "oai:x/1".into(),
                outcome: Some(Outcome::Failed),
                reason: Some(reason),
                restored: false,
                change: None,
            }
        );
        item.insert("status".into(), s("harvested"));
        item.remove("reason");
        item.insert("restored".into(), AttributeValue::Bool(true));
        assert!(marker(&item).restored);
        item.insert(
            "record_change".into(),
            s(r#"{"kind":"changed","fields":["title"]}"#),
        );
        assert_eq!(
            marker(&item).change,
            Some(crate::model::RecordChange::Changed {
                fields: Some(vec!["title".into()])
            })
        );
    }
}
