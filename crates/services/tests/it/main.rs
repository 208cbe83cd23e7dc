//! The integration tests of `freshet-services`, one module per area, built as one test binary:
//! every test binary links the whole dependency graph again, so one per crate keeps a cold
//! `cargo test` and the target directory small. Run one area with a filter, e.g.
//! `cargo test -p freshet-services --test it generator::`.

mod checkpointed;
mod common;
mod generator;
mod guard_blocker;
mod guard_checkpoints;
mod guard_forgery;
mod guard_secret;
mod guard_store;
mod librdkafka_on_a_bomb;
mod secured_cluster;
mod tracker;
mod tracker_state;
mod tracker_unreadable;
