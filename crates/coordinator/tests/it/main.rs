//! The integration tests of `freshet-coordinator`, one module per area, built as one test binary:
//! every test binary links the whole dependency graph again, so one per crate keeps a cold
//! `cargo test` and the target directory small. Run one area with a filter, e.g.
//! `cargo test -p freshet-coordinator --test it admin::`.

mod admin;
mod common;
mod consumer_groups;
mod deletion;
mod membership;
mod offsets;
mod restore;
mod txn_offsets;
