//! Three tracker nodes as separate `freshet tracker` processes against a `freshet broker`
//! process: every node's global count equals the ground truth, through a SIGKILL of one node
//! mid-stream and a restart of all of them (which resume from checkpoints, not offset 0). One
//! node runs two worker threads in each half: the one killed, then one after the restart.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::daemon::{get_json, http_get, Daemon};
use common::prometheus::{parse, Exposition};
use common::{
    assert_fails_fast_without_a_broker, client_config, closed_port, freshet, BrokerProcess,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;

/// A tracker node with `workers` worker threads (each a member of the group).
fn start_tracker(bootstrap: &str, node: &str, workers: usize) -> Daemon {
    let mut command = freshet();
    command
        .args(["tracker", "--bootstrap-servers", bootstrap])
        .args(["--tracker-workers", &workers.to_string()])
        .args(["--http-listen", "127.0.0.1:0", "--node-id", node])
        .args([
            "--checkpoint-interval-ms",
            "200",
            "--session-timeout-ms",
            "6000",
        ])
        .args(["--tracker-partitions", &PARTITIONS.to_string()])
        .env("FRESHET_LOG", "info");
    Daemon::start(command, node, "HTTP API on http://")
}

/// Runs `freshet generate` to completion; returns its last stdout line as JSON.
fn generate(bootstrap: &str, seed: u64, devices: u64, messages: u64) -> serde_json::Value {
    let output = freshet()
        .args([
            "generate",
            "--bootstrap-servers",
            bootstrap,
            "--json",
            "--pause-ms",
            "0",
        ])
        .args(["--seed", &seed.to_string()])
        .args(["--num-devices", &devices.to_string()])
        .args(["--num-messages", &messages.to_string()])
        .output()
        .expect("run freshet generate");
    assert!(output.status.success(), "generate failed: {output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf8");
    let last = stdout.lines().last().expect("a summary line");
    serde_json::from_str(last).expect("the last line is JSON")
}

/// Distinct device IPs in the whole topic, read independently of Freshet's services.
fn ground_truth(bootstrap: &str) -> u64 {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "ground-truth")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks("device-events", partition, Duration::from_secs(10))
            .expect("watermarks");
        remaining += high - low;
        assignment
            .add_partition_offset("device-events", partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut ips = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while remaining > 0 {
        assert!(Instant::now() < deadline, "ground truth read stalled");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consumed");
            let event: serde_json::Value =
                serde_json::from_slice(message.payload().expect("value")).expect("json");
            ips.insert(event["device_ip"].as_str().expect("ip").to_string());
            remaining -= 1;
        }
    }
    ips.len() as u64
}

fn scrape(addr: &str) -> Exposition {
    let (status, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// Waits until every node reports `expected` as its global count.
fn wait_for_global(nodes: &[&Daemon], expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    for node in nodes {
        loop {
            let number =
                get_json(&node.addr, "/global-number-ips").and_then(|v| v["number"].as_u64());
            if number == Some(expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node at {} reports {number:?}, expected {expected}; it sees {:?}",
                node.addr,
                get_json(&node.addr, "/api/v1/unique-ips")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn owned_partitions(node: &Daemon) -> usize {
    get_json(&node.addr, "/api/v1/unique-ips")
        .and_then(|v| v["partitions_owned"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "never true: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_nodes_stay_exact_through_a_kill_and_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        dir.path(),
        &[("FRESHET_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")],
    );
    let bootstrap = broker.addr.clone();
    let nodes: Vec<Daemon> = [("n1", 1), ("n2", 2), ("n3", 1)]
        .iter()
        .map(|(node, workers)| start_tracker(&bootstrap, node, *workers))
        .collect();

    let first = generate(&bootstrap, 11, 3000, 30_000);
    assert_eq!(first["sent"], 30_000);
    let truth = ground_truth(&bootstrap);
    assert_eq!(first["distinct_ips"].as_u64(), Some(truth));
    wait_for_global(&nodes.iter().collect::<Vec<_>>(), truth);
    // The group may still be settling (nodes joined one after the other). Four members share
    // six partitions, so a node owns one to four of them.
    wait_until("the three nodes share all partitions", || {
        let owned: Vec<usize> = nodes.iter().map(owned_partitions).collect();
        owned.iter().all(|&n| n > 0) && owned.iter().sum::<usize>() == PARTITIONS as usize
    });
    // The old tracker nodes' vote fields: every node's answer includes all three nodes'
    // counts, so all three "vote" for the one exact number.
    wait_until(
        "every node lists the three nodes as voting for the count",
        || {
            nodes.iter().all(|n| {
                get_json(&n.addr, "/global-number-ips").is_some_and(|v| {
                    v["number"] == truth
                        && v["voted_by"] == serde_json::json!(["n1", "n2", "n3"])
                        && v["voting_nodes"] == 3
                        && v["votes"] == serde_json::json!({ truth.to_string(): 3 })
                })
            })
        },
    );
    // Each event was counted by exactly one node: a partition that moved resumed where its
    // previous owner checkpointed on giving it up.
    wait_until("the nodes' /metrics add up to every event", || {
        let metrics: Vec<Exposition> = nodes.iter().map(|n| scrape(&n.addr)).collect();
        let counted: f64 = metrics
            .iter()
            .map(|m| m.value("freshet_tracker_events_total", &[]))
            .sum();
        let global = |m: &Exposition| m.get("freshet_tracker_distinct_ips", &[("scope", "global")]);
        assert!(counted <= 30_000.0, "{counted} events counted");
        counted == 30_000.0 && metrics.iter().all(|m| global(m) == Some(truth as f64))
    });

    // Kill the two-worker node while a second stream is being written; the others take over
    // its partitions from its last checkpoints.
    let mut nodes = nodes;
    let victim = nodes.remove(1);
    let writer = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || generate(&bootstrap, 12, 5000, 40_000))
    };
    std::thread::sleep(Duration::from_millis(300));
    victim.kill();
    let second = writer.join().expect("generator thread");
    assert_eq!(second["sent"], 40_000);
    let truth = ground_truth(&bootstrap);
    wait_for_global(&nodes.iter().collect::<Vec<_>>(), truth);
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().map(owned_partitions).sum::<usize>() != PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "survivors never took all partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Restart everything: the new processes resume from checkpoints.
    for node in nodes {
        node.terminate();
    }
    let nodes: Vec<Daemon> = [("n1", 1), ("n2", 1), ("n3", 2)]
        .iter()
        .map(|(node, workers)| start_tracker(&bootstrap, node, *workers))
        .collect();
    wait_for_global(&nodes.iter().collect::<Vec<_>>(), truth);
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed = loop {
        let partitions: Vec<serde_json::Value> = nodes
            .iter()
            .filter_map(|n| get_json(&n.addr, "/api/v1/tracker/partitions"))
            .flat_map(|v| v["partitions"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["owned"] == true)
            .collect();
        if partitions.len() == PARTITIONS as usize {
            break partitions;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never all owned after restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let total: i64 = resumed
        .iter()
        .map(|p| p["resumed_from"].as_i64().expect("resume offset"))
        .sum();
    assert_eq!(
        total, 70_000,
        "every partition resumed at its end, none from 0"
    );
    for node in nodes {
        node.terminate();
    }
    broker.terminate(Duration::from_secs(30));
}

#[test]
fn a_tracker_without_a_broker_fails_within_seconds_naming_the_address() {
    let address = closed_port();
    let mut command = freshet();
    command.args([
        "tracker",
        "--bootstrap-servers",
        &address,
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert_fails_fast_without_a_broker(command, &address);
}
