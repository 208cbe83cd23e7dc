//! Freshet's Kafka-protocol broker.
//!
//! A single-node broker that speaks the Kafka wire protocol well enough for kcat, librdkafka,
//! kafka-python and kafkajs to use it unchanged. The layout follows the path of a request:
//!
//! - [`server`]: accepts TCP connections on already-bound listeners (tests bind port 0), and
//!   does the TLS handshake of TLS listeners in each connection's task.
//! - [`listener`]: listeners as Kafka names them (`SSL://host:port`), what each advertises;
//!   [`tls`]: their rustls settings, reloaded on SIGHUP.
//! - [`connection`]: one task per client: reads size-prefixed frames from a `BytesMut` that
//!   grows with the bytes received, refuses oversize frames before buffering them, closes idle
//!   and too-slow peers, and writes responses back in request order.
//! - [`limits`]: connection caps (total and per address), the broker-wide budget of request
//!   bytes in flight, and the open-file limit the default cap is derived from.
//! - [`dispatch`]: decodes the request header, checks the version against [`versions`] and
//!   hands the body to one module per API in [`handlers`].
//! - [`broker_configs`]: dynamic broker configs (the broker-level defaults of topic configs),
//!   stored in the data directory and laid under every topic's overrides.
//! - [`topics`]: the topic registry: topic metadata on disk and one [`freshet_log::PartitionLog`]
//!   per partition.
//! - [`producer_ids`]: durable allocation of idempotent-producer ids.
//! - [`health`]: degraded conditions (disk full, logs read-only after a failed fsync), logged
//!   once per episode and reported to `/healthz` and `/metrics`.
//! - [`metrics`]: counters the HTTP API exposes.
//!
//! Consumer groups live in the `freshet-coordinator` crate and the on-disk log in
//! `freshet-log`; this crate wires them to the wire protocol.
//!
//! Ordering rule: requests on one connection take effect in the order they arrive (a produce
//! appends before the next request is read), but the waiting part of a request (the fsync of a
//! produce, a fetch long-poll, a join-group) runs concurrently, so pipelined produce requests
//! share one group-commit fsync. Responses are always written in request order.

pub mod broker;
pub mod broker_configs;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod failpoint;
pub mod handlers;
pub mod health;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod producer_ids;
pub mod sasl;
pub mod server;
pub mod session;
pub mod tls;
pub mod topic_config;
pub mod topics;
pub mod transactions;
pub mod versions;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use server::{serve, serve_listeners};
