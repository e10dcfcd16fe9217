//! The one error type of orch-blob.

use orch_core::Felt;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with orch-blob's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything encoding, decoding and proving DA data can fail with.
///
/// Every variant names the offending field or position so that a CLI user or an operator can
/// find the bad byte without reading code. None of them is retryable: the same input fails the
/// same way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input (JSON, hex, a number, a version string) failed to parse or validate.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field, e.g. `state_diff.nonces[3].nonce` or `blob[0]`.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
        /// The underlying parser error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The state diff cannot be encoded unambiguously (e.g. the same storage key written twice).
    #[error("invalid state diff: {field} {value} {reason}")]
    InconsistentStateDiff {
        /// Where the conflict is, e.g. `storage_diffs[2].storage_entries[5].key`.
        field: String,
        /// The duplicated or conflicting value.
        value: Felt,
        /// Why it cannot be encoded.
        reason: &'static str,
    },
    /// A contract's nonce does not fit in the 64-bit nonce field of the DA word.
    #[error("nonce {nonce} of contract {address} (from {source_of_nonce}) does not fit in the 64-bit nonce field of the DA word")]
    NonceOutOfRange {
        /// The contract.
        address: Felt,
        /// The nonce that is too large.
        nonce: Felt,
        /// Where the nonce came from: `state_diff.nonces` or `nonce oracle`.
        source_of_nonce: &'static str,
    },
    /// The nonce oracle had no answer for a contract whose nonce the encoding needs.
    #[error("nonce oracle has no nonce for contract {address}; it has storage writes but no entry in state_diff.nonces, so its nonce after the block is needed")]
    NonceUnavailable {
        /// The contract.
        address: Felt,
    },
    /// A blob, a felt list or a compressed stream does not have the structure the format
    /// requires.
    #[error("malformed {what} at position {position}: {reason}")]
    Malformed {
        /// Which structure: `DA felts`, `compressed DA felts`, `program output`, ...
        what: &'static str,
        /// Index of the offending felt (or element) in that structure.
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// The data is larger than the format can carry.
    #[error("{what} is too large: {len} exceeds the limit of {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The format's limit.
        max: usize,
    },
    /// The requested Starknet version or feature is not supported.
    #[error("{feature} is not supported: {reason}")]
    Unsupported {
        /// What was asked for, e.g. `Starknet version 0.15.0`.
        feature: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A value computed from the data differs from the value it was checked against.
    #[error("{field} mismatch: expected {expected}, computed {actual}")]
    Mismatch {
        /// What was compared, e.g. `y_0 of blob 0`.
        field: String,
        /// The value given (e.g. from the program output).
        expected: String,
        /// The value computed.
        actual: String,
    },
    /// c-kzg refused an operation (invalid point encoding, scalar out of range, ...).
    #[error("KZG {operation} failed: {source}")]
    Kzg {
        /// The c-kzg operation.
        operation: &'static str,
        /// The c-kzg error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// `InvalidInput` without a source.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidInput { field: field.into(), reason: reason.into(), source: None }
    }

    /// `Malformed` at `position` of `what`.
    pub(crate) fn malformed(what: &'static str, position: usize, reason: impl Into<String>) -> Error {
        Error::Malformed { what, position, reason: reason.into() }
    }

    /// Wraps a c-kzg error.
    pub(crate) fn kzg(operation: &'static str, source: c_kzg::Error) -> Error {
        Error::Kzg { operation, source: Box::new(source) }
    }

    /// Re-labels an `orch_core` felt parse error with this crate's field name.
    pub(crate) fn from_core(field: impl Into<String>, err: orch_core::Error) -> Error {
        let field = field.into();
        let reason = match &err {
            orch_core::Error::InvalidInput { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        Error::InvalidInput { field, reason, source: None }
    }
}
