//! Calls the router in-process with `tower::ServiceExt::oneshot`: no socket, but the same
//! routing, extractors, layers and fallbacks a real request goes through.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// What a test looks at in an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON; `Value::Null` when it is not JSON (tests then fail on the shape).
    pub json: Value,
    pub text: String,
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
        text,
    }
}

pub fn request(method: Method, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    send(app, request(Method::GET, uri)).await
}

pub async fn post_json(app: &Router, uri: &str, body: &str) -> Answer {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    send(app, request).await
}

/// Asserts an error answer: the status, JSON content type, and `{"error": <text containing
/// `reason`>}` with nothing else.
pub fn assert_error(answer: &Answer, status: StatusCode, reason: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "{answer:?}"
    );
    let object = answer.json.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "only the error field: {answer:?}");
    let error = object["error"].as_str().expect("error is a string");
    assert!(
        error.contains(reason),
        "{error:?} should contain {reason:?}"
    );
}

/// Polls `uri` until `done` accepts its JSON, or fails with the last answer after `timeout`.
pub async fn poll_until(
    app: &Router,
    uri: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = get(app, uri).await;
        if answer.status == StatusCode::OK && done(&answer.json) {
            return answer.json;
        }
        assert!(
            Instant::now() < deadline,
            "{uri} did not reach the expected state within {timeout:?}; last answer: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
