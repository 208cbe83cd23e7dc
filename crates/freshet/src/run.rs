//! `freshet up`, `freshet broker` and `freshet tracker`: the long-running commands.
//!
//! `/metrics` reports on whatever runs in the process: the API covers the services of its
//! state, and the embedded broker's collector ([`crate::metrics`]) is added where there is
//! one.
//!
//! Shutdown runs in dependency order: the HTTP API stops taking requests, the tracker and the
//! guard's blocker write their last checkpoints and leave their groups, and only then does
//! the embedded broker close.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use freshet_api::{AppState, HttpLimits, Metrics};
use freshet_broker::config::ListenerConfig;
use freshet_broker::listener::{Listener, ListenerSpec, SecurityProtocol};
use freshet_broker::{Broker, BrokerConfig};
use freshet_services::cluster::Cluster;
use freshet_services::generator::GeneratorJobs;
use freshet_services::kafka::{wait_for_broker, BROKER_WAIT};
use freshet_services::tracker::Tracker;
use freshet_services::KafkaConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::{BrokerNodeArgs, TrackerNodeArgs, UpArgs};
use crate::principals::{self, ServicePrincipals};
use crate::serve::{
    bind_http, http_tls, local_addr, runtime, scheme, serve_until_signal, shutdown_signal,
};
use freshet_security::users::UserStore;

/// Everything in one process: the broker (unless `--bootstrap-servers` names another
/// cluster), the tracker, the guard, the generator jobs and the HTTP API.
pub fn up(args: UpArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (embedded, bootstrap, principals) = match &args.bootstrap_servers {
            Some(servers) => {
                let kafka = args.kafka_security.apply(KafkaConfig::new(servers))?;
                wait_for_broker(&kafka, BROKER_WAIT).await?;
                (None, servers.clone(), None)
            }
            None => {
                let (config, principals) = embedded_config(&args)?;
                let broker = EmbeddedBroker::start(config, &args.broker.data_dir).await?;
                let bootstrap = broker.services_bootstrap(principals.is_some());
                (Some(broker), bootstrap, principals)
            }
        };
        let hooks = embedded
            .as_ref()
            .map(EmbeddedBroker::api_hooks)
            .unwrap_or_default();
        let result = match service_clients(&args, &bootstrap, principals) {
            Ok(clients) => run_services(&args, &bootstrap, clients, hooks).await,
            Err(e) => Err(e),
        };
        if let Some(broker) = embedded {
            broker.stop().await;
        }
        result
    })
}

/// The embedded broker's configuration and, when it authenticates or authorizes clients,
/// the principals the services sign in as (see [`crate::principals`]): then a loopback
/// SASL_PLAINTEXT listener is added if there is none, for the services to use.
fn embedded_config(args: &UpArgs) -> anyhow::Result<(BrokerConfig, Option<ServicePrincipals>)> {
    let mut config = args.broker.to_config()?;
    let has = |protocol| config.listeners.iter().any(|l| l.spec.protocol == protocol);
    if !config.acl_authorizer && has(SecurityProtocol::Plaintext) {
        return Ok((config, None));
    }
    if !has(SecurityProtocol::SaslPlaintext) {
        config.listeners.push(ListenerConfig::new(ListenerSpec::new(
            SecurityProtocol::SaslPlaintext,
            "127.0.0.1",
            0,
        )));
    }
    config.super_users.push(principals::api_principal());
    let data_dir = &args.broker.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let tracker = args.tracker.to_config();
    let guard = args.guard.to_config(data_dir)?;
    let principals = principals::provision(data_dir, &tracker, &guard, config.acl_authorizer)?;
    Ok((config, Some(principals)))
}

/// How each service connects: as its own principal inside a secured `freshet up`, else with
/// the `--kafka-security-protocol`/`--sasl-*`/`--ssl-*` settings.
struct ServiceClients {
    tracker: KafkaConfig,
    guard: KafkaConfig,
    api: KafkaConfig,
    /// The services' own users, which never sign in over HTTP.
    service_users: Vec<String>,
}

fn service_clients(
    args: &UpArgs,
    bootstrap: &str,
    principals: Option<ServicePrincipals>,
) -> anyhow::Result<ServiceClients> {
    let base = KafkaConfig::new(bootstrap);
    Ok(match principals {
        Some(p) => ServiceClients {
            tracker: base.clone().with_security(p.tracker)?,
            guard: base.clone().with_security(p.guard)?,
            api: base.with_security(p.api)?,
            service_users: principals::SERVICE_USERS.map(str::to_owned).to_vec(),
        },
        None => {
            let kafka = args.kafka_security.apply(base)?;
            ServiceClients {
                tracker: kafka.clone(),
                guard: kafka.clone(),
                api: kafka,
                service_users: Vec::new(),
            }
        }
    })
}

/// What the embedded broker adds to the API: its metrics and its health.
#[derive(Default)]
struct BrokerHooks {
    metrics: Metrics,
    health: Option<Arc<Broker>>,
}

impl BrokerHooks {
    fn install(self, state: AppState) -> AppState {
        let state = state.with_metrics(self.metrics);
        match self.health {
            Some(broker) => state.with_health_check(crate::health::for_broker(broker)),
            None => state,
        }
    }
}

async fn run_services(
    args: &UpArgs,
    bootstrap: &str,
    clients: ServiceClients,
    hooks: BrokerHooks,
) -> anyhow::Result<()> {
    let cluster = Cluster::new(&clients.api).context("creating the cluster client")?;
    let http = bind_http(args.http_listen).await?;
    let tracker = Tracker::start(&clients.tracker, args.tracker.to_config())
        .await
        .with_context(|| format!("starting the tracker against {bootstrap}"))?;
    let guard = match crate::guard::start(&clients.guard, &args.guard, &args.broker.data_dir).await
    {
        Ok(guard) => guard,
        Err(e) => {
            stop_tracker(tracker).await;
            return Err(e);
        }
    };
    let prepared = http_auth(
        &args.broker.data_dir,
        hooks.health.as_ref(),
        &clients.service_users,
    )
    .and_then(|auth| Ok((auth, http_tls(&args.http, args.broker.tls_files())?)));
    let (auth, tls) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            crate::guard::stop(guard).await;
            stop_tracker(tracker).await;
            return Err(e);
        }
    };
    let state = hooks.install(
        AppState::new()
            .with_tracker(tracker.handle())
            .with_generator(GeneratorJobs::new(clients.api.clone()))
            .with_guard(guard.handle(), args.guard.options())
            .with_cluster(cluster)
            .with_auth(auth),
    );
    let url = format!("{}://{}", scheme(&tls), local_addr(&http));
    eprintln!(
        "freshet: HTTP API on {url} (console: {url}/, docs: {url}/api/docs, metrics: {url}/metrics), tracker node {}",
        tracker.handle().node_id()
    );
    eprintln!(
        "freshet: login guard on the same API{}",
        crate::guard::admin_note(&args.guard)
    );
    if !clients.service_users.is_empty() {
        eprintln!(
            "freshet: the HTTP API and console need sign-in with a user of `freshet users add`; \
             the services' own users ({}) sign in over Kafka only",
            clients.service_users.join(", ")
        );
    }
    print_ready(&url);
    serve_until_signal(http, state, args.http.limits(), tls).await;
    crate::guard::stop(guard).await;
    stop_tracker(tracker).await;
    Ok(())
}

/// The last thing `freshet up` prints at start, set apart from the log lines before it: where
/// a newcomer goes next.
fn print_ready(url: &str) {
    eprintln!(
        "\nfreshet is up:\n  console   {url}/\n  API docs  {url}/api/docs\n  metrics   {url}/metrics\n"
    );
}

/// REST and Kafka decide alike: the embedded broker's users and authorizer; against an
/// external cluster, the data directory's users and no ACLs (the cluster's own ACLs then
/// apply to the API's client).
fn http_auth(
    data_dir: &Path,
    broker: Option<&Arc<Broker>>,
    service_users: &[String],
) -> anyhow::Result<freshet_api::HttpAuth> {
    let (users, authorizer) = match broker {
        Some(broker) => (Arc::clone(&broker.users), broker.authorizer.clone()),
        None => (
            Arc::new(UserStore::open(data_dir).context("opening the user store")?),
            None,
        ),
    };
    Ok(freshet_api::HttpAuth::open(data_dir, users, authorizer)
        .context("opening the HTTP token key")?
        .with_kafka_only_users(service_users.iter().cloned()))
}

/// One tracker node with its own HTTP API.
pub fn tracker(args: TrackerNodeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let kafka = args
            .kafka_security
            .apply(KafkaConfig::new(&args.bootstrap_servers))?;
        wait_for_broker(&kafka, BROKER_WAIT).await?;
        let cluster = Cluster::new(&kafka).context("creating the cluster client")?;
        let http = bind_http(args.http_listen).await?;
        let tls = http_tls(&args.http, None)?;
        let tracker = Tracker::start(&kafka, args.tracker.to_config())
            .await
            .with_context(|| format!("starting the tracker against {}", args.bootstrap_servers))?;
        let handle = tracker.handle();
        eprintln!(
            "freshet: tracker node {} in group {}; HTTP API on {}://{}",
            handle.node_id(),
            handle.group(),
            scheme(&tls),
            local_addr(&http)
        );
        let state = AppState::new().with_tracker(handle).with_cluster(cluster);
        serve_until_signal(http, state, args.http.limits(), tls).await;
        stop_tracker(tracker).await;
        Ok(())
    })
}

/// The broker alone, and its metrics over HTTP if asked for.
pub fn broker(args: BrokerNodeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let metrics_http = match args.metrics_listen {
            Some(addr) => Some(bind_http(addr).await?),
            None => None,
        };
        let broker = EmbeddedBroker::start(args.broker.to_config()?, &args.broker.data_dir).await?;
        match metrics_http {
            Some(listener) => {
                serve_metrics_until_signal(listener, broker.metrics(), args.http.limits()).await
            }
            None => shutdown_signal().await,
        }
        broker.stop().await;
        Ok(())
    })
}

/// The broker serving in this process until [`stop`](Self::stop).
struct EmbeddedBroker {
    listeners: Vec<Arc<Listener>>,
    broker: Arc<Broker>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Checks the listener settings, binds every listener, opens the data directory and
    /// serves.
    async fn start(config: BrokerConfig, data_dir: &Path) -> anyhow::Result<EmbeddedBroker> {
        config.validate_listeners()?;
        let bound = freshet_broker::listener::bind_listeners(&config).await?;
        let listeners: Vec<Arc<Listener>> = bound.iter().map(|(_, l)| l.clone()).collect();
        let broker = Broker::open(config)
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        for listener in &listeners {
            announce(listener);
        }
        eprintln!("freshet: data in {}", data_dir.display());
        let (stop, stopped) = watch::channel(false);
        let serving = freshet_broker::serve_listeners(bound, broker.clone(), changed(stopped));
        let task = tokio::spawn(serving);
        Ok(EmbeddedBroker {
            listeners,
            broker,
            stop,
            task,
        })
    }

    /// Where the services in this process connect: the SASL_PLAINTEXT listener when they
    /// sign in (`sasl`), else the PLAINTEXT one; over loopback when it listens on every
    /// interface.
    fn services_bootstrap(&self, sasl: bool) -> String {
        let wanted = if sasl {
            SecurityProtocol::SaslPlaintext
        } else {
            SecurityProtocol::Plaintext
        };
        let listener = self.listeners.iter().find(|l| l.protocol() == wanted);
        match listener.and_then(|l| l.bound_addr()) {
            Some(addr) => loopback_if_unspecified(addr).to_string(),
            None => String::new(),
        }
    }

    fn metrics(&self) -> Metrics {
        crate::metrics::for_broker(self.broker.clone())
    }

    fn api_hooks(&self) -> BrokerHooks {
        BrokerHooks {
            metrics: self.metrics(),
            health: Some(self.broker.clone()),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the broker task failed");
        }
    }
}

/// One start-up line per listener: what it is, where clients are sent, who may connect.
/// Scripts and tests read the address after "Kafka protocol on ".
fn announce(listener: &Listener) {
    let (host, port) = listener.advertised();
    let bound = listener
        .bound_addr()
        .map_or_else(|| "?".to_owned(), |a| a.to_string());
    eprintln!(
        "freshet: Kafka protocol on {bound} ({}, advertised as {}): {}",
        listener.protocol(),
        freshet_broker::listener::host_port(&host, port),
        listener.who_may_connect()
    );
}

/// `addr`, with the loopback address of its family when it is the unspecified one (a
/// listener on every interface is reached locally over loopback).
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// Completes when the watched value changes (or its sender is gone).
async fn changed(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.changed().await;
}

/// Serves only `GET /metrics` until SIGINT or SIGTERM.
async fn serve_metrics_until_signal(listener: TcpListener, metrics: Metrics, limits: HttpLimits) {
    eprintln!(
        "freshet: Prometheus metrics on http://{} (GET /metrics)",
        local_addr(&listener)
    );
    let router = freshet_api::metrics_app(AppState::new().with_metrics(metrics));
    if let Err(e) =
        freshet_api::serve_with_limits(listener, router, limits, shutdown_signal()).await
    {
        tracing::error!(error = %e, "the metrics server failed");
    }
}

/// The tracker's shutdown waits for its last checkpoint: blocking work, off the runtime.
async fn stop_tracker(tracker: Tracker) {
    if tokio::task::spawn_blocking(move || tracker.shutdown())
        .await
        .is_err()
    {
        tracing::error!("the tracker panicked while stopping");
    }
}
