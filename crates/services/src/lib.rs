//! Freshet's stream services. They reach Kafka only through the Kafka protocol (the rdkafka
//! crate; [`cluster`] also encodes the few requests rdkafka does not expose itself, with the
//! kafka-protocol crate, and reads record pages with its own Fetch so that a decompression
//! bomb costs a bounded amount) and never import broker code, so each runs unchanged against
//! Freshet's embedded broker or an Apache Kafka / Redpanda cluster (`--bootstrap-servers`).
//!
//! # Layout
//!
//! - [`kafka`]: client settings shared by every service, and topic creation.
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

pub mod cluster;
pub mod error;
pub mod event;
pub mod generator;
pub mod guard;
pub mod kafka;
pub mod panics;
pub mod tracker;

pub use error::ServiceError;
pub use kafka::KafkaConfig;

/// Who writes a topic when it is one the services keep for themselves: the login guard's
/// topics, and every `freshet.` topic (service state: the tracker's and the guard's
/// checkpoints). `None` for every other topic. Clients (the REST API, and the broker once it
/// has ACLs) must not write to or delete these: a forged record there is a forged block,
/// unblock or count.
pub fn service_topic_owner(name: &str) -> Option<&'static str> {
    use guard::attempts::{LOGIN_ATTEMPTS, LOGIN_ATTEMPTS_DLQ};
    use guard::blocks::BLOCKED_USERS;
    if [LOGIN_ATTEMPTS, BLOCKED_USERS, LOGIN_ATTEMPTS_DLQ].contains(&name) {
        Some("the login guard")
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
