//! Sign-in tokens: stateless and signed, so any process holding the key can check one without
//! a session table, and a restart signs nobody out.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))`, the
//! payload the JSON `{"sub": <user>, "exp": <unix seconds>}` (base64url without padding). The
//! MAC covers the text that travels, so a token is checked before anything in it is decoded.
//!
//! The key is [`KEY_BYTES`] random bytes in `<data-dir>/security/`[`KEY_FILE`] (mode 0600),
//! created at first start. Deleting the file (and restarting) invalidates every token issued.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use freshet_security::files::StoreError;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The key's file, in the data directory's `security/` folder beside the users and ACLs.
pub const KEY_FILE: &str = "http-token.key";
/// HMAC-SHA256 is as strong as its key up to the hash's size.
pub const KEY_BYTES: usize = 32;

/// What a token says: whose it is and until when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
}

/// Why a token was refused. The messages are for the client holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not two base64url parts, or a payload that is not the JSON of [`Claims`].
    Malformed,
    /// Signed with another key, or changed since it was signed.
    BadSignature,
    Expired {
        at: u64,
    },
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("the token is not a Freshet token"),
            TokenError::BadSignature => {
                f.write_str("the token's signature is wrong (changed, or from another server)")
            }
            TokenError::Expired { at } => write!(f, "the token expired at {}", rfc3339(*at)),
        }
    }
}

/// The signing key. Never printed.
#[derive(Clone)]
pub struct TokenKey([u8; KEY_BYTES]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

impl TokenKey {
    /// A key no other process has: its tokens die with the process (tests, or a server
    /// without a data directory).
    pub fn random() -> Self {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        TokenKey(key)
    }

    /// The key of `data_dir`, created on first use.
    ///
    /// Creation never replaces a file: the key is written to a temporary file, synced, and
    /// hard-linked to its name, which fails if another process created it meanwhile (a
    /// rename would replace theirs). Both then use the key on disk.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join("security");
        let path = dir.join(KEY_FILE);
        if let Some(key) = read_key(&path)? {
            return Ok(key);
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error(&dir, e))?;
        create_key_file(&dir, &path)?;
        read_key(&path)?.ok_or_else(|| {
            io_error(
                &path,
                io::Error::new(ErrorKind::NotFound, "vanished right after it was created"),
            )
        })
    }

    /// A token for `user`, valid until `expires` (unix seconds).
    pub fn sign(&self, user: &str, expires: u64) -> String {
        let claims = Claims {
            sub: user.to_owned(),
            exp: expires,
        };
        // Two plain fields: serialising them cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let signature =
            URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The claims of a token this key signed that has not expired at `now` (unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(payload.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if now >= claims.exp {
            return Err(TokenError::Expired { at: claims.exp });
        }
        Ok(claims)
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(data);
        mac
    }
}

/// Unix seconds as RFC 3339 UTC (`2024-09-18T13:59:02.000Z`).
pub fn rfc3339(unix_seconds: u64) -> String {
    let millis = i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| s.checked_mul(1000));
    millis
        .and_then(freshet_timestamp::NormalizedTs::from_unix_millis)
        .map_or_else(|| unix_seconds.to_string(), |ts| ts.as_str().to_owned())
}

fn io_error(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The key in `path`; `None` when there is no such file.
fn read_key(path: &Path) -> Result<Option<TokenKey>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
        StoreError::Invalid(format!(
            "{} holds {} bytes, not the {KEY_BYTES} of a token key; delete it to make a new \
             key (every token issued so far stops working)",
            path.display(),
            bytes.len()
        ))
    })?;
    warn_if_others_can_read(path);
    Ok(Some(TokenKey(key)))
}

fn warn_if_others_can_read(path: &Path) {
    let mode = fs::metadata(path).map_or(0, |m| m.permissions().mode());
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the HTTP token key is readable by other users; anyone who reads it can sign in as any user (chmod 600 it)"
        );
    }
}

fn create_key_file(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let temp = temp_path(dir);
    let written = write_synced(&temp, &TokenKey::random().0);
    let linked = written.and_then(|()| match fs::hard_link(&temp, path) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = fs::remove_file(&temp);
    linked.map_err(|e| io_error(path, e))?;
    // The new name survives a crash only once the directory is synced.
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// A name no other process or thread uses at the same time.
fn temp_path(dir: &Path) -> PathBuf {
    let mut nonce = [0u8; 8];
    rand::rng().fill_bytes(&mut nonce);
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!(".{KEY_FILE}.{nonce}.tmp"))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let key = TokenKey::random();
        let token = key.sign("alice", 1_000);
        let claims = key.verify(&token, 999).expect("valid");
        assert_eq!(claims.sub, "alice");
        assert_eq!(
            key.verify(&token, 1_000),
            Err(TokenError::Expired { at: 1_000 })
        );
    }

    #[test]
    fn a_changed_or_foreign_token_is_refused() {
        let key = TokenKey::random();
        let token = key.sign("alice", u64::MAX);
        let (_, signature) = token.split_once('.').expect("two parts");
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"root","exp":18446744073709551615}"#);
        assert_eq!(
            key.verify(&format!("{forged}.{signature}"), 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            TokenKey::random().verify(&token, 0),
            Err(TokenError::BadSignature)
        );
        for malformed in ["", "abc", "a.b.c", "!!.!!"] {
            assert!(key.verify(malformed, 0).is_err(), "{malformed}");
        }
    }

    #[test]
    fn the_key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = TokenKey::load_or_create(dir.path()).expect("create");
        let path = dir.path().join("security").join(KEY_FILE);
        let mode = fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = TokenKey::load_or_create(dir.path()).expect("load");
        assert_eq!(first.0, again.0);
        let token = first.sign("alice", u64::MAX);
        assert!(again.verify(&token, 0).is_ok(), "tokens survive a restart");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("security"))
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("security")).expect("dir");
        fs::write(dir.path().join("security").join(KEY_FILE), b"short").expect("write");
        let error = TokenKey::load_or_create(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("5 bytes"), "{error}");
    }

    #[test]
    fn expiry_is_shown_in_rfc3339() {
        assert_eq!(rfc3339(1_726_667_942), "2024-09-18T13:59:02.000Z");
    }
}
