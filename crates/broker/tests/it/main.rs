//! The integration tests of `freshet-broker`, one module per area, built as one test binary:
//! every test binary links the whole dependency graph again, so one per crate keeps a cold
//! `cargo test` and the target directory small. Run one area with a filter, e.g.
//! `cargo test -p freshet-broker --test it admin::`.

mod admin;
mod async_workers;
mod configs;
mod consumer_groups;
mod disk_full;
mod durability;
mod fuzz_requests;
mod fuzz_seeds;
mod group_admin;
mod groups;
mod hostile_batches;
mod protocol;
mod roundtrip;
mod sasl_acls;
mod transaction_admin;
mod transactions;
mod versions;
