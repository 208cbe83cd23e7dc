//! Coordinator settings.

use std::time::Duration;

/// Settings of the group coordinator, named after the Kafka broker settings they mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// How long a group coming out of Empty waits for more members before its first
    /// generation (`group.initial.rebalance.delay.ms`); extended while members keep arriving,
    /// up to the rebalance timeout. Avoids one rebalance per member when a fleet starts.
    pub initial_rebalance_delay: Duration,
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    pub min_session_timeout: Duration,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    pub max_session_timeout: Duration,
    /// How often members of KIP-848 consumer groups heartbeat, told to them in every
    /// ConsumerGroupHeartbeat answer (`group.consumer.heartbeat.interval.ms`). Also the longest
    /// a member waits to learn of a rebalance.
    pub consumer_heartbeat_interval: Duration,
    /// How long a consumer group member stays without heartbeating before it is removed
    /// (`group.consumer.session.timeout.ms`); the broker decides it, not the member.
    pub consumer_session_timeout: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
            consumer_heartbeat_interval: Duration::from_secs(5),
            consumer_session_timeout: Duration::from_secs(45),
        }
    }
}

impl CoordinatorConfig {
    /// Checks what Kafka checks: every duration fits its int32 milliseconds setting and the
    /// session bounds are ordered.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let fits = |d: Duration| d.as_millis() <= i32::MAX as u128;
        let named = [
            ("initial_rebalance_delay", self.initial_rebalance_delay),
            ("min_session_timeout", self.min_session_timeout),
            ("max_session_timeout", self.max_session_timeout),
            (
                "consumer_heartbeat_interval",
                self.consumer_heartbeat_interval,
            ),
            ("consumer_session_timeout", self.consumer_session_timeout),
        ];
        if let Some((name, _)) = named.iter().find(|(_, d)| !fits(*d)) {
            return Err(format!("{name} exceeds i32::MAX milliseconds"));
        }
        if self.min_session_timeout > self.max_session_timeout {
            return Err("min_session_timeout is larger than max_session_timeout".into());
        }
        // Kafka's rule: a member told to heartbeat less often than its session lasts would
        // expire between two heartbeats.
        if self.consumer_heartbeat_interval.as_millis() == 0
            || self.consumer_heartbeat_interval >= self.consumer_session_timeout
        {
            return Err(
                "consumer_heartbeat_interval must be positive and below consumer_session_timeout"
                    .into(),
            );
        }
        Ok(())
    }
}
