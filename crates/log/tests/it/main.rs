//! The integration tests of `freshet-log`, one module per area, built as one test binary:
//! every test binary links the whole dependency graph again, so one per crate keeps a cold
//! `cargo test` and the target directory small. Run one area with a filter, e.g.
//! `cargo test -p freshet-log --test it append_cost::`.

mod append_cost;
mod append_read;
mod cleanup;
mod common;
mod compaction_configs;
mod decompression;
mod dump;
mod idempotence;
mod max_timestamp;
mod model;
mod recovery;
mod transactions;
