//! One guard node as the tests run it (a blocker and a follower of its block topic), and the
//! waits and publishers the guard tests share.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_services::guard::attempts::{Attempt, AttemptPublisher};
use freshet_services::guard::blocker::{Blocker, BlockerStats};
use freshet_services::guard::blocks::{BlockMap, BlocksFollower};
use freshet_services::guard::rules::BlockRecord;
use freshet_services::guard::{ensure_topics, GuardConfig};
use freshet_services::KafkaConfig;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A blocker and a follower of its block topic, as one guard node runs them.
pub struct Node {
    pub blocker: Blocker,
    pub follower: BlocksFollower,
}

impl Node {
    pub async fn start(kafka: &KafkaConfig, config: &GuardConfig) -> Node {
        ensure_topics(kafka, config).await.expect("topics");
        let blocker = Blocker::start(kafka, config.blocker_config()).expect("blocker");
        let follower = BlocksFollower::start(kafka, &config.blocks_topic, config.secret.clone())
            .expect("follower");
        Node { blocker, follower }
    }

    pub fn blocks(&self) -> BlockMap {
        self.follower.map()
    }

    pub fn stats(&self) -> Arc<BlockerStats> {
        self.blocker.stats()
    }

    /// Waits until the blocker has processed `records` and its block writes are
    /// acknowledged, then gives the follower a few poll intervals to read them.
    pub async fn settle(&self, records: u64) {
        let stats = self.stats();
        wait_until(
            "records processed and their block writes acknowledged",
            || stats.acknowledged.load(Ordering::SeqCst) >= records,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    pub async fn stop(self) {
        tokio::task::spawn_blocking(move || {
            self.blocker.shutdown();
            self.follower.shutdown();
        })
        .await
        .expect("stopped");
    }
}

pub fn publisher(kafka: &KafkaConfig, config: &GuardConfig) -> AttemptPublisher {
    AttemptPublisher::new(kafka, &config.attempts_topic, config.secret.clone()).expect("publisher")
}

pub async fn publish(publisher: &AttemptPublisher, attempts: &[Attempt]) {
    for attempt in attempts {
        publisher.publish_acked(attempt).await.expect("published");
    }
}

pub fn failures(user: &str, n: usize) -> Vec<Attempt> {
    (0..n)
        .map(|_| Attempt::login(user, "10.1.2.3", false))
        .collect()
}

pub async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_blocked(blocks: &BlockMap, user: &str, failures: u64) -> BlockRecord {
    let arrived = blocks
        .wait_for(user, TIMEOUT, |b| b.is_some_and(|b| b.failures == failures))
        .await;
    assert!(
        arrived,
        "{user} blocked with {failures} failures: {:?}",
        blocks.active(user)
    );
    blocks.active(user).expect("blocked")
}
