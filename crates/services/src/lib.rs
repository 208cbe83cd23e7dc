//! Freshet's stream services. They reach Kafka only through the Kafka protocol (the rdkafka
//! crate; [`cluster`] also encodes the few requests rdkafka does not expose itself, with the
//! kafka-protocol crate, and reads record pages with its own Fetch so that a decompression
//! bomb costs a bounded amount) and never import broker code, so each runs unchanged against
//! Freshet's embedded broker or an Apache Kafka / Redpanda cluster (`--bootstrap-servers`).
//!
//! # Layout
//!
//! - [`kafka`]: client settings shared by every service, topic creation, and the check that a
//!   broker answers at the bootstrap servers ([`kafka::wait_for_broker`]); their failures are
//!   [`ClientError`]s.
//! - [`checkpointed`]: the consumer loop every stateful service runs (the tracker's workers,
//!   the guard's blocker): state per input partition, checkpointed only after what its
//!   records caused is acknowledged, rewound on a failed delivery, resumed on assignment.
//! - [`generator`]: the device-event generator (`freshet generate`, `GET /start`) and the job
//!   registry the HTTP API reads progress from.
//! - [`tracker`]: tracker nodes counting distinct device IPs exactly, per node and globally,
//!   with checkpoints in a compacted `freshet.` topic.
//! - [`guard`]: the login guard: accounts in SQLite or PostgreSQL, login attempts as events,
//!   a blocker that blocks brute-forced users, and the block map every login node follows.
//! - [`event`]: the `device-events` record format, shared by generator and tracker.
//! - [`cluster`]: the cluster's topics, records and consumer groups, for the topic REST API
//!   (list, describe, create and delete topics; send and read records; groups and their lag).
//! - [`panics`]: panics caught in a job or a request, logged and counted.
//! - [`error`]: what the services' errors share: an [`ErrorKind`] each error reports
//!   ([`Classify`]), which the HTTP API turns into a status in one place, and
//!   [`full_message`](error::full_message), an error with its causes.
//!
//! # Errors
//!
//! Each service has its own error type: [`GeneratorError`], [`TrackerError`], [`GuardError`]
//! and [`ClusterError`], each wrapping the shared [`ClientError`] unchanged. Their variants
//! say what failed and keep what caused it (an rdkafka, sqlx, Argon2 or I/O error) as their
//! [`source`](std::error::Error::source) rather than as text; `Display` says what failed, and
//! [`full_message`](error::full_message) adds why. Validation errors are text: the message
//! is all there is to them.

mod binary;
pub mod checkpointed;
pub mod cluster;
pub mod error;
pub mod event;
pub mod generator;
pub mod guard;
pub mod kafka;
pub mod panics;
pub mod tracker;

pub use cluster::ClusterError;
pub use error::{Classify, ErrorKind};
pub use generator::GeneratorError;
pub use guard::GuardError;
pub use kafka::{ClientError, KafkaConfig};
pub use tracker::TrackerError;

/// Who writes a topic when it is one the services keep for themselves: the login guard's
/// topics, and every `freshet.` topic (service state: the tracker's and the guard's
/// checkpoints). `None` for every other topic. Clients (the REST API, and the broker once it
/// has ACLs) must not write to or delete these: a forged record there is a forged block,
/// unblock or count.
pub fn service_topic_owner(name: &str) -> Option<&'static str> {
    use guard::attempts::{LOGIN_ATTEMPTS, LOGIN_ATTEMPTS_DLQ};
    use guard::blocks::BLOCKED_USERS;
    if [LOGIN_ATTEMPTS, BLOCKED_USERS, LOGIN_ATTEMPTS_DLQ].contains(&name)
        || name.starts_with("freshet.guard.")
    {
        Some("the login guard")
    } else if name.starts_with("freshet.tracker.") {
        Some("the tracker")
    } else if name.starts_with("freshet.") {
        Some("a Freshet service")
    } else {
        None
    }
}

/// Whether only the services write to and delete `name` ([`service_topic_owner`]).
pub fn is_service_topic(name: &str) -> bool {
    service_topic_owner(name).is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_guards_topics_and_service_state_are_service_topics() {
        for name in [
            "login-attempts",
            "blocked-users",
            "login-attempts.dlq",
            "freshet.guard.checkpoints",
            "freshet.tracker.g.device-events",
        ] {
            assert!(super::is_service_topic(name), "{name}");
        }
        for name in [
            "orders",
            "device-events",
            "login-attempts2",
            "freshet",
            "__consumer_offsets",
        ] {
            assert!(!super::is_service_topic(name), "{name}");
        }
    }
}
