//! Panics that were caught instead of taking a thread or a connection down with them: a
//! generator job's thread, an HTTP request's handler. Each one is logged at ERROR with its
//! message and counted here, so `/metrics` shows a process that is hiding bugs.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a panic was caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicSite {
    /// A generator job's thread: the job is marked failed with the message.
    GeneratorJob,
    /// An HTTP request's handler: the request is answered 500.
    HttpRequest,
}

impl PanicSite {
    pub const ALL: [PanicSite; 2] = [PanicSite::GeneratorJob, PanicSite::HttpRequest];

    /// The `site` label of the metric.
    pub fn as_str(self) -> &'static str {
        match self {
            PanicSite::GeneratorJob => "generator_job",
            PanicSite::HttpRequest => "http_request",
        }
    }

    fn counter(self) -> &'static AtomicU64 {
        static GENERATOR_JOB: AtomicU64 = AtomicU64::new(0);
        static HTTP_REQUEST: AtomicU64 = AtomicU64::new(0);
        match self {
            PanicSite::GeneratorJob => &GENERATOR_JOB,
            PanicSite::HttpRequest => &HTTP_REQUEST,
        }
    }
}

/// Records a caught panic: counts it, logs it at ERROR with `context` (what was running),
/// and returns its message for the job status or the error answer.
pub fn caught(site: PanicSite, context: &str, payload: &(dyn Any + Send)) -> String {
    site.counter().fetch_add(1, Ordering::Relaxed);
    let message = panic_message(payload);
    tracing::error!(site = site.as_str(), context, panic = %message, "caught a panic");
    message
}

/// Panics caught at `site` since the process started.
pub fn count(site: PanicSite) -> u64 {
    site.counter().load(Ordering::Relaxed)
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`); other
/// payloads have none to show.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_str_and_string_payloads_are_kept() {
        let literal = std::panic::catch_unwind(|| panic!("plain")).expect_err("panics");
        assert_eq!(panic_message(literal.as_ref()), "plain");
        let formatted = std::panic::catch_unwind(|| panic!("value {}", 7)).expect_err("panics");
        assert_eq!(panic_message(formatted.as_ref()), "value 7");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(5_u8)).expect_err("panics");
        assert_eq!(panic_message(other.as_ref()), "a panic without a message");
    }

    #[test]
    fn caught_panics_are_counted_per_site() {
        let before = count(PanicSite::HttpRequest);
        let payload: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(
            caught(PanicSite::HttpRequest, "test", payload.as_ref()),
            "boom"
        );
        assert!(count(PanicSite::HttpRequest) > before);
    }
}
