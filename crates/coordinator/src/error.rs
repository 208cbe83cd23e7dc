//! Errors of opening the coordinator. Request handlers never fail: their errors are Kafka
//! error codes in the responses.

pub use crate::store::StoreError;

/// Why [`GroupCoordinator::open`](crate::GroupCoordinator::open) failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// `open` was called outside a tokio runtime (it spawns the timer task).
    #[error("GroupCoordinator::open must be called inside a tokio runtime")]
    NoRuntime,
    /// The configuration is inconsistent.
    #[error("invalid coordinator configuration: {0}")]
    InvalidConfig(String),
    /// The offsets file could not be opened or replayed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
