//! Signing the raw-protocol client ([`wire`](super::wire)) in on SASL listeners, as Kafka
//! clients do (KIP-152): SaslHandshake v1 picks the mechanism, then SaslAuthenticate carries
//! its messages. PLAIN (RFC 4616) is one message; SCRAM-SHA-256/512 (RFC 5802, RFC 7677) is
//! two round trips, and the broker's signature is checked so a broker that does not know the
//! password cannot pass for one that does.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};

use super::wire::{Connection, WireError};
use crate::kafka::{SaslCredentials, SaslMechanism};

/// SaslHandshake v0 means the old framing without SaslAuthenticate, which this client lacks.
const HANDSHAKE_VERSIONS: (i16, i16) = (1, 1);
/// v1 adds the session lifetime and v2 is flexible; what is sent is the same.
const AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);
/// Random bytes of the client nonce (RFC 5802 wants it unpredictable).
const CLIENT_NONCE_BYTES: usize = 24;
/// RFC 7677's minimum: a server asking for fewer would make the proof cheap to attack.
const MIN_ITERATIONS: u32 = 4096;
/// Far above any Kafka's (Apache Kafka allows up to 16384); bounds the CPU a rogue server can
/// make each connection spend.
const MAX_ITERATIONS: u32 = 1_000_000;

/// Signs `connection` in with `credentials`; each request waits at most `timeout`. A refusal
/// carries the broker's message.
pub(crate) async fn authenticate(
    connection: &mut Connection,
    credentials: SaslCredentials<'_>,
    timeout: Duration,
) -> Result<(), WireError> {
    handshake(connection, credentials.mechanism, timeout).await?;
    let signed_in = match credentials.mechanism {
        SaslMechanism::Plain => plain(connection, credentials, timeout).await,
        SaslMechanism::ScramSha256 => {
            scram(connection, ScramHash::Sha256, credentials, timeout).await
        }
        SaslMechanism::ScramSha512 => {
            scram(connection, ScramHash::Sha512, credentials, timeout).await
        }
    };
    signed_in.map_err(|reason| {
        format!(
            "SASL {} authentication as {:?} failed: {reason}",
            credentials.mechanism, credentials.username
        )
    })
}

async fn handshake(
    connection: &mut Connection,
    mechanism: SaslMechanism,
    timeout: Duration,
) -> Result<(), WireError> {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name()));
    let (_, response) = connection
        .call_between(&request, HANDSHAKE_VERSIONS, timeout)
        .await?;
    match ResponseError::try_from_code(response.error_code) {
        None => Ok(()),
        Some(ResponseError::UnsupportedSaslMechanism) => {
            let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            Err(format!(
                "the broker does not offer SASL mechanism {mechanism} (it offers {})",
                offered.join(", ")
            ))
        }
        Some(ResponseError::IllegalSaslState) => Err(
            "the broker refused SASL on this listener: is it a PLAINTEXT or SSL listener?".into(),
        ),
        Some(error) => Err(format!("SaslHandshake failed: {error:?}")),
    }
}

/// One SaslAuthenticate round trip: the broker's answer, or its refusal.
async fn exchange(
    connection: &mut Connection,
    message: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, WireError> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
    let (_, response) = connection
        .call_between(&request, AUTHENTICATE_VERSIONS, timeout)
        .await?;
    if response.error_code == 0 {
        return Ok(response.auth_bytes);
    }
    let error = ResponseError::try_from_code(response.error_code).map_or_else(
        || format!("error {}", response.error_code),
        |e| format!("{e:?}"),
    );
    Err(match response.error_message {
        Some(message) => format!("{message} ({error})"),
        None => error,
    })
}

async fn plain(
    connection: &mut Connection,
    credentials: SaslCredentials<'_>,
    timeout: Duration,
) -> Result<(), WireError> {
    // No authorization id: the user acts as itself.
    let message = format!("\0{}\0{}", credentials.username, credentials.password);
    exchange(connection, message.into_bytes(), timeout).await?;
    Ok(())
}

async fn scram(
    connection: &mut Connection,
    hash: ScramHash,
    credentials: SaslCredentials<'_>,
    timeout: Duration,
) -> Result<(), WireError> {
    let client = ScramClient::new(hash, credentials.username);
    let server_first = exchange(connection, client.first_message().into_bytes(), timeout).await?;
    let password = credentials.password.to_string();
    // PBKDF2 takes milliseconds: off the runtime's workers.
    let (final_message, server_signature) =
        tokio::task::spawn_blocking(move || client.final_message(&server_first, &password))
            .await
            .map_err(|e| format!("computing the SCRAM proof: {e}"))??;
    let server_final = exchange(connection, final_message.into_bytes(), timeout).await?;
    server_signature.verify(&server_final)
}

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => hmac_of::<Hmac<Sha256>>(key, data),
            ScramHash::Sha512 => hmac_of::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's `Hi()`: PBKDF2 with this HMAC, one hash length of output.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

fn hmac_of<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this never fails; an empty MAC would fail the
    // exchange rather than panic.
    let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The client's side of one SCRAM exchange, after its first message.
#[derive(Debug)]
pub(crate) struct ScramClient {
    hash: ScramHash,
    nonce: String,
    /// `n=<user>,r=<nonce>`: part of what both sides sign.
    first_bare: String,
}

impl ScramClient {
    pub(crate) fn new(hash: ScramHash, username: &str) -> ScramClient {
        let mut nonce = [0u8; CLIENT_NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        ScramClient::with_nonce(hash, username, BASE64.encode(nonce))
    }

    fn with_nonce(hash: ScramHash, username: &str, nonce: String) -> ScramClient {
        let first_bare = format!("n={},r={nonce}", escape_name(username));
        ScramClient {
            hash,
            nonce,
            first_bare,
        }
    }

    /// The client-first message: no channel binding, no authorization id.
    pub(crate) fn first_message(&self) -> String {
        format!("{GS2_HEADER}{}", self.first_bare)
    }

    /// The client-final message answering `server_first`, with the proof that the client
    /// knows `password`, and the signature the server must answer with.
    pub(crate) fn final_message(
        self,
        server_first: &[u8],
        password: &str,
    ) -> Result<(String, ServerSignature), String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "the server-first message is not UTF-8".to_string())?;
        let challenge = parse_server_first(server_first)?;
        if !(challenge.nonce.starts_with(&self.nonce) && challenge.nonce.len() > self.nonce.len()) {
            return Err("the server's nonce does not extend the client's".into());
        }
        let without_proof = format!("c={},r={}", BASE64.encode(GS2_HEADER), challenge.nonce);
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let hash = self.hash;
        let salted =
            hash.salted_password(password.as_bytes(), &challenge.salt, challenge.iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let client_signature = hash.hmac(&hash.hash(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(key, signature)| key ^ signature)
            .collect();
        let signature = ServerSignature {
            hash,
            server_key: hash.hmac(&salted, b"Server Key"),
            auth_message,
        };
        Ok((
            format!("{without_proof},p={}", BASE64.encode(proof)),
            signature,
        ))
    }
}

/// `n,,`: the client does not support channel binding, and acts as the user it names.
const GS2_HEADER: &str = "n,,";

/// What the server-final message must prove: that the server holds the user's ServerKey.
#[derive(Debug)]
pub(crate) struct ServerSignature {
    hash: ScramHash,
    server_key: Vec<u8>,
    auth_message: String,
}

impl ServerSignature {
    /// Accepts `v=<signature>` when it is the expected one (compared in constant time).
    pub(crate) fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| "the server-final message is not UTF-8".to_string())?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(format!("the server refused the proof: {error}"));
        }
        let signature = text
            .split(',')
            .find_map(|attribute| attribute.strip_prefix("v="))
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or_else(|| "the server-final message holds no signature".to_string())?;
        let matches = match self.hash {
            ScramHash::Sha256 => verify_hmac::<Hmac<Sha256>>(self, &signature),
            ScramHash::Sha512 => verify_hmac::<Hmac<Sha512>>(self, &signature),
        };
        match matches {
            true => Ok(()),
            false => {
                Err("the server's signature is wrong: it does not know this user's password".into())
            }
        }
    }
}

fn verify_hmac<M: Mac + hmac::digest::KeyInit>(
    expected: &ServerSignature,
    signature: &[u8],
) -> bool {
    let Ok(mut mac) = <M as Mac>::new_from_slice(&expected.server_key) else {
        return false;
    };
    mac.update(expected.auth_message.as_bytes());
    mac.verify_slice(signature).is_ok()
}

/// What the server-first message says: `r=<nonce>,s=<salt>,i=<iterations>[,extensions]`.
#[derive(Debug)]
struct ServerFirst {
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(message: &str) -> Result<ServerFirst, String> {
    if let Some(error) = message.strip_prefix("e=") {
        return Err(format!("the server refused the exchange: {error}"));
    }
    let mut attributes = message.split(',');
    let mut next = |key: &str| {
        attributes
            .next()
            .and_then(|attribute| attribute.strip_prefix(key))
            .ok_or_else(|| format!("the server-first message lacks its {key} attribute"))
    };
    let nonce = next("r=")?.to_string();
    let salt = BASE64
        .decode(next("s=")?)
        .map_err(|_| "the server's salt is not base64".to_string())?;
    let iterations: u32 = next("i=")?
        .parse()
        .map_err(|_| "the server's iteration count is not a number".to_string())?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "the server asks for {iterations} iterations, outside {MIN_ITERATIONS} to \
             {MAX_ITERATIONS}"
        ));
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// RFC 5802's `saslname`: `=` and `,` written as `=3D` and `=2C`.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use freshet_security::scram::{Mechanism, ScramCredential, ServerExchange};

    use super::*;

    /// RFC 7677's example exchange, SCRAM-SHA-256 for user "user" with password "pencil".
    #[test]
    fn the_rfc_7677_example_gives_its_proof_and_accepts_its_signature() {
        let client = ScramClient::with_nonce(
            ScramHash::Sha256,
            "user",
            "rOprNGfwEbeRWgbNEkqO".to_string(),
        );
        assert_eq!(client.first_message(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (final_message, signature) = client
            .final_message(server_first.as_bytes(), "pencil")
            .expect("a valid challenge");
        assert_eq!(
            final_message,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        signature
            .verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("the RFC's server signature");
        assert!(signature.verify(b"v=AAAA").is_err());
        assert!(signature.verify(b"e=invalid-proof").is_err());
    }

    /// The client against Freshet's own SCRAM server, both mechanisms, a name to escape.
    #[test]
    fn the_client_signs_in_to_the_scram_server_and_checks_its_answer() {
        for (hash, mechanism) in [
            (ScramHash::Sha256, Mechanism::ScramSha256),
            (ScramHash::Sha512, Mechanism::ScramSha512),
        ] {
            let user = "ali=ce,1";
            let credential = ScramCredential::with_random_salt(mechanism, b"secret", 4096);
            let mut server = ServerExchange::new(mechanism);
            let client = ScramClient::new(hash, user);
            let server_first = server
                .client_first(client.first_message().as_bytes(), |name| {
                    (name == user).then(|| credential.clone())
                })
                .expect("server-first");
            let (final_message, signature) = client
                .final_message(&server_first, "secret")
                .expect("client-final");
            let (server_final, name) = server
                .client_final(final_message.as_bytes())
                .expect("the proof is accepted");
            assert_eq!(name, user);
            signature.verify(&server_final).expect("the server's proof");
        }
    }

    #[test]
    fn a_wrong_password_is_refused_by_the_server() {
        let credential = ScramCredential::with_random_salt(Mechanism::ScramSha512, b"right", 4096);
        let mut server = ServerExchange::new(Mechanism::ScramSha512);
        let client = ScramClient::new(ScramHash::Sha512, "bob");
        let server_first = server
            .client_first(client.first_message().as_bytes(), |_| {
                Some(credential.clone())
            })
            .expect("server-first");
        let (final_message, _) = client
            .final_message(&server_first, "wrong")
            .expect("client-final");
        assert!(server.client_final(final_message.as_bytes()).is_err());
    }

    #[test]
    fn challenges_a_client_must_not_answer_are_refused() {
        let answer = |server_first: &str| {
            ScramClient::with_nonce(ScramHash::Sha256, "u", "abc".to_string())
                .final_message(server_first.as_bytes(), "p")
                .map(|_| ())
        };
        assert!(answer("r=abcdef,s=c2FsdA==,i=4096").is_ok());
        assert!(
            answer("r=xyzdef,s=c2FsdA==,i=4096").is_err(),
            "foreign nonce"
        );
        assert!(
            answer("r=abc,s=c2FsdA==,i=4096").is_err(),
            "nonce not extended"
        );
        assert!(
            answer("r=abcdef,s=c2FsdA==,i=1").is_err(),
            "too few iterations"
        );
        assert!(
            answer("r=abcdef,s=c2FsdA==,i=99999999").is_err(),
            "too many"
        );
        assert!(answer("r=abcdef,i=4096").is_err(), "no salt");
        assert!(answer("e=unknown-user").is_err());
    }
}
