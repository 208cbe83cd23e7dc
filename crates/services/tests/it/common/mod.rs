//! Helpers shared by the guard's integration tests.

pub mod guard;
