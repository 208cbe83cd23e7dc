//! [`HyperLogLog`]: a fixed-size, mergeable distinct-count estimate.

use std::net::IpAddr;

use crate::codec::Reader;
use crate::DistinctError;

/// First bytes of a [`HyperLogLog`] encoding.
pub const HLL_MAGIC: [u8; 4] = *b"FHLL";
/// Version byte of the [`HyperLogLog`] encoding.
pub const HLL_VERSION: u8 = 1;
/// Smallest supported precision (16 registers).
pub const MIN_PRECISION: u8 = 4;
/// Largest supported precision (262,144 registers).
pub const MAX_PRECISION: u8 = 18;
/// Default precision: 16,384 registers, ~0.81% standard error.
pub const DEFAULT_PRECISION: u8 = 14;

/// Fixed seeds: the same address always hashes the same, in every process.
const SEED_V4: u64 = 0x5eed_0000_0000_0004;
const SEED_V6: u64 = 0x5eed_0000_0000_0006;

/// SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic 64-bit hash of an address. IPv4-mapped IPv6 hashes as its
/// IPv4 address, matching [`DistinctIps`](crate::DistinctIps).
pub fn hash_ip(ip: IpAddr) -> u64 {
    let v6 = match ip {
        IpAddr::V4(v4) => return mix64(SEED_V4 ^ u64::from(u32::from(v4))),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return mix64(SEED_V4 ^ u64::from(u32::from(v4)));
    }
    let bits = u128::from(v6);
    mix64(mix64(SEED_V6 ^ (bits >> 64) as u64) ^ bits as u64)
}

/// HyperLogLog (Flajolet et al. 2007) with a 64-bit hash (as in HLL++, so no
/// large-range correction is needed) and linear counting below 2.5 m.
///
/// Standard error ≈ 1.04 / sqrt(2^p): 0.81% at the default p = 14. The hash
/// has a fixed seed, so estimates are reproducible and sketches built on
/// different nodes merge exactly (the merge of two sketches equals the
/// sketch of the union).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperLogLog {
    precision: u8,
    registers: Vec<u8>,
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self::new()
    }
}

impl HyperLogLog {
    /// An empty sketch at [`DEFAULT_PRECISION`].
    pub fn new() -> Self {
        Self::with_precision(DEFAULT_PRECISION).expect("the default precision is in range")
    }

    /// An empty sketch with `2^precision` registers.
    pub fn with_precision(precision: u8) -> Result<Self, DistinctError> {
        if !(MIN_PRECISION..=MAX_PRECISION).contains(&precision) {
            return Err(DistinctError::BadPrecision(precision));
        }
        Ok(Self {
            precision,
            registers: vec![0; 1 << precision],
        })
    }

    /// The precision p (the sketch has 2^p registers).
    pub fn precision(&self) -> u8 {
        self.precision
    }

    /// Expected relative standard error, 1.04 / sqrt(2^p).
    pub fn standard_error(&self) -> f64 {
        1.04 / (self.registers.len() as f64).sqrt()
    }

    /// Largest register value: leading zeros of the 64 - p remaining bits, plus one.
    fn max_rank(&self) -> u8 {
        64 - self.precision + 1
    }

    /// Adds an address.
    pub fn insert(&mut self, ip: IpAddr) {
        self.insert_hash(hash_ip(ip));
    }

    /// Adds an already hashed item (hashes must be uniform 64-bit values).
    pub fn insert_hash(&mut self, hash: u64) {
        let index = (hash >> (64 - self.precision)) as usize;
        let rest = hash << self.precision;
        let rank = (rest.leading_zeros() as u8 + 1).min(self.max_rank());
        let register = &mut self.registers[index];
        *register = (*register).max(rank);
    }

    /// Adds everything `other` saw. Both must have the same precision.
    pub fn merge(&mut self, other: &HyperLogLog) -> Result<(), DistinctError> {
        if self.precision != other.precision {
            return Err(DistinctError::PrecisionMismatch {
                ours: self.precision,
                theirs: other.precision,
            });
        }
        for (mine, theirs) in self.registers.iter_mut().zip(&other.registers) {
            *mine = (*mine).max(*theirs);
        }
        Ok(())
    }

    /// The estimated number of distinct items.
    pub fn estimate(&self) -> u64 {
        let m = self.registers.len() as f64;
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in &self.registers {
            sum += f64::powi(2.0, -i32::from(r));
            zeros += usize::from(r == 0);
        }
        let raw = alpha(self.registers.len()) * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }

    /// Size in bytes of [`serialize`](Self::serialize)'s output.
    pub fn serialized_size(&self) -> usize {
        4 + 1 + 1 + 1 + self.registers.len()
    }

    /// Appends magic, version, flags (0), precision and the 2^p registers.
    pub fn serialize(&self, out: &mut Vec<u8>) {
        out.reserve(self.serialized_size());
        out.extend_from_slice(&HLL_MAGIC);
        out.extend_from_slice(&[HLL_VERSION, 0, self.precision]);
        out.extend_from_slice(&self.registers);
    }

    /// Decodes [`serialize`](Self::serialize)'s output, checking every register.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DistinctError> {
        let mut reader = Reader::new(bytes);
        reader.header(HLL_MAGIC, HLL_VERSION)?;
        let mut hll = Self::with_precision(reader.u8("precision")?)?;
        let registers = reader.take(hll.registers.len(), "registers")?;
        let max = hll.max_rank();
        if let Some(index) = registers.iter().position(|&r| r > max) {
            return Err(DistinctError::BadRegister {
                index,
                value: registers[index],
                max,
            });
        }
        hll.registers.copy_from_slice(registers);
        reader.finish()?;
        Ok(hll)
    }
}

/// The bias constant α_m.
fn alpha(m: usize) -> f64 {
    match m {
        16 => 0.673,
        32 => 0.697,
        64 => 0.709,
        _ => 0.7213 / (1.0 + 1.079 / m as f64),
    }
}
