//! Freshet's consumer-group coordinator: Kafka's classic group membership protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), committed offsets (OffsetCommit,
//! OffsetFetch, OffsetDelete), transactional offsets (TxnOffsetCommit, completed by
//! [`GroupCoordinator::complete_transaction`]), the admin views (ListGroups, DescribeGroups)
//! and DeleteGroups, for a single broker that is the coordinator of every group; and, beside
//! the classic groups, Kafka 4's consumer group protocol (KIP-848: ConsumerGroupHeartbeat,
//! ConsumerGroupDescribe), in which the coordinator assigns partitions itself.
//!
//! The broker decodes a request, calls the matching [`GroupCoordinator`] method with the
//! request version, and encodes the response it gets back at that version. Handlers never
//! fail: errors are Kafka error codes in the response, and no client input can panic.
//!
//! # The group state machine
//!
//! ```text
//!                  first JoinGroup
//!        ┌───────┐ ───────────────▶ ┌────────────────────┐  all members rejoined, or the
//!        │ Empty │                  │ PreparingRebalance │  rebalance timeout expired
//!        └───────┘ ◀─────────────── └────────────────────┘ ──────────────┐
//!            ▲     join phase ended      ▲          ▲                    ▼
//!            │     with no members       │          │        ┌─────────────────────┐
//!            │                           │          └────────│ CompletingRebalance │
//!            │  last member left or      │  member joins,    └─────────────────────┘
//!            │  expired                  │  leaves, expires,             │ leader's
//!            │                           │  or changes metadata          ▼ SyncGroup
//!            │                           │                        ┌────────┐
//!            └───────────────────────────┴────────────────────────│ Stable │
//!                                                                 └────────┘
//! ```
//!
//! * **PreparingRebalance** is the *join phase*. Every member must (re)send JoinGroup; those
//!   requests are long polls, answered all at once when the phase completes: when every known
//!   member has rejoined, or when the rebalance timeout (the largest among members) expires,
//!   in which case the members that did not rejoin are removed. A group coming out of Empty
//!   first waits `initial_rebalance_delay`, and again each time new members arrived during
//!   the wait, for at most its rebalance timeout, so that a starting fleet causes one
//!   rebalance, not one per member.
//! * Completing the join phase bumps the **generation**, picks the protocol (assignor) every
//!   member supports that most members prefer, and answers the JoinGroups: the leader gets
//!   every member's metadata, followers an empty list. The new generation is written to the
//!   offsets file before the answers are released, so generations never go backwards across
//!   restarts.
//! * **CompletingRebalance**: the leader computes the assignment and sends it in SyncGroup;
//!   followers' SyncGroups wait for it. With the leader's, the group is **Stable**: its members
//!   (with their protocols, timeouts and assignments) are written to the offsets file, and
//!   then everyone gets their part.
//! * Heartbeats keep sessions alive and carry REBALANCE_IN_PROGRESS while a join phase is
//!   open, which is how members learn they must rejoin. A member whose session expires is
//!   removed, as is one that sends LeaveGroup; the rest rebalance at once.
//! * Since JoinGroup v4 a new member first gets MEMBER_ID_REQUIRED with its id and must
//!   rejoin with it. Since v5 members may have a static `group.instance.id` (KIP-345): a
//!   restarted static member takes over its previous member id's place without a rebalance,
//!   and the previous incarnation is fenced (FENCED_INSTANCE_ID).
//! * **Dead** is only reported (DescribeGroups of an unknown group). DeleteGroups removes an
//!   Empty group with its offsets; OffsetDelete removes an Empty group it leaves without
//!   offsets (both as in Kafka).
//!
//! The groups live in memory under one mutex that is never held across an `.await`; a
//! single tokio task runs the timers (session expiry, join-phase deadlines) and sleeps until
//! the earliest one. After a restart a group whose latest generation was synced comes back
//! Stable with its members, as Kafka loads groups from `__consumer_offsets`: their heartbeats
//! and commits go on at the same generation, and each member's session starts at the restart,
//! so a member that does not come back expires and the rest rebalance. A group caught between
//! a join phase and its SyncGroup comes back Empty at its persisted generation (its members
//! rejoin), as does every group with no members.
//!
//! # KIP-848 consumer groups
//!
//! A group id is either a classic group or a consumer group (`consumer_group` has the
//! protocol: group epoch, target assignment, member epochs and reconciliation). Both live in
//! the same map under the same lock: a consumer group is a `group::Group` whose `consumer`
//! part is set and whose classic members are none, so the views (ListGroups, DeleteGroups,
//! OffsetDelete, offset commits) see one group per id. An empty group changes protocol when a
//! member of the other protocol joins; a non-empty one refuses it (Kafka 4 with its migration
//! policy `disabled`). A consumer group is persisted as a whole (record kind 16) before any
//! heartbeat that changed it is answered, and comes back after a restart with its epochs and
//! assignments; members' sessions start at the restart.
//!
//! # On disk
//!
//! One append-only file, `<dir>/offsets.log`: an 8-byte magic (`FRSHOFS1`), then records,
//! each framed as `length:u32 crc32c:u32 body` (big-endian). Bodies are an offset commit
//! (group, topic, partition, offset, leader epoch, commit timestamp, metadata), a group's
//! generation (with its protocol type), a classic group's members at a synced generation,
//! a deleted topic's, group's or offset's marker, a transaction's pending offset, the end
//! of a transaction in a group and a consumer group's state; the latest record per key wins.
//! New kinds are added without changing old ones, so files of earlier versions open
//! unchanged. An OffsetCommit is answered only after its records are fsynced; concurrent
//! commits share one fsync (group commit). Opening replays the file and cuts off a torn tail (an
//! incomplete or CRC-mismatched last frame, the remains of a crash mid-write: never
//! acknowledged). When the file grows to several times its live size it is rewritten
//! compacted: temporary file, fsync, rename, fsync of the directory.
//!
//! # Transactional offsets
//!
//! A TxnOffsetCommit's offsets are pending offsets of its producer id in the group: durable,
//! kept across restarts and compaction, but invisible to OffsetFetch (which, with
//! `require_stable`, answers UNSTABLE_OFFSET_COMMIT for their partitions) until the
//! transaction coordinator calls [`GroupCoordinator::complete_transaction`], which writes the
//! commit (or abort) of the producer's offsets in each group. A crash between the prepared
//! transaction and that record is finished by the transaction coordinator's recovery calling
//! it again; a second call finds nothing pending and writes nothing.

#![forbid(unsafe_code)]

mod config;
mod consumer_group;
mod coordinator;
mod error;
mod group;
mod handlers;
mod overview;
mod store;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use config::CoordinatorConfig;
pub use consumer_group::{TopicCatalog, TopicMetadata};
pub use coordinator::GroupCoordinator;
pub use error::{CoordinatorError, StoreError};
pub use group::GroupState;
pub use handlers::MAX_OFFSET_METADATA_BYTES;
pub use overview::{AssignedPartitions, GroupOverview, MemberOverview, OffsetOverview};

/// Locks `mutex`, ignoring poisoning: every critical section leaves its data consistent
/// before anything that could panic, and a coordinator that stopped answering would be worse.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
