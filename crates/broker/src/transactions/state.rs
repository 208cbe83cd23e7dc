//! What the coordinator knows of one transactional id, and the rules for changing it.
//!
//! ```text
//!            AddPartitions / AddOffsets              EndTxn(commit)            markers written
//!   Empty ──────────────────────────────▶ Ongoing ─────────────────▶ PrepareCommit ──────────▶ CompleteCommit
//!     ▲                                      │  EndTxn(abort), timeout,                              │
//!     │                                      │  InitProducerId           markers written             │
//!     │                                      └──────────────▶ PrepareAbort ──────────▶ CompleteAbort │
//!     └──────────────── (Complete* behaves as Empty for the next transaction) ◀─────────────────────┘
//! ```
//!
//! Prepare states are durable before any marker is written, so a crash between markers is
//! finished at the next start (`TxnCoordinator::recover`); the client's EndTxn is answered
//! once the prepare state is durable. The prepare records a [`MarkerPlan`] that every later
//! state keeps until the markers are durable, so the completed state need not be synced for
//! recovery to find markers a machine crash lost. An id idle for `--transactional-id-expiration-ms` goes
//! to `Dead`: its frame in the state log is a tombstone, and the id is forgotten.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

/// Kafka's transaction states (`TransactionState`), as DescribeTransactions names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    /// Expired and forgotten (Kafka's `Dead`): never current, only written as a tombstone.
    Dead,
}

impl TxnState {
    /// The name Kafka's admin APIs use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }

    /// No transaction in progress: the next AddPartitions starts one.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// The state of one transactional id, stored whole at every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer's last InitProducerId.
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions of the transaction in progress, as (topic, partition).
    pub partitions: BTreeSet<(String, i32)>,
    /// Consumer groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// When the transaction in progress started (its first AddPartitions), or -1.
    pub txn_start_ms: i64,
    pub last_update_ms: i64,
    /// The markers of the id's last prepared transaction, from its prepare until they are
    /// known durable (see [`MarkerPlan`]). Absent in states written before plans existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markers: Option<MarkerPlan>,
}

/// Where a prepared transaction's markers go and which open transaction each closes. The
/// prepare that decides the outcome is fsynced, but the markers and the completed state are
/// not fsynced before the id's next transaction starts (they become durable with the next
/// fsync of their partition, usually the next transaction's own data): so every state written
/// from the prepare on carries the plan, and recovery writes a planned marker again into any
/// partition that still holds the planned transaction open. The plan is replaced only by the
/// next prepare, after its markers are durable, so a state on disk never lacks the plan of a
/// transaction whose markers may not be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkerPlan {
    /// The producer id and epoch the markers carry (the id's may have moved on since).
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<PlannedMarker>,
    /// Set while recovery has not managed to write the markers (in memory only).
    #[serde(skip)]
    pub(crate) needs_repair: bool,
}

/// One partition of a [`MarkerPlan`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMarker {
    pub topic: String,
    pub partition: i32,
    /// The topic's id: a topic deleted and created again under the same name is another log,
    /// which this plan must not touch.
    pub topic_id: String,
    /// The partition's log end offset at the prepare. Every record of the transaction lies
    /// below it; the next transaction of the producer starts above the marker, so at or
    /// after it. An open transaction starting below it is the planned one.
    pub end_offset: i64,
    /// The offset after the marker once it is appended, -1 before (or when none was needed).
    pub marker_end: i64,
}

impl MarkerPlan {
    /// Whether recovery could not write this plan's markers yet (an I/O error at the start):
    /// until it can, the id may not start another transaction, whose records would join the
    /// planned transaction left open in a partition.
    pub fn needs_repair(&self) -> bool {
        self.needs_repair
    }
}

/// Why a transactional request is refused; each maps to the Kafka error clients expect.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error(
        "a newer producer with this transactional id exists (epoch {current}, request {received})"
    )]
    Fenced { current: i16, received: i16 },
    #[error("the producer id does not belong to this transactional id")]
    ProducerIdMapping,
    #[error("transaction in state {0} cannot {1}")]
    InvalidState(&'static str, &'static str),
    #[error("the previous transaction of this id is still being completed")]
    Concurrent,
    #[error("transaction timeout {requested} ms is not within 1..={max} ms")]
    InvalidTimeout { requested: i32, max: i32 },
    #[error("{0}")]
    Storage(String),
}

impl TxnError {
    /// The Kafka error; `fenced_code` is PRODUCER_FENCED or, for request versions from
    /// before it existed, INVALID_PRODUCER_EPOCH.
    pub fn response_error(&self, fenced: ResponseError) -> ResponseError {
        match self {
            TxnError::Fenced { .. } => fenced,
            TxnError::ProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            TxnError::InvalidState(..) => ResponseError::InvalidTxnState,
            TxnError::Concurrent => ResponseError::ConcurrentTransactions,
            TxnError::InvalidTimeout { .. } => ResponseError::InvalidTransactionTimeout,
            TxnError::Storage(_) => ResponseError::UnknownServerError,
        }
    }
}

impl TxnMetadata {
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_owned(),
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            txn_start_ms: -1,
            last_update_ms: now_ms,
            markers: None,
        }
    }

    /// The request's producer must be the current one of this id.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::ProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::Fenced {
                current: self.producer_epoch,
                received: epoch,
            });
        }
        Ok(())
    }

    /// The state after adding partitions or a group to the transaction.
    pub fn with_members(
        &self,
        partitions: impl IntoIterator<Item = (String, i32)>,
        group: Option<&str>,
        now_ms: i64,
    ) -> Result<TxnMetadata, TxnError> {
        if self.state.is_prepared() {
            return Err(TxnError::Concurrent);
        }
        if self.markers.as_ref().is_some_and(MarkerPlan::needs_repair) {
            return Err(TxnError::Storage(
                "the markers of the previous transaction could not be written at the start; \
                 the broker retries periodically"
                    .to_owned(),
            ));
        }
        let mut next = self.clone();
        if self.state.is_idle() {
            next.partitions.clear();
            next.groups.clear();
            next.txn_start_ms = now_ms;
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions);
        next.groups.extend(group.map(str::to_owned));
        next.last_update_ms = now_ms;
        Ok(next)
    }

    /// The prepared state of ending the transaction in progress.
    pub fn prepared(&self, commit: bool, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        next.last_update_ms = now_ms;
        next
    }

    /// The completed state once every marker is written. It keeps the marker plan: the
    /// markers may not be durable yet.
    pub fn completed(&self, now_ms: i64) -> TxnMetadata {
        let mut next = self.clone();
        next.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        next.partitions.clear();
        next.groups.clear();
        next.txn_start_ms = -1;
        next.last_update_ms = now_ms;
        next
    }

    /// Whether the transaction in progress has outlived its timeout.
    pub fn has_expired(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.txn_start_ms >= 0
            && now_ms.saturating_sub(self.txn_start_ms) > i64::from(self.timeout_ms)
    }

    /// Whether the id has been idle (no transaction in progress, no request) for longer than
    /// `expiration_ms`, Kafka's `transactional.id.expiration.ms`.
    pub fn is_abandoned(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.state.is_idle() && now_ms.saturating_sub(self.last_update_ms) > expiration_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_goes_from_empty_through_prepare_to_complete() {
        let empty = TxnMetadata::new("t", 5, 60_000, 1);
        let ongoing = empty
            .with_members([("a".to_owned(), 0)], None, 2)
            .expect("add");
        assert_eq!(
            (ongoing.state, ongoing.txn_start_ms),
            (TxnState::Ongoing, 2)
        );
        let more = ongoing
            .with_members([("b".to_owned(), 1)], Some("g"), 3)
            .expect("add more");
        assert_eq!(more.partitions.len(), 2);
        assert_eq!(more.txn_start_ms, 2, "the start is the first add's");
        let prepared = more.prepared(true, 4);
        assert_eq!(
            prepared.with_members([("c".to_owned(), 0)], None, 5),
            Err(TxnError::Concurrent)
        );
        let done = prepared.completed(6);
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty() && done.groups.is_empty());
        let next = done
            .with_members([("c".to_owned(), 0)], None, 7)
            .expect("next");
        assert_eq!(next.partitions.len(), 1, "a new transaction starts empty");
    }

    #[test]
    fn only_the_current_producer_may_act() {
        let mut meta = TxnMetadata::new("t", 5, 60_000, 1);
        meta.producer_epoch = 3;
        assert_eq!(meta.check_producer(5, 3), Ok(()));
        assert_eq!(meta.check_producer(6, 3), Err(TxnError::ProducerIdMapping));
        assert_eq!(
            meta.check_producer(5, 2),
            Err(TxnError::Fenced {
                current: 3,
                received: 2
            })
        );
    }

    #[test]
    fn only_ongoing_transactions_expire() {
        let ongoing = TxnMetadata::new("t", 5, 1_000, 0)
            .with_members([("a".to_owned(), 0)], None, 10)
            .expect("add");
        assert!(!ongoing.has_expired(1_010));
        assert!(ongoing.has_expired(1_011));
        assert!(!ongoing.prepared(false, 1_011).has_expired(5_000));
    }
}
