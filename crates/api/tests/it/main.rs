//! The integration tests of `freshet-api`, one module per area, built as one test binary:
//! every test binary links the whole dependency graph again, so one per crate keeps a cold
//! `cargo test` and the target directory small. Run one area with a filter, e.g.
//! `cargo test -p freshet-api --test it auth::`.

mod admin_rights_e2e;
mod auth;
mod auth_e2e;
mod common;
mod console;
mod docs;
mod generator_e2e;
mod groups_e2e;
mod guard;
mod guard_e2e;
mod health;
mod https;
mod records_search;
mod records_unreadable;
mod routes;
mod serve;
mod topics_e2e;
mod tracker_e2e;
