//! `freshet broker` and `freshet up`.

use anyhow::Context;
use freshet_broker::Broker;

use crate::cli::BrokerArgs;

/// Everything in one process. For now that is the broker; the services join it as they land.
pub fn up(args: BrokerArgs) -> anyhow::Result<()> {
    broker(args)
}

pub fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("freshet")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.kafka_listen)
            .await
            .with_context(|| format!("binding the Kafka listener to {}", args.kafka_listen))?;
        let broker = Broker::open(args.to_config())
            .with_context(|| format!("opening data directory {}", args.data_dir.display()))?;
        eprintln!(
            "freshet: Kafka protocol on {} (data in {})",
            broker_addr(&listener),
            args.data_dir.display()
        );
        freshet_broker::serve(listener, broker, shutdown_signal()).await;
        Ok(())
    })
}

fn broker_addr(listener: &tokio::net::TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}
