//! Group commit: many writers wait for durability, one fsync serves them all.
//!
//! The classic leader/follower scheme. A thread that needs offsets below `target` durable
//! either finds them durable already, or finds a sync in flight and waits for it to finish
//! (then checks again), or becomes the leader: it marks a sync in flight, runs the sync
//! function with no lock held (the function captures the end of written data first, so its
//! fsync covers every append that completed before it started), records the new durable
//! offset and wakes everyone. Appends that land while an fsync runs are picked up by the next
//! leader, together with all the others that arrived meanwhile.
//!
//! A failed fsync poisons the log for good: after fsync reports an error the kernel may have
//! dropped the dirty pages, so retrying could "succeed" without the data ever reaching the
//! disk (the 2018 "fsyncgate" finding). Every later caller gets a storage error.

use std::io;
use std::sync::{Condvar, Mutex};

use crate::error::LogError;
use crate::locks::{lock, wait};

/// Durability bookkeeping of one partition log.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<CommitState>,
    sync_finished: Condvar,
}

#[derive(Debug)]
struct CommitState {
    /// Every offset below this is on disk.
    durable_offset: i64,
    /// A leader is running an fsync right now.
    sync_in_flight: bool,
    /// Set forever by the first failed fsync.
    poisoned: Option<String>,
}

impl CommitState {
    fn check_healthy(&self) -> Result<(), LogError> {
        match &self.poisoned {
            None => Ok(()),
            Some(cause) => Err(poisoned_error(cause)),
        }
    }
}

fn poisoned_error(cause: &str) -> LogError {
    LogError::Storage(io::Error::other(format!(
        "log is read-only after a failed fsync ({cause}); restart to recover from disk"
    )))
}

impl GroupCommit {
    pub fn new(durable_offset: i64) -> GroupCommit {
        GroupCommit {
            state: Mutex::new(CommitState {
                durable_offset,
                sync_in_flight: false,
                poisoned: None,
            }),
            sync_finished: Condvar::new(),
        }
    }

    /// Fails once an fsync has failed.
    pub fn check_healthy(&self) -> Result<(), LogError> {
        lock(&self.state).check_healthy()
    }

    /// Why the log is read-only (the failed fsync's error), or `None` while it is healthy.
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.state).poisoned.clone()
    }

    /// Blocks until every offset below `target` is durable. `sync` makes written data durable
    /// and returns the offset it covered; `on_durable` is told each new durable offset (under
    /// the commit lock, so calls are ordered).
    pub fn wait_for(
        &self,
        target: i64,
        sync: impl Fn() -> io::Result<i64>,
        on_durable: impl Fn(i64),
    ) -> Result<(), LogError> {
        let mut state = lock(&self.state);
        loop {
            state.check_healthy()?;
            if state.durable_offset >= target {
                return Ok(());
            }
            if state.sync_in_flight {
                state = wait(&self.sync_finished, state);
                continue;
            }
            state.sync_in_flight = true;
            drop(state);
            let result = sync();
            state = lock(&self.state);
            state.sync_in_flight = false;
            self.sync_finished.notify_all();
            match result {
                Ok(offset) => Self::advance(&mut state, offset, &on_durable),
                Err(error) => {
                    tracing::error!(%error, "fsync failed; the log is now read-only");
                    state.poisoned = Some(error.to_string());
                    return Err(LogError::Storage(error));
                }
            }
        }
    }

    /// Records that offsets below `offset` became durable outside group commit (segment roll).
    pub fn mark_durable(&self, offset: i64, on_durable: impl Fn(i64)) {
        let mut state = lock(&self.state);
        Self::advance(&mut state, offset, &on_durable);
        self.sync_finished.notify_all();
    }

    /// Records a failed fsync that happened outside group commit.
    pub fn poison(&self, error: &io::Error) {
        tracing::error!(%error, "fsync failed; the log is now read-only");
        lock(&self.state)
            .poisoned
            .get_or_insert_with(|| error.to_string());
        self.sync_finished.notify_all();
    }

    fn advance(state: &mut CommitState, offset: i64, on_durable: &impl Fn(i64)) {
        if offset > state.durable_offset {
            state.durable_offset = offset;
            on_durable(offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn one_sync_serves_many_waiters() {
        let commit = Arc::new(GroupCommit::new(0));
        let written = Arc::new(AtomicI64::new(0));
        let syncs = Arc::new(AtomicUsize::new(0));
        let threads = 8;
        let rounds = 200;
        let start = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (commit, written, syncs, start) = (
                    commit.clone(),
                    written.clone(),
                    syncs.clone(),
                    start.clone(),
                );
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..rounds {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        commit
                            .wait_for(
                                mine,
                                || {
                                    syncs.fetch_add(1, Ordering::SeqCst);
                                    Ok(written.load(Ordering::SeqCst))
                                },
                                |_| {},
                            )
                            .expect("sync succeeds");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        let total = threads * rounds;
        assert!(syncs.load(Ordering::SeqCst) <= total);
        assert_eq!(lock(&commit.state).durable_offset, total as i64);
    }

    #[test]
    fn a_failed_sync_poisons_for_good() {
        let commit = GroupCommit::new(0);
        let calls = AtomicUsize::new(0);
        let failing = || {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::other("EIO"))
        };
        assert!(matches!(
            commit.wait_for(5, failing, |_| {}),
            Err(LogError::Storage(_))
        ));
        assert!(matches!(
            commit.wait_for(5, || Ok(5), |_| {}),
            Err(LogError::Storage(_))
        ));
        assert!(commit.check_healthy().is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "fsync is never retried");
    }

    #[test]
    fn already_durable_needs_no_sync() {
        let commit = GroupCommit::new(10);
        commit
            .wait_for(10, || panic!("no sync needed"), |_| {})
            .expect("durable");
        commit.mark_durable(20, |offset| assert_eq!(offset, 20));
        commit
            .wait_for(20, || panic!("no sync needed"), |_| {})
            .expect("durable");
    }
}
