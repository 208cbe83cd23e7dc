//! The blocker and the block follower against a real broker: attempts are published over
//! TCP, the blocker consumes them in a consumer group, and block records are read back from
//! `blocked-users` by the follower, as a login node reads them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use freshet_services::guard::attempts::Attempt;
use freshet_services::guard::rules::Rules;
use freshet_services::guard::secret::GuardSecret;
use freshet_services::guard::GuardConfig;
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;

use crate::common;
use common::guard::{failures, publish, publisher, wait_blocked, wait_until, Node};

/// One key for every node of a test, as a cluster's nodes share theirs.
fn secret() -> GuardSecret {
    GuardSecret::from_bytes(&[7; 32]).expect("key")
}

fn guard_config(prefix: &str) -> GuardConfig {
    GuardConfig {
        attempts_topic: "login-attempts".into(),
        blocks_topic: format!("{prefix}blocked-users"),
        checkpoint_topic: format!("{prefix}freshet.guard.checkpoints"),
        group: format!("{prefix}freshet-guard"),
        checkpoint_interval: Duration::from_millis(200),
        session_timeout: Duration::from_secs(6),
        ..GuardConfig::with_secret("sqlite::memory:", secret())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_block_and_four_plus_a_success_do_not() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config("");
    let node = Node::start(&kafka, &config).await;
    let publisher = publisher(&kafka, &config);

    let mut alice = failures("alice", 4);
    alice.push(Attempt::login("alice", "10.1.2.3", true));
    alice.extend(failures("alice", 4));
    publish(&publisher, &alice).await;
    publish(&publisher, &failures("mallory", 5)).await;

    let record = wait_blocked(&node.blocks(), "mallory", 5).await;
    assert_eq!(record.until_ms, None, "blocks never expire by default");
    node.settle(14).await;
    assert_eq!(node.blocks().active("alice"), None);
    let names: Vec<String> = node.blocks().list().into_iter().map(|b| b.user).collect();
    assert_eq!(names, ["mallory"]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_blocker_resumes_its_counts_from_the_checkpoint() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config("");
    let node = Node::start(&kafka, &config).await;
    let publisher = publisher(&kafka, &config);

    publish(&publisher, &failures("erin", 3)).await;
    let stats = node.stats();
    wait_until("3 attempts processed and checkpointed", || {
        stats.processed.load(Ordering::SeqCst) == 3 && stats.checkpoints.load(Ordering::SeqCst) > 0
    })
    .await;
    node.stop().await;

    let node = Node::start(&kafka, &config).await;
    publish(&publisher, &failures("erin", 2)).await;
    let record = wait_blocked(&node.blocks(), "erin", 5).await;
    assert_eq!(record.failures, 5);
    assert_eq!(
        node.stats().processed.load(Ordering::SeqCst),
        2,
        "the restarted blocker resumed at the checkpoint's offset, not the beginning"
    );
    node.stop().await;

    // Restarted again: a new follower finds the block, and the blocker its state: the next
    // failure is added to the block (6), not counted from nothing.
    let node = Node::start(&kafka, &config).await;
    let still = wait_blocked(&node.blocks(), "erin", 5).await;
    assert_eq!(still, record);
    publish(&publisher, &failures("erin", 1)).await;
    wait_blocked(&node.blocks(), "erin", 6).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_attempt_counts_once() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config("");
    let node = Node::start(&kafka, &config).await;
    let publisher = publisher(&kafka, &config);

    let repeated = Attempt::login("frank", "10.1.2.3", false);
    publish(&publisher, &vec![repeated.clone(); 5]).await;
    publish(&publisher, &failures("frank", 3)).await;
    node.settle(8).await;
    assert_eq!(node.blocks().active("frank"), None, "4 distinct failures");

    publish(&publisher, &failures("frank", 1)).await;
    wait_blocked(&node.blocks(), "frank", 5).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_attempts_topic_gives_the_same_blocks() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = guard_config("");
    let node = Node::start(&kafka, &config).await;
    let publisher = publisher(&kafka, &config);

    let mut attempts = Vec::new();
    for i in 0..20 {
        let user = format!("user{i}");
        attempts.extend(failures(&user, i % 8));
        if i % 3 == 0 {
            attempts.push(Attempt::login(&user, "10.9.9.9", true));
            attempts.extend(failures(&user, 2));
        }
    }
    publish(&publisher, &attempts).await;
    let total = attempts.len() as u64;
    node.settle(total).await;
    let original = node.blocks().list();
    assert!(original.len() > 5, "{original:?}");

    // A second blocker with its own group, checkpoints and block topic reads everything
    // from the beginning.
    let replay = Node::start(&kafka, &guard_config("replay.")).await;
    replay.settle(total).await;
    assert_eq!(replay.blocks().list(), original);
    replay.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_expire_after_block_for() {
    let broker = TestBroker::start().await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    let config = GuardConfig {
        rules: Rules {
            block_for_ms: Some(1500),
            ..Rules::default()
        },
        ..guard_config("")
    };
    let node = Node::start(&kafka, &config).await;
    let publisher = publisher(&kafka, &config);

    publish(&publisher, &failures("gina", 5)).await;
    let record = wait_blocked(&node.blocks(), "gina", 5).await;
    assert_eq!(record.until_ms, Some(record.since_ms + 1500));
    let expired = node
        .blocks()
        .wait_for("gina", Duration::from_secs(5), |b| b.is_none())
        .await;
    assert!(expired, "the block ends at until_ms");
    assert!(node.blocks().list().is_empty());

    // Counting starts afresh: a new burst blocks again, from its own start.
    publish(&publisher, &failures("gina", 5)).await;
    let again = wait_blocked(&node.blocks(), "gina", 5).await;
    assert!(again.since_ms > record.since_ms);
    node.stop().await;
}
