//! HyperLogLog accuracy, merge and wire format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use freshet_distinct::{DistinctError, HyperLogLog};
use proptest::prelude::*;

use crate::common;
use common::SplitMix64;

/// `n` distinct IPv4 addresses (a multiplicative bijection of 0..n).
fn distinct_v4(n: u32) -> impl Iterator<Item = IpAddr> {
    (0..n).map(|i| IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761))))
}

fn relative_error(estimate: u64, truth: u64) -> f64 {
    (estimate as f64 - truth as f64).abs() / truth as f64
}

#[test]
fn within_three_percent_at_10k_100k_1m() {
    for n in [10_000u32, 100_000, 1_000_000] {
        let mut hll = HyperLogLog::new();
        // Every address twice: duplicates must not count.
        distinct_v4(n)
            .chain(distinct_v4(n))
            .for_each(|ip| hll.insert(ip));
        let error = relative_error(hll.estimate(), u64::from(n));
        assert!(
            error < 0.03,
            "n = {n}: estimate {} is {:.2}% off",
            hll.estimate(),
            error * 100.0
        );
    }
}

#[test]
fn within_three_percent_for_random_ipv6() {
    let mut rng = SplitMix64(6);
    let mut hll = HyperLogLog::new();
    for _ in 0..200_000 {
        let bits = u128::from(rng.next()) << 64 | u128::from(rng.next());
        hll.insert(IpAddr::V6(Ipv6Addr::from(bits)));
    }
    assert!(
        relative_error(hll.estimate(), 200_000) < 0.03,
        "estimate {}",
        hll.estimate()
    );
}

#[test]
fn small_counts_are_nearly_exact() {
    let mut hll = HyperLogLog::new();
    assert_eq!(hll.estimate(), 0);
    distinct_v4(100).for_each(|ip| hll.insert(ip));
    assert!(
        hll.estimate().abs_diff(100) <= 1,
        "estimate {}",
        hll.estimate()
    );
}

#[test]
fn mapped_ipv6_counts_as_ipv4() {
    let mut a = HyperLogLog::new();
    let mut b = HyperLogLog::new();
    a.insert("192.0.2.1".parse().expect("valid"));
    b.insert("::ffff:192.0.2.1".parse().expect("valid"));
    assert_eq!(a, b);
}

#[test]
fn precision_is_checked() {
    assert_eq!(
        HyperLogLog::with_precision(3),
        Err(DistinctError::BadPrecision(3))
    );
    assert_eq!(
        HyperLogLog::with_precision(19),
        Err(DistinctError::BadPrecision(19))
    );
    let mut a = HyperLogLog::new();
    let b = HyperLogLog::with_precision(10).expect("in range");
    assert_eq!(
        a.merge(&b),
        Err(DistinctError::PrecisionMismatch {
            ours: 14,
            theirs: 10
        })
    );
    assert!((a.standard_error() - 0.008125).abs() < 1e-6);
}

#[test]
fn decoding_rejects_bad_input() {
    let mut hll = HyperLogLog::with_precision(4).expect("in range");
    distinct_v4(50).for_each(|ip| hll.insert(ip));
    let mut bytes = Vec::new();
    hll.serialize(&mut bytes);
    assert_eq!(bytes.len(), hll.serialized_size());
    for end in 0..bytes.len() {
        assert!(
            HyperLogLog::deserialize(&bytes[..end]).is_err(),
            "prefix of {end} bytes decoded"
        );
    }
    let mut too_big = bytes.clone();
    too_big[7] = 62;
    assert_eq!(
        HyperLogLog::deserialize(&too_big),
        Err(DistinctError::BadRegister {
            index: 0,
            value: 62,
            max: 61
        })
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        HyperLogLog::deserialize(&trailing),
        Err(DistinctError::TrailingBytes(1))
    );
    assert_eq!(HyperLogLog::deserialize(&bytes), Ok(hll));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_equals_sketch_of_union(a in proptest::collection::vec(any::<u32>(), 0..3000), b in proptest::collection::vec(any::<u128>(), 0..3000), p in 4u8..=18) {
        let a: Vec<IpAddr> = a.into_iter().map(|v| IpAddr::V4(Ipv4Addr::from(v))).collect();
        let b: Vec<IpAddr> = b.into_iter().map(|v| IpAddr::V6(Ipv6Addr::from(v))).collect();
        let mut left = HyperLogLog::with_precision(p).expect("in range");
        let mut right = left.clone();
        let mut union = left.clone();
        a.iter().for_each(|ip| left.insert(*ip));
        b.iter().for_each(|ip| right.insert(*ip));
        a.iter().chain(&b).for_each(|ip| union.insert(*ip));
        left.merge(&right).expect("same precision");
        prop_assert_eq!(&left, &union);
        let mut bytes = Vec::new();
        left.serialize(&mut bytes);
        prop_assert_eq!(HyperLogLog::deserialize(&bytes), Ok(union));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), p in 0u8..24) {
        let _ = HyperLogLog::deserialize(&bytes);
        let mut prefixed = vec![b'F', b'H', b'L', b'L', 1, 0, p];
        prefixed.extend_from_slice(&bytes);
        let _ = HyperLogLog::deserialize(&prefixed);
    }
}
