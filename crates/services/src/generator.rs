//! The device-event generator.
