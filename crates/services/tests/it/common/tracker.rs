//! Helpers shared by the tracker's integration tests.

use std::time::{Duration, Instant};

use freshet_services::tracker::{Tracker, TrackerHandle};

/// A device event's JSON value, as the generator writes it.
pub fn event_json(second: i64, ip: &str, error_code: u32) -> String {
    format!(r#"{{"timestamp": "{second}", "device_ip": "{ip}", "error_code": {error_code}}}"#)
}

/// Writes the last checkpoint and waits for the node's threads.
pub async fn stop(tracker: Tracker) {
    tokio::task::spawn_blocking(move || tracker.shutdown())
        .await
        .expect("shutdown");
}

/// Waits until `check` holds for the handle, or fails after `within` with what it last saw.
pub async fn eventually_within(
    within: Duration,
    handle: &TrackerHandle,
    what: &str,
    check: impl Fn(&TrackerHandle) -> bool,
) {
    let deadline = Instant::now() + within;
    while !check(handle) {
        assert!(
            Instant::now() < deadline,
            "{what} never held; node sees {:?} and partitions {:?}",
            handle.unique_ips(),
            handle.partitions()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually_within`] a minute and a half.
pub async fn eventually(
    handle: &TrackerHandle,
    what: &str,
    check: impl Fn(&TrackerHandle) -> bool,
) {
    eventually_within(Duration::from_secs(90), handle, what, check).await;
}
