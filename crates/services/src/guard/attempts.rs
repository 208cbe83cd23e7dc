//! The `login-attempts` topic: one JSON record per login attempt, keyed by user, so all of a
//! user's attempts land in one partition in order and one blocker owns them. Each record is
//! signed (`"mac"`, see [`super::mac`]); the blocker refuses the others.
//!
//! The login path publishes without waiting: the record goes into librdkafka's queue and the
//! answer is sent at once. If the cluster is down, librdkafka keeps the record and retries
//! (idempotently, so a retry never duplicates it) for [`DELIVERY_TIMEOUT`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::mac::{self, Canonical, Rejection};
use super::secret::GuardSecret;
use super::GuardError;
use crate::kafka::CreateClient;
use crate::KafkaConfig;

/// Topic of login attempts.
pub const LOGIN_ATTEMPTS: &str = "login-attempts";
/// Where the blocker puts the records of `login-attempts` it refuses (no valid MAC, not an
/// attempt), unchanged, with the reason and origin in the `freshet.reason` and
/// `freshet.origin` headers (the tracker's dead-letter format).
pub const LOGIN_ATTEMPTS_DLQ: &str = "login-attempts.dlq";
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
    /// HMAC of the record (hex); `None` until [`Attempt::signed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
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
            mac: None,
        }
    }

    /// The record of an admin lifting `user`'s block.
    pub fn unblock(user: &str) -> Attempt {
        Attempt {
            kind: AttemptKind::Unblock,
            ..Attempt::login(user, "admin", false)
        }
    }

    /// The Kafka key of the record: the user, so one partition holds all of a user's
    /// attempts.
    pub fn record_key(&self) -> &[u8] {
        self.user.as_bytes()
    }

    /// The attempt with its MAC, for a record keyed by [`Attempt::record_key`].
    pub fn signed(mut self, secret: &GuardSecret) -> Attempt {
        let canonical = self.canonical(Some(self.record_key()));
        self.mac = Some(mac::sign(secret, &canonical));
        self
    }

    /// Whether the guard wrote this attempt under `key` (the record's Kafka key).
    pub fn verify(&self, secret: &GuardSecret, key: Option<&[u8]>) -> Result<(), Rejection> {
        mac::verify(secret, &self.canonical(key), self.mac.as_deref())
    }

    /// Every field but the MAC, in a fixed order (see [`super::mac`]).
    fn canonical(&self, key: Option<&[u8]>) -> Canonical {
        let kind = match self.kind {
            AttemptKind::Login => "attempt.login",
            AttemptKind::Unblock => "attempt.unblock",
        };
        Canonical::new(kind, key)
            .bytes(self.attempt_id.as_bytes())
            .text(&self.user)
            .text(&self.source)
            .int(self.time_ms)
            .flag(self.success)
            .flag(self.blocked)
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

/// Signs and publishes attempts without making the login wait. Cheap to clone.
#[derive(Clone)]
pub struct AttemptPublisher {
    producer: FutureProducer,
    topic: Arc<str>,
    secret: GuardSecret,
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
    pub fn new(
        kafka: &KafkaConfig,
        topic: &str,
        secret: GuardSecret,
    ) -> Result<AttemptPublisher, GuardError> {
        let producer: FutureProducer = kafka
            .durable_producer_config("guard-attempts")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .set("linger.ms", "5")
            .create_client()?;
        Ok(AttemptPublisher {
            producer,
            topic: topic.into(),
            secret,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `attempt` and returns at once; a delivery failure is logged and counted. Must
    /// be called inside a Tokio runtime (the delivery report is awaited on it).
    pub fn publish(&self, attempt: &Attempt) {
        let value = self.signed_json(attempt);
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
    pub async fn publish_acked(&self, attempt: &Attempt) -> Result<(), GuardError> {
        let value = self.signed_json(attempt);
        let record = FutureRecord::to(&self.topic)
            .key(attempt.user.as_str())
            .payload(value.as_slice());
        self.send_acked(record).await
    }

    /// Sends any record with this producer and waits for the cluster to have it.
    pub async fn send_acked(&self, record: FutureRecord<'_, str, [u8]>) -> Result<(), GuardError> {
        let topic = record.topic.to_string();
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| GuardError::kafka(format!("publishing to {topic}"))(error))
    }

    fn signed_json(&self, attempt: &Attempt) -> Vec<u8> {
        attempt.clone().signed(&self.secret).to_json()
    }

    /// The topic attempts go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The key this publisher signs with (the admin's lift records are signed with it too).
    pub fn secret(&self) -> &GuardSecret {
        &self.secret
    }

    /// Attempts that were not delivered or not queued.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) for queued attempts to be delivered. Blocking.
    pub fn flush(&self, timeout: Duration) {
        if !crate::kafka::wait_delivered(&self.producer, timeout) {
            tracing::warn!(?timeout, "login attempts still queued at shutdown");
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

    fn secret(byte: u8) -> GuardSecret {
        GuardSecret::from_bytes(&[byte; 32]).expect("key")
    }

    #[test]
    fn a_signed_attempt_verifies_after_a_round_trip_and_only_unchanged() {
        let key = secret(1);
        let signed = Attempt::login("bob", "10.0.0.1", false).signed(&key);
        let json: serde_json::Value = serde_json::from_slice(&signed.to_json()).expect("json");
        assert_eq!(json["mac"].as_str().map(str::len), Some(64));
        let parsed = Attempt::parse(Some(&signed.to_json())).expect("parses");
        assert_eq!(parsed.verify(&key, Some(b"bob")), Ok(()));

        let check = |attempt: &Attempt, key_bytes: &[u8]| attempt.verify(&key, Some(key_bytes));
        let altered = [
            Attempt {
                user: "eve".into(),
                ..parsed.clone()
            },
            Attempt {
                source: "6.6.6.6".into(),
                ..parsed.clone()
            },
            Attempt {
                time_ms: parsed.time_ms + 1,
                ..parsed.clone()
            },
            Attempt {
                success: true,
                ..parsed.clone()
            },
            Attempt {
                blocked: true,
                ..parsed.clone()
            },
            Attempt {
                kind: AttemptKind::Unblock,
                ..parsed.clone()
            },
            Attempt {
                attempt_id: uuid::Uuid::new_v4(),
                ..parsed.clone()
            },
        ];
        for attempt in &altered {
            assert_eq!(
                check(attempt, b"bob"),
                Err(Rejection::InvalidMac),
                "{attempt:?}"
            );
        }
        assert_eq!(
            check(&parsed, b"eve"),
            Err(Rejection::InvalidMac),
            "another key"
        );
        assert_eq!(
            parsed.verify(&key, None),
            Err(Rejection::InvalidMac),
            "no key"
        );
        assert_eq!(
            parsed.verify(&secret(2), Some(b"bob")),
            Err(Rejection::InvalidMac)
        );
        let unsigned = Attempt {
            mac: None,
            ..parsed
        };
        assert_eq!(
            unsigned.verify(&key, Some(b"bob")),
            Err(Rejection::MissingMac)
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(Attempt::parse(None).is_err());
        assert!(Attempt::parse(Some(b"{}")).is_err());
        assert!(Attempt::parse(Some(&vec![b' '; MAX_ATTEMPT_BYTES + 1])).is_err());
    }
}
