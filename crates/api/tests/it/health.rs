//! `GET /healthz` with the health checks a binary registers: 200 ok while none reports a
//! problem, 503 degraded with every problem while any does, and a spec that says so.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use common::get;
use freshet_api::health::Problem;
use freshet_api::{app, AppState};
use serde_json::json;

fn disk_full() -> Problem {
    Problem {
        component: "broker".into(),
        reason: "disk_full".into(),
        detail: "the data directory's disk is full".into(),
        since_ms: 1_726_668_850_124,
    }
}

#[tokio::test]
async fn healthz_is_degraded_with_the_reasons_while_a_check_reports_a_problem() {
    let full = Arc::new(AtomicBool::new(false));
    let check = {
        let full = full.clone();
        move || {
            if full.load(Ordering::SeqCst) {
                vec![disk_full()]
            } else {
                Vec::new()
            }
        }
    };
    let app = app(AppState::new()
        .with_health_check(check)
        .with_health_check(Vec::new));

    let healthy = get(&app, "/healthz").await;
    assert_eq!(healthy.status, StatusCode::OK);
    assert_eq!(healthy.json, json!({"status": "ok"}));

    full.store(true, Ordering::SeqCst);
    let degraded = get(&app, "/healthz").await;
    assert_eq!(degraded.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        degraded.json,
        json!({
            "status": "degraded",
            "problems": [{
                "component": "broker",
                "reason": "disk_full",
                "detail": "the data directory's disk is full",
                "since_ms": 1_726_668_850_124_i64,
            }],
        })
    );

    full.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&app, "/healthz").await.status,
        StatusCode::OK,
        "it recovers"
    );
}

#[tokio::test]
async fn the_spec_documents_both_answers_of_healthz() {
    let app = app(AppState::new());
    let spec = get(&app, "/api/openapi.json").await.json;
    let responses = &spec["paths"]["/healthz"]["get"]["responses"];
    for status in ["200", "503"] {
        assert!(
            responses[status]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("/Health")),
            "{status}: {responses}"
        );
    }
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["HealthStatus"]["enum"], json!(["ok", "degraded"]));
    for field in ["component", "reason", "detail", "since_ms"] {
        assert!(
            schemas["Problem"]["properties"].get(field).is_some(),
            "Problem.{field}: {}",
            schemas["Problem"]
        );
    }
}
