//! Lists under the ACLs, end to end: a real broker with topics and consumer groups, and a
//! signed-in user who sees only the ones it may Describe.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{send, Answer};
use freshet_api::{app, AppState, HttpAuth};
use freshet_security::acl::{
    AclBinding, AclStore, Authorizer, Operation, PatternType, Permission, ResourceType,
};
use freshet_security::scram::{Mechanism, MIN_ITERATIONS};
use freshet_security::users::UserStore;
use freshet_security::Principal;
use freshet_services::cluster::Cluster;
use freshet_services::KafkaConfig;
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

fn allow_describe(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: Operation::Describe,
        permission: Permission::Allow,
    }
}

/// The API over `broker`, with users alice (who may Describe `orders` and the groups
/// starting `billing`) and root (a super user).
fn api(broker: &TestBroker, security: &tempfile::TempDir) -> Router {
    let users = Arc::new(UserStore::open(security.path()).expect("users"));
    for user in ["alice", "root"] {
        users
            .add(user, b"secret", &Mechanism::ALL, MIN_ITERATIONS)
            .expect("add user");
    }
    let acls = AclStore::open(security.path()).expect("acls");
    acls.create(&[
        allow_describe(ResourceType::Topic, "orders", PatternType::Literal),
        allow_describe(ResourceType::Group, "billing", PatternType::Prefixed),
    ])
    .expect("create ACLs");
    let authorizer = Arc::new(Authorizer::new(acls, [Principal::user("root")]));
    let auth = HttpAuth::open(security.path(), users, Some(authorizer)).expect("auth");
    let cluster = Cluster::new(&KafkaConfig::new(broker.bootstrap())).expect("cluster client");
    app(AppState::new().with_cluster(cluster).with_auth(auth))
}

async fn get_as(app: &Router, uri: &str, user: &str) -> Answer {
    let credentials = STANDARD.encode(format!("{user}:secret"));
    let request = Request::builder()
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Basic {credentials}"))
        .body(Body::empty())
        .expect("request");
    send(app, request).await
}

fn names(answer: &Answer, list: &str, field: &str) -> Vec<String> {
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let mut names: Vec<String> = answer.json[list]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|item| item[field].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Commits offset 0 of `topic` partition 0 for `group`: a group that holds offsets.
async fn commit_offsets(broker: &TestBroker, group: &str, topic: &str) {
    let mut config = broker.client_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("consumer");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&topic, 0, Offset::Offset(0))
            .expect("offset");
        consumer
            .commit(&offsets, CommitMode::Sync)
            .expect("the commit is acknowledged");
    })
    .await
    .expect("commit task");
}

/// The groups root sees, once both committed groups are listed.
async fn groups_seen_by_root(app: &Router) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = names(
            &get_as(app, "/api/v1/groups", "root").await,
            "groups",
            "group_id",
        );
        if found.len() >= 2 || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_show_only_what_the_user_may_describe() {
    let broker = TestBroker::start().await;
    for topic in ["orders", "payments"] {
        broker.create_topic(topic, 1, &[]).await;
    }
    for group in ["billing-eu", "audit"] {
        commit_offsets(&broker, group, "orders").await;
    }
    let security = tempfile::tempdir().expect("tempdir");
    let app = api(&broker, &security);

    let topics = get_as(&app, "/api/v1/topics", "alice").await;
    assert_eq!(names(&topics, "topics", "name"), ["orders"]);
    let all = names(
        &get_as(&app, "/api/v1/topics", "root").await,
        "topics",
        "name",
    );
    assert!(
        all.contains(&"orders".to_owned()) && all.contains(&"payments".to_owned()),
        "{all:?}"
    );

    let groups = groups_seen_by_root(&app).await;
    assert!(groups.contains(&"audit".to_owned()), "{groups:?}");
    let visible = get_as(&app, "/api/v1/groups", "alice").await;
    assert_eq!(names(&visible, "groups", "group_id"), ["billing-eu"]);
    let hidden = get_as(&app, "/api/v1/groups/audit", "alice").await;
    assert_eq!(hidden.status, StatusCode::FORBIDDEN, "{hidden:?}");
    assert_eq!(
        hidden.json,
        serde_json::json!({"error": "User:alice may not Describe group audit"})
    );
    let described: Value = get_as(&app, "/api/v1/groups/billing-eu", "alice")
        .await
        .json;
    assert_eq!(described["group_id"], "billing-eu", "{described}");
}
