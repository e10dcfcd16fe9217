//! The one place where SQS SDK errors become orch errors.

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use orch_core::error::{BoxError, Error};

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "sqs";

/// What an SQS error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Transient: the same call may succeed later (with the service's hint, if any).
    Retryable(Option<Duration>),
    /// The queue (or its dead-letter queue) does not exist.
    MissingQueue,
    /// The credentials are missing, wrong, expired, or not allowed to do this.
    Credentials,
    /// The request broke one of SQS's rules (a bad value, a queue with other attributes).
    Invalid,
    /// A receipt handle SQS no longer knows: the message was acked, redelivered or expired.
    StaleReceipt,
}

/// Classifies an SQS error code (query-compatible `AWS.SimpleQueueService.*` or JSON-protocol
/// names both appear, depending on the SDK and the server) and HTTP status.
pub(crate) fn classify(code: &str, status: u16) -> Class {
    let code = code.strip_prefix("AWS.SimpleQueueService.").unwrap_or(code);
    match code {
        // Throttling: SQS asks to slow down; the SDK already backed off `max_attempts` times.
        "ThrottlingException" | "Throttling" | "RequestThrottled" | "KmsThrottled" | "KMS.ThrottlingException" => {
            Class::Retryable(Some(Duration::from_secs(1)))
        }
        "ServiceUnavailable" | "InternalError" | "InternalFailure" | "RequestTimeout" | "RequestTimeoutException" => {
            Class::Retryable(None)
        }
        // A queue of that name was deleted less than 60 s ago; creating it works after that.
        "QueueDeletedRecently" => Class::Retryable(Some(Duration::from_secs(60))),
        // In-flight limit (120k messages received, not yet acked): clears as messages are acked.
        "OverLimit" => Class::Retryable(Some(Duration::from_secs(5))),
        "NonExistentQueue" | "QueueDoesNotExist" => Class::MissingQueue,
        "AccessDenied"
        | "AccessDeniedException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidSecurity"
        | "ExpiredToken"
        | "KMS.AccessDeniedException"
        | "KmsAccessDenied" => Class::Credentials,
        "ReceiptHandleIsInvalid" | "MessageNotInflight" => Class::StaleReceipt,
        "InvalidParameterValue"
        | "InvalidParameterValueException"
        | "InvalidAttributeName"
        | "InvalidAttributeValue"
        | "InvalidMessageContents"
        | "MissingParameter"
        | "BatchEntryIdsNotDistinct"
        | "TooManyEntriesInBatchRequest"
        | "BatchRequestTooLong"
        | "EmptyBatchRequest"
        | "InvalidBatchEntryId"
        | "UnsupportedOperation"
        | "InvalidAddress"
        | "QueueNameExists"
        | "QueueAlreadyExists"
        | "ValidationError" => Class::Invalid,
        // Unknown codes: the status says whose fault it is.
        _ => match status {
            429 | 500..=599 => Class::Retryable(None),
            401 | 403 => Class::Credentials,
            404 => Class::MissingQueue,
            _ => Class::Invalid,
        },
    }
}

/// Where an error happened: the queue and endpoint named in every message.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// `SQS queue "orch" at http://127.0.0.1:5000` (endpoint redacted).
    pub(crate) place: String,
    /// Config key of the queue the call was about (`queue.queue` or `queue.dlq`).
    pub(crate) field: &'static str,
}

/// Turns an SDK error of operation `op` into orch's [`Error`].
pub(crate) fn map_err<E>(e: SdkError<E>, op: &str, ctx: &Ctx) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let call = orch_aws::Call { backend: BACKEND, section: "queue", op, place: &ctx.place };
    orch_aws::map_sdk_error(e, &call, |r, source| {
        from_class(classify(&r.code, r.status), op, ctx, &r.detail, Some(source))
    })
}

/// The orch error for a classified failure.
pub(crate) fn from_class(class: Class, op: &str, ctx: &Ctx, detail: &str, source: Option<BoxError>) -> Error {
    let place = &ctx.place;
    match class {
        Class::Retryable(retry_after) => Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("{op} on {place} failed: {detail}"),
            retry_after,
            source,
        },
        Class::MissingQueue => Error::invalid_input(
            ctx.field,
            format!("{place} does not exist ({detail}); run `orchestrator setup` to create it, or fix the name/region"),
        ),
        Class::Credentials => Error::invalid_input(
            "queue.access_key_id",
            format!(
                "{op} on {place} was refused: {detail}; check the credentials (access_key_id/secret_access_key \
                 or the AWS default chain) and that their policy allows sqs:{op}"
            ),
        ),
        Class::Invalid | Class::StaleReceipt => {
            Error::invalid_input("sqs request", format!("{op} on {place}: {detail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_are_retryable() {
        for code in
            ["ThrottlingException", "AWS.SimpleQueueService.RequestThrottled", "InternalError", "ServiceUnavailable"]
        {
            assert!(matches!(classify(code, 400), Class::Retryable(_)), "{code}");
        }
        assert_eq!(classify("ThrottlingException", 400), Class::Retryable(Some(Duration::from_secs(1))));
        assert!(matches!(classify("SomethingNew", 503), Class::Retryable(None)));
        assert!(matches!(classify("", 429), Class::Retryable(None)));
    }

    #[test]
    fn fatal_codes_are_classified() {
        assert_eq!(classify("AWS.SimpleQueueService.NonExistentQueue", 400), Class::MissingQueue);
        assert_eq!(classify("QueueDoesNotExist", 400), Class::MissingQueue);
        assert_eq!(classify("InvalidClientTokenId", 403), Class::Credentials);
        assert_eq!(classify("AccessDenied", 403), Class::Credentials);
        assert_eq!(classify("SomethingNew", 403), Class::Credentials);
        assert_eq!(classify("InvalidParameterValue", 400), Class::Invalid);
        assert_eq!(classify("QueueAlreadyExists", 400), Class::Invalid);
        assert_eq!(classify("ReceiptHandleIsInvalid", 400), Class::StaleReceipt);
        assert_eq!(classify("AWS.SimpleQueueService.MessageNotInflight", 400), Class::StaleReceipt);
    }

    #[test]
    fn classes_become_orch_errors_with_the_place() {
        let ctx = Ctx { place: "SQS queue \"q\" at http://h/".into(), field: "queue.queue" };
        let e = from_class(Class::Retryable(Some(Duration::from_secs(1))), "SendMessageBatch", &ctx, "slow down", None);
        assert!(e.is_retryable() && e.retry_after() == Some(Duration::from_secs(1)), "{e}");
        let e = from_class(Class::MissingQueue, "ReceiveMessage", &ctx, "gone", None);
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(text.contains("queue.queue") && text.contains("\"q\"") && text.contains("setup"), "{text}");
        let e = from_class(Class::Credentials, "ReceiveMessage", &ctx, "denied", None);
        assert!(!e.is_retryable() && e.to_string().contains("credentials"), "{e}");
    }
}
