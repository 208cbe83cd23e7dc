//! The blocking rules, as a pure state machine over one partition's attempts (no I/O), so
//! they are tested directly and a replay of the same records always gives the same state.
//!
//! - A user is blocked when `max_failures` failed attempts fall within `window` of event time
//!   (the newest minus the oldest is at most the window).
//! - A success resets the count: failures at or before it no longer count. It does not lift a
//!   block.
//! - A block lasts until `until_ms` (never, without `block_for`) or until an unblock record
//!   whose time is not before the block started (an older one, replayed or late, is not
//!   about this block and changes nothing). An unblock also resets the count like a success.
//!   Failures while blocked (refused logins included) are added to the block's count.
//! - Every attempt id is counted once: a record delivered or published twice changes nothing.
//!
//! Event time, not arrival time, decides. The partition's watermark (newest event time seen)
//! bounds memory: a failure older than the watermark minus the window is too late to count,
//! so failures older than twice the window can never matter again and are dropped.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::attempts::{Attempt, AttemptKind};

/// Ids remembered per block to count each attempt once. Beyond this many failures in one
/// block, a duplicated record could be counted twice (the block is already in place).
const MAX_BLOCK_IDS: usize = 4096;

/// When to block and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub max_failures: u32,
    pub window_ms: i64,
    /// How long a block lasts; `None` keeps it until an admin lifts it.
    pub block_for_ms: Option<i64>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_failures: 5,
            window_ms: 60_000,
            block_for_ms: None,
        }
    }
}

/// A user's block, as written to `blocked-users` (key: the user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockRecord {
    pub user: String,
    /// Event time of the failure that made the block, Unix ms.
    pub since_ms: i64,
    /// When the block ends, Unix ms; `null`: only an admin lifts it.
    pub until_ms: Option<i64>,
    /// Failed attempts counted: those in the window that made the block, plus every failed
    /// or refused attempt since.
    pub failures: u64,
    /// Event time of the newest of them.
    pub last_failure_ms: i64,
}

impl BlockRecord {
    /// Whether the block holds at `now_ms`.
    pub fn active_at(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}

/// What the blocker must write after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A block record: a new block (`started`) or one more failure in a block that holds.
    Block { record: BlockRecord, started: bool },
    /// The user's block was lifted at `time_ms`.
    Unblock { user: String, time_ms: i64 },
}

impl Change {
    pub fn user(&self) -> &str {
        match self {
            Change::Block { record, .. } => &record.user,
            Change::Unblock { user, .. } => user,
        }
    }
}

/// One user's counting state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// Failures that can still count, ordered by event time: (time, attempt id).
    failures: VecDeque<(i64, Uuid)>,
    /// Newest success; failures at or before it do not count.
    reset_ms: Option<i64>,
    block: Option<BlockRecord>,
    /// Attempt ids counted in the current block.
    block_ids: HashSet<Uuid>,
}

/// The counting state of one partition of `login-attempts`, checkpointed with the offset it
/// covers.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Next offset to process: records below it are reflected here.
    pub next_offset: i64,
    /// Newest event time seen in the partition.
    pub watermark_ms: i64,
    users: HashMap<String, UserState>,
}

impl PartitionState {
    /// Applies one record; returns what must be written to `blocked-users`, if anything.
    pub fn apply(&mut self, attempt: &Attempt, rules: &Rules) -> Option<Change> {
        self.watermark_ms = self.watermark_ms.max(attempt.time_ms);
        let late_before = self.watermark_ms.saturating_sub(rules.window_ms);
        // Most attempts are for users already known: look up before allocating a key.
        if !self.users.contains_key(&attempt.user) {
            self.users
                .insert(attempt.user.clone(), UserState::default());
        }
        let user = self.users.get_mut(&attempt.user)?;
        match attempt.kind {
            AttemptKind::Unblock => user.unblock(attempt),
            AttemptKind::Login if attempt.success => {
                user.succeed(attempt.time_ms);
                None
            }
            AttemptKind::Login => user.fail(attempt, rules, late_before),
        }
    }

    /// Users with a live block in this partition's state.
    pub fn blocked_users(&self) -> impl Iterator<Item = &BlockRecord> {
        self.users.values().filter_map(|u| u.block.as_ref())
    }

    /// Failures currently counting for `user` (tests and diagnostics).
    pub fn failures_of(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |u| u.failures.len())
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Drops what can no longer change a decision: old failures, and users left with nothing.
    /// Only the watermark decides, so pruning at any point gives the same later results.
    pub fn prune(&mut self, rules: &Rules) {
        let forget_before = self.watermark_ms.saturating_sub(2 * rules.window_ms);
        let late_before = self.watermark_ms.saturating_sub(rules.window_ms);
        self.users.retain(|_, user| {
            while user
                .failures
                .front()
                .is_some_and(|(t, _)| *t < forget_before)
            {
                user.failures.pop_front();
            }
            let reset_matters = user.reset_ms.is_some_and(|r| r >= late_before);
            user.block.is_some() || !user.failures.is_empty() || reset_matters
        });
    }
}

impl UserState {
    fn unblock(&mut self, attempt: &Attempt) -> Option<Change> {
        let time_ms = attempt.time_ms;
        if self.block.as_ref().is_some_and(|b| time_ms < b.since_ms) {
            return None;
        }
        self.block = None;
        self.block_ids.clear();
        self.failures.retain(|(t, _)| *t > time_ms);
        self.reset_ms = self.reset_ms.max(Some(time_ms));
        Some(Change::Unblock {
            user: attempt.user.clone(),
            time_ms,
        })
    }

    fn succeed(&mut self, time_ms: i64) {
        self.end_expired_block(time_ms);
        self.reset_ms = self.reset_ms.max(Some(time_ms));
        self.failures.retain(|(t, _)| *t > time_ms);
    }

    fn fail(&mut self, attempt: &Attempt, rules: &Rules, late_before: i64) -> Option<Change> {
        let (time, id) = (attempt.time_ms, attempt.attempt_id);
        self.end_expired_block(time);
        if let Some(block) = &mut self.block {
            if self.block_ids.contains(&id) {
                return None;
            }
            if self.block_ids.len() < MAX_BLOCK_IDS {
                self.block_ids.insert(id);
            }
            block.failures += 1;
            block.last_failure_ms = block.last_failure_ms.max(time);
            return Some(Change::Block {
                record: block.clone(),
                started: false,
            });
        }
        let too_old = time < late_before || self.reset_ms.is_some_and(|r| time <= r);
        if too_old || self.failures.iter().any(|(_, seen)| *seen == id) {
            return None;
        }
        let at = self.failures.partition_point(|(t, _)| *t <= time);
        self.failures.insert(at, (time, id));
        let in_window = self.densest_window(rules.window_ms);
        if in_window < rules.max_failures as usize {
            return None;
        }
        Some(Change::Block {
            record: self.start_block(attempt, rules, in_window),
            started: true,
        })
    }

    /// The most failures any window of `window_ms` holds (failures are few: this is cheap).
    fn densest_window(&self, window_ms: i64) -> usize {
        let times = &self.failures;
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].0 - times[start].0 > window_ms {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    fn start_block(&mut self, attempt: &Attempt, rules: &Rules, failures: usize) -> BlockRecord {
        let since = attempt.time_ms;
        let record = BlockRecord {
            user: attempt.user.clone(),
            since_ms: since,
            until_ms: rules.block_for_ms.map(|d| since.saturating_add(d)),
            failures: failures as u64,
            last_failure_ms: self.failures.back().map_or(since, |(t, _)| *t),
        };
        self.block_ids = self.failures.drain(..).map(|(_, id)| id).collect();
        self.block = Some(record.clone());
        record
    }

    /// A block whose end has passed in event time is over; counting starts afresh.
    fn end_expired_block(&mut self, time_ms: i64) {
        if self.block.as_ref().is_some_and(|b| !b.active_at(time_ms)) {
            self.block = None;
            self.block_ids.clear();
            self.failures.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn attempt(user: &str, second: i64, success: bool) -> Attempt {
        Attempt {
            time_ms: T0 + second * 1000,
            ..Attempt::login(user, "10.0.0.1", success)
        }
    }

    fn run(state: &mut PartitionState, rules: &Rules, attempts: &[Attempt]) -> Vec<Change> {
        attempts
            .iter()
            .filter_map(|a| state.apply(a, rules))
            .collect()
    }

    fn blocked(changes: &[Change]) -> Option<&BlockRecord> {
        changes.iter().rev().find_map(|c| match c {
            Change::Block { record, .. } => Some(record),
            Change::Unblock { .. } => None,
        })
    }

    #[test]
    fn five_failures_within_the_window_block_from_the_fifth() {
        let rules = Rules::default();
        let mut state = PartitionState::default();
        let four: Vec<Attempt> = (0..4).map(|s| attempt("bob", s * 10, false)).collect();
        assert!(run(&mut state, &rules, &four).is_empty());
        let changes = run(&mut state, &rules, &[attempt("bob", 40, false)]);
        let record = blocked(&changes).expect("blocked");
        assert_eq!(record.failures, 5);
        assert_eq!(record.since_ms, T0 + 40_000);
        assert_eq!(record.until_ms, None);
    }

    #[test]
    fn only_the_first_record_of_a_block_starts_it() {
        let rules = Rules::default();
        let mut state = PartitionState::default();
        let failures: Vec<Attempt> = (0..7).map(|s| attempt("bob", s, false)).collect();
        let started: Vec<bool> = run(&mut state, &rules, &failures)
            .into_iter()
            .map(|change| matches!(change, Change::Block { started: true, .. }))
            .collect();
        assert_eq!(
            started,
            [true, false, false],
            "the fifth failure starts the block"
        );
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_block() {
        let rules = Rules::default();
        let mut state = PartitionState::default();
        let spread: Vec<Attempt> = (0..10).map(|s| attempt("bob", s * 16, false)).collect();
        assert!(run(&mut state, &rules, &spread).is_empty());
    }

    #[test]
    fn a_success_resets_the_count() {
        let rules = Rules::default();
        let mut state = PartitionState::default();
        let mut attempts: Vec<Attempt> = (0..4).map(|s| attempt("bob", s, false)).collect();
        attempts.push(attempt("bob", 4, true));
        attempts.extend((5..9).map(|s| attempt("bob", s, false)));
        assert!(run(&mut state, &rules, &attempts).is_empty());
        assert_eq!(state.failures_of("bob"), 4);
        assert!(blocked(&run(&mut state, &rules, &[attempt("bob", 9, false)])).is_some());
    }

    #[test]
    fn the_same_attempt_twice_counts_once_before_and_during_a_block() {
        let rules = Rules::default();
        let mut state = PartitionState::default();
        let first = attempt("bob", 0, false);
        let doubled = vec![first.clone(); 6];
        assert!(run(&mut state, &rules, &doubled).is_empty());
        let more: Vec<Attempt> = (1..5).map(|s| attempt("bob", s, false)).collect();
        let changes = run(&mut state, &rules, &more);
        assert_eq!(blocked(&changes).map(|r| r.failures), Some(5));
        let extra = attempt("bob", 6, false);
        let again = run(&mut state, &rules, &[extra.clone(), extra, first]);
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(blocked(&again).map(|r| r.failures), Some(6));
    }

    #[test]
    fn a_block_expires_in_event_time_and_counting_starts_again() {
        let rules = Rules {
            block_for_ms: Some(30_000),
            ..Rules::default()
        };
        let mut state = PartitionState::default();
        let burst: Vec<Attempt> = (0..5).map(|s| attempt("bob", s, false)).collect();
        let record = blocked(&run(&mut state, &rules, &burst))
            .cloned()
            .expect("blocked");
        assert_eq!(record.until_ms, Some(T0 + 34_000));
        assert!(record.active_at(T0 + 33_999) && !record.active_at(T0 + 34_000));
        let after: Vec<Attempt> = (40..44).map(|s| attempt("bob", s, false)).collect();
        assert!(run(&mut state, &rules, &after).is_empty(), "expired");
        let again = run(&mut state, &rules, &[attempt("bob", 44, false)]);
        assert_eq!(blocked(&again).map(|r| r.since_ms), Some(T0 + 44_000));
    }

    #[test]
    fn unblock_clears_the_block_and_the_count() {
        let rules = Rules::default();
        let mut state = PartitionState::default();
        let burst: Vec<Attempt> = (0..5).map(|s| attempt("bob", s, false)).collect();
        assert!(blocked(&run(&mut state, &rules, &burst)).is_some());
        let unblock = Attempt {
            time_ms: T0 + 5_000,
            ..Attempt::unblock("bob")
        };
        assert_eq!(
            run(&mut state, &rules, &[unblock]),
            vec![Change::Unblock {
                user: "bob".into(),
                time_ms: T0 + 5_000
            }]
        );
        let four: Vec<Attempt> = (6..10).map(|s| attempt("bob", s, false)).collect();
        assert!(run(&mut state, &rules, &four).is_empty());
    }

    #[test]
    fn an_unblock_from_before_the_block_started_changes_nothing() {
        let rules = Rules::default();
        let mut state = PartitionState::default();
        let first: Vec<Attempt> = (0..5).map(|s| attempt("bob", s, false)).collect();
        assert!(blocked(&run(&mut state, &rules, &first)).is_some());
        let old_unblock = Attempt {
            time_ms: T0 + 10_000,
            ..Attempt::unblock("bob")
        };
        assert_eq!(
            run(&mut state, &rules, std::slice::from_ref(&old_unblock)).len(),
            1
        );
        let second: Vec<Attempt> = (20..25).map(|s| attempt("bob", s, false)).collect();
        let block = blocked(&run(&mut state, &rules, &second)).cloned();
        assert_eq!(block.map(|b| b.since_ms), Some(T0 + 24_000));
        let replayed = Attempt {
            attempt_id: uuid::Uuid::new_v4(),
            ..old_unblock
        };
        assert!(run(&mut state, &rules, &[replayed]).is_empty());
        assert_eq!(state.blocked_users().count(), 1, "still blocked");
    }

    #[test]
    fn late_failures_do_not_count_and_pruning_keeps_results() {
        let rules = Rules::default();
        let mut pruned = PartitionState::default();
        let mut kept = PartitionState::default();
        let mut attempts = vec![attempt("old", 0, false), attempt("other", 300, false)];
        attempts.extend((0..5).map(|s| attempt("old", s, false)));
        attempts.extend((300..305).map(|s| attempt("bob", s, false)));
        let mut from_pruned = Vec::new();
        for a in &attempts {
            from_pruned.extend(pruned.apply(a, &rules));
            pruned.prune(&rules);
        }
        let from_kept = run(&mut kept, &rules, &attempts);
        assert_eq!(from_pruned, from_kept);
        assert_eq!(from_kept.len(), 1, "only bob: old's failures are late");
        assert_eq!(pruned.user_count(), 2, "bob blocked, other in its window");
    }
}
