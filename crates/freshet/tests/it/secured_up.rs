//! `freshet up` with authentication and ACLs on: the tracker and the guard sign in as their
//! own principals (SCRAM-SHA-512 over the broker's SASL_PLAINTEXT listener) with only the
//! ACLs created for them at start, and work exactly as on an open broker; a user's client
//! without ACLs is refused.

use crate::common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::daemon::{http_with_headers, Daemon};
use common::{client_config, freshet};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;

const ADMIN_PASSWORD: &str = "admin-secret";

fn add_user(data_dir: &std::path::Path, name: &str, password: &str) {
    let status = freshet()
        .args(["users", "add", name, "--data-dir"])
        .arg(data_dir)
        .env("FRESHET_USER_PASSWORD", password)
        .status()
        .expect("freshet users add");
    assert!(status.success());
}

fn start_secured_up(data_dir: &std::path::Path) -> Daemon {
    let mut command = freshet();
    command
        .args([
            "up",
            "--kafka-listen",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--authorizer",
            "acl",
            "--super-users",
            "User:admin",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--group-initial-rebalance-delay-ms", "0"])
        .args(["--checkpoint-interval-ms", "200"])
        .args(["--argon2-memory-kib", "1024", "--argon2-iterations", "1"])
        .env("FRESHET_LOG", "info");
    Daemon::start(command, "up", "HTTP API on http://")
}

fn sasl_producer(kafka: &str, user: &str, password: &str) -> BaseProducer {
    client_config(kafka)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[test]
fn the_services_sign_in_as_their_own_principals_and_count_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    add_user(dir.path(), "admin", ADMIN_PASSWORD);
    add_user(dir.path(), "mallory", "mallory-secret");
    let up = start_secured_up(dir.path());
    let kafka = up.kafka_addr();

    // The services' users and ACLs exist: nobody had to create them.
    let users = freshet()
        .args(["users", "list", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("users list");
    let users = String::from_utf8_lossy(&users.stdout);
    for service in ["freshet-tracker", "freshet-guard", "freshet-api"] {
        assert!(users.contains(service), "{service} in {users}");
    }

    let producer = sasl_producer(&kafka, "admin", ADMIN_PASSWORD);
    for i in 0..200 {
        let value = format!(
            r#"{{"timestamp": "2024-09-18T13:59:02Z", "device_ip": "10.1.{}.{}", "error_code": 0}}"#,
            i / 256,
            i % 256
        );
        producer
            .send(BaseRecord::<(), str>::to("device-events").payload(&value))
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("acknowledged");

    // The HTTP API needs sign-in now that users exist; the admin may read the counts.
    let anonymous =
        http_with_headers(&up.addr, "GET", "/global-number-ips", &[], None).expect("GET");
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let admin = basic("admin", ADMIN_PASSWORD);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http_with_headers(
            &up.addr,
            "GET",
            "/global-number-ips",
            &[("Authorization", &admin)],
            None,
        )
        .expect("GET");
        let number = (answer.status == 200)
            .then(|| serde_json::from_str::<serde_json::Value>(&answer.body).ok())
            .flatten()
            .and_then(|v| v["number"].as_u64());
        if number == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tracker counted {number:?} of 200 under its own principal"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A user without ACLs may sign in over HTTP but not read the counts (Describe on the
    // cluster), and the services' own users never sign in over HTTP.
    let refused = http_with_headers(
        &up.addr,
        "GET",
        "/global-number-ips",
        &[("Authorization", &basic("mallory", "mallory-secret"))],
        None,
    )
    .expect("GET");
    assert_eq!(refused.status, 403, "{refused:?}");

    // Over Kafka, a signed-in user without ACLs does not even see the tracker's topic.
    let mallory: BaseConsumer = client_config(&kafka)
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "mallory")
        .set("sasl.password", "mallory-secret")
        .create()
        .expect("client");
    let metadata = mallory
        .fetch_metadata(Some("device-events"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(
        metadata.topics()[0].error(),
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
    );
    up.terminate();
}
