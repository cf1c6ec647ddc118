//! Counts the AWS requests a client sends, by service and operation, at the SDK level: an
//! interceptor sees every HTTP attempt (retries included, since each is billed), so the
//! figure is what the account would be charged for, whatever code path made the call.
//!
//! DynamoDB on demand bills capacity units, not requests, so for its calls the counter also
//! estimates units from the request body: items touched, writes by their size in KiB
//! (rounded up per item), transactions at twice the units, reads at one unit per item.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared by every client it is attached to; clones count into the same table.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, Requests>>>,
}

/// One operation's requests so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Requests {
    pub requests: u64,
    /// DynamoDB: estimated read or write capacity units (0 for other services).
    pub capacity_units: u64,
}

impl RequestCounter {
    /// `"Service.Operation"` → requests sent so far.
    pub fn snapshot(&self) -> BTreeMap<String, Requests> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "TrawlRequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (name, units) = match cfg.load::<Metadata>() {
            Some(m) => {
                let units = if m.service().eq_ignore_ascii_case("dynamodb") {
                    context
                        .request()
                        .body()
                        .bytes()
                        .map_or(1, |body| dynamodb_units(m.name(), body))
                } else {
                    0
                };
                (format!("{}.{}", m.service(), m.name()), units)
            }
            None => ("unknown".to_string(), 0),
        };
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(name).or_default();
        entry.requests += 1;
        entry.capacity_units += units;
        Ok(())
    }
}

/// Estimated capacity units of one DynamoDB request from its JSON body (see the module doc).
fn dynamodb_units(operation: &str, body: &[u8]) -> u64 {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 1;
    };
    let kib = |v: &serde_json::Value| (v.to_string().len() as u64).div_ceil(1024).max(1);
    let items = |key: &str| -> Vec<serde_json::Value> {
        request
            .get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    match operation {
        "TransactWriteItems" => items("TransactItems").iter().map(|i| 2 * kib(i)).sum(),
        "TransactGetItems" => 2 * items("TransactItems").len() as u64,
        "BatchWriteItem" => request["RequestItems"].as_object().map_or(0, |tables| {
            tables
                .values()
                .filter_map(|r| r.as_array())
                .flatten()
                .map(kib)
                .sum()
        }),
        "BatchGetItem" => request["RequestItems"].as_object().map_or(0, |tables| {
            tables
                .values()
                .map(|t| t["Keys"].as_array().map_or(0, Vec::len) as u64)
                .sum()
        }),
        "PutItem" => kib(&request["Item"]),
        _ => 1,
    }
}
