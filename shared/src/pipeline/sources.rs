//! Applying a sources document (`model::sources_file`) to the registry: `trawl sources
//! apply`, on a deployed stack or a data directory alike.

use crate::model::sources_file::SourcesPlan;
use crate::ports::{SourceRegistry, StoreError};

/// What purging a source removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub source_id: String,
    /// Resource states, with their histories.
    pub states: u64,
    /// Records, raw responses, logs, session documents and what deletions moved aside.
    pub objects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("no source {0}")]
    UnknownSource(String),
    #[error(
        "source {source_id} has a running session ({session}); abort it or wait for it, then purge"
    )]
    SessionRunning { source_id: String, session: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `trawl sources remove --purge`: unregisters a source and removes everything it left (its
/// resource states and histories, and every object under its prefixes), so a source added
/// again under the same id starts clean. Refused while it has a running session. The
/// registration goes first, conditionally on no session running, so nothing can start a
/// session that would write while its data is removed; run again, it finishes a purge that
/// stopped half-way.
pub async fn purge(svc: &super::Services, source_id: &str) -> Result<Purged, PurgeError> {
    match svc.store.get_source(source_id).await? {
        Some(entry) => {
            if let Some(session) = entry.running_session {
                return Err(PurgeError::SessionRunning {
                    source_id: source_id.to_string(),
                    session,
                });
            }
            if !svc.store.remove_source(source_id).await? {
                let session = svc
                    .store
                    .get_source(source_id)
                    .await?
                    .and_then(|e| e.running_session)
                    .unwrap_or_else(|| "just started".into());
                return Err(PurgeError::SessionRunning {
                    source_id: source_id.to_string(),
                    session,
                });
            }
        }
        // Already unregistered (a purge that stopped, or a plain remove before): its data
        // may still be there.
        None => {
            let (states, _) = svc.store.list_resources(source_id, None).await?;
            let mut anything = !states.is_empty();
            for prefix in crate::keys::source_prefixes(source_id) {
                anything |= !svc.objects.folders(&prefix).await?.is_empty()
                    || !svc.objects.files(&prefix).await?.is_empty();
            }
            if !anything {
                return Err(PurgeError::UnknownSource(source_id.to_string()));
            }
        }
    }
    let mut purged = Purged {
        source_id: source_id.to_string(),
        states: svc.store.remove_resources(source_id).await?,
        objects: 0,
    };
    for prefix in crate::keys::source_prefixes(source_id) {
        purged.objects += svc.objects.delete_prefix(&prefix).await?;
    }
    tracing::info!(source = %source_id, states = purged.states, objects = purged.objects, "source purged");
    Ok(purged)
}

/// What an apply did: the plan's changes as made, and the removals the registry refused (a
/// source with a running session is not removed under it).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    pub kept_running: Vec<String>,
}

pub async fn apply(
    registry: &dyn SourceRegistry,
    plan: SourcesPlan,
) -> Result<Applied, StoreError> {
    let mut applied = Applied {
        unchanged: plan.unchanged,
        ..Applied::default()
    };
    for source in plan.add {
        registry.put_source(&source).await?;
        applied.added.push(source.id);
    }
    for source in plan.update {
        registry.put_source(&source).await?;
        applied.updated.push(source.id);
    }
    for id in plan.remove {
        if registry.remove_source(&id).await? {
            applied.removed.push(id);
        } else {
            applied.kept_running.push(id);
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::MemoryStore;
    use crate::model::sources_file::{plan, sources_of};
    use crate::model::Session;
    use crate::ports::SessionLedger;

    fn document(ids: &[&str]) -> serde_json::Value {
        serde_json::Value::Array(
            ids.iter()
                .map(|id| {
                    serde_json::json!({"id": id, "protocol": "ckan",
                    "base_url": format!("https://{id}.example.org"), "schedule": "rate(1 day)"})
                })
                .collect(),
        )
    }

    async fn registered(store: &MemoryStore) -> Vec<crate::model::Source> {
        store
            .list_sources()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.source)
            .collect()
    }

    #[tokio::test]
    async fn applying_twice_changes_nothing_the_second_time_and_a_running_source_stays() {
        let store = MemoryStore::default();
        let first = sources_of(document(&["a", "b", "busy"])).unwrap();
        let done = apply(&store, plan(&registered(&store).await, first, true))
            .await
            .unwrap();
        assert_eq!(done.added, ["a", "b", "busy"]);
        let at = chrono::Utc::now();
        store
            .create_session(&Session::start("busy", at, at))
            .await
            .unwrap();

        let second = sources_of(document(&["a"])).unwrap();
        let done = apply(
            &store,
            plan(&registered(&store).await, second.clone(), true),
        )
        .await
        .unwrap();
        assert_eq!(done.unchanged, ["a"]);
        assert_eq!(done.removed, ["b"]);
        assert_eq!(done.kept_running, ["busy"]);
        let ids: Vec<String> = registered(&store).await.into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["a", "busy"]);
    }
}
