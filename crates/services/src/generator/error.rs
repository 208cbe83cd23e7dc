//! What can stop a generator run or refuse to start one.

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::error::{Classify, ErrorKind};
use crate::kafka::ClientError;

/// Why a generator run failed or was not started.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// Parameters out of range; the text names the parameter, its value and what is allowed.
    #[error("{0}")]
    InvalidParams(String),
    /// Creating the producer or the topic failed, or no broker answered.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The topic's metadata (which broker leads each partition) did not arrive.
    #[error("kafka: fetching the metadata of topic {topic}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// The producer refused an event for another reason than a full queue.
    #[error("kafka: queueing an event for topic {topic}")]
    Queue {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// Events were still neither acknowledged nor failed when the flush gave up.
    #[error(
        "timed out: {in_flight} events were neither acknowledged nor failed within {} s",
        within.as_secs()
    )]
    FlushTimeout { in_flight: i32, within: Duration },
    /// A thread or runtime the run needs could not be started.
    #[error("cannot start {what}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Creating the topic panicked (the panic itself is logged where it happened).
    #[error("topic {topic}: creating it panicked")]
    TopicPanicked { topic: String },
}

impl Classify for GeneratorError {
    fn kind(&self) -> ErrorKind {
        match self {
            GeneratorError::InvalidParams(_) => ErrorKind::Invalid,
            GeneratorError::Client(client) => client.kind(),
            GeneratorError::Metadata { .. } | GeneratorError::Queue { .. } => {
                ErrorKind::Unavailable
            }
            GeneratorError::FlushTimeout { .. } => ErrorKind::Timeout,
            GeneratorError::Start { .. } | GeneratorError::TopicPanicked { .. } => {
                ErrorKind::Internal
            }
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
        let kafka = || KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        let cases = [
            (
                GeneratorError::InvalidParams("x".into()),
                ErrorKind::Invalid,
            ),
            (
                GeneratorError::Client(ClientError::Security("s".into())),
                ErrorKind::Invalid,
            ),
            (
                GeneratorError::Metadata {
                    topic: "t".into(),
                    source: kafka(),
                },
                ErrorKind::Unavailable,
            ),
            (
                GeneratorError::Queue {
                    topic: "t".into(),
                    source: kafka(),
                },
                ErrorKind::Unavailable,
            ),
            (
                GeneratorError::FlushTimeout {
                    in_flight: 3,
                    within: Duration::from_secs(90),
                },
                ErrorKind::Timeout,
            ),
            (
                GeneratorError::Start {
                    what: "a thread",
                    source: std::io::Error::other("no"),
                },
                ErrorKind::Internal,
            ),
            (
                GeneratorError::TopicPanicked { topic: "t".into() },
                ErrorKind::Internal,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    #[test]
    fn the_kafka_error_is_the_source() {
        let error = GeneratorError::Metadata {
            topic: "device-events".into(),
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
        };
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<KafkaError>().is_some());
        let message = crate::error::full_message(&error);
        assert!(
            message.starts_with("kafka: fetching the metadata of topic device-events: Meta data"),
            "{message}"
        );
    }
}
