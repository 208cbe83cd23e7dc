//! `/api/docs`: the interactive docs page is served from the binary, reads this API's spec
//! and references nothing on another host.

use crate::common;

use axum::http::StatusCode;
use common::{assert_error, get};
use freshet_api::{app, AppState};

#[tokio::test]
async fn docs_path_redirects_to_the_page() {
    let answer = get(&app(AppState::new()), "/api/docs").await;
    assert_eq!(answer.status, StatusCode::PERMANENT_REDIRECT, "{answer:?}");
    assert_eq!(
        answer.headers.get("location").map(|v| v.as_bytes()),
        Some(&b"/api/docs/"[..])
    );
}

#[tokio::test]
async fn page_and_every_file_it_loads_are_served_from_the_binary() {
    let app = app(AppState::new());
    let page = get(&app, "/api/docs/").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(content_type(&page).starts_with("text/html"), "{page:?}");
    assert!(page.text.contains("swagger-ui"), "{}", page.text);

    let files = referenced_files(&page.text);
    assert!(
        files.iter().any(|f| f.ends_with(".js")) && files.iter().any(|f| f.ends_with(".css")),
        "the page loads scripts and styles: {files:?}"
    );
    for file in files {
        assert!(
            !file.contains("//"),
            "{file} is on another host; the docs must work offline"
        );
        let answer = get(
            &app,
            &format!("/api/docs/{}", file.trim_start_matches("./")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{file}: {answer:?}");
        let expected = if file.ends_with(".js") {
            "javascript"
        } else if file.ends_with(".css") {
            "text/css"
        } else {
            "image/png"
        };
        assert!(
            content_type(&answer).contains(expected),
            "{file}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn page_reads_this_api_spec_without_the_online_validator() {
    let answer = get(&app(AppState::new()), "/api/docs/swagger-initializer.js").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(
        answer.text.contains("\"/api/openapi.json\""),
        "{}",
        answer.text
    );
    assert!(
        answer.text.contains("\"validatorUrl\": \"none\""),
        "{}",
        answer.text
    );
    assert!(!answer.text.contains("https://"), "{}", answer.text);
}

#[tokio::test]
async fn unknown_docs_file_is_a_json_404() {
    let answer = get(&app(AppState::new()), "/api/docs/nope.js").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "no docs file nope.js");
}

fn content_type(answer: &common::Answer) -> &str {
    answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The `src="..."` and `href="..."` targets of an HTML page.
fn referenced_files(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| {
            html.match_indices(attr).filter_map(move |(at, _)| {
                let rest = &html[at + attr.len()..];
                rest.find('"').map(|end| rest[..end].to_string())
            })
        })
        .collect()
}
