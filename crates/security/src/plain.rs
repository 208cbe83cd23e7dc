//! SASL PLAIN (RFC 4616): the client sends `[authzid] NUL authcid NUL passwd` in one message.
//!
//! Only parsing lives here; the password is checked against the user's stored SCRAM
//! credential ([`crate::users::UserStore::verify_password`]).

/// What a PLAIN message carries.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Empty, or the user name itself (Kafka refuses acting as another user).
    pub authzid: String,
    pub username: String,
    pub password: String,
}

// The password must not reach a log through a stray `{:?}`.
impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a PLAIN message is refused; the text may be sent to the client (Kafka's wording where
/// Kafka has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("Invalid SASL/PLAIN response: expected 3 tokens, got {0}")]
    WrongTokenCount(usize),
    #[error("Invalid SASL/PLAIN response: not valid UTF-8")]
    NotUtf8,
    #[error("Authentication failed: username not specified")]
    EmptyUsername,
    #[error("Authentication failed: password not specified")]
    EmptyPassword,
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    AuthorizationIdMismatch,
}

pub fn parse_plain(message: &[u8]) -> Result<PlainCredentials, PlainError> {
    let tokens: Vec<&[u8]> = message.split(|&byte| byte == 0).collect();
    let [authzid, username, password] = tokens[..] else {
        return Err(PlainError::WrongTokenCount(tokens.len()));
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| PlainError::NotUtf8)
    };
    let credentials = PlainCredentials {
        authzid: text(authzid)?,
        username: text(username)?,
        password: text(password)?,
    };
    if credentials.username.is_empty() {
        return Err(PlainError::EmptyUsername);
    }
    if credentials.password.is_empty() {
        return Err(PlainError::EmptyPassword);
    }
    if !credentials.authzid.is_empty() && credentials.authzid != credentials.username {
        return Err(PlainError::AuthorizationIdMismatch);
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_an_authzid() {
        let plain = parse_plain(b"\0alice\0secret").expect("valid");
        assert_eq!(plain.authzid, "");
        assert_eq!(plain.username, "alice");
        assert_eq!(plain.password, "secret");
        let plain = parse_plain(b"alice\0alice\0p\xc3\xa4ss").expect("valid");
        assert_eq!(plain.authzid, "alice");
        assert_eq!(plain.password, "päss");
    }

    #[test]
    fn refuses_malformed_messages() {
        assert_eq!(parse_plain(b""), Err(PlainError::WrongTokenCount(1)));
        assert_eq!(
            parse_plain(b"alice\0secret"),
            Err(PlainError::WrongTokenCount(2))
        );
        assert_eq!(
            parse_plain(b"\0alice\0se\0cret"),
            Err(PlainError::WrongTokenCount(4))
        );
        assert_eq!(parse_plain(b"\0\0secret"), Err(PlainError::EmptyUsername));
        assert_eq!(parse_plain(b"\0alice\0"), Err(PlainError::EmptyPassword));
        assert_eq!(parse_plain(b"\0al\xffice\0x"), Err(PlainError::NotUtf8));
        assert_eq!(
            parse_plain(b"bob\0alice\0secret"),
            Err(PlainError::AuthorizationIdMismatch)
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let plain = parse_plain(b"\0alice\0hunter2").expect("valid");
        assert!(!format!("{plain:?}").contains("hunter2"));
    }
}
