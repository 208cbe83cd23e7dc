//! The integration tests of `freshet-distinct`, one module per area, built as one test binary:
//! every test binary links the whole dependency graph again, so one per crate keeps a cold
//! `cargo test` and the target directory small. Run one area with a filter, e.g.
//! `cargo test -p freshet-distinct --test it hll::`.

mod common;
mod hll;
mod memory;
mod sets;
