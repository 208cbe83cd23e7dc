//! `GET /metrics`: the numbers of everything this process runs, in the Prometheus text format.
//!
//! Nothing here keeps counts. Each scrape asks the components for the numbers they keep
//! anyway and encodes them with prometheus-client collectors:
//!
//! - the process itself: build info and uptime ([`ProcessCollector`]);
//! - the tracker and the guard of the [`AppState`], through their handles' `metrics()`;
//! - whatever the binary registered in the state's [`Metrics`]: the embedded broker's
//!   collector, which lives with the binary because this crate never sees broker code.
//!
//! The [`encode`] helpers write one metric family each; collectors outside this crate use
//! them too, so every family is written the same way. Names are `freshet_<component>_...`
//! with the unit in the name; counters are given without `_total`, which the encoder adds.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use freshet_services::guard::stats::GuardMetrics;
use freshet_services::guard::LoginOutcome;
use freshet_services::panics::{self, PanicSite};
use freshet_services::tracker::stats::TrackerMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::{blocking, AppState};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Collectors of components the API does not know, registered by the binary (the embedded
/// broker's). Cheap to clone; clones share the collectors.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a collector; every later scrape includes what it writes.
    pub fn register(&self, collector: impl Collector) {
        self.registry().register_collector(Box::new(collector));
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Registering is a push onto a list: a panic cannot leave it half done.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Metrics of this process in the Prometheus text format
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Every metric of the components this process runs \
            (broker, tracker, guard, process), in the Prometheus text exposition format 0.0.4",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 500, description = "The metrics could not be encoded", body = ApiError),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    // The tracker's numbers wait for its state lock, which a batch of events can hold for
    // milliseconds: off the async workers, like the tracker's other routes.
    let text = blocking(move || render(&state))
        .await?
        .map_err(|fmt::Error| ApiError::internal("encoding the metrics failed"))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// The whole exposition: the process, the services of `state`, then the registered
/// collectors.
fn render(state: &AppState) -> Result<String, fmt::Error> {
    let mut scrape = Registry::default();
    scrape.register_collector(Box::new(ProcessCollector));
    if let Some(tracker) = state.tracker_handle() {
        scrape.register_collector(Box::new(TrackerCollector(tracker.metrics())));
    }
    if let Some(guard) = state.guard() {
        scrape.register_collector(Box::new(GuardCollector(guard.handle().metrics())));
    }
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode_registry(&mut openmetrics, &scrape)?;
    prometheus_client::encoding::text::encode_registry(
        &mut openmetrics,
        &state.metrics().registry(),
    )?;
    Ok(prometheus_text(&openmetrics))
}

/// prometheus-client writes the OpenMetrics text format. The collectors here use the part
/// of it that is also Prometheus text (no units, no info or unknown types), except one
/// thing: OpenMetrics names a counter family without its `_total` suffix (`# TYPE x counter`
/// over samples `x_total`), where the Prometheus format names the family like its samples.
/// This renames counter families and drops the OpenMetrics-only lines.
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 1024);
    // A HELP line waits for its TYPE line, which says whether the family is a counter.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), "");
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            flush_help(&mut out, help.take(), suffix);
            push_line(&mut out, &["# TYPE ", name, suffix, " ", kind]);
        } else if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        } else {
            flush_help(&mut out, help.take(), "");
            push_line(&mut out, &[line]);
        }
    }
    flush_help(&mut out, help, "");
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, suffix: &str) {
    if let Some((name, text)) = help {
        push_line(out, &["# HELP ", name, suffix, " ", text]);
    }
}

fn push_line(out: &mut String, parts: &[&str]) {
    parts.iter().for_each(|part| out.push_str(part));
    out.push('\n');
}

/// When the process started, as near as the binary tells: it calls this first thing, and
/// the first call fixes the instant.
pub fn process_started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// `freshet_build_info`, `freshet_process_uptime_seconds` and
/// `freshet_panics_caught_total`.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode::gauges(
            &mut encoder,
            "freshet_build_info",
            "The version of this freshet binary, as a label; the value is always 1.",
            "version",
            [(env!("CARGO_PKG_VERSION"), 1_i64)],
        )?;
        encode::gauge(
            &mut encoder,
            "freshet_process_uptime_seconds",
            "Seconds since this process started.",
            process_started().elapsed().as_secs_f64(),
        )?;
        encode::counters(
            &mut encoder,
            "freshet_panics_caught",
            "Panics caught since the process started, by where: a generator job (marked \
             failed) or an HTTP request (answered 500). Each is a bug, logged at ERROR.",
            "site",
            PanicSite::ALL.map(|site| (site.as_str(), panics::count(site))),
        )
    }
}

/// A tracker node's numbers, taken when the scrape began.
#[derive(Debug)]
struct TrackerCollector(TrackerMetrics);

impl Collector for TrackerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let e = &mut encoder;
        encode::gauges2(
            e,
            "freshet_tracker_node_info",
            "This tracker node's id and consumer group, as labels; the value is always 1.",
            ("node", "group"),
            [((m.node_id.as_str(), m.group.as_str()), 1_i64)],
        )?;
        encode::gauge(
            e,
            "freshet_tracker_running",
            "1 while the node's consumer runs, 0 once it stopped.",
            i64::from(m.running),
        )?;
        encode::counter(
            e,
            "freshet_tracker_events",
            "Valid device events this node counted since it started (events replayed after a \
             failed checkpoint count again).",
            m.events_counted,
        )?;
        encode::counters(
            e,
            "freshet_tracker_events_rejected",
            "Device events this node sent to the dead-letter topic since it started, by kind \
             of problem (unreadable_batch: a whole record batch the consumer cannot read, \
             one dead-letter record each).",
            "reason",
            m.events_rejected
                .iter()
                .map(|(kind, count)| (kind.as_str(), *count)),
        )?;
        encode::gauge(
            e,
            "freshet_tracker_events_per_second",
            "Device events (valid or not) this node consumed per second over the last 5 \
             seconds.",
            m.events_per_second,
        )?;
        if let Some(lag) = m.consumer_lag {
            encode::gauge(
                e,
                "freshet_tracker_consumer_lag_records",
                "Records not yet consumed in the partitions this node owns (absent while \
                 unknown).",
                lag,
            )?;
        }
        encode::gauges(
            e,
            "freshet_tracker_distinct_ips",
            "Exact distinct device IPs: in the partitions this node owns (scope node) and \
             across all partitions (scope global).",
            "scope",
            [
                ("node", m.distinct_ips_node as i64),
                ("global", m.distinct_ips_global as i64),
            ],
        )?;
        encode::gauge(
            e,
            "freshet_tracker_partitions_owned",
            "Partitions of the input topic this node consumes.",
            m.partitions_owned as i64,
        )?;
        encode::counter(
            e,
            "freshet_tracker_checkpoints",
            "Partition checkpoints this node wrote and the cluster acknowledged since it \
             started.",
            m.checkpoints_written,
        )
    }
}

/// A guard node's numbers, taken when the scrape began.
#[derive(Debug)]
struct GuardCollector(GuardMetrics);

impl Collector for GuardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let e = &mut encoder;
        encode::counters(
            e,
            "freshet_guard_login_attempts",
            "Logins this node answered since it started, by outcome: success, failure (unknown \
             user or wrong password) or blocked (refused before the password was checked).",
            "outcome",
            m.logins
                .iter()
                .map(|(outcome, count)| (outcome_label(*outcome), *count)),
        )?;
        encode::gauge(
            e,
            "freshet_guard_users_blocked",
            "Users whose block holds now.",
            m.users_blocked as i64,
        )?;
        encode::counter(
            e,
            "freshet_guard_attempts_dropped",
            "Login attempts this node could not publish to Kafka since it started.",
            m.attempts_dropped,
        )?;
        encode::counters2(
            e,
            "freshet_guard_forged_records",
            "Records this node refused since it started because the guard did not write them, \
             by topic and reason: missing_mac, invalid_mac (altered, forged, or signed with \
             another secret), unreadable (not a guard record), tombstone (blocked-users \
             only). Refused records of login-attempts are also copied to its dead-letter \
             topic.",
            ("topic", "reason"),
            m.forged
                .iter()
                .map(|f| ((f.topic.as_str(), f.reason.as_str()), f.count)),
        )?;
        let Some(blocker) = &m.blocker else {
            return Ok(());
        };
        encode::counter(
            e,
            "freshet_guard_blocks_issued",
            "Blocks this node's blocker issued since it started (a block redone after a failed \
             checkpoint counts again).",
            blocker.blocks_issued,
        )?;
        encode::counter(
            e,
            "freshet_guard_attempts_processed",
            "Records of login-attempts this node's blocker processed since it started.",
            blocker.attempts_processed,
        )?;
        encode::counter(
            e,
            "freshet_guard_checkpoints",
            "Partition checkpoints this node's blocker wrote since it started.",
            blocker.checkpoints,
        )
    }
}

fn outcome_label(outcome: LoginOutcome) -> &'static str {
    match outcome {
        LoginOutcome::Success => "success",
        LoginOutcome::Rejected => "failure",
        LoginOutcome::Blocked => "blocked",
    }
}

/// One metric family per call, for [`Collector`]s. Counter names are given without
/// `_total`; label values are escaped by the encoder.
pub mod encode {
    use std::fmt;

    use prometheus_client::encoding::{
        DescriptorEncoder, EncodeGaugeValue, EncodeLabelValue, EncodeMetric,
    };
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::MetricType;

    pub fn counter(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: u64,
    ) -> fmt::Result {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(metric)
    }

    pub fn gauge<V: EncodeGaugeValue>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: V,
    ) -> fmt::Result {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)
    }

    /// A counter per value of one label.
    pub fn counters<L: EncodeLabelValue>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (value, count) in samples {
            let labels = [(label, value)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A counter per pair of values of two labels.
    pub fn counters2<L: EncodeLabelValue, M: EncodeLabelValue>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        (first, second): (&str, &str),
        samples: impl IntoIterator<Item = ((L, M), u64)>,
    ) -> fmt::Result {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for ((one, two), count) in samples {
            let labels = ([(first, one)], [(second, two)]);
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge per value of one label.
    pub fn gauges<L: EncodeLabelValue, V: EncodeGaugeValue>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (value, gauge) in samples {
            let labels = [(label, value)];
            ConstGauge::new(gauge).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge per pair of values of two labels.
    pub fn gauges2<L: EncodeLabelValue, M: EncodeLabelValue, V: EncodeGaugeValue>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        (first, second): (&str, &str),
        samples: impl IntoIterator<Item = ((L, M), V)>,
    ) -> fmt::Result {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for ((one, two), gauge) in samples {
            let labels = ([(first, one)], [(second, two)]);
            ConstGauge::new(gauge).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A histogram from per-bucket counts (not cumulative), each with its upper bound in the
    /// histogram's unit; the last bound is `f64::INFINITY`. The count is the buckets' sum, so
    /// the `+Inf` bucket always equals it.
    pub fn histogram(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        sum: f64,
        buckets: &[(f64, u64)],
    ) -> fmt::Result {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        let count = buckets.iter().map(|(_, count)| count).sum();
        metric
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_are_named_like_their_samples() {
        let openmetrics = "# HELP a_bytes Bytes in.\n# TYPE a_bytes counter\na_bytes_total{topic=\"t\"} 3\n\
                           # HELP b Some gauge.\n# TYPE b gauge\nb 1\n# UNIT c_seconds seconds\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP a_bytes_total Bytes in.\n# TYPE a_bytes_total counter\na_bytes_total{topic=\"t\"} 3\n\
             # HELP b Some gauge.\n# TYPE b gauge\nb 1\n"
        );
    }
}
