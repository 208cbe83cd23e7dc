//! What can stop a guard node, or refuse a registration, a login or an unblock.

use std::path::PathBuf;

use rdkafka::error::KafkaError;

use super::secret::MIN_SECRET_BYTES;
use crate::error::{Classify, ErrorKind};
use crate::kafka::ClientError;

/// Why the guard refused a request or could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A user name, password or setting breaks a rule; the text names the rule.
    #[error("{0}")]
    Invalid(String),
    /// Registration of a name that is taken.
    #[error("user {user:?} already exists")]
    UserExists { user: String },
    /// The database URL names no backend the guard has.
    #[error("database URL {url:?} is neither sqlite:// nor postgres://")]
    UnknownDatabase {
        /// Without its password.
        url: String,
    },
    /// The account database failed (connecting, or a query).
    #[error("store: {what}")]
    Store {
        /// What the store was doing.
        what: String,
        #[source]
        source: sqlx::Error,
    },
    /// The account database's migrations could not be applied.
    #[error("store: applying migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The directory of a SQLite database could not be created.
    #[error("store: creating directory {}", path.display())]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The Argon2 cost parameters are out of Argon2's range.
    #[error("argon2 parameters")]
    Argon2Params(#[source] argon2::Error),
    /// Hashing a password failed.
    #[error("hashing a password")]
    Hash(#[source] argon2::password_hash::Error),
    /// The hasher's permits are closed: the guard is shutting down.
    #[error("the hasher is shut down")]
    HasherClosed,
    /// A hashing task on the blocking pool panicked or was cancelled.
    #[error("a hashing task failed")]
    HashTask(#[source] tokio::task::JoinError),
    /// Creating a client or a topic failed, or no broker answered.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A Kafka client failed at something the guard needs (publishing an admin action,
    /// reading a topic's metadata, being assigned a topic).
    #[error("kafka: {what}")]
    Kafka {
        /// What the client was doing, naming the topic.
        what: String,
        #[source]
        source: KafkaError,
    },
    /// A topic the guard reads has no partitions.
    #[error("topic {topic}: has no partitions")]
    NoPartitions { topic: String },
    /// The blocker's checkpoints were not read to their end in time.
    #[error("timed out: reading blocker checkpoints")]
    CheckpointsTimeout,
    /// A thread the guard runs on could not be started.
    #[error("cannot start thread {thread}")]
    Thread {
        thread: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The guard secret is shorter than HMAC-SHA256 needs.
    #[error("the guard secret is {bytes} bytes; it must be at least {MIN_SECRET_BYTES}")]
    SecretTooShort { bytes: usize },
    /// The guard secret is written neither as hex nor as base64. Never quotes it.
    #[error("the guard secret is neither hex nor base64")]
    SecretEncoding,
    /// The guard secret's file (or its directory) could not be read or created.
    #[error("{doing} {}", path.display())]
    SecretFile {
        /// What failed: "reading the guard secret", "creating directory", ...
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The guard secret's file holds no usable key.
    #[error("the guard secret in {}", path.display())]
    SecretInFile {
        path: PathBuf,
        #[source]
        source: Box<GuardError>,
    },
}

impl GuardError {
    /// The store's failure at `what`.
    pub(crate) fn store(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> GuardError {
        let what = what.into();
        move |source| GuardError::Store { what, source }
    }

    /// A Kafka client's failure at `what` (naming the topic).
    pub(crate) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> GuardError {
        let what = what.into();
        move |source| GuardError::Kafka { what, source }
    }
}

impl Classify for GuardError {
    fn kind(&self) -> ErrorKind {
        use GuardError as E;
        match self {
            E::Invalid(_)
            | E::UnknownDatabase { .. }
            | E::Argon2Params(_)
            | E::SecretTooShort { .. }
            | E::SecretEncoding => ErrorKind::Invalid,
            E::UserExists { .. } => ErrorKind::Conflict,
            // The database or the cluster is unreachable or failing: a retry may succeed.
            E::Store { .. } | E::Migrate(_) | E::Kafka { .. } | E::NoPartitions { .. } => {
                ErrorKind::Unavailable
            }
            E::CheckpointsTimeout => ErrorKind::Timeout,
            E::CreateDirectory { .. }
            | E::Hash(_)
            | E::HasherClosed
            | E::HashTask(_)
            | E::Thread { .. }
            | E::SecretFile { .. } => ErrorKind::Internal,
            E::Client(client) => client.kind(),
            E::SecretInFile { source, .. } => source.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    fn io() -> std::io::Error {
        std::io::Error::other("no")
    }

    #[test]
    fn each_error_has_its_kind() {
        let cases = [
            (GuardError::Invalid("x".into()), ErrorKind::Invalid),
            (
                GuardError::UserExists { user: "bob".into() },
                ErrorKind::Conflict,
            ),
            (
                GuardError::UnknownDatabase {
                    url: "mysql://h".into(),
                },
                ErrorKind::Invalid,
            ),
            (
                GuardError::store("reading a hash")(sqlx::Error::PoolTimedOut),
                ErrorKind::Unavailable,
            ),
            (
                GuardError::CreateDirectory {
                    path: "/x".into(),
                    source: io(),
                },
                ErrorKind::Internal,
            ),
            (
                GuardError::Argon2Params(argon2::Error::MemoryTooLittle),
                ErrorKind::Invalid,
            ),
            (
                GuardError::Hash(argon2::password_hash::Error::Password),
                ErrorKind::Internal,
            ),
            (GuardError::HasherClosed, ErrorKind::Internal),
            (
                GuardError::kafka("publishing to t")(KafkaError::Canceled),
                ErrorKind::Unavailable,
            ),
            (
                GuardError::NoPartitions { topic: "t".into() },
                ErrorKind::Unavailable,
            ),
            (GuardError::CheckpointsTimeout, ErrorKind::Timeout),
            (
                GuardError::Thread {
                    thread: "guard-blocker",
                    source: io(),
                },
                ErrorKind::Internal,
            ),
            (GuardError::SecretTooShort { bytes: 3 }, ErrorKind::Invalid),
            (GuardError::SecretEncoding, ErrorKind::Invalid),
            (
                GuardError::SecretFile {
                    doing: "reading the guard secret",
                    path: "/x".into(),
                    source: io(),
                },
                ErrorKind::Internal,
            ),
            (
                GuardError::SecretInFile {
                    path: "/x".into(),
                    source: Box::new(GuardError::SecretEncoding),
                },
                ErrorKind::Invalid,
            ),
            (
                GuardError::Client(ClientError::SignInRefused("no".into())),
                ErrorKind::Invalid,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    #[test]
    fn the_sqlx_error_is_the_source() {
        let error = GuardError::store("counting users")(sqlx::Error::PoolTimedOut);
        let source = error.source().expect("a source");
        assert!(matches!(
            source.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut)
        ));
        assert_eq!(
            crate::error::full_message(&error),
            format!("store: counting users: {}", sqlx::Error::PoolTimedOut)
        );
    }
}
