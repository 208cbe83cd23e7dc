//! `GET /healthz`: whether the HTTP server answers (for load balancers and `freshet up`'s
//! readiness check). Service health is in each service's own routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`: a server that can answer is up.
    #[schema(example = "ok")]
    pub status: String,
}

/// Whether the server answers
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "The server is up", body = Health)),
)]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".to_string(),
    })
}
