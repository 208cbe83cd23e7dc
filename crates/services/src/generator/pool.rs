//! The seeded random source and the pool of device addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

/// SplitMix64: tiny, fast and fully specified by its constants, so a seed names the same
/// stream in every Freshet version (the `rand` crate reserves the right to change `StdRng`).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` without modulo bias (Lemire's multiply-and-reject); `bound` > 0.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        let mut product = u128::from(self.next_u64()) * u128::from(bound);
        if (product as u64) < bound {
            // Only low products can fall in the biased zone; redraw those.
            let threshold = bound.wrapping_neg() % bound;
            while (product as u64) < threshold {
                product = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (product >> 64) as u64
    }

    /// A generator for another purpose that does not share this one's stream.
    pub(crate) fn fork(&mut self) -> SplitMix64 {
        SplitMix64::new(self.next_u64() ^ 0x5DEE_CE66_D1CE_4E5B)
    }
}

/// `num_devices` distinct addresses: the IPv4 ones first, then the IPv6 ones. A device is its
/// index in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevicePool {
    v4: Vec<u32>,
    v6: Vec<u128>,
}

/// An address of the pool, borrowed so that picking one costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceAddr {
    V4(u32),
    V6(u128),
}

impl DevicePool {
    /// Draws `v4_count` distinct plausible IPv4 and `v6_count` distinct global IPv6 addresses.
    pub(crate) fn generate(rng: &mut SplitMix64, v4_count: usize, v6_count: usize) -> Self {
        DevicePool {
            v4: distinct_draws(rng, v4_count, draw_ipv4),
            v6: distinct_draws(rng, v6_count, draw_ipv6),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// The address of device `index` (< `len()`).
    pub(crate) fn get(&self, index: usize) -> DeviceAddr {
        match self.v4.get(index) {
            Some(&v4) => DeviceAddr::V4(v4),
            None => DeviceAddr::V6(self.v6[index - self.v4.len()]),
        }
    }
}

/// Distinct values by drawing, sorting and deduplicating, then topping up what duplicates
/// removed. Sorting keeps memory at the values themselves (4 or 16 bytes each), where a hash
/// set would triple it for a 10-million-device pool, and the result is still a function of
/// the seed alone.
fn distinct_draws<T: Ord + Copy>(
    rng: &mut SplitMix64,
    count: usize,
    draw: impl Fn(&mut SplitMix64) -> Option<T>,
) -> Vec<T> {
    let mut values = Vec::with_capacity(count);
    while values.len() < count {
        let missing = count - values.len();
        values.extend(std::iter::repeat_with(|| draw(rng)).flatten().take(missing));
        values.sort_unstable();
        values.dedup();
    }
    values
}

/// A unicast address outside 0.0.0.0/8 ("this network") and 224.0.0.0/3 (multicast, reserved,
/// broadcast), which no device would report as its own. `None` asks for another draw.
fn draw_ipv4(rng: &mut SplitMix64) -> Option<u32> {
    let candidate = (rng.next_u64() >> 32) as u32;
    let first_octet = candidate >> 24;
    (first_octet != 0 && first_octet < 224).then_some(candidate)
}

/// An address in 2000::/3, the global unicast range, so it is never an IPv4-mapped address
/// that a consumer might count as the IPv4 device it maps.
fn draw_ipv6(rng: &mut SplitMix64) -> Option<u128> {
    let random = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    Some((random >> 3) | (1 << 125))
}

impl DeviceAddr {
    /// Appends the textual form (`a.b.c.d`, or RFC 5952 for IPv6) to `out`.
    pub(crate) fn write_to(self, out: &mut Vec<u8>) {
        match self {
            DeviceAddr::V4(bits) => write_ipv4(bits, out),
            DeviceAddr::V6(bits) => {
                use std::io::Write;
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{}", Ipv6Addr::from(bits));
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn to_ip(self) -> std::net::IpAddr {
        match self {
            DeviceAddr::V4(bits) => Ipv4Addr::from(bits).into(),
            DeviceAddr::V6(bits) => Ipv6Addr::from(bits).into(),
        }
    }
}

/// Dotted quad by hand: the std formatter goes through `fmt` machinery that costs more than
/// the rest of an event together.
fn write_ipv4(bits: u32, out: &mut Vec<u8>) {
    let octets = Ipv4Addr::from(bits).octets();
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        write_small(octet, out);
    }
}

/// Decimal digits of a byte, no leading zeros.
pub(crate) fn write_small(value: u8, out: &mut Vec<u8>) {
    if value >= 100 {
        out.push(b'0' + value / 100);
    }
    if value >= 10 {
        out.push(b'0' + value / 10 % 10);
    }
    out.push(b'0' + value % 10);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::IpAddr;

    #[test]
    fn below_stays_in_range_and_covers_it_evenly() {
        let mut rng = SplitMix64::new(1);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[rng.below(7) as usize] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
        assert_eq!(rng.below(1), 0);
        assert!(rng.below(u64::MAX) < u64::MAX);
    }

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        // The published first output of SplitMix64 seeded with 0 pins the algorithm.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut fork = a.fork();
        assert_ne!(fork.next_u64(), a.next_u64());
    }

    #[test]
    fn pool_holds_distinct_plausible_addresses_of_both_families() {
        let mut rng = SplitMix64::new(7);
        let pool = DevicePool::generate(&mut rng, 20_000, 5_000);
        assert_eq!(pool.len(), 25_000);
        let ips: HashSet<IpAddr> = (0..pool.len()).map(|i| pool.get(i).to_ip()).collect();
        assert_eq!(ips.len(), 25_000);
        assert_eq!(ips.iter().filter(|ip| ip.is_ipv6()).count(), 5_000);
        for ip in &ips {
            match ip {
                IpAddr::V4(v4) => {
                    assert!(!v4.is_multicast() && !v4.is_broadcast() && v4.octets()[0] != 0)
                }
                IpAddr::V6(v6) => {
                    assert_eq!(v6.segments()[0] >> 13, 0b001, "{v6}");
                    assert!(v6.to_ipv4_mapped().is_none());
                }
            }
        }
        let again = DevicePool::generate(&mut SplitMix64::new(7), 20_000, 5_000);
        assert_eq!(pool, again);
    }

    #[test]
    fn a_pool_nearly_as_large_as_its_space_still_fills() {
        // Drawing 200 distinct values from 256 needs several top-up rounds.
        let mut rng = SplitMix64::new(3);
        let values = distinct_draws(&mut rng, 200, |rng| Some(rng.below(256)));
        assert_eq!(values.len(), 200);
        assert!(values.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn addresses_render_like_std() {
        let mut rng = SplitMix64::new(11);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let bits = (rng.next_u64() >> 32) as u32;
            for addr in [DeviceAddr::V4(bits), DeviceAddr::V6(u128::from(bits) << 90)] {
                out.clear();
                addr.write_to(&mut out);
                assert_eq!(
                    std::str::from_utf8(&out).expect("ascii"),
                    addr.to_ip().to_string()
                );
            }
        }
    }
}
