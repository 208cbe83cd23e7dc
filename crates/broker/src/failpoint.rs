//! Crash points for crash tests: `FRESHET_FAILPOINT=<name>` makes the process abort (no
//! cleanup, like SIGKILL) the first time it reaches the point of that name. Tests use it to
//! stop the broker where a signal cannot be timed, e.g. between the markers of one
//! transaction (`crates/freshet/tests/it/transaction_crash.rs`). Unset, a point costs one
//! comparison of a cached value.
//!
//! Points: `txn-after-first-marker` (a commit or abort marker is durable in one partition of
//! a transaction of several, the others have none yet); `txn-markers-lost` (the first
//! transaction to complete after its EndTxn gets no marker at all, as if a machine crash had
//! lost them, its completed state is made durable, then the process aborts);
//! `txn-state-unsynced-lost` (never aborts: transaction state frames written without an
//! fsync are dropped, as a machine crash may drop them; the test kills the process).

use std::sync::OnceLock;

const VARIABLE: &str = "FRESHET_FAILPOINT";

/// Whether `FRESHET_FAILPOINT` names this point (for work only a crash test needs done
/// before the point, such as making something durable early).
pub fn armed(name: &str) -> bool {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(VARIABLE).ok().filter(|v| !v.is_empty()));
    armed.as_deref() == Some(name)
}

/// Aborts the process if `FRESHET_FAILPOINT` names this point.
pub fn hit(name: &str) {
    if armed(name) {
        eprintln!("{VARIABLE}={name}: aborting the process here");
        std::process::abort();
    }
}
