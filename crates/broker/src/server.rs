//! The accept loop (connection limits, accept errors) and the broker's background work (log
//! cleaning, interval flushes).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::limits::{self, ConnectionSlots, Refusal, RequestBudget};
use crate::{connection, Broker};

/// How long shutdown waits for connections to send the responses they owe.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The least time between two log lines about the same kind of refused or failed connection.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Serves Kafka clients on `listener` until `shutdown` completes, then closes the broker cleanly.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    if let Ok(addr) = listener.local_addr() {
        broker.set_bound_addr(addr);
        tracing::info!(%addr, advertised = %broker.advertised_addr(), "broker listening");
        if broker.advertised_addr().ip().is_unspecified() {
            tracing::warn!(
                %addr,
                "listening on all interfaces without --advertised-addr: clients will be told to \
                 connect to {} and fail; set --advertised-addr to a reachable address",
                broker.advertised_addr()
            );
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    background.spawn(clean_logs_periodically(broker.clone(), stop_rx.clone()));
    if let Some(interval) = flush_interval(&broker) {
        background.spawn(flush_periodically(
            broker.clone(),
            interval,
            stop_rx.clone(),
        ));
    }

    let max_connections = broker
        .config
        .max_connections
        .unwrap_or_else(limits::default_max_connections);
    let slots = ConnectionSlots::new(max_connections, broker.config.max_connections_per_ip);
    let budget = RequestBudget::new(request_budget_bytes(&broker));
    tracing::info!(
        max_connections,
        max_connections_per_ip = broker.config.max_connections_per_ip,
        queued_max_request_bytes = budget.available_bytes(),
        "connection limits"
    );
    let mut accept_errors = AcceptErrors::default();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let slot = match slots.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            refuse(&broker, socket, peer, refusal);
                            continue;
                        }
                    };
                    let broker = broker.clone();
                    let stop = stop_rx.clone();
                    let budget = budget.clone();
                    connections.spawn(async move {
                        broker.metrics.connection_opened();
                        connection::handle(broker.clone(), socket, peer, budget, stop).await;
                        broker.metrics.connection_closed();
                        drop(slot);
                    });
                }
                Err(error) => {
                    broker.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                    accept_errors.record(&error);
                    // Out of file descriptors and the like: the pending connection stays
                    // queued, so accepting again at once would spin.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still busy after {DRAIN_TIMEOUT:?}; closing them");
        connections.shutdown().await;
    }
    background.shutdown().await;
    broker.close().await;
    tracing::info!("broker stopped");
}

/// The request budget: `queued_max_request_bytes`, but never less than one request of the
/// largest size accepted, which could otherwise never be read whole.
fn request_budget_bytes(broker: &Broker) -> usize {
    let config = &broker.config;
    let largest_frame = config.max_request_bytes.saturating_add(4);
    if config.queued_max_request_bytes < largest_frame {
        tracing::warn!(
            queued_max_request_bytes = config.queued_max_request_bytes,
            max_request_bytes = config.max_request_bytes,
            "the request budget is smaller than the largest request; raised to fit one"
        );
    }
    config.queued_max_request_bytes.max(largest_frame)
}

/// Closes a connection over a limit at once (the client sees the connection closed, not a
/// request left unanswered), counting it and logging at most once per second.
fn refuse(broker: &Broker, socket: tokio::net::TcpStream, peer: SocketAddr, refusal: Refusal) {
    broker.metrics.connection_refused(refusal);
    drop(socket);
    static LAST_LOG: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST_LOG.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
        *last = Some(Instant::now());
        tracing::warn!(%peer, limit = refusal.as_str(), "connection refused: limit reached");
    }
}

/// Accept failures, logged once per [`LOG_EVERY`] with the count since the last line, so a
/// descriptor shortage does not flood the log.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn record(&mut self, error: &std::io::Error) {
        self.unlogged += 1;
        if self.last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::error!(%error, failures = self.unlogged, "accept failed");
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

fn flush_interval(broker: &Broker) -> Option<Duration> {
    match broker.config.log_defaults.durability {
        freshet_log::Durability::Interval(interval) => Some(interval),
        freshet_log::Durability::Fsync => None,
    }
}

async fn clean_logs_periodically(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(broker.config.log_cleanup_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let broker = broker.clone();
                let _ = tokio::task::spawn_blocking(move || broker.clean_logs()).await;
            }
            _ = stop.changed() => return,
        }
    }
}

async fn flush_periodically(
    broker: Arc<Broker>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let broker = broker.clone();
                let _ = tokio::task::spawn_blocking(move || broker.flush_interval_logs()).await;
            }
            _ = stop.changed() => return,
        }
    }
}
