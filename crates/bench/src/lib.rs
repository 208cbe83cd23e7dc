//! `freshet bench ...`: the measurements behind docs/BENCHMARKS.md. Each prints a table and,
//! with `--json`, one JSON object per result so runs can be compared by scripts.
//!
//! A library the `freshet` binary dispatches to ([`run`]), so the benchmarks' own
//! dependencies (histograms, certificate generation, raw protocol clients) stay out of the
//! product's code. A benchmark that needs a broker or a tracker starts the `freshet` binary
//! that runs it as a child process (`child.rs`), so it measures the shipped program, not a
//! library linked into the benchmark.

// A benchmark's report on stdout is its product.
#![allow(clippy::print_stdout)]

mod broker;
mod child;
mod guard;
mod pipeline;
mod rolls;
mod security;
mod soak;
mod timestamp;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce and consume throughput and ack latency against a Kafka-compatible broker
    /// (a fresh Freshet broker in a child process unless --bootstrap-servers is given).
    Broker(broker::BrokerBenchArgs),
    /// Events per second through broker → tracker (a tracker node in a child process counting
    /// generated device events exactly), and the tracker's resident memory per distinct IP.
    Pipeline(pipeline::PipelineBenchArgs),
    /// Login attempts per second the guard's blocker processes, and logins per second at the
    /// Argon2id parameters (a fresh Freshet broker in a child process unless
    /// --bootstrap-servers is given).
    Guard(guard::GuardBenchArgs),
    /// Broker memory and ack latency over time while many connections produce and consume
    /// steadily (a fresh Freshet broker in a child process unless --bootstrap-servers is given).
    Soak(soak::SoakBenchArgs),
    /// Ack latency of a steady probe producer while another topic rolls segments every few
    /// megabytes (a fresh Freshet broker in a child process unless --bootstrap-servers is
    /// given).
    Rolls(rolls::RollsBenchArgs),
    /// What TLS and SASL cost: 1 KiB produce and consume throughput over SASL_SSL beside
    /// PLAINTEXT in the same run, and connections per second for each kind of handshake
    /// (a fresh Freshet broker in a child process with all four kinds of listener).
    Security(security::SecurityBenchArgs),
    /// Timestamp normalisations per second over a mix of eight input forms, beside jiff doing
    /// the same job in the same run.
    Timestamp(timestamp::TimestampBenchArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Broker(args) => broker::run(args),
        BenchCommand::Pipeline(args) => pipeline::run(args),
        BenchCommand::Guard(args) => guard::run(args),
        BenchCommand::Soak(args) => soak::run(args),
        BenchCommand::Rolls(args) => rolls::run(args),
        BenchCommand::Security(args) => security::run(args),
        BenchCommand::Timestamp(args) => timestamp::run(args),
    }
}

/// The median of `values` (the mean of the middle two for an even count; NaN for none).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
