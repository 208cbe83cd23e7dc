//! Sign-in and rights: who a request acts as, and whether that principal may do what it asks.
//!
//! The HTTP API decides with the Kafka listener's own [`UserStore`] and [`Authorizer`] (the
//! same objects in `freshet up`), so a user may do the same things over REST as over Kafka.
//!
//! # Sign-in
//!
//! Off while the user store is empty: a loopback development setup needs no credentials, and
//! nothing here changes a request. Once it holds a user, every route needs credentials but
//! `GET /healthz` (probes), `POST /api/v1/auth/token` (signing in) and the console's page and
//! assets (`/`, `/assets/...`, so its sign-in form can load; its data calls need
//! credentials). Credentials are either:
//!
//! - `Authorization: Basic` with a user and password, checked like SASL PLAIN. A successful
//!   check is remembered for [`VERIFIED_FOR`] (keyed by an HMAC of user and password under a
//!   per-process random key, at most [`MAX_VERIFIED`] of them), so a script calling the API
//!   in a loop does not pay a PBKDF2 per call; a changed password or a removed user ends it
//!   at once.
//! - `Authorization: Bearer <token>` with a token from `POST /api/v1/auth/token`, signed with
//!   the data directory's key ([`crate::tokens`]) and valid for [`DEFAULT_TOKEN_LIFETIME`]. A
//!   removed user's tokens stop working.
//!
//! Missing credentials are a 401 `{"error": "sign in: ..."}` with `WWW-Authenticate: Basic`,
//! so curl and browsers know what to send; requests from the console (header
//! [`CONSOLE_HEADER`]) get a `Bearer` challenge instead, so the browser does not pop up its own
//! dialog over the console's form. Wrong credentials are a 401 after [`FAILURE_DELAY`], as
//! Kafka delays a failed authentication. The signed-in [`Principal`] and its [`Caller`] are
//! put in the request's extensions.
//!
//! # Rights
//!
//! With an authorizer (`--authorizer acl`), every route needs the right [`rule`] names,
//! checked with the ACLs for the principal connecting from the peer address (the address a
//! Kafka connection would have; `X-Forwarded-For` is not read). Super users pass every check.
//! A refusal is a 403 `{"error": "User:alice may not Delete topic orders"}`.
//!
//! | Route | Needs |
//! |---|---|
//! | `GET /healthz`, `POST /api/v1/auth/token`, `GET /`, `GET /assets/...` | nothing, not even sign-in |
//! | `GET /api/v1/auth/whoami`, `GET /api/v1/timestamp`, the spec and `/api/docs`, the guard's `/register`, `/login`, `/blocked` (and `/api/v1/register`, `/api/v1/login`) | sign-in only |
//! | `GET /api/v1/topics` | sign-in; lists only the topics the user may Describe |
//! | `POST /api/v1/topics` | Create on the cluster, or on the topic named in the body |
//! | `GET /api/v1/topics/{name}` | Describe on the topic |
//! | `DELETE /api/v1/topics/{name}` | Delete on the topic |
//! | `PATCH /api/v1/topics/{name}/configs` | AlterConfigs on the topic |
//! | `POST /api/v1/topics/{name}/partitions` | Alter on the topic |
//! | `POST /api/v1/topics/{name}/purge` | Delete on the topic (Kafka's right for DeleteRecords) |
//! | `POST /api/v1/topics/{name}/records` | Write on the topic |
//! | `GET /api/v1/topics/{name}/partitions/{partition}/records` | Read on the topic |
//! | `GET /api/v1/topics/{name}/records`, `.../records/stream`, `.../records/export` | Read on the topic |
//! | `GET /api/v1/groups` | sign-in; lists only the groups the user may Describe |
//! | `GET /api/v1/groups/{group_id}` | Describe on the group |
//! | `DELETE /api/v1/groups/{group_id}` | Delete on the group |
//! | `POST /api/v1/groups/{group_id}/reset-offsets` | Read on the group and Read on the topic in the body (`topic`), as Kafka asks of an offset commit |
//! | `DELETE /api/v1/groups/{group_id}/offsets/{topic}` | Delete on the group and Read on the topic, as Kafka asks of OffsetDelete |
//! | `GET /metrics`, the tracker's routes, the compatible count routes, `GET /api/v1/generator/jobs[/{id}]` | Describe on the cluster |
//! | `POST /api/v1/generator/jobs`, `GET /start` | Write on the topic the job sends to (`topic` in the body, else `device-events`) |
//! | `POST /api/v1/generator/jobs/{id}/cancel`, `DELETE /api/v1/generator/jobs/{id}` | Write on that job's topic |
//! | `GET /api/v1/blocked`, `DELETE /api/v1/blocked/{user}` | Alter on the cluster (or a super user), or the admin token |
//!
//! A route whose right depends on the body (topic creation, a new generator job) refuses a
//! body it cannot read the topic from with a 400 before the handler sees it. A job's missing
//! topic is created by the generator itself, as the Freshet process: starting a job needs
//! Write only.
//!
//! Without an authorizer every signed-in user may do everything, as Kafka with SASL and no
//! authorizer. Either way the services' own topics stay read-only over REST
//! ([`crate::topics`]). The spec documents each route's security, 401 and 403 from this same
//! table (`document`), and a test checks that every route has an entry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use freshet_security::acl::{Authorizer, Operation, ResourceType, CLUSTER_NAME};
use freshet_security::files::StoreError;
use freshet_security::scram::{Mechanism, ScramCredential};
use freshet_security::users::UserStore;
use freshet_security::Principal;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Json};
use crate::state::{blocking, AppState};
use crate::tokens::{rfc3339, TokenKey};

/// How long a token is valid unless [`HttpAuth::with_token_lifetime`] says otherwise.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// How long a wrong password or token waits for its 401: a guesser gets ten tries a second
/// per connection, not thousands.
pub const FAILURE_DELAY: Duration = Duration::from_millis(100);
/// How long a verified Basic password is trusted without running PBKDF2 again.
pub const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Verified passwords remembered at once; past it the cache starts over.
pub const MAX_VERIFIED: usize = 1024;
/// The header the console sends with every call, to get a challenge the browser leaves alone.
pub const CONSOLE_HEADER: &str = "x-freshet-console";
/// The challenge of a 401 to clients other than the console.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"freshet\", charset=\"UTF-8\"";
/// The challenge of a 401 to the console: a `Basic` one would make the browser show its own
/// dialog.
pub const CONSOLE_CHALLENGE: &str = "Bearer realm=\"freshet\"";
/// The route that hands out tokens.
pub const TOKEN_ROUTE: &str = "/api/v1/auth/token";

type HmacSha256 = Hmac<Sha256>;

/// What sign-in and rights are checked against. Given to [`AppState::with_auth`].
pub struct HttpAuth {
    users: Arc<UserStore>,
    authorizer: Option<Arc<Authorizer>>,
    tokens: TokenKey,
    token_lifetime: Duration,
    failure_delay: Duration,
    verified: VerifiedPasswords,
    /// Users that exist for the Kafka protocol only (the services' own principals inside
    /// `freshet up`): they never sign in over HTTP.
    kafka_only: std::collections::HashSet<String>,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("users", &self.users)
            .field("authorizer", &self.authorizer.is_some())
            .field("token_lifetime", &self.token_lifetime)
            .finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// The users and authorizer of the Kafka listener, with the token key of `data_dir`
    /// (created on first use: see [`crate::tokens`]).
    pub fn open(
        data_dir: &FsPath,
        users: Arc<UserStore>,
        authorizer: Option<Arc<Authorizer>>,
    ) -> Result<Self, StoreError> {
        let key = TokenKey::load_or_create(data_dir)?;
        Ok(Self::with_key(users, authorizer, key))
    }

    /// Like [`open`](Self::open) with a key given (tests; a process without a data
    /// directory, whose tokens then die with it).
    pub fn with_key(
        users: Arc<UserStore>,
        authorizer: Option<Arc<Authorizer>>,
        tokens: TokenKey,
    ) -> Self {
        HttpAuth {
            users,
            authorizer,
            tokens,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            failure_delay: FAILURE_DELAY,
            verified: VerifiedPasswords::new(),
            kafka_only: std::collections::HashSet::new(),
        }
    }

    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Users that may sign in over Kafka but never over HTTP: the services' own principals,
    /// whose rights (a super user among them) are not meant for people.
    pub fn with_kafka_only_users(mut self, users: impl IntoIterator<Item = String>) -> Self {
        self.kafka_only.extend(users);
        self
    }

    pub fn with_failure_delay(mut self, delay: Duration) -> Self {
        self.failure_delay = delay;
        self
    }

    /// A token for `user`, whether or not the user exists (the routes check first).
    pub fn issue_token(&self, user: &str) -> TokenGrant {
        let expires = unix_now().saturating_add(self.token_lifetime.as_secs());
        TokenGrant {
            token: self.tokens.sign(user, expires),
            principal: Principal::user(user).to_string(),
            expires_at: rfc3339(expires),
        }
    }

    /// Whether requests must sign in: the store has a user. Read per request, so adding the
    /// first user (from another process too) turns sign-in on at once.
    fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// The principal the request's credentials name, or why they name none (waiting
    /// [`FAILURE_DELAY`] first when credentials were given but are wrong).
    async fn sign_in(&self, headers: &HeaderMap) -> Result<Principal, SignInError> {
        let result = match credentials(headers) {
            Ok(None) => return Err(SignInError::Missing),
            Ok(Some(Credentials::Basic { user, password })) => self
                .check_password(&user, &password)
                .await
                .then(|| Principal::user(user))
                .ok_or_else(|| SignInError::Wrong("wrong user name or password".into())),
            Ok(Some(Credentials::Bearer(token))) => self.token_principal(&token),
            Err(reason) => Err(SignInError::Wrong(reason)),
        };
        if result.is_err() {
            tokio::time::sleep(self.failure_delay).await;
        }
        result
    }

    /// Whether `password` is `user`'s: from the cache of recent checks, else PBKDF2 on a
    /// blocking thread.
    async fn check_password(&self, user: &str, password: &str) -> bool {
        if self.kafka_only.contains(user) {
            return false;
        }
        // Read before verifying: if the password changes in between, the cached entry holds
        // the old credentials and is not trusted on the next call.
        let current = self.credentials_of(user);
        let key = self.verified.key_of(user, password);
        if self.verified.holds(&key, &current) {
            return true;
        }
        let users = Arc::clone(&self.users);
        let (name, secret) = (user.to_owned(), password.to_owned());
        let verified = blocking(move || users.verify_password(&name, secret.as_bytes()))
            .await
            .unwrap_or(false);
        if verified {
            self.verified.remember(key, current);
        }
        verified
    }

    fn token_principal(&self, token: &str) -> Result<Principal, SignInError> {
        let claims = self
            .tokens
            .verify(token, unix_now())
            .map_err(|e| SignInError::Wrong(e.to_string()))?;
        if self.credentials_of(&claims.sub).is_empty() || self.kafka_only.contains(&claims.sub) {
            return Err(SignInError::Wrong(format!(
                "the token's user {} no longer exists",
                claims.sub
            )));
        }
        Ok(Principal::user(claims.sub))
    }

    /// The user's stored credentials; none for an unknown user.
    fn credentials_of(&self, user: &str) -> Vec<ScramCredential> {
        Mechanism::ALL
            .iter()
            .filter_map(|mechanism| self.users.credential(user, *mechanism))
            .collect()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Passwords verified lately, by an HMAC of user and password under a key only this process
/// knows: the cache holds nothing a reader of memory could test guesses against offline.
struct VerifiedPasswords {
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], Verified>>,
}

struct Verified {
    /// The credentials the password was verified against: any change ends the entry.
    credentials: Vec<ScramCredential>,
    until: Instant,
}

impl VerifiedPasswords {
    fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        VerifiedPasswords {
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key_of(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // The length first, so that no other split of the same bytes gives the same key.
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn holds(&self, key: &[u8; 32], current: &[ScramCredential]) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).is_some_and(|entry| {
            entry.until > Instant::now() && !current.is_empty() && entry.credentials == current
        })
    }

    fn remember(&self, key: [u8; 32], credentials: Vec<ScramCredential>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_VERIFIED {
            entries.retain(|_, entry| entry.until > now);
            if entries.len() >= MAX_VERIFIED {
                entries.clear();
            }
        }
        let until = now + VERIFIED_FOR;
        entries.insert(key, Verified { credentials, until });
    }
}

enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

/// The credentials of the `Authorization` header; an error says what is wrong with it.
fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text".to_owned())?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        basic_credentials(rest).map(Some)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Some(Credentials::Bearer(rest.to_owned())))
    } else {
        Err(format!(
            "the Authorization scheme {scheme:?} is not supported; use Basic or Bearer"
        ))
    }
}

fn basic_credentials(encoded: &str) -> Result<Credentials, String> {
    let decoded = STANDARD
        .decode(encoded)
        .map_err(|_| "the Basic credentials are not base64".to_owned())?;
    let text =
        String::from_utf8(decoded).map_err(|_| "the Basic credentials are not UTF-8".to_owned())?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| "the Basic credentials have no ':' after the user name".to_owned())?;
    Ok(Credentials::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// Why a request is not signed in.
#[derive(Debug)]
enum SignInError {
    Missing,
    Wrong(String),
}

impl SignInError {
    fn message(&self) -> String {
        match self {
            SignInError::Missing => format!(
                "this server has users: send Authorization: Basic with a user and password, \
                 or Authorization: Bearer with a token from POST {TOKEN_ROUTE}"
            ),
            SignInError::Wrong(reason) => reason.clone(),
        }
    }
}

/// A 401 with the challenge that suits the client (see the module doc).
fn unauthorized(message: &str, headers: &HeaderMap) -> Response {
    let challenge = if headers.contains_key(CONSOLE_HEADER) {
        CONSOLE_CHALLENGE
    } else {
        BASIC_CHALLENGE
    };
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, format!("sign in: {message}")).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// A signed-in request: who it acts as, from where, and the authorizer that decides.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub host: IpAddr,
    authorizer: Option<Arc<Authorizer>>,
}

impl Caller {
    /// Whether the caller may do `operation` on the resource; always, without an authorizer.
    pub fn may(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.authorizer.as_ref().is_none_or(|authorizer| {
            authorizer.authorize(&self.principal, self.host, operation, resource_type, name)
        })
    }

    fn may_do(&self, need: &Need) -> bool {
        self.may(need.operation, need.resource_type, &need.name)
    }
}

/// What a handler may show: everything, unless a signed-in caller's rights say otherwise.
/// For routes that list only what the caller may Describe.
#[derive(Debug, Clone, Default)]
pub struct Access(pub Option<Caller>);

impl Access {
    pub fn may_describe(&self, resource_type: ResourceType, name: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|caller| caller.may(Operation::Describe, resource_type, name))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Access(parts.extensions.get::<Caller>().cloned()))
    }
}

/// Set on an admin route's request by [`authorize`] when a signed-in user may use it; the
/// guard's admin extractor takes it in place of the admin token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminGrant;

/// What a route needs; see the table in the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nothing, not even sign-in.
    Open,
    /// Sign-in only.
    SignedIn,
    /// Sign-in; the handler lists only the resources of this type the caller may Describe.
    Listed(ResourceType),
    /// The operation on the cluster.
    OnCluster(Operation),
    /// The operation on the topic named in the path (`{name}`).
    OnTopicInPath(Operation),
    /// The operation on the group named in the path (`{group_id}`).
    OnGroupInPath(Operation),
    /// The operation on the group named in the path (`{group_id}`) and Read on the topic
    /// named in the body (`topic`): both, as Kafka asks both of an offset commit.
    OnGroupInPathAndReadTopicInBody(Operation),
    /// The operation on the group named in the path (`{group_id}`) and Read on the topic
    /// named in the path (`{topic}`): both, as Kafka asks both of OffsetDelete.
    OnGroupAndReadTopicInPath(Operation),
    /// Create on the cluster, or on the topic named in the body (`name`).
    CreateTopic,
    /// Write on the topic a new generator job sends to: `topic` in the body, else the
    /// generator's default topic.
    StartJob,
    /// Write on the generator's default topic (`GET /start` takes no topic).
    StartDefaultJob,
    /// Write on the topic of the generator job in the path (`{id}`).
    ChangeJob,
    /// Alter on the cluster, or the admin token.
    Admin,
}

/// The rule of every route the API serves (`route` as mounted, `{name}` and all); `None` for
/// a route not in the table, which then needs sign-in only (unknown paths, wrong methods).
pub fn rule(method: &Method, route: &str) -> Option<Rule> {
    use Operation::{Alter, AlterConfigs, Delete, Describe, Read, Write};
    use Rule::*;
    // HEAD runs the GET handler: it needs what GET needs.
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let rule = match (method, route) {
        (_, "/healthz" | TOKEN_ROUTE | "/" | "/assets/{*path}") => Open,
        (
            "GET",
            "/api/v1/auth/whoami"
            | "/api/v1/timestamp"
            | "/api/openapi.json"
            | "/api/docs"
            | "/api/docs/"
            | "/api/docs/{*file}"
            | "/blocked",
        )
        | ("POST", "/register" | "/login" | "/api/v1/register" | "/api/v1/login") => SignedIn,
        ("GET", "/api/v1/topics") => Listed(ResourceType::Topic),
        ("POST", "/api/v1/topics") => CreateTopic,
        ("GET", "/api/v1/topics/{name}") => OnTopicInPath(Describe),
        ("DELETE", "/api/v1/topics/{name}") => OnTopicInPath(Delete),
        ("POST", crate::topics::RECORDS_ROUTE) => OnTopicInPath(Write),
        ("GET", "/api/v1/topics/{name}/partitions/{partition}/records") => OnTopicInPath(Read),
        (
            "GET",
            crate::topics::RECORDS_ROUTE
            | "/api/v1/topics/{name}/records/stream"
            | "/api/v1/topics/{name}/records/export",
        ) => OnTopicInPath(Read),
        ("GET", "/api/v1/groups") => Listed(ResourceType::Group),
        ("GET", "/api/v1/groups/{group_id}") => OnGroupInPath(Describe),
        ("DELETE", "/api/v1/groups/{group_id}") => OnGroupInPath(Delete),
        ("POST", "/api/v1/groups/{group_id}/reset-offsets") => {
            OnGroupInPathAndReadTopicInBody(Read)
        }
        ("DELETE", "/api/v1/groups/{group_id}/offsets/{topic}") => {
            OnGroupAndReadTopicInPath(Delete)
        }
        ("PATCH", "/api/v1/topics/{name}/configs") => OnTopicInPath(AlterConfigs),
        ("POST", "/api/v1/topics/{name}/partitions") => OnTopicInPath(Alter),
        ("POST", "/api/v1/topics/{name}/purge") => OnTopicInPath(Delete),
        (
            "GET",
            "/metrics"
            | "/api/v1/unique-ips"
            | "/api/v1/unique-ips/windows"
            | "/api/v1/unique-ips/error-codes"
            | "/api/v1/tracker/partitions"
            | "/is-node-active"
            | "/number-ips"
            | "/global-number-ips"
            | "/api/v1/unique_ip_count"
            | "/unique_ip_count"
            | "/api/v1/generator/jobs"
            | "/api/v1/generator/jobs/{id}",
        ) => OnCluster(Describe),
        ("POST", "/api/v1/generator/jobs") => StartJob,
        ("GET", "/start") => StartDefaultJob,
        ("POST", "/api/v1/generator/jobs/{id}/cancel")
        | ("DELETE", "/api/v1/generator/jobs/{id}") => ChangeJob,
        ("GET", "/api/v1/blocked") | ("DELETE", "/api/v1/blocked/{user}") => Admin,
        _ => return None,
    };
    Some(rule)
}

fn rule_of(request: &Request) -> Rule {
    request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|route| rule(request.method(), route.as_str()))
        .unwrap_or(Rule::SignedIn)
}

/// The sign-in layer: answers 401 when the server has users and the request's route needs
/// credentials it does not carry, and puts the signed-in [`Principal`] and [`Caller`] in its
/// extensions. Runs before the body is read: a client that cannot sign in sends none.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = state.auth() else {
        return next.run(request).await;
    };
    let rule = rule_of(&request);
    if rule == Rule::Open || !auth.required() {
        return next.run(request).await;
    }
    if rule == Rule::Admin && carries_admin_token(&state, request.headers()) {
        // The guard's admin extractor checks the token itself.
        return next.run(request).await;
    }
    match auth.sign_in(request.headers()).await {
        Ok(principal) => {
            let caller = Caller {
                principal: principal.clone(),
                host: peer_ip(&request),
                authorizer: auth.authorizer.clone(),
            };
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => unauthorized(&error.message(), request.headers()),
    }
}

fn carries_admin_token(state: &AppState, headers: &HeaderMap) -> bool {
    let expected = state.guard().and_then(|guard| guard.admin_token());
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match (expected, given) {
        (Some(expected), Some(given)) => {
            crate::guard::constant_time_eq(expected.as_bytes(), given.as_bytes())
        }
        _ => false,
    }
}

/// The connection's peer, as Kafka ACL hosts name it; unspecified when unknown (requests
/// handed to the router directly), which only `*` hosts match.
fn peer_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| {
            addr.ip()
        })
}

/// One right: an operation on a named resource.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Need {
    operation: Operation,
    resource_type: ResourceType,
    name: String,
}

impl Need {
    fn cluster(operation: Operation) -> Self {
        Need {
            operation,
            resource_type: ResourceType::Cluster,
            name: CLUSTER_NAME.to_owned(),
        }
    }

    fn topic(operation: Operation, name: impl Into<String>) -> Self {
        Need {
            operation,
            resource_type: ResourceType::Topic,
            name: name.into(),
        }
    }

    fn group(operation: Operation, name: impl Into<String>) -> Self {
        Need {
            operation,
            resource_type: ResourceType::Group,
            name: name.into(),
        }
    }

    /// `Delete topic orders`, `Describe the cluster`.
    fn describe(&self) -> String {
        match self.resource_type {
            ResourceType::Cluster => format!("{} the cluster", self.operation),
            other => format!(
                "{} {} {}",
                self.operation,
                other.name().to_lowercase(),
                self.name
            ),
        }
    }
}

/// The rights layer: answers 403 when the signed-in caller lacks the right its route needs.
/// Runs after the body is read (some rights depend on the topic a body names), and only for
/// signed-in requests: without sign-in there is no one to check.
pub(crate) async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return next.run(request).await;
    };
    let rule = rule_of(&request);
    // Without an authorizer everything is allowed: nothing to look up, no body to read.
    let mut request = if caller.authorizer.is_some() {
        match check_rights(&caller, rule, request, &state).await {
            Ok(request) => request,
            Err(refusal) => return refusal.into_response(),
        }
    } else {
        request
    };
    if rule == Rule::Admin {
        request.extensions_mut().insert(AdminGrant);
    }
    next.run(request).await
}

/// The request to pass on when `caller` has a right `rule` asks for, else the 403.
async fn check_rights(
    caller: &Caller,
    rule: Rule,
    request: Request,
    state: &AppState,
) -> Result<Request, ApiError> {
    let (request, needs) = needs(rule, request, state).await?;
    if rule.needs_every_right() {
        return match needs.iter().find(|need| !caller.may_do(need)) {
            Some(need) => Err(ApiError::forbidden(format!(
                "{} may not {}",
                caller.principal,
                need.describe()
            ))),
            None => Ok(request),
        };
    }
    // Any one of the rights will do; the last is the one a refusal names.
    match needs.last() {
        Some(need) if !needs.iter().any(|need| caller.may_do(need)) => Err(ApiError::forbidden(
            format!("{} may not {}", caller.principal, need.describe()),
        )),
        _ => Ok(request),
    }
}

impl Rule {
    /// Whether the request needs every right [`needs`] lists, not just one of them.
    fn needs_every_right(self) -> bool {
        matches!(
            self,
            Rule::OnGroupInPathAndReadTopicInBody(_) | Rule::OnGroupAndReadTopicInPath(_)
        )
    }
}

/// The rights `rule` asks of this request (any one suffices, unless
/// [`Rule::needs_every_right`]; none: sign-in is enough), and the request to pass on (its
/// body may have been read).
async fn needs(
    rule: Rule,
    mut request: Request,
    state: &AppState,
) -> Result<(Request, Vec<Need>), ApiError> {
    let needs = match rule {
        Rule::Open | Rule::SignedIn | Rule::Listed(_) => Vec::new(),
        Rule::OnCluster(operation) => vec![Need::cluster(operation)],
        Rule::Admin => vec![Need::cluster(Operation::Alter)],
        Rule::OnTopicInPath(operation) => {
            vec![Need::topic(
                operation,
                path_param(&mut request, "name").await?,
            )]
        }
        Rule::OnGroupInPath(operation) => {
            vec![Need::group(
                operation,
                path_param(&mut request, "group_id").await?,
            )]
        }
        Rule::OnGroupInPathAndReadTopicInBody(operation) => {
            let group = path_param(&mut request, "group_id").await?;
            let (read, topic) = body_field(request, "topic").await?;
            request = read;
            let topic = topic.ok_or_else(|| unreadable_body("topic"))?;
            vec![
                Need::group(operation, group),
                Need::topic(Operation::Read, topic),
            ]
        }
        Rule::OnGroupAndReadTopicInPath(operation) => vec![
            Need::group(operation, path_param(&mut request, "group_id").await?),
            Need::topic(Operation::Read, path_param(&mut request, "topic").await?),
        ],
        Rule::CreateTopic => {
            let (read, name) = body_field(request, "name").await?;
            request = read;
            let name = name.ok_or_else(|| unreadable_body("name"))?;
            vec![
                Need::cluster(Operation::Create),
                Need::topic(Operation::Create, name),
            ]
        }
        Rule::StartJob => {
            let (read, topic) = body_field(request, "topic").await?;
            request = read;
            vec![Need::topic(
                Operation::Write,
                topic.unwrap_or_else(default_job_topic),
            )]
        }
        Rule::StartDefaultJob => vec![Need::topic(Operation::Write, default_job_topic())],
        Rule::ChangeJob => match job_topic(&mut request, state).await? {
            Some(topic) => vec![Need::topic(Operation::Write, topic)],
            // No generator or an id that is not a number: the handler says so.
            None => Vec::new(),
        },
    };
    Ok((request, needs))
}

fn default_job_topic() -> String {
    freshet_services::generator::GeneratorParams::default().topic
}

/// A path parameter, percent-decoded as the handler's `Path` decodes it.
async fn path_param(request: &mut Request, name: &str) -> Result<String, ApiError> {
    let params = request
        .extract_parts::<RawPathParams>()
        .await
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| ApiError::internal(format!("the route has no {{{name}}} parameter")))
}

/// A string field of a JSON-object body (`None` when the object lacks it), and the request
/// with its body put back. A body that is not a JSON object, or whose field is not a
/// string, is refused here with the 400 the handler would give it: the right it needs
/// cannot be known.
async fn body_field(request: Request, field: &str) -> Result<(Request, Option<String>), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, crate::MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is more than the {} bytes allowed",
                    crate::MAX_BODY_BYTES
                ),
            )
        })?;
    let value = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut object)) => match object.remove(field) {
            None => None,
            Some(Value::String(text)) => Some(text),
            Some(_) => return Err(unreadable_body(field)),
        },
        _ => return Err(unreadable_body(field)),
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), value))
}

fn unreadable_body(field: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the body must be a JSON object whose {field} is a string"
    ))
}

/// The topic of the generator job in the path; `None` when the id is not a number or no
/// generator runs here. An unknown job is the handler's 404, given here: its topic, and so
/// the right, cannot be known.
async fn job_topic(request: &mut Request, state: &AppState) -> Result<Option<String>, ApiError> {
    let Ok(id) = path_param(request, "id").await?.parse::<u64>() else {
        return Ok(None);
    };
    let Some(jobs) = state.generator_jobs().cloned() else {
        return Ok(None);
    };
    match blocking(move || jobs.get(id)).await? {
        Some(job) => Ok(Some(job.params.topic)),
        None => Err(crate::generator::no_such_job(id)),
    }
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token))
        .routes(routes!(whoami))
}

/// A sign-in with a user and password (or send them as `Authorization: Basic` instead).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(example = "alice", min_length = 1)]
    pub username: String,
    #[schema(example = "correct1horse", min_length = 1)]
    pub password: String,
}

/// A token to send as `Authorization: Bearer <token>`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenGrant {
    pub token: String,
    /// Who the token signs in as, in Kafka's form.
    #[schema(example = "User:alice")]
    pub principal: String,
    /// When it stops working, RFC 3339 UTC.
    #[schema(example = "2024-09-18T13:59:02.000Z")]
    pub expires_at: String,
}

/// Who a request acts as.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// `User:ANONYMOUS` when the server has no users (nobody signs in).
    #[schema(example = "User:alice")]
    pub principal: String,
    /// The user name alone.
    #[schema(example = "alice")]
    pub user: String,
    /// Whether this server asks for sign-in (it has users).
    pub sign_in_required: bool,
}

/// Get a sign-in token
///
/// Checks the user and password (JSON body, or `Authorization: Basic`) against the users of
/// the Kafka listener and returns a signed token, valid 12 hours by default. A removed
/// user's tokens stop working.
#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    tag = "auth",
    request_body(content = TokenRequest, description = "Optional when `Authorization: Basic` is sent"),
    security(()),
    responses(
        (status = 200, description = "Signed in", body = TokenGrant),
        (status = 400, description = "Invalid JSON, or no user name or password", body = ApiError),
        (status = 401, description = "Wrong user name or password, or the server has no users", body = ApiError,
         headers(("WWW-Authenticate" = String, description = "`Basic realm=\"freshet\", charset=\"UTF-8\"`, or `Bearer realm=\"freshet\"` to the console"))),
        (status = 413, description = "The body is larger than 64 KiB", body = ApiError),
        (status = 415, description = "A body not declared as JSON (`Content-Type: application/json`)", body = ApiError),
    )
)]
pub async fn issue_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<TokenRequest>, ApiError>,
) -> Result<axum::Json<TokenGrant>, Response> {
    let Some(auth) = state.auth().filter(|auth| auth.required()) else {
        return Err(unauthorized(
            "this server has no users, so nobody signs in (add one with `freshet users add`)",
            &headers,
        ));
    };
    let (user, password) = match credentials(&headers) {
        Ok(Some(Credentials::Basic { user, password })) => (user, password),
        _ => {
            let Json(request) = body.map_err(IntoResponse::into_response)?;
            (request.username, request.password)
        }
    };
    if user.is_empty() || password.is_empty() {
        return Err(
            ApiError::bad_request("username and password must not be empty").into_response(),
        );
    }
    if !auth.check_password(&user, &password).await {
        tokio::time::sleep(auth.failure_delay).await;
        return Err(unauthorized("wrong user name or password", &headers));
    }
    Ok(axum::Json(auth.issue_token(&user)))
}

/// Who this request acts as
#[utoipa::path(
    get,
    path = "/api/v1/auth/whoami",
    tag = "auth",
    responses(
        (status = 200, description = "The principal of the credentials sent", body = WhoAmI,
         example = json!({"principal": "User:alice", "user": "alice", "sign_in_required": true})),
    )
)]
pub async fn whoami(State(state): State<AppState>, Access(caller): Access) -> axum::Json<WhoAmI> {
    let principal = caller.map_or_else(Principal::anonymous, |caller| caller.principal);
    let sign_in_required = state.auth().is_some_and(HttpAuth::required);
    axum::Json(WhoAmI {
        user: principal.name.clone(),
        principal: principal.to_string(),
        sign_in_required,
    })
}

/// Writes the table into the spec: each operation's security, its 401 where sign-in applies
/// and its 403 where a right is checked (see [`crate::openapi`]).
pub(crate) fn document(spec: &mut utoipa::openapi::OpenApi) {
    declare_schemes(spec);
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                let rule = rule(&method, path).unwrap_or(Rule::SignedIn);
                document_operation(operation, rule);
            }
        }
    }
}

fn declare_schemes(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    let components = spec.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "A user of the Kafka listener (`freshet users add`) and its password. \
                     Needed only when the server has users.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("Freshet token")
                .description(Some(
                    "A token from `POST /api/v1/auth/token`. Needed only when the server has \
                     users.",
                ))
                .build(),
        ),
    );
}

fn document_operation(operation: &mut utoipa::openapi::path::Operation, rule: Rule) {
    use utoipa::openapi::security::SecurityRequirement;
    let none: [&str; 0] = [];
    let basic = SecurityRequirement::new("basic", none);
    let bearer = SecurityRequirement::new("bearer", none);
    operation.security = Some(match rule {
        // Explicit, so an operation's own `security(())` is kept as it is.
        Rule::Open => vec![SecurityRequirement::default()],
        Rule::Admin => vec![SecurityRequirement::new("admin_token", none), basic, bearer],
        // `{}`: without users, no credentials are needed.
        _ => vec![SecurityRequirement::default(), basic, bearer],
    });
    if rule == Rule::Open {
        return;
    }
    set_response(
        operation,
        "401",
        unauthorized_description(rule),
        Some(challenge_header(rule)),
    );
    if let Some(right) = right_text(rule) {
        let description =
            format!("the signed-in user lacks {right} (Kafka ACLs, with `--authorizer acl`)");
        set_response(operation, "403", description, None);
    }
    if let Some(note) = listing_note(rule) {
        let description = operation.description.get_or_insert_with(String::new);
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(note);
    }
}

fn unauthorized_description(rule: Rule) -> String {
    let base = "Sign-in is required (the server has users) and the credentials are missing or \
                wrong";
    if rule == Rule::Admin {
        format!(
            "{base}; or, without users, the admin token is missing or wrong (or none is \
             configured, and then every token is wrong)"
        )
    } else {
        base.to_owned()
    }
}

fn challenge_header(rule: Rule) -> (String, utoipa::openapi::Header) {
    use utoipa::openapi::HeaderBuilder;
    let mut text = "`Basic realm=\"freshet\", charset=\"UTF-8\"`; `Bearer realm=\"freshet\"` \
                    to the console"
        .to_owned();
    if rule == Rule::Admin {
        text.push_str("; `Bearer realm=\"freshet-admin\"` for a wrong admin token");
    }
    let header = HeaderBuilder::new()
        .schema(utoipa::openapi::schema::Object::with_type(
            utoipa::openapi::schema::Type::String,
        ))
        .description(Some(text))
        .build();
    ("WWW-Authenticate".to_owned(), header)
}

/// The right a rule checks, for the spec; `None` when it checks only sign-in.
fn right_text(rule: Rule) -> Option<String> {
    let text = match rule {
        Rule::Open | Rule::SignedIn | Rule::Listed(_) => return None,
        Rule::OnCluster(operation) => format!("{operation} on the cluster"),
        Rule::OnTopicInPath(operation) => format!("{operation} on the topic"),
        Rule::OnGroupInPath(operation) => format!("{operation} on the group"),
        Rule::OnGroupInPathAndReadTopicInBody(operation) => {
            format!("{operation} on the group or Read on the topic the body names")
        }
        Rule::OnGroupAndReadTopicInPath(operation) => {
            format!("{operation} on the group or Read on the topic")
        }
        Rule::CreateTopic => "Create on the cluster or on the topic".to_owned(),
        Rule::StartJob | Rule::StartDefaultJob => "Write on the topic the job sends to".to_owned(),
        Rule::ChangeJob => "Write on the job's topic".to_owned(),
        Rule::Admin => "Alter on the cluster and is not a super user".to_owned(),
    };
    Some(text)
}

fn listing_note(rule: Rule) -> Option<&'static str> {
    match rule {
        Rule::Listed(ResourceType::Topic) => Some(
            "With sign-in and an authorizer, only the topics the user may Describe are listed.",
        ),
        Rule::Listed(_) => Some(
            "With sign-in and an authorizer, only the groups the user may Describe are listed.",
        ),
        _ => None,
    }
}

/// Adds the response, or extends the description of the one documented already (a 403 for
/// a service's topic, the admin routes' 401).
fn set_response(
    operation: &mut utoipa::openapi::path::Operation,
    status: &str,
    description: String,
    header: Option<(String, utoipa::openapi::Header)>,
) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let responses = &mut operation.responses.responses;
    match responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            if status == "401" {
                existing.description = capitalized(&description);
            } else {
                existing.description = format!("{}; or {description}", existing.description);
            }
            if let Some((name, header)) = header {
                existing.headers.insert(name, header);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut response = ResponseBuilder::new()
                .description(capitalized(&description))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ApiError")))
                        .build(),
                );
            if let Some((name, header)) = header {
                response = response.header(name, header);
            }
            responses.insert(status.to_owned(), response.build().into());
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_spec_and_the_pages_has_a_rule() {
        let spec = crate::openapi::spec();
        let mut missing = Vec::new();
        for (path, item) in &spec.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, operation) in operations {
                if operation.is_some() && rule(&method, path).is_none() {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(missing.is_empty(), "routes without a rule: {missing:?}");
        for page in [
            "/",
            "/assets/{*path}",
            "/api/docs",
            "/api/docs/",
            "/api/docs/{*file}",
        ] {
            assert!(rule(&Method::GET, page).is_some(), "{page}");
        }
    }

    #[test]
    fn head_needs_what_get_needs() {
        assert_eq!(
            rule(&Method::HEAD, "/api/v1/topics/{name}"),
            Some(Rule::OnTopicInPath(Operation::Describe))
        );
        assert_eq!(rule(&Method::PUT, "/api/v1/topics/{name}"), None);
    }

    #[test]
    fn basic_credentials_are_parsed_with_the_password_after_the_first_colon() {
        let encoded = STANDARD.encode("alice:pa:ss");
        match basic_credentials(&encoded) {
            Ok(Credentials::Basic { user, password }) => {
                assert_eq!((user.as_str(), password.as_str()), ("alice", "pa:ss"));
            }
            _ => panic!("parsed"),
        }
        assert!(basic_credentials("%%%").is_err());
        assert!(basic_credentials(&STANDARD.encode("no-colon")).is_err());
    }

    #[test]
    fn the_verified_cache_holds_only_for_the_same_credentials_and_stays_bounded() {
        let cache = VerifiedPasswords::new();
        let credential = ScramCredential::derive(Mechanism::ScramSha256, b"pw", b"salt", 4096);
        let other = ScramCredential::derive(Mechanism::ScramSha256, b"new", b"salt", 4096);
        let key = cache.key_of("alice", "pw");
        assert_ne!(key, cache.key_of("alic", "epw"), "the split matters");
        cache.remember(key, vec![credential.clone()]);
        assert!(cache.holds(&key, std::slice::from_ref(&credential)));
        assert!(!cache.holds(&key, &[other]), "a changed password");
        assert!(!cache.holds(&key, &[]), "a removed user");
        for i in 0..MAX_VERIFIED + 5 {
            cache.remember(cache.key_of(&i.to_string(), "x"), vec![credential.clone()]);
        }
        let size = cache.entries.lock().map(|e| e.len()).unwrap_or_default();
        assert!(size <= MAX_VERIFIED, "{size}");
    }
}
