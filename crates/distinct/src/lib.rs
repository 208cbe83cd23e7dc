//! Distinct IP addresses, exactly and approximately.
//!
//! # Structures
//!
//! - [`DistinctIps`] is an exact set. IPv4 addresses are `u32`s, encoded as a
//!   [Roaring bitmap](https://roaringbitmap.org/): 10,000,000 random IPv4
//!   addresses take about 2.1 bytes each serialised (one 2-byte entry per
//!   address in 65,536 array containers plus 8 bytes of header per
//!   container). In memory a set is sorted chunks of `u32`s while it holds
//!   few addresses per /16 (where Roaring's ~48 bytes per container would
//!   dominate: a tracker's per-window and per-error-code sets) and Roaring
//!   bitmaps per /8 once it is dense; see the `v4` and `sparse` modules and
//!   `docs/BENCHMARKS.md` for the measured in-memory size.
//!   IPv6 addresses are `u128`s in a sorted vector (16 bytes each) with a
//!   small insert buffer, see the `v6` module. IPv4-mapped IPv6 addresses
//!   (`::ffff:a.b.c.d`) are counted as IPv4. Sets merge by union
//!   ([`DistinctIps::union_with`]), so per-partition sets give the exact
//!   global count.
//! - [`TaggedIps`] is an exact set with a `u32` tag beside each address (one
//!   byte while the tags of its /8 fit one, two below 65,535): a tracker
//!   partition keeps each address once with the views it belongs to, instead
//!   of once per view. At 10 M random IPv4 over three sets it takes 3.8-4.4
//!   bytes per address resident against [`DistinctIps`]' 3.5-3.8
//!   (`examples/tagged_memory.rs`). In memory only; a tracker checkpoints it
//!   as plain sets. [`EncodedSize`] counts what a plain set's encoding
//!   would take without building it.
//! - [`HyperLogLog`] is a fixed-size estimate (2^p one-byte registers, 16 KiB
//!   at the default p = 14) with relative standard error 1.04 / sqrt(2^p) ≈
//!   0.81% at p = 14 (so ~99.7% of estimates within ±2.4%). Linear counting
//!   corrects small cardinalities (below 2.5 · 2^p); the 64-bit fixed-seed
//!   SplitMix64 hash ([`hash_ip`]) makes estimates reproducible and
//!   sketches mergeable across processes.
//!
//! # Format of [`DistinctIps::serialize`] (version 1)
//!
//! All integers little-endian unless noted:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `FDIP` |
//! | 1 | version, `1` |
//! | 1 | flags, `0` (reserved) |
//! | 4 | `L`: length of the IPv4 bitmap |
//! | L | IPv4 bitmap in the [portable Roaring format](https://github.com/RoaringBitmap/RoaringFormatSpec) (cookie 12346, no run containers) |
//! | 8 | `N`: number of IPv6 addresses |
//! | 16·N | IPv6 addresses as big-endian `u128`, strictly increasing |
//!
//! Nothing may follow. [`DistinctIps::deserialize`] accepts exactly the
//! canonical encodings `serialize` writes (it re-encodes the bitmap to check)
//! and returns a [`DistinctError`] naming the problem for anything else; it
//! never panics and never allocates more than the input's size implies.
//!
//! # Format of [`HyperLogLog::serialize`] (version 1)
//!
//! Magic `FHLL`, version `1`, flags `0`, precision p (4..=18), then 2^p
//! register bytes, each at most 65 − p.

mod codec;
mod error;
pub mod hll;
mod ips;
mod sparse;
mod tagged;
mod v4;
mod v6;

pub use error::DistinctError;
pub use hll::{hash_ip, HyperLogLog};
pub use ips::{DistinctIps, EncodedSize, SET_MAGIC, SET_VERSION};
pub use tagged::TaggedIps;
