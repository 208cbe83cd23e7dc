//! `GET /healthz`: whether this process is healthy, for load balancers, Kubernetes readiness
//! probes and alerting.
//!
//! 200 `{"status": "ok"}` while every registered [`HealthCheck`] is content; 503
//! `{"status": "degraded", "problems": [...]}` while any reports a problem (for the embedded
//! broker: a full disk, partition logs read-only after a failed fsync). 503 because that is
//! what readiness probes and load balancers understand as "do not count on this instance";
//! the body says why, and the server keeps answering everything it can. A restart fixes a
//! read-only log but not a full disk, so a liveness probe should not use this route (see
//! `docs/OPERATIONS.md`).
//!
//! The checks are registered by the binary ([`AppState::with_health_check`]): this crate
//! never sees broker code.

use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz))
}

/// Something in this process that can be degraded (the embedded broker). Called on every
/// `GET /healthz`, on the async workers: it must answer from memory, without blocking.
pub trait HealthCheck: Send + Sync + 'static {
    /// What is wrong now; empty while healthy.
    fn problems(&self) -> Vec<Problem>;
}

impl<F> HealthCheck for F
where
    F: Fn() -> Vec<Problem> + Send + Sync + 'static,
{
    fn problems(&self) -> Vec<Problem> {
        self()
    }
}

/// The checks of [`AppState`]. Cheap to clone; clones share the checks.
#[derive(Clone, Default)]
pub struct HealthChecks {
    checks: Arc<Vec<Arc<dyn HealthCheck>>>,
}

impl HealthChecks {
    pub(crate) fn with(mut self, check: impl HealthCheck) -> Self {
        Arc::make_mut(&mut self.checks).push(Arc::new(check));
        self
    }

    /// Every registered check's problems, in registration order.
    pub fn problems(&self) -> Vec<Problem> {
        self.checks
            .iter()
            .flat_map(|check| check.problems())
            .collect()
    }
}

impl fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HealthChecks({} registered)", self.checks.len())
    }
}

/// `ok`, or `degraded` while any component reports a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
}

/// One thing wrong with a component of this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// The component in trouble.
    #[schema(example = "broker")]
    pub component: String,
    /// Why, as a stable word: `disk_full` (a write to the data directory failed with
    /// ENOSPC/EDQUOT; ends when a probe can write again) or `log_poisoned` (partition logs
    /// read-only after a failed fsync; ends at a restart or when their topics are deleted).
    #[schema(example = "disk_full")]
    pub reason: String,
    /// What happened and what it means, for people.
    #[schema(
        example = "the data directory's disk is full (produce on events-0: No space left on device (os error 28)): produce requests that need space answer KAFKA_STORAGE_ERROR and topic creation is refused until space is freed"
    )]
    pub detail: String,
    /// When the problem began, in milliseconds since the Unix epoch.
    #[schema(example = 1_726_668_850_124_i64)]
    pub since_ms: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// Why the process is degraded; absent while it is ok.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// Whether the process is healthy
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses(
        (status = 200, description = "Healthy: the server answers and no component reports a \
            problem", body = Health,
            example = json!({"status": "ok"})),
        (status = 503, description = "Degraded: a component reports a problem (the embedded \
            broker's disk is full, or partition logs are read-only after a failed fsync); \
            `problems` says which and since when. The server still answers and serves what it \
            can", body = Health),
    ),
)]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let problems = state.health_checks().problems();
    let (code, status) = if problems.is_empty() {
        (StatusCode::OK, HealthStatus::Ok)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Degraded)
    };
    (code, Json(Health { status, problems }))
}
