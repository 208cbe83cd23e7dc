//! Test helpers shared by every integration test: a real Freshet broker listening on port 0 in
//! a temporary directory, and rdkafka clients configured for it.
//!
//! The broker runs on its own runtime and threads; clients talk to it over real TCP exactly
//! as any Kafka client would.

pub mod batches;
pub mod certs;
pub mod memory;
pub mod raw;
pub mod tmpfs;
pub mod transactions;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use freshet_broker::config::ListenerConfig;
use freshet_broker::listener::{Listener, ListenerSpec, SecurityProtocol};
use freshet_broker::{Broker, BrokerConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::ToBytes;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::oneshot;

/// Enqueues every record at once, then waits for every acknowledgement; panics on the first
/// failure. Enqueuing all first lets librdkafka batch them, as a real producer would.
pub async fn send_all<'a, K, V>(
    producer: &FutureProducer,
    records: impl IntoIterator<Item = FutureRecord<'a, K, V>>,
) where
    K: ToBytes + ?Sized + 'a,
    V: ToBytes + ?Sized + 'a,
{
    let pending: Vec<_> = records
        .into_iter()
        .map(|record| {
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for delivery in pending {
        delivery.await.expect("delivered").expect("acknowledged");
    }
}

/// A broker running in this process.
#[derive(Debug)]
pub struct TestBroker {
    pub addr: SocketAddr,
    /// The broker's state, for what clients cannot see (its health, say).
    pub broker: Arc<Broker>,
    /// Every listener, bound; `addr` is the first one's address.
    pub listeners: Vec<Arc<Listener>>,
    data_dir: PathBuf,
    /// Keeps the temporary directory alive while the broker (or a restarted one) uses it.
    _temp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestBroker {
    /// A fresh broker in a new temporary directory, with test-friendly settings.
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    /// A fresh broker whose config `adjust` may change.
    pub async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().to_path_buf();
        let mut broker = Self::start_in(&dir, adjust).await;
        broker._temp = Some(temp);
        broker
    }

    /// A fresh broker whose runtime has a single async worker thread, so a test can tell
    /// whether some work blocks the worker (with two, the other would hide it).
    pub async fn start_on_one_worker(adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let temp = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(temp.path());
        config.listeners = vec![ListenerConfig::new(ListenerSpec::at(
            SecurityProtocol::Plaintext,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ))];
        adjust(&mut config);
        let mut broker = Self::launch_on(config, 1).await;
        broker._temp = Some(temp);
        broker
    }

    /// A broker on an existing data directory (to test restarts).
    pub async fn start_in(dir: &Path, adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        Self::start_on(dir, SocketAddr::from(([127, 0, 0, 1], 0)), adjust).await
    }

    /// A broker on an existing data directory listening on `addr` (PLAINTEXT, before
    /// `adjust` changes the listeners).
    pub async fn start_on(
        dir: &Path,
        addr: SocketAddr,
        adjust: impl FnOnce(&mut BrokerConfig),
    ) -> TestBroker {
        let mut config = test_config(dir);
        config.listeners = vec![ListenerConfig::new(ListenerSpec::at(
            SecurityProtocol::Plaintext,
            addr,
        ))];
        adjust(&mut config);
        Self::launch(config).await
    }

    /// A fresh broker with these listeners (`[PROTOCOL://]host:port`, e.g.
    /// `SSL://127.0.0.1:0`) in a new temporary directory; `adjust` sets what they need
    /// (`config.tls`, say).
    pub async fn start_with_listeners(
        listeners: &[&str],
        adjust: impl FnOnce(&mut BrokerConfig),
    ) -> TestBroker {
        let temp = tempfile::tempdir().expect("temporary directory");
        let mut config = test_config(temp.path());
        config.listeners = listeners
            .iter()
            .map(|text| ListenerConfig::new(text.parse().expect("a valid listener")))
            .collect();
        adjust(&mut config);
        let mut broker = Self::launch(config).await;
        broker._temp = Some(temp);
        broker
    }

    /// Binds the listeners of `config` and serves them.
    ///
    /// The broker gets its own runtime on its own threads, like a separate process would: a
    /// test that makes blocking client calls (rdkafka's commit, committed offsets, consumer
    /// close) on its runtime's workers must not be able to starve the broker.
    async fn launch(config: BrokerConfig) -> TestBroker {
        Self::launch_on(config, 2).await
    }

    /// [`launch`](Self::launch) on a runtime with `workers` async worker threads.
    async fn launch_on(config: BrokerConfig, workers: usize) -> TestBroker {
        let dir = config.data_dir.clone();
        let (ready_tx, ready_rx) = oneshot::channel::<(Vec<Arc<Listener>>, Arc<Broker>)>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-broker".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                    .expect("broker runtime");
                runtime.block_on(async move {
                    let bound = freshet_broker::listener::bind_listeners(&config)
                        .await
                        .expect("bind the listeners");
                    let listeners = bound.iter().map(|(_, l)| l.clone()).collect();
                    let broker = Broker::open(config).expect("broker opens");
                    let _ = ready_tx.send((listeners, broker.clone()));
                    freshet_broker::serve_listeners(bound, broker, async {
                        let _ = stopped.await;
                    })
                    .await;
                });
            })
            .expect("broker thread");
        let (listeners, broker) = ready_rx
            .await
            .expect("the broker started (see its panic above)");
        TestBroker {
            addr: listeners[0].bound_addr().expect("bound"),
            broker,
            listeners,
            data_dir: dir,
            _temp: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the broker cleanly and starts a new one on the same data directory and
    /// addresses (the same listeners and TLS files), so connected clients reconnect to it as
    /// they would to a restarted Kafka broker.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        self.shutdown().await;
        let temp = self._temp.take();
        let previous = &self.broker.config;
        let mut config = test_config(&self.data_dir);
        config.listeners = self
            .listeners
            .iter()
            .zip(&previous.listeners)
            .map(|(listener, configured)| ListenerConfig {
                spec: ListenerSpec::at(listener.protocol(), listener.bound_addr().expect("bound")),
                advertised: configured.advertised.clone(),
            })
            .collect();
        config.tls = previous.tls.clone();
        config.allow_anonymous = previous.allow_anonymous;
        adjust(&mut config);
        let mut next = Self::launch(config).await;
        next._temp = temp;
        next
    }

    /// Stops the broker cleanly (flushes logs, closes groups).
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The listener of `protocol`.
    pub fn listener(&self, protocol: SecurityProtocol) -> &Arc<Listener> {
        self.listeners
            .iter()
            .find(|l| l.protocol() == protocol)
            .unwrap_or_else(|| panic!("the test broker has no {protocol} listener"))
    }

    /// The bound address of the listener of `protocol`.
    pub fn listener_addr(&self, protocol: SecurityProtocol) -> SocketAddr {
        self.listener(protocol).bound_addr().expect("bound")
    }

    /// Client settings every test client shares.
    pub fn client_config(&self) -> ClientConfig {
        client_config(&self.bootstrap())
    }

    /// A producer with acks=all and idempotence off unless `extra` says otherwise.
    pub fn producer(&self, extra: &[(&str, &str)]) -> FutureProducer {
        let mut config = self.client_config();
        config.set("acks", "all").set("linger.ms", "5");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config.create().expect("producer")
    }

    /// A consumer in `group` reading from the earliest offset, with manual commits.
    pub fn consumer(&self, group: &str, extra: &[(&str, &str)]) -> StreamConsumer {
        let mut config = self.client_config();
        config
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config.create().expect("consumer")
    }

    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("admin client")
    }

    /// Creates a topic through the Kafka protocol (CreateTopics) and waits for the result.
    pub async fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let results = self
            .admin()
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("CreateTopics request");
        for result in results {
            result.expect("topic created");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Settings for brokers under test: no initial rebalance delay (tests start consumers
/// deliberately), frequent log cleaning.
pub fn test_config(dir: &Path) -> BrokerConfig {
    let mut config = BrokerConfig::new(dir);
    config.listeners = vec![ListenerConfig::new(ListenerSpec::new(
        SecurityProtocol::Plaintext,
        "127.0.0.1",
        0,
    ))];
    config.coordinator.initial_rebalance_delay = Duration::from_millis(0);
    config.log_cleanup_interval = Duration::from_millis(200);
    config
}

/// Client settings for a Freshet broker at `bootstrap`.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("message.timeout.ms", "30000")
        .set("socket.timeout.ms", "10000");
    config
}
