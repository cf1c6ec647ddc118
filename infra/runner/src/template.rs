//! The event-source settings the runner plays, read from `template.yaml` itself so the runner
//! and the deployed template cannot disagree.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use serde_yaml::Value as Yaml;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct EventSources {
    /// Harvester's SQS event: messages per invocation.
    pub harvester_batch_size: i32,
    pub harvester_batching_window_secs: i32,
    /// `ScalingConfig.MaximumConcurrency`: concurrent harvester invocations.
    pub harvester_max_concurrency: usize,
    pub harvester_reports_batch_item_failures: bool,
    /// Finalizer's stream event.
    pub finalizer_batch_size: i32,
    pub finalizer_max_retry_attempts: u32,
    pub finalizer_reports_batch_item_failures: bool,
    /// The stream filter pattern (EventBridge pattern syntax).
    pub finalizer_filter: Value,
    /// The scheduler's ScheduleV2 input, with `<aws.scheduler.scheduled-time>` in it.
    pub schedule_input: String,
    pub schedule_expression: String,
}

impl EventSources {
    pub fn from_file(path: &Path) -> Result<EventSources> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        EventSources::parse(&text)
    }

    pub fn parse(text: &str) -> Result<EventSources> {
        let doc: Yaml = serde_yaml::from_str(text).context("template.yaml is not YAML")?;
        let event = |function: &str, event: &str| -> Result<Yaml> {
            let props = doc
                .get("Resources")
                .and_then(|r| r.get(function))
                .and_then(|f| f.get("Properties"))
                .and_then(|p| p.get("Events"))
                .and_then(|e| e.get(event))
                .and_then(|e| e.get("Properties"))
                .ok_or_else(|| anyhow!("template has no {function}.Events.{event}"))?;
            Ok(props.clone())
        };
        let int = |v: &Yaml, key: &str| -> Result<i64> {
            v.get(key)
                .and_then(Yaml::as_i64)
                .ok_or_else(|| anyhow!("event property {key} is missing or not a number"))
        };
        let reports = |v: &Yaml| {
            v.get("FunctionResponseTypes")
                .and_then(Yaml::as_sequence)
                .is_some_and(|s| {
                    s.iter()
                        .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                })
        };
        let work = event("HarvesterFunction", "Work")?;
        let stream = event("FinalizerFunction", "SessionCompleted")?;
        let tick = event("SchedulerFunction", "Tick")?;
        let pattern = stream
            .get("FilterCriteria")
            .and_then(|f| f.get("Filters"))
            .and_then(|f| f.get(0))
            .and_then(|f| f.get("Pattern"))
            .and_then(Yaml::as_str)
            .ok_or_else(|| anyhow!("finalizer stream event has no FilterCriteria pattern"))?;
        Ok(EventSources {
            harvester_batch_size: int(&work, "BatchSize")? as i32,
            harvester_batching_window_secs: int(&work, "MaximumBatchingWindowInSeconds")
                .unwrap_or(0) as i32,
            harvester_max_concurrency: work
                .get("ScalingConfig")
                .map(|s| int(s, "MaximumConcurrency"))
                .transpose()?
                .unwrap_or(2) as usize,
            harvester_reports_batch_item_failures: reports(&work),
            finalizer_batch_size: int(&stream, "BatchSize")? as i32,
            finalizer_max_retry_attempts: int(&stream, "MaximumRetryAttempts")? as u32,
            finalizer_reports_batch_item_failures: reports(&stream),
            finalizer_filter: serde_json::from_str(pattern)
                .context("filter pattern is not JSON")?,
            schedule_input: tick
                .get("Input")
                .and_then(Yaml::as_str)
                .ok_or_else(|| anyhow!("schedule has no Input"))?
                .to_string(),
            schedule_expression: match tick.get("ScheduleExpression") {
                Some(Yaml::String(s)) => s.clone(),
                Some(Yaml::Tagged(t)) => t.value.as_str().unwrap_or_default().to_string(),
                _ => String::new(),
            },
        })
    }
}

/// EventBridge-style event pattern matching, the subset Lambda filters use here: nested
/// objects, lists of exact values, `anything-but`, `exists` and `prefix`.
pub fn pattern_matches(pattern: &Value, event: &Value) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, rule)| {
        let value = event.get(key);
        match rule {
            Value::Object(_) => value.is_some_and(|v| v.is_object() && pattern_matches(rule, v)),
            Value::Array(alternatives) => alternatives.iter().any(|alt| leaf_matches(alt, value)),
            _ => false,
        }
    })
}

fn leaf_matches(rule: &Value, value: Option<&Value>) -> bool {
    match rule {
        Value::Object(op) => {
            if let Some(exists) = op.get("exists").and_then(Value::as_bool) {
                return value.is_some() == exists;
            }
            let Some(value) = value else { return false };
            if let Some(excluded) = op.get("anything-but") {
                let excluded: Vec<&Value> = match excluded {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                return !excluded.contains(&value);
            }
            if let Some(prefix) = op.get("prefix").and_then(Value::as_str) {
                return value.as_str().is_some_and(|v| v.starts_with(prefix));
            }
            false
        }
        Value::Null => value.is_some_and(Value::is_null),
        exact => value.is_some_and(|v| match v {
            Value::Array(items) => items.contains(exact),
            v => v == exact,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> EventSources {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        EventSources::from_file(&path).unwrap()
    }

    #[test]
    fn the_template_declares_partial_batch_responses_and_a_completion_filter() {
        let t = template();
        assert!(t.harvester_reports_batch_item_failures);
        assert!(t.finalizer_reports_batch_item_failures);
        assert!((1..=10).contains(&t.harvester_batch_size));
        assert!(t.harvester_max_concurrency >= 2);
        assert!(t.schedule_input.contains("<aws.scheduler.scheduled-time>"));
    }

    fn session_record(new_remaining: &str, old_remaining: &str, status: &str) -> Value {
        json!({"eventName": "MODIFY", "dynamodb": {
            "Keys": {"pk": {"S": "SESSION#s@1"}, "sk": {"S": "SESSION"}},
            "NewImage": {"pk": {"S": "SESSION#s@1"}, "sk": {"S": "SESSION"}, "status": {"S": status}, "remaining": {"N": new_remaining}},
            "OldImage": {"pk": {"S": "SESSION#s@1"}, "sk": {"S": "SESSION"}, "status": {"S": "running"}, "remaining": {"N": old_remaining}}}})
    }

    #[test]
    fn the_template_filter_passes_exactly_the_step_to_zero() {
        let filter = template().finalizer_filter;
        assert!(pattern_matches(
            &filter,
            &session_record("0", "1", "running")
        ));
        assert!(
            !pattern_matches(&filter, &session_record("1", "2", "running")),
            "work remains"
        );
        assert!(
            !pattern_matches(&filter, &session_record("0", "0", "running")),
            "no step to zero"
        );
        assert!(
            !pattern_matches(&filter, &session_record("0", "0", "succeeded")),
            "the close itself"
        );
        let mut marker = session_record("0", "1", "running");
        marker["dynamodb"]["Keys"]["sk"] = json!({"S": "RESOURCE#x"});
        assert!(!pattern_matches(&filter, &marker));
        let mut insert = session_record("0", "1", "running");
        insert["eventName"] = json!("INSERT");
        assert!(!pattern_matches(&filter, &insert));
    }

    #[test]
    fn the_filter_and_the_finalizer_agree_on_what_completes_a_session() {
        let filter = template().finalizer_filter;
        let event: Value =
            serde_json::from_str(include_str!("../../events/finalizer-stream.json")).unwrap();
        let record = &event["Records"][0];
        assert!(pattern_matches(&filter, record));
        assert!(trawl::handlers::completed_session(record).is_some());
    }

    #[test]
    fn pattern_operators() {
        assert!(pattern_matches(
            &json!({"a": [{"exists": false}]}),
            &json!({"b": 1})
        ));
        assert!(!pattern_matches(
            &json!({"a": [{"exists": true}]}),
            &json!({"b": 1})
        ));
        assert!(pattern_matches(
            &json!({"a": [{"prefix": "SES"}]}),
            &json!({"a": "SESSION"})
        ));
        assert!(pattern_matches(
            &json!({"a": [{"anything-but": "x"}]}),
            &json!({"a": "y"})
        ));
        assert!(!pattern_matches(
            &json!({"a": [{"anything-but": ["x"]}]}),
            &json!({"a": "x"})
        ));
        assert!(!pattern_matches(
            &json!({"a": {"b": ["1"]}}),
            &json!({"a": "flat"})
        ));
    }
}
