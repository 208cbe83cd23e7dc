//! What the long-running commands share to run and serve: the async runtime, the HTTP
//! listener with its TLS settings, serving the API until SIGINT or SIGTERM, and the signal
//! itself. `run` (`up`, `broker`, `tracker`) and `guard` both build on it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use freshet_api::{AppState, HttpLimits};
use tokio::net::TcpListener;

use crate::cli::HttpArgs;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("freshet")
        .build()
        .context("starting the async runtime")
}

/// The HTTPS settings: `--http-tls-cert`/`--http-tls-key`, else the Kafka listener's
/// certificate (`fallback`) when there is one, else plain HTTP.
pub(crate) fn http_tls(
    http: &HttpArgs,
    fallback: Option<(&Path, &Path)>,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let files = match (&http.http_tls_cert, &http.http_tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => fallback,
    };
    files
        .map(|(cert, key)| freshet_api::tls_config(cert, key))
        .transpose()
        .context("loading the HTTPS certificate")
}

pub(crate) fn scheme(tls: &Option<Arc<rustls::ServerConfig>>) -> &'static str {
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}

pub(crate) async fn bind_http(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP listener to {addr}"))
}

/// Serves the API (over TLS when `tls` is given) until SIGINT or SIGTERM, then lets requests
/// in flight finish.
pub(crate) async fn serve_until_signal(
    listener: TcpListener,
    state: AppState,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let router = freshet_api::app(state);
    let served = match tls {
        Some(tls) => freshet_api::serve_tls(listener, router, limits, tls, shutdown_signal()).await,
        None => freshet_api::serve_with_limits(listener, router, limits, shutdown_signal()).await,
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "the HTTP server failed");
    }
}

pub(crate) fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops freshet");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}
