//! The guard's secret: the HMAC-SHA256 key that signs every record the guard writes
//! ([`super::mac`]). A node refuses records whose MAC its own key does not reproduce, so every
//! guard node of a cluster must hold the same key.
//!
//! It comes from `--guard-secret` (hex or base64, at least [`MIN_SECRET_BYTES`]), or from
//! [`SECRET_FILE`] in the data directory, created with [`NEW_SECRET_BYTES`] random bytes at
//! first start (mode 0600). A node on another machine is given the file's content with
//! `--guard-secret`.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::GuardError;

/// The keyed MAC the guard signs with.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Name of the secret file in the data directory.
pub const SECRET_FILE: &str = "guard.secret";
/// Shortest key accepted: HMAC-SHA256 is only as strong as its key up to 32 bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Size of a key created at first start.
pub const NEW_SECRET_BYTES: usize = 32;

/// A key the guard signs and checks records with. Cheap to clone; never printed.
#[derive(Clone)]
pub struct GuardSecret {
    /// The key schedule, done once: each MAC starts from a clone of it.
    keyed: HmacSha256,
}

impl std::fmt::Debug for GuardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuardSecret(fingerprint {})", self.fingerprint())
    }
}

impl GuardSecret {
    /// A fresh random key, for a node whose records no other node reads (tests, benchmarks).
    pub fn random() -> GuardSecret {
        let keyed = HmacSha256::new_from_slice(&random_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        GuardSecret { keyed }
    }

    /// A key of at least [`MIN_SECRET_BYTES`] bytes.
    pub fn from_bytes(key: &[u8]) -> Result<GuardSecret, GuardError> {
        if key.len() < MIN_SECRET_BYTES {
            return Err(GuardError::SecretTooShort { bytes: key.len() });
        }
        let keyed = HmacSha256::new_from_slice(key)
            .map_err(|e| GuardError::Invalid(format!("the guard secret: {e}")))?;
        Ok(GuardSecret { keyed })
    }

    /// A key written as hex (only hex digits, an even count) or else as base64 (standard
    /// alphabet, padding optional). Errors never quote the text: it is a secret.
    pub fn parse(text: &str) -> Result<GuardSecret, GuardError> {
        let text = text.trim();
        let key = decode_hex(text)
            .or_else(|| decode_base64(text))
            .ok_or(GuardError::SecretEncoding)?;
        GuardSecret::from_bytes(&key)
    }

    /// The key in `path`, created there (with its directory) if the file does not exist.
    ///
    /// Creation never replaces a file: the key is written to a temporary file in the same
    /// directory, synced, and hard-linked to `path`, which fails if `path` appeared
    /// meanwhile (a rename would silently replace it). Two nodes starting together on one
    /// data directory therefore both end up with the key that is on disk.
    pub fn load_or_create(path: &Path) -> Result<GuardSecret, GuardError> {
        if let Some(secret) = read_secret_file(path)? {
            return Ok(secret);
        }
        create_secret_file(path)
    }

    /// A short, non-secret digest of the key (the MAC of a fixed text), for logs: nodes with
    /// the same fingerprint share the key.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.keyed();
        mac.update(b"freshet-guard-secret-fingerprint");
        hex(&mac.finalize().into_bytes()[..6])
    }

    pub(crate) fn keyed(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

/// Bytes from the thread's CSPRNG (ChaCha, seeded and reseeded from the operating system).
fn random_bytes() -> [u8; NEW_SECRET_BYTES] {
    let mut key = [0u8; NEW_SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    key
}

/// `doing` on `path` failed with `source`.
fn file_error(doing: &'static str, path: &Path, source: std::io::Error) -> GuardError {
    GuardError::SecretFile {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

/// The key in `path`; `None` when there is no such file.
fn read_secret_file(path: &Path) -> Result<Option<GuardSecret>, GuardError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error("reading the guard secret", path, e)),
    };
    warn_if_others_can_read(path);
    GuardSecret::parse(&text)
        .map(Some)
        .map_err(|source| GuardError::SecretInFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

fn warn_if_others_can_read(path: &Path) {
    let mode = fs::metadata(path).map_or(0, |m| m.permissions().mode());
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the guard secret file is readable by other users; anyone who reads it can forge blocks and unblocks (chmod 600 it)"
        );
    }
}

fn create_secret_file(path: &Path) -> Result<GuardSecret, GuardError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| file_error("creating directory", dir, e))?;
    let key = random_bytes();
    let temp = dir.join(format!(
        ".{SECRET_FILE}.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let linked = write_private(&temp, &key).and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            sync_dir(dir);
            tracing::info!(path = %path.display(), "created the guard secret");
            GuardSecret::from_bytes(&key)
        }
        // Another node created it first: theirs is the one on disk, so it is the one to use.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            read_secret_file(path)?.ok_or_else(|| {
                file_error(
                    "reading the guard secret another node created",
                    path,
                    ErrorKind::NotFound.into(),
                )
            })
        }
        Err(e) => Err(file_error("creating the guard secret", path, e)),
    }
}

/// Writes the key as hex to a new file only its owner can read, and syncs it, so the file
/// linked into place is complete even after a crash.
fn write_private(path: &Path, key: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{}\n", hex(key)).as_bytes())?;
    file.sync_all()
}

/// Makes the new directory entry durable; failing only risks creating a new key after a crash
/// before any record was signed, so it is logged, not fatal.
fn sync_dir(dir: &Path) {
    if let Err(e) = freshet_os::files::sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "syncing the guard secret's directory");
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Hex digits (either case) to bytes; `None` when `text` is not an even number of them.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_keys_parse_to_the_same_key() {
        let key: Vec<u8> = (0u8..32).collect();
        let from_hex = GuardSecret::parse(&hex(&key)).expect("hex");
        let from_upper = GuardSecret::parse(&hex(&key).to_uppercase()).expect("upper hex");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
        let from_b64 = GuardSecret::parse(&format!(" {b64}\n")).expect("base64");
        let unpadded = GuardSecret::parse(b64.trim_end_matches('=')).expect("no padding");
        let fingerprint = from_hex.fingerprint();
        for other in [from_upper, from_b64, unpadded] {
            assert_eq!(other.fingerprint(), fingerprint);
        }
    }

    #[test]
    fn short_or_garbled_keys_are_refused_without_quoting_them() {
        let short = GuardSecret::parse(&hex(&[7u8; 31])).expect_err("31 bytes");
        assert!(short.to_string().contains("at least 32"), "{short}");
        let garbled = GuardSecret::parse("not a key at all!").expect_err("garbled");
        assert!(!garbled.to_string().contains("not a key"), "{garbled}");
    }

    #[test]
    fn debug_shows_only_the_fingerprint() {
        let key = [0xabu8; 32];
        let secret = GuardSecret::from_bytes(&key).expect("key");
        let printed = format!("{secret:?}");
        assert!(!printed.contains(&hex(&key)[..8]), "{printed}");
        assert!(printed.contains(&secret.fingerprint()));
    }
}
