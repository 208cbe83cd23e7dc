//! The login guard's routes: registration and login (the old login service's `/register`,
//! `/login` and `/blocked` with their shapes, see `docs/REFERENCE.md`, and `/api/v1/...`
//! equivalents), and the admin routes listing and lifting blocks.
//!
//! - The source address of a login is the connection's peer address. `X-Forwarded-For` is
//!   only read when [`GuardOptions::trust_forwarded_for`] says a trusted proxy sets it;
//!   otherwise any client could pick the address its attempts are counted against.
//! - Each source address may make [`RateLimit::per_second`] login or registration requests a
//!   second (bursts up to [`RateLimit::burst`]); more get 429.
//! - Admin routes need `Authorization: Bearer <admin token>`. A missing or wrong token is a
//!   401 with `WWW-Authenticate: Bearer`; without a configured token every token is wrong, so
//!   they are refused (401, saying so), never open. Once the server has users, a signed-in
//!   user with Alter on the cluster (or a super user) may use them too ([`crate::auth`]).
//! - A taken name is a 409 on both registration routes (the old login service answered 400, which
//!   said "your request is malformed" about a well-formed request).
//! - Nothing here logs or returns a password, a hash or a token.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use freshet_services::guard::rules::BlockRecord;
use freshet_services::guard::{GuardHandle, LoginOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AdminGrant;
use crate::error::{ApiError, Path};
use crate::state::AppState;

/// Largest body of a guard request: two short strings in JSON.
pub const MAX_GUARD_BODY_BYTES: usize = 4096;
/// The answer to a blocked user, as the old login service gave it.
pub const USER_BANNED: &str = "User Banned";
/// The answer to an unknown user and to a wrong password alike.
pub const INVALID_LOGIN: &str = "Invalid user or password";

/// Per-address limit of login and registration requests (token bucket).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 10.0,
            burst: 20.0,
        }
    }
}

/// HTTP-side settings of the guard routes.
#[derive(Clone, Default)]
pub struct GuardOptions {
    /// Token of the admin routes; `None` disables them.
    pub admin_token: Option<String>,
    pub rate_limit: RateLimit,
    /// Take the source address from the first `X-Forwarded-For` entry (only behind a proxy
    /// that sets it).
    pub trust_forwarded_for: bool,
}

impl std::fmt::Debug for GuardOptions {
    // The token stays out of every log line and debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardOptions")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("rate_limit", &self.rate_limit)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish()
    }
}

/// The guard of this process with its HTTP settings.
#[derive(Debug, Clone)]
pub struct GuardState {
    handle: GuardHandle,
    options: Arc<GuardOptions>,
    limiter: Arc<RateLimiter>,
}

impl GuardState {
    pub fn new(handle: GuardHandle, options: GuardOptions) -> Self {
        let limiter = Arc::new(RateLimiter::new(options.rate_limit));
        GuardState {
            handle,
            options: Arc::new(options),
            limiter,
        }
    }

    pub(crate) fn handle(&self) -> &GuardHandle {
        &self.handle
    }

    pub(crate) fn admin_token(&self) -> Option<&str> {
        self.options.admin_token.as_deref()
    }
}

/// Token buckets per source address.
#[derive(Debug)]
struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Addresses tracked before idle ones are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

impl RateLimiter {
    fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip`; false when its bucket is empty.
    fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let limit = self.limit;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES {
            // A full bucket is the same as no bucket: forget those.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * limit.per_second < limit.burst
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((limit.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * limit.per_second).min(limit.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The guard of this process, or 503 when it runs none.
#[derive(Debug, Clone)]
pub struct Guard(pub GuardState);

impl FromRequestParts<AppState> for Guard {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .guard()
            .cloned()
            .map(Guard)
            .ok_or_else(|| ApiError::service_not_running("guard"))
    }
}

/// A request that carried the admin token, or whose signed-in user may use the admin routes.
#[derive(Debug, Clone)]
pub struct Admin(pub GuardHandle);

/// The challenge of a 401 from an admin route (RFC 6750).
pub const ADMIN_CHALLENGE: &str = "Bearer realm=\"freshet-admin\"";

/// Why an admin route refused: a 401 with the challenge, or the guard's own rejection
/// (503 when this process runs no guard).
#[derive(Debug)]
pub struct AdminRejection(ApiError);

impl IntoResponse for AdminRejection {
    fn into_response(self) -> Response {
        let challenge = self.0.status == StatusCode::UNAUTHORIZED;
        let mut response = self.0.into_response();
        if challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(ADMIN_CHALLENGE),
            );
        }
        response
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AdminRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, AdminRejection> {
        let Guard(guard) = Guard::from_request_parts(parts, state)
            .await
            .map_err(AdminRejection)?;
        // A signed-in user the rights layer let through (crate::auth).
        if parts.extensions.get::<AdminGrant>().is_some() {
            return Ok(Admin(guard.handle));
        }
        let unauthorized =
            |reason: &str| AdminRejection(ApiError::new(StatusCode::UNAUTHORIZED, reason));
        // No configured token: no credentials can be valid, which is what 401 says. The
        // reason tells the operator what to change.
        let Some(expected) = guard.options.admin_token.as_deref() else {
            return Err(unauthorized(
                "admin routes are disabled: no admin token is configured (--admin-token)",
            ));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
                Ok(Admin(guard.handle))
            }
            _ => Err(unauthorized(
                "a valid admin token is required (Authorization: Bearer <token>)",
            )),
        }
    }
}

/// The connection's peer address, when the server was started with connect info (always in
/// `serve`; tests calling the router directly may insert it).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        Ok(Peer(peer))
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guessed token was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(register_v1))
        .routes(routes!(login))
        .routes(routes!(login_v1))
        .routes(routes!(blocked_names))
        .routes(routes!(blocked_v1))
        .routes(routes!(unblock_v1))
}

/// A registration or login request as parsed: missing fields get the old login service's 400
/// ("missing data") rather than serde's message. The spec's shapes are [`Login`] and
/// [`NewAccount`].
#[derive(Debug, Deserialize)]
struct Credentials {
    user: Option<String>,
    pass: Option<String>,
}

/// A login: the account's name and password. Other fields are ignored.
#[derive(Debug, ToSchema)]
pub struct Login {
    #[schema(example = "alice", min_length = 1, max_length = 64)]
    pub user: String,
    #[schema(example = "correct1horse", min_length = 1, max_length = 128)]
    pub pass: String,
}

/// A new account. Other fields are ignored.
#[derive(Debug, ToSchema)]
pub struct NewAccount {
    /// 3 to 64 characters, no control characters, not starting or ending with white space.
    #[schema(
        example = "alice",
        min_length = 3,
        max_length = 64,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub user: String,
    /// 8 to 128 characters with at least one letter and one digit (0-9).
    #[schema(example = "correct1horse", schema_with = new_password_schema)]
    pub pass: String,
}

/// 8 to 128 characters, a letter (Unicode `Alphabetic`, as the server checks it) and a digit
/// somewhere: two patterns, since one would need look-ahead.
fn new_password_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
    AllOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(8))
                .max_length(Some(128)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"\p{Alpha}")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("[0-9]")),
        )
        .description(Some(
            "8 to 128 characters with at least one letter and one digit (0-9)",
        ))
        .examples(["correct1horse"])
        .build()
        .into()
}

/// A successful login (the old login service's shape).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginSuccess {
    pub success: bool,
}

/// A created account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub user: String,
}

/// The old login service's list of blocked users.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockedNames {
    #[serde(rename = "users-blocked")]
    pub users_blocked: Vec<String>,
}

/// One block, for admins.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    pub user: String,
    /// When the block started (event time of the failure that made it), UTC.
    pub since: String,
    pub since_ms: i64,
    /// When it ends, UTC; `null`: only an admin lifts it.
    pub until: Option<String>,
    pub until_ms: Option<i64>,
    /// Failed attempts counted: those that made the block and every one since.
    pub failures: u64,
    pub last_failure_ms: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockList {
    pub blocked: Vec<BlockView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Unblocked {
    pub user: String,
    pub unblocked: bool,
}

/// The user and password of a body, with the old login service's 400s for no body and missing
/// fields. The body is parsed here (not by `Json`) so a missing body or content type is the
/// same clear 400.
fn credentials(body: Result<Bytes, BytesRejection>) -> Result<(String, String), ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    if body.len() > MAX_GUARD_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is more than the {MAX_GUARD_BODY_BYTES} bytes allowed"),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request has no body"));
    }
    let credentials: Credentials = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a JSON object with user and pass: {e}"
        ))
    })?;
    match (credentials.user, credentials.pass) {
        (Some(user), Some(pass)) if !user.is_empty() && !pass.is_empty() => Ok((user, pass)),
        _ => Err(ApiError::bad_request(
            "missing data: user and pass are required",
        )),
    }
}

/// The address a request comes from: the connection's peer, or the first
/// `X-Forwarded-For` entry when trusted.
fn source_address(
    guard: &GuardState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    if guard.options.trust_forwarded_for {
        let forwarded = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    peer.map(|addr| addr.ip())
}

/// The source address after the rate limit; 429 when it is used up.
fn admit(
    guard: &GuardState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let Some(ip) = source_address(guard, peer, headers) else {
        return Ok("unknown".into());
    };
    if !guard.limiter.allow(ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many login requests from this address; retry in a few seconds",
        ));
    }
    Ok(ip.to_string())
}

async fn do_register(
    guard: GuardState,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<Registered>), ApiError> {
    admit(&guard, peer, &headers)?;
    let (user, pass) = credentials(body)?;
    // A taken name is a GuardError::UserExists, a conflict: 409.
    guard.handle.register(&user, &pass).await?;
    Ok((StatusCode::CREATED, axum::Json(Registered { user })))
}

async fn do_login(
    guard: GuardState,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<LoginSuccess>, ApiError> {
    let source = admit(&guard, peer, &headers)?;
    let (user, pass) = credentials(body)?;
    match guard.handle.login(&user, &pass, &source).await? {
        LoginOutcome::Success => Ok(axum::Json(LoginSuccess { success: true })),
        LoginOutcome::Rejected => Err(ApiError::new(StatusCode::UNAUTHORIZED, INVALID_LOGIN)),
        LoginOutcome::Blocked => Err(ApiError::new(StatusCode::LOCKED, USER_BANNED)),
    }
}

/// Create an account (old login service's route)
///
/// The same as `POST /api/v1/register`. A taken name is a 409 (the old login service
/// answered 400).
#[utoipa::path(
    post,
    path = "/register",
    tag = "compatible",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Account created", body = Registered),
        (status = 400, description = "No body, missing fields, or a name or password breaking the rules", body = ApiError,
         example = json!({"error": "pass must contain both letters and digits"})),
        (status = 409, description = "The name is taken", body = ApiError),
        (status = 429, description = "Too many requests from this address", body = ApiError),
        (status = 503, description = "No guard runs in this process", body = ApiError),
    )
)]
pub async fn register(
    Guard(guard): Guard,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<Registered>), ApiError> {
    do_register(guard, peer, headers, body).await
}

/// Create an account
///
/// Names are 3 to 64 characters; passwords 8 to 128 with letters and digits.
#[utoipa::path(
    post,
    path = "/api/v1/register",
    tag = "guard",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Account created", body = Registered),
        (status = 400, description = "No body, missing fields, or a name or password breaking the rules", body = ApiError),
        (status = 409, description = "The name is taken", body = ApiError),
        (status = 429, description = "Too many requests from this address", body = ApiError),
        (status = 503, description = "No guard runs in this process", body = ApiError),
    )
)]
pub async fn register_v1(
    Guard(guard): Guard,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<Registered>), ApiError> {
    do_register(guard, peer, headers, body).await
}

/// Log in (old login service's route)
///
/// An unknown user and a wrong password get the same 401 in the same time. A blocked user
/// gets 423 without the password being checked. Every attempt is published to
/// `login-attempts`.
#[utoipa::path(
    post,
    path = "/login",
    tag = "compatible",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in", body = LoginSuccess, example = json!({"success": true})),
        (status = 400, description = "No body or missing fields", body = ApiError),
        (status = 401, description = "Unknown user or wrong password", body = ApiError,
         example = json!({"error": INVALID_LOGIN})),
        (status = 423, description = "The user is blocked", body = ApiError, example = json!({"error": USER_BANNED})),
        (status = 429, description = "Too many requests from this address", body = ApiError),
        (status = 503, description = "No guard runs in this process", body = ApiError),
    )
)]
pub async fn login(
    Guard(guard): Guard,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<LoginSuccess>, ApiError> {
    do_login(guard, peer, headers, body).await
}

/// Log in
///
/// The same as `POST /login`.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "guard",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in", body = LoginSuccess),
        (status = 400, description = "No body or missing fields", body = ApiError),
        (status = 401, description = "Unknown user or wrong password", body = ApiError),
        (status = 423, description = "The user is blocked", body = ApiError),
        (status = 429, description = "Too many requests from this address", body = ApiError),
        (status = 503, description = "No guard runs in this process", body = ApiError),
    )
)]
pub async fn login_v1(
    Guard(guard): Guard,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<LoginSuccess>, ApiError> {
    do_login(guard, peer, headers, body).await
}

/// Names of the blocked users (old login service's route)
#[utoipa::path(
    get,
    path = "/blocked",
    tag = "compatible",
    responses(
        (status = 200, description = "Users blocked now", body = BlockedNames,
         example = json!({"users-blocked": ["user1", "user2"]})),
        (status = 503, description = "No guard runs in this process", body = ApiError),
    )
)]
pub async fn blocked_names(Guard(guard): Guard) -> axum::Json<BlockedNames> {
    let users_blocked = guard.handle.blocked().into_iter().map(|b| b.user).collect();
    axum::Json(BlockedNames { users_blocked })
}

/// Blocks with their details (admin)
#[utoipa::path(
    get,
    path = "/api/v1/blocked",
    tag = "guard",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Blocks holding now, by user", body = BlockList),
        (status = 401, description = "Missing or wrong admin token, or none is configured (then every token is wrong)", body = ApiError,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"freshet-admin\"`"))),
        (status = 503, description = "No guard runs in this process", body = ApiError),
    )
)]
pub async fn blocked_v1(Admin(guard): Admin) -> axum::Json<BlockList> {
    let blocked = guard.blocked().into_iter().map(view).collect();
    axum::Json(BlockList { blocked })
}

/// Lift a user's block (admin)
///
/// Also resets the user's failure count in the blocker.
#[utoipa::path(
    delete,
    path = "/api/v1/blocked/{user}",
    tag = "guard",
    security(("admin_token" = [])),
    params(("user" = String, Path, description = "The blocked user")),
    responses(
        (status = 200, description = "The block is lifted", body = Unblocked),
        (status = 401, description = "Missing or wrong admin token, or none is configured (then every token is wrong)", body = ApiError,
         headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"freshet-admin\"`"))),
        (status = 404, description = "The user is not blocked", body = ApiError),
        (status = 503, description = "No guard runs here, or Kafka did not take the unblock", body = ApiError),
    )
)]
pub async fn unblock_v1(
    Admin(guard): Admin,
    Path(user): Path<String>,
) -> Result<axum::Json<Unblocked>, ApiError> {
    if !guard.unblock(&user).await? {
        return Err(ApiError::not_found(format!("user {user:?} is not blocked")));
    }
    Ok(axum::Json(Unblocked {
        user,
        unblocked: true,
    }))
}

fn view(block: BlockRecord) -> BlockView {
    BlockView {
        since: format_ms(block.since_ms),
        until: block.until_ms.map(format_ms),
        user: block.user,
        since_ms: block.since_ms,
        until_ms: block.until_ms,
        failures: block.failures,
        last_failure_ms: block.last_failure_ms,
    }
}

fn format_ms(ms: i64) -> String {
    freshet_timestamp::NormalizedTs::from_unix_millis(ms)
        .map(|ts| ts.as_str().to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 0.001,
            burst: 3.0,
        });
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!((0..3).all(|_| limiter.allow(ip)));
        assert!(!limiter.allow(ip));
        assert!(limiter.allow(other), "each address has its own bucket");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn options_never_print_the_token() {
        let options = GuardOptions {
            admin_token: Some("hunter2token".into()),
            ..GuardOptions::default()
        };
        assert!(!format!("{options:?}").contains("hunter2token"));
    }
}
