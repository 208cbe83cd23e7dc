//! The accept loop (connection limits, accept errors, TLS handshakes) and the broker's
//! background work (log cleaning, interval flushes, TLS reloads on SIGHUP).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::limits::{self, ConnectionSlots, Refusal, RequestBudget};
use crate::listener::{Listener, SecurityProtocol};
use crate::session::Session;
use crate::tls::{self, ServerTls};
use crate::{connection, Broker};

/// How long shutdown waits for connections to send the responses they owe.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause after a failed `accept` before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The least time between two log lines about the same kind of refused or failed connection.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Serves Kafka clients on one PLAINTEXT `listener` until `shutdown` completes, then closes
/// the broker cleanly. It advertises what the config's PLAINTEXT listener does.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    let advertised = broker
        .config
        .listeners
        .iter()
        .find(|l| l.spec.protocol == SecurityProtocol::Plaintext)
        .and_then(|l| l.advertised.clone());
    let plaintext = Listener::new(SecurityProtocol::Plaintext, advertised, None)
        .unwrap_or_else(|_| Listener::plaintext());
    if let Ok(addr) = listener.local_addr() {
        plaintext.set_bound_addr(addr);
    }
    serve_listeners(vec![(listener, Arc::new(plaintext))], broker, shutdown).await
}

/// Serves Kafka clients on every bound listener (see [`crate::listener::bind_listeners`])
/// until `shutdown` completes, then closes the broker cleanly. Connection limits and the
/// request budget are the broker's, shared by all listeners.
pub async fn serve_listeners(
    listeners: Vec<(TcpListener, Arc<Listener>)>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) {
    for (_, listener) in &listeners {
        announce(listener);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    background.spawn(clean_logs_periodically(broker.clone(), stop_rx.clone()));
    background.spawn(abort_expired_transactions(broker.clone(), stop_rx.clone()));
    if let Some(interval) = flush_interval(&broker) {
        background.spawn(flush_periodically(
            broker.clone(),
            interval,
            stop_rx.clone(),
        ));
    }
    let certificates = distinct_tls(&listeners);
    if !certificates.is_empty() {
        background.spawn(reload_tls_on_hangup(certificates, stop_rx.clone()));
    }

    let max_connections = broker
        .config
        .max_connections
        .unwrap_or_else(limits::default_max_connections);
    let slots = ConnectionSlots::new(max_connections, broker.config.max_connections_per_ip);
    let budget = RequestBudget::new(request_budget_bytes(&broker));
    let per_ip = match broker.config.max_connections_per_ip {
        usize::MAX => "unlimited".to_owned(),
        limit => limit.to_string(),
    };
    tracing::info!(
        max_connections,
        max_connections_per_ip = %per_ip,
        queued_max_request_bytes = budget.available_bytes(),
        "connection limits"
    );
    let mut accept_errors = AcceptErrors::default();
    let mut connections = JoinSet::new();
    let mut next_listener = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (index, accepted) = accept_any(&listeners, next_listener) => match accepted {
                Ok((socket, peer)) => {
                    // The next accept looks at the other listeners first, so one busy
                    // listener cannot starve them.
                    next_listener = index + 1;
                    let slot = match slots.admit(peer.ip()) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            refuse(&broker, socket, peer, refusal);
                            continue;
                        }
                    };
                    let broker = broker.clone();
                    let listener = listeners[index].1.clone();
                    let stop = stop_rx.clone();
                    let budget = budget.clone();
                    connections.spawn(async move {
                        broker.metrics.connection_opened();
                        serve_connection(broker.clone(), socket, peer, listener, budget, stop).await;
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
    drop(listeners);
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

/// Logs what a listener is and who may use it, and warns when it advertises an address
/// clients cannot connect to.
fn announce(listener: &Listener) {
    let (host, port) = listener.advertised();
    let bound = listener
        .bound_addr()
        .map_or_else(|| "?".to_owned(), |a| a.to_string());
    tracing::info!(
        protocol = %listener.protocol(),
        addr = %bound,
        advertised = %crate::listener::host_port(&host, port),
        access = %listener.who_may_connect(),
        "broker listening"
    );
    if listener.advertises_unspecified() {
        tracing::warn!(
            protocol = %listener.protocol(),
            "listening on all interfaces without --advertised-addr: clients will be told to \
             connect to {} and fail; set --advertised-addr to a reachable address",
            crate::listener::host_port(&host, port)
        );
    }
}

/// The next connection on any listener, looking first at `first` (modulo their number).
/// Cancel-safe, as `TcpListener::poll_accept` is.
async fn accept_any(
    listeners: &[(TcpListener, Arc<Listener>)],
    first: usize,
) -> (usize, std::io::Result<(TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        let count = listeners.len();
        for offset in 0..count {
            let index = (first + offset) % count;
            if let Poll::Ready(accepted) = listeners[index].0.poll_accept(cx) {
                return Poll::Ready((index, accepted));
            }
        }
        Poll::Pending
    })
    .await
}

/// One accepted connection, from its TLS handshake (on TLS listeners) to its end.
async fn serve_connection(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    budget: RequestBudget,
    mut stop: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let Some(tls) = listener.tls().cloned() else {
        let session = Session::new(peer, listener, None);
        return connection::handle(broker, socket, session, budget, stop).await;
    };
    let Some(stream) = handshake(&broker, &tls, socket, peer, &mut stop).await else {
        return;
    };
    let principal = match tls::peer_principal(stream.get_ref().1) {
        Ok(principal) => principal,
        Err(reason) => {
            tracing::warn!(%peer, %reason, "closing connection");
            return;
        }
    };
    if let Some(principal) = &principal {
        tracing::debug!(%peer, %principal, "TLS client certificate verified");
    }
    let session = Session::new(peer, listener, principal);
    connection::handle(broker, stream, session, budget, stop).await
}

/// The server side of the TLS handshake, within `tls_handshake_timeout`; `None` (the
/// connection is closed) when it fails, times out or the broker stops first.
async fn handshake(
    broker: &Broker,
    tls: &ServerTls,
    socket: TcpStream,
    peer: SocketAddr,
    stop: &mut watch::Receiver<bool>,
) -> Option<tls::TlsConnection> {
    let timeout = broker.config.tls_handshake_timeout;
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(timeout, tls.accept(socket)) => outcome,
        _ = stop.changed() => return None,
    };
    let timed_out = outcome.is_err();
    let error = match outcome {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(error)) => tls::describe_handshake_error(&error),
        Err(_) => format!("no TLS handshake within {timeout:?}"),
    };
    broker.metrics.tls_handshake_failed(timed_out);
    static LAST_LOG: Mutex<Option<Instant>> = Mutex::new(None);
    if log_due(&LAST_LOG) {
        tracing::debug!(%peer, %error, "TLS handshake failed; connection closed");
    }
    None
}

/// The TLS settings the listeners use, each once (SSL and SASL_SSL each have their own: client
/// certificates are required on SSL only).
fn distinct_tls(listeners: &[(TcpListener, Arc<Listener>)]) -> Vec<Arc<ServerTls>> {
    let mut distinct: Vec<Arc<ServerTls>> = Vec::new();
    for tls in listeners.iter().filter_map(|(_, l)| l.tls()) {
        if !distinct.iter().any(|seen| Arc::ptr_eq(seen, tls)) {
            distinct.push(tls.clone());
        }
    }
    distinct
}

/// Reads the TLS files again on every SIGHUP, the usual signal for certificate rotation.
async fn reload_tls_on_hangup(certificates: Vec<Arc<ServerTls>>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: TLS certificates will not be reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {
                for tls in &certificates {
                    tls.reload_and_log();
                }
            }
            _ = stop.changed() => return,
        }
    }
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
fn refuse(broker: &Broker, socket: TcpStream, peer: SocketAddr, refusal: Refusal) {
    broker.metrics.connection_refused(refusal);
    drop(socket);
    static LAST_LOG: Mutex<Option<Instant>> = Mutex::new(None);
    if log_due(&LAST_LOG) {
        tracing::warn!(%peer, limit = refusal.as_str(), "connection refused: limit reached");
    }
}

/// Whether a line of the kind last logged at `last` may be logged now (one per
/// [`LOG_EVERY`]), noting it as logged if so.
fn log_due(last: &Mutex<Option<Instant>>) -> bool {
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    let due = last.is_none_or(|at| at.elapsed() >= LOG_EVERY);
    if due {
        *last = Some(Instant::now());
    }
    due
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

/// Finishes what a crash left of transactions, then every `transaction_abort_interval` aborts
/// transactions past their timeout and forgets transactional ids idle past their expiration.
async fn abort_expired_transactions(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    broker.transactions.recover(&broker).await;
    let mut tick = tokio::time::interval(broker.config.transaction_abort_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                broker.transactions.abort_expired(&broker).await;
                broker
                    .transactions
                    .expire_abandoned_ids(&broker, broker.config.transactional_id_expiration)
                    .await;
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
