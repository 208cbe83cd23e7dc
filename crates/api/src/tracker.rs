//! Freshet's own tracker routes: distinct-IP counts and their views (event-time windows,
//! error codes, partitions). The old tracker nodes' endpoints (see `docs/REFERENCE.md`) are
//! in [`crate::compat`].

use freshet_services::tracker::view::{
    ErrorCodeCount, Granularity, PartitionStatus, UniqueIps, WindowCount,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Query};
use crate::state::{blocking, AppState, Tracker};

/// Windows returned when the request names no `limit`: an hour of minutes.
pub const DEFAULT_WINDOW_LIMIT: usize = 60;
/// Most windows one request may ask for (about a week of minutes).
pub const MAX_WINDOW_LIMIT: usize = 10_000;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(unique_ips))
        .routes(routes!(windows))
        .routes(routes!(error_codes))
        .routes(routes!(partitions))
}

/// Distinct-IP counts of this node and of all nodes
///
/// Exact counts (with a HyperLogLog estimate beside them for comparison), the partitions they
/// cover, the nodes seen and how fresh the checkpoints are.
#[utoipa::path(
    get,
    path = "/api/v1/unique-ips",
    tag = "tracker",
    responses(
        (status = 200, description = "Counts and their coverage", body = UniqueIps),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn unique_ips(Tracker(tracker): Tracker) -> Result<axum::Json<UniqueIps>, ApiError> {
    Ok(axum::Json(blocking(move || tracker.unique_ips()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WindowsQuery {
    /// Window width: `minute` (default) or `hour`.
    pub granularity: Option<Granularity>,
    /// Most windows to return, newest first (default 60, 1 to 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Distinct IPs per event-time window.
#[derive(Debug, Serialize, ToSchema)]
pub struct Windows {
    pub granularity: Granularity,
    /// Newest window first.
    pub windows: Vec<WindowCount>,
}

/// Distinct IPs per event-time window
///
/// Windows are by the events' own timestamps (normalised to UTC), newest first. Each count is
/// exact across all partitions.
#[utoipa::path(
    get,
    path = "/api/v1/unique-ips/windows",
    tag = "tracker",
    params(WindowsQuery),
    responses(
        (status = 200, description = "Windows, newest first", body = Windows),
        (status = 400, description = "Unknown granularity or a limit out of range", body = ApiError),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn windows(
    Tracker(tracker): Tracker,
    Query(query): Query<WindowsQuery>,
) -> Result<axum::Json<Windows>, ApiError> {
    let granularity = query.granularity.unwrap_or(Granularity::Minute);
    let limit = window_limit(query.limit)?;
    let windows = blocking(move || tracker.windows(granularity, limit)).await?;
    Ok(axum::Json(Windows {
        granularity,
        windows,
    }))
}

fn window_limit(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(DEFAULT_WINDOW_LIMIT),
        Some(limit @ 1..=MAX_WINDOW_LIMIT) => Ok(limit),
        Some(limit) => Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: ask for 1 to {MAX_WINDOW_LIMIT} windows"
        ))),
    }
}

/// Distinct IPs per error code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorCodes {
    /// One entry per error code seen, in code order.
    pub error_codes: Vec<ErrorCodeCount>,
}

/// Distinct IPs per error code
///
/// For each error code seen, how many distinct devices reported it (exact, across all
/// partitions).
#[utoipa::path(
    get,
    path = "/api/v1/unique-ips/error-codes",
    tag = "tracker",
    responses(
        (status = 200, description = "One count per error code seen", body = ErrorCodes),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn error_codes(Tracker(tracker): Tracker) -> Result<axum::Json<ErrorCodes>, ApiError> {
    let error_codes = blocking(move || tracker.error_codes()).await?;
    Ok(axum::Json(ErrorCodes { error_codes }))
}

/// The input partitions as this node sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Partitions {
    pub partitions: Vec<PartitionStatus>,
}

/// Input partitions as this node sees them
///
/// Which partitions this node owns, each one's distinct IPs, event counts and newest
/// checkpoint.
#[utoipa::path(
    get,
    path = "/api/v1/tracker/partitions",
    tag = "tracker",
    responses(
        (status = 200, description = "Every partition this node knows of", body = Partitions),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn partitions(Tracker(tracker): Tracker) -> Result<axum::Json<Partitions>, ApiError> {
    let partitions = blocking(move || tracker.partitions()).await?;
    Ok(axum::Json(Partitions { partitions }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_limit_defaults_and_bounds() {
        assert_eq!(window_limit(None), Ok(DEFAULT_WINDOW_LIMIT));
        assert_eq!(window_limit(Some(1)), Ok(1));
        assert_eq!(window_limit(Some(MAX_WINDOW_LIMIT)), Ok(MAX_WINDOW_LIMIT));
        for bad in [0, MAX_WINDOW_LIMIT + 1] {
            let error = window_limit(Some(bad)).expect_err("out of range");
            assert!(error
                .error
                .starts_with(&format!("limit {bad} is out of range")));
        }
    }
}
