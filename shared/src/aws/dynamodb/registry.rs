//! [`SourceRegistry`] on the table: one item per source under `keys::SOURCES_PK`, its
//! configuration and its run state side by side.

use super::codec::{s, source_entry};
use super::expressions::{self, Feed};
use super::{condition_met, DynamoStore};
use crate::aws::errors::store_error;
use crate::keys::SOURCES_PK;
use crate::model::Source;
use crate::ports::{SourceEntry, SourceRegistry, StoreError};
use async_trait::async_trait;
use chrono::Utc;

#[async_trait]
impl SourceRegistry for DynamoStore {
    async fn put_source(&self, source: &Source) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(SOURCES_PK))
            .key("sk", s(&source.id))
            .feed(expressions::register_source(source, Utc::now()))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn remove_source(&self, id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(SOURCES_PK))
            .key("sk", s(id))
            .feed(expressions::remove_source())
            .send()
            .await;
        condition_met(result)
    }

    async fn get_source(&self, id: &str) -> Result<Option<SourceEntry>, StoreError> {
        self.get(SOURCES_PK.into(), id.into())
            .await?
            .map(|item| source_entry(&item))
            .transpose()
    }

    async fn list_sources(&self) -> Result<Vec<SourceEntry>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(SOURCES_PK))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut sources = Vec::new();
        while let Some(item) = pages.next().await {
            sources.push(source_entry(&item.map_err(store_error)?)?);
        }
        Ok(sources)
    }
}
