//! The one table mapping MongoDB driver errors to orch errors.
//!
//! Rule of thumb: anything a later try can fix (network, elections, server selection,
//! write conflicts, overload, transient transaction labels) is a retryable `Unavailable`;
//! anything only an operator can fix (credentials, URL, TLS, database name, server too old)
//! is `InvalidInput` naming the config key, with the URL redacted.

use mongodb::error::{
    Error as MongoError, ErrorKind, WriteFailure, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, SYSTEM_OVERLOADED_ERROR,
    TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use orch_core::error::Error;

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "mongo";

/// The duplicate-key error code: a unique index (the job key, an `_id`) is taken.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// What an error message may say about where the server is.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The connection string with its password and options removed.
    pub(crate) url: String,
    /// The database orch uses.
    pub(crate) database: String,
}

/// Server error codes that a later try may get past.
///
/// 6 HostUnreachable, 7 HostNotFound, 24 LockTimeout, 46 LockBusy, 50 MaxTimeMSExpired,
/// 64 WriteConcernFailed, 89 NetworkTimeout, 91 ShutdownInProgress, 112 WriteConflict,
/// 133 FailedToSatisfyReadPreference, 189 PrimarySteppedDown, 202 NetworkInterfaceExceededTimeLimit,
/// 262 ExceededTimeLimit, 9001 SocketException, 10107 NotWritablePrimary,
/// 11600 InterruptedAtShutdown, 11602 InterruptedDueToReplStateChange,
/// 13435 NotPrimaryNoSecondaryOk, 13436 NotPrimaryOrSecondary.
const TRANSIENT_CODES: &[i32] =
    &[6, 7, 24, 46, 50, 64, 89, 91, 112, 133, 189, 202, 262, 462, 9001, 10107, 11600, 11602, 13435, 13436, 91331];

/// 13 Unauthorized, 18 AuthenticationFailed: the credentials or their roles are wrong.
const AUTH_CODES: &[i32] = &[13, 18];

/// 73 InvalidNamespace: the database or collection name is not allowed.
const NAMESPACE_CODES: &[i32] = &[73];

/// Labels the server or driver puts on errors that the same operation may get past.
const RETRY_LABELS: &[&str] = &[
    RETRYABLE_WRITE_ERROR,
    TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
    SYSTEM_OVERLOADED_ERROR,
    RETRYABLE_ERROR,
];

/// Maps a driver error, in the context of the server `ctx`.
pub(crate) fn map_err(e: MongoError, ctx: &Ctx) -> Error {
    if RETRY_LABELS.iter().any(|l| e.contains_label(l)) {
        return unavailable(format!("transient error from {}: {}", ctx.url, describe(&e)), e);
    }
    let code = match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| w.code)
            .or(m.write_concern_error.as_ref().map(|w| w.code)),
        ErrorKind::BulkWrite(_) => None,
        _ => None,
    };
    if let Some(code) = code {
        return by_code(code, e, ctx);
    }
    match &*e.kind {
        // No server answered within the connect timeout: down, unreachable, or wrong host.
        ErrorKind::ServerSelection { .. } => unavailable(
            format!(
                "no MongoDB server reachable at {} ({}); check that it runs and that database.url names it, \
                 or raise database.connect_timeout",
                ctx.url,
                describe(&e)
            ),
            e,
        ),
        // Sockets, DNS, pool resets after a network error: transient by nature.
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } | ErrorKind::DnsResolve { .. } => {
            unavailable(format!("network error talking to {}: {}", ctx.url, describe(&e)), e)
        }
        ErrorKind::Authentication { .. } => Error::invalid_input(
            "database.url",
            format!(
                "authentication to {} failed ({}); check the user, password and authSource in the connection string",
                ctx.url,
                describe(&e)
            ),
        ),
        ErrorKind::InvalidTlsConfig { .. } => {
            Error::invalid_input("database.url", format!("TLS settings for {} are invalid: {}", ctx.url, describe(&e)))
        }
        ErrorKind::IncompatibleServer { .. } => Error::invalid_input(
            "database.url",
            format!("the server at {} is too old for this driver: {}", ctx.url, describe(&e)),
        ),
        ErrorKind::InvalidArgument { .. } => Error::invalid_input("mongo request", describe(&e)),
        // A stored document orch cannot read: something else wrote to orch's collections.
        ErrorKind::BsonDeserialization(_) => Error::invalid_input(
            "mongo document",
            format!(
                "a document in database {:?} cannot be read ({}); was it changed by another program?",
                ctx.database,
                describe(&e)
            ),
        ),
        ErrorKind::Shutdown => Error::ShuttingDown,
        _ => Error::internal_from(format!("mongo error from {}", ctx.url), e),
    }
}

fn by_code(code: i32, e: MongoError, ctx: &Ctx) -> Error {
    if code == DUPLICATE_KEY {
        return Error::already_exists(format!("document in database {:?} ({})", ctx.database, describe(&e)));
    }
    if TRANSIENT_CODES.contains(&code) {
        return unavailable(format!("{} answered code {code}: {}", ctx.url, describe(&e)), e);
    }
    if AUTH_CODES.contains(&code) {
        return Error::invalid_input(
            "database.url",
            format!(
                "{} refused the credentials or lacks permission on database {:?} ({}); check the user and \
                 password, and grant it the readWrite role (dbAdmin too for `orchestrator setup`)",
                ctx.url,
                ctx.database,
                describe(&e)
            ),
        );
    }
    if NAMESPACE_CODES.contains(&code) {
        return Error::invalid_input(
            "database.database",
            format!("{:?} is not a valid database on {}: {}", ctx.database, ctx.url, describe(&e)),
        );
    }
    Error::internal_from(format!("mongo error code {code} from {}", ctx.url), e)
}

fn unavailable(message: String, e: MongoError) -> Error {
    Error::Unavailable { backend: BACKEND.into(), message, retry_after: None, source: Some(Box::new(e)) }
}

/// The error's text, without anything the connection string might have put there.
fn describe(e: &MongoError) -> String {
    e.kind.to_string()
}

/// Whether `e` is a duplicate-key error (a unique index refused a write).
pub(crate) fn is_duplicate_key(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx { url: "mongodb://orch:<redacted>@db/".into(), database: "orch".into() }
    }

    fn command(code: i32) -> MongoError {
        let doc = mongodb::bson::doc! { "code": code, "codeName": "X", "errmsg": "boom" };
        let c: mongodb::error::CommandError = mongodb::bson::from_document(doc).unwrap();
        MongoError::from(ErrorKind::Command(c))
    }

    #[test]
    fn network_errors_are_retryable_others_are_not() {
        let e = map_err(MongoError::from(std::io::ErrorKind::ConnectionReset), &ctx());
        assert!(e.is_retryable(), "{e}");
        let e = map_err(MongoError::custom("x"), &ctx());
        assert!(!e.is_retryable(), "{e}");
    }

    #[test]
    fn codes_are_classified() {
        for code in [112, 189, 10107, 91, 50] {
            let e = map_err(command(code), &ctx());
            assert!(e.is_retryable(), "{code}: {e}");
        }
        let e = map_err(command(18), &ctx());
        assert!(matches!(e, Error::InvalidInput { ref field, .. } if field == "database.url"), "{e:?}");
        assert!(!e.to_string().contains("hunter2"));
        let e = map_err(command(73), &ctx());
        assert!(matches!(e, Error::InvalidInput { ref field, .. } if field == "database.database"), "{e:?}");
        assert!(matches!(map_err(command(DUPLICATE_KEY), &ctx()), Error::AlreadyExists { .. }));
        assert!(is_duplicate_key(&command(DUPLICATE_KEY)));
        assert!(matches!(map_err(command(2), &ctx()), Error::Internal { .. }));
    }
}
