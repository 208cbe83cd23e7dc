//! The one error type of this crate.

/// Why bytes could not be decoded, or two estimators could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistinctError {
    /// The input ended before a field was complete.
    #[error(
        "truncated input: {what} needs {needed} bytes at offset {offset}, only {available} left"
    )]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Byte offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// The input does not start with the expected magic.
    #[error("bad magic: expected {expected:?}, found {found:?}")]
    BadMagic {
        /// The magic this decoder accepts.
        expected: [u8; 4],
        /// The first four bytes of the input.
        found: [u8; 4],
    },
    /// The format version is not one this build understands.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version byte of the input.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// Reserved flag bits are set.
    #[error("reserved flags byte must be 0, found {0:#04x}")]
    ReservedFlags(u8),
    /// The IPv4 Roaring bitmap is invalid or not in canonical form.
    #[error("invalid IPv4 bitmap: {0}")]
    InvalidV4Bitmap(String),
    /// The IPv6 addresses are not strictly increasing.
    #[error(
        "IPv6 address #{index} is not greater than the one before it (must be sorted and unique)"
    )]
    V6NotSorted {
        /// Index of the first offending address.
        index: u64,
    },
    /// The declared IPv6 count does not match the bytes that follow.
    #[error(
        "IPv6 section declares {count} addresses ({count}*16 bytes) but {available} bytes follow"
    )]
    V6LengthMismatch {
        /// Declared number of addresses.
        count: u64,
        /// Bytes after the count.
        available: usize,
    },
    /// Bytes follow the end of the encoding.
    #[error("{0} trailing bytes after the end of the encoding")]
    TrailingBytes(usize),
    /// A HyperLogLog precision outside the supported range.
    #[error("HyperLogLog precision {0} outside {min}..={max}", min = crate::hll::MIN_PRECISION, max = crate::hll::MAX_PRECISION)]
    BadPrecision(u8),
    /// Two HyperLogLogs of different precision cannot be merged.
    #[error("cannot merge HyperLogLogs of precision {ours} and {theirs}")]
    PrecisionMismatch {
        /// Precision of the receiver.
        ours: u8,
        /// Precision of the argument.
        theirs: u8,
    },
    /// A HyperLogLog register holds a value no hash can produce.
    #[error("HyperLogLog register {index} holds {value}, above the maximum {max}")]
    BadRegister {
        /// Register index.
        index: usize,
        /// Value found.
        value: u8,
        /// Largest valid value at this precision.
        max: u8,
    },
}
