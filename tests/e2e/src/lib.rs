//! Shared set-up for the end-to-end tests: one LocalStack per test run (started by
//! `.ci/run`), one runner per test, and tests serialized because they share the stack's queue.

use anyhow::Result;
use std::collections::BTreeMap;
use std::fs::File;
use trawl_runner::{connect_local, repo_root, Faults, Runner};

/// Held for the duration of a test: other e2e tests (threads or processes) wait.
pub struct StackLock(#[allow(dead_code)] File);

pub fn lock_stack() -> StackLock {
    let dir = repo_root().join(".local");
    std::fs::create_dir_all(&dir).expect("creating .local");
    let file = File::create(dir.join("e2e.lock")).expect("creating the e2e lock file");
    file.lock().expect("locking the e2e lock file");
    StackLock(file)
}

pub async fn runner(faults: Faults) -> Result<Runner> {
    connect_local(faults).await
}

/// A source id no other test run has used, so runs on the same emulator do not collide.
pub fn unique_source_id(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

/// Keys under a prefix with their last-modified times and ETags.
pub async fn list_objects(
    runner: &Runner,
    prefix: &str,
) -> Result<BTreeMap<String, (String, String)>> {
    let config = trawl::aws::sdk_config().await;
    let s3 = trawl::aws::s3_client(&config);
    let bucket = runner.stack.get("BucketName")?;
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut out = BTreeMap::new();
    while let Some(page) = pages.next().await {
        for o in page?.contents() {
            out.insert(
                o.key().unwrap_or_default().to_string(),
                (
                    o.last_modified().map(|t| t.to_string()).unwrap_or_default(),
                    o.e_tag().unwrap_or_default().to_string(),
                ),
            );
        }
    }
    Ok(out)
}

pub async fn get_json(runner: &Runner, key: &str) -> Result<serde_json::Value> {
    let body = runner
        .services
        .objects
        .get(key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no object {key}"))?;
    Ok(serde_json::from_slice(&body)?)
}
