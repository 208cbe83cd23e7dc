//! Broker configuration, filled by the CLI (`freshet broker --help`) or by tests.

use std::path::PathBuf;
use std::time::Duration;

use freshet_coordinator::CoordinatorConfig;
use freshet_log::{Durability, LogConfig};
use thiserror::Error;

use crate::listener::{ListenerSpec, SecurityProtocol};

/// Everything the broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Root of all persistent state: topics, committed offsets, producer ids, cluster id.
    pub data_dir: PathBuf,
    /// The Kafka listeners, at most one per security protocol. Clients of the broker's own
    /// services use the PLAINTEXT one.
    pub listeners: Vec<ListenerConfig>,
    /// Certificate of the TLS listeners (SSL, SASL_SSL), and the CA that signs client
    /// certificates when they are required.
    pub tls: Option<TlsConfig>,
    /// Start even when a listener reachable from other machines authenticates nobody
    /// (PLAINTEXT, or SSL without client certificates).
    pub allow_anonymous: bool,
    /// A TLS client must complete its handshake within this time of connecting.
    pub tls_handshake_timeout: Duration,
    /// The broker's node id in Metadata responses.
    pub node_id: i32,
    /// Create unknown topics on Metadata when the client allows it (as Kafka: never on
    /// Produce, never with an invalid name, not while the disk is full).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, or of CreateTopics with `num_partitions = -1`.
    pub default_partitions: i32,
    /// Frames larger than this are refused before they are buffered; the connection is closed.
    pub max_request_bytes: usize,
    /// Kafka's `queued.max.request.bytes`: bytes of requests received but not yet answered,
    /// across all connections. Past it, connections stop reading until responses go out.
    pub queued_max_request_bytes: usize,
    /// Kafka's `connections.max.idle.ms`: a connection with no request in flight that sends
    /// nothing for this long is closed.
    pub connections_max_idle: Duration,
    /// A request frame must arrive whole within this time of its first byte, or the
    /// connection is closed (slow or stalled senders).
    pub request_read_timeout: Duration,
    /// Kafka's `max.connections`: connections past it are closed as soon as accepted.
    /// `None` derives it from the open-file limit, keeping descriptors for the log.
    pub max_connections: Option<usize>,
    /// Kafka's `max.connections.per.ip`: connections from one address past it are closed as
    /// soon as accepted.
    pub max_connections_per_ip: usize,
    /// Log settings of a topic that overrides nothing.
    pub log_defaults: LogConfig,
    /// How often retention and compaction run.
    pub log_cleanup_interval: Duration,
    /// Consumer-group coordinator settings.
    pub coordinator: CoordinatorConfig,
    /// Kafka's ACL authorizer (`--authorizer acl`): every request is checked against the ACLs
    /// in `<data-dir>/security/acls.json`; no matching ACL means denied. Off, every
    /// authenticated principal may do everything.
    pub acl_authorizer: bool,
    /// Principals allowed everything whatever the ACLs say (`--super-users`).
    pub super_users: Vec<freshet_security::Principal>,
    /// Kafka's `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a
    /// transactional producer may ask for.
    pub transaction_max_timeout: Duration,
    /// Kafka's `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often open
    /// transactions are checked against their timeout.
    pub transaction_abort_interval: Duration,
    /// Kafka's `transactional.id.expiration.ms`: a transactional id idle this long (no
    /// transaction in progress, no request) is forgotten.
    pub transactional_id_expiration: Duration,
}

impl BrokerConfig {
    /// Defaults for a broker keeping its state in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            listeners: vec![ListenerConfig::new(ListenerSpec::new(
                SecurityProtocol::Plaintext,
                "127.0.0.1",
                9092,
            ))],
            tls: None,
            allow_anonymous: false,
            tls_handshake_timeout: Duration::from_secs(10),
            node_id: 1,
            auto_create_topics: true,
            default_partitions: 3,
            max_request_bytes: 100 * 1024 * 1024,
            queued_max_request_bytes: 256 * 1024 * 1024,
            connections_max_idle: Duration::from_secs(600),
            request_read_timeout: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_ip: usize::MAX,
            log_defaults: LogConfig::default(),
            log_cleanup_interval: Duration::from_secs(30),
            coordinator: CoordinatorConfig::default(),
            acl_authorizer: false,
            super_users: Vec::new(),
            transaction_max_timeout: Duration::from_secs(900),
            transaction_abort_interval: Duration::from_secs(10),
            transactional_id_expiration: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// Trades durability for speed: data is fsynced every `interval` instead of before each
    /// acknowledgement, and consumers may see data that is not yet on disk.
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.log_defaults.durability = Durability::Interval(interval);
        self
    }

    /// Refuses listener settings the broker must not start with: no listener, two listeners
    /// of one protocol, a TLS listener without a certificate, or (unless `allow_anonymous`) a
    /// listener other machines can reach that authenticates nobody.
    pub fn validate_listeners(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError::new("no Kafka listener is configured"));
        }
        for (index, listener) in self.listeners.iter().enumerate() {
            let spec = &listener.spec;
            if let Some(other) = self.listeners[..index]
                .iter()
                .find(|other| other.spec.protocol == spec.protocol)
            {
                return Err(ConfigError::new(format!(
                    "two {} listeners ({} and {}): listeners are named after their protocol, \
                     so there is at most one of each",
                    spec.protocol,
                    other.spec.host_port(),
                    spec.host_port()
                )));
            }
            if spec.protocol.uses_tls() && self.tls.is_none() {
                return Err(ConfigError::new(format!(
                    "listener {spec} uses TLS: give its certificate and key with --tls-cert \
                     and --tls-key"
                )));
            }
            if !self.allow_anonymous && !spec.is_loopback() && !self.authenticates(spec.protocol) {
                return Err(ConfigError::new(format!(
                    "listener {spec} lets anyone who can reach it in without authentication; \
                     use SASL_SSL, or SSL with --tls-client-ca, or bind it to 127.0.0.1, or \
                     pass --allow-anonymous to accept that"
                )));
            }
        }
        Ok(())
    }

    /// Whether every client of a `protocol` listener proves who it is.
    fn authenticates(&self, protocol: SecurityProtocol) -> bool {
        let client_certificates = self.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        protocol.uses_sasl() || (protocol.uses_tls() && client_certificates)
    }
}

/// One listener to bind, and what clients are told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub spec: ListenerSpec,
    /// The host and port put in Metadata and FindCoordinator responses for this listener.
    /// `None` means the bound address (an IP literal, so clients never resolve `localhost`
    /// to an address the broker does not listen on).
    pub advertised: Option<(String, u16)>,
}

impl ListenerConfig {
    pub fn new(spec: ListenerSpec) -> Self {
        ListenerConfig {
            spec,
            advertised: None,
        }
    }

    pub fn advertising(mut self, host: impl Into<String>, port: u16) -> Self {
        self.advertised = Some((host.into(), port));
        self
    }
}

/// PEM files of the TLS listeners. Read at start and again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, the broker's certificate first.
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs; the
    /// certificate's subject CN becomes the connection's principal.
    pub client_ca: Option<PathBuf>,
}

/// Settings the broker refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listeners: &[&str]) -> BrokerConfig {
        let mut config = BrokerConfig::new("unused");
        config.listeners = listeners
            .iter()
            .map(|text| ListenerConfig::new(text.parse().expect("valid listener")))
            .collect();
        config
    }

    fn tls(client_ca: bool) -> Option<TlsConfig> {
        Some(TlsConfig {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            client_ca: client_ca.then(|| "ca.pem".into()),
        })
    }

    #[test]
    fn the_default_listener_is_accepted() {
        assert_eq!(BrokerConfig::new("unused").validate_listeners(), Ok(()));
    }

    #[test]
    fn anonymous_listeners_beyond_loopback_need_allow_anonymous() {
        let mut open = config(&["0.0.0.0:9092"]);
        let error = open.validate_listeners().expect_err("refused");
        assert!(error.to_string().contains("--allow-anonymous"), "{error}");
        open.allow_anonymous = true;
        assert_eq!(open.validate_listeners(), Ok(()));

        let mut ssl = config(&["SSL://0.0.0.0:9093"]);
        ssl.tls = tls(false);
        assert!(
            ssl.validate_listeners().is_err(),
            "SSL alone authenticates nobody"
        );
        ssl.tls = tls(true);
        assert_eq!(ssl.validate_listeners(), Ok(()));

        let sasl = config(&["SASL_PLAINTEXT://0.0.0.0:9094", "127.0.0.1:9092"]);
        assert_eq!(sasl.validate_listeners(), Ok(()));
    }

    #[test]
    fn tls_listeners_need_a_certificate_and_protocols_are_unique() {
        let error = config(&["SSL://127.0.0.1:9093"]).validate_listeners();
        assert!(error
            .expect_err("no certificate")
            .to_string()
            .contains("--tls-cert"));
        let error = config(&["127.0.0.1:9092", "PLAINTEXT://127.0.0.1:9093"]).validate_listeners();
        assert!(error
            .expect_err("duplicate")
            .to_string()
            .contains("two PLAINTEXT"));
        assert!(config(&[]).validate_listeners().is_err());
    }
}
