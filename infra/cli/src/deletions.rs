//! `trawl deletions list|approve|restore SOURCE [ID…]`: the deletions a person decides
//! (`pipeline::deletions`), on the deployed stack or an embedded run's data directory.

use crate::deployed::{table, Shown};
use anyhow::Result;
use serde_json::json;
use trawl::pipeline::deletions::{self, Decision};
use trawl::pipeline::Services;

pub async fn list(svc: &Services, source_id: &str) -> Result<Shown> {
    if svc.store.get_source(source_id).await?.is_none() {
        anyhow::bail!("no source {source_id}");
    }
    let held = deletions::held(svc, source_id).await?;
    let rows: Vec<Vec<String>> = held
        .iter()
        .map(|s| {
            vec![
                s.resource_id.clone(),
                s.deletion_held_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                s.missing_listings.to_string(),
                s.title.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let text = if held.is_empty() {
        format!("no deletions pending for {source_id}")
    } else {
        format!(
            "{}\n{} pending: `trawl deletions approve {source_id} [ID…]` deletes them, `restore` keeps them",
            table(&["resource", "held since", "missing from", "title"], &rows),
            held.len()
        )
    };
    let json = json!({
        "source_id": source_id,
        "pending": held.iter().map(|s| json!({
            "resource_id": s.resource_id,
            "held_at": s.deletion_held_at,
            "missing_listings": s.missing_listings,
            "title": s.title,
            "record_key": s.record_key,
        })).collect::<Vec<_>>(),
    });
    Ok(Shown { json, text })
}

pub async fn approve(svc: &Services, source_id: &str, ids: &[String]) -> Result<Shown> {
    let decision = deletions::approve(svc, source_id, ids).await?;
    Ok(shown(
        source_id,
        "deleted (moved under deleted/)",
        &decision,
    ))
}

pub async fn restore(svc: &Services, source_id: &str, ids: &[String]) -> Result<Shown> {
    let decision = deletions::restore(svc, source_id, ids).await?;
    Ok(shown(
        source_id,
        "kept (deletion discarded or undone)",
        &decision,
    ))
}

fn shown(source_id: &str, what: &str, decision: &Decision) -> Shown {
    let mut lines = vec![format!(
        "{source_id}: {} {what}{}",
        decision.done.len(),
        if decision.done.is_empty() {
            String::new()
        } else {
            format!(": {}", decision.done.join(", "))
        }
    )];
    for s in &decision.skipped {
        lines.push(format!("  {} left as it is: {}", s.resource_id, s.why));
    }
    Shown {
        json: json!({"source_id": source_id, "done": decision.done, "skipped": decision.skipped}),
        text: lines.join("\n"),
    }
}
