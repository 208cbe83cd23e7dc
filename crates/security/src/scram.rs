//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side, as Kafka speaks it.
//!
//! A [`ScramCredential`] is what the server keeps of a password: salt, iteration count,
//! StoredKey and ServerKey. It proves a client knows the password without the password ever
//! being stored, and [`ScramCredential::verifies_password`] lets SASL PLAIN and HTTP Basic
//! check a clear-text password against it.
//!
//! A [`ServerExchange`] runs one authentication: `client_first` answers the client's first
//! message, `client_final` checks its proof and returns the server's signature.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's lower bound on iterations (`ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
/// Twice Kafka's minimum: a few milliseconds per authentication, and what `freshet users add`
/// uses unless told otherwise.
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Kafka's upper bound (`ScramMechanism.maxIterations`): more would let a client with a
/// credential make the broker burn CPU on every login.
pub const MAX_ITERATIONS: u32 = 16384;

/// Random bytes in a server nonce (RFC 5802 wants it unpredictable; 18 is the usual minimum).
const SERVER_NONCE_BYTES: usize = 24;
/// Random bytes of the salt of a new credential.
const SALT_BYTES: usize = 32;

/// A SCRAM mechanism, named as in SASL and Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Case-sensitive, as Kafka matches SASL mechanism names.
    pub fn from_name(name: &str) -> Option<Self> {
        Mechanism::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    /// Kafka's `ScramMechanism` code, used by Describe/AlterUserScramCredentials.
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    pub fn from_kafka_type(code: i8) -> Option<Self> {
        Mechanism::ALL
            .into_iter()
            .find(|mechanism| mechanism.kafka_type() == code)
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
            Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => mac::<Hmac<Sha256>>(key, data),
            Mechanism::ScramSha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    /// RFC 5802's `Hi()`: PBKDF2 with this mechanism's HMAC, one hash length of output.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            Mechanism::ScramSha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            Mechanism::ScramSha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }

    fn output_len(self) -> usize {
        match self {
            Mechanism::ScramSha256 => 32,
            Mechanism::ScramSha512 => 64,
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// What the server stores of one user's password for one mechanism.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub mechanism: Mechanism,
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives the credential of `password`; costs `iterations` HMACs.
    pub fn derive(mechanism: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        ScramCredential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    pub fn with_random_salt(mechanism: Mechanism, password: &[u8], iterations: u32) -> Self {
        ScramCredential::derive(mechanism, password, &random_bytes(SALT_BYTES), iterations)
    }

    /// From `Hi(password, salt, iterations)`, which is what Kafka's AlterUserScramCredentials
    /// sends instead of the password.
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was derived from. Runs PBKDF2: callers on
    /// an async runtime run it on a blocking thread.
    pub fn verifies_password(&self, password: &[u8]) -> bool {
        let candidate =
            ScramCredential::derive(self.mechanism, password, &self.salt, self.iterations);
        candidate.stored_key.ct_eq(&self.stored_key).into()
    }
}

// The keys are as good as the password to an attacker who also sees an exchange: keep them
// out of logs.
impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::BASE64;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Why an exchange failed. The text may be sent to the client (Kafka puts it in the
/// SaslAuthenticate response): none says whether the user or the password was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// Unknown user or wrong password, indistinguishably (Kafka's wording).
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {}", .0.name())]
    AuthenticationFailed(Mechanism),
    #[error("Invalid SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("Unexpected SCRAM message: {0}")]
    OutOfOrder(&'static str),
    #[error("Channel binding is not supported by this server")]
    ChannelBindingUnsupported,
    #[error("Delegation token authentication is not supported by this server")]
    TokenAuthUnsupported,
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    AuthorizationIdMismatch,
    #[error("Invalid client nonce in the final client message")]
    NonceMismatch,
}

/// The server's side of one SCRAM authentication.
#[derive(Debug)]
pub struct ServerExchange {
    mechanism: Mechanism,
    state: State,
    server_nonce: String,
}

#[derive(Debug)]
enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<FirstExchanged>),
    /// Succeeded or failed: a new authentication needs a new exchange.
    Finished,
}

/// What the final step needs from the first.
#[derive(Debug)]
struct FirstExchanged {
    username: String,
    credential: ScramCredential,
    /// False for an unknown user: the exchange goes on with a fake credential and fails at
    /// the end, as a wrong password does.
    known_user: bool,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ServerExchange {
    pub fn new(mechanism: Mechanism) -> Self {
        ServerExchange::with_server_nonce(
            mechanism,
            BASE64.encode(random_bytes(SERVER_NONCE_BYTES)),
        )
    }

    /// With a chosen server nonce: tests replay the RFC's example exchange with it.
    fn with_server_nonce(mechanism: Mechanism, server_nonce: String) -> Self {
        ServerExchange {
            mechanism,
            state: State::AwaitingClientFirst,
            server_nonce,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Answers the client-first message with the server-first message.
    ///
    /// `lookup` finds the user's credential for this exchange's mechanism. An unknown user
    /// gets a plausible answer (a salt derived from the name, the default iterations) so this
    /// step does not reveal who exists.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::AwaitingClientFirst) {
            self.state = State::Finished;
            return Err(ScramError::OutOfOrder(
                "the client-first message was already received",
            ));
        }
        self.state = State::Finished;
        let first = parse_client_first(message)?;
        let found = lookup(&first.username).filter(|c| c.mechanism == self.mechanism);
        let known_user = found.is_some();
        let credential = found.unwrap_or_else(|| fake_credential(self.mechanism, &first.username));
        let nonce = format!("{}{}", first.client_nonce, self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let answer = server_first.clone().into_bytes();
        self.state = State::AwaitingClientFinal(Box::new(FirstExchanged {
            username: first.username,
            credential,
            known_user,
            gs2_header: first.gs2_header,
            nonce,
            client_first_bare: first.bare,
            server_first,
        }));
        Ok(answer)
    }

    /// Checks the client-final message's proof; on success returns the server-final message
    /// (`v=ServerSignature`) and the authenticated user name.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let first = match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitingClientFinal(first) => first,
            State::AwaitingClientFirst => {
                return Err(ScramError::OutOfOrder(
                    "the client-first message is missing",
                ))
            }
            State::Finished => {
                return Err(ScramError::OutOfOrder("this exchange is already finished"))
            }
        };
        let last = parse_client_final(message)?;
        if BASE64.decode(last.channel_binding).ok().as_deref() != Some(first.gs2_header.as_bytes())
        {
            return Err(ScramError::Malformed(
                "the channel binding does not repeat the GS2 header",
            ));
        }
        // Kafka's check: the nonce must end with the combined nonce. librdkafka before 2.6.1
        // sends the client nonce twice (librdkafka#4895); the proof still covers the message
        // as sent, so the looser check lets no one in who does not hold the key.
        if !last.nonce.ends_with(first.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = format!(
            "{},{},{}",
            first.client_first_bare, first.server_first, last.without_proof
        );
        let credential = &first.credential;
        let proof_matches = proof_matches(credential, auth_message.as_bytes(), &last.proof);
        if !(proof_matches && first.known_user) {
            return Err(ScramError::AuthenticationFailed(self.mechanism));
        }
        let signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        let answer = format!("v={}", BASE64.encode(signature)).into_bytes();
        Ok((answer, first.username))
    }
}

/// RFC 5802: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and the proof holds
/// when H(ClientKey) is StoredKey. Compared in constant time.
fn proof_matches(credential: &ScramCredential, auth_message: &[u8], proof: &[u8]) -> bool {
    let mechanism = credential.mechanism;
    let signature = mechanism.hmac(&credential.stored_key, auth_message);
    if proof.len() != signature.len() {
        return false;
    }
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    mechanism
        .hash(&client_key)
        .ct_eq(&credential.stored_key)
        .into()
}

/// The credential an unknown user appears to have: the same salt every time for a name (as a
/// real user's would be) within this process, and keys that match no proof.
fn fake_credential(mechanism: Mechanism, username: &str) -> ScramCredential {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    let key = KEY.get_or_init(|| random_bytes(32));
    let salt_input = format!("{}\0{username}", mechanism.name());
    let mut salt = mechanism.hmac(key, salt_input.as_bytes());
    salt.truncate(SALT_BYTES);
    ScramCredential {
        mechanism,
        salt,
        iterations: DEFAULT_ITERATIONS,
        stored_key: random_bytes(mechanism.output_len()),
        server_key: random_bytes(mechanism.output_len()),
    }
}

struct ClientFirst {
    gs2_header: String,
    username: String,
    client_nonce: String,
    bare: String,
}

fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| ScramError::Malformed("the client-first message is not UTF-8"))?;
    let (cbind_flag, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("the GS2 header is missing"))?;
    let (authzid_field, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("the GS2 header is incomplete"))?;
    match cbind_flag {
        // "y": the client could bind but believes the server cannot, which is right.
        "n" | "y" => {}
        flag if flag.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Malformed("unknown channel binding flag")),
    }
    let authzid = match authzid_field {
        "" => None,
        a => Some(unescape_name(a.strip_prefix("a=").ok_or(
            ScramError::Malformed("the authorization id does not start with a="),
        )?)?),
    };
    let mut attributes = bare.split(',');
    let username = match attributes.next() {
        Some(m) if m.starts_with("m=") => {
            return Err(ScramError::Malformed(
                "mandatory extensions are not supported",
            ))
        }
        Some(n) => unescape_name(
            n.strip_prefix("n=")
                .ok_or(ScramError::Malformed("the user name is missing"))?,
        )?,
        None => return Err(ScramError::Malformed("the user name is missing")),
    };
    let client_nonce = attributes
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .filter(|nonce| is_valid_nonce(nonce))
        .ok_or(ScramError::Malformed(
            "the client nonce is missing or invalid",
        ))?;
    check_extensions(attributes)?;
    if username.is_empty() {
        return Err(ScramError::Malformed("the user name is empty"));
    }
    if authzid.is_some_and(|authzid| authzid != username) {
        return Err(ScramError::AuthorizationIdMismatch);
    }
    Ok(ClientFirst {
        gs2_header: format!("{cbind_flag},{authzid_field},"),
        username,
        client_nonce: client_nonce.to_owned(),
        bare: bare.to_owned(),
    })
}

/// Kafka clients send `tokenauth=true` to log in with a delegation token, which Freshet does
/// not have; other extensions are ignored, as Kafka does.
fn check_extensions<'a>(attributes: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for extension in attributes {
        let (key, value) = extension
            .split_once('=')
            .ok_or(ScramError::Malformed("an extension is not key=value"))?;
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(ScramError::TokenAuthUnsupported);
        }
    }
    Ok(())
}

/// RFC 5802: printable ASCII except `,`.
fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// RFC 5802's `saslname`: `,` and `=` travel as `=2C` and `=3D`; any other `=` is an error.
fn unescape_name(escaped: &str) -> Result<String, ScramError> {
    let mut name = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        name.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        name.push(match code {
            Some("2C") => ',',
            Some("3D") => '=',
            _ => return Err(ScramError::Malformed("invalid escape in a user name")),
        });
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Ok(name)
}

struct ClientFinal<'a> {
    channel_binding: &'a str,
    nonce: &'a str,
    without_proof: &'a str,
    proof: Vec<u8>,
}

fn parse_client_final(message: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| ScramError::Malformed("the client-final message is not UTF-8"))?;
    // The proof is the last attribute, and the AuthMessage holds everything before it.
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("the client proof is missing"))?;
    let mut attributes = without_proof.split(',');
    let channel_binding = attributes
        .next()
        .and_then(|c| c.strip_prefix("c="))
        .ok_or(ScramError::Malformed("the channel binding is missing"))?;
    let nonce = attributes
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .ok_or(ScramError::Malformed("the nonce is missing"))?;
    let proof = BASE64
        .decode(proof)
        .map_err(|_| ScramError::Malformed("the client proof is not base64"))?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        BASE64.decode(text).expect("base64")
    }

    /// The client's side, as a Kafka client computes it.
    fn client_final(
        mechanism: Mechanism,
        password: &[u8],
        gs2_header: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let attributes: Vec<&str> = server_first.split(',').collect();
        let nonce = attributes[0].strip_prefix("r=").expect("r=");
        let salt = b64(attributes[1].strip_prefix("s=").expect("s="));
        let iterations: u32 = attributes[2]
            .strip_prefix("i=")
            .expect("i=")
            .parse()
            .expect("iterations");
        let salted = mechanism.salted_password(password, &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2_header));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let expected_server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!("v={}", BASE64.encode(expected_server_signature)).into_bytes(),
        )
    }

    /// Runs a whole exchange for `user` with `password` against a store holding `stored`.
    fn authenticate(
        mechanism: Mechanism,
        stored: Option<(&str, ScramCredential)>,
        user: &str,
        password: &[u8],
    ) -> Result<String, ScramError> {
        let mut server = ServerExchange::new(mechanism);
        let escaped = user.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={escaped},r=clientnonce123");
        let server_first = server.client_first(format!("n,,{bare}").as_bytes(), |name| {
            stored
                .as_ref()
                .filter(|(stored_name, _)| *stored_name == name)
                .map(|(_, credential)| credential.clone())
        })?;
        let server_first = String::from_utf8(server_first).expect("UTF-8");
        assert!(server_first.starts_with("r=clientnonce123"));
        let (last, expected) = client_final(mechanism, password, "n,,", &bare, &server_first);
        let (server_final, name) = server.client_final(last.as_bytes())?;
        assert_eq!(server_final, expected);
        Ok(name)
    }

    fn pencil_user(mechanism: Mechanism) -> ScramCredential {
        ScramCredential::with_random_salt(mechanism, b"pencil", MIN_ITERATIONS)
    }

    #[test]
    fn replays_the_rfc_7677_example() {
        let credential = ScramCredential::derive(
            Mechanism::ScramSha256,
            b"pencil",
            &b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
            4096,
        );
        let mut server = ServerExchange::with_server_nonce(
            Mechanism::ScramSha256,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_owned(),
        );
        let server_first = server
            .client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |name| {
                (name == "user").then(|| credential.clone())
            })
            .expect("client-first");
        assert_eq!(
            String::from_utf8(server_first).expect("UTF-8"),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (server_final, user) = server
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .expect("client-final");
        assert_eq!(
            String::from_utf8(server_final).expect("UTF-8"),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(user, "user");
    }

    #[test]
    fn sha_512_exchange_succeeds_with_the_right_password() {
        let credential = pencil_user(Mechanism::ScramSha512);
        let user = authenticate(
            Mechanism::ScramSha512,
            Some(("alice", credential)),
            "alice",
            b"pencil",
        );
        assert_eq!(user, Ok("alice".to_owned()));
    }

    #[test]
    fn a_wrong_password_and_an_unknown_user_fail_alike() {
        for mechanism in Mechanism::ALL {
            let stored = Some(("alice", pencil_user(mechanism)));
            let wrong = authenticate(mechanism, stored.clone(), "alice", b"crayon");
            let unknown = authenticate(mechanism, stored, "bob", b"pencil");
            assert_eq!(wrong, Err(ScramError::AuthenticationFailed(mechanism)));
            assert_eq!(unknown, wrong);
        }
        assert_eq!(
            ScramError::AuthenticationFailed(Mechanism::ScramSha256).to_string(),
            "Authentication failed during authentication due to invalid credentials with SASL \
             mechanism SCRAM-SHA-256"
        );
    }

    #[test]
    fn an_unknown_user_gets_a_stable_plausible_salt() {
        let first = |user: &str| {
            let mut server = ServerExchange::new(Mechanism::ScramSha256);
            let answer = server
                .client_first(format!("n,,n={user},r=abc").as_bytes(), |_| None)
                .expect("answered");
            let answer = String::from_utf8(answer).expect("UTF-8");
            answer.split_once(",s=").expect("salt").1.to_owned()
        };
        assert_eq!(first("ghost"), first("ghost"));
        assert_ne!(first("ghost"), first("spirit"));
        assert!(first("ghost").ends_with(&format!(",i={DEFAULT_ITERATIONS}")));
    }

    #[test]
    fn a_credential_of_another_mechanism_counts_as_unknown() {
        let stored = Some(("alice", pencil_user(Mechanism::ScramSha256)));
        let result = authenticate(Mechanism::ScramSha512, stored, "alice", b"pencil");
        assert_eq!(
            result,
            Err(ScramError::AuthenticationFailed(Mechanism::ScramSha512))
        );
    }

    #[test]
    fn old_librdkafkas_repeated_client_nonce_is_accepted_as_kafka_accepts_it() {
        // librdkafka before 2.6.1 sends `r=<client nonce><client nonce><server nonce>`.
        let credential = pencil_user(Mechanism::ScramSha512);
        let mut server = ServerExchange::new(Mechanism::ScramSha512);
        let bare = "n=alice,r=clientnonce";
        let server_first = server
            .client_first(format!("n,,{bare}").as_bytes(), |_| {
                Some(credential.clone())
            })
            .expect("client-first");
        let server_first = String::from_utf8(server_first).expect("UTF-8");
        // The proof covers the message as sent: the real server-first message and the final
        // message with the repeated nonce.
        let attributes: Vec<&str> = server_first.split(',').collect();
        let nonce = attributes[0].strip_prefix("r=").expect("r=");
        let salt = b64(attributes[1].strip_prefix("s=").expect("s="));
        let mechanism = Mechanism::ScramSha512;
        let salted = mechanism.salted_password(b"pencil", &salt, MIN_ITERATIONS);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let without_proof = format!("c={},r=clientnonce{nonce}", BASE64.encode("n,,"));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&mechanism.hash(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let last = format!("{without_proof},p={}", BASE64.encode(proof));
        let (_, user) = server.client_final(last.as_bytes()).expect("accepted");
        assert_eq!(user, "alice");
    }

    #[test]
    fn a_tampered_nonce_fails() {
        let credential = pencil_user(Mechanism::ScramSha256);
        let mut server = ServerExchange::new(Mechanism::ScramSha256);
        let bare = "n=alice,r=clientnonce";
        let server_first = server
            .client_first(format!("n,,{bare}").as_bytes(), |_| {
                Some(credential.clone())
            })
            .expect("client-first");
        let server_first = String::from_utf8(server_first).expect("UTF-8");
        let tampered = server_first.replacen("r=clientnonce", "r=clientnonceX", 1);
        let (last, _) = client_final(Mechanism::ScramSha256, b"pencil", "n,,", bare, &tampered);
        assert_eq!(
            server.client_final(last.as_bytes()),
            Err(ScramError::NonceMismatch)
        );
    }

    #[test]
    fn escaped_user_names_are_unescaped() {
        let name = "a,b=c";
        let stored = Some((name, pencil_user(Mechanism::ScramSha256)));
        let user = authenticate(Mechanism::ScramSha256, stored, name, b"pencil");
        assert_eq!(user, Ok(name.to_owned()));
        assert_eq!(unescape_name("x=2Cy=3Dz"), Ok("x,y=z".to_owned()));
        assert!(unescape_name("x=2").is_err());
        assert!(unescape_name("x=41").is_err());
        assert!(unescape_name("x=").is_err());
    }

    #[test]
    fn gs2_headers_are_checked() {
        let credential = pencil_user(Mechanism::ScramSha256);
        let first = |message: &str| {
            ServerExchange::new(Mechanism::ScramSha256)
                .client_first(message.as_bytes(), |_| Some(credential.clone()))
        };
        assert!(first("y,,n=alice,r=abc").is_ok());
        assert!(first("n,a=alice,n=alice,r=abc").is_ok());
        assert_eq!(
            first("n,a=bob,n=alice,r=abc"),
            Err(ScramError::AuthorizationIdMismatch)
        );
        assert_eq!(
            first("p=tls-unique,,n=alice,r=abc"),
            Err(ScramError::ChannelBindingUnsupported)
        );
        assert_eq!(
            first("n,,n=alice,r=abc,tokenauth=true"),
            Err(ScramError::TokenAuthUnsupported)
        );
        assert!(first("n,,n=alice,r=abc,other=1").is_ok());
        assert!(first("n,,m=ext,n=alice,r=abc").is_err());
        assert!(first("n,,n=,r=abc").is_err());
        assert!(first("n,,n=alice").is_err());
        assert!(first("n,,n=alice,r=a,b").is_err());
    }

    #[test]
    fn an_authzid_header_must_be_repeated_in_the_final_message() {
        let mechanism = Mechanism::ScramSha256;
        let credential = pencil_user(mechanism);
        let gs2 = "n,a=alice,";
        let bare = "n=alice,r=nonce";
        let run = |echoed_header: &str| {
            let mut server = ServerExchange::new(mechanism);
            let server_first = server
                .client_first(format!("{gs2}{bare}").as_bytes(), |_| {
                    Some(credential.clone())
                })
                .expect("client-first");
            let server_first = String::from_utf8(server_first).expect("UTF-8");
            let (last, _) = client_final(mechanism, b"pencil", echoed_header, bare, &server_first);
            server.client_final(last.as_bytes()).map(|(_, user)| user)
        };
        assert_eq!(run(gs2), Ok("alice".to_owned()));
        assert!(matches!(run("n,,"), Err(ScramError::Malformed(_))));
    }

    #[test]
    fn steps_out_of_order_fail() {
        let mut server = ServerExchange::new(Mechanism::ScramSha256);
        assert!(matches!(
            server.client_final(b"c=biws,r=x,p=AAAA"),
            Err(ScramError::OutOfOrder(_))
        ));
        let mut server = ServerExchange::new(Mechanism::ScramSha256);
        server
            .client_first(b"n,,n=alice,r=abc", |_| None)
            .expect("first");
        assert!(matches!(
            server.client_first(b"n,,n=alice,r=abc", |_| None),
            Err(ScramError::OutOfOrder(_))
        ));
        assert!(matches!(
            server.client_final(b"c=biws,r=x,p=AAAA"),
            Err(ScramError::OutOfOrder(_))
        ));
    }

    #[test]
    fn verifies_passwords_against_a_stored_credential() {
        for mechanism in Mechanism::ALL {
            let credential = pencil_user(mechanism);
            assert!(credential.verifies_password(b"pencil"));
            assert!(!credential.verifies_password(b"pencil "));
            assert!(!credential.verifies_password(b""));
        }
    }

    #[test]
    fn a_salted_password_gives_the_derived_credential() {
        for mechanism in Mechanism::ALL {
            let salt = b"some salt";
            let salted = mechanism.salted_password(b"pencil", salt, 4096);
            assert_eq!(
                ScramCredential::from_salted_password(mechanism, &salted, salt, 4096),
                ScramCredential::derive(mechanism, b"pencil", salt, 4096)
            );
        }
    }

    #[test]
    fn credentials_round_trip_through_json_without_their_keys_in_debug() {
        let credential = pencil_user(Mechanism::ScramSha512);
        let json = serde_json::to_value(&credential).expect("json");
        assert_eq!(json["mechanism"], "SCRAM-SHA-512");
        assert_eq!(json["salt"], BASE64.encode(&credential.salt));
        let back: ScramCredential = serde_json::from_value(json).expect("parse");
        assert_eq!(back, credential);
        let debug = format!("{credential:?}");
        assert!(!debug.contains("stored_key"), "{debug}");
    }

    #[test]
    fn mechanisms_have_kafka_names_and_codes() {
        for mechanism in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(mechanism.name()), Some(mechanism));
            assert_eq!(
                Mechanism::from_kafka_type(mechanism.kafka_type()),
                Some(mechanism)
            );
        }
        assert_eq!(Mechanism::from_name("scram-sha-256"), None);
        assert_eq!(Mechanism::from_kafka_type(0), None);
        assert_eq!(Mechanism::ScramSha512.kafka_type(), 2);
    }

    proptest! {
        #[test]
        fn garbage_first_messages_never_panic(message in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut server = ServerExchange::new(Mechanism::ScramSha256);
            if let Ok(answer) = server.client_first(&message, |_| None) {
                prop_assert!(answer.starts_with(b"r="));
            }
        }

        #[test]
        fn near_valid_first_messages_never_panic(message in "[nyp]?,(a=[a-z=,23CD]*)?,[nmr=a-z,23CD]*") {
            let mut server = ServerExchange::new(Mechanism::ScramSha256);
            let _ = server.client_first(message.as_bytes(), |_| None);
        }

        #[test]
        fn garbage_final_messages_fail(message in proptest::collection::vec(any::<u8>(), 0..200)) {
            let credential = ScramCredential::derive(Mechanism::ScramSha256, b"pencil", b"salt", MIN_ITERATIONS);
            let mut server = ServerExchange::new(Mechanism::ScramSha256);
            server.client_first(b"n,,n=alice,r=abc", |_| Some(credential.clone())).expect("first");
            prop_assert!(server.client_final(&message).is_err());
        }

        #[test]
        fn near_valid_final_messages_fail(tail in "[a-zA-Z0-9+/=,]*") {
            let credential = ScramCredential::derive(Mechanism::ScramSha256, b"pencil", b"salt", MIN_ITERATIONS);
            let mut server = ServerExchange::new(Mechanism::ScramSha256);
            let first = server.client_first(b"n,,n=alice,r=abc", |_| Some(credential.clone())).expect("first");
            let nonce = String::from_utf8(first).expect("UTF-8");
            let nonce = nonce.split(',').next().expect("r=");
            let message = format!("c=biws,{nonce},p={tail}");
            prop_assert!(server.client_final(message.as_bytes()).is_err());
        }
    }
}
