//! The one place where Redis errors become orch errors.

use std::time::Duration;

use orch_core::error::Error;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "redis";

/// Classifies a Redis client error; `what` says what was being done (e.g. `receive from
/// queue orch`) and `url` is the redacted server URL, named in errors an operator acts on.
///
/// The engine reads only `is_retryable()`: `Unavailable` is "try again later", everything
/// else is fatal for the operation.
pub(crate) fn map_err(e: RedisError, what: &str, url: &str) -> Error {
    let unavailable = |message: String, retry_after: Option<Duration>, e: RedisError| Error::Unavailable {
        backend: BACKEND.into(),
        message,
        retry_after,
        source: Some(Box::new(e)),
    };
    // Connection-level trouble first: the ConnectionManager reconnects on the next command,
    // so every one of these is worth retrying.
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        return unavailable(format!("{what}: cannot reach {url} ({e})"), None, e);
    }
    match e.kind() {
        // Wrong password or an ACL user without the right commands: no retry helps.
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => Error::invalid_input(
            "url",
            format!("{url} refused {what}: {e}; check the user and password in the URL and the user's ACL"),
        ),
        ErrorKind::InvalidClientConfig => Error::invalid_input("url", format!("{url}: {e}")),
        // The server is starting (loading its dataset), failing over, or a replica that was
        // just demoted: all pass within seconds.
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        ) => unavailable(format!("{what} on {url}: {e}"), Some(Duration::from_secs(1)), e),
        // Scripts are loaded again by the next invocation (a restarted server forgets them).
        ErrorKind::Server(ServerErrorKind::NoScript) => unavailable(format!("{what} on {url}: {e}"), None, e),
        // A cluster redirect means a key of this queue is not where the client thinks: the
        // next command goes through a fresh routing table.
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {
            unavailable(format!("{what} on {url}: {e}"), None, e)
        }
        _ => match e.code() {
            // maxmemory reached: freeing memory (consumers acking) lets the same write pass.
            Some("OOM") => unavailable(
                format!("{what}: {url} is out of memory ({e}); raise maxmemory or drain the queue"),
                Some(Duration::from_secs(5)),
                e,
            ),
            // Another program uses one of this queue's keys for something else.
            Some("WRONGTYPE") => Error::invalid_input(
                "queue",
                format!("{what}: a key of this queue on {url} holds another type ({e}); pick another queue name or remove the key"),
            ),
            // The same transient states when the client did not classify the reply.
            Some("LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY") => {
                unavailable(format!("{what} on {url}: {e}"), Some(Duration::from_secs(1)), e)
            }
            Some("NOPERM" | "WRONGPASS" | "NOAUTH") => Error::invalid_input(
                "url",
                format!("{url} refused {what}: {e}; check the user and password in the URL and the user's ACL"),
            ),
            Some("BUSY") => unavailable(format!("{what}: {url} is busy running a script ({e})"), None, e),
            _ => Error::internal_from(format!("{what} on {url} failed"), e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> RedisError {
        redis::make_extension_error(code.to_string(), Some("detail".into()))
    }

    #[test]
    fn transient_server_states_are_retryable() {
        for code in ["LOADING", "TRYAGAIN", "MASTERDOWN", "OOM", "READONLY"] {
            let e = map_err(server(code), "receive", "redis://h/");
            assert!(e.is_retryable(), "{code}: {e:?}");
        }
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert!(map_err(io, "send", "redis://h/").is_retryable());
    }

    #[test]
    fn wrong_type_and_auth_are_fatal_and_say_what_to_fix() {
        let e = map_err(server("WRONGTYPE"), "send", "redis://h/");
        assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("queue name"), "{e}");
        let e = map_err(server("NOPERM"), "send", "redis://h/");
        assert!(!e.is_retryable(), "{e:?}");
    }
}
