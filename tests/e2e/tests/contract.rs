//! The state store contract (`trawl::testing::contract`) on DynamoDB in LocalStack: the
//! same cases the memory and SQLite stores pass, on a table of its own (the deployed one's
//! key schema, no stream), so no e2e test's runner sees these writes.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use trawl::aws::dynamodb::DynamoStore;

const TABLE: &str = "trawl-contract";

async fn store() -> DynamoStore {
    trawl_runner::default_to_local_emulator();
    let client = Client::new(&trawl::aws::sdk_config().await);
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let created = client
        .create_table()
        .table_name(TABLE)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    if let Err(e) = created {
        // Made by an earlier test of this run (or an earlier run on this emulator).
        let e = e.into_service_error();
        assert!(e.is_resource_in_use_exception(), "creating {TABLE}: {e}");
    }
    DynamoStore::new(client, TABLE)
}

trawl::state_store_contract!(store().await);

/// The object store contract on S3 in LocalStack, in a bucket of its own.
mod objects {
    use trawl::aws::s3::S3Objects;

    const BUCKET: &str = "trawl-contract";

    async fn objects() -> S3Objects {
        trawl_runner::default_to_local_emulator();
        let client = trawl::aws::s3_client(&trawl::aws::sdk_config().await);
        if let Err(e) = client.create_bucket().bucket(BUCKET).send().await {
            // Made by an earlier test of this run (or an earlier run on this emulator).
            let e = e.into_service_error();
            assert!(
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists(),
                "creating {BUCKET}: {e}"
            );
        }
        S3Objects::new(client, BUCKET)
    }

    trawl::object_store_contract!(objects().await);
}

/// A resource item written before states were deflated (its `state` the JSON itself, no
/// digest) reads back, and a conditional replace of it holds over exactly that state: the
/// condition's second arm, which only DynamoDB evaluates.
#[tokio::test]
async fn a_state_stored_as_json_before_deflating_reads_back_and_is_replaced_only_over_itself() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use trawl::model::{Outcome, ResourceState};
    use trawl::ports::ResourceStates;

    let store = store().await;
    let client = Client::new(&trawl::aws::sdk_config().await);
    let source = format!("legacy-{}", std::process::id());
    let at = chrono::Utc::now();
    let stored = ResourceState::next(
        None,
        &source,
        "r1",
        "s@1",
        Outcome::Harvested,
        None,
        at,
        None,
    );
    let s = |v: &str| AttributeValue::S(v.to_string());
    client
        .put_item()
        .table_name(TABLE)
        .item("pk", s(&trawl::keys::resources_pk(&source)))
        .item("sk", s("r1"))
        .item("last_outcome", s("harvested"))
        .item("last_session", s("s@1"))
        .item("state", s(&serde_json::to_string(&stored).unwrap()))
        .send()
        .await
        .unwrap();
    let read = store.get_resource(&source, "r1").await.unwrap();
    assert_eq!(read.as_ref(), Some(&stored));

    let next = ResourceState::next(
        Some(&stored),
        &source,
        "r1",
        "s@2",
        Outcome::Unchanged,
        None,
        at,
        None,
    );
    let mut not_stored = stored.clone();
    not_stored.missing_listings = 1;
    assert!(
        !store.replace_resource(&not_stored, &next).await.unwrap(),
        "replaced over a state that is not the stored one"
    );
    assert!(store.replace_resource(&stored, &next).await.unwrap());
    assert_eq!(
        store.get_resource(&source, "r1").await.unwrap(),
        Some(next.clone())
    );
    // Now deflated with a digest: replaced over itself, and not over the JSON it was.
    let last = ResourceState::next(
        Some(&next),
        &source,
        "r1",
        "s@3",
        Outcome::Unchanged,
        None,
        at,
        None,
    );
    assert!(!store.replace_resource(&stored, &last).await.unwrap());
    assert!(store.replace_resource(&next, &last).await.unwrap());
    assert_eq!(store.get_resource(&source, "r1").await.unwrap(), Some(last));
}

/// The benchmarks' request counter: an update at the units DynamoDB reports for it (the size of
/// the item it updates, which no request body shows), a transaction at twice its items' sizes
/// in KiB (binary values by their bytes, not their base64).
#[tokio::test]
async fn the_request_counter_adds_up_the_units_dynamodb_reports() {
    use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

    let _table = store().await;
    let counter = trawl::aws::RequestCounter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&trawl::aws::sdk_config().await)
        .interceptor(counter.clone())
        .build();
    let client = Client::from_conf(config);
    let pk = format!(
        "counted-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let s = |v: &str| AttributeValue::S(v.to_string());
    let put = |sk: &str, payload: usize| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(TABLE)
                    .item("pk", s(&pk))
                    .item("sk", s(sk))
                    .item("payload", AttributeValue::B(vec![7u8; payload].into()))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    // 900 bytes is one write unit as DynamoDB sizes items, two as the request's base64 JSON;
    // a transaction bills each item twice.
    client
        .transact_write_items()
        .transact_items(put("big", 900))
        .transact_items(put("small", 10))
        .transact_items(put("large", 1500))
        .send()
        .await
        .unwrap();
    let updated = client
        .update_item()
        .table_name(TABLE)
        .key("pk", s(&pk))
        .key("sk", s("large"))
        .update_expression("ADD n :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
        .send()
        .await
        .unwrap();
    assert_eq!(
        updated.attributes().and_then(|a| a.get("n")),
        Some(&AttributeValue::N("1".into())),
        "the request still did what it asked"
    );

    let counts = counter.snapshot();
    let transaction = counts["DynamoDB.TransactWriteItems"];
    assert_eq!(
        (transaction.requests, transaction.capacity_units),
        (1, 2.0 * (1.0 + 1.0 + 2.0))
    );
    let update = counts["DynamoDB.UpdateItem"];
    assert_eq!((update.requests, update.capacity_units), (1, 2.0));
    assert_eq!(update.estimated, 0, "the update's units were DynamoDB's");
}
