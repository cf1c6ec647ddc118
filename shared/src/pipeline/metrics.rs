//! Metrics in CloudWatch's embedded metric format (EMF): JSON documents the functions print
//! to stdout, one a line, which CloudWatch Logs turns into metrics in the `Trawl` namespace.
//! What a closed session gives:
//!
//! - `Sessions` (1) by `Source` and `Status`, and by `Status` alone;
//! - `SessionDuration` (seconds), `ResourcesListed`, `ListingComplete` (1 or 0) by `Source`;
//! - `Resources` by `Source` and `Outcome` (harvested, unchanged, failed);
//! - `FailedResources` by `Source` and `Reason` (the closed set of `ReasonCode`s, so the
//!   metrics a source can have are bounded).
//!
//! And `AlertPublishFailures` when alerts could not be delivered.

use crate::documents::SessionSummary;
use crate::model::ReasonCode;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Trawl";
/// The specification's bounds on one directive.
pub const MAX_METRICS: usize = 100;
pub const MAX_DIMENSIONS: usize = 30;

/// One metric of a directive: its name and unit, and its value on the document's root.
struct Metric<'a> {
    name: &'a str,
    unit: &'a str,
    value: f64,
}

/// One EMF document: `dimensions` are (name, value) pairs on the root, `sets` the dimension
/// sets the metrics are aggregated by.
fn document(
    at: DateTime<Utc>,
    dimensions: &[(&str, &str)],
    sets: &[&[&str]],
    metrics: &[Metric],
) -> Value {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": sets,
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), json!(value));
    }
    for m in metrics {
        root.insert(m.name.into(), json!(m.value));
    }
    Value::Object(root)
}

/// The documents a closed session's summary gives (see the module's list).
pub fn session_metrics(summary: &SessionSummary) -> Vec<Value> {
    let at = summary.ended_at.unwrap_or(summary.started_at);
    let source = summary.source_id.as_str();
    let c = &summary.counters;
    let mut docs = vec![
        document(
            at,
            &[("Source", source), ("Status", summary.status.as_str())],
            &[&["Source", "Status"], &["Status"]],
            &[Metric {
                name: "Sessions",
                unit: "Count",
                value: 1.0,
            }],
        ),
        document(
            at,
            &[("Source", source)],
            &[&["Source"]],
            &[
                Metric {
                    name: "SessionDuration",
                    unit: "Seconds",
                    value: summary.duration_seconds,
                },
                Metric {
                    name: "ResourcesListed",
                    unit: "Count",
                    value: summary.listing.listed as f64,
                },
                Metric {
                    name: "ListingComplete",
                    unit: "None",
                    value: if summary.listing.complete { 1.0 } else { 0.0 },
                },
            ],
        ),
    ];
    for (outcome, n) in [
        ("harvested", c.harvested),
        ("unchanged", c.unchanged),
        ("failed", c.failed),
    ] {
        docs.push(document(
            at,
            &[("Source", source), ("Outcome", outcome)],
            &[&["Source", "Outcome"]],
            &[Metric {
                name: "Resources",
                unit: "Count",
                value: n as f64,
            }],
        ));
    }
    for (code, n) in &summary.reasons {
        // Only the closed set of codes becomes a dimension value.
        let Ok(code) = serde_json::from_value::<ReasonCode>(json!(code)) else {
            continue;
        };
        docs.push(document(
            at,
            &[("Source", source), ("Reason", code.as_str())],
            &[&["Source", "Reason"]],
            &[Metric {
                name: "FailedResources",
                unit: "Count",
                value: *n as f64,
            }],
        ));
    }
    docs
}

/// Alerts that could not be delivered.
pub fn publish_failures(at: DateTime<Utc>, alerts: usize) -> Value {
    document(
        at,
        &[],
        &[&[]],
        &[Metric {
            name: "AlertPublishFailures",
            unit: "Count",
            value: alerts as f64,
        }],
    )
}

/// Prints one document as a line on stdout, where the Lambda runtime sends it to CloudWatch
/// Logs.
pub fn print(document: &Value) {
    println!("{document}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::SummaryListing;
    use crate::model::{Counters, SessionStatus};
    use chrono::TimeZone;

    fn summary() -> SessionSummary {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        SessionSummary {
            session_id: "src@20261122T120000Z".into(),
            source_id: "src".into(),
            status: SessionStatus::PartiallyFailed,
            scheduled_time: t,
            started_at: t,
            ended_at: Some(t + chrono::Duration::seconds(95)),
            duration_seconds: 95.5,
            counters: Counters {
                total: 10,
                remaining: 0,
                harvested: 5,
                unchanged: 2,
                failed: 3,
            },
            listing_error: None,
            listing: SummaryListing {
                complete: false,
                incremental_since: None,
                listed: 10,
                expected_total: Some(11),
                problems: vec!["short".into()],
            },
            reasons: [
                ("NOT_FOUND".to_string(), 2),
                ("TIMEOUT".to_string(), 1),
                ("NOT_A_CODE".to_string(), 9),
            ]
            .into(),
            failed_resources: vec![],
            failed_resources_truncated: false,
            restored: vec![],
            restored_count: 0,
            pending_markers: 0,
            held_deletions: 0,
            changes: Default::default(),
            stale: None,
            records_prefix: "records/src/".into(),
        }
    }

    /// Checks one document against the EMF specification's rules; returns its metrics by
    /// name with their values and dimension sets.
    fn check_spec(line: &str) -> Vec<(String, f64, Vec<Vec<String>>)> {
        let doc: Value = serde_json::from_str(line).expect("one JSON object a line");
        let root = doc.as_object().unwrap();
        let aws = root["_aws"].as_object().expect("_aws is an object");
        assert!(aws["Timestamp"].is_i64(), "Timestamp is epoch milliseconds");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert!(!directives.is_empty());
        let mut found = Vec::new();
        for d in directives {
            let ns = d["Namespace"].as_str().unwrap();
            assert!(!ns.is_empty() && ns.len() <= 255);
            let sets: Vec<Vec<String>> =
                serde_json::from_value(d["Dimensions"].clone()).expect("arrays of strings");
            for set in &sets {
                assert!(set.len() <= MAX_DIMENSIONS);
                for name in set {
                    let value = root[name]
                        .as_str()
                        .expect("a dimension's value is a string");
                    assert!(!value.is_empty() && value.len() <= 1024);
                }
            }
            let metrics = d["Metrics"].as_array().unwrap();
            assert!(!metrics.is_empty() && metrics.len() <= MAX_METRICS);
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                assert!(!name.is_empty() && name.len() <= 1024);
                let unit = m["Unit"].as_str().unwrap();
                assert!(
                    ["Count", "Seconds", "None"].contains(&unit),
                    "a CloudWatch unit: {unit}"
                );
                let value = root[name]
                    .as_f64()
                    .expect("the value is a number on the root");
                found.push((name.to_string(), value, sets.clone()));
            }
        }
        found
    }

    #[test]
    fn every_session_document_follows_the_emf_specification() {
        let docs = session_metrics(&summary());
        let metrics: Vec<_> = docs
            .iter()
            .flat_map(|d| check_spec(&d.to_string()))
            .collect();
        let value = |name: &str, dims: &[&str]| {
            metrics
                .iter()
                .zip(docs.iter().flat_map(|d| {
                    let n = d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                        .as_array()
                        .unwrap()
                        .len();
                    std::iter::repeat_n(d, n)
                }))
                .find(|((n, _, _), d)| {
                    n == name
                        && dims.iter().all(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            d[k] == v
                        })
                })
                .map(|((_, v, _), _)| *v)
        };
        assert_eq!(
            value("Sessions", &["Status=partially_failed", "Source=src"]),
            Some(1.0)
        );
        assert_eq!(value("SessionDuration", &["Source=src"]), Some(95.5));
        assert_eq!(value("ListingComplete", &["Source=src"]), Some(0.0));
        assert_eq!(value("ResourcesListed", &["Source=src"]), Some(10.0));
        assert_eq!(value("Resources", &["Outcome=harvested"]), Some(5.0));
        assert_eq!(value("Resources", &["Outcome=unchanged"]), Some(2.0));
        assert_eq!(value("Resources", &["Outcome=failed"]), Some(3.0));
        assert_eq!(value("FailedResources", &["Reason=NOT_FOUND"]), Some(2.0));
        assert_eq!(value("FailedResources", &["Reason=TIMEOUT"]), Some(1.0));
        assert_eq!(
            value("FailedResources", &["Reason=NOT_A_CODE"]),
            None,
            "a string outside the closed set of reasons is no dimension value"
        );
        assert_eq!(docs[0]["_aws"]["Timestamp"], 1795348895000i64);
    }

    #[test]
    fn the_publish_failure_document_has_one_empty_dimension_set() {
        let doc = publish_failures(Utc::now(), 2);
        let found = check_spec(&doc.to_string());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "AlertPublishFailures");
        assert_eq!(found[0].1, 2.0);
        assert_eq!(found[0].2, vec![Vec::<String>::new()]);
    }
}
