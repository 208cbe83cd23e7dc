//! Reading the services' own binary records (the tracker's checkpoints and heartbeats, the
//! guard's checkpoint chunk headers): little-endian fields, every read bounds-checked, so a
//! truncated or hostile record is an error, never a panic or a read past its end.

/// A record ended before a field it should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record is truncated")]
pub(crate) struct Truncated;

/// Reads fields off the front of a record.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Everything not read yet, which the reader then no longer holds.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let Some((head, tail)) = self.bytes.split_at_checked(n) else {
            return Err(Truncated);
        };
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Truncated> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Truncated> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_little_endian_in_order() {
        let mut record = vec![7u8];
        record.extend_from_slice(&0x0102u16.to_le_bytes());
        record.extend_from_slice(&(-5i32).to_le_bytes());
        record.extend_from_slice(&u64::MAX.to_le_bytes());
        record.extend_from_slice(b"tail");
        let mut r = Reader::new(&record);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.i32(), Ok(-5));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.remaining(), 4);
        assert_eq!(r.rest(), b"tail");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn a_field_past_the_end_is_truncated_and_consumes_nothing() {
        let record = [1u8, 2, 3];
        let mut r = Reader::new(&record);
        assert_eq!(r.u32(), Err(Truncated));
        assert_eq!(r.bytes(4), Err(Truncated));
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.bytes(3), Ok(&record[..]));
    }
}
