//! [`ObjectStore`] on S3.

use super::errors::sdk_error;
use crate::ports::{ObjectStore, StoreError};
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;

#[derive(Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
}

impl S3Objects {
    /// What lies directly under `prefix` (which ends with `/`), each list sorted: the
    /// "folders" (common prefixes with delimiter `/`) and the objects' keys.
    async fn list(&self, prefix: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let (mut folders, mut files) = (Vec::new(), Vec::new());
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(format_args!("s3 list {prefix}"), e))?;
            folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            files.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        folders.sort();
        files.sort();
        Ok((folders, files))
    }

    pub fn new(client: Client, bucket: impl Into<String>) -> S3Objects {
        S3Objects {
            client,
            bucket: bucket.into(),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error(format_args!("s3 put {key}"), e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::new(format!("s3 get {key}: {e}")))?;
                Ok(Some(body.into_bytes()))
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(sdk_error(format_args!("s3 get {key}"), e)),
        }
    }

    /// GetObject with `Range: bytes=a-b`. S3 answers a range starting past the end with 416
    /// and one running past it with the bytes there are: both are refused as a short read.
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        let short = |got: &dyn std::fmt::Display| {
            StoreError::permanent(format!(
                "s3 get {key}: bytes {offset}+{length} asked, {got}"
            ))
        };
        if length == 0 {
            // A range cannot be empty: whether the object exists is all there is to say.
            return match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => Ok(Some(Bytes::new())),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
                Err(e) => Err(sdk_error(format_args!("s3 head {key}"), e)),
            };
        }
        let last = offset
            .checked_add(length - 1)
            .ok_or_else(|| short(&"past any object's end"))?;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={offset}-{last}"))
            .send()
            .await
        {
            Ok(out) => {
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::new(format!("s3 get {key}: {e}")))?
                    .into_bytes();
                if body.len() as u64 != length {
                    return Err(short(&format_args!("{} read", body.len())));
                }
                Ok(Some(body))
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                Err(short(&"the object is shorter"))
            }
            Err(e) => Err(sdk_error(format_args!("s3 get {key}"), e)),
        }
    }

    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list(prefix).await?.0)
    }

    async fn files(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list(prefix).await?.1)
    }

    /// ListObjectsV2 without a delimiter, each page (up to 1,000 keys) deleted with one
    /// DeleteObjects; a key S3 reports it could not delete fails the call.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut deleted = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(format_args!("s3 list {prefix}"), e))?;
            let objects = page
                .contents()
                .iter()
                .filter_map(|o| ObjectIdentifier::builder().key(o.key()?).build().ok())
                .collect::<Vec<_>>();
            if objects.is_empty() {
                continue;
            }
            let count = objects.len() as u64;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::permanent(format!("s3 delete {prefix}: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| sdk_error(format_args!("s3 delete {prefix}"), e))?;
            if let Some(e) = out.errors().first() {
                return Err(StoreError::new(format!(
                    "s3 delete {}: {}",
                    e.key().unwrap_or(prefix),
                    e.message().unwrap_or("not deleted")
                )));
            }
            deleted += count;
        }
        Ok(deleted)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        // S3 answers a delete of a missing key with success, which is what callers want.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error(format_args!("s3 delete {key}"), e))?;
        Ok(())
    }
}
