//! Compacted logs refuse records without a key, as Kafka's LogValidator does: compaction keeps
//! the latest record per key, so a keyless record could never be superseded nor removed.

use kafka_protocol::records::Compression;

use crate::batch::ValidBatch;
use crate::error::LogError;
use crate::records::{Keep, RecordStream};

/// Refuses the record set if any record of a batch has no key (a null one; an empty key is
/// a key), listing the keyless records of the first such batch by their index in it, which
/// Produce v8+ reports per record. Runs after [`crate::batch::validate_record_set`], so the
/// batches are known to parse; only compacted logs pay for this second pass over the records.
pub(crate) fn refuse_keyless(
    records: &[u8],
    batches: &[ValidBatch],
    max_uncompressed: usize,
) -> Result<(), LogError> {
    for batch in batches {
        let bytes = records.get(batch.range.clone()).unwrap_or_default();
        // The same bound as validation: an uncompressed batch by its own size.
        let cap = if batch.header.compression()? == Compression::None {
            bytes.len()
        } else {
            max_uncompressed
        };
        let mut stream = RecordStream::open(&batch.header, bytes, cap, Keep::Keys)?;
        let mut keyless = Vec::new();
        let mut index: i32 = 0;
        while let Some(record) = stream.next_record()? {
            if record.key.is_none() {
                keyless.push(index);
            }
            index = index.saturating_add(1);
        }
        if !keyless.is_empty() {
            return Err(LogError::KeylessRecords {
                batch_indexes: keyless,
            });
        }
    }
    Ok(())
}
