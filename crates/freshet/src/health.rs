//! The embedded broker's part of `/healthz`: its degraded conditions (disk full, partition
//! logs read-only after a failed fsync) as the API's problems. It lives with the binary
//! because the API crate never depends on broker code.

use std::sync::Arc;

use freshet_api::health::Problem;
use freshet_broker::Broker;

/// A health check for `AppState::with_health_check`, reporting on `broker`.
pub fn for_broker(broker: Arc<Broker>) -> impl Fn() -> Vec<Problem> + Send + Sync + 'static {
    move || broker_problems(&broker)
}

fn broker_problems(broker: &Broker) -> Vec<Problem> {
    broker
        .health_report()
        .into_iter()
        .map(|condition| Problem {
            component: "broker".to_string(),
            reason: condition.reason.as_str().to_string(),
            detail: condition.detail,
            since_ms: condition.since_ms,
        })
        .collect()
}
