//! `GET /api/v1/timestamp`: normalises one timestamp, as `freshet ts` does.

use freshet_timestamp::{normalize, normalize_json, NormalizedTs, TimestampError};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Query};
use crate::openapi::required_parameter;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(normalize_timestamp))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampQuery {
    /// `Option` so a missing value gets this API's own 400 message; the spec says it is
    /// required (see the `IntoParams` impl).
    pub value: Option<String>,
}

impl IntoParams for TimestampQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let value = required_parameter(
            "value",
            ParameterIn::Query,
            "The timestamp: ISO 8601 / RFC 3339 text (`2021-12-03 16:15:30.2359+02:00`), or a \
             Unix epoch number in seconds, milliseconds, microseconds or nanoseconds \
             (`1726667942`). A value in double quotes is a JSON string (`\"1726667942\"`), \
             so it is read as text. One value per request.",
            value_schema(),
        );
        let example = serde_json::Value::from("2024-09-18T13:59:02.123456Z");
        vec![ParameterBuilder::from(value).example(Some(example)).build()]
    }
}

/// What the spec promises the normaliser accepts: every ISO 8601 value of a day that exists
/// (Feb 29 only in leap years) in years 0001-9998, where no offset can move the instant out
/// of 0000-9999; and epoch numbers of up to 18 digits with up to 9 fraction digits. The
/// normaliser takes more (negative epoch numbers, JSON strings in double quotes, years 0000
/// and 9999 when the offset keeps them in range), which the spec leaves out rather than
/// promise something the server refuses; the tests check the calendar part exactly.
pub const TIMESTAMP_PATTERN: &str = concat!(
    "^((",
    // A date of years 0001-9998...
    "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])",
    "-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))",
    // ...or Feb 29 of a leap year...
    "|([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29",
    // ...then the time and an optional zone...
    ")[Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.,][0-9]{1,9})?)?",
    "([Zz]|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?",
    // ...or an epoch number.
    "|[0-9]{1,18}([.][0-9]{1,9})?",
    ")$"
);

fn value_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(TIMESTAMP_PATTERN))
        .build()
}

/// A timestamp in Freshet's one form.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NormalizedTimestamp {
    /// The value as it was given.
    #[schema(example = "1726667942")]
    pub input: String,
    /// UTC, ISO 8601, exactly three fraction digits: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    #[schema(example = "2024-09-18T13:59:02.000Z")]
    pub normalized: String,
    /// The same instant in Unix milliseconds.
    #[schema(example = 1726667942000_i64)]
    pub unix_ms: i64,
}

/// Normalise a timestamp
///
/// Reads the value as a JSON number or string when it is one, else as plain text, and returns
/// it as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`. An invalid value gets a 400 that says what is wrong
/// and at which byte.
#[utoipa::path(
    get,
    path = "/api/v1/timestamp",
    tag = "timestamp",
    params(TimestampQuery),
    responses(
        (status = 200, description = "The normalised timestamp", body = NormalizedTimestamp),
        (status = 400, description = "Missing or invalid value; the reason is in `error`", body = ApiError),
    )
)]
pub async fn normalize_timestamp(
    Query(query): Query<TimestampQuery>,
) -> Result<axum::Json<NormalizedTimestamp>, ApiError> {
    let input = query
        .value
        .ok_or_else(|| ApiError::bad_request("missing query parameter value"))?;
    let normalized = normalize_input(&input)
        .map_err(|e| ApiError::bad_request(format!("{input:?} is not a timestamp: {e}")))?;
    Ok(axum::Json(NormalizedTimestamp {
        normalized: normalized.as_str().to_string(),
        unix_ms: normalized.unix_millis(),
        input,
    }))
}

/// JSON numbers and strings are read as JSON (`1726667942` is a number, `"123"` the string
/// 123); anything else, including JSON `true` or `null`, is plain text, so an ISO timestamp
/// needs no quotes.
fn normalize_input(input: &str) -> Result<NormalizedTs, TimestampError> {
    match serde_json::from_str::<serde_json::Value>(input) {
        Ok(json @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => {
            normalize_json(&json)
        }
        _ => normalize(input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(input: &str) -> String {
        match normalize_input(input) {
            Ok(ts) => ts.as_str().to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn numbers_strings_and_plain_text_are_told_apart() {
        assert_eq!(normalized("1726667942"), "2024-09-18T13:59:02.000Z");
        assert_eq!(normalized("1726667942.5"), "2024-09-18T13:59:02.500Z");
        assert_eq!(normalized("\"1726668850124\""), "2024-09-18T14:14:10.124Z");
        assert_eq!(
            normalized("2024-09-18T13:59:02.123456Z"),
            "2024-09-18T13:59:02.123Z"
        );
        assert_eq!(
            normalized("\"2021-12-03 16:15:30+02:00\""),
            "2021-12-03T14:15:30.000Z"
        );
    }

    #[test]
    fn non_timestamps_keep_the_precise_reason() {
        assert_eq!(
            normalized("2023-02-30T00:00:00Z"),
            "error: February 30 does not exist in 2023 at byte 8"
        );
        assert!(normalized("true").starts_with("error: "));
        assert!(normalized("").starts_with("error: empty input"));
    }
}
