//! [`ClientError`]: what can go wrong in the Kafka client layer the services share.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Classify, ErrorKind};

/// What can go wrong in the Kafka client layer the services share: their settings, creating
/// their clients and topics, and reaching the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Security settings that cannot work together; the text names the flags to fix.
    #[error("{0}")]
    Security(String),
    /// The raw-protocol client's TLS settings cannot be used (a file holds no certificate or
    /// key, a certificate does not go with its key); the text says which.
    #[error("{0}")]
    Tls(String),
    /// A certificate or key file could not be read.
    #[error("reading {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// librdkafka refused to create a client: a setting it does not take, or no resources.
    #[error("kafka: creating client {client_id}")]
    Create {
        client_id: String,
        #[source]
        source: KafkaError,
    },
    /// The request to create a topic failed (the cluster did not answer in time, say).
    #[error("kafka: creating topic {topic}")]
    CreateTopic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// The cluster refused to create a topic a service needs.
    #[error("topic {topic}: the cluster refused to create it")]
    TopicRefused {
        topic: String,
        #[source]
        code: RDKafkaErrorCode,
    },
    /// No bootstrap server answered as a Kafka broker in time
    /// ([`wait_for_broker`](super::wait_for_broker)): nothing listens there, it cannot be
    /// reached, or what answers is not Kafka.
    #[error(
        "no Kafka broker answered at {servers} within {} s ({reasons}); is one running \
         there? Point Freshet at yours with --bootstrap-servers or FRESHET_BOOTSTRAP_SERVERS",
        within.as_secs()
    )]
    NoBroker {
        /// The bootstrap servers as given.
        servers: String,
        within: Duration,
        /// Each server and why it could not be reached.
        reasons: String,
    },
    /// A broker refused to sign in with these credentials; the text is the broker's reason.
    #[error("{0}")]
    SignInRefused(String),
    /// No bootstrap server could be reached to sign in; the text names each and why.
    #[error("no bootstrap server could be reached: {0}")]
    SignInUnreachable(String),
}

impl Classify for ClientError {
    fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Security(_)
            | ClientError::Tls(_)
            | ClientError::ReadFile { .. }
            | ClientError::SignInRefused(_) => ErrorKind::Invalid,
            ClientError::Create {
                source: KafkaError::ClientConfig(..),
                ..
            } => ErrorKind::Invalid,
            ClientError::Create { .. } => ErrorKind::Internal,
            ClientError::CreateTopic { .. }
            | ClientError::TopicRefused { .. }
            | ClientError::NoBroker { .. }
            | ClientError::SignInUnreachable(_) => ErrorKind::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn client_errors_have_their_kinds_and_keep_their_sources() {
        let config = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "bad".into(),
            "bootstrap.servers".into(),
            "x".into(),
        );
        let cases = [
            (ClientError::Security("s".into()), ErrorKind::Invalid),
            (ClientError::Tls("t".into()), ErrorKind::Invalid),
            (ClientError::SignInRefused("r".into()), ErrorKind::Invalid),
            (
                ClientError::Create {
                    client_id: "c".into(),
                    source: config,
                },
                ErrorKind::Invalid,
            ),
            (
                ClientError::Create {
                    client_id: "c".into(),
                    source: KafkaError::ClientCreation("out of memory".into()),
                },
                ErrorKind::Internal,
            ),
            (
                ClientError::TopicRefused {
                    topic: "t".into(),
                    code: RDKafkaErrorCode::TopicAuthorizationFailed,
                },
                ErrorKind::Unavailable,
            ),
            (
                ClientError::NoBroker {
                    servers: "h:1".into(),
                    within: std::time::Duration::from_secs(5),
                    reasons: "h:1: refused".into(),
                },
                ErrorKind::Unavailable,
            ),
            (
                ClientError::SignInUnreachable("h:1".into()),
                ErrorKind::Unavailable,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
        let refused = ClientError::CreateTopic {
            topic: "t".into(),
            source: KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut),
        };
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        let source = refused.source().expect("the rdkafka error is kept");
        assert!(source.downcast_ref::<KafkaError>().is_some(), "{source:?}");
        assert_eq!(
            crate::error::full_message(&refused),
            format!(
                "kafka: creating topic t: Admin operation error: {}",
                RDKafkaErrorCode::OperationTimedOut
            )
        );
    }
}
