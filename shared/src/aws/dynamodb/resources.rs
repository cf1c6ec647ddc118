//! [`ResourceStates`] on the table: one item per resource under `keys::resources_pk`, the
//! whole state as JSON (`codec::resource_item`).

use super::codec::{key, resource_item, resource_state};
use super::expressions::{self, Feed};
use super::{condition_met, DynamoStore};
use crate::keys;
use crate::model::ResourceState;
use crate::ports::{ResourceStates, StoreError};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};

#[async_trait]
impl ResourceStates for DynamoStore {
    async fn get_resource(
        &self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        let Some(item) = self
            .get(keys::resources_pk(source_id), resource_id.into())
            .await?
        else {
            return Ok(None);
        };
        resource_state(&item).map(Some)
    }

    /// One BatchGetItem per 100 resources.
    async fn get_resources(
        &self,
        wanted: &[(String, String)],
    ) -> Result<HashMap<(String, String), ResourceState>, StoreError> {
        let unique: BTreeSet<&(String, String)> = wanted.iter().collect();
        let keys = unique
            .into_iter()
            .map(|(source_id, resource_id)| key(keys::resources_pk(source_id), resource_id.clone()))
            .collect();
        let mut found = HashMap::new();
        for item in self.batch_get(keys, None).await? {
            let state = resource_state(&item)?;
            found.insert((state.source_id.clone(), state.resource_id.clone()), state);
        }
        Ok(found)
    }

    async fn list_resources(
        &self,
        source_id: &str,
        after: Option<String>,
    ) -> Result<(Vec<ResourceState>, Option<String>), StoreError> {
        let (items, next) = self
            .query_page(keys::resources_pk(source_id), None, after)
            .await?;
        let states = items
            .iter()
            .map(resource_state)
            .collect::<Result<Vec<ResourceState>, StoreError>>()?;
        Ok((states, next))
    }

    async fn mark_missing(&self, state: &ResourceState) -> Result<bool, StoreError> {
        let missing = state
            .missing_session
            .clone()
            .ok_or_else(|| StoreError::permanent("mark_missing needs missing_session"))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(resource_item(state)))
            .feed(expressions::mark_missing(&missing))
            .send()
            .await;
        condition_met(result)
    }

    /// Queries the source's partition for its keys and deletes them with BatchWriteItem,
    /// 25 a request, what the table left unprocessed sent again after a backoff.
    async fn remove_resources(&self, source_id: &str) -> Result<u64, StoreError> {
        let pk = keys::resources_pk(source_id);
        let mut removed = 0;
        loop {
            // From the start each time: the page just deleted is gone.
            let (items, next) = self.query_page(pk.clone(), None, None).await?;
            let keys: Vec<_> = items
                .iter()
                .filter_map(|item| Some(key(pk.clone(), item.get("sk")?.as_s().ok()?.clone())))
                .collect();
            removed += keys.len() as u64;
            self.batch_delete(keys).await?;
            if next.is_none() {
                return Ok(removed);
            }
        }
    }

    async fn replace_resource(
        &self,
        current: &ResourceState,
        next: &ResourceState,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(resource_item(next)))
            .feed(expressions::replace_resource(current))
            .send()
            .await;
        condition_met(result)
    }
}
