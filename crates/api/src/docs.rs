//! `/api/docs`: interactive API docs (Swagger UI) over this API's own spec.
//!
//! Swagger UI's files come from the `utoipa-swagger-ui` crate with its `vendored` feature: the
//! distribution is inside the crate as published on crates.io and is compiled into the binary,
//! so the page works offline and nothing is downloaded at build or run time. The page reads
//! the spec from `/api/openapi.json`, the route that serves it to everyone else, so the docs
//! show exactly what the router serves. swagger.io's online validator is switched off: it
//! would send the spec to another host.
//!
//! These routes serve a web page, not the API, so they are mounted outside the spec.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// Where the docs page is served. Swagger UI loads its files relative to the page, so the
/// page itself is `DOCS_PATH/`.
pub const DOCS_PATH: &str = "/api/docs";

/// The page's settings, rendered into Swagger UI's initializer script.
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::from("/api/openapi.json")
            .try_it_out_enabled(true)
            .display_request_duration(true)
            .filter(true)
            .deep_linking(true)
            // Keeps the admin token typed into "Authorize" across reloads of the page.
            .persist_authorization(true)
            .validator_url("none"),
    )
});

pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            DOCS_PATH,
            get(|| async { Redirect::permanent("/api/docs/") }),
        )
        .route("/api/docs/", get(|| docs_file(String::new())))
        .route(
            "/api/docs/{*file}",
            get(|Path(file): Path<String>| docs_file(file)),
        )
}

/// One file of Swagger UI: `index.html` for the page itself.
async fn docs_file(file: String) -> Response {
    match utoipa_swagger_ui::serve(&file, Arc::clone(&CONFIG)) {
        Ok(Some(found)) => {
            let content_type = HeaderValue::from_str(&found.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, content_type),
                    // The files change only with the binary; revalidating keeps a browser
                    // from showing an old page after an upgrade.
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                ],
                found.bytes.into_owned(),
            )
                .into_response()
        }
        Ok(None) => ApiError::not_found(format!("no docs file {file}")).into_response(),
        Err(e) => ApiError::internal(format!("rendering the docs page: {e}")).into_response(),
    }
}
