//! The update and condition expressions each write of the store is made of, one function per
//! change (most of them a `model::ledger` change). The condition is what makes a change
//! happen once: a redelivered message finds it failed. Plain values, so each can be checked
//! without a table; the port impls feed them to the SDK's builders ([`Feed`]).

use super::codec::{n, s, string_list};
use crate::model::ledger::{Closure, PageCommit, Release, Tally};
use crate::model::{session::rfc3339, ResourceState, Source};
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::builders::{PutBuilder, UpdateBuilder};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// One write's expressions and the placeholders they use.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Expression {
    /// The update expression; empty for a put's or a delete's condition alone.
    pub update: String,
    pub condition: Option<String>,
    /// `#name` placeholders.
    pub names: BTreeMap<String, String>,
    /// `:value` placeholders.
    pub values: BTreeMap<String, AttributeValue>,
}

impl Expression {
    fn update(update: impl Into<String>) -> Expression {
        Expression {
            update: update.into(),
            ..Expression::default()
        }
    }

    /// A put's or a delete's condition.
    fn only_if(condition: &str) -> Expression {
        Expression::default().condition(condition)
    }

    fn condition(mut self, condition: &str) -> Expression {
        self.condition = Some(condition.to_string());
        self
    }

    fn name(mut self, placeholder: impl Into<String>, name: &str) -> Expression {
        self.names.insert(placeholder.into(), name.to_string());
        self
    }

    fn value(mut self, placeholder: impl Into<String>, value: AttributeValue) -> Expression {
        self.values.insert(placeholder.into(), value);
        self
    }
}

/// Sets an [`Expression`] on an SDK builder. An empty map is left unset: DynamoDB refuses
/// empty `ExpressionAttributeNames` or `ExpressionAttributeValues`.
pub(super) trait Feed {
    fn feed(self, expression: Expression) -> Self;
}

fn unless_empty<V>(map: BTreeMap<String, V>) -> Option<HashMap<String, V>> {
    (!map.is_empty()).then(|| map.into_iter().collect())
}

macro_rules! feed {
    (updates: $($update:ty),*; conditions: $($write:ty),*) => {
        $(impl Feed for $update {
            fn feed(self, e: Expression) -> Self {
                self.update_expression(e.update)
                    .set_condition_expression(e.condition)
                    .set_expression_attribute_names(unless_empty(e.names))
                    .set_expression_attribute_values(unless_empty(e.values))
            }
        })*
        $(impl Feed for $write {
            fn feed(self, e: Expression) -> Self {
                debug_assert!(e.update.is_empty(), "a put or a delete has no update expression");
                self.set_condition_expression(e.condition)
                    .set_expression_attribute_names(unless_empty(e.names))
                    .set_expression_attribute_values(unless_empty(e.values))
            }
        })*
    };
}

feed!(
    updates: UpdateBuilder, UpdateItemFluentBuilder;
    conditions: PutBuilder, PutItemFluentBuilder, DeleteItemFluentBuilder
);

/// A put that creates its item or nothing: a session, a page, a marker are each written once.
pub(super) fn create_only() -> Expression {
    Expression::only_if("attribute_not_exists(pk)")
}

/// Registers or edits a source. An update, not a put: the run state on the same item must
/// survive config edits.
pub(super) fn register_source(source: &Source, updated_at: DateTime<Utc>) -> Expression {
    Expression::update(
        "SET protocol = :p, base_url = :u, schedule = :s, enabled = :e, internal = :i, options = :o, updated_at = :t",
    )
    .value(":p", s(source.protocol.to_string()))
    .value(":u", s(&source.base_url))
    .value(":s", s(&source.schedule))
    .value(":e", AttributeValue::Bool(source.enabled))
    .value(":i", AttributeValue::Bool(source.internal))
    .value(
        ":o",
        s(serde_json::to_string(&source.options).expect("options serialize")),
    )
    .value(":t", s(rfc3339(updated_at)))
}

/// Deletes a source that exists and runs no session (`ledger::may_remove`).
pub(super) fn remove_source() -> Expression {
    Expression::only_if("attribute_exists(pk) AND attribute_not_exists(running_session)")
}

/// The source's side of starting a session: it runs this one, and no other.
pub(super) fn claim_source(session_id: &str) -> Expression {
    Expression::update("SET running_session = :sid")
        .condition(
            "attribute_exists(pk) AND (attribute_not_exists(running_session) OR running_session = :sid)",
        )
        .value(":sid", s(session_id))
}

/// The writes of [`ledger::commit_page`](crate::model::ledger::commit_page), one transaction.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PageCommitWrites {
    /// The page's own item: its condition is what makes the commit happen once.
    pub page: Expression,
    /// The session's counters.
    pub session: Expression,
}

pub(super) fn commit_page(change: &PageCommit) -> PageCommitWrites {
    let mut sets = Vec::new();
    if change.listing_error.is_some() {
        sets.push("listing_error = :error");
    }
    if change.expected_total.is_some() {
        sets.push("expected_total = :expected");
    }
    if !change.problems.is_empty() {
        sets.push(
            "listing_problems = list_append(if_not_exists(listing_problems, :none), :problems)",
        );
    }
    let mut expression = "ADD #total :count, remaining :delta, listed :listed".to_string();
    if change.deleted_upstream > 0 {
        expression.push_str(", deleted_upstream :deleted");
    }
    if !sets.is_empty() {
        expression.push_str(" SET ");
        expression.push_str(&sets.join(", "));
    }
    let mut session = Expression::update(expression)
        .condition("attribute_exists(pk)")
        .name("#total", "total")
        .value(":count", n(change.total))
        .value(":listed", n(change.listed))
        .value(":delta", AttributeValue::N(change.remaining.to_string()));
    if let Some(e) = &change.listing_error {
        session = session.value(":error", s(e));
    }
    if let Some(t) = change.expected_total {
        session = session.value(":expected", n(t));
    }
    if change.deleted_upstream > 0 {
        session = session.value(":deleted", n(change.deleted_upstream));
    }
    if !change.problems.is_empty() {
        session = session
            .value(":none", AttributeValue::L(Vec::new()))
            .value(":problems", string_list(&change.problems));
    }
    PageCommitWrites {
        page: create_only(),
        session,
    }
}

/// A committed page's messages were sent.
pub(super) fn mark_page_sent() -> Expression {
    Expression::update("SET sent = :t").value(":t", AttributeValue::Bool(true))
}

/// Settles a resource's marker with its outcome; holds only while the marker is pending.
pub(super) fn settle(state: &ResourceState) -> Expression {
    let mut sets = vec!["#status = :outcome", "settled_at = :at"];
    if state.last_reason.is_some() {
        sets.push("reason = :reason");
    }
    if state.restored_now() {
        sets.push("restored = :restored");
    }
    if state.change_now().is_some() {
        sets.push("record_change = :change");
    }
    let mut settle = Expression::update(format!("SET {}", sets.join(", ")))
        .condition("#status = :pending")
        .name("#status", "status")
        .value(":outcome", s(state.last_outcome.as_str()))
        .value(":pending", s("pending"))
        .value(":at", s(rfc3339(state.last_attempt_at)));
    if let Some(reason) = &state.last_reason {
        settle = settle.value(
            ":reason",
            s(serde_json::to_string(reason).expect("reasons serialize")),
        );
    }
    if state.restored_now() {
        settle = settle.value(":restored", AttributeValue::Bool(true));
    }
    if let Some(change) = state.change_now() {
        settle = settle.value(
            ":change",
            s(serde_json::to_string(change).expect("changes serialize")),
        );
    }
    settle
}

/// Counts a [`Tally`] in its session. Unconditional: its markers' [`settle`]s, in the same
/// transaction, are its conditions.
pub(super) fn count(tally: &Tally) -> Expression {
    let mut update = String::from("ADD remaining :minus");
    let mut count =
        Expression::default().value(":minus", AttributeValue::N(format!("-{}", tally.settled())));
    for (i, (outcome, added)) in tally.counters().into_iter().enumerate() {
        update.push_str(&format!(", #o{i} :c{i}"));
        count = count
            .name(format!("#o{i}"), outcome.counter())
            .value(format!(":c{i}"), n(added));
    }
    Expression { update, ..count }
}

/// An operator's abort, as `ledger::may_abort` allows it: a running session that owes work.
pub(super) fn request_abort() -> Expression {
    Expression::update("SET abort_requested = :yes")
        .condition("#status = :running AND remaining > :zero")
        .name("#status", "status")
        .value(":yes", AttributeValue::Bool(true))
        .value(":running", s("running"))
        .value(":zero", n(0))
}

/// Closes a session ([`ledger::close`](crate::model::ledger::close)); holds once, while it
/// is running with nothing remaining.
pub(super) fn close(closure: &Closure) -> Expression {
    Expression::update("SET #status = :closed, ended_at = :ended")
        .condition("#status = :running AND remaining = :zero")
        .name("#status", "status")
        .value(":closed", s(closure.status.as_str()))
        .value(":running", s("running"))
        .value(":zero", n(0))
        .value(":ended", s(rfc3339(closure.ended_at)))
}

/// A closed session's [`Release`] of its source; holds while the source runs that session.
pub(super) fn release(release: &Release) -> Expression {
    let mut sets = "SET last_session = :sid, last_status = :closed".to_string();
    if release.incremental_base {
        sets.push_str(", incremental_base = :sid");
    }
    if release.full_listing_at.is_some() {
        sets.push_str(", last_full_listing_at = :started");
    }
    let mut update = Expression::update(format!("{sets} REMOVE running_session"))
        .condition("running_session = :sid")
        .value(":sid", s(&release.session_id))
        .value(":closed", s(release.status.as_str()));
    if let Some(at) = release.full_listing_at {
        update = update.value(":started", s(rfc3339(at)));
    }
    update
}

/// Puts a resource's state found missing by a session's listing, once per session.
pub(super) fn mark_missing(missing_session: &str) -> Expression {
    Expression::only_if("attribute_not_exists(missing_session) OR missing_session <> :sid")
        .value(":sid", s(missing_session))
}

/// Puts a resource's next state only over `current`: its digest is that of the whole state's
/// JSON, so comparing it is comparing all. An item written before states were deflated has
/// no digest and its `state` is the JSON itself.
pub(super) fn replace_resource(current: &ResourceState) -> Expression {
    let json = serde_json::to_string(current).expect("states serialize");
    Expression::only_if(
        "state_digest = :digest OR (attribute_not_exists(state_digest) AND #state = :current)",
    )
    .name("#state", "state")
    .value(":digest", super::codec::state_digest(json.as_bytes()))
    .value(":current", s(json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ledger::{self, PageState};
    use crate::model::{Outcome, Reason, Session, SessionStatus};
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap() + chrono::Duration::seconds(seconds)
    }

    fn names(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn values(pairs: Vec<(&str, AttributeValue)>) -> BTreeMap<String, AttributeValue> {
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn num(v: &str) -> AttributeValue {
        AttributeValue::N(v.into())
    }

    fn page(count: u64, next: Option<&str>) -> PageState {
        PageState {
            page: 3,
            ids_key: "ids".into(),
            count,
            next_cursor: next.map(str::to_string),
            sent: false,
            error: None,
            listed: count,
            expected_total: None,
            problems: Vec::new(),
            listed_at: None,
            deleted_upstream: 0,
        }
    }

    fn state(outcome: Outcome, reason: Option<Reason>) -> ResourceState {
        ResourceState::next(None, "src", "r1", "src@1", outcome, reason, at(0), None)
    }

    #[test]
    fn a_page_commit_refuses_an_existing_page_and_adds_its_resources() {
        let writes = commit_page(&ledger::commit_page(&page(5, Some("c2"))));
        assert_eq!(writes.page, create_only());
        assert_eq!(
            writes.page.condition.as_deref(),
            Some("attribute_not_exists(pk)")
        );
        assert!(writes.page.values.is_empty() && writes.page.update.is_empty());
        let session = writes.session;
        assert_eq!(
            session.update,
            "ADD #total :count, remaining :delta, listed :listed"
        );
        assert_eq!(session.condition.as_deref(), Some("attribute_exists(pk)"));
        assert_eq!(session.names, names(&[("#total", "total")]));
        // Five resources and a next page, less the page itself.
        assert_eq!(
            session.values,
            values(vec![
                (":count", num("5")),
                (":delta", num("5")),
                (":listed", num("5")),
            ])
        );
    }

    #[test]
    fn the_last_page_settles_its_own_unit() {
        let session = commit_page(&ledger::commit_page(&page(0, None))).session;
        assert_eq!(session.values[":delta"], num("-1"));
        assert_eq!(session.values[":count"], num("0"));
    }

    #[test]
    fn a_page_with_an_error_a_total_and_problems_sets_them() {
        let mut p = page(2, None);
        p.error = Some("boom".into());
        p.expected_total = Some(7);
        p.problems = vec!["short page".into()];
        let session = commit_page(&ledger::commit_page(&p)).session;
        assert_eq!(
            session.update,
            "ADD #total :count, remaining :delta, listed :listed SET listing_error = :error, \
             expected_total = :expected, listing_problems = list_append(if_not_exists(listing_problems, :none), :problems)"
        );
        assert_eq!(session.values[":error"], s("boom"));
        assert_eq!(session.values[":expected"], num("7"));
        assert_eq!(session.values[":none"], AttributeValue::L(Vec::new()));
        assert_eq!(
            session.values[":problems"],
            AttributeValue::L(vec![s("short page")])
        );
        assert_eq!(session.values[":delta"], num("1"));
    }

    #[test]
    fn a_tally_takes_its_resources_off_remaining_and_adds_each_counter() {
        let tally = Tally::of([
            Outcome::Harvested,
            Outcome::Failed,
            Outcome::Harvested,
            Outcome::Harvested,
        ]);
        let e = count(&tally);
        assert_eq!(e.update, "ADD remaining :minus, #o0 :c0, #o1 :c1");
        assert_eq!(e.condition, None);
        assert_eq!(e.names, names(&[("#o0", "harvested"), ("#o1", "failed")]));
        assert_eq!(
            e.values,
            values(vec![
                (":minus", num("-4")),
                (":c0", num("3")),
                (":c1", num("1")),
            ])
        );
    }

    #[test]
    fn settling_holds_only_for_a_pending_marker() {
        let e = settle(&state(Outcome::Unchanged, None));
        assert_eq!(e.update, "SET #status = :outcome, settled_at = :at");
        assert_eq!(e.condition.as_deref(), Some("#status = :pending"));
        assert_eq!(e.names, names(&[("#status", "status")]));
        assert_eq!(
            e.values,
            values(vec![
                (":outcome", s("unchanged")),
                (":pending", s("pending")),
                (":at", s("2026-03-04T05:06:07Z")),
            ])
        );
    }

    #[test]
    fn settling_a_failure_keeps_its_reason() {
        let reason = Reason::http(404, "gone");
        let e = settle(&state(Outcome::Failed, Some(reason.clone())));
        assert_eq!(
            e.update,
            "SET #status = :outcome, settled_at = :at, reason = :reason"
        );
        assert_eq!(e.condition.as_deref(), Some("#status = :pending"));
        assert_eq!(e.values[":outcome"], s("failed"));
        let AttributeValue::S(stored) = &e.values[":reason"] else {
            panic!("reason is not a string: {:?}", e.values[":reason"]);
        };
        assert_eq!(serde_json::from_str::<Reason>(stored).unwrap(), reason);
    }

    #[test]
    fn settling_a_restoring_outcome_says_so() {
        let mut restoring = state(Outcome::Harvested, None);
        restoring.mark_restored();
        let e = settle(&restoring);
        assert_eq!(
            e.update,
            "SET #status = :outcome, settled_at = :at, restored = :restored"
        );
        assert_eq!(e.values[":restored"], AttributeValue::Bool(true));
        // A restoration of an earlier session is not this one's.
        let later = ResourceState::next(
            Some(&restoring),
            "src",
            "r1",
            "src@2",
            Outcome::Unchanged,
            None,
            at(1),
            None,
        );
        assert!(!settle(&later).update.contains("restored"));
    }

    #[test]
    fn settling_a_changed_record_names_its_fields() {
        let mut changed = state(Outcome::Harvested, None);
        changed.mark_change(crate::model::RecordChange::Changed {
            fields: Some(vec!["summary".into(), "title".into()]),
        });
        let e = settle(&changed);
        assert_eq!(
            e.update,
            "SET #status = :outcome, settled_at = :at, record_change = :change"
        );
        assert_eq!(
            e.values[":change"],
            s(r#"{"kind":"changed","fields":["summary","title"]}"#)
        );
        assert!(!settle(&state(Outcome::Unchanged, None))
            .update
            .contains("record_change"));
    }

    #[test]
    fn closing_holds_once_for_a_running_session_with_nothing_remaining() {
        let closure = Closure {
            status: SessionStatus::PartiallyFailed,
            ended_at: at(30),
        };
        let e = close(&closure);
        assert_eq!(e.update, "SET #status = :closed, ended_at = :ended");
        assert_eq!(
            e.condition.as_deref(),
            Some("#status = :running AND remaining = :zero")
        );
        assert_eq!(e.names, names(&[("#status", "status")]));
        assert_eq!(
            e.values,
            values(vec![
                (":closed", s("partially_failed")),
                (":running", s("running")),
                (":zero", num("0")),
                (":ended", s("2026-03-04T05:06:37Z")),
            ])
        );
    }

    #[test]
    fn a_complete_full_listing_releases_its_source_as_its_base() {
        let mut session = Session::start("src", at(0), at(1));
        session.status = SessionStatus::Succeeded;
        let e = release(&ledger::release(&session));
        assert_eq!(
            e.update,
            "SET last_session = :sid, last_status = :closed, incremental_base = :sid, \
             last_full_listing_at = :started REMOVE running_session"
        );
        assert_eq!(e.condition.as_deref(), Some("running_session = :sid"));
        assert!(e.names.is_empty());
        assert_eq!(
            e.values,
            values(vec![
                (":sid", s(&session.id)),
                (":closed", s("succeeded")),
                (":started", s("2026-03-04T05:06:08Z")),
            ])
        );
    }

    #[test]
    fn an_aborted_session_releases_its_source_without_becoming_a_base() {
        let mut session = Session::start("src", at(0), at(1));
        session.status = SessionStatus::Aborted;
        session.abort_requested = true;
        let e = release(&ledger::release(&session));
        assert_eq!(
            e.update,
            "SET last_session = :sid, last_status = :closed REMOVE running_session"
        );
        assert_eq!(e.condition.as_deref(), Some("running_session = :sid"));
        assert_eq!(
            e.values,
            values(vec![(":sid", s(&session.id)), (":closed", s("aborted"))])
        );
    }

    #[test]
    fn an_abort_needs_a_running_session_that_owes_work() {
        let e = request_abort();
        assert_eq!(e.update, "SET abort_requested = :yes");
        assert_eq!(
            e.condition.as_deref(),
            Some("#status = :running AND remaining > :zero")
        );
        assert_eq!(e.names, names(&[("#status", "status")]));
        assert_eq!(
            e.values,
            values(vec![
                (":yes", AttributeValue::Bool(true)),
                (":running", s("running")),
                (":zero", num("0")),
            ])
        );
    }

    #[test]
    fn a_source_is_claimed_by_one_session_and_removed_only_when_idle() {
        let e = claim_source("src@1");
        assert_eq!(e.update, "SET running_session = :sid");
        assert_eq!(
            e.condition.as_deref(),
            Some("attribute_exists(pk) AND (attribute_not_exists(running_session) OR running_session = :sid)")
        );
        assert_eq!(e.values, values(vec![(":sid", s("src@1"))]));
        let e = remove_source();
        assert_eq!(
            e.condition.as_deref(),
            Some("attribute_exists(pk) AND attribute_not_exists(running_session)")
        );
        assert!(e.update.is_empty() && e.values.is_empty());
    }

    #[test]
    fn markers_missing_and_replacements_have_their_conditions() {
        let e = mark_missing("src@2");
        assert_eq!(
            e.condition.as_deref(),
            Some("attribute_not_exists(missing_session) OR missing_session <> :sid")
        );
        assert_eq!(e.values, values(vec![(":sid", s("src@2"))]));

        let current = state(Outcome::Harvested, None);
        let e = replace_resource(&current);
        assert_eq!(
            e.condition.as_deref(),
            Some(
                "state_digest = :digest OR (attribute_not_exists(state_digest) AND #state = :current)"
            )
        );
        assert_eq!(e.names, names(&[("#state", "state")]));
        // The digest is the one the current state's item holds; the JSON, an older item's.
        assert_eq!(
            e.values[":digest"],
            super::super::codec::resource_item(&current)["state_digest"]
        );
        let AttributeValue::S(stored) = &e.values[":current"] else {
            panic!("state is not a string");
        };
        assert_eq!(
            serde_json::from_str::<ResourceState>(stored).unwrap(),
            current
        );
        let mut other = current.clone();
        other.missing_listings += 1;
        assert_ne!(
            replace_resource(&other).values[":digest"],
            e.values[":digest"]
        );

        let e = mark_page_sent();
        assert_eq!(e.update, "SET sent = :t");
        assert_eq!(e.values, values(vec![(":t", AttributeValue::Bool(true))]));
    }
}
