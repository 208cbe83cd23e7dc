//! The guard routes without a broker: validation, registration and login against a real
//! SQLite file, account enumeration, the rate limit, body limits and the admin token. The
//! attempt publisher points at a port nothing listens on: logins must answer anyway.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::{assert_error, get, send, Answer};
use freshet_api::guard::{GuardOptions, RateLimit, INVALID_LOGIN};
use freshet_api::{app, AppState};
use freshet_services::guard::accounts::{Accounts, Argon2Params};
use freshet_services::guard::attempts::AttemptPublisher;
use freshet_services::guard::blocks::BlockMap;
use freshet_services::guard::secret::GuardSecret;
use freshet_services::guard::store::Store;
use freshet_services::guard::GuardHandle;
use freshet_services::KafkaConfig;
use serde_json::json;

const TOKEN: &str = "admin-secret-token";

struct Setup {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn setup_with(params: Argon2Params, options: GuardOptions) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/guard.db", dir.path().display());
    let store = Store::connect(&url).await.expect("store");
    let accounts = Accounts::new(store, params).await.expect("accounts");
    let unreachable = KafkaConfig::new("127.0.0.1:9");
    let publisher = AttemptPublisher::new(&unreachable, "login-attempts", GuardSecret::random())
        .expect("publisher");
    let handle = GuardHandle::new(accounts, publisher, BlockMap::default(), "blocked-users");
    Setup {
        app: app(AppState::new().with_guard(handle, options)),
        _dir: dir,
    }
}

fn fast() -> Argon2Params {
    Argon2Params {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    }
}

async fn setup() -> Setup {
    setup_with(fast(), GuardOptions::default()).await
}

fn from(addr: &str, mut request: Request<Body>) -> Request<Body> {
    let addr: SocketAddr = addr.parse().expect("address");
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn post(uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

async fn post_from(app: &Router, addr: &str, uri: &str, body: &str) -> Answer {
    send(app, from(addr, post(uri, body))).await
}

async fn call(app: &Router, uri: &str, body: &str) -> Answer {
    post_from(app, "192.0.2.1:40000", uri, body).await
}

fn with_token(method: Method, uri: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn registration_validates_with_clear_400s() {
    let s = setup().await;
    for uri in ["/register", "/api/v1/register"] {
        assert_error(
            &call(&s.app, uri, "").await,
            StatusCode::BAD_REQUEST,
            "no body",
        );
        assert_error(
            &call(&s.app, uri, r#"{"user": "bob"}"#).await,
            StatusCode::BAD_REQUEST,
            "missing data",
        );
        assert_error(
            &call(&s.app, uri, "not json").await,
            StatusCode::BAD_REQUEST,
            "not a JSON object",
        );
        assert_error(
            &call(&s.app, uri, r#"{"user": "bo", "pass": "abcdefg1"}"#).await,
            StatusCode::BAD_REQUEST,
            "at least 3 characters",
        );
        assert_error(
            &call(&s.app, uri, r#"{"user": "bob", "pass": "abc1"}"#).await,
            StatusCode::BAD_REQUEST,
            "at least 8 characters",
        );
        assert_error(
            &call(&s.app, uri, r#"{"user": "bob", "pass": "abcdefgh"}"#).await,
            StatusCode::BAD_REQUEST,
            "letters and digits",
        );
    }
}

#[tokio::test]
async fn register_then_login_and_a_taken_name_is_refused() {
    let s = setup().await;
    let created = call(
        &s.app,
        "/register",
        r#"{"user": "bob", "pass": "hunter22"}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.json, json!({"user": "bob"}));
    assert!(!created.text.contains("argon2"), "no hash in any answer");

    // A well-formed request for a name that is taken conflicts with what exists: 409 on
    // both routes (the old login service's 400 said the request itself was malformed).
    let taken = r#"{"user": "bob", "pass": "other123"}"#;
    for uri in ["/register", "/api/v1/register"] {
        assert_error(
            &call(&s.app, uri, taken).await,
            StatusCode::CONFLICT,
            "already exists",
        );
    }

    for uri in ["/login", "/api/v1/login"] {
        let ok = call(&s.app, uri, r#"{"user": "bob", "pass": "hunter22"}"#).await;
        assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
        assert_eq!(ok.json, json!({"success": true}));
        for incomplete in [r#"{"user": "bob"}"#, "{}"] {
            assert_error(
                &call(&s.app, uri, incomplete).await,
                StatusCode::BAD_REQUEST,
                "missing data",
            );
        }
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    // The default parameters: the timing comparison is only meaningful at the real cost.
    let s = setup_with(Argon2Params::default(), GuardOptions::default()).await;
    let created = call(
        &s.app,
        "/register",
        r#"{"user": "bob", "pass": "hunter22"}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);

    let wrong = r#"{"user": "bob", "pass": "hunter23"}"#;
    let unknown = r#"{"user": "nobody", "pass": "hunter23"}"#;
    let a = call(&s.app, "/login", wrong).await;
    let b = call(&s.app, "/login", unknown).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, INVALID_LOGIN);
    assert_eq!((a.status, &a.text), (b.status, &b.text));

    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        call(&s.app, "/login", wrong).await;
        wrong_times.push(start.elapsed());
        let start = Instant::now();
        call(&s.app, "/login", unknown).await;
        unknown_times.push(start.elapsed());
    }
    let (wrong, unknown) = (median(wrong_times), median(unknown_times));
    // Without the dummy hash an unknown user answers in well under a millisecond, a wrong
    // password in tens of milliseconds: a factor of 100 or more, not 2.
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown user {unknown:?} vs wrong password {wrong:?}"
    );
}

#[tokio::test]
async fn logins_are_rate_limited_per_source_address() {
    let options = GuardOptions {
        rate_limit: RateLimit {
            per_second: 0.01,
            burst: 3.0,
        },
        ..GuardOptions::default()
    };
    let s = setup_with(fast(), options).await;
    let body = r#"{"user": "nobody", "pass": "whatever1"}"#;
    for _ in 0..3 {
        let answer = post_from(&s.app, "198.51.100.7:1000", "/login", body).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    }
    assert_error(
        &post_from(&s.app, "198.51.100.7:1001", "/login", body).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too many",
    );
    let other = post_from(&s.app, "198.51.100.8:1000", "/login", body).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED, "another address");
    // A forged X-Forwarded-For does not escape the limit when the header is not trusted.
    let mut forged = from("198.51.100.7:1002", post("/login", body));
    forged
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().expect("header"));
    assert_eq!(
        send(&s.app, forged).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn oversized_guard_bodies_and_long_fields_are_refused() {
    let s = setup().await;
    let padded = format!(
        r#"{{"user": "bob", "pass": "hunter22", "pad": "{}"}}"#,
        "x".repeat(5000)
    );
    assert_error(
        &call(&s.app, "/login", &padded).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "4096",
    );
    let long_pass = format!(r#"{{"user": "bob", "pass": "{}"}}"#, "p1".repeat(100));
    assert_error(
        &call(&s.app, "/login", &long_pass).await,
        StatusCode::BAD_REQUEST,
        "at most 128",
    );
    let long_user = format!(r#"{{"user": "{}", "pass": "hunter22"}}"#, "u".repeat(65));
    assert_error(
        &call(&s.app, "/api/v1/login", &long_user).await,
        StatusCode::BAD_REQUEST,
        "at most 64",
    );
}

/// The answer to missing or invalid credentials: 401 with a challenge naming the scheme.
fn assert_challenged(answer: &Answer, reason: &str) {
    assert_error(answer, StatusCode::UNAUTHORIZED, reason);
    assert_eq!(
        answer.headers.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer realm=\"freshet-admin\""[..]),
        "{answer:?}"
    );
}

#[tokio::test]
async fn admin_routes_are_refused_without_a_configured_token() {
    let s = setup().await;
    for (method, uri) in [
        (Method::GET, "/api/v1/blocked"),
        (Method::DELETE, "/api/v1/blocked/bob"),
    ] {
        // No token can be valid: a 401 (as the spec says), never a 403 or an open route.
        for token in [None, Some(""), Some(TOKEN)] {
            let answer = send(&s.app, with_token(method.clone(), uri, token)).await;
            assert_challenged(&answer, "no admin token is configured");
        }
    }
    let public = get(&s.app, "/blocked").await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.json, json!({"users-blocked": []}));
}

#[tokio::test]
async fn admin_routes_need_the_right_token() {
    let options = GuardOptions {
        admin_token: Some(TOKEN.into()),
        ..GuardOptions::default()
    };
    let s = setup_with(fast(), options).await;
    for token in [None, Some("wrong"), Some("admin-secret-tokeN")] {
        let answer = send(&s.app, with_token(Method::GET, "/api/v1/blocked", token)).await;
        assert_challenged(&answer, "a valid admin token is required");
        assert!(!answer.text.contains(TOKEN));
    }
    let listed = send(
        &s.app,
        with_token(Method::GET, "/api/v1/blocked", Some(TOKEN)),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json, json!({"blocked": []}));
    let not_blocked = send(
        &s.app,
        with_token(Method::DELETE, "/api/v1/blocked/bob", Some(TOKEN)),
    )
    .await;
    assert_error(&not_blocked, StatusCode::NOT_FOUND, "not blocked");
}

#[tokio::test]
async fn guard_routes_answer_503_without_a_guard() {
    let bare = app(AppState::new());
    assert_error(
        &call(&bare, "/login", r#"{"user": "bob", "pass": "hunter22"}"#).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "guard is not running",
    );
    assert_error(
        &get(&bare, "/blocked").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "guard is not running",
    );
}

/// Over a real socket, `serve` hands each request its peer address: the rate limit applies
/// to the connecting address (a request without one would not be limited at all).
#[tokio::test]
async fn served_logins_are_limited_by_their_peer_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let options = GuardOptions {
        rate_limit: RateLimit {
            per_second: 0.01,
            burst: 1.0,
        },
        ..GuardOptions::default()
    };
    let s = setup_with(fast(), options).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(freshet_api::serve(listener, s.app.clone(), async {
        let _ = stopped.await;
    }));
    let body = r#"{"user": "nobody", "pass": "whatever1"}"#;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        statuses.push(answer.lines().next().unwrap_or_default().to_string());
    }
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 401 Unauthorized",
            "HTTP/1.1 429 Too Many Requests"
        ]
    );
    stop.send(()).expect("server running");
    server
        .await
        .expect("server task")
        .expect("serve ends cleanly");
}
