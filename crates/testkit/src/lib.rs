//! Test helpers shared by every integration test: a real Freshet broker listening on port 0 in
//! a temporary directory, and rdkafka clients configured for it.
//!
//! The broker runs on its own runtime and threads; clients talk to it over real TCP exactly
//! as any Kafka client would.

pub mod batches;
pub mod memory;
pub mod raw;
pub mod tmpfs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use freshet_broker::{Broker, BrokerConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use tokio::sync::oneshot;

/// A broker running in this process.
#[derive(Debug)]
pub struct TestBroker {
    pub addr: SocketAddr,
    /// The broker's state, for what clients cannot see (its health, say).
    pub broker: Arc<Broker>,
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

    /// A broker on an existing data directory (to test restarts).
    pub async fn start_in(dir: &Path, adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        Self::start_on(dir, SocketAddr::from(([127, 0, 0, 1], 0)), adjust).await
    }

    /// A broker on an existing data directory listening on `addr`.
    ///
    /// The broker gets its own runtime on its own threads, like a separate process would: a
    /// test that makes blocking client calls (rdkafka's commit, committed offsets, consumer
    /// close) on its runtime's workers must not be able to starve the broker.
    pub async fn start_on(
        dir: &Path,
        addr: SocketAddr,
        adjust: impl FnOnce(&mut BrokerConfig),
    ) -> TestBroker {
        let mut config = test_config(dir);
        adjust(&mut config);
        let (ready_tx, ready_rx) = oneshot::channel::<(SocketAddr, Arc<Broker>)>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-broker".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("broker runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .expect("bind the listener");
                    let broker = Broker::open(config).expect("broker opens");
                    let addr = listener.local_addr().expect("local addr");
                    let _ = ready_tx.send((addr, broker.clone()));
                    freshet_broker::serve(listener, broker, async {
                        let _ = stopped.await;
                    })
                    .await;
                });
            })
            .expect("broker thread");
        let (addr, broker) = ready_rx
            .await
            .expect("the broker started (see its panic above)");
        TestBroker {
            addr,
            broker,
            data_dir: dir.to_path_buf(),
            _temp: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the broker cleanly and starts a new one on the same data directory and address,
    /// so connected clients reconnect to it as they would to a restarted Kafka broker.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        self.shutdown().await;
        let temp = self._temp.take();
        let mut next = Self::start_on(&self.data_dir, self.addr, adjust).await;
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
