//! The `login-attempts` topic: one JSON record per login attempt, keyed by user, so all of a
//! user's attempts land in one partition in order and one blocker owns them.
//!
//! The login path publishes without waiting: the record goes into librdkafka's queue and the
//! answer is sent at once. If the cluster is down, librdkafka keeps the record and retries
//! (idempotently, so a retry never duplicates it) for [`DELIVERY_TIMEOUT`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use crate::{KafkaConfig, ServiceError};

/// Topic of login attempts.
pub const LOGIN_ATTEMPTS: &str = "login-attempts";
/// Largest attempt record the blocker reads; anything bigger is not one of ours.
pub const MAX_ATTEMPT_BYTES: usize = 4096;
/// How long librdkafka keeps retrying an attempt while the cluster is unreachable.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// What a record of `login-attempts` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// A login: `success` says how it went.
    #[default]
    Login,
    /// An admin lifted the user's block. It travels in the same partition as the user's
    /// attempts, so the blocker sees it in order with them.
    Unblock,
}

/// One record of `login-attempts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Unique per attempt: a record delivered twice is counted once.
    pub attempt_id: uuid::Uuid,
    pub user: String,
    /// Address the request came from.
    pub source: String,
    /// When the login node received it, Unix ms. Windows are by this time.
    pub time_ms: i64,
    pub success: bool,
    /// Refused without a password check because the user was blocked (a failure).
    #[serde(default, skip_serializing_if = "is_false")]
    pub blocked: bool,
    #[serde(default, skip_serializing_if = "is_login")]
    pub kind: AttemptKind,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_login(kind: &AttemptKind) -> bool {
    *kind == AttemptKind::Login
}

impl Attempt {
    /// A login attempt happening now.
    pub fn login(user: &str, source: &str, success: bool) -> Attempt {
        Attempt {
            attempt_id: uuid::Uuid::new_v4(),
            user: user.to_string(),
            source: source.to_string(),
            time_ms: super::now_ms(),
            success,
            blocked: false,
            kind: AttemptKind::Login,
        }
    }

    /// The record of an admin lifting `user`'s block.
    pub fn unblock(user: &str) -> Attempt {
        Attempt {
            kind: AttemptKind::Unblock,
            ..Attempt::login(user, "admin", false)
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a record value; the error says why it is not an attempt.
    pub fn parse(value: Option<&[u8]>) -> Result<Attempt, String> {
        let bytes = value.ok_or("record has no value")?;
        if bytes.len() > MAX_ATTEMPT_BYTES {
            return Err(format!("record is {} bytes", bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Publishes attempts without making the login wait. Cheap to clone.
#[derive(Clone)]
pub struct AttemptPublisher {
    producer: FutureProducer,
    topic: Arc<str>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AttemptPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptPublisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl AttemptPublisher {
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<AttemptPublisher, ServiceError> {
        let producer: FutureProducer = kafka
            .durable_producer_config("guard-attempts")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .set("linger.ms", "5")
            .create()?;
        Ok(AttemptPublisher {
            producer,
            topic: topic.into(),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `attempt` and returns at once; a delivery failure is logged and counted. Must
    /// be called inside a Tokio runtime (the delivery report is awaited on it).
    pub fn publish(&self, attempt: &Attempt) {
        let value = attempt.to_json();
        let record = FutureRecord::to(&self.topic)
            .key(attempt.user.as_str())
            .payload(value.as_slice());
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let dropped = self.dropped.clone();
                tokio::spawn(async move {
                    if let Ok(Err((error, _))) = delivery.await {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, "a login attempt was not delivered");
                    }
                });
            }
            Err((error, _)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "a login attempt could not be queued");
            }
        }
    }

    /// Publishes `attempt` and waits until the cluster has it (admin actions, which must
    /// not be lost silently).
    pub async fn publish_acked(&self, attempt: &Attempt) -> Result<(), ServiceError> {
        let value = attempt.to_json();
        let record = FutureRecord::to(&self.topic)
            .key(attempt.user.as_str())
            .payload(value.as_slice());
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| ServiceError::Kafka(error))
    }

    /// Sends any record with this producer and waits for the cluster to have it.
    pub async fn send_acked(
        &self,
        record: FutureRecord<'_, str, [u8]>,
    ) -> Result<(), ServiceError> {
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| ServiceError::Kafka(error))
    }

    /// Attempts that were not delivered or not queued.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) for queued attempts to be delivered. Blocking.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "login attempts still queued at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_round_trip_and_logins_have_no_extra_fields() {
        let attempt = Attempt::login("bob", "10.0.0.1", false);
        let json: serde_json::Value = serde_json::from_slice(&attempt.to_json()).expect("json");
        let keys: std::collections::BTreeSet<&str> = json
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let expected = ["attempt_id", "source", "success", "time_ms", "user"];
        assert_eq!(keys, expected.into_iter().collect());
        assert_eq!(Attempt::parse(Some(&attempt.to_json())), Ok(attempt));
        let unblock = Attempt::unblock("bob");
        assert_eq!(Attempt::parse(Some(&unblock.to_json())), Ok(unblock));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(Attempt::parse(None).is_err());
        assert!(Attempt::parse(Some(b"{}")).is_err());
        assert!(Attempt::parse(Some(&vec![b' '; MAX_ATTEMPT_BYTES + 1])).is_err());
    }
}
