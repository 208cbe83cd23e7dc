//! The rights of the routes that change groups and topics, end to end: users signed in with
//! Basic, Kafka ACLs deciding, a real broker behind. Each route needs what Kafka asks of the
//! request it sends (OffsetCommit: Read on the group and the topic; OffsetDelete: Delete on the
//! group and Read on the topic; DeleteGroups: Delete on the group; IncrementalAlterConfigs:
//! AlterConfigs, CreatePartitions: Alter, DeleteRecords: Delete on the topic).

use crate::common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{assert_error, send, Answer};
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
use serde_json::{json, Value};

const TOPIC: &str = "events";
const GROUP: &str = "g";
const USERS: [&str; 3] = ["alice", "bob", "carol"];

fn allow(resource_type: ResourceType, name: &str, user: &str, operation: Operation) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type: PatternType::Literal,
        principal: format!("User:{user}"),
        host: "*".into(),
        operation,
        permission: Permission::Allow,
    }
}

/// The API over `broker` with the three users and their ACLs: alice may Read the group
/// only; bob may Read the group and the topic; carol may Delete the group and change the
/// topic (AlterConfigs, Alter, Delete) but not Read it.
fn api(broker: &TestBroker, dir: &std::path::Path) -> Router {
    use Operation::{Alter, AlterConfigs, Delete, Read};
    use ResourceType::{Group, Topic};
    let users = Arc::new(UserStore::open(dir).expect("user store"));
    for user in USERS {
        users
            .add(user, b"secret", &Mechanism::ALL, MIN_ITERATIONS)
            .expect("add user");
    }
    let acls = AclStore::open(dir).expect("acl store");
    acls.create(&[
        allow(Group, GROUP, "alice", Read),
        allow(Group, GROUP, "bob", Read),
        allow(Topic, TOPIC, "bob", Read),
        allow(Group, GROUP, "carol", Delete),
        allow(Topic, TOPIC, "carol", AlterConfigs),
        allow(Topic, TOPIC, "carol", Alter),
        allow(Topic, TOPIC, "carol", Delete),
    ])
    .expect("create ACLs");
    let authorizer = Arc::new(Authorizer::new(acls, std::iter::empty::<Principal>()));
    let auth = HttpAuth::open(dir, users, Some(authorizer)).expect("auth");
    let cluster = Cluster::new(&KafkaConfig::new(broker.bootstrap())).expect("cluster client");
    app(AppState::new().with_cluster(cluster).with_auth(auth))
}

async fn call(app: &Router, user: &str, method: Method, uri: &str, body: Option<Value>) -> Answer {
    let credentials = STANDARD.encode(format!("{user}:secret"));
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Basic {credentials}"));
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    send(app, request.body(body).expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_topic_changes_need_the_rights_kafka_asks_for() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = api(&broker, dir.path());
    broker.create_topic(TOPIC, 1, &[]).await;
    let reset_uri = format!("/api/v1/groups/{GROUP}/reset-offsets");
    let reset = json!({"topic": TOPIC, "to": "earliest"});

    let alice = call(&app, "alice", Method::POST, &reset_uri, Some(reset.clone())).await;
    assert_error(
        &alice,
        StatusCode::FORBIDDEN,
        "User:alice may not Read topic events",
    );
    let carol = call(&app, "carol", Method::POST, &reset_uri, Some(reset.clone())).await;
    assert_error(
        &carol,
        StatusCode::FORBIDDEN,
        "User:carol may not Read group g",
    );
    let bob = call(&app, "bob", Method::POST, &reset_uri, Some(reset)).await;
    assert_eq!(bob.status, StatusCode::OK, "{bob:?}");
    let no_topic = call(
        &app,
        "bob",
        Method::POST,
        &reset_uri,
        Some(json!({"to": "latest"})),
    )
    .await;
    assert_error(
        &no_topic,
        StatusCode::BAD_REQUEST,
        "the body must be a JSON object whose topic is a string",
    );

    let offsets_uri = format!("/api/v1/groups/{GROUP}/offsets/{TOPIC}");
    let bob = call(&app, "bob", Method::DELETE, &offsets_uri, None).await;
    assert_error(
        &bob,
        StatusCode::FORBIDDEN,
        "User:bob may not Delete group g",
    );
    let carol = call(&app, "carol", Method::DELETE, &offsets_uri, None).await;
    assert_error(
        &carol,
        StatusCode::FORBIDDEN,
        "User:carol may not Read topic events",
    );

    let group_uri = format!("/api/v1/groups/{GROUP}");
    let bob = call(&app, "bob", Method::DELETE, &group_uri, None).await;
    assert_error(
        &bob,
        StatusCode::FORBIDDEN,
        "User:bob may not Delete group g",
    );
    let carol = call(&app, "carol", Method::DELETE, &group_uri, None).await;
    assert_eq!(carol.status, StatusCode::NO_CONTENT, "{carol:?}");

    let topic_changes = [
        (
            Method::PATCH,
            format!("/api/v1/topics/{TOPIC}/configs"),
            json!({"set": {"retention.ms": "3600000"}}),
            "User:bob may not AlterConfigs topic events",
        ),
        (
            Method::POST,
            format!("/api/v1/topics/{TOPIC}/partitions"),
            json!({"count": 2}),
            "User:bob may not Alter topic events",
        ),
        (
            Method::POST,
            format!("/api/v1/topics/{TOPIC}/purge"),
            json!({}),
            "User:bob may not Delete topic events",
        ),
    ];
    for (method, uri, body, refusal) in topic_changes {
        let bob = call(&app, "bob", method.clone(), &uri, Some(body.clone())).await;
        assert_error(&bob, StatusCode::FORBIDDEN, refusal);
        let carol = call(&app, "carol", method, &uri, Some(body)).await;
        assert_eq!(carol.status, StatusCode::OK, "{uri}: {carol:?}");
    }
}
