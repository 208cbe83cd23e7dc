//! The web console: `GET /` serves its page and `GET /assets/{*path}` its stylesheet, scripts
//! and icon. The page reads everything it shows from the `/api/v1/...` routes.
//!
//! # Where the files are
//!
//! The source is `crates/api/console/`: `index.html` at the top, everything it loads under
//! `assets/` (plain CSS and ES modules, no build step). rust-embed compiles the folder into
//! the binary in every profile (its `debug-embed` feature; without it, debug builds would
//! read the files from disk at run time), so the binary serves the console wherever it runs
//! and nothing is fetched from another host. `build.rs` makes Cargo rebuild when a file in
//! the folder is added or changed.
//!
//! # Not API routes
//!
//! These two routes are mounted with plain axum, outside utoipa's router: they serve a page,
//! not an API, and have no place in `/api/openapi.json`. `tests/it/routes.rs` names this module
//! as the one exception to "every route is documented". An unknown asset is a 404 with the
//! API's JSON error, like every other unknown path.
//!
//! # Caching
//!
//! File names carry no content hash, so a browser may keep a copy but must ask again before
//! using it (`Cache-Control: no-cache`); the `ETag` (the file's SHA-256, computed at build
//! time) turns that question into a 304 when nothing changed.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::{EmbeddedFile, RustEmbed};

use crate::error::{ApiError, Path};
use crate::state::AppState;

/// The console's files, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "console/"]
struct ConsoleFiles;

/// Where the page is in [`ConsoleFiles`].
const INDEX: &str = "index.html";
/// The folder of the files `/assets/...` serves.
const ASSETS_DIR: &str = "assets";

/// Only this origin's scripts, styles and data: a console that loads something from another
/// host (a CDN, a font service) fails visibly instead of leaking requests, and an injected
/// inline script would not run. (The scripts set sizes through the CSSOM, which the policy
/// allows, never through `style` attributes.)
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

/// The page and its assets, to merge into the API's router before its fallbacks are set.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

async fn index(request_headers: HeaderMap) -> Response {
    match ConsoleFiles::get(INDEX) {
        Some(file) => serve(INDEX, &file, &request_headers),
        None => ApiError::internal("the console page is missing from this build").into_response(),
    }
}

async fn asset(Path(path): Path<String>, request_headers: HeaderMap) -> Response {
    let name = format!("{ASSETS_DIR}/{path}");
    match ConsoleFiles::get(&name) {
        Some(file) => serve(&name, &file, &request_headers),
        None => ApiError::not_found(format!("no console asset {path}")).into_response(),
    }
}

/// The file with its type and cache headers, or a bodiless 304 when the browser's copy (its
/// `If-None-Match`) is this one.
fn serve(name: &str, file: &EmbeddedFile, request_headers: &HeaderMap) -> Response {
    let etag = etag(file);
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(name)),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag.clone()),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if browser_has(request_headers, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, file.data.clone()).into_response()
}

fn etag(file: &EmbeddedFile) -> HeaderValue {
    let hex: String = file
        .metadata
        .sha256_hash()
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    // Hex digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn browser_has(request_headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(wanted) = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let etag = etag.to_str().unwrap_or_default();
    wanted
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// The type of each kind of file the console ships. An explicit table rather than a guess
/// from a MIME database: module scripts must be served as JavaScript for the browser to run
/// them, and nothing else is ever in the folder.
fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/js/main.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("assets/console.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type("assets/favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("assets/README"), "application/octet-stream");
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let etag = HeaderValue::from_static("\"abc\"");
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(value));
            headers
        };
        assert!(browser_has(&with("\"abc\""), &etag));
        assert!(browser_has(&with("\"x\", W/\"abc\""), &etag));
        assert!(browser_has(&with("*"), &etag));
        assert!(!browser_has(&with("\"abd\""), &etag));
        assert!(!browser_has(&HeaderMap::new(), &etag));
    }
}
