//! TLS for the raw-protocol client ([`wire`](super::wire)) on SSL and SASL_SSL listeners,
//! through rustls with the ring provider, from the same settings librdkafka gets.
//!
//! Brokers' certificates must be signed by `ssl.ca.location`, or when none is given by one
//! of the system's CAs (librdkafka, linked statically with OpenSSL, probes the same system
//! store), and name the host the client connects to. A client certificate is presented when
//! one is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::wire::WireError;
use crate::kafka::{ClientError, KafkaSecurity};

/// The client TLS settings of `security`, its files read now so a mistake shows at start.
pub(crate) fn client_config(security: &KafkaSecurity) -> Result<Arc<ClientConfig>, ClientError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Tls(format!("TLS versions: {e}")))?
        .with_root_certificates(trusted_roots(security.ssl_ca_location.as_deref())?);
    let config = match (
        &security.ssl_certificate_location,
        &security.ssl_key_location,
    ) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certificates(cert)?, read_private_key(key)?)
            .map_err(|e| {
                ClientError::Tls(format!(
                    "client certificate {} with key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The TLS handshake over `tcp` with the broker at `address` (`host:port`, IPv6 hosts in
/// brackets), whose certificate must name `host`.
pub(crate) async fn connect(
    tcp: TcpStream,
    address: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, WireError> {
    let name = server_name(address)?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {address}: {e}"))
}

/// The host of `address` as TLS checks it against the certificate: a DNS name or an IP.
fn server_name(address: &str) -> Result<ServerName<'static>, WireError> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _port)| host);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a host name TLS can verify: {e}"))
}

fn trusted_roots(ca_location: Option<&Path>) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    match ca_location {
        Some(path) => {
            for certificate in read_certificates(path)? {
                roots.add(certificate).map_err(|e| {
                    ClientError::Tls(format!(
                        "{}: not a usable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(ClientError::Tls(format!(
                    "no CA certificates found on this system to verify the brokers with \
                     ({}); give the CA with --ssl-ca-location",
                    errors.join("; ")
                )));
            }
        }
    }
    Ok(roots)
}

/// Every certificate of a PEM file, in order; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(ClientError::Tls(format!(
            "no certificate found in {} (expected a PEM CERTIFICATE block)",
            path.display()
        )));
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        ClientError::Tls(match error {
            rustls_pki_types::pem::Error::NoItemsFound => format!(
                "no private key found in {} (expected an unencrypted PEM PRIVATE KEY, RSA \
                 PRIVATE KEY or EC PRIVATE KEY block)",
                path.display()
            ),
            other => format!("{}: {other}", path.display()),
        })
    })
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Named rather than the process-wide default, which something else may set or leave unset.
/// ring, as the broker uses, so the build needs only a C compiler.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    // X25519 first, as OpenSSL clients offer it: ring's list starts with P-384, whose key
    // exchange costs a broker about 3.5 times as much (docs/BENCHMARKS.md, "Security").
    provider
        .kx_groups
        .sort_by_key(|group| group.name() != rustls::NamedGroup::X25519);
    Arc::new(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        let name = |address| server_name(address).map(|n| n.to_str().into_owned());
        assert_eq!(
            name("kafka-1.example.com:9093"),
            Ok("kafka-1.example.com".into())
        );
        assert_eq!(name("127.0.0.1:9093"), Ok("127.0.0.1".into()));
        assert_eq!(name("[::1]:9093"), Ok("::1".into()));
        assert!(name("bad host:9093").is_err());
    }

    #[test]
    fn missing_files_are_named() {
        let security = KafkaSecurity {
            security_protocol: crate::kafka::SecurityProtocol::Ssl,
            ssl_ca_location: Some("/nonexistent/ca.pem".into()),
            ..KafkaSecurity::default()
        };
        let error = client_config(&security).expect_err("no such file");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        let source = std::error::Error::source(&error).expect("the io error is kept");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
    }
}
