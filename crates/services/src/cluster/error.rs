//! Why an operation on the cluster's topics, records or groups failed.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Classify, ErrorKind};
use crate::kafka::ClientError;

/// Why the topic REST API's operation on the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A parameter is out of range or malformed, or the cluster refused it as such; the text
    /// says which and why.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist (a topic, a partition, a consumer group).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the cluster's state (a topic that exists, a group with
    /// members).
    #[error("{0}")]
    Conflict(String),
    /// A request through rdkafka failed (the cluster did not answer in time, say).
    #[error("kafka")]
    Kafka(#[from] KafkaError),
    /// The cluster refused an operation on a topic with an error code.
    #[error("topic {topic}: {doing}")]
    TopicRefused {
        topic: String,
        /// What was refused: "deleting it", "describing its configs", ...
        doing: String,
        #[source]
        code: RDKafkaErrorCode,
    },
    /// A topic or one of its partitions cannot be served now; the text says why (no leader,
    /// the leader did not answer, the broker's own error).
    #[error("topic {topic}: {reason}")]
    TopicUnavailable { topic: String, reason: String },
    /// No broker answered a request of the raw protocol client; the text names each broker
    /// tried and why it failed.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
    /// A call on the blocking pool panicked or was cancelled.
    #[error("a cluster call did not finish")]
    Interrupted(#[source] tokio::task::JoinError),
    /// Creating a client failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl ClusterError {
    /// The cluster's refusal of `doing` on `topic`.
    pub(crate) fn topic_refused(
        topic: &str,
        doing: impl Into<String>,
    ) -> impl FnOnce(RDKafkaErrorCode) -> ClusterError {
        let (topic, doing) = (topic.to_string(), doing.into());
        move |code| ClusterError::TopicRefused { topic, doing, code }
    }
}

impl Classify for ClusterError {
    fn kind(&self) -> ErrorKind {
        match self {
            ClusterError::Invalid(_) => ErrorKind::Invalid,
            ClusterError::NotFound(_) => ErrorKind::NotFound,
            ClusterError::Conflict(_) => ErrorKind::Conflict,
            // The cluster, not this request, is the problem, and a retry may succeed.
            ClusterError::Kafka(_)
            | ClusterError::TopicRefused { .. }
            | ClusterError::TopicUnavailable { .. }
            | ClusterError::Unavailable(_) => ErrorKind::Unavailable,
            ClusterError::Interrupted(_) => ErrorKind::Internal,
            ClusterError::Client(client) => client.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn each_error_has_its_kind() {
        let cases = [
            (ClusterError::Invalid("x".into()), ErrorKind::Invalid),
            (ClusterError::NotFound("x".into()), ErrorKind::NotFound),
            (ClusterError::Conflict("x".into()), ErrorKind::Conflict),
            (
                ClusterError::Kafka(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::OperationTimedOut,
                )),
                ErrorKind::Unavailable,
            ),
            (
                ClusterError::topic_refused("t", "deleting it")(
                    RDKafkaErrorCode::TopicAuthorizationFailed,
                ),
                ErrorKind::Unavailable,
            ),
            (
                ClusterError::TopicUnavailable {
                    topic: "t".into(),
                    reason: "no leader".into(),
                },
                ErrorKind::Unavailable,
            ),
            (
                ClusterError::Unavailable("x".into()),
                ErrorKind::Unavailable,
            ),
            (
                ClusterError::Client(ClientError::Security("x".into())),
                ErrorKind::Invalid,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    #[tokio::test]
    async fn a_call_that_did_not_finish_is_internal() {
        let joined = tokio::spawn(async { panic!("a cluster call panicked") }).await;
        let error = ClusterError::Interrupted(joined.expect_err("it panicked"));
        assert_eq!(error.kind(), ErrorKind::Internal);
        assert!(error.source().is_some());
    }

    #[test]
    fn rdkafka_errors_are_kept_as_sources() {
        let error = ClusterError::from(KafkaError::MetadataFetch(
            RDKafkaErrorCode::OperationTimedOut,
        ));
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<KafkaError>().is_some());
        let code = RDKafkaErrorCode::OperationTimedOut;
        assert_eq!(
            crate::error::full_message(&error),
            format!("kafka: Meta data fetch error: {code}")
        );
        let refused = ClusterError::topic_refused("t", "deleting it")(code);
        assert!(refused
            .source()
            .and_then(|s| s.downcast_ref::<RDKafkaErrorCode>())
            .is_some());
        assert_eq!(
            crate::error::full_message(&refused),
            format!("topic t: deleting it: {code}")
        );
    }
}
