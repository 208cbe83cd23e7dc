//! Helpers shared by the services' integration tests.

pub mod guard;
pub mod tracker;
