//! Tracker nodes: count distinct device IPs exactly, per node and globally.

pub mod view;
