//! The one mapping from the AWS SDKs' errors to [`StoreError`]: a request the service refuses
//! as such is permanent, everything else (throttling, timeouts, the network, a 5xx) transient.

use crate::ports::StoreError;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::error::operation::BuildError;

/// Error codes that mean the request itself is wrong for the service, so sending it again
/// fails again (DynamoDB, S3 and SQS spellings).
const PERMANENT_CODES: &[&str] = &[
    "ValidationException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ItemCollectionSizeLimitExceededException",
    "NoSuchBucket",
    "InvalidBucketName",
    "KeyTooLongError",
    "InvalidArgument",
    "EntityTooLarge",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "InvalidMessageContents",
    "InvalidParameterValue",
    "MessageTooLong",
    "BatchRequestTooLong",
];

pub(crate) fn is_permanent_code(code: &str) -> bool {
    PERMANENT_CODES.contains(&code)
}

/// What went wrong doing `what`, classified.
pub(crate) fn sdk_error<E, R>(what: impl std::fmt::Display, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let permanent = match &e {
        // A request the SDK could not even build: ours to fix, not the network's.
        SdkError::ConstructionFailure(_) => true,
        SdkError::ServiceError(s) => s.err().code().is_some_and(is_permanent_code),
        _ => false,
    };
    let message = format!("{what}: {}", DisplayErrorContext(&e));
    if permanent {
        StoreError::permanent(message)
    } else {
        StoreError::new(message)
    }
}

/// Errors the adapters turn into a [`StoreError`] with `store_error`.
pub(crate) trait IntoStoreError {
    fn into_store_error(self) -> StoreError;
}

impl<E, R> IntoStoreError for SdkError<E, R>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    fn into_store_error(self) -> StoreError {
        sdk_error("dynamodb", self)
    }
}

impl IntoStoreError for BuildError {
    fn into_store_error(self) -> StoreError {
        StoreError::permanent(format!("building a request: {self}"))
    }
}

pub(crate) fn store_error(e: impl IntoStoreError) -> StoreError {
    e.into_store_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_the_request_are_permanent_and_the_rest_transient() {
        assert!(is_permanent_code("ValidationException"));
        assert!(is_permanent_code("KeyTooLongError"));
        assert!(!is_permanent_code("ProvisionedThroughputExceededException"));
        assert!(!is_permanent_code("ThrottlingException"));
        assert!(!is_permanent_code("InternalServerError"));
        assert!(!is_permanent_code("TransactionConflict"));
    }
}
