//! What can stop a tracker node from starting, and why a checkpoint record cannot be read.

use freshet_distinct::DistinctError;
use rdkafka::error::KafkaError;

use crate::error::{Classify, ErrorKind};
use crate::kafka::ClientError;

/// Why a tracker node did not start, or a checkpoint record was not applied.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// Creating a client or a topic failed, or no broker answered.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A consumer could not subscribe to or be assigned its topic.
    #[error("kafka: {what}")]
    Kafka {
        /// What the consumer was doing, naming the topic.
        what: String,
        #[source]
        source: KafkaError,
    },
    /// A thread the node runs on could not be started.
    #[error("cannot start thread {thread}")]
    Thread {
        thread: String,
        #[source]
        source: std::io::Error,
    },
    /// The runtime the worker probes stalled partitions with could not be started.
    #[error("cannot start the stall probe's runtime")]
    ProbeRuntime(#[source] std::io::Error),
    /// A checkpoint record is not one this version can read (corrupt, or from an
    /// incompatible version); the text says what is wrong with it.
    #[error("checkpoint: {0}")]
    Checkpoint(&'static str),
    /// A checkpoint record's IP set does not decode.
    #[error("checkpoint: section set")]
    CheckpointSet(#[source] DistinctError),
}

impl TrackerError {
    /// A consumer's failure at `what` (naming the topic).
    pub(crate) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> TrackerError {
        let what = what.into();
        move |source| TrackerError::Kafka { what, source }
    }
}

impl Classify for TrackerError {
    fn kind(&self) -> ErrorKind {
        match self {
            TrackerError::Client(client) => client.kind(),
            TrackerError::Kafka { .. } => ErrorKind::Unavailable,
            TrackerError::Thread { .. }
            | TrackerError::ProbeRuntime(_)
            | TrackerError::Checkpoint(_)
            | TrackerError::CheckpointSet(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    #[test]
    fn each_error_has_its_kind() {
        let cases = [
            (
                TrackerError::Client(ClientError::TopicRefused {
                    topic: "t".into(),
                    code: RDKafkaErrorCode::PolicyViolation,
                }),
                ErrorKind::Unavailable,
            ),
            (
                TrackerError::kafka("subscribing to t")(KafkaError::Subscription("x".into())),
                ErrorKind::Unavailable,
            ),
            (
                TrackerError::Thread {
                    thread: "tracker-worker-0".into(),
                    source: std::io::Error::other("no"),
                },
                ErrorKind::Internal,
            ),
            (
                TrackerError::ProbeRuntime(std::io::Error::other("no")),
                ErrorKind::Internal,
            ),
            (TrackerError::Checkpoint("bad magic"), ErrorKind::Internal),
            (
                TrackerError::CheckpointSet(DistinctError::BadMagic {
                    expected: *b"FDIP",
                    found: *b"XXXX",
                }),
                ErrorKind::Internal,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    #[test]
    fn sources_are_kept() {
        let error = TrackerError::kafka("subscribing to device-events")(KafkaError::Subscription(
            "no such topic".into(),
        ));
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<KafkaError>().is_some());
        assert_eq!(
            crate::error::full_message(&error),
            "kafka: subscribing to device-events: Subscription error: no such topic"
        );
    }
}
