//! A disk that stalls on demand, for tests: while a [`Stall`] exists, the durable-file helpers
//! of [`files`](crate::files) wait before touching any path under its directory.
//!
//! Tests use it to check that a slow disk stalls only the work that waits for it: the broker
//! must go on answering other connections while a segment roll or a topic creation waits for
//! its fsyncs. Compiled only with the `stall` feature, which only dev-dependencies turn on;
//! without it the helpers pay nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The directories stalled now, and how many waits each has caused.
static STALLED: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());
static RELEASED: Condvar = Condvar::new();
/// Set while any stall exists, so the helpers skip the lock otherwise.
static ANY: AtomicBool = AtomicBool::new(false);

/// Stalls file work under one directory until dropped.
#[derive(Debug)]
pub struct Stall {
    dir: PathBuf,
}

/// Stalls every durable-file helper called on a path under `dir`.
pub fn stall_under(dir: &Path) -> Stall {
    let mut stalled = stalled();
    stalled.push((dir.to_path_buf(), 0));
    ANY.store(true, Ordering::SeqCst);
    Stall {
        dir: dir.to_path_buf(),
    }
}

impl Stall {
    /// Waits until some file work is being held by this stall, for at most `timeout`.
    /// Returns whether it was.
    pub fn wait_until_holding(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.has_held() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Stall {
    /// Whether file work has waited for this stall (it may have been released since only if
    /// the stall was dropped, which consumes it).
    pub fn has_held(&self) -> bool {
        stalled()
            .iter()
            .any(|(dir, waits)| *dir == self.dir && *waits > 0)
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        let mut stalled = stalled();
        if let Some(index) = stalled.iter().position(|(dir, _)| *dir == self.dir) {
            stalled.remove(index);
        }
        ANY.store(!stalled.is_empty(), Ordering::SeqCst);
        RELEASED.notify_all();
    }
}

/// Called by the helpers: waits while a stall covers `path`.
pub(crate) fn wait_if_stalled(path: &Path) {
    if !ANY.load(Ordering::SeqCst) {
        return;
    }
    let mut stalled = stalled();
    let mut counted = false;
    while let Some(entry) = stalled.iter_mut().find(|(dir, _)| path.starts_with(dir)) {
        if !counted {
            entry.1 += 1;
            counted = true;
        }
        stalled = RELEASED
            .wait(stalled)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

fn stalled() -> MutexGuard<'static, Vec<(PathBuf, u64)>> {
    STALLED.lock().unwrap_or_else(PoisonError::into_inner)
}
