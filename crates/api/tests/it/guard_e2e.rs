//! The guard end to end: a real broker over TCP, a real SQLite file, the blocker in its
//! consumer group, and logins through the router. Every login is published to
//! `login-attempts`; blocks come back through `blocked-users` to the login path. Records
//! that did not come from the guard (through the topic API or over the Kafka protocol)
//! block and unblock nobody.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::{assert_error, get, post_json, request, send, Answer};
use freshet_api::guard::{GuardOptions, RateLimit, USER_BANNED};
use freshet_api::{app, AppState};
use freshet_services::cluster::Cluster;
use freshet_services::guard::accounts::Argon2Params;
use freshet_services::guard::rules::BlockRecord;
use freshet_services::guard::{Guard, GuardConfig, GuardHandle};
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use serde_json::json;

const TOKEN: &str = "e2e-admin-token";
const TIMEOUT: Duration = Duration::from_secs(30);

struct Setup {
    app: Router,
    handle: GuardHandle,
    guard: Option<Guard>,
    config: GuardConfig,
    broker: TestBroker,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let broker = TestBroker::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = GuardConfig {
            argon2: Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            checkpoint_interval: Duration::from_millis(200),
            session_timeout: Duration::from_secs(6),
            ..GuardConfig::new(format!("sqlite://{}/guard.db", dir.path().display()))
        };
        let kafka = KafkaConfig::new(broker.bootstrap());
        let guard = Guard::start(&kafka, config.clone())
            .await
            .expect("guard starts");
        let cluster = Cluster::new(&kafka).expect("cluster client");
        let handle = guard.handle();
        let options = GuardOptions {
            admin_token: Some(TOKEN.into()),
            rate_limit: RateLimit {
                per_second: 1000.0,
                burst: 1000.0,
            },
            trust_forwarded_for: false,
        };
        let state = AppState::new()
            .with_guard(handle.clone(), options)
            .with_cluster(cluster);
        Setup {
            app: app(state),
            handle,
            guard: Some(guard),
            config,
            broker,
            _dir: dir,
        }
    }

    async fn post(&self, uri: &str, body: &str) -> Answer {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let peer: SocketAddr = "192.0.2.10:5000".parse().expect("address");
        request.extensions_mut().insert(ConnectInfo(peer));
        send(&self.app, request).await
    }

    async fn register(&self, user: &str, pass: &str) {
        let body = json!({"user": user, "pass": pass}).to_string();
        let answer = self.post("/register", &body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    }

    async fn login(&self, user: &str, pass: &str) -> Answer {
        let body = json!({"user": user, "pass": pass}).to_string();
        self.post("/login", &body).await
    }

    async fn admin(&self, method: Method, uri: &str, token: Option<&str>) -> Answer {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        send(&self.app, builder.body(Body::empty()).expect("request")).await
    }

    async fn wait_blocked(&self, user: &str, failures: u64) -> BlockRecord {
        let map = self.handle.block_map();
        let arrived = map
            .wait_for(user, TIMEOUT, |b| b.is_some_and(|b| b.failures == failures))
            .await;
        assert!(
            arrived,
            "{user} blocked with {failures}: {:?}",
            map.active(user)
        );
        map.active(user).expect("blocked")
    }

    /// Waits until the blocker has processed `records` and its block writes are
    /// acknowledged, then gives the follower a few poll intervals to read them.
    async fn wait_settled(&self, records: u64) {
        let stats = self.handle.blocker_stats().expect("a blocker runs");
        let deadline = std::time::Instant::now() + TIMEOUT;
        while stats.acknowledged.load(std::sync::atomic::Ordering::SeqCst) < records {
            assert!(
                std::time::Instant::now() < deadline,
                "blocker did not settle"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    async fn stop(mut self) {
        if let Some(guard) = self.guard.take() {
            tokio::task::spawn_blocking(move || guard.shutdown())
                .await
                .expect("guard stopped");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_logins_block_the_user_and_then_every_login_gets_423() {
    let s = Setup::start().await;
    s.register("victim", "right1pass").await;
    s.register("alice", "alice1pass").await;
    for _ in 0..4 {
        assert_eq!(
            s.login("alice", "wrong1pass").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(s.login("alice", "alice1pass").await.status, StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(
            s.login("victim", "wrong1pass").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    s.wait_blocked("victim", 5).await;

    let banned = s.login("victim", "right1pass").await;
    assert_error(&banned, StatusCode::LOCKED, USER_BANNED);
    assert_eq!(banned.json, json!({"error": "User Banned"}));
    let blocked = get(&s.app, "/blocked").await;
    assert_eq!(blocked.json, json!({"users-blocked": ["victim"]}));
    assert_eq!(
        s.login("alice", "alice1pass").await.status,
        StatusCode::OK,
        "4 failures and a success do not block"
    );
    // The refused login was published too: the block record counts it.
    s.wait_blocked("victim", 6).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_wrong_logins_block_and_are_all_counted() {
    let s = Setup::start().await;
    s.register("target", "right1pass").await;
    let logins: Vec<_> = (0..50)
        .map(|_| {
            let app = s.app.clone();
            tokio::spawn(async move {
                let mut request = Request::builder()
                    .method(Method::POST)
                    .uri("/login")
                    .header("content-type", "application/json")
                    .body(Body::from(r#"{"user": "target", "pass": "wrong1pass"}"#))
                    .expect("request");
                let peer: SocketAddr = "192.0.2.11:5000".parse().expect("address");
                request.extensions_mut().insert(ConnectInfo(peer));
                send(&app, request).await.status
            })
        })
        .collect();
    for login in logins {
        let status = login.await.expect("login task");
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::LOCKED,
            "{status}"
        );
    }
    let record = s.wait_blocked("target", 50).await;
    assert_eq!(record.until_ms, None);
    // Nothing more arrives: the count stays exactly 50.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.handle.block_map().active("target").map(|b| b.failures),
        Some(50)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lifts_a_block_only_with_the_token() {
    let s = Setup::start().await;
    s.register("carol", "carol1pass").await;
    for _ in 0..5 {
        s.login("carol", "wrong1pass").await;
    }
    let record = s.wait_blocked("carol", 5).await;

    let listed = s.admin(Method::GET, "/api/v1/blocked", Some(TOKEN)).await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    let entry = &listed.json["blocked"][0];
    assert_eq!(entry["user"], "carol");
    assert_eq!(entry["failures"], 5);
    assert_eq!(entry["since_ms"], record.since_ms);
    assert_eq!(entry["until"], serde_json::Value::Null);
    assert!(entry["since"].as_str().is_some_and(|s| s.ends_with('Z')));

    let refused = s.admin(Method::DELETE, "/api/v1/blocked/carol", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let wrong = s
        .admin(Method::DELETE, "/api/v1/blocked/carol", Some("nope"))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_error(
        &s.login("carol", "carol1pass").await,
        StatusCode::LOCKED,
        USER_BANNED,
    );

    let lifted = s
        .admin(Method::DELETE, "/api/v1/blocked/carol", Some(TOKEN))
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{lifted:?}");
    assert_eq!(lifted.json, json!({"user": "carol", "unblocked": true}));
    assert_eq!(s.login("carol", "carol1pass").await.status, StatusCode::OK);
    assert_eq!(
        get(&s.app, "/blocked").await.json,
        json!({"users-blocked": []})
    );

    // The blocker reset its count with the unblock: four new failures do not block again.
    for _ in 0..4 {
        s.login("carol", "wrong1pass").await;
    }
    // 5 failures, 1 refused login, the unblock, 1 success, 4 failures.
    s.wait_settled(12).await;
    assert_eq!(s.handle.block_map().active("carol"), None);
    s.stop().await;
}

/// What a client without the guard's secret writes: attempt records naming the victim.
fn forged_failures(user: &str, count: usize) -> Vec<serde_json::Value> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    (0..count)
        .map(|i| {
            json!({
                "attempt_id": format!("00000000-0000-4000-8000-{i:012}"),
                "user": user,
                "source": "6.6.6.6",
                "time_ms": now_ms,
                "success": false,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_api_refuses_to_write_or_delete_the_guards_topics() {
    let s = Setup::start().await;
    s.register("victim", "right1pass").await;
    let records: Vec<serde_json::Value> = forged_failures("victim", 6)
        .into_iter()
        .map(|value| json!({"key": "victim", "value": value}))
        .collect();
    let body = json!({ "records": records }).to_string();
    let refused = post_json(&s.app, "/api/v1/topics/login-attempts/records", &body).await;
    assert_error(
        &refused,
        StatusCode::FORBIDDEN,
        "topic login-attempts belongs to the login guard; only it writes records there",
    );
    for topic in [
        "blocked-users",
        "login-attempts.dlq",
        "freshet.guard.checkpoints",
    ] {
        let uri = format!("/api/v1/topics/{topic}/records");
        let answer = post_json(
            &s.app,
            &uri,
            r#"{"records": [{"key": "victim", "value": null}]}"#,
        )
        .await;
        assert_error(
            &answer,
            StatusCode::FORBIDDEN,
            &format!("topic {topic} belongs to"),
        );
    }
    for topic in [
        "login-attempts",
        "blocked-users",
        "login-attempts.dlq",
        "freshet.guard.checkpoints",
    ] {
        let uri = format!("/api/v1/topics/{topic}");
        let deleted = send(&s.app, request(Method::DELETE, &uri)).await;
        assert_error(
            &deleted,
            StatusCode::FORBIDDEN,
            "cannot be deleted through the API",
        );
        assert_eq!(
            get(&s.app, &uri).await.status,
            StatusCode::OK,
            "{topic} still readable"
        );
    }
    assert_eq!(s.login("victim", "right1pass").await.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_attempts_over_kafka_block_nobody_and_are_counted_in_metrics() {
    let s = Setup::start().await;
    s.register("victim", "right1pass").await;
    let producer = s.broker.producer(&[]);
    for value in forged_failures("victim", 6) {
        let value = value.to_string();
        let record = rdkafka::producer::FutureRecord::to(&s.config.attempts_topic)
            .key("victim")
            .payload(&value);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("the broker takes the forged record");
    }
    // A forged unblock needs a block to lift: five genuine failures of another user.
    s.register("carol", "carol1pass").await;
    for _ in 0..5 {
        s.login("carol", "wrong1pass").await;
    }
    s.wait_blocked("carol", 5).await;
    let unblock = json!({
        "attempt_id": "00000000-0000-4000-8000-999999999999", "user": "carol", "source": "admin",
        "time_ms": i64::MAX / 2, "success": false, "kind": "unblock",
    })
    .to_string();
    let record = rdkafka::producer::FutureRecord::to(&s.config.attempts_topic)
        .key("carol")
        .payload(&unblock);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("produced");
    // 6 forged failures, carol's 5 failures, the forged unblock.
    s.wait_settled(12).await;

    assert_eq!(s.login("victim", "right1pass").await.status, StatusCode::OK);
    assert_error(
        &s.login("carol", "carol1pass").await,
        StatusCode::LOCKED,
        USER_BANNED,
    );
    let metrics = get(&s.app, "/metrics").await;
    let line = |reason: &str| {
        format!(
            "freshet_guard_forged_records_total{{topic=\"login-attempts\",reason=\"{reason}\"}} "
        )
    };
    assert!(
        metrics.text.contains(&format!("{}7", line("missing_mac"))),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains(&format!("{}0", line("invalid_mac"))),
        "{}",
        metrics.text
    );
    let blocks_line =
        "freshet_guard_forged_records_total{topic=\"blocked-users\",reason=\"tombstone\"} 0";
    assert!(metrics.text.contains(blocks_line), "{}", metrics.text);

    // The genuine admin unblock still works.
    let lifted = s
        .admin(Method::DELETE, "/api/v1/blocked/carol", Some(TOKEN))
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{lifted:?}");
    assert_eq!(s.login("carol", "carol1pass").await.status, StatusCode::OK);
    s.stop().await;
}
