//! Generator jobs: start one with JSON parameters, watch its progress (with an estimate of the
//! time left), list, cancel (the job stays listed with its final counts) or delete (cancelled
//! if running, then forgotten). The old generator's `GET /start` is in [`crate::compat`].
//!
//! Jobs are kept in the memory of the process that runs them, and nowhere else: a restart
//! forgets them all and starts ids from 1 again, and another Freshet process (another `freshet
//! up`, say) does not list them.

use axum::http::{header, StatusCode};
use freshet_services::generator::jobs::KEPT_JOBS;
use freshet_services::generator::{GeneratorParams, JobStatus};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Json, Path};
use crate::state::{blocking, AppState, Generator};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_job, list_jobs))
        .routes(routes!(get_job, delete_job))
        .routes(routes!(cancel_job))
}

/// Where a job's status is served.
pub fn job_url(id: u64) -> String {
    format!("/api/v1/generator/jobs/{id}")
}

pub(crate) fn no_such_job(id: u64) -> ApiError {
    ApiError::not_found(format!(
        "no generator job {id} (jobs are kept in memory only: finished jobs beyond the newest \
         {KEPT_JOBS} are forgotten, and all of them when the process restarts)"
    ))
}

/// Start a generator job
///
/// Validates the parameters and starts sending in the background; returns at once. Missing
/// fields take their defaults (100 devices, 1000 events, 100 ms pause, no compression);
/// unknown fields, and a `compression` other than `none`, `gzip`, `snappy`, `lz4` or `zstd`,
/// are refused. The job is kept in this process's memory only: a restart forgets it.
#[utoipa::path(
    post,
    path = "/api/v1/generator/jobs",
    tag = "generator",
    request_body = GeneratorParams,
    responses(
        (status = 201, description = "The job started; `Location` is its URL", body = JobStatus,
         headers(("Location" = String, description = "URL of the job's status"))),
        (status = 400, description = "Invalid JSON, an unknown field or compression, or a parameter out of range", body = ApiError),
        (status = 413, description = "The body is larger than 64 KiB", body = ApiError),
        (status = 415, description = "The body is not declared as JSON (`Content-Type: application/json`)", body = ApiError),
        (status = 503, description = "No generator runs in this process", body = ApiError),
    )
)]
pub async fn create_job(
    Generator(jobs): Generator,
    Json(params): Json<GeneratorParams>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        axum::Json<JobStatus>,
    ),
    ApiError,
> {
    let status = blocking(move || jobs.start(params)).await??;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, job_url(status.id))],
        axum::Json(status),
    ))
}

/// The jobs this process keeps, in its memory only: not persisted, so a restart forgets them
/// all.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jobs {
    /// Newest first: every running job and the newest 100 finished ones since this process
    /// started. Kept in memory only: a restart forgets every job (and a running one stops).
    pub jobs: Vec<JobStatus>,
}

/// List generator jobs
///
/// The jobs this process has run since it started, newest first: every running job and the
/// newest 100 finished ones. Jobs are kept in memory only, not persisted: a restart forgets
/// them all (a running job stops with the process) and ids start from 1 again.
#[utoipa::path(
    get,
    path = "/api/v1/generator/jobs",
    tag = "generator",
    responses(
        (status = 200, description = "Jobs kept in this process's memory (not persisted: a restart forgets them), newest first", body = Jobs),
        (status = 503, description = "No generator runs in this process", body = ApiError),
    )
)]
pub async fn list_jobs(Generator(jobs): Generator) -> Result<axum::Json<Jobs>, ApiError> {
    let jobs = blocking(move || jobs.list()).await?;
    Ok(axum::Json(Jobs { jobs }))
}

/// A generator job's progress
#[utoipa::path(
    get,
    path = "/api/v1/generator/jobs/{id}",
    tag = "generator",
    params(("id" = u64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, with its progress and `eta_secs`", body = JobStatus),
        (status = 400, description = "The id is not a number", body = ApiError),
        (status = 404, description = "No such job (also every job of a previous run of the process: jobs are kept in memory only)", body = ApiError),
        (status = 503, description = "No generator runs in this process", body = ApiError),
    )
)]
pub async fn get_job(
    Generator(jobs): Generator,
    Path(id): Path<u64>,
) -> Result<axum::Json<JobStatus>, ApiError> {
    blocking(move || jobs.get(id))
        .await?
        .map(axum::Json)
        .ok_or_else(|| no_such_job(id))
}

/// Cancel a generator job
///
/// Asks a running job to stop; it reports `cancelled` once what it queued is delivered, and
/// stays listed with its final counts. A job that already ended is left as it is.
#[utoipa::path(
    post,
    path = "/api/v1/generator/jobs/{id}/cancel",
    tag = "generator",
    params(("id" = u64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job as of the cancel request", body = JobStatus),
        (status = 400, description = "The id is not a number", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 503, description = "No generator runs in this process", body = ApiError),
    )
)]
pub async fn cancel_job(
    Generator(jobs): Generator,
    Path(id): Path<u64>,
) -> Result<axum::Json<JobStatus>, ApiError> {
    blocking(move || jobs.cancel(id))
        .await?
        .map(axum::Json)
        .ok_or_else(|| no_such_job(id))
}

/// Delete a generator job
///
/// Forgets the job: afterwards it is not listed and its URL answers 404. A running job is
/// cancelled first (what it queued is still delivered). To stop a job and keep its final
/// counts, cancel it instead (`POST .../cancel`).
#[utoipa::path(
    delete,
    path = "/api/v1/generator/jobs/{id}",
    tag = "generator",
    params(("id" = u64, Path, description = "Job id")),
    responses(
        (status = 204, description = "The job is forgotten (and was cancelled if it ran)"),
        (status = 400, description = "The id is not a number", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 503, description = "No generator runs in this process", body = ApiError),
    )
)]
pub async fn delete_job(
    Generator(jobs): Generator,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    blocking(move || jobs.remove(id))
        .await?
        .map(|_| StatusCode::NO_CONTENT)
        .ok_or_else(|| no_such_job(id))
}
