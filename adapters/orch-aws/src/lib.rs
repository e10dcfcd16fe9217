#![doc = include_str!("../README.md")]

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use orch_core::error::{BoxError, Error, Result};
use orch_core::secret::Secret;

/// Region used with an endpoint override when neither the settings nor the default chain name
/// one: emulators and S3-compatible stores accept any region, and the SDK refuses to sign
/// without one.
pub const EMULATOR_REGION: &str = "us-east-1";

/// How to reach AWS, as one config section (`[queue]`, `[storage]`) says.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The section's name, used to name its keys in errors (`queue.region`).
    pub section: &'static str,
    /// Region; `None` leaves it to the default chain (`AWS_REGION`, the profile).
    pub region: Option<&'a str>,
    /// Endpoint override (an emulator, an S3-compatible store); `None` is AWS itself.
    pub endpoint: Option<&'a str>,
    /// Static credentials; without both, the default chain provides them.
    pub access_key_id: Option<&'a Secret<String>>,
    /// See [`Settings::access_key_id`].
    pub secret_access_key: Option<&'a Secret<String>>,
    /// Session token for temporary static credentials.
    pub session_token: Option<&'a Secret<String>>,
    /// Time allowed per attempt of a call.
    pub request_timeout: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Attempts per call, the first included, before the SDK gives up.
    pub max_attempts: u32,
}

/// The SDK configuration `settings` describe, its credentials checked once.
///
/// Errors: no region anywhere (and no endpoint override) is an `InvalidInput` on
/// `<section>.region`; a credential source that yields nothing is an `InvalidInput` on
/// `<section>.access_key_id` that says where credentials can come from. Secrets are never
/// part of a message.
pub async fn sdk_config(settings: &Settings<'_>) -> Result<SdkConfig> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(settings.connect_timeout)
        .operation_attempt_timeout(settings.request_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(timeouts);
    if let Some(region) = settings.region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(endpoint) = settings.endpoint {
        loader = loader.endpoint_url(endpoint.trim_end_matches('/'));
    }
    if let (Some(id), Some(secret)) = (settings.access_key_id, settings.secret_access_key) {
        let token = settings.session_token.map(|t| t.expose().clone());
        let static_keys = Credentials::new(id.expose().clone(), secret.expose().clone(), token, None, "orch-config");
        loader = loader.credentials_provider(static_keys);
    }
    let mut sdk = loader.load().await;
    if sdk.region().is_none() {
        if settings.endpoint.is_none() {
            return Err(Error::invalid_input(
                format!("{}.region", settings.section),
                "is not set and the AWS default chain (AWS_REGION, AWS_DEFAULT_REGION, the profile) has none; set it, e.g. \"eu-west-1\"",
            ));
        }
        sdk = sdk.into_builder().region(Region::from_static(EMULATOR_REGION)).build();
    }
    let Some(provider) = sdk.credentials_provider() else {
        return Err(no_credentials(settings.section, "no credential source is configured"));
    };
    if let Err(e) = provider.provide_credentials().await {
        return Err(no_credentials(settings.section, &DisplayErrorContext(&e).to_string()));
    }
    Ok(sdk)
}

fn no_credentials(section: &str, detail: &str) -> Error {
    Error::invalid_input(
        format!("{section}.access_key_id"),
        format!(
            "no AWS credentials found ({detail}); set {section}.access_key_id and {section}.secret_access_key, \
             or provide credentials through the AWS default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
             AWS_PROFILE, web identity, ECS or EC2 instance roles)"
        ),
    )
}

/// Leaves this process without any ambient AWS credentials or region: clears the variables
/// of the default chain and points its files at paths that do not exist. For tests of
/// what a missing credential source looks like; call it before any thread reads the
/// environment (a test binary of its own).
pub fn clear_ambient_aws_environment() {
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_PROFILE",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/orch-test/config");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/orch-test/credentials");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
}

/// A call to an AWS service, as errors name it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Backend name in errors and metrics (`sqs`, `s3`).
    pub backend: &'static str,
    /// The config section whose `endpoint` key a malformed URL is blamed on.
    pub section: &'static str,
    /// The SDK operation (`SendMessageBatch`).
    pub op: &'a str,
    /// What the call was about, endpoint included and redacted
    /// (`SQS queue "orch" at http://127.0.0.1:5000`).
    pub place: &'a str,
}

/// A service's answer refusing a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The service's error code (`ThrottlingException`); empty when the answer had no body
    /// (S3's HEAD).
    pub code: String,
    /// The HTTP status.
    pub status: u16,
    /// `Code (HTTP 400): message`, or `HTTP 404` without a code.
    pub detail: String,
}

/// Turns an SDK error of `call` into orch's [`Error`]: the service's refusals through
/// `refused` (the adapter's table of its codes, given the SDK error as source), everything
/// else here.
pub fn map_sdk_error<E>(
    e: SdkError<E, HttpResponse>,
    call: &Call<'_>,
    refused: impl FnOnce(Refusal, BoxError) -> Error,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let Call { backend, op, place, section } = *call;
    let unavailable = |message: String, e: SdkError<E, HttpResponse>| Error::Unavailable {
        backend: backend.into(),
        message,
        retry_after: None,
        source: Some(Box::new(e)),
    };
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_owned();
            let message = se.err().message().unwrap_or("");
            let status = se.raw().status().as_u16();
            let detail =
                if code.is_empty() { format!("HTTP {status}") } else { format!("{code} (HTTP {status}): {message}") };
            refused(Refusal { code, status, detail }, Box::new(e))
        }
        // No answer in time (connect or attempt timeout): the network or the service is slow.
        SdkError::TimeoutError(_) => unavailable(format!("{op} on {place} timed out: {}", DisplayErrorContext(&e)), e),
        // A URL the HTTP client cannot use at all: the endpoint setting is wrong.
        SdkError::DispatchFailure(d) if d.is_user() => Error::invalid_input(
            format!("{section}.endpoint"),
            format!("{op} on {place} could not be sent: {}; check the endpoint", DisplayErrorContext(&e)),
        ),
        // Connection refused or reset, DNS, TLS, credentials that could not be refreshed:
        // the next try may work.
        SdkError::DispatchFailure(_) => {
            unavailable(format!("cannot reach {place} for {op}: {}", DisplayErrorContext(&e)), e)
        }
        // A truncated or garbled answer (a proxy cut it, a load balancer's error page).
        SdkError::ResponseError(_) => {
            unavailable(format!("{op} on {place} got an unreadable response: {}", DisplayErrorContext(&e)), e)
        }
        // The request could not be built: a bug in the adapter, not bad input.
        _ => Error::internal_from(format!("{op} on {place}: {}", DisplayErrorContext(&e)), e),
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    const CALL: Call<'static> =
        Call { backend: "sqs", section: "queue", op: "SendMessage", place: "SQS queue \"q\" at http://h/" };

    fn refusal(code: Option<&str>, status: u16) -> SdkError<ErrorMetadata, HttpResponse> {
        let mut meta = ErrorMetadata::builder().message("slow down");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(meta.build(), raw)
    }

    #[test]
    fn refusals_go_to_the_adapter_table_with_code_status_and_detail() {
        let mut seen = None;
        let e = map_sdk_error(refusal(Some("ThrottlingException"), 400), &CALL, |r, source| {
            seen = Some(r);
            Error::Unavailable { backend: "sqs".into(), message: "x".into(), retry_after: None, source: Some(source) }
        });
        assert!(e.is_retryable());
        let r = seen.unwrap();
        assert_eq!((r.code.as_str(), r.status), ("ThrottlingException", 400));
        assert_eq!(r.detail, "ThrottlingException (HTTP 400): slow down");
        let mut seen = None;
        map_sdk_error(refusal(None, 404), &CALL, |r, _| {
            seen = Some(r);
            Error::internal("x")
        });
        assert_eq!(seen.unwrap().detail, "HTTP 404", "an answer without a body has only its status");
    }

    #[test]
    fn transport_failures_are_retryable_and_name_the_call() {
        let e = map_sdk_error(
            SdkError::<ErrorMetadata, HttpResponse>::timeout_error("took too long"),
            &CALL,
            |_, _| unreachable!(),
        );
        assert!(e.is_retryable(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("SendMessage") && text.contains("SQS queue \"q\"") && text.contains("timed out"),
            "{text}"
        );
        let e = map_sdk_error(
            SdkError::<ErrorMetadata, HttpResponse>::construction_failure("bad"),
            &CALL,
            |_, _| unreachable!(),
        );
        assert!(!e.is_retryable() && matches!(e, Error::Internal { .. }), "{e:?}");
    }
}
