//! What one peer, or all of them together, may hold of the broker: connections (in total and
//! per address), bytes of requests being received or served, and file descriptors.
//!
//! - [`ConnectionSlots`]: Kafka's `max.connections` and `max.connections.per.ip`. A connection
//!   over either limit is closed as soon as it is accepted, so a client learns at once instead
//!   of waiting on an unanswered request.
//! - [`RequestBudget`]: Kafka's `queued.max.request.bytes`. A connection reserves budget for
//!   the bytes it reads, as it reads them, and a request keeps its share until its response is
//!   written. When the budget is spent, connections stop reading (backpressure) instead of
//!   allocating. Reserving as bytes arrive, not the size a frame claims, means a peer has to
//!   send real bytes to take budget from others.
//! - [`descriptor_limit`]: the process's open-file limit, raised to its hard limit at start,
//!   from which the default connection cap is derived so that segment files can still be
//!   opened when clients have taken every connection they may.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Broker-wide budget for bytes of requests received but not yet answered, counted in bytes.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    permits: Arc<Semaphore>,
}

/// Bytes of the [`RequestBudget`] held for received request bytes; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
}

impl RequestBudget {
    /// A budget of `bytes` (at least one).
    pub fn new(bytes: usize) -> Self {
        RequestBudget {
            permits: Arc::new(Semaphore::new(bytes.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// Waits until `bytes` of the budget are free and takes them, in turn with other waiters.
    pub async fn reserve(&self, bytes: u32) -> Reservation {
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(bytes)
            .await
            .expect("the request budget's semaphore is never closed");
        Reservation { permit }
    }

    /// Takes `bytes` of the budget if they are free now.
    pub fn try_reserve(&self, bytes: u32) -> Option<Reservation> {
        let permit = self.permits.clone().try_acquire_many_owned(bytes).ok()?;
        Some(Reservation { permit })
    }

    /// Bytes of the budget not reserved right now.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits()
    }
}

impl Reservation {
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.permit.num_permits()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves `bytes` (at most all) of this reservation into a new one.
    pub fn split_off(&mut self, bytes: usize) -> Option<Reservation> {
        let bytes = bytes.min(self.len());
        self.permit
            .split(bytes)
            .map(|permit| Reservation { permit })
    }

    /// Adds `other`'s bytes to this reservation.
    pub fn merge(&mut self, other: Reservation) {
        self.permit.merge(other.permit);
    }
}

/// Why an accepted connection was closed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max.connections` reached.
    TooManyConnections,
    /// `max.connections.per.ip` reached for the peer's address.
    TooManyFromAddress,
}

impl Refusal {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "max_connections",
            Refusal::TooManyFromAddress => "max_connections_per_ip",
        }
    }
}

/// Counts open connections in total and per peer address.
#[derive(Debug)]
pub struct ConnectionSlots {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<OpenConnections>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; frees its slot when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    address: IpAddr,
}

impl ConnectionSlots {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(ConnectionSlots {
            max_total,
            max_per_address,
            open: Mutex::default(),
        })
    }

    /// Takes a slot for a connection from `address`, or says which limit it would exceed.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.lock();
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        if open.total >= self.max_total {
            return Err(Refusal::TooManyConnections);
        }
        if from_address >= self.max_per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        open.total += 1;
        open.by_address.insert(address, from_address + 1);
        Ok(Slot {
            slots: self.clone(),
            address,
        })
    }

    fn release(&self, address: IpAddr) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&address);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        // The counts stay consistent even if a holder panicked: every update is one statement.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.address);
    }
}

/// Descriptors kept free for the log (segment and index files, recovery, compaction) and for
/// the HTTP listener when `--max-connections` is derived from the open-file limit.
pub fn descriptor_reserve(limit: u64) -> u64 {
    (limit / 4).clamp(64, 16_384)
}

/// Raises the soft open-file limit to the hard limit (as most servers do at start) and returns
/// the soft limit now in force, or `None` where it cannot be read.
pub fn descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) if current < maximum => {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => Some(maximum),
                Err(_) => Some(current),
            }
        }
        (current, _) => current,
    }
}

/// The default `max.connections`: what the open-file limit leaves after the descriptors open
/// now and the [`descriptor_reserve`].
pub fn default_max_connections() -> usize {
    let Some(limit) = descriptor_limit() else {
        return usize::MAX;
    };
    let open_now = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count() as u64)
        .unwrap_or(0);
    let free = limit.saturating_sub(open_now + descriptor_reserve(limit));
    usize::try_from(free.max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_in_total_and_per_address() {
        let slots = ConnectionSlots::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = slots.admit(a).expect("first");
        let _second = slots.admit(a).expect("second");
        assert_eq!(
            slots.admit(a).expect_err("refused"),
            Refusal::TooManyFromAddress
        );
        let _third = slots.admit(b).expect("other address");
        assert_eq!(
            slots.admit(b).expect_err("refused"),
            Refusal::TooManyConnections
        );
        drop(first);
        let _again = slots.admit(a).expect("a slot was freed");
    }

    #[tokio::test]
    async fn the_budget_blocks_until_bytes_are_returned() {
        let budget = RequestBudget::new(10_000);
        let held = budget.reserve(8_000).await;
        assert_eq!(budget.available_bytes(), 2_000);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(4_000).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "4,000 bytes do not fit in the 2,000 left"
        );
        drop(held);
        let _got = waiting
            .await
            .expect("reserved once the budget was returned");
    }

    #[test]
    fn reservations_split_and_merge_by_the_byte() {
        let budget = RequestBudget::new(100);
        let mut held = budget.try_reserve(60).expect("free");
        let part = held.split_off(25).expect("split");
        assert_eq!((held.len(), part.len()), (35, 25));
        assert!(budget.try_reserve(41).is_none());
        drop(part);
        assert_eq!(budget.available_bytes(), 65);
        held.merge(budget.try_reserve(5).expect("free"));
        assert_eq!(held.len(), 40);
    }

    #[test]
    fn the_reserve_scales_with_the_limit() {
        assert_eq!(descriptor_reserve(128), 64);
        assert_eq!(descriptor_reserve(1024), 256);
        assert_eq!(descriptor_reserve(1 << 20), 16_384);
    }
}
