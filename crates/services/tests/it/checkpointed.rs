//! The checkpointed-consumer loop that the tracker's workers and the guard's blocker share,
//! tested once with the smallest stateful service there is: a running sum per partition,
//! checkpointed to a topic of its own, with every record echoed to an output topic (the
//! consequence a checkpoint must wait for).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use freshet_services::checkpointed::{self, Checkpointing, NextOffset, Stateful, StatefulConsumer};
use freshet_services::kafka::DeliveryCounter;
use freshet_services::KafkaConfig;
use freshet_testkit::batches::idempotent_batch;
use freshet_testkit::raw::RawClient;
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseRecord, FutureRecord, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::common::guard::wait_until;

const INPUT: &str = "numbers";
const OUTPUT: &str = "numbers.echo";
const CHECKPOINTS: &str = "numbers.sums";
const GROUP: &str = "summers";
/// The output topic's limit on a record batch: far above a batch of echoes, and below the one
/// echo of a `big` record's first delivery, which therefore fails.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// A partition's running sum and the next offset it has not added.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sum {
    next: i64,
    total: i64,
}

/// What the test reads of a running member.
#[derive(Debug, Default)]
struct Seen {
    live: Mutex<HashMap<i32, Sum>>,
    /// Records processed, repeats after a rewind included.
    processed: AtomicU64,
    /// Times the loop built the summer anew after its producer failed for good.
    rebuilds: AtomicU64,
}

impl Seen {
    fn total(&self) -> i64 {
        lock(&self.live).values().map(|s| s.total).sum()
    }
}

struct Summer {
    kafka: KafkaConfig,
    producer: ThreadedProducer<DeliveryCounter>,
    seen: Arc<Seen>,
    /// The sums of the last acknowledged checkpoint: what a rewind goes back to.
    committed: Mutex<HashMap<i32, Sum>>,
    /// `big` records whose oversize echo was already sent once.
    sent_too_large: Mutex<HashSet<(i32, i64)>>,
}

impl Stateful for Summer {
    type Sent = Vec<(i32, Sum)>;

    fn input_topic(&self) -> &str {
        INPUT
    }

    fn producers(&self) -> Vec<&ThreadedProducer<DeliveryCounter>> {
        vec![&self.producer]
    }

    fn process(&self, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        let mut live = lock(&self.seen.live);
        let Some(sum) = live.get_mut(&partition) else {
            return;
        };
        if offset < sum.next {
            return;
        }
        self.seen.processed.fetch_add(1, Ordering::SeqCst);
        let text = std::str::from_utf8(message.payload().unwrap_or_default()).expect("text");
        let (big, number) = match text.strip_prefix("big:") {
            Some(number) => (true, number),
            None => (false, text),
        };
        sum.next = offset + 1;
        sum.total += number.parse::<i64>().expect("a number");
        let oversize = big && lock(&self.sent_too_large).insert((partition, offset));
        let echo = if oversize {
            "x".repeat(OUTPUT_LIMIT * 4)
        } else {
            text.to_string()
        };
        let key = format!("{partition}/{offset}");
        self.producer
            .send(BaseRecord::to(OUTPUT).key(&key).payload(&echo))
            .expect("enqueued");
    }

    fn after_batch(&self, _: &StatefulConsumer<Self>) {}

    fn before_checkpoint(&self) {}

    fn send_checkpoints(&self) -> Vec<(i32, Sum)> {
        let live = lock(&self.seen.live).clone();
        let committed = lock(&self.committed);
        let changed: Vec<(i32, Sum)> = live
            .into_iter()
            .filter(|(id, sum)| committed.get(id) != Some(sum))
            .collect();
        for (id, sum) in &changed {
            let value = format!("{},{}", sum.next, sum.total);
            self.producer
                .send(
                    BaseRecord::to(CHECKPOINTS)
                        .key(&id.to_string())
                        .payload(&value),
                )
                .expect("enqueued");
        }
        changed
    }

    fn acknowledged(&self, _: &StatefulConsumer<Self>, sent: Vec<(i32, Sum)>) -> Vec<NextOffset> {
        let mut committed = lock(&self.committed);
        sent.into_iter()
            .map(|(id, sum)| {
                committed.insert(id, sum);
                (id, sum.next)
            })
            .collect()
    }

    fn not_acknowledged(&self, _: Vec<(i32, Sum)>) {}

    fn rewind(&self) -> Vec<NextOffset> {
        let committed = lock(&self.committed);
        let mut live = lock(&self.seen.live);
        live.iter_mut()
            .map(|(id, sum)| {
                *sum = committed.get(id).copied().unwrap_or_default();
                (*id, sum.next)
            })
            .collect()
    }

    fn assign(&self, _: &StatefulConsumer<Self>, partitions: &[i32]) -> Vec<NextOffset> {
        let mut stored = HashMap::new();
        for (key, value) in read_all(&self.kafka, CHECKPOINTS) {
            let (next, total) = value.split_once(',').expect("next,total");
            let sum = Sum {
                next: next.parse().expect("an offset"),
                total: total.parse().expect("a sum"),
            };
            stored.insert(key.parse::<i32>().expect("a partition"), sum);
        }
        let mut committed = lock(&self.committed);
        let mut live = lock(&self.seen.live);
        partitions
            .iter()
            .map(|id| {
                let sum = stored.get(id).copied().unwrap_or_default();
                committed.insert(*id, sum);
                live.insert(*id, sum);
                (*id, sum.next)
            })
            .collect()
    }

    fn revoke(&self, _: bool) {
        lock(&self.committed).clear();
        lock(&self.seen.live).clear();
    }
}

/// A group member running the loop on its own thread.
struct Member {
    seen: Arc<Seen>,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Member {
    fn start(kafka: &KafkaConfig, interval: Duration) -> Member {
        let seen = Arc::new(Seen::default());
        let consumer = summer(kafka, &seen);
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let (kafka, shared) = (kafka.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let rebuild = || {
                shared.rebuilds.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(summer(&kafka, &shared))
            };
            checkpointed::run(consumer, rebuild, &flag, interval);
        });
        Member {
            seen,
            stopping,
            thread,
        }
    }

    async fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        tokio::task::spawn_blocking(move || self.thread.join().expect("member thread"))
            .await
            .expect("joined");
    }
}

/// A summer's consumer, subscribed, with a new producer; what it sums shows in `seen`.
fn summer(kafka: &KafkaConfig, seen: &Arc<Seen>) -> StatefulConsumer<Summer> {
    let summer = Summer {
        kafka: kafka.clone(),
        producer: kafka
            .durable_producer_config("summer")
            .set("linger.ms", "2")
            .create_with_context(DeliveryCounter::new("summer"))
            .expect("producer"),
        seen: seen.clone(),
        committed: Mutex::default(),
        sent_too_large: Mutex::default(),
    };
    let consumer: StatefulConsumer<Summer> = kafka
        .stateful_group_config("summer", GROUP, Duration::from_secs(6))
        .create_with_context(Checkpointing::new(summer))
        .expect("consumer");
    consumer.subscribe(&[INPUT]).expect("subscribed");
    consumer
}

/// Every record of `topic`'s partitions, as text, from the beginning to its current end.
fn read_all(kafka: &KafkaConfig, topic: &str) -> Vec<(String, String)> {
    let consumer: BaseConsumer = kafka
        .client_config("reader")
        // librdkafka wants a group even for a consumer that only assigns; it never joins it.
        .set("group.id", "summer-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("reader");
    let timeout = Duration::from_secs(5);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), timeout)
            .expect("watermarks");
        remaining += high - low;
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assigned");
    let mut records = Vec::new();
    while remaining > 0 {
        let message = consumer
            .poll(timeout)
            .expect("a record before the end")
            .expect("readable");
        remaining -= 1;
        let text = |bytes: Option<&[u8]>| String::from_utf8(bytes.unwrap_or_default().to_vec());
        records.push((
            text(message.key()).expect("a text key"),
            text(message.payload()).expect("a text value"),
        ));
    }
    records
}

/// The sum of every partition's newest checkpoint.
fn checkpointed_total(kafka: &KafkaConfig) -> i64 {
    read_all(kafka, CHECKPOINTS)
        .into_iter()
        .collect::<HashMap<_, _>>()
        .values()
        .map(|value| {
            let (_, sum) = value.split_once(',').expect("next,total");
            sum.parse::<i64>().expect("a sum")
        })
        .sum()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("no test thread panicked holding it")
}

async fn setup() -> (TestBroker, KafkaConfig) {
    let broker = TestBroker::start().await;
    broker.create_topic(INPUT, 2, &[]).await;
    let limit = OUTPUT_LIMIT.to_string();
    broker
        .create_topic(OUTPUT, 1, &[("max.message.bytes", limit.as_str())])
        .await;
    broker
        .create_topic(CHECKPOINTS, 1, &[("cleanup.policy", "compact")])
        .await;
    let kafka = KafkaConfig::new(broker.bootstrap());
    (broker, kafka)
}

/// Sends `values` to the input, alternating partitions.
async fn send_numbers(broker: &TestBroker, values: impl IntoIterator<Item = String>) {
    let values: Vec<String> = values.into_iter().collect();
    let producer = broker.producer(&[]);
    let records = values.iter().enumerate().map(|(i, value)| {
        FutureRecord::<(), _>::to(INPUT)
            .partition(i as i32 % 2)
            .payload(value)
    });
    freshet_testkit::send_all(&producer, records).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_resumes_each_partition_from_the_checkpoint_its_predecessor_wrote_on_leaving() {
    let (broker, kafka) = setup().await;
    send_numbers(&broker, (1..=100).map(|n| n.to_string())).await;
    // No checkpoint on the clock: the only one is the one written when the partitions leave.
    let first = Member::start(&kafka, Duration::from_secs(3600));
    let seen = first.seen.clone();
    wait_until("the first member summed 1..=100", || seen.total() == 5050).await;
    first.stop().await;

    send_numbers(&broker, (101..=150).map(|n| n.to_string())).await;
    let second = Member::start(&kafka, Duration::from_secs(3600));
    let seen = second.seen.clone();
    wait_until("the second member summed 1..=150", || {
        seen.total() == 11_325
    })
    .await;
    assert_eq!(
        seen.processed.load(Ordering::SeqCst),
        50,
        "only the records after the checkpoint are read again"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_delivery_rewinds_to_the_last_checkpoint_so_every_consequence_arrives() {
    let (broker, kafka) = setup().await;
    send_numbers(&broker, (1..=20).map(|n| n.to_string())).await;
    let member = Member::start(&kafka, Duration::from_millis(200));
    let seen = member.seen.clone();
    wait_until("1..=20 summed", || seen.total() == 210).await;
    // Record 21's first echo is refused by the output topic: its checkpoint must not count.
    send_numbers(&broker, std::iter::once("big:21".to_string())).await;
    send_numbers(&broker, (22..=40).map(|n| n.to_string())).await;
    // The refusal shows at the next checkpoint, which rewinds to the one before and reads
    // the records after it again: 21's echo is sent a second time, and fits.
    wait_until("1..=40 summed again after a rewind", || {
        seen.processed.load(Ordering::SeqCst) > 40 && seen.total() == 820
    })
    .await;
    member.stop().await;

    let echoed: HashSet<String> = read_all(&kafka, OUTPUT)
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    for n in 1..=40 {
        let expected = if n == 21 {
            "big:21".to_string()
        } else {
            n.to_string()
        };
        assert!(echoed.contains(&expected), "the echo of {expected} arrived");
    }
    assert_eq!(
        checkpointed_total(&kafka),
        820,
        "the newest checkpoints hold the exact sums"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_that_failed_for_good_is_built_anew_and_its_partitions_resume_from_their_checkpoints(
) {
    let (broker, kafka) = setup().await;
    send_numbers(&broker, (1..=20).map(|n| n.to_string())).await;
    let member = Member::start(&kafka, Duration::from_millis(200));
    let seen = member.seen.clone();
    // A checkpoint is written only once every echo before it is acknowledged: from then on
    // the member, with nothing to read, sends nothing, and its last sequence number holds.
    wait_until("1..=20 summed and checkpointed", || {
        seen.total() == 210 && checkpointed_total(&kafka) == 210
    })
    .await;

    // Someone writes under the member's producer identity: the batch after the member's last
    // one in the echo topic. The member's next batch there is then out of order at the head
    // of its requests, which librdkafka takes as a desynchronised producer: a fatal error.
    let mut client = RawClient::connect(broker.addr).await.expect("connect");
    let producers = client.producers(OUTPUT, 0).await.expect("producers");
    let [owner] = producers.as_slice() else {
        panic!("one producer, the member's, wrote echoes: {producers:?}");
    };
    // 997 records: no batch of the member's can look like a retry of this one.
    let forged = idempotent_batch(
        owner.producer_id.0,
        i16::try_from(owner.producer_epoch).expect("an epoch"),
        owner.last_sequence + 1,
        997,
    );
    assert_eq!(client.produce(OUTPUT, 0, forged).await.expect("forge"), 0);

    send_numbers(&broker, (21..=40).map(|n| n.to_string())).await;
    wait_until("the summer was built anew and summed 1..=40", || {
        seen.rebuilds.load(Ordering::SeqCst) == 1 && seen.total() == 820
    })
    .await;
    member.stop().await;

    let echoed: HashSet<String> = read_all(&kafka, OUTPUT)
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    let missing: Vec<i32> = (1..=40)
        .filter(|n| !echoed.contains(&n.to_string()))
        .collect();
    assert!(missing.is_empty(), "echoes missing: {missing:?}");
    assert_eq!(
        checkpointed_total(&kafka),
        820,
        "the new producer wrote the exact sums"
    );
}
