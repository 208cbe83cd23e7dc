//! TEMPORARY probe: what librdkafka does on a gzip bomb.
use std::time::{Duration, Instant};

use freshet_testkit::batches::{append_to_log, gzip_zeros_batch};
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;

struct Ctx(Instant);
impl ClientContext for Ctx {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if log_message.contains("Increasing") || log_message.contains("too large") || log_message.contains("GZIP") || fac.contains("ERR") {
            eprintln!("{:6.2}s LOG {fac} {log_message}", self.0.elapsed().as_secs_f64());
        }
    }
}
impl ConsumerContext for Ctx {}

fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let f = |k: &str| s.lines().find(|l| l.starts_with(k)).unwrap().split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024;
    (f("VmRSS:"), f("VmHWM:"))
}

async fn produce(broker: &TestBroker, from: i32) {
    let p = broker.producer(&[]);
    for i in from..from + 5 {
        p.send(FutureRecord::<str, str>::to("probe").partition(0).payload(&format!("good-{i}")), Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let mut broker = TestBroker::start().await;
    broker.create_topic("probe", 1, &[]).await;
    produce(&broker, 0).await;
    broker.shutdown().await;
    let bomb = gzip_zeros_batch(512 << 20);
    eprintln!("bomb {} bytes, rss {:?}", bomb.len(), rss());
    let at = append_to_log(broker.data_dir(), "probe", 0, &bomb);
    eprintln!("bomb at {at}");
    let broker = broker.restart(|_| {}).await;
    produce(&broker, 5).await;
    let extra: Vec<(String, String)> = std::env::var("PROBE_CONF").unwrap_or_default().split(';').filter(|s| !s.is_empty()).map(|kv| { let (k, v) = kv.split_once('=').unwrap(); (k.into(), v.into()) }).collect();
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        let mut c = freshet_testkit::client_config(&bootstrap);
        c.set("group.id", "probe").set("enable.auto.commit", "false").set("enable.partition.eof", "true");
        for (k, v) in &extra { c.set(k, v); }
        let consumer: BaseConsumer<Ctx> = c.create_with_context(Ctx(Instant::now())).unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("probe", 0, Offset::Offset(0)).unwrap();
        consumer.assign(&tpl).unwrap();
        let start = Instant::now();
        let mut last = Instant::now();
        while start.elapsed() < Duration::from_secs(std::env::var("PROBE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(40)) {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => eprintln!("{:6.2}s ok offset {} len {:?} rss {:?}", start.elapsed().as_secs_f64(), m.offset(), m.payload().map(|p| p.len()), rss()),
                Some(Err(e)) => eprintln!("{:6.2}s err {e:?} rss {:?}", start.elapsed().as_secs_f64(), rss()),
                None => if last.elapsed() > Duration::from_secs(2) { last = Instant::now(); eprintln!("{:6.2}s idle rss {:?} position {:?}", start.elapsed().as_secs_f64(), rss(), consumer.position().ok().map(|p| p.elements()[0].offset())); },
            }
        }
    }).await.unwrap();
}
