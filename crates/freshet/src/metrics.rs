//! The embedded broker's part of `/metrics`: a collector that reads, at scrape time, the
//! counters the broker keeps anyway (traffic per partition, each log's size and fsync
//! timings, connections, requests per API, rebalances per group, degraded conditions). It
//! lives with the binary because the API crate never depends on broker code.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use freshet_api::metrics::encode;
use freshet_api::Metrics;
use freshet_broker::broker::PartitionMetrics;
use freshet_broker::health::Reason;
use freshet_broker::Broker;
use freshet_log::FsyncHistogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// A [`Metrics`] reporting on `broker`.
pub fn for_broker(broker: Arc<Broker>) -> Metrics {
    let metrics = Metrics::new();
    metrics.register(BrokerCollector { broker });
    metrics
}

#[derive(Debug)]
struct BrokerCollector {
    broker: Arc<Broker>,
}

/// One topic's partitions added up.
#[derive(Debug, Default)]
struct TopicTotals {
    bytes_in: u64,
    records_in: u64,
    bytes_out: u64,
    records_out: u64,
    size_bytes: u64,
}

fn per_topic(partitions: &[PartitionMetrics]) -> BTreeMap<&str, TopicTotals> {
    let mut topics: BTreeMap<&str, TopicTotals> = BTreeMap::new();
    for p in partitions {
        let totals = topics.entry(p.topic.as_str()).or_default();
        totals.bytes_in += p.bytes_in;
        totals.records_in += p.records_in;
        totals.bytes_out += p.bytes_out;
        totals.records_out += p.records_out;
        totals.size_bytes += p.size_bytes;
    }
    topics
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let partitions = self.broker.metrics_snapshot();
        encode_traffic(&mut encoder, &per_topic(&partitions))?;
        encode_fsyncs(&mut encoder, &partitions)?;
        self.encode_connections_and_requests(&mut encoder)?;
        self.encode_degraded(&mut encoder)?;
        encode::counters(
            &mut encoder,
            "freshet_broker_group_rebalances",
            "Rebalances (join phases that produced a generation with members) per consumer \
             group since the broker started.",
            "group",
            self.broker.groups.rebalances_by_group(),
        )
    }
}

impl BrokerCollector {
    /// Every reason is always present (0 or 1), so an alert on `== 1` never meets a missing
    /// series, and the episode counter shows episodes that began and ended between scrapes.
    fn encode_degraded(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let conditions = self.broker.health_report();
        let health = &self.broker.health;
        let in_effect = |reason: Reason| conditions.iter().any(|c| c.reason == reason);
        encode::gauges(
            e,
            "freshet_broker_degraded",
            "1 while the broker is degraded for this reason: disk_full (a write to the data \
             directory failed with ENOSPC or EDQUOT and no probe could write since; produce \
             that needs space and topic creation answer KAFKA_STORAGE_ERROR) or log_poisoned \
             (partition logs read-only after a failed fsync, until a restart); else 0.",
            "reason",
            Reason::ALL.map(|reason| (reason.as_str(), i64::from(in_effect(reason)))),
        )?;
        encode::counters(
            e,
            "freshet_broker_degraded_episodes",
            "Times the broker became degraded for this reason since it started.",
            "reason",
            Reason::ALL.map(|reason| (reason.as_str(), health.episodes(reason))),
        )?;
        encode::gauge(
            e,
            "freshet_broker_partitions_read_only",
            "Partition logs read-only after a failed fsync.",
            health.poisoned_partitions() as i64,
        )
    }

    fn encode_connections_and_requests(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let metrics = &self.broker.metrics;
        encode::gauge(
            e,
            "freshet_broker_connections_open",
            "Kafka protocol connections open now.",
            metrics.connections_open.load(Ordering::Relaxed),
        )?;
        encode::counter(
            e,
            "freshet_broker_connections_accepted",
            "Kafka protocol connections accepted since the broker started.",
            metrics.connections_total.load(Ordering::Relaxed),
        )?;
        encode::counters(
            e,
            "freshet_broker_connections_refused",
            "Kafka protocol connections closed as soon as accepted, per limit reached.",
            "limit",
            [
                (
                    "max_connections",
                    metrics.connections_refused_max.load(Ordering::Relaxed),
                ),
                (
                    "max_connections_per_ip",
                    metrics.connections_refused_per_ip.load(Ordering::Relaxed),
                ),
            ],
        )?;
        encode::counter(
            e,
            "freshet_broker_connections_closed_idle",
            "Kafka protocol connections closed after connections.max.idle.ms without a request.",
            metrics.connections_closed_idle.load(Ordering::Relaxed),
        )?;
        encode::counter(
            e,
            "freshet_broker_request_read_timeouts",
            "Kafka protocol connections closed because a request did not arrive whole in time.",
            metrics.request_read_timeouts.load(Ordering::Relaxed),
        )?;
        encode::counter(
            e,
            "freshet_broker_accept_errors",
            "Failed accepts on the Kafka listener (out of file descriptors and the like).",
            metrics.accept_errors.load(Ordering::Relaxed),
        )?;
        encode::counters(
            e,
            "freshet_broker_sasl_authentications",
            "SASL authentications on the Kafka listeners, per outcome (a failure is a wrong \
             password, an unknown user or a malformed exchange).",
            "outcome",
            [
                (
                    "succeeded",
                    metrics.authentications_succeeded.load(Ordering::Relaxed),
                ),
                (
                    "failed",
                    metrics.authentications_failed.load(Ordering::Relaxed),
                ),
            ],
        )?;
        encode::counters(
            e,
            "freshet_broker_tls_handshake_failures",
            "TLS handshakes on the Kafka listeners that failed, per cause.",
            "cause",
            [
                (
                    "error",
                    metrics.tls_handshake_failures.load(Ordering::Relaxed),
                ),
                (
                    "timeout",
                    metrics.tls_handshake_timeouts.load(Ordering::Relaxed),
                ),
            ],
        )?;
        encode::counters(
            e,
            "freshet_broker_requests",
            "Kafka protocol requests since the broker started, per API (Kafka's API names).",
            "api",
            metrics
                .requests()
                .into_iter()
                .map(|(api, count)| (format!("{api:?}"), count)),
        )
    }
}

fn encode_traffic(e: &mut DescriptorEncoder, topics: &BTreeMap<&str, TopicTotals>) -> fmt::Result {
    let by_topic = |field: fn(&TopicTotals) -> u64| {
        topics
            .iter()
            .map(move |(topic, totals)| (*topic, field(totals)))
    };
    encode::counters(
        e,
        "freshet_broker_bytes_in",
        "Record-batch bytes produced to each topic and written to its log.",
        "topic",
        by_topic(|t| t.bytes_in),
    )?;
    encode::counters(
        e,
        "freshet_broker_records_in",
        "Records produced to each topic and written to its log (retries of batches already \
         written excluded).",
        "topic",
        by_topic(|t| t.records_in),
    )?;
    encode::counters(
        e,
        "freshet_broker_bytes_out",
        "Record-batch bytes fetched from each topic by consumers.",
        "topic",
        by_topic(|t| t.bytes_out),
    )?;
    encode::counters(
        e,
        "freshet_broker_records_out",
        "Records fetched from each topic.",
        "topic",
        by_topic(|t| t.records_out),
    )?;
    encode::gauges(
        e,
        "freshet_broker_log_size_bytes",
        "Bytes of each topic's segment files on disk, over all its partitions.",
        "topic",
        by_topic(|t| t.size_bytes),
    )
}

/// One histogram over every partition's log: the buckets are the same for all of them.
fn encode_fsyncs(e: &mut DescriptorEncoder, partitions: &[PartitionMetrics]) -> fmt::Result {
    let mut histogram = FsyncHistogram::default();
    let mut nanos_total: u64 = 0;
    for p in partitions {
        histogram.add(&p.log.fsync_histogram);
        nanos_total = nanos_total.saturating_add(p.log.fsync_nanos_total);
    }
    let buckets: Vec<(f64, u64)> = histogram.buckets_seconds().collect();
    encode::histogram(
        e,
        "freshet_broker_fsync_seconds",
        "How long the fsyncs of partition logs took (group commits, flushes and segment \
         rolls), over every partition.",
        nanos_total as f64 / 1e9,
        &buckets,
    )
}
