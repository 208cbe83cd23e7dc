//! Command-line interface. Every flag has a matching `FRESHET_*` environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use freshet_api::guard::RateLimit;
use freshet_api::HttpLimits;
use freshet_broker::config::{ListenerConfig, TlsConfig};
use freshet_broker::listener::ListenerSpec;
use freshet_broker::BrokerConfig;
use freshet_services::generator::Compression;
use freshet_services::guard::accounts::Argon2Params;

#[derive(Debug, Parser)]
#[command(
    name = "freshet",
    version,
    about = "A Kafka-compatible event-streaming broker and the stream services built on it, in one binary"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `freshet_broker=debug`.
    #[arg(
        long,
        env = "FRESHET_LOG",
        default_value = "info",
        global = true,
        help_heading = "Logging",
        display_order = 10_000
    )]
    pub log: String,
    /// Log line format.
    #[arg(long, env = "FRESHET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true, help_heading = "Logging", display_order = 10_001)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

// Parsed once at start and moved into its command: the size of the largest variant costs
// nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process: the broker, the HTTP API, the tracker and the guard.
    Up(UpArgs),
    /// Run the Kafka-compatible broker alone.
    Broker(BrokerNodeArgs),
    /// Run one tracker node: counts distinct device IPs exactly with the other nodes of its
    /// consumer group, and serves its counts over HTTP.
    Tracker(TrackerNodeArgs),
    /// Run one login-guard node: accounts (`/register`, `/login`), login attempts published
    /// to `login-attempts`, and a blocker that blocks users after repeated failures.
    Guard(GuardNodeArgs),
    /// Inspect log files on disk.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Send device events to Kafka and print exactly how many distinct device IPs were sent.
    ///
    /// Builds a pool of NUM_DEVICES distinct random addresses (IPv4, IPV6_PERCENT of them
    /// IPv6), then sends NUM_MESSAGES events `{"timestamp", "device_ip", "error_code"}`, each
    /// from a device picked at random and keyed by its IP, with the timestamp in one of seven
    /// forms. Counts what the broker acknowledged; Ctrl-C stops sending, waits for what was
    /// queued and prints the partial summary.
    Generate(GenerateArgs),
    /// Normalise timestamps to UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`, one output line per VALUE.
    ///
    /// Accepts ISO 8601 / RFC 3339 (`T` or space, 0-9 fraction digits truncated to ms, `Z`,
    /// `+02:00`, `-0500`, `+02` or no zone = UTC) and Unix epoch numbers: seconds below 1e11,
    /// milliseconds below 1e14, microseconds below 1e17, nanoseconds above. Each VALUE is read
    /// as JSON when it is valid JSON (`1726667942` and `1.5e9` are numbers, `'"123"'` is a
    /// string, `true` is rejected), otherwise as a plain string. Failures print
    /// `error: VALUE: REASON` on stderr; the exit status is non-zero if any value failed.
    Ts {
        /// Timestamps to normalise.
        #[arg(required = true, allow_hyphen_values = true)]
        values: Vec<String>,
    },
    /// Run the benchmarks behind docs/BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        command: freshet_bench::BenchCommand,
    },
    /// Manage SASL users (SCRAM credentials) in a data directory.
    Users {
        #[command(subcommand)]
        command: crate::users::UsersCommand,
    },
    /// Manage the ACLs `--authorizer acl` enforces, in a data directory (kafka-acls.sh flags).
    Acls {
        #[command(subcommand)]
        command: crate::acls::AclsCommand,
    },
}

/// Which authorizer decides Kafka requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthorizerArg {
    None,
    Acl,
}

fn parse_principal(text: &str) -> Result<freshet_security::Principal, String> {
    freshet_security::Principal::parse(text)
}

/// Where the Kafka cluster the services talk to is.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port...]`: a Freshet broker or any Kafka
    /// cluster.
    #[arg(
        long,
        env = "FRESHET_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    #[command(flatten)]
    pub security: KafkaSecurityArgs,
}

impl KafkaArgs {
    /// The services' Kafka settings; fails on a security combination that cannot work.
    pub fn to_config(&self) -> anyhow::Result<freshet_services::KafkaConfig> {
        self.security
            .apply(freshet_services::KafkaConfig::new(&self.bootstrap_servers))
    }
}

/// How the services sign in to the Kafka cluster, with librdkafka's settings (the names any
/// Kafka client configuration uses), so they run against a secured Apache Kafka, Redpanda or
/// Freshet alike. Every Kafka connection the services make uses them, the topic API's own
/// (Fetch, DescribeLogDirs) included.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kafka cluster of the services")]
pub struct KafkaSecurityArgs {
    /// How the services connect to the cluster (librdkafka's `security.protocol`):
    /// PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (SASL sign-in without encryption) or SASL_SSL
    /// (both).
    #[arg(
        long,
        env = "FRESHET_KAFKA_SECURITY_PROTOCOL",
        default_value = "PLAINTEXT"
    )]
    pub kafka_security_protocol: freshet_services::kafka::SecurityProtocol,
    /// SASL mechanism of SASL_PLAINTEXT and SASL_SSL (`sasl.mechanism`): SCRAM-SHA-512,
    /// SCRAM-SHA-256 or PLAIN. The SCRAM ones never send the password; PLAIN does, so use
    /// it over SASL_SSL only.
    #[arg(long, env = "FRESHET_SASL_MECHANISM", default_value = "SCRAM-SHA-512")]
    pub sasl_mechanism: freshet_services::kafka::SaslMechanism,
    /// SASL user name (`sasl.username`); required with SASL_PLAINTEXT and SASL_SSL.
    #[arg(long, env = "FRESHET_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password (`sasl.password`); required with SASL_PLAINTEXT and SASL_SSL. Prefer
    /// the environment variable: a command line is visible to every user of the machine.
    #[arg(long, env = "FRESHET_SASL_PASSWORD", hide_env_values = true, value_parser = password)]
    pub sasl_password: Option<freshet_services::kafka::Password>,
    /// PEM file of the CA certificate(s) the brokers' certificates are signed by
    /// (`ssl.ca.location`), with SSL and SASL_SSL. Default: the system's trusted CAs.
    #[arg(long, env = "FRESHET_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<PathBuf>,
    /// PEM client certificate (chain) for a cluster that requires one
    /// (`ssl.certificate.location`); needs --ssl-key-location.
    #[arg(long, env = "FRESHET_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<PathBuf>,
    /// Unencrypted PEM private key of --ssl-certificate-location (`ssl.key.location`).
    #[arg(long, env = "FRESHET_SSL_KEY_LOCATION")]
    pub ssl_key_location: Option<PathBuf>,
}

impl KafkaSecurityArgs {
    pub fn to_security(&self) -> freshet_services::kafka::KafkaSecurity {
        freshet_services::kafka::KafkaSecurity {
            security_protocol: self.kafka_security_protocol,
            sasl_mechanism: self.sasl_mechanism,
            sasl_username: self.sasl_username.clone(),
            sasl_password: self.sasl_password.clone(),
            ssl_ca_location: self.ssl_ca_location.clone(),
            ssl_certificate_location: self.ssl_certificate_location.clone(),
            ssl_key_location: self.ssl_key_location.clone(),
        }
    }

    /// `kafka` signing in with these settings, once they are checked.
    pub fn apply(
        &self,
        kafka: freshet_services::KafkaConfig,
    ) -> anyhow::Result<freshet_services::KafkaConfig> {
        Ok(kafka.with_security(self.to_security())?)
    }
}

/// `--compression`: one of the codec names, all of them listed in `--help` and in the error
/// for any other value.
fn compression() -> impl TypedValueParser<Value = Compression> {
    clap::builder::PossibleValuesParser::new(Compression::ALL.map(Compression::name))
        .try_map(|name| name.parse::<Compression>())
}

/// Parsed into a type whose `Debug` hides it, so printing the arguments cannot leak it.
fn password(text: &str) -> Result<freshet_services::kafka::Password, std::convert::Infallible> {
    Ok(freshet_services::kafka::Password::new(text))
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Distinct simulated devices, each with its own IP address (at most 10,000,000).
    #[arg(long, env = "FRESHET_GENERATE_NUM_DEVICES", default_value_t = 100)]
    pub num_devices: u64,
    /// Events to send (at most 1,000,000,000).
    #[arg(long, env = "FRESHET_GENERATE_NUM_MESSAGES", default_value_t = 1000)]
    pub num_messages: u64,
    /// Milliseconds between two sends; 0 sends as fast as the broker acknowledges [default:
    /// 100, or 0 with --rate]
    #[arg(long, env = "FRESHET_GENERATE_PAUSE_MS")]
    pub pause_ms: Option<u64>,
    /// Events per second to pace to, instead of --pause-ms.
    #[arg(long, env = "FRESHET_GENERATE_RATE")]
    pub rate: Option<f64>,
    /// Seed of every random choice: the same seed sends the same events (timestamps aside).
    /// Chosen at random and printed when not given.
    #[arg(long, env = "FRESHET_GENERATE_SEED")]
    pub seed: Option<u64>,
    /// Share of devices with an IPv6 address, in percent.
    #[arg(long, env = "FRESHET_GENERATE_IPV6_PERCENT", default_value_t = 0)]
    pub ipv6_percent: u8,
    /// Topic to send to; created with 3 partitions if missing.
    #[arg(long, env = "FRESHET_GENERATE_TOPIC", default_value = freshet_services::event::DEVICE_EVENTS)]
    pub topic: String,
    /// Devices send in turn (pool order, itself random) instead of at random, so that
    /// `--num-messages` at least `--num-devices` sends from every device.
    #[arg(long, env = "FRESHET_GENERATE_ROUND_ROBIN")]
    pub round_robin: bool,
    /// Compression codec of the record batches. `none` is Kafka's producer default and every
    /// client reads it; consumers need the codec for the others (kafka-python an optional
    /// package for snappy, lz4 and zstd).
    #[arg(
        long,
        env = "FRESHET_GENERATE_COMPRESSION",
        default_value = "none",
        value_parser = compression()
    )]
    pub compression: Compression,
    /// Also print the summary as one JSON object, the last line of stdout (the human summary
    /// then goes to stderr).
    #[arg(long, env = "FRESHET_GENERATE_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print a segment's record batches and its offset and time index entries.
    Dump {
        /// Path of a segment's `.log` file, e.g. `freshet-data/topics/t/0/00000000000000000000.log`.
        segment: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// A Kafka listener, `[PROTOCOL://]host:port`; repeat the flag (or separate with commas)
    /// for several. PROTOCOL is PLAINTEXT (the default), SSL, SASL_PLAINTEXT or SASL_SSL, at
    /// most one listener each; IPv6 hosts go in brackets (`SSL://[::]:9093`). A listener
    /// other machines can reach must authenticate its clients (SASL, or SSL with
    /// --tls-client-ca) unless --allow-anonymous is given.
    #[arg(
        long,
        env = "FRESHET_KAFKA_LISTEN",
        value_delimiter = ',',
        default_value = "127.0.0.1:9092"
    )]
    #[arg(help_heading = "Broker: listeners and security")]
    pub kafka_listen: Vec<ListenerSpec>,
    /// Address given to clients in Metadata responses for the listener of the same protocol,
    /// `[PROTOCOL://]host:port` (PLAINTEXT when omitted); repeatable or comma-separated.
    /// Default: the bound address. Set it when listening on 0.0.0.0 or behind NAT, or to the
    /// host name in the certificate of a TLS listener.
    #[arg(long, env = "FRESHET_ADVERTISED_ADDR", value_delimiter = ',')]
    #[arg(help_heading = "Broker: listeners and security")]
    pub advertised_addr: Vec<ListenerSpec>,
    /// PEM certificate chain (the broker's certificate first) of the SSL and SASL_SSL
    /// listeners. Read again, with the key and client CA, on SIGHUP.
    #[arg(long, env = "FRESHET_TLS_CERT", requires = "tls_key")]
    #[arg(help_heading = "Broker: listeners and security")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(long, env = "FRESHET_TLS_KEY", requires = "tls_cert")]
    #[arg(help_heading = "Broker: listeners and security")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): TLS clients must then present a certificate signed by one, and
    /// act as `User:<CN of their certificate>` (Kafka's `ssl.client.auth=required`).
    #[arg(long, env = "FRESHET_TLS_CLIENT_CA", requires = "tls_cert")]
    #[arg(help_heading = "Broker: listeners and security")]
    pub tls_client_ca: Option<PathBuf>,
    /// Start even when a listener other machines can reach lets clients in without
    /// authenticating them (PLAINTEXT, or SSL without --tls-client-ca).
    #[arg(long, env = "FRESHET_ALLOW_ANONYMOUS")]
    #[arg(help_heading = "Broker: listeners and security")]
    pub allow_anonymous: bool,
    /// Close a TLS connection whose handshake is not complete this many ms after it opened.
    #[arg(long, env = "FRESHET_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    #[arg(help_heading = "Broker: listeners and security")]
    pub tls_handshake_timeout_ms: u64,
    /// `acl`: check every Kafka request (and, with users, every REST request) against the
    /// ACLs in the data directory (`freshet acls`, or CreateAcls over Kafka); with no ACL
    /// that allows it, an operation is denied, as in Kafka. `none`: every client that may
    /// connect may do everything.
    #[arg(long, env = "FRESHET_AUTHORIZER", value_enum, default_value_t = AuthorizerArg::None)]
    #[arg(help_heading = "Broker: listeners and security")]
    pub authorizer: AuthorizerArg,
    /// Principals allowed everything whatever the ACLs say, comma-separated
    /// (`User:admin,User:ops`); Kafka's `super.users`.
    #[arg(long, env = "FRESHET_SUPER_USERS", value_delimiter = ',', value_parser = parse_principal)]
    #[arg(help_heading = "Broker: listeners and security")]
    pub super_users: Vec<freshet_security::Principal>,
    /// Directory holding all persistent state (topics, offsets, producer ids).
    #[arg(long, env = "FRESHET_DATA_DIR", default_value = "./freshet-data")]
    #[arg(help_heading = "Broker: storage")]
    pub data_dir: PathBuf,
    /// Create unknown topics when clients ask for their metadata and allow it (as Kafka: a
    /// produce to an unknown topic is refused, and clients then ask for its metadata).
    #[arg(long, env = "FRESHET_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    #[arg(help_heading = "Broker: storage")]
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic.
    #[arg(long, env = "FRESHET_DEFAULT_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    #[arg(help_heading = "Broker: storage")]
    pub default_partitions: i32,
    /// Largest request frame accepted; larger frames close the connection before being read.
    #[arg(long, env = "FRESHET_MAX_REQUEST_BYTES", default_value_t = 100 * 1024 * 1024)]
    #[arg(help_heading = "Broker: limits and timeouts")]
    pub max_request_bytes: usize,
    /// Bytes of requests received but not yet answered, across all connections (Kafka's
    /// `queued.max.request.bytes`). When they are reached, connections stop reading until
    /// responses go out, instead of the broker allocating more.
    #[arg(long, env = "FRESHET_QUEUED_MAX_REQUEST_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    #[arg(help_heading = "Broker: limits and timeouts")]
    pub queued_max_request_bytes: u64,
    /// Close a Kafka connection that has no request in flight and sends nothing for this many
    /// ms (Kafka's `connections.max.idle.ms`).
    #[arg(long, env = "FRESHET_CONNECTIONS_MAX_IDLE_MS", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..))]
    #[arg(help_heading = "Broker: limits and timeouts")]
    pub connections_max_idle_ms: u64,
    /// Close a Kafka connection whose request does not arrive whole within this many ms of
    /// its first byte (slow or stalled senders).
    #[arg(long, env = "FRESHET_REQUEST_READ_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    #[arg(help_heading = "Broker: limits and timeouts")]
    pub request_read_timeout_ms: u64,
    /// Kafka connections allowed at once; more are closed as soon as accepted (Kafka's
    /// `max.connections`). Default: what the open-file limit (raised to its hard limit at
    /// start) leaves after a quarter of it, 64 to 16,384 descriptors, is kept for the log.
    #[arg(long, env = "FRESHET_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    #[arg(help_heading = "Broker: limits and timeouts")]
    pub max_connections: Option<u64>,
    /// Kafka connections allowed at once from one IP address; more are closed as soon as
    /// accepted (Kafka's `max.connections.per.ip`). Default: no limit beyond
    /// `--max-connections`.
    #[arg(long, env = "FRESHET_MAX_CONNECTIONS_PER_IP", value_parser = clap::value_parser!(u64).range(1..))]
    #[arg(help_heading = "Broker: limits and timeouts")]
    pub max_connections_per_ip: Option<u64>,
    /// Largest a compressed record batch may be once decompressed; a batch that would be
    /// larger is refused with MESSAGE_TOO_LARGE before more than this is decompressed
    /// (decompression bombs). Kafka limits only the compressed size (`max.message.bytes`).
    #[arg(long, env = "FRESHET_MAX_UNCOMPRESSED_BATCH_BYTES", default_value_t = freshet_log::DEFAULT_MAX_UNCOMPRESSED_BATCH_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    #[arg(help_heading = "Broker: limits and timeouts")]
    pub max_uncompressed_batch_bytes: u64,
    /// Opt-in relaxed durability: fsync every N ms instead of before acknowledging a produce.
    /// Acknowledged data written in the last N ms can be lost in a machine crash.
    #[arg(long, env = "FRESHET_FLUSH_INTERVAL_MS")]
    #[arg(help_heading = "Broker: storage")]
    pub flush_interval_ms: Option<u64>,
    /// Default size at which a partition's active segment is rolled.
    #[arg(long, env = "FRESHET_SEGMENT_BYTES", default_value_t = 1024 * 1024 * 1024)]
    #[arg(help_heading = "Broker: storage")]
    pub segment_bytes: u64,
    /// Default retention of a topic in ms (-1: keep forever).
    #[arg(long, env = "FRESHET_RETENTION_MS", default_value_t = 7 * 24 * 3600 * 1000, allow_negative_numbers = true)]
    #[arg(help_heading = "Broker: storage")]
    pub retention_ms: i64,
    /// How often retention and compaction run, in ms.
    #[arg(
        long,
        env = "FRESHET_LOG_CLEANUP_INTERVAL_MS",
        default_value_t = 30_000
    )]
    #[arg(help_heading = "Broker: storage")]
    pub log_cleanup_interval_ms: u64,
    /// How long a new consumer group waits for more members before its first rebalance, in ms.
    #[arg(
        long,
        env = "FRESHET_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3000
    )]
    #[arg(help_heading = "Broker: consumer groups and transactions")]
    pub group_initial_rebalance_delay_ms: u64,
    /// How often members of KIP-848 consumer groups (`group.protocol=consumer`) heartbeat, in
    /// ms: the broker tells them (Kafka's `group.consumer.heartbeat.interval.ms`).
    #[arg(long, env = "FRESHET_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    #[arg(help_heading = "Broker: consumer groups and transactions")]
    pub group_consumer_heartbeat_interval_ms: u64,
    /// How long a member of a KIP-848 consumer group may go without heartbeating before it is
    /// removed, in ms (Kafka's `group.consumer.session.timeout.ms`); must exceed the interval.
    #[arg(long, env = "FRESHET_GROUP_CONSUMER_SESSION_TIMEOUT_MS", default_value_t = 45_000, value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    #[arg(help_heading = "Broker: consumer groups and transactions")]
    pub group_consumer_session_timeout_ms: u64,
    /// Longest `transaction.timeout.ms` a transactional producer may ask for, in ms (Kafka's
    /// `transaction.max.timeout.ms`).
    #[arg(long, env = "FRESHET_TRANSACTION_MAX_TIMEOUT_MS", default_value_t = 900_000, value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    #[arg(help_heading = "Broker: consumer groups and transactions")]
    pub transaction_max_timeout_ms: u64,
    /// How often open transactions are checked against their timeout, in ms; one past it is
    /// aborted and its producer fenced.
    #[arg(long, env = "FRESHET_TRANSACTION_ABORT_INTERVAL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    #[arg(help_heading = "Broker: consumer groups and transactions")]
    pub transaction_abort_interval_ms: u64,
    /// How long a transactional id may stay idle (no transaction in progress, no request)
    /// before the broker forgets it, in ms (Kafka's `transactional.id.expiration.ms`, 7 days);
    /// a producer still using it must initialise again. Checked every
    /// `--transaction-abort-interval-ms`.
    #[arg(long, env = "FRESHET_TRANSACTIONAL_ID_EXPIRATION_MS", default_value_t = 604_800_000, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    #[arg(help_heading = "Broker: consumer groups and transactions")]
    pub transactional_id_expiration_ms: u64,
}

/// `freshet broker`: the broker's settings, and what it serves besides Kafka.
#[derive(Debug, Clone, Args)]
pub struct BrokerNodeArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Serve the broker's metrics at `GET /metrics` (Prometheus text format) on this address;
    /// off when not given.
    #[arg(long, env = "FRESHET_METRICS_LISTEN")]
    #[arg(help_heading = "HTTP API")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Address the HTTP API and console bind to.
    #[arg(long, env = "FRESHET_HTTP_LISTEN", default_value = "127.0.0.1:8000")]
    #[arg(help_heading = "HTTP API")]
    pub http_listen: SocketAddr,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Use this Kafka cluster (`host:port,...`) instead of starting the embedded broker.
    #[arg(long, env = "FRESHET_BOOTSTRAP_SERVERS")]
    #[arg(help_heading = "Kafka cluster of the services")]
    pub bootstrap_servers: Option<String>,
    /// How the services sign in to the cluster of `--bootstrap-servers`.
    #[command(flatten)]
    pub kafka_security: KafkaSecurityArgs,
    #[command(flatten)]
    pub tracker: TrackerArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TrackerNodeArgs {
    /// Kafka cluster to use (`host:port,...`): Freshet's broker or any Kafka-compatible one.
    #[arg(
        long,
        env = "FRESHET_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    #[arg(help_heading = "Kafka cluster of the services")]
    pub bootstrap_servers: String,
    #[command(flatten)]
    pub kafka_security: KafkaSecurityArgs,
    /// Address this node's HTTP API binds to (port 0 picks a free port; the address is
    /// printed).
    #[arg(long, env = "FRESHET_HTTP_LISTEN", default_value = "127.0.0.1:8001")]
    #[arg(help_heading = "HTTP API")]
    pub http_listen: SocketAddr,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tracker: TrackerArgs,
}

/// Settings of a tracker node, shared by `freshet tracker` and `freshet up`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tracker")]
pub struct TrackerArgs {
    /// Consumer group of the tracker nodes; nodes in one group split the input partitions.
    #[arg(long, env = "FRESHET_TRACKER_GROUP", default_value = "freshet-tracker")]
    pub tracker_group: String,
    /// Topic of device events.
    #[arg(
        long,
        env = "FRESHET_TRACKER_INPUT_TOPIC",
        default_value = "device-events"
    )]
    pub tracker_input_topic: String,
    /// Partitions of the input topic when the tracker has to create it.
    #[arg(long, env = "FRESHET_TRACKER_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub tracker_partitions: i32,
    /// Topic for rejected events (the reason is in the `freshet.reason` header).
    #[arg(
        long,
        env = "FRESHET_TRACKER_DLQ_TOPIC",
        default_value = "device-events.dlq"
    )]
    pub tracker_dlq_topic: String,
    /// How often owned partitions are checkpointed, in ms: the most a crash makes a node
    /// re-read.
    #[arg(long, env = "FRESHET_CHECKPOINT_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub checkpoint_interval_ms: u64,
    /// How long the group waits for a silent node before its partitions move, in ms.
    #[arg(long, env = "FRESHET_SESSION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(6000..=300_000))]
    pub session_timeout_ms: u64,
    /// This node's id in heartbeats and checkpoints (default: a random UUID).
    #[arg(long, env = "FRESHET_NODE_ID")]
    pub node_id: Option<String>,
    /// Keep exact sets per minute, per hour and per error code (the views of the API). Off
    /// keeps only the overall set, about a quarter of the memory.
    #[arg(long, env = "FRESHET_TRACKER_VIEWS", default_value_t = true, action = clap::ArgAction::Set)]
    pub tracker_views: bool,
    /// Minute windows kept per partition (at least 1). A minute is dropped with its hour at
    /// the latest, whatever this allows.
    #[arg(long, env = "FRESHET_MINUTE_WINDOWS", default_value_t = 120,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub minute_windows: u32,
    /// Hour windows kept per partition (at least 1).
    #[arg(long, env = "FRESHET_HOUR_WINDOWS", default_value_t = 48,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub hour_windows: u32,
    /// Worker threads of this node, each a consumer-group member counting the partitions
    /// the group gives it; they share 32 MiB of prefetched records (8 MiB each at least).
    /// Default: one per core. Fastest at one per partition the node owns (workers that split
    /// the partitions unevenly leave one counting alone at the end); beyond that, extra
    /// workers get no partitions.
    #[arg(long, env = "FRESHET_TRACKER_WORKERS",
          default_value_t = freshet_services::tracker::default_workers(),
          value_parser = clap::value_parser!(u16)
              .range(1..=freshet_services::tracker::MAX_WORKERS as i64)
              .map(usize::from))]
    pub tracker_workers: usize,
}

impl TrackerArgs {
    pub fn to_config(&self) -> freshet_services::tracker::TrackerConfig {
        use freshet_services::tracker::{TrackerConfig, WindowLimits};
        TrackerConfig {
            input_topic: self.tracker_input_topic.clone(),
            input_partitions: self.tracker_partitions,
            dlq_topic: self.tracker_dlq_topic.clone(),
            group: self.tracker_group.clone(),
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            views: self.tracker_views,
            window_limits: WindowLimits {
                minutes: self.minute_windows as usize,
                hours: self.hour_windows as usize,
            },
            node_id: self.node_id.clone(),
            workers: self.tracker_workers,
        }
    }
}

impl BrokerArgs {
    /// The broker's settings; fails on an advertised address for a protocol with no
    /// listener. [`BrokerConfig::validate_listeners`] checks the rest.
    pub fn to_config(&self) -> anyhow::Result<BrokerConfig> {
        let mut config = BrokerConfig::new(&self.data_dir);
        config.listeners = self.listener_configs()?;
        config.tls = self.tls_config();
        config.allow_anonymous = self.allow_anonymous;
        config.acl_authorizer = matches!(self.authorizer, AuthorizerArg::Acl);
        config.super_users = self.super_users.clone();
        config.tls_handshake_timeout = Duration::from_millis(self.tls_handshake_timeout_ms);
        config.auto_create_topics = self.auto_create_topics;
        config.default_partitions = self.default_partitions;
        config.max_request_bytes = self.max_request_bytes;
        config.queued_max_request_bytes = to_usize(self.queued_max_request_bytes);
        config.connections_max_idle = Duration::from_millis(self.connections_max_idle_ms);
        config.request_read_timeout = Duration::from_millis(self.request_read_timeout_ms);
        config.max_connections = self.max_connections.map(to_usize);
        config.max_connections_per_ip = self.max_connections_per_ip.map_or(usize::MAX, to_usize);
        config.log_defaults.segment_bytes = self.segment_bytes;
        config.log_defaults.max_uncompressed_batch_bytes =
            to_usize(self.max_uncompressed_batch_bytes);
        config.log_defaults.retention_ms = self.retention_ms;
        config.log_cleanup_interval = Duration::from_millis(self.log_cleanup_interval_ms.max(1));
        config.coordinator.initial_rebalance_delay =
            Duration::from_millis(self.group_initial_rebalance_delay_ms);
        config.coordinator.consumer_heartbeat_interval =
            Duration::from_millis(self.group_consumer_heartbeat_interval_ms);
        config.coordinator.consumer_session_timeout =
            Duration::from_millis(self.group_consumer_session_timeout_ms);
        config.transaction_max_timeout = Duration::from_millis(self.transaction_max_timeout_ms);
        config.transaction_abort_interval =
            Duration::from_millis(self.transaction_abort_interval_ms);
        config.transactional_id_expiration =
            Duration::from_millis(self.transactional_id_expiration_ms);
        if let Some(ms) = self.flush_interval_ms {
            config = config.with_flush_interval(Duration::from_millis(ms.max(1)));
        }
        Ok(config)
    }

    /// `--kafka-listen` with each `--advertised-addr` given to the listener of its protocol.
    fn listener_configs(&self) -> anyhow::Result<Vec<ListenerConfig>> {
        let mut listeners: Vec<ListenerConfig> = self
            .kafka_listen
            .iter()
            .cloned()
            .map(ListenerConfig::new)
            .collect();
        for advertised in &self.advertised_addr {
            let Some(listener) = listeners
                .iter_mut()
                .find(|l| l.spec.protocol == advertised.protocol)
            else {
                anyhow::bail!(
                    "--advertised-addr {advertised}: there is no {} listener in --kafka-listen",
                    advertised.protocol
                );
            };
            if listener.advertised.is_some() {
                anyhow::bail!(
                    "--advertised-addr: two addresses for the {} listener",
                    advertised.protocol
                );
            }
            listener.advertised = Some((advertised.host.clone(), advertised.port));
        }
        Ok(listeners)
    }

    /// The Kafka listeners' certificate and key, which `freshet up` also serves HTTPS with
    /// unless `--http-tls-cert` names another.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    fn tls_config(&self) -> Option<TlsConfig> {
        Some(TlsConfig {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }
}

/// A count from the command line as a `usize`, saturating on 32-bit targets.
fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

pub fn init_tracing(args: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: redirected to a file or a collector, escape
    // codes are noise. NO_COLOR (no-color.org) turns them off at a terminal too.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP listener limits: every command with an HTTP listener (`up`, `tracker`, `guard`, and
// `broker --metrics-listen`) takes these.
// ---------------------------------------------------------------------------------------

/// Timeouts and the connection cap of the HTTP listener (API, console, metrics).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP API")]
pub struct HttpArgs {
    /// Close an HTTP connection whose request headers are not complete this many ms after it
    /// opened, or after the request's first byte on a kept-alive connection.
    #[arg(long, env = "FRESHET_HTTP_HEADER_TIMEOUT_MS", default_value_t = millis(HttpLimits::default().header_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,
    /// Answer 408 (and close the connection) when a request body is not complete this many
    /// ms after its headers.
    #[arg(long, env = "FRESHET_HTTP_BODY_TIMEOUT_MS", default_value_t = millis(HttpLimits::default().body_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub http_body_timeout_ms: u64,
    /// Close a kept-alive HTTP connection that waits this many ms for its next request, or
    /// whose client reads nothing of a response for as long.
    #[arg(long, env = "FRESHET_HTTP_IDLE_TIMEOUT_MS", default_value_t = millis(HttpLimits::default().idle_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub http_idle_timeout_ms: u64,
    /// HTTP connections open at once; more are closed as soon as they are accepted.
    #[arg(long, env = "FRESHET_HTTP_MAX_CONNECTIONS", default_value_t = HttpLimits::default().max_connections as u64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub http_max_connections: u64,
    /// Serve HTTPS instead of HTTP, with this certificate chain (PEM, the server's
    /// certificate first). `freshet up` takes the Kafka listener's `--tls-cert` when it is
    /// not given.
    #[arg(long, env = "FRESHET_HTTP_TLS_CERT", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// The private key of `--http-tls-cert` (PEM, unencrypted: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "FRESHET_HTTP_TLS_KEY", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
}

impl HttpArgs {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            body_timeout: Duration::from_millis(self.http_body_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            max_connections: to_usize(self.http_max_connections),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `freshet guard`: one login-guard node with its own HTTP API.
#[derive(Debug, Clone, Args)]
pub struct GuardNodeArgs {
    /// Kafka cluster to use (`host:port,...`): Freshet's broker or any Kafka-compatible one.
    #[arg(
        long,
        env = "FRESHET_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    #[arg(help_heading = "Kafka cluster of the services")]
    pub bootstrap_servers: String,
    #[command(flatten)]
    pub kafka_security: KafkaSecurityArgs,
    /// Address this node's HTTP API binds to (port 0 picks a free port; the address is
    /// printed).
    #[arg(long, env = "FRESHET_HTTP_LISTEN", default_value = "127.0.0.1:8002")]
    #[arg(help_heading = "HTTP API")]
    pub http_listen: SocketAddr,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Directory of the default SQLite account database and of the guard's secret.
    #[arg(long, env = "FRESHET_DATA_DIR", default_value = "./freshet-data")]
    #[arg(help_heading = "Login guard")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// Settings of the login guard, shared by `freshet guard` and `freshet up`.
#[derive(Clone, Args)]
#[command(next_help_heading = "Login guard")]
pub struct GuardArgs {
    /// Account database: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`; migrations
    /// are applied on start (default: `sqlite://<data-dir>/guard.db`)
    #[arg(long, env = "FRESHET_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Token the admin routes (`/api/v1/blocked`) require as `Authorization: Bearer TOKEN`.
    /// Without one, they are refused.
    #[arg(long, env = "FRESHET_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Failed logins within the window that block a user.
    #[arg(long, env = "FRESHET_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_failures: u32,
    /// Width of the failure window in seconds of event time.
    #[arg(long, env = "FRESHET_WINDOW_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400 * 30))]
    pub window_secs: u64,
    /// How long a block lasts in seconds [default: until an admin lifts it]
    #[arg(long, env = "FRESHET_BLOCK_FOR_SECS", value_parser = clap::value_parser!(u64).range(1..=86_400 * 3650))]
    pub block_for_secs: Option<u64>,
    /// Argon2id memory per hash, in KiB.
    #[arg(long, env = "FRESHET_ARGON2_MEMORY_KIB", default_value_t = Argon2Params::default().memory_kib)]
    pub argon2_memory_kib: u32,
    /// Argon2id passes over the memory.
    #[arg(long, env = "FRESHET_ARGON2_ITERATIONS", default_value_t = Argon2Params::default().iterations)]
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    #[arg(long, env = "FRESHET_ARGON2_PARALLELISM", default_value_t = Argon2Params::default().parallelism)]
    pub argon2_parallelism: u32,
    /// Login and registration requests per second allowed from one address.
    #[arg(long, env = "FRESHET_LOGIN_RATE", default_value_t = RateLimit::default().per_second)]
    pub login_rate: f64,
    /// Requests one address may make in a burst above the rate.
    #[arg(long, env = "FRESHET_LOGIN_BURST", default_value_t = RateLimit::default().burst)]
    pub login_burst: f64,
    /// Take a login's source address from `X-Forwarded-For` (only behind a proxy that sets
    /// it; otherwise clients could choose the address their attempts count against).
    #[arg(long, env = "FRESHET_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Consumer group of the blockers.
    #[arg(long, env = "FRESHET_GUARD_GROUP", default_value = "freshet-guard")]
    pub guard_group: String,
    /// Key that signs the guard's records (HMAC-SHA256), as hex or base64, at least 32
    /// bytes. Records signed with another key are refused, so every guard node sharing the
    /// topics needs the same one (default: the key in `<data-dir>/guard.secret`, created at
    /// first start)
    #[arg(long, env = "FRESHET_GUARD_SECRET", hide_env_values = true)]
    pub guard_secret: Option<String>,
}

impl std::fmt::Debug for GuardArgs {
    // The database URL may hold a password and the token is a secret: neither is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardArgs")
            .field(
                "database_url",
                &self
                    .database_url
                    .as_deref()
                    .map(freshet_services::guard::store::redact),
            )
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("max_failures", &self.max_failures)
            .field("window_secs", &self.window_secs)
            .field("block_for_secs", &self.block_for_secs)
            .field("guard_secret", &self.guard_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}
