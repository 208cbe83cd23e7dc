//! What every Freshet crate needs from the operating system, written once.
//!
//! - [`files`]: making files and directory entries durable (fsync of a directory, a file
//!   written and synced, a file replaced so that a crash leaves the old or the new content).
//!   The broker, the log, the group coordinator and the guard keep their state with these.
//! - [`clock`]: the wall clock in Unix milliseconds, Kafka's unit for timestamps.
//! - [`heap`]: returning the pages the allocators keep after a burst to the kernel (the
//!   workspace's only `unsafe` code).
//! - `stall` (feature `stall`, tests only): a disk that stalls on demand under one directory.
//!
//! A leaf crate: it depends on no other Freshet crate (only on libc, mimalloc's C library and
//! tracing), so every layer may use it.

pub mod clock;
pub mod files;
pub mod heap;
#[cfg(feature = "stall")]
pub mod stall;
