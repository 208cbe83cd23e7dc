//! The accept loop and the broker's background work (log cleaning, interval flushes).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{connection, Broker};

/// How long shutdown waits for connections to send the responses they owe.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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

    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let broker = broker.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        broker.metrics.connection_opened();
                        connection::handle(broker.clone(), socket, peer, stop).await;
                        broker.metrics.connection_closed();
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
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
