//! What the transactional handlers share: how refusals become Kafka errors.

use kafka_protocol::ResponseError;

use crate::transactions::WriteRefusal;

/// PRODUCER_FENCED from the request version that introduced it (`since`), before it
/// INVALID_PRODUCER_EPOCH, which older clients know (Kafka's own mapping, KIP-588).
pub fn fenced_error(version: i16, since: i16) -> ResponseError {
    if version >= since {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

/// The error a producer gets for a transactional write the coordinator did not expect.
pub fn write_refusal_error(refusal: WriteRefusal) -> ResponseError {
    match refusal {
        WriteRefusal::NotInTransaction => ResponseError::InvalidTxnState,
        WriteRefusal::Fenced => ResponseError::InvalidProducerEpoch,
    }
}
