//! Sources as code: a document of sources (one, or a list) that the registered sources are
//! made to match. Parsing and the plan are plain functions here; applying the plan goes
//! through the store (`pipeline::sources::apply`).

use super::source::{refuse_duplicate_ids, ConfigError, Source, SourceSpec};
use serde_json::Value;

/// The sources a document describes (a source object, or a list of them), each validated.
/// Errors name the source by its position, its id where it has one, and the field
/// (`source #2 (ocean): options.set: …`).
pub fn sources_of(document: Value) -> Result<Vec<Source>, ConfigError> {
    let items = match document {
        Value::Array(items) => items,
        one => vec![one],
    };
    let sources = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            SourceSpec::from_json(&item.to_string()).map_err(|e| {
                let named = match item.get("id").and_then(Value::as_str) {
                    Some(id) => format!("source #{} ({id})", i + 1),
                    None => format!("source #{}", i + 1),
                };
                ConfigError {
                    field: format!("{named}: {}", e.field),
                    message: e.message,
                }
            })
        })
        .collect::<Result<Vec<Source>, ConfigError>>()?;
    refuse_duplicate_ids(&sources)?;
    Ok(sources)
}

/// The sources a document's text describes, JSON or YAML (JSON is tried first: every JSON
/// document is YAML too, but JSON's error names the place a JSON file is wrong).
pub fn sources_of_text(text: &str) -> Result<Vec<Source>, ConfigError> {
    let document: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(json) => serde_yaml::from_str(text).map_err(|yaml| {
            ConfigError::new(
                "document",
                format!("neither JSON ({json}) nor YAML ({yaml})"),
            )
        })?,
    };
    sources_of(document)
}

/// What making the registered sources match a document changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcesPlan {
    /// In the document, not registered.
    pub add: Vec<Source>,
    /// Registered with another configuration.
    pub update: Vec<Source>,
    /// Registered exactly as the document says.
    pub unchanged: Vec<String>,
    /// Registered, not in the document (only with `prune`; otherwise left alone).
    pub remove: Vec<String>,
}

impl SourcesPlan {
    pub fn changes_nothing(&self) -> bool {
        self.add.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }
}

/// The plan that makes `registered` match `desired`; registered sources missing from the
/// document are removed only when `prune` says so. Ids in document order, removals sorted.
pub fn plan(registered: &[Source], desired: Vec<Source>, prune: bool) -> SourcesPlan {
    let mut plan = SourcesPlan::default();
    for source in desired.iter() {
        match registered.iter().find(|r| r.id == source.id) {
            None => plan.add.push(source.clone()),
            Some(current) if current == source => plan.unchanged.push(source.id.clone()),
            Some(_) => plan.update.push(source.clone()),
        }
    }
    if prune {
        let mut gone: Vec<String> = registered
            .iter()
            .filter(|r| !desired.iter().any(|d| d.id == r.id))
            .map(|r| r.id.clone())
            .collect();
        gone.sort();
        plan.remove = gone;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(id: &str, schedule: &str) -> Value {
        json!({"id": id, "protocol": "erddap", "base_url": format!("https://{id}.example.org/erddap"),
               "schedule": schedule})
    }

    #[test]
    fn a_document_is_one_source_or_a_list_each_named_in_its_errors() {
        assert_eq!(sources_of(source("a", "rate(1 day)")).unwrap().len(), 1);
        let two = json!([source("a", "rate(1 day)"), source("b", "rate(1 day)")]);
        assert_eq!(sources_of(two).unwrap().len(), 2);
        let bad = json!([source("a", "rate(1 day)"), {"id": "b", "protocol": "erddap", "base_url": "ftp://x", "schedule": "rate(1 day)"}]);
        let e = sources_of(bad).unwrap_err();
        assert_eq!(e.field, "source #2 (b): base_url", "{e}");
        let unknown = json!({"id": "c", "protocol": "erddap", "base_url": "https://x.example",
            "schedule": "rate(1 day)", "options": {"raw": "bundle"}});
        let e = sources_of(unknown).unwrap_err();
        assert_eq!(e.field, "source #1 (c): options.raw", "{e}");
        assert!(e.message.contains("`resource`, `batch`, `none`"), "{e}");
        let twice = json!([source("a", "rate(1 day)"), source("a", "rate(2 days)")]);
        assert_eq!(sources_of(twice).unwrap_err().field, "id");
    }

    #[test]
    fn the_plan_adds_updates_keeps_and_prunes_only_when_asked() {
        let registered = sources_of(json!([
            source("kept", "rate(1 day)"),
            source("changed", "rate(1 day)"),
            source("gone", "rate(1 day)")
        ]))
        .unwrap();
        let desired = sources_of(json!([
            source("kept", "rate(1 day)"),
            source("changed", "rate(6 hours)"),
            source("new", "rate(1 day)")
        ]))
        .unwrap();
        let without = plan(&registered, desired.clone(), false);
        assert_eq!(
            without
                .add
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["new"]
        );
        assert_eq!(
            without
                .update
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["changed"]
        );
        assert_eq!(without.unchanged, ["kept"]);
        assert!(without.remove.is_empty());
        let pruned = plan(&registered, desired.clone(), true);
        assert_eq!(pruned.remove, ["gone"]);
        // Applied, the same document changes nothing.
        let after: Vec<Source> = desired.clone();
        assert!(plan(&after, desired, true).changes_nothing());
    }
}
