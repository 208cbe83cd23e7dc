//! Set semantics, union and the wire format of `DistinctIps`, against a
//! `HashSet<IpAddr>` model.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use freshet_distinct::{DistinctError, DistinctIps, EncodedSize};
use proptest::prelude::*;

use crate::common;

/// The model's view of an address: IPv4-mapped IPv6 is IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses from small ranges (so duplicates happen), full ranges, and
/// IPv4-mapped IPv6.
fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..2000).prop_map(|v| IpAddr::V4(Ipv4Addr::from(v.wrapping_mul(2_654_435_761)))),
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        (0u128..500).prop_map(|v| IpAddr::V6(Ipv6Addr::from(v << 64 | 0x2001))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        (0u32..2000).prop_map(|v| IpAddr::V6(
            Ipv4Addr::from(v.wrapping_mul(2_654_435_761)).to_ipv6_mapped()
        )),
    ]
}

fn encode(set: &DistinctIps) -> Vec<u8> {
    let mut out = Vec::new();
    set.serialize(&mut out);
    out
}

fn assert_matches(set: &DistinctIps, model: &HashSet<IpAddr>) {
    assert_eq!(set.len(), model.len() as u64);
    let v4 = model.iter().filter(|ip| ip.is_ipv4()).count() as u64;
    assert_eq!((set.len_v4(), set.len_v6()), (v4, model.len() as u64 - v4));
    assert_eq!(set.is_empty(), model.is_empty());
    assert_eq!(set.iter().collect::<HashSet<_>>(), *model);
    for ip in model {
        assert!(set.contains(*ip));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encoded_size_counts_what_serialize_writes(ips in proptest::collection::vec(ip(), 0..6000)) {
        let set: DistinctIps = ips.into_iter().collect();
        let mut size = EncodedSize::default();
        set.iter().for_each(|ip| size.add(ip));
        prop_assert_eq!(size.is_empty(), set.is_empty());
        prop_assert_eq!(size.bytes(), set.serialized_size());
        prop_assert_eq!(size.bytes(), encode(&set).len());
    }

    #[test]
    fn behaves_like_a_hash_set(ips in proptest::collection::vec(ip(), 0..3000), probes in proptest::collection::vec(ip(), 0..50)) {
        let mut set = DistinctIps::new();
        let mut model = HashSet::new();
        for ip in ips {
            prop_assert_eq!(set.insert(ip), model.insert(canonical(ip)));
        }
        assert_matches(&set, &model);
        for ip in probes {
            prop_assert_eq!(set.contains(ip), model.contains(&canonical(ip)));
        }
    }

    #[test]
    fn batch_inserts_report_exactly_the_new_addresses(batches in proptest::collection::vec(proptest::collection::vec(ip(), 0..1500), 1..5)) {
        let mut set = DistinctIps::new();
        let mut model = HashSet::new();
        for batch in batches {
            let mut new = Vec::new();
            set.insert_all(&batch, &mut new);
            let expected: HashSet<IpAddr> = batch.iter().map(|ip| canonical(*ip)).filter(|ip| !model.contains(ip)).collect();
            prop_assert_eq!(new.len(), expected.len(), "each new address once");
            prop_assert_eq!(new.into_iter().collect::<HashSet<_>>(), expected.clone());
            model.extend(expected);
            assert_matches(&set, &model);
        }
    }

    #[test]
    fn union_is_the_model_union(a in proptest::collection::vec(ip(), 0..2000), b in proptest::collection::vec(ip(), 0..2000)) {
        let mut left: DistinctIps = a.iter().copied().collect();
        let right: DistinctIps = b.iter().copied().collect();
        left.union_with(&right);
        let model: HashSet<IpAddr> = a.iter().chain(&b).map(|ip| canonical(*ip)).collect();
        assert_matches(&left, &model);
        let mut other_way = right.clone();
        other_way.union_with(&a.iter().copied().collect());
        prop_assert_eq!(left, other_way);
    }

    #[test]
    fn union_len_is_the_model_union_size(parts in proptest::collection::vec(proptest::collection::vec(ip(), 0..800), 0..5), disjoint in any::<bool>()) {
        // Disjoint parts take the summing path, overlapping ones the union path.
        let parts: Vec<Vec<IpAddr>> = if disjoint {
            let mut seen = HashSet::new();
            parts.into_iter().map(|p| p.into_iter().filter(|ip| seen.insert(canonical(*ip))).collect()).collect()
        } else {
            parts
        };
        let sets: Vec<DistinctIps> = parts.iter().map(|p| p.iter().copied().collect()).collect();
        let refs: Vec<&DistinctIps> = sets.iter().collect();
        let model: HashSet<IpAddr> = parts.iter().flatten().map(|ip| canonical(*ip)).collect();
        prop_assert_eq!(DistinctIps::union_len(&refs), model.len() as u64);
    }

    #[test]
    fn round_trips(ips in proptest::collection::vec(ip(), 0..3000)) {
        let set: DistinctIps = ips.into_iter().collect();
        let bytes = encode(&set);
        prop_assert_eq!(bytes.len(), set.serialized_size());
        prop_assert!(set.serialized_size() <= set.serialized_size_at_most());
        prop_assert_eq!(DistinctIps::deserialize(&bytes), Ok(set.clone()));
        let mut shrunk = set.clone();
        shrunk.shrink_to_fit();
        prop_assert_eq!(shrunk, set);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = DistinctIps::deserialize(&bytes);
        let mut prefixed = b"FDIP\x01\x00".to_vec();
        prefixed.extend_from_slice(&bytes);
        if let Ok(set) = DistinctIps::deserialize(&prefixed) {
            prop_assert_eq!(encode(&set), prefixed);
        }
    }

    #[test]
    fn corrupted_encodings_never_panic(ips in proptest::collection::vec(ip(), 1..200), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = encode(&ips.into_iter().collect());
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(set) = DistinctIps::deserialize(&bytes) {
            // Whatever decodes is canonical: it encodes back to the same bytes.
            prop_assert_eq!(encode(&set), bytes);
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let mut set: DistinctIps = (0..5000u32)
        .map(|v| IpAddr::V4(Ipv4Addr::from(v * 7919)))
        .collect();
    set.extend((0..10u128).map(|v| IpAddr::V6(Ipv6Addr::from(v << 100))));
    // One dense container too, so the bitmap has both container kinds.
    set.extend((0..6000u32).map(|v| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + v))));
    let bytes = encode(&set);
    for end in 0..bytes.len() {
        assert!(
            DistinctIps::deserialize(&bytes[..end]).is_err(),
            "prefix of {end} bytes decoded"
        );
    }
    assert_eq!(DistinctIps::deserialize(&bytes), Ok(set));
}

#[test]
fn errors_name_the_problem() {
    let set: DistinctIps = ["10.0.0.1", "2001:db8::1", "2001:db8::2"]
        .iter()
        .map(|s| s.parse().expect("valid"))
        .collect();
    let bytes = encode(&set);
    assert!(matches!(
        DistinctIps::deserialize(b"FDI"),
        Err(DistinctError::Truncated { what: "magic", .. })
    ));
    assert!(matches!(
        DistinctIps::deserialize(b"XXXX\x01\x00"),
        Err(DistinctError::BadMagic { .. })
    ));
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert_eq!(
        DistinctIps::deserialize(&v2),
        Err(DistinctError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
    let mut flags = bytes.clone();
    flags[5] = 1;
    assert_eq!(
        DistinctIps::deserialize(&flags),
        Err(DistinctError::ReservedFlags(1))
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        DistinctIps::deserialize(&trailing),
        Err(DistinctError::V6LengthMismatch { count: 2, .. })
    ));
    let mut unsorted = bytes.clone();
    let n = unsorted.len();
    unsorted[n - 1] = 0; // the second IPv6 address becomes 2001:db8::0 < 2001:db8::1
    assert_eq!(
        DistinctIps::deserialize(&unsorted),
        Err(DistinctError::V6NotSorted { index: 1 })
    );
    let mut bad_cookie = bytes;
    bad_cookie[10] ^= 0xff;
    assert!(matches!(
        DistinctIps::deserialize(&bad_cookie),
        Err(DistinctError::InvalidV4Bitmap(_))
    ));
}

#[test]
fn ipv4_mapped_is_ipv4() {
    let mut set = DistinctIps::new();
    assert!(set.insert("192.0.2.1".parse().expect("valid")));
    assert!(!set.insert("::ffff:192.0.2.1".parse().expect("valid")));
    assert!(set.contains("::ffff:192.0.2.1".parse().expect("valid")));
    assert!(
        set.insert("::192.0.2.1".parse().expect("valid")),
        "IPv4-compatible stays IPv6"
    );
    assert_eq!((set.len_v4(), set.len_v6()), (1, 1));
}

#[test]
fn empty_set_encodes_and_decodes() {
    let bytes = encode(&DistinctIps::new());
    assert_eq!(bytes.len(), 4 + 1 + 1 + 4 + 8 + 8);
    assert!(DistinctIps::deserialize(&bytes).expect("valid").is_empty());
}

/// Sets past 65,536 addresses are kept per /20; everything must behave the same.
#[test]
fn large_sets_round_trip_union_and_count() {
    let mut rng = common::SplitMix64(42);
    let ips: Vec<IpAddr> = (0..200_000)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .collect();
    let big: DistinctIps = ips.iter().copied().collect();
    let mut inserted = DistinctIps::new();
    for ip in &ips {
        inserted.insert(*ip);
    }
    assert_eq!(big, inserted);
    let model: HashSet<IpAddr> = ips.iter().copied().collect();
    assert_matches(&big, &model);
    assert_eq!(DistinctIps::deserialize(&encode(&big)), Ok(big.clone()));

    let small: DistinctIps = ips[..10]
        .iter()
        .copied()
        .chain(["10.0.0.1".parse().expect("ip")])
        .collect();
    assert_eq!(
        DistinctIps::union_len(&[&big, &small]),
        model.len() as u64 + 1
    );
    let mut merged = small.clone();
    merged.union_with(&big);
    assert_eq!(merged.len(), model.len() as u64 + 1);
    assert_eq!(encode(&merged).len(), merged.serialized_size());
}

/// Checkpoints in existing state topics hold the portable Roaring bitmap roaring itself
/// writes: whatever form a set takes in memory (sorted chunks while sparse, bitmaps per /8
/// once dense), its encoding must stay byte for byte that bitmap, and decode back.
#[test]
fn the_encoding_is_roarings_own_in_either_form() {
    let mut rng = common::SplitMix64(7);
    let spread: Vec<u32> = (0..50_000).map(|_| rng.next() as u32).collect();
    let dense: Vec<u32> = (0..50_000u32).map(|i| 0x0a00_0000 | (i * 3)).collect();
    let clustered: Vec<u32> = (0..50_000u32)
        .map(|i| (i % 500) << 20 | (rng.next() as u32 & 0xff))
        .collect();
    for values in [spread, dense, clustered] {
        let mut set = DistinctIps::new();
        for v in &values {
            set.insert(IpAddr::V4(Ipv4Addr::from(*v)));
        }
        let bitmap: roaring::RoaringBitmap = values.iter().copied().collect();
        let mut roaring_bytes = Vec::new();
        bitmap
            .serialize_into(&mut roaring_bytes)
            .expect("writing to a Vec<u8> cannot fail");
        let bytes = encode(&set);
        assert_eq!(bytes.len(), set.serialized_size());
        assert!(set.serialized_size() <= set.serialized_size_at_most());
        assert_eq!(
            &bytes[10..10 + roaring_bytes.len()],
            roaring_bytes.as_slice()
        );
        let mut decoded = DistinctIps::deserialize(&bytes).expect("own encoding");
        assert_eq!(decoded, set);
        // A decoded set keeps taking inserts and unions exactly.
        assert!(
            decoded.insert("255.255.255.255".parse().expect("ip"))
                != set.contains("255.255.255.255".parse().expect("ip"))
        );
        decoded.union_with(&set);
        assert_eq!(
            decoded.len(),
            bitmap.len() + u64::from(!bitmap.contains(u32::MAX))
        );
    }
}

#[test]
fn encoded_size_counts_bitmap_containers() {
    // 70,000 consecutive addresses: one full /16 (a bitmap container) and part of the next.
    let set: DistinctIps = (0..70_000u32)
        .map(|v| IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + v)))
        .collect();
    let mut size = EncodedSize::default();
    set.iter().for_each(|ip| size.add(ip));
    assert_eq!(size.bytes(), encode(&set).len());
}
