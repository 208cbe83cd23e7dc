//! Durability under repeated crashes: a real `freshet broker` is killed with SIGKILL again and
//! again while an idempotent producer and a plain producer (both acks=all) send and a consumer
//! group commits offsets; it is restarted each time on the same port and data directory, and
//! the clients carry on. At the end, every acknowledged record is at the offset it was
//! acknowledged at, the idempotent producer's records are there once and in order, and every
//! offset commit the broker acknowledged is still there.
//!
//! `cargo test` runs 3 cycles. More: `scripts/kill-loop.sh [CYCLES]`, which runs the ignored
//! test with `FRESHET_KILL_CYCLES`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::common;
use common::{client_config, BrokerProcess};

const TOPIC: &str = "kill-loop";
const PARTITIONS: i32 = 3;
const GROUP: &str = "kill-loop-group";

#[test]
fn three_kills_under_load_lose_nothing_acknowledged() {
    kill_loop(3);
}

#[test]
#[ignore = "long: FRESHET_KILL_CYCLES cycles (default 100); run by scripts/kill-loop.sh"]
fn many_kills_under_load_lose_nothing_acknowledged() {
    let cycles = std::env::var("FRESHET_KILL_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    kill_loop(cycles);
}

/// Where an acknowledged record was put.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ack {
    partition: i32,
    offset: i64,
    value: String,
}

/// Collects the broker's acknowledgements of one producer.
struct Acks {
    acked: Mutex<Vec<Ack>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): Self::DeliveryOpaque) {
        if let Ok(message) = result {
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            self.acked.lock().expect("lock").push(Ack {
                partition: message.partition(),
                offset: message.offset(),
                value,
            });
        }
    }
}

/// A producer thread sending `"<name>-<n>"` with keys spread over the partitions until told
/// to stop.
struct Sender {
    producer: Arc<BaseProducer<Acks>>,
    thread: JoinHandle<()>,
}

impl Sender {
    fn start(addr: &str, name: &'static str, idempotent: bool, stop: Arc<AtomicBool>) -> Sender {
        let producer: BaseProducer<Acks> = client_config(addr)
            .set("acks", "all")
            .set("enable.idempotence", idempotent.to_string())
            .set("linger.ms", "2")
            .set("message.timeout.ms", "120000")
            .set("reconnect.backoff.ms", "20")
            .set("reconnect.backoff.max.ms", "200")
            .create_with_context(Acks {
                acked: Mutex::new(Vec::new()),
            })
            .expect("producer");
        let producer = Arc::new(producer);
        let thread = {
            let producer = producer.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let value = format!("{name}-{n}");
                    let key = (n % 64).to_string();
                    match producer.send(BaseRecord::to(TOPIC).key(&key).payload(&value)) {
                        Ok(()) => n += 1,
                        Err(_) => {
                            producer.poll(Duration::from_millis(5));
                        }
                    }
                    producer.poll(Duration::ZERO);
                    if n.is_multiple_of(200) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                let _ = producer.flush(Duration::from_secs(60));
            })
        };
        Sender { producer, thread }
    }

    fn acked_count(&self) -> usize {
        self.producer.context().acked.lock().expect("lock").len()
    }

    fn finish(self) -> Vec<Ack> {
        self.thread.join().expect("sender thread");
        let acked = self.producer.context().acked.lock().expect("lock").clone();
        acked
    }
}

/// A group member that commits synchronously every 50 records, counts the commits the broker
/// acknowledged in `commits` and remembers the last one per partition.
fn start_committer(
    addr: &str,
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicUsize>,
) -> JoinHandle<HashMap<i32, i64>> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "30000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    std::thread::spawn(move || {
        let mut committed = HashMap::new();
        let mut consumed = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            consumed += 1;
            if !consumed.is_multiple_of(50) {
                continue;
            }
            let mut offsets = TopicPartitionList::new();
            let next = Offset::Offset(message.offset() + 1);
            offsets
                .add_partition_offset(TOPIC, message.partition(), next)
                .expect("offset");
            if consumer.commit(&offsets, CommitMode::Sync).is_ok() {
                committed.insert(message.partition(), message.offset() + 1);
                commits.fetch_add(1, Ordering::Relaxed);
            }
        }
        committed
    })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A pause of 300 to 1,500 ms, different each cycle without a random-number dependency.
fn pause(cycle: usize) -> Duration {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = clock.subsec_nanos() as usize ^ cycle.wrapping_mul(7919);
    Duration::from_millis(300 + (nanos % 1200) as u64)
}

fn kill_loop(cycles: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    // The group rebalances at once after each restart, so commits happen in every cycle.
    let env = [("FRESHET_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")];
    let mut broker = BrokerProcess::start_on(dir.path(), &listen, &env);
    create_topic(&broker.addr);

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicUsize::new(0));
    let idempotent = Sender::start(&broker.addr, "idem", true, stop.clone());
    let plain = Sender::start(&broker.addr, "plain", false, stop.clone());
    let committer = start_committer(&broker.addr, stop.clone(), commits.clone());
    let progress = || {
        (
            idempotent.acked_count() + plain.acked_count(),
            commits.load(Ordering::Relaxed),
        )
    };

    for cycle in 0..cycles {
        let before = progress();
        std::thread::sleep(pause(cycle));
        wait_for_progress(before, progress);
        broker.kill();
        broker = BrokerProcess::start_on(dir.path(), &listen, &env);
        eprintln!(
            "cycle {}/{cycles}: {} + {} acknowledged, {} commits so far",
            cycle + 1,
            idempotent.acked_count(),
            plain.acked_count(),
            commits.load(Ordering::Relaxed)
        );
    }
    // The clients work against the last broker before they stop.
    wait_for_progress(progress(), progress);
    stop.store(true, Ordering::Relaxed);
    let idempotent_acks = idempotent.finish();
    let plain_acks = plain.finish();
    let commits_by_partition = committer.join().expect("committer thread");

    let stored = read_partitions(&broker.addr);
    check_acknowledged_records_are_where_they_were_acknowledged(&stored, &idempotent_acks);
    check_acknowledged_records_are_where_they_were_acknowledged(&stored, &plain_acks);
    check_idempotent_records_are_once_and_in_order(&stored, "idem-");
    assert!(
        !commits_by_partition.is_empty(),
        "no offset commit was acknowledged"
    );
    check_commits_survived(&broker.addr, &commits_by_partition);
    eprintln!(
        "{cycles} kills: {} idempotent and {} plain records acknowledged and stored, {} commits acknowledged and kept",
        idempotent_acks.len(),
        plain_acks.len(),
        commits.load(Ordering::Relaxed)
    );
}

fn create_topic(addr: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(addr).create().expect("admin");
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    let created = futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create topics");
    assert!(matches!(created.as_slice(), [Ok(_)]), "{created:?}");
}

/// Waits until both more records were acknowledged and more offsets committed than
/// `before` (acks, commits): every cycle kills a broker that was really working.
fn wait_for_progress(before: (usize, usize), progress: impl Fn() -> (usize, usize)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (acks, commits) = progress();
        if acks > before.0 && commits > before.1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "in 60 s after a restart: {} more records acknowledged, {} more commits",
            acks - before.0,
            commits - before.1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every record of every partition: partition → offset → value.
fn read_partitions(addr: &str) -> HashMap<i32, BTreeMap<i64, String>> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", "kill-loop-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut stored = HashMap::new();
    for partition in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(TOPIC, partition, Duration::from_secs(10))
            .expect("watermarks");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Offset(low))
            .expect("assign");
        consumer.assign(&assignment).expect("assign");
        let mut records = BTreeMap::new();
        let mut next = low;
        let deadline = Instant::now() + Duration::from_secs(60);
        while next < high {
            assert!(
                Instant::now() < deadline,
                "reading partition {partition} stalled at {next}"
            );
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("no consumer error");
                let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                records.insert(message.offset(), value.into_owned());
                next = message.offset() + 1;
            }
        }
        stored.insert(partition, records);
    }
    stored
}

fn check_acknowledged_records_are_where_they_were_acknowledged(
    stored: &HashMap<i32, BTreeMap<i64, String>>,
    acks: &[Ack],
) {
    let wrong: Vec<_> = acks
        .iter()
        .filter(|ack| {
            stored.get(&ack.partition).and_then(|p| p.get(&ack.offset)) != Some(&ack.value)
        })
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "acknowledged records missing or changed (first 5 of {}): {wrong:?}",
        acks.len()
    );
}

fn check_idempotent_records_are_once_and_in_order(
    stored: &HashMap<i32, BTreeMap<i64, String>>,
    prefix: &str,
) {
    for (partition, records) in stored {
        let sequence: Vec<u64> = records
            .values()
            .filter_map(|value| value.strip_prefix(prefix)?.parse().ok())
            .collect();
        assert!(
            sequence.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: the idempotent producer's records are duplicated or out of order"
        );
    }
}

fn check_commits_survived(addr: &str, commits: &HashMap<i32, i64>) {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", GROUP)
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(TOPIC, partition);
    }
    let stored = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("committed offsets");
    for (partition, acknowledged) in commits {
        let offset = stored
            .find_partition(TOPIC, *partition)
            .and_then(|p| p.offset().to_raw())
            .unwrap_or(-1);
        assert!(
            offset >= *acknowledged,
            "partition {partition}: committed offset {offset} is behind the acknowledged commit {acknowledged}"
        );
    }
}
