//! What a guard MAC covers, and how records without a valid one are refused.
//!
//! Every record the guard writes to `login-attempts` and `blocked-users` carries
//! `"mac": "<64 hex digits>"`, the HMAC-SHA256 ([`GuardSecret`]) of its canonical encoding;
//! checkpoints carry theirs in the [`MAC_HEADER`] header. The MAC is computed over the
//! record's meaning, never over serialised JSON, whose field order or spacing another
//! serializer version could change.
//!
//! # The canonical encoding
//!
//! A sequence of items, each written as its length (4 bytes, big-endian) then its bytes; an
//! absent optional item is the length `0xFFFF_FFFF` and no bytes. The items are:
//!
//! 1. the version tag [`VERSION`];
//! 2. the record kind: `attempt.login`, `attempt.unblock`, `block.set`, `block.lift` or
//!    `checkpoint`, so a MAC made for one kind never validates another;
//! 3. the Kafka record key (absent when the record has none), so a record cannot be moved
//!    to another user's key or partition;
//! 4. the kind's fields in a fixed order (see each record type's `canonical`). Integers are
//!    8 bytes big-endian (two's complement), booleans 1 byte (0 or 1), an attempt id its 16
//!    bytes, text its UTF-8 bytes.
//!
//! A change to the encoding gets a new version tag; records with another tag are refused.

use hmac::Mac;

use super::secret::{decode_hex, hex, GuardSecret};

/// First item of every canonical encoding.
pub const VERSION: &[u8] = b"freshet-guard-mac/v1";
/// Header of a checkpoint record that holds its MAC (hex).
pub const MAC_HEADER: &str = "freshet.mac";
/// Length of a MAC in bytes (hex: twice as many digits).
const MAC_BYTES: usize = 32;

/// Why a record was refused: the guard did not write it, or not in this form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// No MAC: written by something other than the guard (or before records were signed).
    MissingMac,
    /// A MAC that is malformed or does not match the record: forged, altered, or signed
    /// with another node's secret.
    InvalidMac,
    /// Not a record of the expected shape at all.
    Unreadable,
    /// A tombstone on `blocked-users`: the guard lifts blocks with signed records, never
    /// with tombstones.
    Tombstone,
}

impl Rejection {
    /// Every rejection, in the order metrics list them.
    pub const ALL: [Rejection; 4] = [
        Rejection::MissingMac,
        Rejection::InvalidMac,
        Rejection::Unreadable,
        Rejection::Tombstone,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::MissingMac => "missing_mac",
            Rejection::InvalidMac => "invalid_mac",
            Rejection::Unreadable => "unreadable",
            Rejection::Tombstone => "tombstone",
        }
    }

    /// The reason written to a dead-letter record.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::MissingMac => "missing mac",
            Rejection::InvalidMac => "invalid mac",
            Rejection::Unreadable => "not a guard record",
            Rejection::Tombstone => "tombstone",
        }
    }
}

/// The byte string a MAC covers (see the module docs).
#[derive(Debug, Clone)]
pub struct Canonical(Vec<u8>);

impl Canonical {
    /// The version tag, the record kind and the record's Kafka key.
    pub fn new(kind: &str, key: Option<&[u8]>) -> Canonical {
        let mut canonical = Canonical(Vec::with_capacity(160));
        canonical.push(Some(VERSION));
        canonical.push(Some(kind.as_bytes()));
        canonical.push(key);
        canonical
    }

    pub fn bytes(mut self, value: &[u8]) -> Canonical {
        self.push(Some(value));
        self
    }

    pub fn text(self, value: &str) -> Canonical {
        self.bytes(value.as_bytes())
    }

    pub fn int(self, value: i64) -> Canonical {
        self.bytes(&value.to_be_bytes())
    }

    pub fn uint(self, value: u64) -> Canonical {
        self.bytes(&value.to_be_bytes())
    }

    pub fn flag(self, value: bool) -> Canonical {
        self.bytes(&[u8::from(value)])
    }

    pub fn optional_int(mut self, value: Option<i64>) -> Canonical {
        self.push(
            value
                .map(i64::to_be_bytes)
                .as_ref()
                .map(<[u8; 8]>::as_slice),
        );
        self
    }

    fn push(&mut self, item: Option<&[u8]>) {
        match item {
            // Guard records are far below 4 GiB; saturating keeps this total all the same.
            Some(bytes) => {
                let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX - 1);
                self.0.extend_from_slice(&length.to_be_bytes());
                self.0.extend_from_slice(bytes);
            }
            None => self.0.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
    }

    /// The encoded bytes (tests, and tools that check MACs themselves).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The MAC of `canonical`, as hex.
pub fn sign(secret: &GuardSecret, canonical: &Canonical) -> String {
    let mut mac = secret.keyed();
    mac.update(canonical.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Checks `mac` (hex, as found in the record) against `canonical`, in constant time.
pub fn verify(
    secret: &GuardSecret,
    canonical: &Canonical,
    mac: Option<&str>,
) -> Result<(), Rejection> {
    let mac = mac.ok_or(Rejection::MissingMac)?;
    let tag = decode_hex(mac)
        .filter(|tag| tag.len() == MAC_BYTES)
        .ok_or(Rejection::InvalidMac)?;
    let mut expected = secret.keyed();
    expected.update(canonical.as_bytes());
    expected
        .verify_slice(&tag)
        .map_err(|_| Rejection::InvalidMac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> GuardSecret {
        GuardSecret::from_bytes(&[byte; 32]).expect("key")
    }

    #[test]
    fn items_are_length_prefixed_so_boundaries_cannot_shift() {
        let ab_c = Canonical::new("k", None).text("ab").text("c");
        let a_bc = Canonical::new("k", None).text("a").text("bc");
        assert_ne!(ab_c.as_bytes(), a_bc.as_bytes());
        let absent = Canonical::new("k", None);
        let empty = Canonical::new("k", Some(b""));
        assert_ne!(absent.as_bytes(), empty.as_bytes());
        let none = Canonical::new("k", None).optional_int(None);
        let zero = Canonical::new("k", None).optional_int(Some(0));
        assert_ne!(none.as_bytes(), zero.as_bytes());
    }

    #[test]
    fn the_encoding_is_fixed() {
        let canonical = Canonical::new("attempt.login", Some(b"bob"))
            .text("bob")
            .int(-1)
            .flag(true);
        let mut expected = Vec::new();
        expected.extend_from_slice(&20u32.to_be_bytes());
        expected.extend_from_slice(b"freshet-guard-mac/v1");
        expected.extend_from_slice(&13u32.to_be_bytes());
        expected.extend_from_slice(b"attempt.login");
        expected.extend_from_slice(&3u32.to_be_bytes());
        expected.extend_from_slice(b"bob");
        expected.extend_from_slice(&3u32.to_be_bytes());
        expected.extend_from_slice(b"bob");
        expected.extend_from_slice(&8u32.to_be_bytes());
        expected.extend_from_slice(&[0xff; 8]);
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.push(1);
        assert_eq!(canonical.as_bytes(), expected.as_slice());
    }

    #[test]
    fn a_mac_verifies_only_with_its_key_and_its_record() {
        let canonical = Canonical::new("block.set", Some(b"bob")).text("bob");
        let mac = sign(&secret(1), &canonical);
        assert_eq!(mac.len(), 64);
        assert_eq!(verify(&secret(1), &canonical, Some(&mac)), Ok(()));
        assert_eq!(
            verify(&secret(2), &canonical, Some(&mac)),
            Err(Rejection::InvalidMac)
        );
        let other = Canonical::new("block.set", Some(b"bob")).text("eve");
        assert_eq!(
            verify(&secret(1), &other, Some(&mac)),
            Err(Rejection::InvalidMac)
        );
        assert_eq!(
            verify(&secret(1), &canonical, None),
            Err(Rejection::MissingMac)
        );
        for malformed in ["", "zz", &mac[..62], &format!("{mac}00")] {
            assert_eq!(
                verify(&secret(1), &canonical, Some(malformed)),
                Err(Rejection::InvalidMac),
                "{malformed:?}"
            );
        }
    }
}
