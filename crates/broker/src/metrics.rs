//! Broker counters for the metrics endpoint: requests per API and connections. Per-partition
//! traffic lives with each partition ([`crate::topics::PartitionCounters`]) and fsync timings
//! with each log ([`freshet_log::LogStats`]); [`Broker::metrics_snapshot`](crate::Broker::metrics_snapshot)
//! gathers them.

use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ApiKey;

use crate::limits::Refusal;

/// Highest Kafka API key counted individually.
const MAX_API_KEY: usize = 128;

#[derive(Debug)]
pub struct Metrics {
    requests: Vec<AtomicU64>,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections closed after `connections.max.idle.ms` without a request.
    pub connections_closed_idle: AtomicU64,
    /// Connections closed because a request did not arrive whole in time.
    pub request_read_timeouts: AtomicU64,
    /// Connections closed as soon as accepted: over `max.connections`.
    pub connections_refused_max: AtomicU64,
    /// Connections closed as soon as accepted: over `max.connections.per.ip`.
    pub connections_refused_per_ip: AtomicU64,
    /// Failed `accept` calls (out of descriptors and the like).
    pub accept_errors: AtomicU64,
    /// SASL authentications that succeeded.
    pub authentications_succeeded: AtomicU64,
    /// SASL authentications that failed (wrong password, unknown user, malformed exchange).
    pub authentications_failed: AtomicU64,
    /// TLS connections closed because the handshake failed (no or a wrong client
    /// certificate, a client not speaking TLS, no common protocol version).
    pub tls_handshake_failures: AtomicU64,
    /// TLS connections closed because the handshake did not finish within
    /// `tls_handshake_timeout`.
    pub tls_handshake_timeouts: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: (0..MAX_API_KEY).map(|_| AtomicU64::new(0)).collect(),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_closed_idle: AtomicU64::new(0),
            request_read_timeouts: AtomicU64::new(0),
            connections_refused_max: AtomicU64::new(0),
            connections_refused_per_ip: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            tls_handshake_timeouts: AtomicU64::new(0),
            authentications_succeeded: AtomicU64::new(0),
            authentications_failed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn authentication(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.authentications_succeeded
        } else {
            &self.authentications_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_request(&self, api: ApiKey) {
        if let Some(counter) = self.requests.get(api as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(api, requests)` for every API that has been called.
    pub fn requests(&self) -> Vec<(ApiKey, u64)> {
        ApiKey::iter()
            .filter_map(|api| {
                let count = self.requests.get(api as usize)?.load(Ordering::Relaxed);
                (count > 0).then_some((api, count))
            })
            .collect()
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection closed by the idle clock (`idle`) or the request-read clock.
    pub fn connection_timed_out(&self, idle: bool) {
        let counter = if idle {
            &self.connections_closed_idle
        } else {
            &self.request_read_timeouts
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake that failed, or (`timed_out`) did not finish in time.
    pub fn tls_handshake_failed(&self, timed_out: bool) {
        let counter = if timed_out {
            &self.tls_handshake_timeouts
        } else {
            &self.tls_handshake_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::TooManyConnections => &self.connections_refused_max,
            Refusal::TooManyFromAddress => &self.connections_refused_per_ip,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
