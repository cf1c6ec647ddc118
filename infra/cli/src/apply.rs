//! `trawl sources apply FILE`: the registered sources made to match a file (sources as
//! code), on a deployed stack or an embedded run's data directory.

use crate::deployed::Shown;
use anyhow::{Context, Result};
use std::path::Path;
use trawl::model::sources_file::{plan, sources_of};
use trawl::model::Source;
use trawl::pipeline::sources::apply;
use trawl::ports::SourceRegistry;

/// The sources a file describes: one source or a list, in JSON or YAML (by its extension;
/// anything else is read as JSON, then as YAML).
pub fn read_sources(file: &Path) -> Result<Vec<Source>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let yaml = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let document: serde_json::Value = if yaml {
        serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML", file.display()))?
    } else {
        match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(json) => serde_yaml::from_str(&text)
                .map_err(|_| json)
                .with_context(|| format!("{} is neither JSON nor YAML", file.display()))?,
        }
    };
    sources_of(document).with_context(|| format!("{}", file.display()))
}

pub async fn apply_file(
    registry: &dyn SourceRegistry,
    file: &Path,
    prune: bool,
    dry_run: bool,
) -> Result<Shown> {
    let desired = read_sources(file)?;
    let registered: Vec<Source> = registry
        .list_sources()
        .await?
        .into_iter()
        .map(|entry| entry.source)
        .collect();
    let plan = plan(&registered, desired, prune);
    let ids = |sources: &[Source]| sources.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let (verb, json) = if dry_run {
        (
            "would",
            serde_json::json!({"dry_run": true, "added": ids(&plan.add),
                "updated": ids(&plan.update), "unchanged": plan.unchanged, "removed": plan.remove}),
        )
    } else {
        let applied = apply(registry, plan).await?;
        ("", serde_json::to_value(applied)?)
    };
    let mut lines = Vec::new();
    for (key, word) in [
        ("added", "add"),
        ("updated", "update"),
        ("removed", "remove"),
        ("kept_running", "keep (a session is running)"),
    ] {
        for id in json[key].as_array().into_iter().flatten() {
            let id = id.as_str().unwrap_or_default();
            lines.push(match verb {
                "would" => format!("would {word} {id}"),
                _ => format!("{key} {id}").replace("kept_running", "kept (a session is running):"),
            });
        }
    }
    let unchanged = json["unchanged"].as_array().map_or(0, Vec::len);
    lines.push(format!("{unchanged} unchanged"));
    Ok(Shown {
        text: lines.join("\n"),
        json,
    })
}
