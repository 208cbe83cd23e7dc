//! A bounds-checked little reader over untrusted bytes: every read returns
//! [`DistinctError::Truncated`] instead of panicking.

use crate::DistinctError;

/// Cursor over an input slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DistinctError> {
        let available = self.remaining();
        if n > available {
            return Err(DistinctError::Truncated {
                what,
                offset: self.offset,
                needed: n,
                available,
            });
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DistinctError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DistinctError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u32_le(&mut self, what: &'static str) -> Result<u32, DistinctError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64_le(&mut self, what: &'static str) -> Result<u64, DistinctError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks the magic, version and reserved flags that start every encoding.
    pub(crate) fn header(&mut self, magic: [u8; 4], version: u8) -> Result<(), DistinctError> {
        let found = self.array::<4>("magic")?;
        if found != magic {
            return Err(DistinctError::BadMagic {
                expected: magic,
                found,
            });
        }
        let found = self.u8("version")?;
        if found != version {
            return Err(DistinctError::UnsupportedVersion {
                found,
                supported: version,
            });
        }
        match self.u8("flags")? {
            0 => Ok(()),
            flags => Err(DistinctError::ReservedFlags(flags)),
        }
    }

    /// Fails if anything is left.
    pub(crate) fn finish(self) -> Result<(), DistinctError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DistinctError::TrailingBytes(n)),
        }
    }
}
