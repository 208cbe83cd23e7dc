//! `freshet bench security`: what TLS and SASL cost the Kafka listener (results and the
//! target in docs/BENCHMARKS.md, "Security").
//!
//! One fresh `freshet broker` child process listens on PLAINTEXT, SSL, SASL_PLAINTEXT and
//! SASL_SSL at once, on loopback, durable as in `bench broker` (fsync before every
//! acknowledgement) unless `--flush-interval-ms` is given. Its certificate is made at start
//! with rcgen (ECDSA P-256: a CA and a server certificate for `127.0.0.1` and `localhost`, in
//! a temporary directory), and one user is put in its data directory's user store with
//! SCRAM-SHA-256 and SCRAM-SHA-512 credentials of `--scram-iterations` PBKDF2 iterations.
//!
//! - Throughput: `bench broker`'s 1 KiB produce (acks=all) and consume workloads, with
//!   librdkafka, over PLAINTEXT and over SASL_SSL (`sasl.mechanism=SCRAM-SHA-512`,
//!   `ssl.ca.location`) in the same run: each round a fresh pair of topics, the two listeners
//!   in the other order than the round before. The ratio is SASL_SSL / PLAINTEXT of the same
//!   round. Beside each result, the CPU time the broker process and this process (the
//!   librdkafka client) spent on it, from `/proc`, says where the time went.
//! - Handshakes: new connections per second for each way in, with the services' own
//!   raw-protocol client (`freshet_services::cluster::check_sign_in`: tokio, rustls with ring,
//!   its SCRAM client) rather than librdkafka, whose threads and metadata requests would cost
//!   more than what is measured. Per connection it does the TCP connect, the TLS handshake,
//!   ApiVersions v0, then SaslHandshake and SaslAuthenticate (two round trips for SCRAM, one
//!   for PLAIN), and closes. `--handshake-connections` tasks connect one after another for
//!   `--handshake-seconds` per kind. Unless the row says otherwise, every TLS connection gets a
//!   client configuration (and so a session cache) of its own: no session is resumed and every
//!   handshake is a full one (the broker signs, the client verifies the certificate), as with
//!   librdkafka. The key exchange is the group this client offers first, which the broker
//!   takes: P-384 with rustls 0.23's ring provider, where librdkafka (OpenSSL) offers X25519,
//!   about a third of the broker's cost (docs/BENCHMARKS.md, "Security").
//!
//! In SCRAM the PBKDF2 work is the client's: it derives its keys from the password
//! (`--scram-iterations` rounds) on every sign-in, while the broker holds keys derived once
//! when the user was added and does two HMACs and one hash per sign-in. The anchor line times
//! PBKDF2 alone in this process. PLAIN is the other way round: the broker runs PBKDF2 to check
//! the password it is sent.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use freshet_security::scram::{
    Mechanism, ScramCredential, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS,
};
use freshet_security::users::UserStore;
use freshet_services::cluster::check_sign_in;
use freshet_services::kafka::{KafkaSecurity, Password, SaslMechanism, SecurityProtocol};
use freshet_services::KafkaConfig;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rdkafka::config::ClientConfig;

use super::broker::{
    client, consume_throughput_from, create_topics, produce_throughput, Throughput,
};
use super::child::ChildBroker;
use super::median;
use super::pipeline::delete_topics;

/// The user the clients sign in as.
const USER: &str = "bench";
/// Size of every record of the throughput runs.
const RECORD_BYTES: usize = 1024;
/// The broker's listeners, all on loopback on ports the system picks.
const LISTENERS: [&str; 4] = [
    "PLAINTEXT://127.0.0.1:0",
    "SSL://127.0.0.1:0",
    "SASL_PLAINTEXT://127.0.0.1:0",
    "SASL_SSL://127.0.0.1:0",
];
/// How long one sign-in may take before it counts as failed.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10);
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICK_MS: u64 = 10;

#[derive(Debug, Clone, Args)]
pub struct SecurityBenchArgs {
    /// Records of 1 KiB produced, then consumed, per listener and round (both topics of a
    /// round are deleted before the next: twice this many KiB on disk at most).
    #[arg(long, env = "FRESHET_BENCH_RECORDS", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Rounds of the throughput runs; each round measures both listeners, the one first
    /// that went second the round before, and the summary gives the medians.
    #[arg(long, env = "FRESHET_BENCH_ROUNDS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Partitions of each benchmark topic.
    #[arg(long, env = "FRESHET_BENCH_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Seconds each kind of handshake is repeated for.
    #[arg(long, env = "FRESHET_BENCH_HANDSHAKE_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub handshake_seconds: u64,
    /// Connections being opened at once during the handshake runs (each task opens the next
    /// when its last one is signed in and closed).
    #[arg(long, env = "FRESHET_BENCH_HANDSHAKE_CONNECTIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub handshake_connections: u64,
    /// PBKDF2 iterations of the bench user's SCRAM credentials: what a client computes on
    /// every SCRAM sign-in and the broker on every PLAIN one (Kafka accepts 4096 to 16384).
    #[arg(long, env = "FRESHET_BENCH_SCRAM_ITERATIONS", default_value_t = DEFAULT_ITERATIONS,
          value_parser = clap::value_parser!(u32)
              .range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS)))]
    pub scram_iterations: u32,
    /// Start the broker with `--flush-interval-ms N` (fsync every N ms instead of before
    /// every acknowledgement), to take the disk out of the produce runs.
    #[arg(long, env = "FRESHET_BENCH_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// A librdkafka property for the clients of the throughput runs on both listeners,
    /// `KEY=VALUE` (e.g. `socket.send.buffer.bytes=1048576`); repeatable. The settings the runs
    /// themselves make (acks, linger.ms, batch.size, compression, the consumer's fetch sizes)
    /// stay as they are.
    #[arg(long = "client-config", env = "FRESHET_BENCH_CLIENT_CONFIG", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub client_config: Vec<(String, String)>,
    /// Skip the produce and consume runs.
    #[arg(long, env = "FRESHET_BENCH_SKIP_THROUGHPUT")]
    pub skip_throughput: bool,
    /// Skip the handshake runs.
    #[arg(long, env = "FRESHET_BENCH_SKIP_HANDSHAKES")]
    pub skip_handshakes: bool,
    /// Print results as JSON lines as well.
    #[arg(long, env = "FRESHET_BENCH_JSON")]
    pub json: bool,
}

pub fn run(args: SecurityBenchArgs) -> anyhow::Result<()> {
    // Declared before the broker, so dropped after it: the broker never loses its files.
    let certificates_dir = tempfile::tempdir().context("temporary directory for certificates")?;
    let certificates = Certificates::make(certificates_dir.path())?;
    let data = tempfile::tempdir().context("temporary data directory")?;
    // Not a secret (a throwaway broker on loopback), but never the same twice.
    let password = uuid::Uuid::new_v4().simple().to_string();
    UserStore::open(data.path())
        .and_then(|store| {
            store.add(
                USER,
                password.as_bytes(),
                &Mechanism::ALL,
                args.scram_iterations,
            )
        })
        .context("adding the bench user")?;

    let cert = certificates.cert.to_string_lossy().into_owned();
    let key = certificates.key.to_string_lossy().into_owned();
    let flush = args.flush_interval_ms.map(|ms| ms.to_string());
    let mut extra = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    if let Some(ms) = &flush {
        extra.extend(["--flush-interval-ms", ms.as_str()]);
    }
    let (broker, bound) = ChildBroker::start_listeners(data, &LISTENERS, &extra)?;
    let listener = |protocol: &str| {
        bound
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, addr)| addr.clone())
            .with_context(|| format!("the broker announced no {protocol} listener"))
    };
    let bench = Bench {
        plaintext: listener("PLAINTEXT")?,
        ssl: listener("SSL")?,
        sasl_plaintext: listener("SASL_PLAINTEXT")?,
        sasl_ssl: listener("SASL_SSL")?,
        ca: certificates.ca,
        password,
        broker_pid: broker.pid().to_string(),
        args,
    };
    eprintln!(
        "broker (pid {}): PLAINTEXT {}, SSL {}, SASL_PLAINTEXT {}, SASL_SSL {}; {}; user {USER:?} \
         with SCRAM-SHA-256/512 at {} PBKDF2 iterations; certificate ECDSA P-256",
        bench.broker_pid,
        bench.plaintext,
        bench.ssl,
        bench.sasl_plaintext,
        bench.sasl_ssl,
        match bench.args.flush_interval_ms {
            None => "fsync before every ack".to_string(),
            Some(ms) => format!("fsync every {ms} ms"),
        },
        bench.args.scram_iterations
    );
    if !bench.args.skip_throughput {
        bench.throughput()?;
    }
    if !bench.args.skip_handshakes {
        bench.handshakes()?;
    }
    drop(broker);
    Ok(())
}

/// The PEM files of a CA and of a server certificate it signed.
#[derive(Debug)]
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certificates {
    /// `ca.pem`, `server.pem` and `server-key.pem` in `dir`: a new CA and a server
    /// certificate for `127.0.0.1` and `localhost` (ECDSA P-256, rcgen's default).
    fn make(dir: &Path) -> anyhow::Result<Certificates> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Freshet bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca, &ca_key)?;

        let files = Certificates {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server-key.pem"),
        };
        std::fs::write(&files.ca, ca.pem())?;
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

/// A running broker with its four listeners, and how to sign in to it.
#[derive(Debug)]
struct Bench {
    plaintext: String,
    ssl: String,
    sasl_plaintext: String,
    sasl_ssl: String,
    ca: PathBuf,
    password: String,
    broker_pid: String,
    args: SecurityBenchArgs,
}

/// One throughput run with the CPU time spent on it.
#[derive(Debug, Clone, Copy)]
struct Measured {
    throughput: Throughput,
    /// From before the client was created (a consumer: from its first record) to the end.
    wall: Duration,
    broker_cpu: Duration,
    /// This process: the librdkafka client's threads and this loop.
    client_cpu: Duration,
}

impl Measured {
    fn mb(&self) -> f64 {
        self.throughput.bytes as f64 / 1e6
    }
}

/// The two sides of every throughput comparison.
const SIDES: [&str; 2] = ["PLAINTEXT", "SASL_SSL"];

impl Bench {
    /// librdkafka settings for the SASL_SSL listener.
    fn sasl_ssl_client(&self) -> ClientConfig {
        let mut config = client(&self.sasl_ssl);
        config
            .set("security.protocol", "sasl_ssl")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", USER)
            .set("sasl.password", &self.password)
            .set("ssl.ca.location", self.ca.to_string_lossy());
        config
    }

    /// Runs `work` and reads the CPU time of the broker and of this process around it. `work`
    /// may call the function it is given when its clock starts (a consumer at its first
    /// record), so that the CPU time counts from then.
    fn measure(
        &self,
        work: impl FnOnce(&mut dyn FnMut()) -> anyhow::Result<Throughput>,
    ) -> anyhow::Result<Measured> {
        let mut baseline = (
            cpu_time(&self.broker_pid)?,
            cpu_time("self")?,
            Instant::now(),
        );
        let mut restart = || {
            if let (Ok(broker), Ok(client)) = (cpu_time(&self.broker_pid), cpu_time("self")) {
                baseline = (broker, client, Instant::now());
            }
        };
        let throughput = work(&mut restart)?;
        let (broker_before, client_before, start) = baseline;
        Ok(Measured {
            throughput,
            wall: start.elapsed(),
            broker_cpu: cpu_time(&self.broker_pid)?.saturating_sub(broker_before),
            client_cpu: cpu_time("self")?.saturating_sub(client_before),
        })
    }

    fn throughput(&self) -> anyhow::Result<()> {
        let mut configs = [client(&self.plaintext), self.sasl_ssl_client()];
        for config in &mut configs {
            for (key, value) in &self.args.client_config {
                config.set(key, value);
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let args = &self.args;
        println!(
            "throughput: {} × 1 KiB per run, acks=all, {} partitions, librdkafka; SASL_SSL with \
             SCRAM-SHA-512",
            args.records, args.partitions
        );
        // [workload][side] → one result per round.
        let mut results: [[Vec<Measured>; 2]; 2] = Default::default();
        for round in 0..args.rounds {
            let topics = SIDES.map(|side| {
                format!(
                    "bench-security-{}-{}-{round}",
                    side.to_ascii_lowercase(),
                    std::process::id()
                )
            });
            let names = [topics[0].as_str(), topics[1].as_str()];
            runtime.block_on(create_topics(&self.plaintext, &names, args.partitions))?;
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut produced: [Option<Measured>; 2] = [None, None];
            let mut consumed: [Option<Measured>; 2] = [None, None];
            for side in order {
                produced[side] = Some(self.measure(|_| {
                    produce_throughput(
                        &configs[side],
                        &topics[side],
                        args.records,
                        RECORD_BYTES,
                        &format!("produce {}", SIDES[side]),
                    )
                })?);
            }
            for side in order {
                consumed[side] = Some(self.measure(|first_record| {
                    consume_throughput_from(
                        &configs[side],
                        &topics[side],
                        args.partitions,
                        args.records,
                        &format!("consume {}", SIDES[side]),
                        first_record,
                    )
                })?);
            }
            // The disk of this machine is small: each round's records go before the next.
            if let Err(e) = runtime.block_on(delete_topics(&self.plaintext, &names)) {
                eprintln!("security: could not delete {names:?}: {e:#}");
            }
            println!(
                "round {} of {} ({} first)",
                round + 1,
                args.rounds,
                SIDES[order[0]]
            );
            for (workload, runs) in [("produce", produced), ("consume", consumed)] {
                let [Some(plain), Some(tls)] = runs else {
                    bail!("round {round}: a {workload} run is missing");
                };
                for (side, run) in [plain, tls].iter().enumerate() {
                    self.report_run(round, workload, SIDES[side], run);
                }
                let ratio = tls.throughput.mb_per_s() / plain.throughput.mb_per_s();
                println!("  {workload} 1 KiB   ratio SASL_SSL / PLAINTEXT {ratio:.2}");
                let index = usize::from(workload == "consume");
                results[index][0].push(plain);
                results[index][1].push(tls);
            }
        }
        println!("median of {} rounds:", args.rounds);
        for (index, workload) in ["produce", "consume"].iter().enumerate() {
            let [plain, tls] = &results[index];
            let plain_mb_s = median(plain.iter().map(|m| m.throughput.mb_per_s()));
            let tls_mb_s = median(tls.iter().map(|m| m.throughput.mb_per_s()));
            let round_ratio = median(
                plain
                    .iter()
                    .zip(tls)
                    .map(|(p, t)| t.throughput.mb_per_s() / p.throughput.mb_per_s()),
            );
            let ratio = tls_mb_s / plain_mb_s;
            println!(
                "  {workload} 1 KiB   PLAINTEXT {plain_mb_s:.1} MB/s, SASL_SSL {tls_mb_s:.1} MB/s: \
                 ratio {ratio:.2} (median of the rounds' ratios {round_ratio:.2}; target ≥ 0.60: {})",
                if ratio >= 0.6 { "met" } else { "missed" }
            );
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"bench": "security throughput", "workload": workload,
                        "rounds": args.rounds, "plaintext_mb_per_s": plain_mb_s,
                        "sasl_ssl_mb_per_s": tls_mb_s, "ratio": ratio,
                        "median_round_ratio": round_ratio})
                );
            }
        }
        Ok(())
    }

    fn report_run(&self, round: u32, workload: &str, side: &str, run: &Measured) {
        let t = &run.throughput;
        let secs = t.elapsed.as_secs_f64();
        let broker_ms_per_mb = run.broker_cpu.as_secs_f64() * 1000.0 / run.mb();
        let client_ms_per_mb = run.client_cpu.as_secs_f64() * 1000.0 / run.mb();
        let cores = (run.broker_cpu + run.client_cpu).as_secs_f64() / run.wall.as_secs_f64();
        println!(
            "  {workload} 1 KiB   {side:<10} {:>8} records in {secs:>5.2} s: {:>9.1} MB/s; CPU \
             ms/MB broker {broker_ms_per_mb:.2}, client {client_ms_per_mb:.2}; {cores:.2} cores busy",
            t.records,
            t.mb_per_s()
        );
        if self.args.json {
            println!(
                "{}",
                serde_json::json!({"bench": "security throughput run", "round": round + 1,
                    "workload": workload, "listener": side, "records": t.records,
                    "seconds": secs, "mb_per_s": t.mb_per_s(),
                    "records_per_s": t.records_per_s(),
                    "wall_seconds": run.wall.as_secs_f64(),
                    "broker_cpu_seconds": run.broker_cpu.as_secs_f64(),
                    "client_cpu_seconds": run.client_cpu.as_secs_f64()})
            );
        }
    }

    /// What a client of `protocol` with `mechanism` (when it uses SASL) is configured with.
    fn security(&self, protocol: SecurityProtocol, mechanism: SaslMechanism) -> KafkaSecurity {
        let sasl = protocol.uses_sasl();
        KafkaSecurity {
            security_protocol: protocol,
            sasl_mechanism: mechanism,
            sasl_username: sasl.then(|| USER.to_string()),
            sasl_password: sasl.then(|| Password::new(self.password.clone())),
            ssl_ca_location: protocol.uses_tls().then(|| self.ca.clone()),
            ..KafkaSecurity::default()
        }
    }

    fn handshake_kinds(&self) -> Vec<HandshakeKind> {
        use SaslMechanism::{Plain, ScramSha256, ScramSha512};
        use SecurityProtocol::{Plaintext, SaslPlaintext, SaslSsl, Ssl};
        let kind = |name: &'static str, addr: &str, protocol, mechanism, fresh_tls| HandshakeKind {
            name,
            addr: addr.to_string(),
            security: self.security(protocol, mechanism),
            fresh_tls,
        };
        vec![
            kind("PLAINTEXT", &self.plaintext, Plaintext, ScramSha512, false),
            kind("SSL", &self.ssl, Ssl, ScramSha512, true),
            kind("SSL, session resumed", &self.ssl, Ssl, ScramSha512, false),
            kind(
                "SASL_PLAINTEXT SCRAM-SHA-256",
                &self.sasl_plaintext,
                SaslPlaintext,
                ScramSha256,
                false,
            ),
            kind(
                "SASL_PLAINTEXT SCRAM-SHA-512",
                &self.sasl_plaintext,
                SaslPlaintext,
                ScramSha512,
                false,
            ),
            kind(
                "SASL_SSL SCRAM-SHA-256",
                &self.sasl_ssl,
                SaslSsl,
                ScramSha256,
                true,
            ),
            kind(
                "SASL_SSL SCRAM-SHA-512",
                &self.sasl_ssl,
                SaslSsl,
                ScramSha512,
                true,
            ),
            kind("SASL_SSL PLAIN", &self.sasl_ssl, SaslSsl, Plain, true),
        ]
    }

    fn handshakes(&self) -> anyhow::Result<()> {
        let args = &self.args;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Anchors, in this process: the client's PBKDF2 per SCRAM sign-in, and building a
        // client TLS configuration (read and parse the CA), paid per full-handshake connection.
        for mechanism in Mechanism::ALL {
            let per = time_per(20, || {
                std::hint::black_box(ScramCredential::derive(
                    mechanism,
                    b"bench-password",
                    b"0123456789abcdef",
                    args.scram_iterations,
                ));
                Ok(())
            })?;
            println!(
                "anchor: PBKDF2 {} at {} iterations (+ key HMACs), one thread: {:.0} us",
                mechanism.name(),
                args.scram_iterations,
                per.as_secs_f64() * 1e6
            );
        }
        let ssl = self.security(SecurityProtocol::Ssl, SaslMechanism::ScramSha512);
        let per = time_per(200, || {
            std::hint::black_box(KafkaConfig::new(self.ssl.clone()).with_security(ssl.clone())?);
            Ok(())
        })?;
        println!(
            "anchor: client TLS configuration (CA read and parsed): {:.0} us",
            per.as_secs_f64() * 1e6
        );
        println!(
            "handshakes: {} connections at once for {} s per kind; each connects, signs in, \
             closes; SCRAM credentials at {} iterations (PBKDF2 by the client; the broker does \
             2 HMACs + 1 hash); full TLS handshakes unless resumed",
            args.handshake_connections, args.handshake_seconds, args.scram_iterations
        );
        println!(
            "  {:<30} {:>8} {:>10} {:>8} {:>8} {:>13} {:>13}",
            "kind", "conns", "conns/s", "p50 ms", "p99 ms", "broker us/c", "client us/c"
        );
        for kind in self.handshake_kinds() {
            let result = self.handshake_run(&runtime, &kind)?;
            let rate = result.connections as f64 / result.elapsed.as_secs_f64();
            let per_connection =
                |cpu: Duration| cpu.as_secs_f64() * 1e6 / result.connections as f64;
            let (broker_us, client_us) = (
                per_connection(result.broker_cpu),
                per_connection(result.client_cpu),
            );
            let p50 = result.latency.value_at_quantile(0.5) as f64 / 1000.0;
            let p99 = result.latency.value_at_quantile(0.99) as f64 / 1000.0;
            println!(
                "  {:<30} {:>8} {rate:>10.0} {p50:>8.2} {p99:>8.2} {broker_us:>13.0} {client_us:>13.0}",
                kind.name, result.connections
            );
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"bench": "security handshake", "kind": kind.name,
                        "connections": result.connections,
                        "seconds": result.elapsed.as_secs_f64(), "per_s": rate,
                        "p50_ms": p50, "p99_ms": p99,
                        "broker_cpu_us_per_connection": broker_us,
                        "client_cpu_us_per_connection": client_us,
                        "parallel": args.handshake_connections,
                        "scram_iterations": args.scram_iterations})
                );
            }
        }
        Ok(())
    }

    /// Connects and signs in as `kind` says, from `--handshake-connections` tasks, for
    /// `--handshake-seconds`.
    fn handshake_run(
        &self,
        runtime: &tokio::runtime::Runtime,
        kind: &HandshakeKind,
    ) -> anyhow::Result<HandshakeResult> {
        let shared = KafkaConfig::new(kind.addr.clone())
            .with_security(kind.security.clone())
            .with_context(|| format!("{}: client settings", kind.name))?;
        // Once outside the clock: a mistake fails here with its reason, and the resumed kind
        // has a session to resume.
        runtime
            .block_on(check_sign_in(&shared, SIGN_IN_TIMEOUT))
            .with_context(|| format!("{}: signing in", kind.name))?;
        let bar = spinner(kind.name);
        let (broker_before, client_before) = (cpu_time(&self.broker_pid)?, cpu_time("self")?);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(self.args.handshake_seconds);
        let latency = runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..self.args.handshake_connections {
                let (shared, bar) = (shared.clone(), bar.clone());
                let (addr, security, fresh_tls) =
                    (kind.addr.clone(), kind.security.clone(), kind.fresh_tls);
                tasks.push(tokio::spawn(async move {
                    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                    while Instant::now() < deadline {
                        // A configuration of its own has an empty TLS session cache: the
                        // handshake is a full one.
                        let config = match fresh_tls {
                            true => {
                                KafkaConfig::new(addr.clone()).with_security(security.clone())?
                            }
                            false => shared.clone(),
                        };
                        let began = Instant::now();
                        check_sign_in(&config, SIGN_IN_TIMEOUT).await?;
                        latency.record((began.elapsed().as_micros() as u64).max(1))?;
                        bar.inc(1);
                    }
                    Ok::<_, anyhow::Error>(latency)
                }));
            }
            let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            for task in tasks {
                let latency = task.await.context("a connecting task")??;
                total
                    .add(&latency)
                    .map_err(|e| anyhow!("merging latencies: {e:?}"))?;
            }
            Ok::<_, anyhow::Error>(total)
        });
        let elapsed = start.elapsed();
        let (broker_after, client_after) = (cpu_time(&self.broker_pid)?, cpu_time("self")?);
        bar.finish_and_clear();
        let latency = latency.with_context(|| kind.name.to_string())?;
        Ok(HandshakeResult {
            connections: latency.len(),
            elapsed,
            latency,
            broker_cpu: broker_after.saturating_sub(broker_before),
            client_cpu: client_after.saturating_sub(client_before),
        })
    }
}

/// One way in: a listener and the client settings for it.
#[derive(Debug)]
struct HandshakeKind {
    name: &'static str,
    addr: String,
    security: KafkaSecurity,
    /// A new client TLS configuration per connection, so no session is resumed.
    fresh_tls: bool,
}

#[derive(Debug)]
struct HandshakeResult {
    connections: u64,
    elapsed: Duration,
    /// Microseconds from before the TCP connect to the end of the sign-in.
    latency: Histogram<u64>,
    broker_cpu: Duration,
    client_cpu: Duration,
}

fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{msg:<30} {spinner} {pos} connections ({per_sec}) {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// User plus system CPU time of a process (`self` or a pid), all its threads.
fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .with_context(|| format!("{path}: no CPU time in field {}", index + 3))
    };
    Ok(Duration::from_millis(TICK_MS * (ticks(11)? + ticks(12)?)))
}

/// Mean time of `work` over `times` calls.
fn time_per(times: u32, mut work: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for _ in 0..times {
        work()?;
    }
    Ok(start.elapsed() / times)
}

/// `KEY=VALUE`, as `--client-config` takes it.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}
