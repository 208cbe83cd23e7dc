//! What the services' errors have in common: an [`ErrorKind`] that says what sort of failure
//! an error is, so callers (the HTTP API, the CLI) can answer it without knowing each
//! service's variants, and [`full_message`], which prints an error with its causes.
//!
//! Each service has its own error type, whose variants say what failed and keep what caused
//! it as their [`source`](std::error::Error::source):
//! [`GeneratorError`](crate::GeneratorError), [`TrackerError`](crate::TrackerError),
//! [`GuardError`](crate::GuardError), [`ClusterError`](crate::ClusterError), and
//! [`ClientError`](crate::ClientError) for the Kafka client layer they share (client settings,
//! topic creation, connecting), which the others wrap unchanged.
//!
//! A variant's `Display` says what failed; its source says why. [`full_message`] joins the
//! two, which is the message users see.

use std::error::Error;

/// What sort of failure an error is, whatever service it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request or the settings are wrong; the same request fails again.
    Invalid,
    /// The request conflicts with what exists now (a name taken, a group with members).
    Conflict,
    /// What the request names does not exist.
    NotFound,
    /// The Kafka cluster or the account database failed or did not answer; a retry may
    /// succeed.
    Unavailable,
    /// Waiting for the cluster took longer than allowed; a retry may succeed.
    Timeout,
    /// A failure of this process, not of the request or the cluster (a thread that could not
    /// start, a task that panicked, a record that cannot be read).
    Internal,
}

/// An error that knows its [`ErrorKind`]. Every service's error type implements it.
pub trait Classify: Error {
    fn kind(&self) -> ErrorKind;
}

/// `error` and its causes, joined by `": "`: what failed, then why. A cause whose text the
/// message already holds is left out, since some libraries (rdkafka, sqlx) print their own
/// source inside their message.
pub fn full_message(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    for cause in causes(error) {
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

/// The text of each source of `error`, nearest first (`error` itself left out).
pub fn causes(error: &(dyn Error + 'static)) -> Vec<String> {
    let mut causes = Vec::new();
    let mut next = error.source();
    while let Some(cause) = next {
        causes.push(cause.to_string());
        next = cause.source();
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the key")]
    struct Outer(#[source] Middle);

    /// Prints its source inside its own message, as rdkafka's and sqlx's errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("io: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_message_holds_every_cause_once() {
        let error = Outer(Middle(std::io::Error::other("disk on fire")));
        assert_eq!(full_message(&error), "reading the key: io: disk on fire");
        assert_eq!(causes(&error), ["io: disk on fire", "disk on fire"]);
    }
}
