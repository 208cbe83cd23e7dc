//! What a guard node counts about its own work, for monitoring (`/metrics`): login outcomes
//! on this node, and through the [`GuardHandle`](super::GuardHandle) the blocker's tallies
//! and the blocks that hold now. Process-local: they start at 0 with the process.

use std::sync::atomic::{AtomicU64, Ordering};

use super::mac::Rejection;
use super::LoginOutcome;

/// A guard node's numbers for monitoring, read by
/// [`GuardHandle::metrics`](super::GuardHandle::metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardMetrics {
    /// Logins this node answered, by outcome.
    pub logins: Vec<(LoginOutcome, u64)>,
    /// Users whose block holds now.
    pub users_blocked: u64,
    /// Login attempts that could not be published to Kafka.
    pub attempts_dropped: u64,
    /// The blocker's tallies, when this node runs one.
    pub blocker: Option<BlockerMetrics>,
    /// Records this node refused because the guard did not write them (or not in this
    /// form): those of `blocked-users` its follower read, and those of `login-attempts` its
    /// blocker read.
    pub forged: Vec<ForgedRecords>,
}

/// Records of one topic refused for one reason, since the node started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgedRecords {
    pub topic: String,
    pub reason: Rejection,
    pub count: u64,
}

/// The blocker's part of [`GuardMetrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockerMetrics {
    /// Records of `login-attempts` processed.
    pub attempts_processed: u64,
    /// Blocks issued (started; later records of a block only update it).
    pub blocks_issued: u64,
    /// Partition checkpoints written.
    pub checkpoints: u64,
}

/// Records refused, per [`Rejection`]. Relaxed atomics: only read for monitoring.
#[derive(Debug, Default)]
pub struct RejectionCounts {
    counts: [AtomicU64; Rejection::ALL.len()],
}

impl RejectionCounts {
    pub fn count(&self, rejection: Rejection) {
        self.counter(rejection).fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, rejection: Rejection) -> u64 {
        self.counter(rejection).load(Ordering::Relaxed)
    }

    /// All refusals, whatever the reason.
    pub fn total(&self) -> u64 {
        Rejection::ALL.into_iter().map(|r| self.get(r)).sum()
    }

    /// The counts of `reasons` for `topic`, zeros included (a series that exists from the
    /// start is what alerting rules can rate).
    pub(super) fn of(&self, topic: &str, reasons: &[Rejection]) -> Vec<ForgedRecords> {
        reasons
            .iter()
            .map(|&reason| ForgedRecords {
                topic: topic.to_string(),
                reason,
                count: self.get(reason),
            })
            .collect()
    }

    fn counter(&self, rejection: Rejection) -> &AtomicU64 {
        let index = Rejection::ALL
            .iter()
            .position(|r| *r == rejection)
            .unwrap_or_default();
        &self.counts[index]
    }
}

/// Logins answered, per outcome. Relaxed atomics: a login costs an Argon2 hash, these are
/// nothing next to it.
#[derive(Debug, Default)]
pub(super) struct LoginCounters {
    success: AtomicU64,
    rejected: AtomicU64,
    blocked: AtomicU64,
}

impl LoginCounters {
    pub(super) fn count(&self, outcome: LoginOutcome) {
        self.counter(outcome).fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn by_outcome(&self) -> Vec<(LoginOutcome, u64)> {
        [
            LoginOutcome::Success,
            LoginOutcome::Rejected,
            LoginOutcome::Blocked,
        ]
        .into_iter()
        .map(|outcome| (outcome, self.counter(outcome).load(Ordering::Relaxed)))
        .collect()
    }

    fn counter(&self, outcome: LoginOutcome) -> &AtomicU64 {
        match outcome {
            LoginOutcome::Success => &self.success,
            LoginOutcome::Rejected => &self.rejected,
            LoginOutcome::Blocked => &self.blocked,
        }
    }
}
