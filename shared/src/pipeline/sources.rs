//! Applying a sources document (`model::sources_file`) to the registry: `trawl sources
//! apply`, on a deployed stack or a data directory alike.

use crate::model::sources_file::SourcesPlan;
use crate::ports::{SourceRegistry, StoreError};

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
