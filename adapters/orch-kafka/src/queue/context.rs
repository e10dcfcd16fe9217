//! The librdkafka client contexts: log lines into `tracing`, and the consumer's rebalance
//! callbacks, which commit and forget the partitions taken away and start reading the ones
//! given from before their committed offsets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::tracker::{lock, rewind_from, Names, State, Track};
use crate::error::BACKEND;

/// librdkafka's log lines, into `tracing`.
fn log(level: RDKafkaLogLevel, facility: &str, line: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::warn!(target: "orch::queue", backend = BACKEND, facility, detail = line, "librdkafka")
        }
        RDKafkaLogLevel::Warning => {
            tracing::info!(target: "orch::queue", backend = BACKEND, facility, detail = line, "librdkafka")
        }
        _ => tracing::debug!(target: "orch::queue", backend = BACKEND, facility, detail = line, "librdkafka"),
    }
}

/// Context of the producer and admin client: logs through `tracing`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogCtx;

impl ClientContext for LogCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "orch::queue", backend = BACKEND, error = %error, reason, "librdkafka client error");
    }
}

/// Context of the consumer: on a rebalance, commits and forgets the partitions taken away.
pub(super) struct ConsumerCtx {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) names: Arc<Names>,
    /// Bound on the broker calls made during a rebalance.
    pub(super) timeout: Duration,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "orch::queue", backend = BACKEND, error = %error, reason, "librdkafka consumer error");
    }
}

impl ConsumerCtx {
    /// Commits the finished prefix of the partitions taken away and forgets them.
    fn revoke(&self, base_consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut commit = TopicPartitionList::new();
        {
            let mut st = lock(&self.state);
            for el in tpl.elements() {
                let Some(src) = self.names.src(el.topic()) else { continue };
                if let Some(pos) = st.drop_partition(src, el.partition()) {
                    let _ = commit.add_partition_offset(el.topic(), el.partition(), Offset::Offset(pos));
                }
            }
        }
        tracing::debug!(target: "orch::queue", backend = BACKEND, partitions = tpl.count(), "partitions revoked");
        // Done work is not redone by the next owner; failure only means duplicates.
        if commit.count() > 0 {
            if let Err(e) = base_consumer.commit(&commit, CommitMode::Sync) {
                tracing::info!(target: "orch::queue", backend = BACKEND, error = %e,
                    "commit on revoke failed; the next owner redelivers those messages");
            }
        }
    }

    /// Takes the partitions given to this instance, reading each from [`REWIND`](super::tracker::REWIND) before the
    /// group's committed offset and passing over what is below it (see [`Track`]).
    fn assign(&self, base_consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let committed = base_consumer.committed_offsets(tpl.clone(), self.timeout);
        if let Err(e) = &committed {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = %e,
                "cannot read the committed offsets; resuming at them as they are");
        }
        let mut start = tpl.clone();
        {
            let mut st = lock(&self.state);
            for el in tpl.elements() {
                let Some(src) = self.names.src(el.topic()) else { continue };
                let position = committed
                    .as_ref()
                    .ok()
                    .and_then(|c| c.find_partition(el.topic(), el.partition()))
                    .filter(|c| c.error().is_ok())
                    .and_then(|c| match c.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                // Nothing committed: the log start, where a fetch cannot fall inside a batch.
                let mut track = Track::default();
                if let Some(pos) = position {
                    if start.set_partition_offset(el.topic(), el.partition(), Offset::Offset(rewind_from(pos))).is_ok()
                    {
                        track.floor = Some(pos);
                    }
                }
                st.tracks.insert((src, el.partition()), track);
            }
            // New partitions start unpaused; the pump pauses them again if it must.
            st.paused_main = false;
            st.paused_retry = false;
        }
        tracing::debug!(target: "orch::queue", backend = BACKEND, partitions = tpl.count(), "partitions assigned");
        if let Err(e) = base_consumer.assign(&start) {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = %e, "cannot take the assigned partitions");
        }
    }
}

impl ConsumerContext for ConsumerCtx {
    // The group uses an eager assignor (librdkafka's default), so an assignment replaces the
    // previous one whole.
    fn rebalance(&self, base_consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            self.assign(base_consumer, tpl);
            return;
        }
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = ?err, "rebalance failed; giving up the partitions");
        }
        self.revoke(base_consumer, tpl);
        if let Err(e) = base_consumer.unassign() {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = %e, "cannot give up the revoked partitions");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(target: "orch::queue", backend = BACKEND, error = %e, "offset commit failed; retrying");
            lock(&self.state).recommit = true;
        }
    }
}
