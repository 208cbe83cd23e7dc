//! Sign-in and rights without a broker: a real user store and ACL store in a temporary data
//! directory, the router called in-process. Routes whose right is granted and that would then
//! call Kafka are not called; a service's topic (refused after the right is checked) shows
//! that a check passed.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{assert_error, send, Answer};
use freshet_api::guard::GuardOptions;
use freshet_api::tokens::TokenKey;
use freshet_api::{app, AppState, HttpAuth};
use freshet_security::acl::{
    AclBinding, AclStore, Authorizer, Operation, PatternType, Permission, ResourceType,
    CLUSTER_NAME,
};
use freshet_security::scram::{Mechanism, MIN_ITERATIONS};
use freshet_security::users::UserStore;
use freshet_security::Principal;
use freshet_services::cluster::Cluster;
use freshet_services::generator::GeneratorJobs;
use freshet_services::guard::accounts::{Accounts, Argon2Params};
use freshet_services::guard::attempts::AttemptPublisher;
use freshet_services::guard::blocks::BlockMap;
use freshet_services::guard::secret::GuardSecret;
use freshet_services::guard::store::Store;
use freshet_services::guard::GuardHandle;
use freshet_services::KafkaConfig;
use serde_json::json;
use tempfile::TempDir;

const ADMIN_TOKEN: &str = "auth-test-admin-token";

/// A data directory with users and, optionally, ACLs.
struct Security {
    dir: TempDir,
    users: Arc<UserStore>,
}

impl Security {
    fn with_users(users: &[(&str, &str)]) -> Security {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(UserStore::open(dir.path()).expect("user store"));
        for (user, password) in users {
            store
                .add(user, password.as_bytes(), &Mechanism::ALL, MIN_ITERATIONS)
                .expect("add user");
        }
        Security { dir, users: store }
    }

    fn authorizer(&self, bindings: &[AclBinding], super_users: &[&str]) -> Arc<Authorizer> {
        let acls = AclStore::open(self.dir.path()).expect("acl store");
        acls.create(bindings).expect("create ACLs");
        Arc::new(Authorizer::new(
            acls,
            super_users.iter().map(|user| Principal::user(*user)),
        ))
    }

    fn auth(&self, authorizer: Option<Arc<Authorizer>>) -> HttpAuth {
        HttpAuth::open(self.dir.path(), Arc::clone(&self.users), authorizer).expect("auth")
    }
}

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

/// Cluster and generator clients pointed at a port nothing listens on: only requests
/// refused before any Kafka call may reach them.
fn unreachable_services() -> AppState {
    let kafka = KafkaConfig::new("127.0.0.1:9");
    let cluster = Cluster::new(&kafka).expect("clients are created without connecting");
    AppState::new()
        .with_cluster(cluster)
        .with_generator(GeneratorJobs::new(kafka))
}

async fn guard() -> (GuardHandle, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/guard.db", dir.path().display());
    let store = Store::connect(&url).await.expect("store");
    let params = Argon2Params {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    let accounts = Accounts::new(store, params).await.expect("accounts");
    let unreachable = KafkaConfig::new("127.0.0.1:9");
    let publisher = AttemptPublisher::new(&unreachable, "login-attempts", GuardSecret::random())
        .expect("publisher");
    let handle = GuardHandle::new(accounts, publisher, BlockMap::default(), "blocked-users");
    (handle, dir)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn call(app: &Router, method: Method, uri: &str, authorization: Option<&str>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    send(app, request.body(Body::empty()).expect("request")).await
}

async fn get_as(app: &Router, uri: &str, authorization: &str) -> Answer {
    call(app, Method::GET, uri, Some(authorization)).await
}

async fn post_json_as(app: &Router, uri: &str, body: &str, authorization: &str) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::from(body.to_owned()))
        .expect("request");
    send(app, request).await
}

async fn token_for(app: &Router, user: &str, password: &str) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"username": user, "password": password}).to_string(),
        ))
        .expect("request");
    send(app, request).await
}

fn challenge(answer: &Answer) -> &str {
    answer
        .headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

const TIMESTAMP: &str = "/api/v1/timestamp?value=1726667942";

#[tokio::test]
async fn without_users_nothing_asks_for_credentials() {
    let security = Security::with_users(&[]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    let answer = call(&app, Method::GET, TIMESTAMP, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let whoami = call(&app, Method::GET, "/api/v1/auth/whoami", None).await;
    assert_eq!(
        whoami.json,
        json!({"principal": "User:ANONYMOUS", "user": "ANONYMOUS", "sign_in_required": false})
    );
    let token = token_for(&app, "alice", "whatever").await;
    assert_error(&token, StatusCode::UNAUTHORIZED, "this server has no users");
}

#[tokio::test]
async fn with_users_a_request_without_credentials_is_told_to_sign_in() {
    let security = Security::with_users(&[("alice", "alice-secret")]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    let answer = call(&app, Method::GET, TIMESTAMP, None).await;
    assert_error(
        &answer,
        StatusCode::UNAUTHORIZED,
        "sign in: this server has users",
    );
    assert_eq!(
        challenge(&answer),
        "Basic realm=\"freshet\", charset=\"UTF-8\""
    );

    let from_console = Request::builder()
        .uri("/api/v1/topics")
        .header("x-freshet-console", "1")
        .body(Body::empty())
        .expect("request");
    let answer = send(&app, from_console).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "sign in:");
    assert_eq!(
        challenge(&answer),
        "Bearer realm=\"freshet\"",
        "no Basic challenge: the browser would show its own dialog over the console"
    );
}

#[tokio::test]
async fn health_sign_in_and_the_console_page_stay_open() {
    let security = Security::with_users(&[("alice", "alice-secret")]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    for uri in ["/healthz", "/", "/assets/console.css", "/assets/js/main.js"] {
        let answer = call(&app, Method::GET, uri, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {answer:?}");
    }
    for uri in ["/api/openapi.json", "/metrics", "/api/v1/auth/whoami"] {
        let answer = call(&app, Method::GET, uri, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}: {answer:?}");
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_401_after_a_delay() {
    let security = Security::with_users(&[("alice", "alice-secret")]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    for authorization in [
        basic("alice", "wrong"),
        basic("mallory", "alice-secret"),
        "Basic !!!".to_owned(),
        bearer("not-a-token"),
        "Digest username=alice".to_owned(),
    ] {
        let started = Instant::now();
        let answer = get_as(&app, TIMESTAMP, &authorization).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "sign in: ");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{authorization}: answered after {:?}",
            started.elapsed()
        );
    }
    let wrong = get_as(&app, TIMESTAMP, &basic("alice", "wrong")).await;
    assert_error(
        &wrong,
        StatusCode::UNAUTHORIZED,
        "sign in: wrong user name or password",
    );
    let token = token_for(&app, "alice", "wrong").await;
    assert_error(
        &token,
        StatusCode::UNAUTHORIZED,
        "wrong user name or password",
    );
}

#[tokio::test]
async fn basic_and_tokens_sign_in() {
    let security = Security::with_users(&[("alice", "alice-secret"), ("bob", "bob-secret")]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    let alice = basic("alice", "alice-secret");
    for _ in 0..2 {
        // The second call is answered from the cache of verified passwords.
        let answer = get_as(&app, TIMESTAMP, &alice).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    let whoami = get_as(&app, "/api/v1/auth/whoami", &alice).await;
    assert_eq!(
        whoami.json,
        json!({"principal": "User:alice", "user": "alice", "sign_in_required": true})
    );

    let grant = token_for(&app, "bob", "bob-secret").await;
    assert_eq!(grant.status, StatusCode::OK, "{grant:?}");
    assert_eq!(grant.json["principal"], "User:bob");
    assert!(
        grant.json["expires_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{grant:?}"
    );
    let token = grant.json["token"].as_str().expect("token");
    let whoami = get_as(&app, "/api/v1/auth/whoami", &bearer(token)).await;
    assert_eq!(whoami.json["principal"], "User:bob", "{whoami:?}");

    // The token route takes Basic too, without a body.
    let by_basic = call(&app, Method::POST, "/api/v1/auth/token", Some(&alice)).await;
    assert_eq!(by_basic.status, StatusCode::OK, "{by_basic:?}");
    assert_eq!(by_basic.json["principal"], "User:alice");
}

#[tokio::test]
async fn tokens_survive_a_restart_but_not_expiry_or_tampering() {
    let security = Security::with_users(&[("alice", "alice-secret")]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    let grant = token_for(&app, "alice", "alice-secret").await;
    let token = grant.json["token"].as_str().expect("token").to_owned();

    let restarted = freshet_api::app(AppState::new().with_auth(security.auth(None)));
    let answer = get_as(&restarted, TIMESTAMP, &bearer(&token)).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the key is on disk: {answer:?}"
    );

    let (payload, signature) = token.split_once('.').expect("two parts");
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"sub":"root","exp":99999999999}"#);
    for tampered in [
        format!("{forged_payload}.{signature}"),
        format!("{payload}.{}", other_first_char(signature)),
        format!("{payload}x.{signature}"),
    ] {
        let answer = get_as(&app, TIMESTAMP, &bearer(&tampered)).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "sign in: the token");
    }

    let other_key = HttpAuth::with_key(Arc::clone(&security.users), None, TokenKey::random());
    let foreign = other_key.issue_token("alice").token;
    let answer = get_as(&app, TIMESTAMP, &bearer(&foreign)).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "signature is wrong");

    let short = security.auth(None).with_token_lifetime(Duration::ZERO);
    let expired = short.issue_token("alice").token;
    let answer = get_as(&app, TIMESTAMP, &bearer(&expired)).await;
    assert_error(
        &answer,
        StatusCode::UNAUTHORIZED,
        "sign in: the token expired at",
    );
}

/// `text` with its first character changed.
fn other_first_char(text: &str) -> String {
    let replacement = if text.starts_with('A') { "B" } else { "A" };
    format!("{replacement}{}", &text[1..])
}

#[tokio::test]
async fn a_removed_user_is_signed_out_at_once() {
    let security = Security::with_users(&[("alice", "alice-secret"), ("bob", "bob-secret")]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    let alice = basic("alice", "alice-secret");
    let token = token_for(&app, "alice", "alice-secret").await.json["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(get_as(&app, TIMESTAMP, &alice).await.status, StatusCode::OK);
    assert_eq!(
        get_as(&app, TIMESTAMP, &bearer(&token)).await.status,
        StatusCode::OK
    );

    assert!(security.users.remove("alice").expect("remove"));
    let by_token = get_as(&app, TIMESTAMP, &bearer(&token)).await;
    assert_error(
        &by_token,
        StatusCode::UNAUTHORIZED,
        "the token's user alice no longer exists",
    );
    let by_password = get_as(&app, TIMESTAMP, &alice).await;
    assert_error(
        &by_password,
        StatusCode::UNAUTHORIZED,
        "wrong user name or password",
    );
}

#[tokio::test]
async fn a_changed_password_ends_the_cached_sign_in() {
    let security = Security::with_users(&[("alice", "old-secret")]);
    let app = app(AppState::new().with_auth(security.auth(None)));
    let old = basic("alice", "old-secret");
    assert_eq!(get_as(&app, TIMESTAMP, &old).await.status, StatusCode::OK);
    security
        .users
        .add("alice", b"new-secret", &Mechanism::ALL, MIN_ITERATIONS)
        .expect("change password");
    let answer = get_as(&app, TIMESTAMP, &old).await;
    assert_error(
        &answer,
        StatusCode::UNAUTHORIZED,
        "wrong user name or password",
    );
    let new = get_as(&app, TIMESTAMP, &basic("alice", "new-secret")).await;
    assert_eq!(new.status, StatusCode::OK, "{new:?}");
}

#[tokio::test]
async fn rights_are_the_acls_of_the_signed_in_user() {
    let security = Security::with_users(&[
        ("alice", "alice-secret"),
        ("bob", "bob-secret"),
        ("root", "root-secret"),
    ]);
    let authorizer = security.authorizer(
        &[
            allow(ResourceType::Topic, "orders", "alice", Operation::Describe),
            allow(
                ResourceType::Topic,
                "blocked-users",
                "alice",
                Operation::Delete,
            ),
            allow(
                ResourceType::Cluster,
                CLUSTER_NAME,
                "alice",
                Operation::Describe,
            ),
        ],
        &["root"],
    );
    let app = app(unreachable_services().with_auth(security.auth(Some(authorizer))));
    let (alice, bob, root) = (
        basic("alice", "alice-secret"),
        basic("bob", "bob-secret"),
        basic("root", "root-secret"),
    );

    let delete = call(&app, Method::DELETE, "/api/v1/topics/orders", Some(&alice)).await;
    assert_error(
        &delete,
        StatusCode::FORBIDDEN,
        "User:alice may not Delete topic orders",
    );
    assert_eq!(
        delete.json["error"],
        "User:alice may not Delete topic orders"
    );
    // Alice may delete blocked-users: the ACL passes, then the service's topic is refused.
    let service = call(
        &app,
        Method::DELETE,
        "/api/v1/topics/blocked-users",
        Some(&alice),
    )
    .await;
    assert_error(
        &service,
        StatusCode::FORBIDDEN,
        "belongs to the login guard",
    );
    let super_user = call(
        &app,
        Method::DELETE,
        "/api/v1/topics/blocked-users",
        Some(&root),
    )
    .await;
    assert_error(
        &super_user,
        StatusCode::FORBIDDEN,
        "belongs to the login guard",
    );

    let metrics = get_as(&app, "/metrics", &bob).await;
    assert_error(
        &metrics,
        StatusCode::FORBIDDEN,
        "User:bob may not Describe the cluster",
    );
    assert_eq!(
        get_as(&app, "/metrics", &alice).await.status,
        StatusCode::OK
    );
    assert_eq!(get_as(&app, "/metrics", &root).await.status, StatusCode::OK);

    let read = get_as(&app, "/api/v1/topics/orders/partitions/0/records", &alice).await;
    assert_error(
        &read,
        StatusCode::FORBIDDEN,
        "User:alice may not Read topic orders",
    );
    let produce = post_json_as(&app, "/api/v1/topics/orders/records", "{}", &alice).await;
    assert_error(
        &produce,
        StatusCode::FORBIDDEN,
        "User:alice may not Write topic orders",
    );
    let describe = get_as(&app, "/api/v1/topics/payments", &alice).await;
    assert_error(
        &describe,
        StatusCode::FORBIDDEN,
        "User:alice may not Describe topic payments",
    );
    let group = get_as(&app, "/api/v1/groups/billing", &alice).await;
    assert_error(
        &group,
        StatusCode::FORBIDDEN,
        "User:alice may not Describe group billing",
    );

    let create = post_json_as(&app, "/api/v1/topics", r#"{"name": "fresh"}"#, &alice).await;
    assert_error(
        &create,
        StatusCode::FORBIDDEN,
        "User:alice may not Create topic fresh",
    );
    let unreadable = post_json_as(&app, "/api/v1/topics", "[1, 2]", &alice).await;
    assert_error(
        &unreadable,
        StatusCode::BAD_REQUEST,
        "JSON object whose name is a string",
    );

    let job = post_json_as(&app, "/api/v1/generator/jobs", "{}", &alice).await;
    assert_error(
        &job,
        StatusCode::FORBIDDEN,
        "User:alice may not Write topic device-events",
    );
    let named = post_json_as(&app, "/api/v1/generator/jobs", r#"{"topic": "t"}"#, &bob).await;
    assert_error(
        &named,
        StatusCode::FORBIDDEN,
        "User:bob may not Write topic t",
    );
    let start = get_as(&app, "/start", &bob).await;
    assert_error(
        &start,
        StatusCode::FORBIDDEN,
        "may not Write topic device-events",
    );
    let cancel = post_json_as(&app, "/api/v1/generator/jobs/7/cancel", "{}", &bob).await;
    assert_error(&cancel, StatusCode::NOT_FOUND, "no generator job 7");

    // Sign-in only: no right is checked.
    let whoami = get_as(&app, "/api/v1/auth/whoami", &bob).await;
    assert_eq!(whoami.status, StatusCode::OK, "{whoami:?}");
}

#[tokio::test]
async fn without_an_authorizer_every_signed_in_user_may_do_everything() {
    let security = Security::with_users(&[("bob", "bob-secret")]);
    let app = app(unreachable_services().with_auth(security.auth(None)));
    let bob = basic("bob", "bob-secret");
    assert_eq!(get_as(&app, "/metrics", &bob).await.status, StatusCode::OK);
    // Past the (absent) rights, the service's topic is still refused.
    let service = call(
        &app,
        Method::DELETE,
        "/api/v1/topics/login-attempts",
        Some(&bob),
    )
    .await;
    assert_error(
        &service,
        StatusCode::FORBIDDEN,
        "belongs to the login guard",
    );
}

#[tokio::test]
async fn guard_admin_routes_take_alter_on_the_cluster_a_super_user_or_the_admin_token() {
    let security = Security::with_users(&[
        ("alice", "alice-secret"),
        ("bob", "bob-secret"),
        ("root", "root-secret"),
    ]);
    let authorizer = security.authorizer(
        &[allow(
            ResourceType::Cluster,
            CLUSTER_NAME,
            "alice",
            Operation::Alter,
        )],
        &["root"],
    );
    let (handle, _guard_dir) = guard().await;
    let options = GuardOptions {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..GuardOptions::default()
    };
    let app = app(AppState::new()
        .with_guard(handle, options)
        .with_auth(security.auth(Some(authorizer))));

    let bob = get_as(&app, "/api/v1/blocked", &basic("bob", "bob-secret")).await;
    assert_error(
        &bob,
        StatusCode::FORBIDDEN,
        "User:bob may not Alter the cluster",
    );
    for authorization in [
        basic("root", "root-secret"),
        basic("alice", "alice-secret"),
        bearer(ADMIN_TOKEN),
    ] {
        let answer = get_as(&app, "/api/v1/blocked", &authorization).await;
        assert_eq!(answer.status, StatusCode::OK, "{authorization}: {answer:?}");
        assert_eq!(answer.json, json!({"blocked": []}));
    }
    let unblock = call(
        &app,
        Method::DELETE,
        "/api/v1/blocked/nobody",
        Some(&basic("root", "root-secret")),
    )
    .await;
    assert_error(&unblock, StatusCode::NOT_FOUND, "is not blocked");
    let nothing = call(&app, Method::GET, "/api/v1/blocked", None).await;
    assert_error(&nothing, StatusCode::UNAUTHORIZED, "sign in:");
    let wrong_token = get_as(&app, "/api/v1/blocked", &bearer("not-the-token")).await;
    assert_error(&wrong_token, StatusCode::UNAUTHORIZED, "sign in:");
}

#[tokio::test]
async fn without_users_the_admin_routes_still_need_the_admin_token() {
    let security = Security::with_users(&[]);
    let (handle, _guard_dir) = guard().await;
    let options = GuardOptions {
        admin_token: Some(ADMIN_TOKEN.into()),
        ..GuardOptions::default()
    };
    let app = app(AppState::new()
        .with_guard(handle, options)
        .with_auth(security.auth(None)));
    let nothing = call(&app, Method::GET, "/api/v1/blocked", None).await;
    assert_error(&nothing, StatusCode::UNAUTHORIZED, "admin token");
    assert_eq!(challenge(&nothing), "Bearer realm=\"freshet-admin\"");
    let token = get_as(&app, "/api/v1/blocked", &bearer(ADMIN_TOKEN)).await;
    assert_eq!(token.status, StatusCode::OK, "{token:?}");
}

#[tokio::test]
async fn the_spec_declares_the_schemes_and_the_401_and_403_of_each_route() {
    let spec = serde_json::to_value(freshet_api::openapi::spec()).expect("spec");
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let delete = &spec["paths"]["/api/v1/topics/{name}"]["delete"];
    assert_eq!(
        delete["security"],
        json!([{}, {"basic": []}, {"bearer": []}])
    );
    assert!(delete["responses"]["401"]["headers"]
        .get("WWW-Authenticate")
        .is_some());
    let forbidden = delete["responses"]["403"]["description"]
        .as_str()
        .expect("403");
    assert!(forbidden.contains("Delete on the topic"), "{forbidden}");
    let health = &spec["paths"]["/healthz"]["get"];
    assert_eq!(health["security"], json!([{}]));
    assert!(health["responses"].get("401").is_none());
    let token = &spec["paths"]["/api/v1/auth/token"]["post"];
    assert_eq!(token["security"], json!([{}]));
    assert!(spec["paths"]["/api/v1/auth/whoami"]["get"].is_object());
}
