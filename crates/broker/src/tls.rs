//! TLS for the SSL and SASL_SSL listeners, through rustls (ring provider).
//!
//! The certificate chain and key are PEM files (the key PKCS#8, PKCS#1 or SEC1); TLS 1.2 and
//! 1.3 only. With a client CA, every client must present a certificate it signed, and the
//! certificate's subject CN becomes the connection's principal (`User:<CN>`), as Kafka's
//! `ssl.client.auth=required`. The files are read again on SIGHUP ([`ServerTls::reload`]):
//! new connections get the new certificate, a reload that fails keeps the old one.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use freshet_security::Principal;
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A TLS connection as the broker serves it.
pub type TlsConnection = TlsStream<BufReader<TcpStream>>;

/// Bytes read from the socket at once under TLS. rustls alone reads 4 KiB at a time, which
/// made TLS produce cost nine times the system calls of plaintext per MB
/// (`freshet bench security`, docs/BENCHMARKS.md); a larger read lets one call bring
/// several 16 KiB records. Per connection, and untouched pages cost nothing.
const TLS_READ_BUFFER: usize = 64 * 1024;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why the TLS files could not be used.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// A file that was read but does not hold what it should; the message names it.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the certificate in {} and the private key in {} do not match",
        cert.display(),
        key.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// The TLS settings of the broker's TLS listeners, swappable while connections use them.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsConfig,
    /// Each handshake takes the config current when it starts; a reload swaps it.
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads the certificate, key and client CA.
    pub fn load(files: &TlsConfig) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            files: files.clone(),
            current: RwLock::new(Arc::new(server_config(files)?)),
        })
    }

    /// Reads the files again; on success, new connections get the new settings. On failure
    /// the previous settings stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(server_config(&self.files)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// [`reload`](Self::reload), logging the outcome (what a SIGHUP does).
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.files.cert.display(),
                "TLS certificate reloaded; new connections use it"
            ),
            Err(error) => tracing::error!(
                %error,
                "TLS reload failed; connections keep using the previous certificate"
            ),
        }
    }

    /// The settings new connections get now.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn files(&self) -> &TlsConfig {
        &self.files
    }

    /// The CA client certificates must be signed by, when they are required.
    pub fn client_ca(&self) -> Option<&Path> {
        self.files.client_ca.as_deref()
    }

    /// The server side of a TLS handshake on `socket`, with the current settings.
    pub async fn accept(&self, socket: TcpStream) -> io::Result<TlsConnection> {
        let buffered = BufReader::with_capacity(TLS_READ_BUFFER, socket);
        TlsAcceptor::from(self.server_config())
            .accept(buffered)
            .await
    }
}

/// A rustls server config from PEM files: TLS 1.2 and 1.3, client certificates required and
/// verified when `client_ca` is set.
pub fn server_config(files: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let chain = read_certificates(&files.cert)?;
    warn_if_expired(&files.cert, &chain[0]);
    let key = read_private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Invalid(format!("TLS versions: {e}")))?;
    let builder = match &files.client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                }
            }
            other => TlsError::Invalid(format!(
                "certificate {} with key {}: {other}",
                files.cert.display(),
                files.key.display()
            )),
        })?;
    // Kafka clients do not resume TLS sessions, and kafka-python 2.3 closes a connection
    // that turns readable with no request in flight, which the two TLS 1.3 session tickets
    // rustls sends after the handshake make it do (kafka-python#2369).
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The principal of a client whose certificate was verified; `None` when it presented none
/// (no client CA configured). An error for a verified certificate whose subject cannot be
/// read: such a client must not fall back to the anonymous principal.
pub fn peer_principal(connection: &ServerConnection) -> Result<Option<Principal>, String> {
    match connection
        .peer_certificates()
        .and_then(|chain| chain.first())
    {
        Some(certificate) => certificate_principal(certificate).map(Some),
        None => Ok(None),
    }
}

/// `User:<subject CN>` of a DER certificate, or `User:<full subject>` when it has no CN.
pub fn certificate_principal(der: &[u8]) -> Result<Principal, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let subject = certificate.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    Ok(match common_name {
        Some(cn) => Principal::user(cn),
        None => Principal::user(subject.to_string()),
    })
}

/// What a failed handshake says, with the likely cause when the client does not speak TLS
/// (a Kafka request where a ClientHello should be).
pub fn describe_handshake_error(error: &io::Error) -> String {
    let not_tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
        });
    if not_tls {
        format!("{error} (the client does not speak TLS: is it configured for PLAINTEXT?)")
    } else {
        error.to_string()
    }
}

/// The one provider everything here uses, named so that a process-wide default chosen
/// elsewhere cannot change or break it. ring, not aws-lc-rs, so the build needs only a C
/// compiler; rustls deprecates it for its lack of post-quantum key exchange, which Kafka
/// clients (OpenSSL, Java) do not offer by default anyway.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file, in order; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem_file(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(TlsError::Invalid(format!(
            "no certificate found in {} (expected a PEM CERTIFICATE block)",
            path.display()
        )));
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Invalid(format!(
            "no private key found in {} (expected an unencrypted PEM PRIVATE KEY, RSA PRIVATE \
             KEY or EC PRIVATE KEY block)",
            path.display()
        )),
        other => TlsError::Invalid(format!("{}: {other}", path.display())),
    })
}

fn client_verifier(
    ca: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca)? {
        roots.add(certificate).map_err(|e| {
            TlsError::Invalid(format!("{}: not a CA certificate: {e}", ca.display()))
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::Invalid(format!("client CA {}: {e}", ca.display())))
}

/// Clients refuse an expired certificate with errors that do not say so on the broker's
/// side: say it once here.
fn warn_if_expired(path: &Path, certificate: &CertificateDer<'_>) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate) else {
        return;
    };
    if !parsed.validity().is_valid() {
        tracing::warn!(
            cert = %path.display(),
            not_before = %parsed.validity().not_before,
            not_after = %parsed.validity().not_after,
            "the TLS certificate is not valid now; clients will refuse it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn certificate(subject: DistinguishedName) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name = subject;
        let certificate = params.self_signed(&key).expect("certificate");
        (certificate.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn files(dir: &Path, cert: &str, key: &str) -> TlsConfig {
        TlsConfig {
            cert: write(dir, "cert.pem", cert),
            key: write(dir, "key.pem", key),
            client_ca: None,
        }
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }

    #[test]
    fn the_principal_is_the_subject_cn_or_else_the_whole_subject() {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "Acme");
        subject.push(DnType::CommonName, "alice");
        let (cert, _) = certificate(subject);
        assert_eq!(
            certificate_principal(&der(&cert)),
            Ok(Principal::user("alice"))
        );

        let mut without_cn = DistinguishedName::new();
        without_cn.push(DnType::OrganizationName, "Acme");
        without_cn.push(DnType::OrganizationalUnitName, "ops");
        let (cert, _) = certificate(without_cn);
        let principal = certificate_principal(&der(&cert)).expect("readable");
        assert_eq!(principal.to_string(), "User:O=Acme, OU=ops");
        assert!(certificate_principal(b"not a certificate").is_err());
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = certificate(DistinguishedName::new());
        let tls = ServerTls::load(&files(dir.path(), &cert, &key)).expect("loads");
        assert!(tls.client_ca().is_none());
        tls.reload().expect("reloads");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = certificate(DistinguishedName::new());
        let (_, other_key) = certificate(DistinguishedName::new());
        let error = |files: &TlsConfig| server_config(files).expect_err("refused").to_string();

        let no_key = files(dir.path(), &cert, &cert);
        let message = error(&no_key);
        assert!(message.starts_with("no private key found in") && message.contains("key.pem"));

        let mismatch = files(dir.path(), &cert, &other_key);
        assert!(
            error(&mismatch).contains("do not match"),
            "{}",
            error(&mismatch)
        );

        let no_cert = files(dir.path(), &key, &key);
        assert!(error(&no_cert).starts_with("no certificate found in"));

        let mut missing = files(dir.path(), &cert, &key);
        missing.client_ca = Some(dir.path().join("absent-ca.pem"));
        assert!(
            error(&missing).starts_with("reading ") && error(&missing).contains("absent-ca.pem")
        );
    }

    #[test]
    fn a_plaintext_kafka_client_is_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = certificate(DistinguishedName::new());
        let config = server_config(&files(dir.path(), &cert, &key)).expect("loads");
        let mut server = ServerConnection::new(Arc::new(config)).expect("connection");
        // An ApiVersions request's first bytes: a size, then API key 18.
        let request = [0, 0, 0, 20, 0, 18, 0, 3, 0, 0, 0, 1];
        server.read_tls(&mut &request[..]).expect("buffered");
        let error = server.process_new_packets().expect_err("not TLS");
        let error = io::Error::new(io::ErrorKind::InvalidData, error);
        let described = describe_handshake_error(&error);
        assert!(
            described.contains("configured for PLAINTEXT?"),
            "{described}"
        );
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::NoCertificatesPresented,
        );
        assert!(!describe_handshake_error(&other).contains("PLAINTEXT"));
    }

    #[test]
    fn a_failed_reload_keeps_the_previous_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = certificate(DistinguishedName::new());
        let files = files(dir.path(), &cert, &key);
        let tls = ServerTls::load(&files).expect("loads");
        let before = tls.server_config();
        std::fs::write(&files.key, "garbage").expect("write");
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.server_config()));
    }
}
