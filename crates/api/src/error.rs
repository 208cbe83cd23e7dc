//! The one error type of every route: a status and a message, rendered as `{"error": "..."}`.
//!
//! Every way a request can fail ends here, including axum's own rejections (bad query string,
//! bad JSON, body too large) and the fallbacks for unknown routes and methods, so a client
//! never has to parse axum's plain-text defaults.
//!
//! The services' errors become answers in one place, [`ApiError::from_service`]: the status
//! comes from the error's [`ErrorKind`] alone ([`status_for`]), the message is the error with
//! its causes.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use freshet_services::error::full_message;
use freshet_services::{
    Classify, ClientError, ClusterError, ErrorKind, GeneratorError, GuardError, TrackerError,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An error answer: `{"error": "<what went wrong>"}` with a fitting HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"error": "the tracker is not running in this process"}))]
pub struct ApiError {
    /// Sent as the response status, not in the body.
    #[serde(skip)]
    #[schema(ignore)]
    pub status: StatusCode,
    /// What went wrong, precise enough to fix the request.
    pub error: String,
    /// The text of each cause of a service's error, nearest first: logged with a 5xx answer,
    /// never sent.
    #[serde(skip)]
    #[schema(ignore)]
    causes: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            causes: Vec::new(),
        }
    }

    /// A service's error as an answer: the status its kind calls for, and the error with its
    /// causes as the message. The causes are kept apart too, for the log of a 5xx answer.
    pub fn from_service<E: Classify + 'static>(error: &E) -> Self {
        ApiError {
            causes: freshet_services::error::causes(error),
            ..ApiError::new(status_for(error.kind()), full_message(error))
        }
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }

    /// A request that is understood and refused whoever sends it (a service's own topic).
    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error)
    }

    /// A route whose service this process does not run (`freshet tracker` has no generator,
    /// `freshet guard` no tracker): the route exists, the service is unavailable here.
    pub fn service_not_running(service: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the {service} is not running in this process"),
        )
    }

    /// A failure of ours, not of the request; the details go to the log.
    pub fn internal(error: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, error)
    }

    /// A 5xx answer goes to the log, with every cause of the service's error.
    fn log(&self) {
        let status = self.status;
        if self.causes.is_empty() {
            tracing::warn!(%status, error = %self.error, "request failed");
        } else {
            let causes = &self.causes;
            tracing::warn!(%status, error = %self.error, ?causes, "request failed");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            self.log();
        }
        (self.status, axum::Json(self)).into_response()
    }
}

/// The HTTP status of a service error of `kind`: the one place the API decides it.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        // The cluster or the account database, not this request, is the problem, and a
        // retry may succeed.
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `?` on a service's result in a handler: each error type through
/// [`ApiError::from_service`].
macro_rules! from_service_errors {
    ($($error:ty),+) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                ApiError::from_service(&error)
            }
        }
    )+};
}

from_service_errors!(
    ClientError,
    ClusterError,
    GeneratorError,
    GuardError,
    TrackerError
);

/// axum's rejections keep their status (400, 413, 415, 422...) and their reason text, but
/// are rendered as JSON. Unprocessable JSON is a 400 here: the API has one status for "your
/// request is wrong" and says why in the body.
fn from_rejection(status: StatusCode, reason: String) -> ApiError {
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, reason)
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        from_rejection(rejection.status(), rejection.body_text())
    }
}

/// `axum::extract::Query` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A JSON body, as `axum::Json` reads it (415 without a JSON content type, 400 for bad
/// JSON), rejected with an [`ApiError`], and with one difference: a number with a zero
/// fraction (`3.0`) is taken where an integer is expected. JSON Schema, and so the spec,
/// counts `3.0` as an integer; serde would refuse it.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(mut value) = axum::Json::<Value>::from_request(request, state).await?;
        // Every body is an object: serde would also read a struct from an array of its fields.
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        integers_as_integers(&mut value);
        serde_path_to_error::deserialize(value)
            .map(Json)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "Failed to deserialize the JSON body into the target type: {e}"
                ))
            })
    }
}

/// Rewrites every number with a zero fraction that fits an integer type as that integer.
/// A field that wants a float takes the integer just the same.
fn integers_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(integer) = number.as_f64().and_then(as_integer) {
                *number = integer;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integers_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// `float` as an integer when it is one, within `i64` or `u64`.
fn as_integer(float: f64) -> Option<serde_json::Number> {
    // 2^63 and 2^64 are exact as f64; the ranges below are the integers both types hold.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if float.fract() != 0.0 || !float.is_finite() {
        return None;
    }
    if (-TWO_63..0.0).contains(&float) {
        Some((float as i64).into())
    } else if (0.0..TWO_64).contains(&float) {
        Some((float as u64).into())
    } else {
        None
    }
}

/// The router's fallback: a path no route matches.
pub async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// The fallback of a route that exists but not for this method. axum adds the `Allow`
/// header listing the methods that are.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error of whatever kind it is told, with one cause.
    #[derive(Debug)]
    struct OfKind(ErrorKind, std::io::Error);

    impl std::fmt::Display for OfKind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("what failed")
        }
    }

    impl std::error::Error for OfKind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    impl Classify for OfKind {
        fn kind(&self) -> ErrorKind {
            self.0
        }
    }

    #[test]
    fn each_kind_has_its_status_and_the_message_its_causes() {
        let cases = [
            (ErrorKind::Invalid, StatusCode::BAD_REQUEST),
            (ErrorKind::NotFound, StatusCode::NOT_FOUND),
            (ErrorKind::Conflict, StatusCode::CONFLICT),
            (ErrorKind::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorKind::Timeout, StatusCode::GATEWAY_TIMEOUT),
            (ErrorKind::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (kind, status) in cases {
            let error = ApiError::from_service(&OfKind(kind, std::io::Error::other("why")));
            assert_eq!(
                (error.status, error.error.as_str()),
                (status, "what failed: why"),
                "{kind:?}"
            );
            assert_eq!(error.causes, ["why"]);
        }
    }

    #[test]
    fn service_errors_keep_their_messages() {
        let cases = [
            (
                ApiError::from(GeneratorError::InvalidParams("num_devices is 0".into())),
                StatusCode::BAD_REQUEST,
                "num_devices is 0",
            ),
            (
                ApiError::from(ClusterError::NotFound("topic \"t\" does not exist".into())),
                StatusCode::NOT_FOUND,
                "topic \"t\" does not exist",
            ),
            (
                ApiError::from(GuardError::UserExists { user: "bob".into() }),
                StatusCode::CONFLICT,
                "user \"bob\" already exists",
            ),
            (
                ApiError::from(ClusterError::Unavailable("no broker answered".into())),
                StatusCode::SERVICE_UNAVAILABLE,
                "the cluster is unavailable: no broker answered",
            ),
        ];
        for (error, status, message) in cases {
            assert_eq!((error.status, error.error.as_str()), (status, message));
        }
    }

    #[test]
    fn numbers_with_a_zero_fraction_become_integers() {
        let mut value = serde_json::json!({
            "a": 3.0, "b": -2.0, "c": 1.5, "d": [7.0, "8.0"], "e": 1e300, "f": 5,
            "g": 18446744073709549568.0
        });
        integers_as_integers(&mut value);
        assert_eq!(value["a"].as_u64(), Some(3));
        assert_eq!(value["b"].as_i64(), Some(-2));
        assert_eq!(value["c"].as_f64(), Some(1.5));
        assert_eq!(value["d"], serde_json::json!([7, "8.0"]));
        assert!(value["e"].is_f64(), "too large for any integer type");
        assert_eq!(value["f"].as_u64(), Some(5));
        assert_eq!(value["g"].as_u64(), Some(18_446_744_073_709_549_568));
    }

    #[test]
    fn body_is_only_the_error_field() {
        let error = ApiError::bad_request("value is missing");
        let body = serde_json::to_value(&error).expect("serialises");
        assert_eq!(body, serde_json::json!({"error": "value is missing"}));
    }
}
