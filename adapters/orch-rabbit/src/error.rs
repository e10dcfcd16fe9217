//! The one place where lapin (AMQP) errors become orch errors.

use std::time::Duration;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ErrorKind;
use orch_core::error::Error;

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "rabbitmq";

/// Classifies a lapin error; `what` says what was being done and `url` is the redacted
/// broker URL, named in errors an operator acts on.
///
/// The engine reads only `is_retryable()`: `Unavailable` is "try again later" (the adapter
/// reconnects on the next call), everything else is fatal for the operation.
pub(crate) fn map_err(e: lapin::Error, what: &str, url: &str) -> Error {
    let unavailable = |message: String, retry_after: Option<Duration>, e: lapin::Error| Error::Unavailable {
        backend: BACKEND.into(),
        message,
        retry_after,
        source: Some(Box::new(e)),
    };
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => {
            let text = amqp.get_message().to_string();
            match amqp.kind() {
                // Wrong user/password, or a user without rights on the vhost or queue.
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                    Error::invalid_input(
                        "queue.url",
                        format!("{url} refused {what}: {text}; check the user, password, vhost and the user's permissions"),
                    )
                }
                AMQPErrorKind::Hard(AMQPHardError::INVALIDPATH) => Error::invalid_input(
                    "queue.url",
                    format!("{url}: the vhost does not exist ({text}); the default vhost is written %2f"),
                ),
                // A queue was declared by someone else with other arguments (TTL, DLX, …).
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => Error::invalid_input(
                    "queue.queue",
                    format!("{what}: {text}; a queue of that name exists with other settings: delete it or pick another name"),
                ),
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => Error::invalid_input(
                    "queue.queue",
                    format!("{what}: {text}; run `orchestrator setup` to declare the queues"),
                ),
                // The broker or an operator closed the connection (restart, failover, memory
                // alarm); a new connection usually works.
                AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED | AMQPHardError::RESOURCEERROR)
                | AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) => {
                    unavailable(format!("{what}: {url} closed the connection ({text})"), Some(Duration::from_secs(1)), e)
                }
                _ => Error::internal_from(format!("{what} on {url} failed"), e),
            }
        }
        // Sockets, heartbeats, channels and connections already closed: reconnecting helps.
        ErrorKind::IOError(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::InvalidChannel(_)
        | ErrorKind::ChannelsLimitReached => unavailable(format!("{what}: cannot reach {url} ({e})"), None, e),
        ErrorKind::AuthProviderError(m) => Error::invalid_input("queue.url", format!("{url}: {m}")),
        _ => Error::internal_from(format!("{what} on {url} failed"), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retryable() {
        let e: lapin::Error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into();
        assert!(map_err(e, "send", "amqp://h/").is_retryable());
    }
}
