//! Errors of the services.

use rdkafka::error::KafkaError;

/// What can stop a service or refuse a request to it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The Kafka client failed (connection, produce, consume or admin request).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A topic could not be created or has the wrong shape.
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    /// Parameters given by a user are out of range; the text says which and why.
    #[error("{0}")]
    InvalidParams(String),
    /// A checkpoint record could not be decoded (corrupt or from an incompatible version).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Waiting for the cluster took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The account database failed (connection, migration or query); the text says which.
    #[error("store: {0}")]
    Store(String),
    /// The request conflicts with what exists (e.g. a user name already taken).
    #[error("{0}")]
    Conflict(String),
    /// What the request names does not exist (a topic, a partition, a consumer group).
    #[error("{0}")]
    NotFound(String),
    /// No broker of the cluster answered a request the raw protocol client sent; the text
    /// names each broker tried and why it failed.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for ServiceError {
    fn from(error: sqlx::Error) -> Self {
        ServiceError::Store(error.to_string())
    }
}
