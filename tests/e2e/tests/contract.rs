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
