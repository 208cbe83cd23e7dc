//! The web console as the router serves it: the page, every file it loads (following the
//! scripts' imports), their content types and cache headers, that nothing points at another
//! host, and the JSON 404 of an unknown asset. The browser tests in `tests/console/` drive
//! the same files in Chromium against a running `freshet up`.

use crate::common;

use std::collections::{BTreeSet, VecDeque};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::{assert_error, get, send, Answer};
use freshet_api::{app, AppState};

fn console() -> Router {
    app(AppState::new())
}

fn content_type(answer: &Answer) -> &str {
    answer
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// The values of `attribute="..."` in the page.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.split(needle.as_str())
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// The modules a script imports (`from './x.js'`, `import './x.js'`), as absolute paths.
fn imports(script_path: &str, source: &str) -> Vec<String> {
    let directory = script_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut found = Vec::new();
    for marker in ["from '", "import '"] {
        for rest in source.split(marker).skip(1) {
            let Some(target) = rest.split('\'').next() else {
                continue;
            };
            if target.starts_with("./") || target.starts_with("../") {
                found.push(resolve(directory, target));
            }
        }
    }
    found
}

fn resolve(directory: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = directory.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn expected_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        other => panic!("the console references an unexpected kind of file: {other:?} ({path})"),
    }
}

/// Absolute URLs in a console file; the only one allowed is the SVG namespace, which names
/// a vocabulary and is never fetched.
fn foreign_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://", "//fonts.", "//cdn"] {
        for (index, _) in text.match_indices(scheme) {
            let url: String = text[index..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"\"'`)>".contains(*c))
                .collect();
            if url != "http://www.w3.org/2000/svg" {
                found.push(url);
            }
        }
    }
    found
}

#[tokio::test]
async fn the_page_is_html_loading_its_stylesheet_script_and_icon() {
    let page = get(&console(), "/").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert_eq!(content_type(&page), "text/html; charset=utf-8");
    assert!(page.text.starts_with("<!doctype html>"), "{}", page.text);
    let links = attribute_values(&page.text, "href");
    let scripts = attribute_values(&page.text, "src");
    assert!(links.contains(&"/assets/console.css"), "{links:?}");
    assert!(links.contains(&"/assets/favicon.svg"), "{links:?}");
    assert!(scripts.contains(&"/assets/js/main.js"), "{scripts:?}");
    assert!(
        page.text.contains("<script type=\"module\""),
        "the script is an ES module"
    );
    for link in ["/api/docs", "/metrics"] {
        assert!(links.contains(&link), "the navigation links to {link}");
    }
}

/// Every asset the page names, and every module those scripts import, transitively, is
/// served with its type: a missing module would break the console in the browser only.
#[tokio::test]
async fn every_referenced_asset_and_imported_module_is_served_with_its_type() {
    let app = console();
    let page = get(&app, "/").await;
    let mut queue: VecDeque<String> = attribute_values(&page.text, "href")
        .into_iter()
        .chain(attribute_values(&page.text, "src"))
        .filter(|path| path.starts_with("/assets/"))
        .map(str::to_string)
        .collect();
    let mut served = BTreeSet::new();
    while let Some(path) = queue.pop_front() {
        if !served.insert(path.clone()) {
            continue;
        }
        let answer = get(&app, &path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
        assert_eq!(content_type(&answer), expected_type(&path), "{path}");
        if path.ends_with(".js") {
            queue.extend(imports(&path, &answer.text));
        }
    }
    for page in [
        "overview",
        "topics",
        "groups",
        "generator",
        "tracker",
        "guard",
    ] {
        let module = format!("/assets/js/pages/{page}.js");
        assert!(
            served.contains(&module),
            "{module} is not loaded: {served:?}"
        );
    }
}

#[tokio::test]
async fn nothing_in_the_console_points_at_another_host() {
    let app = console();
    let page = get(&app, "/").await;
    assert_eq!(foreign_urls(&page.text), Vec::<String>::new(), "in /");
    let mut queue = VecDeque::from([String::from("/assets/js/main.js")]);
    queue.push_back("/assets/console.css".into());
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let answer = get(&app, &path).await;
        assert_eq!(
            foreign_urls(&answer.text),
            Vec::<String>::new(),
            "in {path}"
        );
        if path.ends_with(".js") {
            queue.extend(imports(&path, &answer.text));
        }
    }
    let policy = page
        .headers
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .expect("a content security policy");
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
}

#[tokio::test]
async fn assets_are_revalidated_by_etag() {
    let app = console();
    let first = get(&app, "/assets/console.css").await;
    assert_eq!(
        first
            .headers
            .get("cache-control")
            .map(|value| value.as_bytes()),
        Some(&b"no-cache"[..])
    );
    let etag = first.headers.get("etag").expect("an ETag").clone();
    let again = Request::builder()
        .method(Method::GET)
        .uri("/assets/console.css")
        .header("if-none-match", etag.clone())
        .body(Body::empty())
        .expect("request");
    let answer = send(&app, again).await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    assert!(answer.text.is_empty());
    assert_eq!(answer.headers.get("etag"), Some(&etag));
    let page = get(&app, "/").await;
    assert_ne!(
        page.headers.get("etag"),
        Some(&etag),
        "each file has its own"
    );
}

#[tokio::test]
async fn an_unknown_asset_is_a_json_404() {
    let app = console();
    for (path, name) in [
        ("/assets/nope.js", "nope.js"),
        ("/assets/js/pages/missing.js", "js/pages/missing.js"),
        ("/assets/../index.html", "../index.html"),
    ] {
        let answer = get(&app, path).await;
        assert_error(
            &answer,
            StatusCode::NOT_FOUND,
            &format!("no console asset {name}"),
        );
    }
    // The page itself is only served at `/`.
    let page_as_asset = get(&app, "/assets/index.html").await;
    assert_eq!(page_as_asset.status, StatusCode::NOT_FOUND);
}
