//! The Kafka API handlers of [`GroupCoordinator`](crate::GroupCoordinator), one module per
//! family. Each handler turns the versioned request into group or store operations and builds
//! a response that fills only the fields its version has.

mod admin;
mod consumer_groups;
mod deletion;
mod membership;
mod offsets;
mod txn_offsets;

pub use offsets::MAX_OFFSET_METADATA_BYTES;

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// The wire code of an optional error (0 = none).
fn error_code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

/// The group instance id, for versions that carry one (`since` and later). An empty instance
/// id is treated as none (Kafka's clients refuse to configure one).
fn instance_id_for(version: i16, since: i16, instance_id: Option<StrBytes>) -> Option<String> {
    instance_id
        .filter(|id| version >= since && !id.is_empty())
        .map(string)
}

fn string(s: StrBytes) -> String {
    s.as_str().to_owned()
}
