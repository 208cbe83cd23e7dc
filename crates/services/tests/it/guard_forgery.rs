//! Records the guard did not write change nothing: attempts, unblocks, block records and
//! checkpoints produced over the Kafka protocol by someone without the guard's secret (or
//! altered copies of genuine ones) are refused, dead-lettered where they are attempts, and
//! counted. Against a real broker over TCP, with rdkafka as the forger's client.

use std::sync::atomic::Ordering;
use std::time::Duration;

use freshet_services::event::{ORIGIN_HEADER, REASON_HEADER};
use freshet_services::guard::attempts::{Attempt, AttemptPublisher, LOGIN_ATTEMPTS_DLQ};
use freshet_services::guard::blocks::BlockEntry;
use freshet_services::guard::mac::{Rejection, MAC_HEADER};
use freshet_services::guard::rules::BlockRecord;
use freshet_services::guard::secret::GuardSecret;
use freshet_services::guard::GuardConfig;
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::json;

use crate::common;
use common::guard::{publisher, wait_blocked, wait_until, Node, TIMEOUT};

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    since_epoch.as_millis() as i64
}

fn secret(byte: u8) -> GuardSecret {
    GuardSecret::from_bytes(&[byte; 32]).expect("key")
}

fn guard_config(secret: GuardSecret) -> GuardConfig {
    GuardConfig {
        checkpoint_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        ..GuardConfig::with_secret("sqlite::memory:", secret)
    }
}

async fn fail(publisher: &AttemptPublisher, user: &str, times: usize) {
    for _ in 0..times {
        let attempt = Attempt::login(user, "10.1.2.3", false);
        publisher.publish_acked(&attempt).await.expect("published");
    }
}

/// What a client without the secret sends: the attempt record's JSON, nothing signed.
fn forged_failure(user: &str) -> Vec<u8> {
    let record = json!({
        "attempt_id": uuid::Uuid::new_v4(),
        "user": user,
        "source": "6.6.6.6",
        "time_ms": now_ms(),
        "success": false,
    });
    record.to_string().into_bytes()
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, value: Option<&[u8]>) {
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
    if let Some(value) = value {
        record = record.payload(value);
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("the broker takes the forged record");
}

/// A dead-letter record: its reason and origin headers, and its value.
#[derive(Debug)]
struct DeadLetter {
    reason: String,
    origin: String,
    value: Vec<u8>,
}

async fn read_dead_letters(broker: &TestBroker, expected: usize) -> Vec<DeadLetter> {
    let consumer: StreamConsumer = broker.consumer("dlq-reader", &[]);
    consumer
        .subscribe(&[LOGIN_ATTEMPTS_DLQ])
        .expect("subscribe");
    let mut records = Vec::new();
    while records.len() < expected {
        let message = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .expect("dead letters arrive")
            .expect("consumed");
        let header = |name: &str| {
            message
                .headers()
                .and_then(|headers| headers.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        records.push(DeadLetter {
            reason: header(REASON_HEADER),
            origin: header(ORIGIN_HEADER),
            value: message.payload().unwrap_or_default().to_vec(),
        });
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_failures_block_nobody_and_are_dead_lettered_and_counted() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config(secret(1));
    let node = Node::start(&kafka, &config).await;
    let forger = broker.producer(&[]);

    let forged: Vec<Vec<u8>> = (0..6).map(|_| forged_failure("victim")).collect();
    for value in &forged {
        produce(&forger, &config.attempts_topic, "victim", Some(value)).await;
    }
    node.settle(6).await;
    assert_eq!(node.blocks().active("victim"), None);
    assert_eq!(node.stats().rejected.get(Rejection::MissingMac), 6);

    let letters = read_dead_letters(&broker, 6).await;
    for (letter, value) in letters.iter().zip(&forged) {
        assert_eq!(letter.reason, "missing mac");
        assert!(letter.origin.starts_with("login-attempts/"), "{letter:?}");
        assert_eq!(&letter.value, value, "dead-lettered unchanged");
    }

    // Genuine failures still block, and the forged ones were not counted with them.
    fail(&publisher(&kafka, &config), "victim", 5).await;
    wait_blocked(&node.blocks(), "victim", 5).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_attempt_altered_to_name_another_user_is_refused() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config(secret(1));
    let node = Node::start(&kafka, &config).await;
    let forger = broker.producer(&[]);

    // The attacker's own failed logins are genuine records, readable by anyone who can
    // read the topic: copies with the user changed keep a MAC that no longer fits.
    for _ in 0..6 {
        let genuine = Attempt::login("mallory", "6.6.6.6", false).signed(&config.secret);
        let altered = Attempt {
            user: "victim".into(),
            ..genuine
        };
        produce(
            &forger,
            &config.attempts_topic,
            "victim",
            Some(&altered.to_json()),
        )
        .await;
    }
    // Moved to the victim's key but left naming the attacker: the key is signed too.
    let genuine = Attempt::login("mallory", "6.6.6.6", false).signed(&config.secret);
    produce(
        &forger,
        &config.attempts_topic,
        "victim",
        Some(&genuine.to_json()),
    )
    .await;
    produce(&forger, &config.attempts_topic, "victim", Some(b"not json")).await;
    node.settle(8).await;
    assert_eq!(node.blocks().active("victim"), None);
    assert_eq!(node.stats().rejected.get(Rejection::InvalidMac), 7);
    assert_eq!(node.stats().rejected.get(Rejection::Unreadable), 1);

    let letters = read_dead_letters(&broker, 8).await;
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(reasons[..7], ["invalid mac"; 7]);
    assert!(
        reasons[7].starts_with("not a guard record: "),
        "{reasons:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_refuses_the_records() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config(secret(1));
    let node = Node::start(&kafka, &config).await;
    let other = guard_config(secret(2));

    fail(&publisher(&kafka, &other), "victim", 6).await;
    node.settle(6).await;
    assert_eq!(node.blocks().active("victim"), None);
    assert_eq!(node.stats().rejected.get(Rejection::InvalidMac), 6);
    let letters = read_dead_letters(&broker, 6).await;
    assert!(
        letters.iter().all(|l| l.reason == "invalid mac"),
        "{letters:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unblocks_and_block_records_change_nothing_and_a_genuine_unblock_works() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config(secret(1));
    let node = Node::start(&kafka, &config).await;
    let genuine = publisher(&kafka, &config);
    let forger = broker.producer(&[]);
    fail(&genuine, "victim", 5).await;
    wait_blocked(&node.blocks(), "victim", 5).await;

    // On login-attempts: an unsigned unblock, and one signed with another key.
    let unsigned = Attempt::unblock("victim").to_json();
    let foreign = Attempt::unblock("victim").signed(&secret(2)).to_json();
    for value in [&unsigned, &foreign] {
        produce(&forger, &config.attempts_topic, "victim", Some(value)).await;
    }
    // On blocked-users: a tombstone, unsigned and foreign lifts, and blocks of a bystander.
    let blocks = &config.blocks_topic;
    let lift = BlockEntry::unblock("victim", now_ms());
    let bystander = BlockEntry::block(BlockRecord {
        user: "bystander".into(),
        since_ms: now_ms(),
        until_ms: None,
        failures: 5,
        last_failure_ms: now_ms(),
    });
    produce(&forger, blocks, "victim", None).await;
    produce(&forger, blocks, "victim", Some(&lift.to_json())).await;
    let foreign_lift = lift.clone().signed(&secret(2)).to_json();
    produce(&forger, blocks, "victim", Some(&foreign_lift)).await;
    produce(&forger, blocks, "bystander", Some(&bystander.to_json())).await;
    let foreign_block = bystander.signed(&secret(2)).to_json();
    produce(&forger, blocks, "bystander", Some(&foreign_block)).await;

    let map = node.blocks();
    wait_until("the follower refused the 5 forged records", || {
        map.rejected().total() == 5
    })
    .await;
    node.settle(7).await;
    assert_eq!(node.stats().rejected.get(Rejection::MissingMac), 1);
    assert_eq!(node.stats().rejected.get(Rejection::InvalidMac), 1);
    let rejected = map.rejected();
    assert_eq!(rejected.get(Rejection::Tombstone), 1);
    assert_eq!(rejected.get(Rejection::MissingMac), 2);
    assert_eq!(rejected.get(Rejection::InvalidMac), 2);
    assert_eq!(
        map.active("victim").map(|b| b.failures),
        Some(5),
        "still blocked"
    );
    assert_eq!(map.active("bystander"), None);

    // A genuine unblock lifts the block, through the blocker's signed lift record.
    let unblock = Attempt::unblock("victim").signed(&config.secret);
    produce(
        &forger,
        &config.attempts_topic,
        "victim",
        Some(&unblock.to_json()),
    )
    .await;
    let lifted = map.wait_for("victim", TIMEOUT, |b| b.is_none()).await;
    assert!(lifted, "the genuine unblock lifts the block");

    // Blocked again: a copy of that genuine unblock is from before this block and lifts
    // nothing.
    fail(&genuine, "victim", 5).await;
    wait_blocked(&map, "victim", 5).await;
    produce(
        &forger,
        &config.attempts_topic,
        "victim",
        Some(&unblock.to_json()),
    )
    .await;
    node.settle(7 + 1 + 5 + 1).await;
    assert_eq!(
        map.active("victim").map(|b| b.failures),
        Some(5),
        "still blocked"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_checkpoint_is_ignored_on_restart() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config(secret(1));
    let node = Node::start(&kafka, &config).await;
    let genuine = publisher(&kafka, &config);
    fail(&genuine, "erin", 3).await;
    let stats = node.stats();
    wait_until("3 attempts processed and checkpointed", || {
        stats.processed.load(Ordering::SeqCst) == 3 && stats.checkpoints.load(Ordering::SeqCst) > 0
    })
    .await;
    node.stop().await;

    // Checkpoints that would resume after erin's failures with an empty state, forgetting
    // them: one unsigned, one with a MAC that is not the guard's.
    let forger = broker.producer(&[]);
    let skip_all = json!({"next_offset": 3, "watermark_ms": 0, "users": {}}).to_string();
    for partition in 0..config.attempts_partitions {
        let key = format!("{}/{partition}", config.attempts_topic);
        produce(
            &forger,
            &config.checkpoint_topic,
            &key,
            Some(skip_all.as_bytes()),
        )
        .await;
        let headers = OwnedHeaders::new().insert(Header {
            key: MAC_HEADER,
            value: Some("00".repeat(32).as_str()),
        });
        let record = FutureRecord::<str, [u8]>::to(&config.checkpoint_topic)
            .key(&key)
            .payload(skip_all.as_bytes())
            .headers(headers);
        forger
            .send(record, Duration::from_secs(10))
            .await
            .expect("produced");
    }

    let node = Node::start(&kafka, &config).await;
    fail(&genuine, "erin", 2).await;
    wait_blocked(&node.blocks(), "erin", 5).await;
    assert_eq!(
        node.stats().processed.load(Ordering::SeqCst),
        2,
        "resumed from the genuine checkpoint"
    );
    node.stop().await;
}
