//! Kafka listeners: where clients connect, and how the connection is secured.
//!
//! A listener is written `[PROTOCOL://]host:port`, as Kafka's `listeners` setting, and named
//! after its security protocol as Kafka names listeners by default: a broker has at most one
//! listener per protocol. Each running [`Listener`] knows the address it is bound to, the
//! address clients are told to use for it (Metadata, FindCoordinator), and for TLS protocols
//! the certificate it serves ([`ServerTls`]).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use thiserror::Error;
use tokio::net::TcpListener;

use crate::config::{BrokerConfig, ConfigError, ListenerConfig};
use crate::tls::{ServerTls, TlsError};

pub use freshet_security::SecurityProtocol;

/// A listener or advertised address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ParseListenerError(String);

/// `[PROTOCOL://]host:port`: a listener to bind, or (for `--advertised-addr`) the address
/// clients are told to use for the listener of that protocol. The host is an IP address or,
/// for advertised addresses and certificates, a name; IPv6 addresses are written in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerSpec {
    pub protocol: SecurityProtocol,
    /// Without brackets, also for IPv6.
    pub host: String,
    pub port: u16,
}

impl ListenerSpec {
    pub fn new(protocol: SecurityProtocol, host: impl Into<String>, port: u16) -> Self {
        ListenerSpec {
            protocol,
            host: host.into(),
            port,
        }
    }

    /// A listener of `protocol` on a socket address (port 0 picks a free port).
    pub fn at(protocol: SecurityProtocol, addr: SocketAddr) -> Self {
        ListenerSpec::new(protocol, addr.ip().to_string(), addr.port())
    }

    /// Whether only this machine can connect. A host name other than `localhost` counts as
    /// reachable from elsewhere: what it resolves to is not known before binding.
    pub fn is_loopback(&self) -> bool {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn host_port(&self) -> String {
        host_port(&self.host, self.port)
    }
}

impl FromStr for ListenerSpec {
    type Err = ParseListenerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (protocol, address) = match text.split_once("://") {
            Some((protocol, address)) => (protocol.parse().map_err(ParseListenerError)?, address),
            None => (SecurityProtocol::Plaintext, text),
        };
        let (host, port) = parse_host_port(address)
            .map_err(|reason| ParseListenerError(format!("listener {text:?}: {reason}")))?;
        Ok(ListenerSpec::new(protocol, host, port))
    }
}

impl fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.protocol, self.host_port())
    }
}

/// Splits `host:port` or `[ipv6]:port`.
fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (host, rest) = bracketed
                .split_once(']')
                .ok_or("missing ']' after the IPv6 address")?;
            host.parse::<Ipv6Addr>()
                .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
            let port = rest
                .strip_prefix(':')
                .ok_or("missing port: expected [ipv6]:port")?;
            (host, port)
        }
        None => {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or("missing port: expected host:port")?;
            if host.contains(':') {
                return Err("an IPv6 address goes in brackets, e.g. [::1]:9092".into());
            }
            (host, port)
        }
    };
    if host.is_empty() {
        return Err("missing host (0.0.0.0 listens on every interface)".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port {port:?}"))?;
    Ok((host.to_owned(), port))
}

/// `host:port`, with brackets around an IPv6 host.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A listener the broker serves: what connections accepted on it are, and what clients are
/// told about it.
#[derive(Debug)]
pub struct Listener {
    protocol: SecurityProtocol,
    /// The configured advertised host and port, if any.
    advertised: Option<(String, u16)>,
    /// Set once bound.
    bound: OnceLock<SocketAddr>,
    /// The certificate and client verification of a TLS listener.
    tls: Option<Arc<ServerTls>>,
}

impl Listener {
    /// A listener of `protocol`. TLS protocols need `tls`; others ignore it.
    pub fn new(
        protocol: SecurityProtocol,
        advertised: Option<(String, u16)>,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<Listener, ConfigError> {
        if protocol.uses_tls() && tls.is_none() {
            return Err(ConfigError::new(format!(
                "a {protocol} listener needs a TLS certificate and key (--tls-cert, --tls-key)"
            )));
        }
        Ok(Listener {
            protocol,
            advertised,
            bound: OnceLock::new(),
            tls: tls.filter(|_| protocol.uses_tls()),
        })
    }

    /// A PLAINTEXT listener advertising its bound address.
    pub fn plaintext() -> Listener {
        Listener {
            protocol: SecurityProtocol::Plaintext,
            advertised: None,
            bound: OnceLock::new(),
            tls: None,
        }
    }

    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// Records the address the listener is bound to (the first call wins).
    pub fn set_bound_addr(&self, addr: SocketAddr) {
        let _ = self.bound.set(addr);
    }

    pub fn bound_addr(&self) -> Option<SocketAddr> {
        self.bound.get().copied()
    }

    /// The certificate of a TLS listener (also what a SIGHUP reloads).
    pub fn tls(&self) -> Option<&Arc<ServerTls>> {
        self.tls.as_ref()
    }

    /// The host and port clients are told to connect to: the configured advertised address,
    /// else the bound IP literal (never a name, so clients do not resolve `localhost` to an
    /// address the broker does not listen on).
    pub fn advertised(&self) -> (String, u16) {
        if let Some(advertised) = &self.advertised {
            return advertised.clone();
        }
        let bound = self
            .bound_addr()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092)));
        (bound.ip().to_string(), bound.port())
    }

    /// The advertised address as a socket address, when its host is an IP literal; a host
    /// name gives the bound address.
    pub fn advertised_socket_addr(&self) -> Option<SocketAddr> {
        let (host, port) = self.advertised();
        match host.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, port)),
            Err(_) => self.bound_addr(),
        }
    }

    /// Whether clients are told an address nobody can connect to (bound to all interfaces,
    /// nothing advertised).
    pub fn advertises_unspecified(&self) -> bool {
        self.advertised.is_none() && self.bound_addr().is_some_and(|a| a.ip().is_unspecified())
    }

    /// Who may use this listener, for the start-up lines.
    pub fn who_may_connect(&self) -> String {
        let client_ca = self.tls.as_ref().and_then(|tls| tls.client_ca());
        match (self.protocol.uses_sasl(), client_ca) {
            (true, None) => format!(
                "clients that authenticate with SASL ({})",
                crate::sasl::MECHANISMS.join(", ")
            ),
            (true, Some(ca)) => format!(
                "clients that authenticate with SASL and present a certificate signed by {}",
                ca.display()
            ),
            (false, Some(ca)) => {
                format!("clients with a certificate signed by {}", ca.display())
            }
            (false, None) => "anyone who can reach it (no authentication)".to_owned(),
        }
    }
}

impl fmt::Display for Listener {
    /// `SSL on 127.0.0.1:9093 (advertised as localhost:9093)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, port) = self.advertised();
        match self.bound_addr() {
            Some(bound) => write!(f, "{} on {bound}", self.protocol)?,
            None => write!(f, "{} (not bound)", self.protocol)?,
        }
        write!(f, " (advertised as {})", host_port(&host, port))
    }
}

/// Why the listeners could not be set up.
#[derive(Debug, Error)]
pub enum ListenerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("binding the {spec} listener: {source}")]
    Bind {
        spec: ListenerSpec,
        source: std::io::Error,
    },
}

/// Checks the configured listeners ([`BrokerConfig::validate_listeners`]), loads the TLS
/// certificate once for all TLS listeners, and binds every listener.
pub async fn bind_listeners(
    config: &BrokerConfig,
) -> Result<Vec<(TcpListener, Arc<Listener>)>, ListenerError> {
    config.validate_listeners()?;
    let mut bound = Vec::with_capacity(config.listeners.len());
    for listener_config in &config.listeners {
        let tls = tls_for(config, listener_config.spec.protocol)?;
        bound.push(bind(listener_config, tls).await?);
    }
    Ok(bound)
}

/// The TLS settings of a listener of `protocol`. As Kafka scopes `ssl.client.auth` to SSL
/// listeners (KIP-684), `--tls-client-ca` requires client certificates on SSL only: on
/// SASL_SSL the SASL user is the principal, and clients need no certificate.
fn tls_for(
    config: &BrokerConfig,
    protocol: SecurityProtocol,
) -> Result<Option<Arc<ServerTls>>, ListenerError> {
    let Some(files) = config.tls.as_ref().filter(|_| protocol.uses_tls()) else {
        return Ok(None);
    };
    let files = if protocol.uses_sasl() {
        crate::config::TlsConfig {
            client_ca: None,
            ..files.clone()
        }
    } else {
        files.clone()
    };
    Ok(Some(Arc::new(ServerTls::load(&files)?)))
}

async fn bind(
    config: &ListenerConfig,
    tls: Option<Arc<ServerTls>>,
) -> Result<(TcpListener, Arc<Listener>), ListenerError> {
    let spec = &config.spec;
    let listener = Listener::new(spec.protocol, config.advertised.clone(), tls)?;
    let bind_error = |source| ListenerError::Bind {
        spec: spec.clone(),
        source,
    };
    let socket = TcpListener::bind((spec.host.as_str(), spec.port))
        .await
        .map_err(bind_error)?;
    listener.set_bound_addr(socket.local_addr().map_err(bind_error)?);
    Ok((socket, Arc::new(listener)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<ListenerSpec, String> {
        text.parse::<ListenerSpec>().map_err(|e| e.to_string())
    }

    #[test]
    fn listeners_parse_with_or_without_a_protocol() {
        assert_eq!(
            spec("127.0.0.1:9092"),
            Ok(ListenerSpec::new(
                SecurityProtocol::Plaintext,
                "127.0.0.1",
                9092
            ))
        );
        assert_eq!(
            spec("sasl_ssl://kafka.example.com:9094"),
            Ok(ListenerSpec::new(
                SecurityProtocol::SaslSsl,
                "kafka.example.com",
                9094
            ))
        );
        assert_eq!(
            spec("SSL://[::1]:9093"),
            Ok(ListenerSpec::new(SecurityProtocol::Ssl, "::1", 9093))
        );
        for text in [
            "PLAINTEXT://127.0.0.1:9092",
            "SSL://[::1]:9093",
            "SASL_PLAINTEXT://localhost:0",
        ] {
            assert_eq!(spec(text).map(|s| s.to_string()), Ok(text.to_owned()));
        }
    }

    #[test]
    fn bad_listeners_say_what_is_wrong() {
        let error = |text| spec(text).expect_err(text);
        assert!(error("TLS://h:1").contains("unknown security protocol \"TLS\""));
        assert!(error("SSL://localhost").contains("missing port"));
        assert!(error("localhost:http").contains("invalid port \"http\""));
        assert!(error("::1:9092").contains("in brackets"));
        assert!(error("[::1]9092").contains("missing port"));
        assert!(error(":9092").contains("missing host"));
        assert!(error("127.0.0.1:70000").contains("invalid port"));
    }

    #[test]
    fn protocols_know_what_they_use() {
        use SecurityProtocol::*;
        let uses = |p: SecurityProtocol| (p.uses_tls(), p.uses_sasl());
        assert_eq!(uses(Plaintext), (false, false));
        assert_eq!(uses(Ssl), (true, false));
        assert_eq!(uses(SaslPlaintext), (false, true));
        assert_eq!(uses(SaslSsl), (true, true));
        assert_eq!(
            (Plaintext.with_tls(), SaslPlaintext.with_tls()),
            (Ssl, SaslSsl)
        );
    }

    #[test]
    fn loopback_is_recognised_and_names_are_not_trusted() {
        let loopback = |text: &str| spec(text).expect("valid").is_loopback();
        assert!(loopback("127.0.0.1:1") && loopback("[::1]:1") && loopback("localhost:1"));
        assert!(!loopback("0.0.0.0:1") && !loopback("10.0.0.5:1") && !loopback("kafka:1"));
    }

    #[test]
    fn the_advertised_address_defaults_to_the_bound_ip() {
        let listener = Listener::plaintext();
        listener.set_bound_addr("0.0.0.0:9092".parse().expect("addr"));
        assert_eq!(listener.advertised(), ("0.0.0.0".to_owned(), 9092));
        assert!(listener.advertises_unspecified());
        let named = Listener::new(
            SecurityProtocol::Plaintext,
            Some(("broker.local".to_owned(), 19092)),
            None,
        )
        .expect("plaintext needs no TLS");
        named.set_bound_addr("10.0.0.5:9092".parse().expect("addr"));
        assert_eq!(named.advertised(), ("broker.local".to_owned(), 19092));
        assert_eq!(named.advertised_socket_addr(), named.bound_addr());
        assert!(Listener::new(SecurityProtocol::Ssl, None, None).is_err());
    }
}
