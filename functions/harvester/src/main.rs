//! The harvester function: an SQS batch of work messages, each handled on its own; failures
//! to retry are returned as partial batch failures. Logic: `trawl::pipeline::harvest`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    trawl::init_tracing();
    let services = trawl::aws::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(trawl::handlers::harvester(services, event.payload).await)
    }))
    .await
}
