use freshet_services::tracker::{Tracker, TrackerConfig};
use freshet_services::KafkaConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let bootstrap = std::env::args().nth(1).expect("bootstrap");
    let n: u32 = std::env::args()
        .nth(2)
        .map(|s| s.parse().expect("n"))
        .unwrap_or(2_000_000);
    let views = std::env::args()
        .nth(3)
        .map(|s| s == "views")
        .unwrap_or(true);
    let mode = std::env::args().nth(4).unwrap_or_default();
    let kafka = KafkaConfig::new(bootstrap.clone());
    let producer: ThreadedProducer<DefaultProducerContext> = kafka
        .durable_producer_config("scratch")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2000000")
        .create()
        .expect("p");
    let t = Instant::now();
    for i in 0..(if mode == "consume" { 0 } else { n }) {
        let d = (i.wrapping_mul(2654435761) % 1_000_000) as u64;
        let h = (d.wrapping_add(0x9E3779B97F4A7C15)).wrapping_mul(0xBF58476D1CE4E5B9);
        let ip = std::net::Ipv4Addr::from((h ^ (h >> 31)) as u32).to_string();
        let value = format!(
            r#"{{"timestamp": "2024-09-18T13:59:{:02}.123456Z", "device_ip": "{ip}", "error_code": {}}}"#,
            i % 60,
            i % 11
        );
        let mut rec = BaseRecord::to("device-events").key(&ip).payload(&value);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    eprintln!("produced {n} in {:?}", t.elapsed());
    if mode == "produce" {
        return;
    }
    let t = Instant::now();
    let tracker = Tracker::start(
        &kafka,
        TrackerConfig {
            views,
            ..TrackerConfig::default()
        },
    )
    .await
    .expect("start");
    let h = tracker.handle();
    loop {
        let u = h.unique_ips();
        if u.events_counted >= n as u64 {
            eprintln!(
                "counted {} in {:?} -> {:.0}/s, global {}",
                u.events_counted,
                t.elapsed(),
                n as f64 / t.elapsed().as_secs_f64(),
                u.global_count
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(move || tracker.shutdown())
        .await
        .expect("j");
}
