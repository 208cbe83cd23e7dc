//! Freshet's security model, shared by the broker (Kafka listener), the services' clients and
//! the HTTP API.
//!
//! - [`Principal`]: who a connection or HTTP request acts as (`User:alice`, `User:ANONYMOUS`).
//! - [`SecurityProtocol`]: Kafka's `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT,
//!   SASL_SSL), the broker's listener names and the clients' setting.
//! - [`scram`]: SCRAM-SHA-256/512 (RFC 5802/7677) server exchanges, credential derivation,
//!   and PLAIN verification against a stored SCRAM credential. No password is ever stored.
//! - [`plain`]: parsing SASL PLAIN (RFC 4616) messages.
//! - [`users`]: the durable user store (`<data-dir>/security/users.json`), shared by the
//!   broker, `freshet users` and AlterUserScramCredentials.
//! - [`acl`]: Kafka's ACL model (resources, patterns, operations, allow/deny) and the
//!   authorizer, stored durably in `<data-dir>/security/acls.json`.
//! - [`files`]: the one way both stores write: under a lock file, to a temporary file that is
//!   fsynced and renamed over the old one, then the directory fsynced.

pub mod acl;
pub mod files;
pub mod plain;
pub mod protocol;
pub mod scram;
pub mod users;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use protocol::SecurityProtocol;

/// Who a request acts as, in Kafka's `Type:name` form. Freshet uses only the `User` type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// The principal of a connection nobody authenticated (PLAINTEXT, or SSL without a client
    /// certificate), as Kafka names it.
    pub fn anonymous() -> Self {
        Principal::user("ANONYMOUS")
    }

    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: "User".to_owned(),
            name: name.into(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind == "User" && self.name == "ANONYMOUS"
    }

    /// Parses `Type:name` (the type is everything before the first `:`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(Principal {
                kind: kind.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(format!(
                "principal {text:?} is not of the form Type:name (for example User:alice)"
            )),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_round_trip_through_text() {
        let alice = Principal::parse("User:alice").expect("valid");
        assert_eq!(alice, Principal::user("alice"));
        assert_eq!(alice.to_string(), "User:alice");
        assert_eq!(Principal::parse("User:a:b").expect("valid").name, "a:b");
        assert!(Principal::parse("alice").is_err());
        assert!(Principal::parse("User:").is_err());
        assert!(Principal::anonymous().is_anonymous());
    }
}
