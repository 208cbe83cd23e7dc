//! The integration tests of `freshet`, one module per area, built as one test binary:
//! every test binary links the whole dependency graph again, so one per crate keeps a cold
//! `cargo test` and the target directory small. Run one area with a filter, e.g.
//! `cargo test -p freshet --test it acls_cli::`.

mod acls_cli;
mod cli;
mod common;
mod connection_limits;
mod crash;
mod degraded;
mod generate;
mod group_restart;
mod kill_loop;
mod metrics;
mod secured_up;
mod tracker_nodes;
mod transaction_crash;
mod users_cli;
