//! What the routes read: handles of the services running in this process.
//!
//! Every route exists in every process (and in the spec); a route whose service is absent
//! answers 503 through the extractors here, so handlers never check for it themselves.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use freshet_services::cluster::Cluster;
use freshet_services::generator::GeneratorJobs;
use freshet_services::tracker::TrackerHandle;

use crate::auth::HttpAuth;
use crate::error::ApiError;
use crate::guard::GuardState;
use crate::health::{HealthCheck, HealthChecks};
use crate::metrics::Metrics;

/// The services this process runs. `freshet up` has all of them; `freshet tracker` a tracker
/// and the cluster client. `/metrics` reports on each, and on the components in [`Metrics`].
#[derive(Debug, Clone, Default)]
pub struct AppState {
    tracker: Option<TrackerHandle>,
    generator: Option<GeneratorJobs>,
    guard: Option<GuardState>,
    cluster: Option<Cluster>,
    metrics: Metrics,
    health: HealthChecks,
    auth: Option<Arc<HttpAuth>>,
}

impl AppState {
    /// A state with no service: only the timestamp, health and spec routes answer 200.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_tracker(mut self, tracker: TrackerHandle) -> Self {
        self.tracker = Some(tracker);
        self
    }

    pub fn with_generator(mut self, generator: GeneratorJobs) -> Self {
        self.generator = Some(generator);
        self
    }

    /// The login guard with its HTTP settings (admin token, rate limit).
    pub fn with_guard(
        mut self,
        guard: freshet_services::guard::GuardHandle,
        options: crate::guard::GuardOptions,
    ) -> Self {
        self.guard = Some(GuardState::new(guard, options));
        self
    }

    /// The cluster the topic and group routes read and change.
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Collectors of components outside the API (the embedded broker's) for `/metrics`.
    /// The tracker's and the guard's numbers are reported without this.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// A component outside the API (the embedded broker) whose problems make `/healthz`
    /// answer 503 degraded.
    pub fn with_health_check(mut self, check: impl HealthCheck) -> Self {
        self.health = self.health.with(check);
        self
    }

    /// Sign-in and rights ([`crate::auth`]): once the auth's user store holds a user, every
    /// route but the health check, sign-in and the console's page needs credentials, and
    /// with an authorizer each route needs its right. Without this (or without users) no
    /// request is checked.
    pub fn with_auth(mut self, auth: HttpAuth) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    pub(crate) fn auth(&self) -> Option<&HttpAuth> {
        self.auth.as_deref()
    }

    pub(crate) fn generator_jobs(&self) -> Option<&GeneratorJobs> {
        self.generator.as_ref()
    }

    pub(crate) fn health_checks(&self) -> &HealthChecks {
        &self.health
    }

    pub(crate) fn guard(&self) -> Option<&GuardState> {
        self.guard.as_ref()
    }

    pub(crate) fn tracker_handle(&self) -> Option<&TrackerHandle> {
        self.tracker.as_ref()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The tracker of this process, or a 503 rejection when it runs none.
#[derive(Debug, Clone)]
pub struct Tracker(pub TrackerHandle);

impl FromRequestParts<AppState> for Tracker {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .tracker
            .clone()
            .map(Tracker)
            .ok_or_else(|| ApiError::service_not_running("tracker"))
    }
}

/// The generator jobs of this process, or a 503 rejection when it runs no generator.
#[derive(Debug, Clone)]
pub struct Generator(pub GeneratorJobs);

impl FromRequestParts<AppState> for Generator {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .generator
            .clone()
            .map(Generator)
            .ok_or_else(|| ApiError::service_not_running("generator"))
    }
}

/// The cluster client of this process, or a 503 rejection when it has none.
#[derive(Debug, Clone)]
pub struct KafkaCluster(pub Cluster);

impl FromRequestParts<AppState> for KafkaCluster {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .cluster
            .clone()
            .map(KafkaCluster)
            .ok_or_else(|| ApiError::service_not_running("cluster client"))
    }
}

/// Runs a service call that takes a std mutex (and, at millions of IPs, tens of
/// milliseconds) off the async workers, so slow reads never stall other requests.
pub async fn blocking<T, F>(call: F) -> Result<T, ApiError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| ApiError::internal(format!("the service call did not finish: {e}")))
}
