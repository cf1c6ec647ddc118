//! Counts the AWS requests a client sends, by service and operation, at the SDK level: an
//! interceptor sees every HTTP attempt (retries included, since each is billed), so the
//! figure is what the account would be charged for, whatever code path made the call.
//!
//! DynamoDB on demand bills capacity units, not requests. The counter asks DynamoDB for them:
//! it adds `"ReturnConsumedCapacity": "TOTAL"` to each request that does not ask already and
//! adds up the `ConsumedCapacity` of each answer, which is what the service charged (an
//! update billed by the stored item's size, a read of an eventually consistent half unit).
//! Two exceptions. A transaction's write units are worked out from its items as DynamoDB's
//! pricing page states them (each item's size in KiB, rounded up, twice), because DynamoDB
//! Local reports transactions otherwise (two units for three 10-byte puts); an update in a
//! transaction is sized by its key and the values it sets, which understates an update of a
//! larger stored item. And an answer without units (an error, a cancelled transaction) is
//! estimated the same way from its request.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared by every client it is attached to; clones count into the same table.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, Requests>>>,
}

/// One operation's requests so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Requests {
    pub requests: u64,
    /// DynamoDB: read or write capacity units, as the service reported them (0 for other
    /// services; see the module doc).
    pub capacity_units: f64,
    /// DynamoDB: how many answered requests had no units in their answer and were estimated
    /// (transactions are always worked out from their items, and counted here only when
    /// their answer had no units either).
    pub estimated: u64,
}

/// The DynamoDB operations that take `ReturnConsumedCapacity`.
const REPORTS_CAPACITY: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
];

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

    fn add(&self, name: String, requests: u64, units: f64, estimated: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.entry(name).or_default();
        entry.requests += requests;
        entry.capacity_units += units;
        entry.estimated += estimated;
    }
}

/// A request's estimated units, kept for an answer that reports none.
#[derive(Clone, Copy, Debug)]
struct Estimate(u64);

impl Storable for Estimate {
    type Storer = StoreReplace<Self>;
}

/// `"Service.Operation"` of the request under way.
fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>().map_or("unknown".to_string(), |m| {
        format!("{}.{}", m.service(), m.name())
    })
}

fn is_dynamodb(m: &Metadata) -> bool {
    m.service().eq_ignore_ascii_case("dynamodb")
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "TrawlRequestCounter"
    }

    /// Reads a DynamoDB request's JSON once: its estimated units, kept for an answer that
    /// reports none, and the request asking for its consumed capacity.
    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(m) = cfg.load::<Metadata>().filter(|m| is_dynamodb(m)) else {
            return Ok(());
        };
        let reports = REPORTS_CAPACITY.contains(&m.name());
        let request = context.request_mut();
        let Some(mut json) = request.body().bytes().and_then(request_json) else {
            return Ok(());
        };
        let estimate = Estimate(estimated_units(m.name(), &json));
        cfg.interceptor_state().store_put(estimate);
        let Some(body) = reports.then(|| with_capacity_asked(&mut json)).flatten() else {
            return Ok(());
        };
        let length = body.len().to_string();
        *request.body_mut() = SdkBody::from(body);
        if request.headers().contains_key("content-length") {
            request.headers_mut().insert("content-length", length);
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.add(operation(cfg), 1, 0.0, 0);
        Ok(())
    }

    /// The units of an attempt that was answered (one that was not is counted as a request
    /// above, with no units).
    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(m) = cfg.load::<Metadata>().filter(|m| is_dynamodb(m)) else {
            return Ok(());
        };
        let transaction = m.name() == "TransactWriteItems";
        let name = operation(cfg);
        let reported = context.response().body().bytes().and_then(consumed_units);
        match reported.filter(|_| !transaction) {
            Some(units) => self.add(name, 0, units, 0),
            None => {
                let units = cfg.load::<Estimate>().map_or(1, |e| e.0);
                self.add(name, 0, units as f64, u64::from(reported.is_none()))
            }
        }
        Ok(())
    }
}

fn request_json(body: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(body).ok()
}

/// The request's body asking for its consumed capacity, if it did not ask already.
fn with_capacity_asked(request: &mut serde_json::Value) -> Option<Vec<u8>> {
    let fields = request.as_object_mut()?;
    if fields.contains_key("ReturnConsumedCapacity") {
        return None;
    }
    fields.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
    serde_json::to_vec(request).ok()
}

/// The capacity units a DynamoDB answer reports (one `ConsumedCapacity`, or one per table).
fn consumed_units(body: &[u8]) -> Option<f64> {
    let answer = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let units = |c: &serde_json::Value| c.get("CapacityUnits").and_then(|u| u.as_f64());
    match answer.get("ConsumedCapacity")? {
        serde_json::Value::Array(tables) => tables.iter().map(units).sum(),
        one => units(one),
    }
}

/// Estimated capacity units of one DynamoDB request from its JSON (see the module doc).
fn estimated_units(operation: &str, request: &serde_json::Value) -> u64 {
    let units = |bytes: u64| bytes.div_ceil(1024).max(1);
    let tables = |key: &str| {
        request
            .get(key)
            .and_then(|v| v.as_object())
            .into_iter()
            .flat_map(|tables| tables.values())
    };
    match operation {
        "TransactWriteItems" => request["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|action| 2 * units(transaction_item_size(action)))
            .sum(),
        "TransactGetItems" => 2 * request["TransactItems"].as_array().map_or(0, Vec::len) as u64,
        "BatchWriteItem" => tables("RequestItems")
            .filter_map(|writes| writes.as_array())
            .flatten()
            .map(|w| {
                units(item_size(&w["PutRequest"]["Item"]) + item_size(&w["DeleteRequest"]["Key"]))
            })
            .sum(),
        "BatchGetItem" => tables("RequestItems")
            .map(|t| t["Keys"].as_array().map_or(0, Vec::len) as u64)
            .sum(),
        "PutItem" => units(item_size(&request["Item"])),
        _ => 1,
    }
}

/// The bytes one action of a transaction writes: a put's item; an update's key and the
/// values it sets; a delete's or condition check's key.
fn transaction_item_size(action: &serde_json::Value) -> u64 {
    let Some((kind, action)) = action.as_object().and_then(|a| a.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "Put" => item_size(&action["Item"]),
        "Update" => item_size(&action["Key"]) + item_size(&action["ExpressionAttributeValues"]),
        _ => item_size(&action["Key"]),
    }
}

/// An item's size as DynamoDB counts it: each attribute's name and value in bytes.
fn item_size(item: &serde_json::Value) -> u64 {
    item.as_object().map_or(0, |attributes| {
        attributes
            .iter()
            .map(|(name, value)| name.len() as u64 + value_size(value))
            .sum()
    })
}

/// A typed value's size (`{"S": …}`, `{"N": …}`, `{"B": base64}`, lists, maps, sets): strings
/// by their UTF-8 bytes, numbers by about half their digits, binary by its decoded bytes, a
/// list or map 3 bytes plus a byte and the size of each element.
fn value_size(value: &serde_json::Value) -> u64 {
    let Some((kind, v)) = value.as_object().and_then(|v| v.iter().next()) else {
        return 0;
    };
    let string = |v: &serde_json::Value| v.as_str().map_or(0, str::len) as u64;
    let number = |v: &serde_json::Value| {
        let digits = v
            .as_str()
            .map_or(0, |n| n.chars().filter(char::is_ascii_digit).count());
        (digits as u64).div_ceil(2) + 1
    };
    let binary = |v: &serde_json::Value| {
        let encoded = v.as_str().unwrap_or_default();
        aws_smithy_types::base64::decode(encoded).map_or(encoded.len(), |b| b.len()) as u64
    };
    let each =
        |f: &dyn Fn(&serde_json::Value) -> u64| v.as_array().map_or(0, |a| a.iter().map(f).sum());
    match kind.as_str() {
        "S" => string(v),
        "N" => number(v),
        "B" => binary(v),
        "SS" => each(&string),
        "NS" => each(&number),
        "BS" => each(&binary),
        "L" => 3 + each(&|e| 1 + value_size(e)),
        "M" => {
            3 + v.as_object().map_or(0, |m| {
                m.iter()
                    .map(|(name, e)| 1 + name.len() as u64 + value_size(e))
                    .sum()
            })
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_asks_for_its_capacity_once() {
        let mut request = request_json(br#"{"TableName":"t","Key":{}}"#).unwrap();
        let asked = with_capacity_asked(&mut request).unwrap();
        let asked: serde_json::Value = serde_json::from_slice(&asked).unwrap();
        assert_eq!(asked["ReturnConsumedCapacity"], "TOTAL");
        assert_eq!(asked["TableName"], "t");
        let mut asking = request_json(br#"{"ReturnConsumedCapacity":"INDEXES"}"#).unwrap();
        assert!(with_capacity_asked(&mut asking).is_none());
        assert!(request_json(b"not json").is_none());
    }

    #[test]
    fn an_answer_s_units_are_read_whether_one_table_or_several() {
        let one = br#"{"ConsumedCapacity":{"TableName":"t","CapacityUnits":4.0}}"#;
        assert_eq!(consumed_units(one), Some(4.0));
        let several = br#"{"ConsumedCapacity":[{"TableName":"t","CapacityUnits":0.5},
            {"TableName":"u","CapacityUnits":6.0}]}"#;
        assert_eq!(consumed_units(several), Some(6.5));
        assert_eq!(consumed_units(br#"{"Item":{}}"#), None);
        assert_eq!(
            consumed_units(br#"{"__type":"x#TransactionCanceledException"}"#),
            None
        );
    }

    #[test]
    fn a_transaction_is_two_units_per_kib_of_each_item_binary_by_its_bytes() {
        let bytes = |n: usize| aws_smithy_types::base64::encode(vec![7u8; n]);
        // 900 bytes of binary is 1,200 of base64: one unit by the item, two by its JSON.
        let body = serde_json::json!({"TransactItems": [
            {"Put": {"Item": {"pk": {"S": "a"}, "b": {"B": bytes(900)}}}},
            {"Put": {"Item": {"pk": {"S": "b"}, "b": {"B": bytes(1100)}}}},
            {"Update": {"Key": {"pk": {"S": "c"}}, "ExpressionAttributeValues": {":n": {"N": "1"}}}},
            {"ConditionCheck": {"Key": {"pk": {"S": "d"}}}},
        ]});
        assert_eq!(
            estimated_units("TransactWriteItems", &body),
            2 * (1 + 2 + 1 + 1)
        );
    }

    #[test]
    fn an_item_s_size_counts_names_and_values_as_dynamodb_does() {
        let item = serde_json::json!({
            "pk": {"S": "é"},
            "n": {"N": "12345"},
            "l": {"L": [{"S": "ab"}, {"BOOL": true}]},
            "m": {"M": {"k": {"S": "v"}}},
            "ss": {"SS": ["a", "bc"]},
        });
        // pk 2+2, n 1+4, l 1+3+(1+2)+(1+1), m 1+3+(1+1+1), ss 2+3
        assert_eq!(item_size(&item), 4 + 5 + 9 + 7 + 5);
    }
}
