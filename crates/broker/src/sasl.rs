//! SASL authentication on SASL_PLAINTEXT and SASL_SSL listeners: SaslHandshake (v1; v0 is
//! advertised for old librdkafka but answered UNSUPPORTED_VERSION) picks a
//! mechanism, then SaslAuthenticate carries its exchange (KIP-152).
//!
//! Mechanisms: PLAIN (RFC 4616, checked against a stored SCRAM credential) and
//! SCRAM-SHA-256/512 (RFC 5802/7677, two round trips). Until a connection has authenticated,
//! only ApiVersions, SaslHandshake and SaslAuthenticate are served (the dispatcher closes the
//! connection on anything else, as Kafka does). A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED after Kafka's `connection.failed.authentication.delay.ms`
//! (100 ms, which slows password guessing), then the connection is closed. Sessions do not
//! expire (`session_lifetime_ms` = 0), so clients never re-authenticate (KIP-368).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_security::plain::parse_plain;
use freshet_security::scram::{Mechanism, ServerExchange};
use freshet_security::Principal;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use crate::handlers::str_bytes;
use crate::session::Session;
use crate::Broker;

/// Kafka's `connection.failed.authentication.delay.ms` default.
const FAILED_AUTHENTICATION_DELAY: Duration = Duration::from_millis(100);

/// The mechanisms offered, in the order SaslHandshake lists them.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// A mechanism a client picked with SaslHandshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }
}

/// How far a connection's SASL authentication got.
#[derive(Debug, Default)]
pub enum SaslState {
    /// Waiting for SaslHandshake.
    #[default]
    Handshake,
    /// The mechanism is chosen; waiting for its first SaslAuthenticate.
    Chosen(SaslMechanism),
    /// SCRAM: the server-first message went out; waiting for the client's final message.
    ScramFinal(Box<ServerExchange>),
    /// Authenticated: the session's principal is the user.
    Done,
}

/// What a SaslAuthenticate leads to.
#[derive(Debug)]
pub struct Authenticated {
    pub response: SaslAuthenticateResponse,
    /// Close the connection once the response is written (a failed authentication).
    pub close: bool,
}

/// SaslHandshake: ILLEGAL_SASL_STATE on a listener without SASL or once authenticated,
/// UNSUPPORTED_SASL_MECHANISM for a mechanism not offered; the mechanisms list either way.
pub fn handshake(
    session: &mut Session,
    version: i16,
    request: &SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let response =
        SaslHandshakeResponse::default().with_mechanisms(MECHANISMS.map(str_bytes).to_vec());
    if version == 0 {
        // v0 would be followed by raw tokens outside Kafka frames, which are not served.
        return response.with_error_code(ResponseError::UnsupportedVersion.code());
    }
    if !session.listener.protocol().uses_sasl() || !matches!(session.sasl, SaslState::Handshake) {
        return response.with_error_code(ResponseError::IllegalSaslState.code());
    }
    match SaslMechanism::from_name(&request.mechanism) {
        Some(mechanism) => {
            session.sasl = SaslState::Chosen(mechanism);
            response
        }
        None => response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
    }
}

/// SaslAuthenticate: one step of the chosen mechanism's exchange.
pub async fn authenticate(
    broker: &Arc<Broker>,
    session: &mut Session,
    request: SaslAuthenticateRequest,
) -> Authenticated {
    let state = std::mem::take(&mut session.sasl);
    let step = match state {
        SaslState::Chosen(SaslMechanism::Plain) => plain(broker, request.auth_bytes).await,
        SaslState::Chosen(SaslMechanism::Scram(mechanism)) => {
            scram_first(broker, mechanism, &request.auth_bytes)
        }
        SaslState::ScramFinal(exchange) => scram_final(*exchange, &request.auth_bytes),
        SaslState::Handshake | SaslState::Done => {
            session.sasl = state;
            return Authenticated {
                response: SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(str_bytes(
                        "SaslAuthenticate without a SaslHandshake choosing a mechanism first",
                    ))),
                close: true,
            };
        }
    };
    match step {
        Step::Continue(exchange, challenge) => {
            session.sasl = SaslState::ScramFinal(exchange);
            Authenticated {
                response: SaslAuthenticateResponse::default().with_auth_bytes(challenge),
                close: false,
            }
        }
        Step::Done(user, last) => {
            tracing::debug!(peer = %session.peer, %user, "SASL authentication succeeded");
            broker.metrics.authentication(true);
            session.principal = Arc::new(Principal::user(user));
            session.sasl = SaslState::Done;
            Authenticated {
                response: SaslAuthenticateResponse::default().with_auth_bytes(last),
                close: false,
            }
        }
        Step::Failed(message) => {
            tracing::info!(peer = %session.peer, reason = %message, "SASL authentication failed");
            broker.metrics.authentication(false);
            tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
            Authenticated {
                response: SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(str_bytes(message))),
                close: true,
            }
        }
    }
}

/// One step of an exchange.
enum Step {
    /// Send the challenge and wait for the client's next message.
    Continue(Box<ServerExchange>, Bytes),
    /// Authenticated as this user; send the last message (empty for PLAIN).
    Done(String, Bytes),
    Failed(String),
}

/// The one message a failure shows the client, whichever of user or password was wrong.
fn invalid_credentials(mechanism: &str) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism {mechanism}"
    )
}

/// PLAIN: checks the password against the user's stored SCRAM credential. PBKDF2 takes
/// milliseconds, so it runs off the async runtime.
async fn plain(broker: &Arc<Broker>, message: Bytes) -> Step {
    let credentials = match parse_plain(&message) {
        Ok(credentials) => credentials,
        Err(e) => return Step::Failed(format!("malformed PLAIN message: {e}")),
    };
    let broker = broker.clone();
    let user = credentials.username.clone();
    let verified = tokio::task::spawn_blocking(move || {
        broker
            .users
            .verify_password(&credentials.username, credentials.password.as_bytes())
    })
    .await
    .unwrap_or(false);
    if verified {
        Step::Done(user, Bytes::new())
    } else {
        Step::Failed(invalid_credentials("PLAIN"))
    }
}

fn scram_first(broker: &Broker, mechanism: Mechanism, message: &[u8]) -> Step {
    let mut exchange = ServerExchange::new(mechanism);
    match exchange.client_first(message, |user| broker.users.credential(user, mechanism)) {
        Ok(server_first) => Step::Continue(Box::new(exchange), Bytes::from(server_first)),
        Err(e) => Step::Failed(e.to_string()),
    }
}

fn scram_final(mut exchange: ServerExchange, message: &[u8]) -> Step {
    match exchange.client_final(message) {
        Ok((server_final, user)) => Step::Done(user, Bytes::from(server_final)),
        Err(e) => Step::Failed(e.to_string()),
    }
}
