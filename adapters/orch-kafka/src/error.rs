//! The one place where Kafka errors become orch errors.

use orch_core::error::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "kafka";

/// Classifies a librdkafka error; `what` says what was being done (e.g. `send to topic
/// orch`) and `brokers` is the bootstrap list, named in errors an operator acts on.
///
/// The engine reads only `is_retryable()`: `Unavailable` is "try again later", everything
/// else is fatal for the operation.
pub(crate) fn map_err(e: KafkaError, what: &str, brokers: &str) -> Error {
    let Some(code) = e.rdkafka_error_code() else {
        return match e {
            // librdkafka refused a property or could not build the client: a config problem.
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Subscription(_) => {
                Error::invalid_input("queue", format!("{what}: {e}"))
            }
            // The client is shutting down under us (the queue is being dropped).
            KafkaError::Canceled => Error::unavailable(BACKEND, format!("{what}: the Kafka client was closed")),
            _ => Error::internal_from(format!("{what} on {brokers} failed"), e),
        };
    };
    map_code(code, what, brokers, Some(e))
}

/// Classifies an error code (admin results and delivery reports carry only the code).
pub(crate) fn map_code(code: Code, what: &str, brokers: &str, source: Option<KafkaError>) -> Error {
    let unavailable = |message: String, source: Option<KafkaError>| Error::Unavailable {
        backend: BACKEND.into(),
        message,
        retry_after: None,
        source: source.map(|e| Box::new(e) as _),
    };
    match code {
        // Cannot reach the cluster, or it did not answer in time: librdkafka reconnects by
        // itself, so the same call later may pass.
        Code::BrokerTransportFailure
        | Code::AllBrokersDown
        | Code::Resolve
        | Code::MessageTimedOut
        | Code::OperationTimedOut
        | Code::RequestTimedOut
        | Code::TimedOutQueue
        | Code::NetworkException
        | Code::BrokerNotAvailable => unavailable(format!("{what}: cannot reach Kafka at {brokers} ({code})"), source),
        // Leadership moving, a coordinator starting, a rebalance or replicas catching up:
        // all settle within seconds.
        Code::LeaderNotAvailable
        | Code::NotLeaderForPartition
        | Code::CoordinatorLoadInProgress
        | Code::CoordinatorNotAvailable
        | Code::NotCoordinator
        | Code::WaitingForCoordinator
        | Code::RebalanceInProgress
        | Code::NotEnoughReplicas
        | Code::NotEnoughReplicasAfterAppend
        | Code::NotController
        | Code::KafkaStorageError
        | Code::FencedLeaderEpoch
        | Code::UnknownLeaderEpoch
        | Code::ThrottlingQuotaExceeded
        | Code::PreferredLeaderNotAvailable
        | Code::ReplicaNotAvailable => unavailable(format!("{what} on {brokers}: {code}"), source),
        // The producer's local queue is full: waiting for deliveries frees it.
        Code::QueueFull => unavailable(format!("{what}: the local send queue is full ({code})"), source),
        // The topics are missing: nobody ran setup, or they were deleted.
        Code::UnknownTopicOrPartition | Code::UnknownTopic | Code::UnknownPartition => Error::invalid_input(
            "queue.topic",
            format!("{what}: a topic of this queue does not exist on {brokers} ({code}); run `orchestrator setup`"),
        ),
        Code::SaslAuthenticationFailed
        | Code::Authentication
        | Code::TopicAuthorizationFailed
        | Code::GroupAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::IllegalSASLState
        | Code::UnsupportedSASLMechanism => Error::invalid_input(
            "queue.brokers",
            format!("{brokers} refused {what}: {code}; check the cluster's ACLs for this client, topic and group"),
        ),
        Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge => {
            Error::invalid_input("payload", format!("{what}: the message is larger than the topic accepts ({code})"))
        }
        Code::InvalidReplicationFactor => Error::invalid_input(
            "queue.replication_factor",
            format!(
                "{what}: {brokers} refused the replication factor ({code}); it cannot exceed the number of brokers"
            ),
        ),
        Code::InvalidPartitions => {
            Error::invalid_input("queue.partitions", format!("{what}: {brokers} refused the partition count ({code})"))
        }
        Code::InvalidTopic => {
            Error::invalid_input("queue.topic", format!("{what}: {brokers} refused the name ({code})"))
        }
        Code::InvalidGroupId => {
            Error::invalid_input("queue.group", format!("{what}: {brokers} refused the group ({code})"))
        }
        Code::InvalidSessionTimeout => Error::invalid_input(
            "queue.session_timeout",
            format!("{what}: outside the brokers' group.min/max.session.timeout.ms ({code})"),
        ),
        _ => match source {
            Some(e) => Error::internal_from(format!("{what} on {brokers} failed ({code})"), e),
            None => Error::internal(format!("{what} on {brokers} failed: {code}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_states_are_retryable() {
        for code in [Code::AllBrokersDown, Code::MessageTimedOut, Code::NotCoordinator, Code::QueueFull] {
            let e = map_err(KafkaError::MessageProduction(code), "send", "h:9092");
            assert!(e.is_retryable(), "{code:?}: {e:?}");
        }
    }

    #[test]
    fn missing_topics_and_refused_access_are_fatal_and_say_what_to_fix() {
        let e = map_err(KafkaError::MessageProduction(Code::UnknownTopicOrPartition), "send", "h:9092");
        assert!(!e.is_retryable() && e.to_string().contains("setup"), "{e}");
        let e = map_code(Code::TopicAuthorizationFailed, "send", "h:9092", None);
        assert!(!e.is_retryable() && e.to_string().contains("queue.brokers"), "{e}");
        let e = map_code(Code::InvalidReplicationFactor, "setup", "h:9092", None);
        assert!(e.to_string().contains("queue.replication_factor"), "{e}");
    }
}
