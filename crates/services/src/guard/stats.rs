//! What a guard node counts about its own work, for monitoring (`/metrics`): login outcomes
//! on this node, and through the [`GuardHandle`](super::GuardHandle) the blocker's tallies
//! and the blocks that hold now. Process-local: they start at 0 with the process.

use std::sync::atomic::{AtomicU64, Ordering};

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
