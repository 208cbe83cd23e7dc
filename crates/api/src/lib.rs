//! Freshet's HTTP API: the routes of each stream service, the endpoints of the tools Freshet
//! replaces (same paths, same JSON; the old generator, the old tracker nodes and the old login
//! service of `docs/REFERENCE.md`), and the OpenAPI 3.1 spec of all of them.
//!
//! [`app`] builds the router from an [`AppState`] naming the services this process runs
//! ([`metrics_app`] one with only `/metrics`, for the broker alone); [`serve`] runs it on an
//! already-bound listener until a shutdown future completes, within [`HttpLimits`] (header,
//! body and idle timeouts, a connection cap). Tests call the router directly
//! (`tower::ServiceExt::oneshot`), without sockets.
//!
//! # Layout
//!
//! One module per area; each one that serves routes mounts them in its `routes()`:
//!
//! - [`auth`] — sign-in (Basic, or a signed token from `POST /api/v1/auth/token`) once the
//!   user store has users, and each route's right under the Kafka ACLs: the table of rights
//!   is there. [`tokens`] signs and checks the tokens.
//! - [`error`] — [`ApiError`], the `{"error": "..."}` answer of every failure, including
//!   axum's rejections (bad query, bad JSON, body too large), unknown routes (404) and wrong
//!   methods (405); and the extractors that reject with it.
//! - [`state`] — [`AppState`] and the extractors that answer 503 when a route's service does
//!   not run in this process.
//! - [`timestamp`] — `GET /api/v1/timestamp`.
//! - [`tracker`] — `/api/v1/unique-ips...` and `/api/v1/tracker/partitions`.
//! - [`generator`] — `/api/v1/generator/jobs...`.
//! - [`guard`] — the login guard: `/register`, `/login`, `/blocked` and their `/api/v1/...`
//!   equivalents, and the admin routes listing and lifting blocks.
//! - [`topics`] — `/api/v1/topics...`: list, describe, create and delete topics, send and
//!   read records, over the Kafka protocol.
//! - [`records`] — `GET /api/v1/topics/{name}/records` and its `/stream` and `/export`:
//!   records across a topic's partitions, merged by timestamp, filtered and resumable; a
//!   live tail as server-sent events; a JSON Lines or CSV download.
//! - [`groups`] — `/api/v1/groups...`: consumer groups, their members and lag.
//! - [`compat`] — the old tracker nodes' `/is-node-active`, `/number-ips`,
//!   `/global-number-ips`, `/unique_ip_count` and `/api/v1/unique_ip_count`, and the old
//!   generator's `/start`.
//! - [`health`] — `GET /healthz`: 200 ok, or 503 degraded with the problems the checks the
//!   binary registers report (the embedded broker's full disk or read-only logs).
//! - [`metrics`] — `GET /metrics`: the Prometheus text exposition of the process, its
//!   services and the collectors the binary registers (the embedded broker's).
//! - [`openapi`] — the route table and the spec, built together (`GET /api/openapi.json`).
//! - [`docs`] — `/api/docs`, interactive docs (Swagger UI, compiled in) over that spec.
//! - [`console`] — the web console: `GET /` and its embedded assets under `/assets/`. Not
//!   API routes, so mounted beside the spec, not in it (see below).
//! - [`server`] — the accept loop behind [`serve`]: HTTP/1.1 with every wait bounded, over
//!   TCP or TLS ([`serve_tls`], certificates loaded by [`server::tls_config`]).
//!
//! # Documented by construction
//!
//! Handlers are mounted only through utoipa-axum's `routes!`, which reads the path and method
//! from the handler's `#[utoipa::path]`. A route therefore cannot exist without its spec
//! entry; the tests check the spec against what the router answers. The web pages are the
//! exception: the console ([`console`]) and the interactive docs ([`docs`]) are mounted with
//! plain axum and left out of the spec.

pub mod auth;
pub mod compat;
pub mod console;
pub mod docs;
pub mod error;
pub mod generator;
pub mod groups;
pub mod guard;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod records;
pub mod server;
pub mod state;
pub mod timestamp;
pub mod tokens;
pub mod topics;
pub mod tracker;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use freshet_services::panics::{self, PanicSite};
use futures::{FutureExt, StreamExt};

pub use auth::HttpAuth;
pub use error::ApiError;
pub use metrics::Metrics;
pub use server::{tls_config, BodyDeadline, HttpLimits, TlsError};
pub use state::AppState;

/// Largest request body accepted, except by the route sending records
/// ([`topics::MAX_RECORDS_BODY_BYTES`]). Every other body the API takes is a small JSON
/// object; the cap keeps a client from making the server buffer megabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole API for the services in `state`.
pub fn app(state: AppState) -> Router {
    let (router, spec) = openapi::router().split_for_parts();
    let router = router
        .merge(docs::routes())
        .merge(console::routes())
        // Set after every route is mounted: axum applies it to the routes that exist.
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::unknown_route)
        .layer(openapi::SharedSpec::layer(openapi::with_version(spec)))
        // Bodies without a Content-Length (chunked) are cut off by the extractors at the cap.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Rights after the body is read (some depend on the topic it names), sign-in before
        // (a client that cannot sign in gets its 401 without sending a body).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn(read_body_in_time))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn(reject_declared_oversized_body));
    catch_panics(router.with_state(state))
}

/// Answers a request whose handler panicked with a 500 `{"error": ...}` (the panic is logged
/// at ERROR and counted in `/metrics`), instead of dropping its connection unanswered.
/// [`app`] applies it to every route; exposed so tests can show it on a route that panics.
pub fn catch_panics(router: Router) -> Router {
    router.layer(middleware::from_fn(answer_panics))
}

async fn answer_panics(request: Request, next: Next) -> Response {
    let context = format!("{} {}", request.method(), request.uri().path());
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            // The message goes to the log only: it may name internals a client should not
            // see.
            panics::caught(PanicSite::HttpRequest, &context, payload.as_ref());
            ApiError::internal(
                "the server failed while handling this request; the failure is logged",
            )
            .into_response()
        }
    }
}

/// Only `GET /metrics`, for a process that serves no API (`freshet broker
/// --metrics-listen`); other paths get the usual JSON 404.
pub fn metrics_app(state: AppState) -> Router {
    let (router, _spec) = metrics::routes().split_for_parts();
    let router = router
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::unknown_route);
    catch_panics(router.with_state(state))
}

/// Answers 413 before the handler runs when the declared `Content-Length` is over the
/// route's cap, so the limit holds (with a JSON answer) on every route, including those that
/// ignore bodies.
async fn reject_declared_oversized_body(request: Request, next: Next) -> Response {
    let cap = body_cap(&request);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match declared {
        Some(length) if length > cap as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is {length} bytes, more than the {cap} allowed"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Reads the body before the handler runs, within the request's [`BodyDeadline`] (set by
/// [`serve`]): a client sending it too slowly gets a 408 and its connection is closed,
/// instead of holding the handler. Bodies are capped ([`body_cap`]), so holding one whole is
/// cheap. Requests without a deadline (tests calling the router directly) pass as they are.
async fn read_body_in_time(request: Request, next: Next) -> Response {
    let Some(deadline) = request.extensions().get::<BodyDeadline>().copied() else {
        return next.run(request).await;
    };
    let cap = body_cap(&request);
    let (parts, body) = request.into_parts();
    match tokio::time::timeout_at(deadline.at, read_capped(body, cap)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(refusal)) => refusal.into_response(),
        Err(_elapsed) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms of the headers",
                    deadline.timeout.as_millis()
                ),
            )
            .into_response();
            // The rest of the body may still come; the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// The whole body, or a 413 as soon as it is more than `cap` bytes.
async fn read_capped(body: Body, cap: usize) -> Result<Vec<u8>, ApiError> {
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        if bytes.len() + chunk.len() > cap {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is more than the {cap} bytes allowed"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The body cap of the route a request matched. The route sending records also raises
/// axum's limit (its own `DefaultBodyLimit`) to the same size.
fn body_cap(request: &Request) -> usize {
    let route = request.extensions().get::<MatchedPath>();
    if route.is_some_and(|route| route.as_str() == topics::RECORDS_ROUTE) {
        topics::MAX_RECORDS_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish, with the default [`HttpLimits`]. The listener is bound by the caller, so tests can
/// bind port 0 and read the port. Each request carries its peer address (`ConnectInfo`),
/// the source of a login attempt.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, HttpLimits::default(), shutdown).await
}

/// [`serve`] within `limits` (see [`server`]).
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router, limits, shutdown).await
}

/// [`serve_with_limits`] over HTTPS, with the settings [`tls_config`] reads from PEM files.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: std::sync::Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve_tls(listener, router, limits, tls, shutdown).await
}
