//! The one place where S3 SDK errors become orch errors.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use orch_core::error::Error;

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "s3";

/// What an S3 error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Transient: the same call may succeed later (with the service's hint, if any).
    Retryable(Option<Duration>),
    /// The object asked for does not exist.
    MissingObject,
    /// The bucket does not exist.
    MissingBucket,
    /// The bucket name belongs to someone else.
    BucketTaken,
    /// The credentials are missing, wrong, expired, or not allowed to do this.
    Credentials,
    /// The bucket lives in another region than the one configured.
    WrongRegion,
    /// The request broke one of S3's rules.
    Invalid,
}

/// Classifies an S3 error code and HTTP status (HEAD answers carry no body, so only the
/// status).
pub(crate) fn classify(code: &str, status: u16) -> Class {
    match code {
        // S3 asks to slow down; the SDK already backed off `max_attempts` times.
        "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
            Class::Retryable(Some(Duration::from_secs(1)))
        }
        "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "RequestTimeTooSkewed" => Class::Retryable(None),
        // A conflicting operation on the same bucket or key is in progress.
        "OperationAborted" | "ConditionalRequestConflict" => Class::Retryable(Some(Duration::from_secs(1))),
        // The body arrived damaged (its checksum did not match): sending it again fixes it.
        "BadDigest" | "XAmzContentSHA256Mismatch" | "IncompleteBody" => Class::Retryable(None),
        // The multipart upload vanished under us (aborted by a lifecycle rule): a new put works.
        "NoSuchUpload" => Class::Retryable(None),
        "NoSuchKey" | "NotFound" => Class::MissingObject,
        "NoSuchBucket" => Class::MissingBucket,
        "BucketAlreadyExists" => Class::BucketTaken,
        "AccessDenied"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "AllAccessDisabled"
        | "AccountProblem"
        | "InvalidSecurity"
        | "MissingSecurityHeader" => Class::Credentials,
        "PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException" => {
            Class::WrongRegion
        }
        "EntityTooLarge"
        | "EntityTooSmall"
        | "InvalidArgument"
        | "InvalidRequest"
        | "InvalidPart"
        | "InvalidPartOrder"
        | "InvalidBucketName"
        | "InvalidDigest"
        | "KeyTooLongError"
        | "MalformedXML"
        | "MetadataTooLarge"
        | "InvalidObjectState"
        | "InvalidStorageClass"
        | "MethodNotAllowed" => Class::Invalid,
        // Unknown codes (and HEAD answers, which have none): the status decides.
        _ => match status {
            429 | 500..=599 => Class::Retryable(None),
            404 => Class::MissingObject,
            401 | 403 => Class::Credentials,
            301 | 307 => Class::WrongRegion,
            _ => Class::Invalid,
        },
    }
}

/// Where an error happened, named in every message.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// `S3 bucket "b" at http://127.0.0.1:5000` (endpoint redacted).
    pub(crate) place: String,
}

/// Turns an SDK error of operation `op` (about `key`, if any) into orch's [`Error`].
pub(crate) fn map_err<E>(e: SdkError<E>, op: &str, key: Option<&str>, ctx: &Ctx) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let call = orch_aws::Call { backend: BACKEND, section: "storage", op, place: &ctx.place };
    orch_aws::map_sdk_error(e, &call, |r, source| {
        from_class(classify(&r.code, r.status), op, key, ctx, &r.detail, Some(source))
    })
}

/// The orch error for a classified failure.
pub(crate) fn from_class(
    class: Class,
    op: &str,
    key: Option<&str>,
    ctx: &Ctx,
    detail: &str,
    source: Option<orch_core::error::BoxError>,
) -> Error {
    let place = &ctx.place;
    match class {
        Class::Retryable(retry_after) => Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("{op} on {place} failed: {detail}"),
            retry_after,
            source,
        },
        Class::MissingObject => match key {
            Some(k) => Error::not_found(format!("object {k} in {place}")),
            None => Error::invalid_input("storage.bucket", format!("{op} on {place}: {detail}")),
        },
        Class::MissingBucket => Error::invalid_input(
            "storage.bucket",
            format!(
                "{place} does not exist ({detail}); run `orchestrator setup` to create it, or fix the name/endpoint"
            ),
        ),
        Class::BucketTaken => Error::invalid_input(
            "storage.bucket",
            format!(
                "{place}: the name is taken by another account ({detail}); bucket names are global, choose another"
            ),
        ),
        Class::Credentials => Error::invalid_input(
            "storage.access_key_id",
            format!(
                "{op} on {place} was refused: {detail}; check the credentials (access_key_id/secret_access_key or \
                 the AWS default chain) and that their policy allows s3:{op} on the bucket"
            ),
        ),
        Class::WrongRegion => Error::invalid_input(
            "storage.region",
            format!("{op} on {place}: {detail}; the bucket is in another region, set storage.region to it"),
        ),
        Class::Invalid => Error::invalid_input("s3 request", format!("{op} on {place}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_are_retryable() {
        for code in ["SlowDown", "InternalError", "ServiceUnavailable", "BadDigest", "NoSuchUpload", "OperationAborted"]
        {
            assert!(matches!(classify(code, 400), Class::Retryable(_)), "{code}");
        }
        assert!(matches!(classify("", 503), Class::Retryable(None)));
        assert!(matches!(classify("", 429), Class::Retryable(None)));
    }

    #[test]
    fn fatal_codes_are_classified() {
        assert_eq!(classify("NoSuchKey", 404), Class::MissingObject);
        assert_eq!(classify("", 404), Class::MissingObject);
        assert_eq!(classify("NoSuchBucket", 404), Class::MissingBucket);
        assert_eq!(classify("AccessDenied", 403), Class::Credentials);
        assert_eq!(classify("", 403), Class::Credentials);
        assert_eq!(classify("PermanentRedirect", 301), Class::WrongRegion);
        assert_eq!(classify("EntityTooLarge", 400), Class::Invalid);
        assert_eq!(classify("BucketAlreadyExists", 409), Class::BucketTaken);
    }

    #[test]
    fn classes_become_orch_errors_with_the_place() {
        let ctx = Ctx { place: "S3 bucket \"b\" at http://h/".into() };
        let e = from_class(Class::MissingObject, "GetObject", Some("a/b"), &ctx, "NoSuchKey", None);
        assert!(matches!(e, Error::NotFound { .. }) && e.to_string().contains("a/b"), "{e}");
        let e = from_class(Class::MissingBucket, "PutObject", Some("a"), &ctx, "NoSuchBucket", None);
        let text = e.to_string();
        assert!(!e.is_retryable() && text.contains("storage.bucket") && text.contains("setup"), "{text}");
        let e = from_class(Class::Retryable(Some(Duration::from_secs(1))), "PutObject", None, &ctx, "SlowDown", None);
        assert!(e.is_retryable() && e.retry_after() == Some(Duration::from_secs(1)));
    }
}
