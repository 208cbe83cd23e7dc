//! Batch decompression: the input is a compressed record body, opened with each codec (gzip,
//! snappy, lz4, zstd) the way the log opens stored batches (`freshet_log::fuzzing`, over the
//! log's streaming `RecordStream`).
//!
//! Input: `[record count u8][cap selector u8][body...]`; the cap is between 1 byte and 1 MiB.
//! Checks, besides "no panic, no abort":
//! - what a batch decompresses to never exceeds the cap, and a batch over it fails with
//!   `UncompressedTooLarge { max: cap }`;
//! - a batch that decompresses yields exactly the records its header counts;
//! - against the codec crate itself (gzip, lz4, zstd, raw snappy): a batch the log reads
//!   decompresses to the same bytes there, and a batch the log calls over the cap really
//!   decompresses to more than the cap.

#![no_main]

use std::io::Read;

use freshet_log::fuzzing::decompress_records;
use freshet_log::{BatchHeader, LogError, BATCH_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// Gzip, snappy, lz4 and zstd: the codec ids in a batch's attributes.
const CODECS: [i16; 4] = [1, 2, 3, 4];

/// snappy-java's stream header, which the log's snappy reader handles itself.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fuzz_target!(|input: &[u8]| {
    let [count, cap_selector, body @ ..] = input else {
        return;
    };
    let count = i32::from(*count);
    // 1 B .. 1 MiB, and one less than each power of two.
    let cap = (1usize << (cap_selector % 21)).saturating_sub(usize::from(*cap_selector >= 128));
    for codec in CODECS {
        check(codec, count, cap, body);
    }
});

fn check(codec: i16, count: i32, cap: usize, body: &[u8]) {
    let batch = batch(codec, count, body);
    match decompress_records(&batch, cap) {
        Ok(records) => {
            let total: usize = records.iter().map(Vec::len).sum();
            assert!(
                total <= cap,
                "codec {codec}: {total} bytes out under a cap of {cap}"
            );
            assert_eq!(
                records.len(),
                count.unsigned_abs() as usize,
                "codec {codec}"
            );
            // (An empty body is zero records to the log, and not a valid stream to some codecs.)
            let reference = reference(codec, body, cap).filter(|_| !body.is_empty());
            if let Some(reference) = reference {
                let reference = reference.expect("the codec crate reads what the log read");
                assert_eq!(records.concat(), reference, "codec {codec}: same bytes");
            }
        }
        Err(LogError::UncompressedTooLarge { max }) => {
            assert_eq!(max, cap, "codec {codec}: the error names the cap");
            if let Some(Ok(reference)) = reference(codec, body, cap) {
                assert!(
                    reference.len() > cap,
                    "codec {codec}: refused as over the cap of {cap}, but decompresses to {}",
                    reference.len()
                );
            }
        }
        Err(LogError::CorruptMessage(_) | LogError::InvalidRecord(_)) => {}
        Err(other) => panic!("codec {codec}: unexpected error {other:?}"),
    }
}

/// A v2 batch of `count` records with `body` as its (compressed) records.
fn batch(codec: i16, count: i32, body: &[u8]) -> Vec<u8> {
    let batch_length = i32::try_from(BATCH_HEADER_LEN - 12 + body.len()).expect("small input");
    let header = BatchHeader {
        base_offset: 0,
        batch_length,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: codec,
        last_offset_delta: count - 1,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: count,
    };
    let mut batch = header.to_bytes().to_vec();
    batch.extend_from_slice(body);
    batch
}

/// What the codec crate makes of `body`, at most `cap + 1` bytes of it; `None` where the log
/// reads the format its own way (snappy-java's framing).
fn reference(codec: i16, body: &[u8], cap: usize) -> Option<std::io::Result<Vec<u8>>> {
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let result = match codec {
        1 => flate2::bufread::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        2 if body.starts_with(XERIAL_MAGIC) => return None,
        2 => {
            // Only blocks small enough to decompress here: the length is claimed up front.
            let claimed = match snap::raw::decompress_len(body) {
                Ok(claimed) => claimed,
                Err(error) => return Some(Err(std::io::Error::other(error))),
            };
            if claimed > cap.saturating_add(1) {
                return None;
            }
            return Some(
                snap::raw::Decoder::new()
                    .decompress_vec(body)
                    .map_err(std::io::Error::other),
            );
        }
        3 => lz4::Decoder::new(body).and_then(|d| d.take(limit).read_to_end(&mut out)),
        4 => {
            zstd::stream::read::Decoder::new(body).and_then(|d| d.take(limit).read_to_end(&mut out))
        }
        _ => return None,
    };
    Some(result.map(|_| out))
}
