//! The one error type of orch-core and of every port.

use std::time::Duration;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with orch's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a port or the engine can fail with.
///
/// Adapters classify their SDK errors into these variants (one table per adapter); the engine
/// only reads [`Error::is_retryable`] and [`Error::retry_after`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. `job 3f…`.
        what: String,
    },
    /// A create-if-absent found the key taken.
    #[error("{what} already exists")]
    AlreadyExists {
        /// The key that is taken.
        what: String,
    },
    /// A conditional write lost: the version or fencing epoch moved on.
    #[error("version conflict on {what}: it was changed by someone else (stale lease or concurrent update)")]
    VersionConflict {
        /// The record written.
        what: String,
    },
    /// The service is down, overloaded or timed out; trying later may work.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        /// Which port or service.
        backend: String,
        /// What happened.
        message: String,
        /// A hint from the service about when to retry.
        retry_after: Option<Duration>,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Input failed validation: says which field and how to fix it.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field, argument or key.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The backend does not offer this operation.
    #[error("{operation} is not supported by {backend}")]
    Unsupported {
        /// The operation asked for.
        operation: String,
        /// The backend asked.
        backend: String,
    },
    /// An outside system refused the request for good (e.g. a settlement contract rejecting an
    /// update, a prover reporting an invalid input). Retrying the same request will not help.
    #[error("{backend} rejected the request: {reason}")]
    Rejected {
        /// Which port or service.
        backend: String,
        /// Its reason.
        reason: String,
    },
    /// A bug or a broken invariant inside orch or an adapter.
    #[error("internal error: {message}")]
    Internal {
        /// What broke.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The engine is shutting down and did not start the operation.
    #[error("shutting down")]
    ShuttingDown,
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::VersionConflict { .. })
    }

    /// How long the service asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// `NotFound` for `what`.
    pub fn not_found(what: impl Into<String>) -> Error {
        Error::NotFound { what: what.into() }
    }

    /// `AlreadyExists` for `what`.
    pub fn already_exists(what: impl Into<String>) -> Error {
        Error::AlreadyExists { what: what.into() }
    }

    /// `VersionConflict` on `what`.
    pub fn conflict(what: impl Into<String>) -> Error {
        Error::VersionConflict { what: what.into() }
    }

    /// `InvalidInput` naming the field and the fix.
    pub fn invalid_input(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidInput { field: field.into(), reason: reason.into() }
    }

    /// `Unavailable` without a source.
    pub fn unavailable(backend: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Unavailable { backend: backend.into(), message: message.into(), retry_after: None, source: None }
    }

    /// `Unavailable` wrapping an underlying error.
    pub fn unavailable_from(backend: impl Into<String>, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        Error::Unavailable {
            backend: backend.into(),
            message: source.to_string(),
            retry_after: None,
            source: Some(source),
        }
    }

    /// `Unsupported` operation on a backend.
    pub fn unsupported(operation: impl Into<String>, backend: impl Into<String>) -> Error {
        Error::Unsupported { operation: operation.into(), backend: backend.into() }
    }

    /// `Rejected` by an outside system.
    pub fn rejected(backend: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Rejected { backend: backend.into(), reason: reason.into() }
    }

    /// `Internal` with a message.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal { message: message.into(), source: None }
    }

    /// `Internal` wrapping an underlying error.
    pub fn internal_from(message: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Internal { message: message.into(), source: Some(source.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(Error::unavailable("db", "down").is_retryable());
        assert!(Error::conflict("job").is_retryable());
        assert!(!Error::invalid_input("x", "bad").is_retryable());
        assert!(!Error::rejected("l1", "nope").is_retryable());
        assert!(!Error::not_found("job").is_retryable());
    }

    #[test]
    fn retry_after_is_carried() {
        let e = Error::Unavailable {
            backend: "sqs".into(),
            message: "throttled".into(),
            retry_after: Some(Duration::from_secs(3)),
            source: None,
        };
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }
}
