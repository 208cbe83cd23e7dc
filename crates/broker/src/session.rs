//! What the broker knows about one connection besides its bytes: where it came from, which
//! listener took it, who it acts as, and how far its SASL authentication got.

use std::net::SocketAddr;
use std::sync::Arc;

use freshet_security::Principal;

use crate::listener::Listener;
use crate::sasl::SaslState;

/// Per-connection security state, owned by the connection task and handed to every request.
#[derive(Debug)]
pub struct Session {
    pub peer: SocketAddr,
    pub listener: Arc<Listener>,
    /// Who requests act as: `User:ANONYMOUS` until authenticated, the SASL user after, or
    /// `User:<CN>` of a verified client certificate.
    pub principal: Arc<Principal>,
    /// How far SASL authentication got (SASL listeners only).
    pub sasl: SaslState,
}

impl Session {
    /// A session for a connection just accepted (and, on TLS listeners, handshaken).
    /// `tls_principal` is the principal of a verified client certificate, if any.
    pub fn new(
        peer: SocketAddr,
        listener: Arc<Listener>,
        tls_principal: Option<Principal>,
    ) -> Self {
        Session {
            peer,
            listener,
            principal: Arc::new(tls_principal.unwrap_or_else(Principal::anonymous)),
            sasl: SaslState::default(),
        }
    }

    /// Whether requests other than ApiVersions and the SASL ones may be served: always on
    /// listeners without SASL, after a successful SaslAuthenticate on the others.
    pub fn is_authenticated(&self) -> bool {
        !self.listener.protocol().uses_sasl() || matches!(self.sasl, SaslState::Done)
    }
}
