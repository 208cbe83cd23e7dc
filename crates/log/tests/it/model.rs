//! Property test: random batch sizes, segment sizes, index intervals, clean and unclean
//! reopens (some with torn tails) never lose an acknowledged record or misplace an offset.

use crate::common;

use std::fs::OpenOptions;
use std::io::Write;

use common::*;
use freshet_log::{BatchHeader, LogConfig, PartitionLog};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: usize,
        value_len: usize,
        compression: usize,
    },
    Reopen {
        clean: bool,
    },
    CrashWithTornTail {
        garbage: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..300, 0usize..5)
            .prop_map(|(records, value_len, compression)| Op::Append { records, value_len, compression }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => proptest::collection::vec(any::<u8>(), 1..80).prop_map(|garbage| Op::CrashWithTornTail { garbage }),
    ]
}

fn check(log: &PartitionLog, model: &[Vec<u8>]) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), model.len() as i64);
    prop_assert_eq!(log.high_watermark(), model.len() as i64);
    let values: Vec<Vec<u8>> = read_all(log)
        .into_iter()
        .map(|r| r.value.unwrap_or_default())
        .collect();
    prop_assert_eq!(&values, &model.to_vec());
    for offset in (0..model.len() as i64).step_by(3) {
        let read = log
            .read(offset, 1, true)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let header =
            BatchHeader::parse(&read.records).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(header.base_offset <= offset && offset <= header.last_offset());
        prop_assert_eq!(read.records.len(), header.total_size());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_log_matches_a_simple_model(
        segment_bytes in 200u64..4000,
        index_interval_bytes in 1u32..2048,
        ops in proptest::collection::vec(op(), 1..25),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes, index_interval_bytes, ..LogConfig::default() };
        let mut log = open(dir.path(), config.clone());
        let mut model: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            match op {
                Op::Append { records, value_len, compression } => {
                    let recs: Vec<Rec> = (0..records)
                        .map(|i| {
                            let value = format!("{}:{}", model.len() + i, "x".repeat(value_len));
                            Rec::new(None, Some(&value), model.len() as i64)
                        })
                        .collect();
                    let outcome = append_durable(&log, &encode(&recs, ALL_COMPRESSIONS[compression], None));
                    prop_assert_eq!(outcome.base_offset, model.len() as i64);
                    model.extend(recs.into_iter().map(|r| r.value.unwrap_or_default()));
                }
                Op::Reopen { clean } => {
                    if clean {
                        log.close().expect("close");
                    }
                    drop(log);
                    log = open(dir.path(), config.clone());
                }
                Op::CrashWithTornTail { garbage } => {
                    let path = active_log_file(&log);
                    drop(log);
                    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
                    file.write_all(&garbage).expect("write");
                    log = open(dir.path(), config.clone());
                }
            }
            check(&log, &model)?;
        }
    }
}
