//! Records across a topic: a page of every partition merged by timestamp
//! (`GET /api/v1/topics/{name}/records`), a live tail as server-sent events (`.../stream`)
//! and a download as JSON Lines or CSV (`.../export`), all with the same query: where to
//! start (`from`), filters (`key`, `value`, `header`), one `partition`, and a `cursor` from an
//! earlier answer. The cluster does the reading ([`Cluster::search_records`],
//! [`Cluster::tail_records`]) through the same capped Fetch path as a partition page.
//!
//! Every read is bounded: a page by [`MAX_SEARCH_LIMIT`] records,
//! [`MAX_SCAN_BYTES`](freshet_services::cluster::MAX_SCAN_BYTES) and
//! [`SCAN_TIME`](freshet_services::cluster::SCAN_TIME); an export by [`MAX_EXPORT_RECORDS`], [`MAX_EXPORT_SCAN_BYTES`] and
//! [`MAX_EXPORT_TIME`]; streams by [`MAX_STREAMS`] at once and [`MAX_STREAM_DURATION`] each.
//! Reading needs Read on the topic (see [`crate::auth`]), as a partition page does; the
//! services' own topics can be read like any other.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use freshet_services::cluster::view::{Encoding, ScanStop};
use freshet_services::cluster::view::{RecordSearch, TopicRecord, TopicRecordPage};
use freshet_services::cluster::{Cluster, RecordTail, MAX_SEARCH_LIMIT};
use freshet_services::error::full_message;
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Path, Query};
use crate::state::{AppState, KafkaCluster};
use crate::topics::TopicPath;

/// Record streams open at once in this process; one more is a 503. Each holds a connection
/// to every leader of its topic and polls them.
pub const MAX_STREAMS: usize = 32;
/// How long one stream lasts; it then ends with an `end` event (a client reconnects to go on).
pub const MAX_STREAM_DURATION: Duration = Duration::from_secs(60 * 60);
/// How long a stream waits before polling again when nothing new arrived.
pub const STREAM_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often a quiet stream sends a comment, so proxies and clients see it is alive.
pub const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most records one export holds (and its default).
pub const MAX_EXPORT_RECORDS: usize = 100_000;
/// Bytes one export may read in all (counted as a page counts them), after which it ends.
pub const MAX_EXPORT_SCAN_BYTES: u64 = 1 << 30;
/// How long one export may read, after which it ends.
pub const MAX_EXPORT_TIME: Duration = Duration::from_secs(120);

/// `from` in the spec: `earliest`, `latest` or an RFC 3339 timestamp (from 1970 on: earlier
/// times read as 1970, since no record is older).
fn from_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["earliest", "latest"])),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .pattern(Some(r"^(19[7-9][0-9]|[2-9][0-9]{3})-"))
                .examples(["2024-09-18T14:14:10.124Z"]),
        )
        .into()
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_records))
        .routes(routes!(stream_records))
        .routes(routes!(export_records))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchRecordsQuery {
    /// Where to start: `latest` (the default) reads newest first from the end of every
    /// partition; `earliest` oldest first from the start; an RFC 3339 timestamp oldest first
    /// from each partition's first record at or after it (ListOffsets by timestamp). Ignored
    /// with a `cursor`, which carries its own order.
    #[param(schema_with = from_schema)]
    pub from: Option<String>,
    /// Only records whose key contains this text (its UTF-8 bytes, case-sensitive; bytes of
    /// a binary key are searched as they are). Empty: no filter.
    pub key: Option<String>,
    /// Only records whose value contains this text, as for `key`.
    pub value: Option<String>,
    /// `name:value`: only records with a header named exactly `name` whose value contains
    /// `value` (empty: any value). Split at the first colon.
    #[param(example = "source:api", pattern = "^[^:]+:")]
    pub header: Option<String>,
    /// Only this partition (400 when the topic has no such partition).
    #[param(minimum = 0)]
    pub partition: Option<i32>,
    /// Most records to return (default 50, 1 to 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `cursor` of an earlier answer: go on where it stopped, with no record repeated or
    /// missed. Pass the same filters.
    pub cursor: Option<String>,
}

impl SearchRecordsQuery {
    fn search(self) -> RecordSearch {
        RecordSearch {
            from: self.from,
            key: self.key,
            value: self.value,
            header: self.header,
            partition: self.partition,
            limit: self.limit,
            cursor: self.cursor,
        }
    }
}

/// Read records across a topic
///
/// Records of every partition (or one), merged by timestamp: newest first from the end
/// (`from=latest`, the default), or oldest first from the start or a timestamp. Filters keep
/// records whose key, value or named header contains a text. A page holds at most `limit`
/// records and stops early after reading 64 MiB or for 5 s (checked between rounds of reads,
/// so a page may go a little past them); `stopped_by` says which, `partitions` how far each
/// partition was read, and `cursor` goes on from there. Unreadable batches are stepped over
/// and listed per partition in `skipped`, as in a partition page. Keys, values and header
/// values are text when UTF-8 and base64 otherwise.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{name}/records",
    tag = "topics",
    params(TopicPath, SearchRecordsQuery),
    responses(
        (status = 200, description = "One page of records", body = TopicRecordPage),
        (status = 400, description = "Invalid topic name, `from`, `header`, `partition`, `limit` or `cursor`, an unknown query parameter, or a partition the topic does not have", body = ApiError,
         example = json!({"error": "limit 501 is out of range: ask for 1 to 500 records"})),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 503, description = "The cluster or a partition's leader is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn search_records(
    KafkaCluster(cluster): KafkaCluster,
    Path(name): Path<String>,
    Query(query): Query<SearchRecordsQuery>,
) -> Result<axum::Json<TopicRecordPage>, ApiError> {
    let page = cluster.search_records(&name, &query.search()).await?;
    Ok(axum::Json(page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamRecordsQuery {
    /// Where to start: `latest` (the default), the end of every partition, so only records
    /// written from now on arrive; `earliest` or an RFC 3339 timestamp to replay from there
    /// first.
    #[param(schema_with = from_schema)]
    pub from: Option<String>,
    /// As for reading records.
    pub key: Option<String>,
    /// As for reading records.
    pub value: Option<String>,
    /// As for reading records: `name:value`.
    #[param(example = "source:api", pattern = "^[^:]+:")]
    pub header: Option<String>,
    /// Only this partition.
    #[param(minimum = 0)]
    pub partition: Option<i32>,
    /// The `cursor` of an oldest-first read (`from=earliest` or a timestamp): start where it
    /// stopped.
    pub cursor: Option<String>,
}

/// Stream new records of a topic
///
/// A live tail as server-sent events (`text/event-stream`): one event per record, its data
/// the record as JSON as in a page, in timestamp order within each poll. A quiet stream
/// sends a `: keep-alive` comment every 15 s. The stream ends with an `end` event whose data
/// is `{"reason": "max_duration"}` after an hour, or `{"reason": "error", "error": "..."}`
/// when the topic is deleted or the cluster fails; it ends at once when the client goes
/// away. Partitions added after the stream opened are not read. At most 32 streams are open
/// at once per server.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{name}/records/stream",
    tag = "topics",
    params(TopicPath, StreamRecordsQuery),
    responses(
        (status = 200, description = "Server-sent events, one per record, then an `end` event", content_type = "text/event-stream", body = String,
         example = "data: {\"partition\":0,\"offset\":7,\"timestamp\":1726668850124,\"key\":\"k1\",\"value\":\"v\",\"key_encoding\":\"utf8\",\"value_encoding\":\"utf8\",\"headers\":[],\"timestamp_rfc3339\":\"2024-09-18T14:14:10.124Z\"}\n\n"),
        (status = 400, description = "Invalid topic name, `from`, `header`, `partition` or `cursor` (a newest-first cursor cannot start a stream), an unknown query parameter, or a partition the topic does not have", body = ApiError),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 503, description = "As many streams are open as the server allows (32), the cluster or a partition's leader is unreachable, or no cluster client runs in this process", body = ApiError,
         example = json!({"error": "32 record streams are open, the most this server serves at once; try again later"})),
    )
)]
pub async fn stream_records(
    KafkaCluster(cluster): KafkaCluster,
    Path(name): Path<String>,
    Query(query): Query<StreamRecordsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = StreamSlot::acquire().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{MAX_STREAMS} record streams are open, the most this server serves at once; \
                 try again later"
            ),
        )
    })?;
    let search = RecordSearch {
        from: query.from,
        key: query.key,
        value: query.value,
        header: query.header,
        partition: query.partition,
        limit: None,
        cursor: query.cursor,
    };
    let tail = cluster.tail_records(&name, &search).await?;
    let tailing = Tailing {
        tail,
        pending: VecDeque::new(),
        ends_at: Instant::now() + MAX_STREAM_DURATION,
        done: false,
        _slot: slot,
    };
    Ok(Sse::new(tailing.events()).keep_alive(
        KeepAlive::new()
            .interval(STREAM_KEEP_ALIVE)
            .text("keep-alive"),
    ))
}

/// Streams open now.
static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_STREAMS`] streams; dropping it (the stream ended or its client went away)
/// frees it.
#[derive(Debug)]
struct StreamSlot(());

impl StreamSlot {
    fn acquire() -> Option<StreamSlot> {
        OPEN_STREAMS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < MAX_STREAMS).then_some(open + 1)
            })
            .ok()
            .map(|_| StreamSlot(()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream's state: the tail, records polled and not sent yet, and when it ends.
#[derive(Debug)]
struct Tailing {
    tail: RecordTail,
    pending: VecDeque<TopicRecord>,
    ends_at: Instant,
    done: bool,
    _slot: StreamSlot,
}

/// The data of the `end` event.
#[derive(Debug, Serialize)]
struct StreamEnd {
    /// `max_duration` or `error`.
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Tailing {
    /// The events: each record as it arrives, then `end`. Dropped (with its connections and
    /// slot) when the client goes away.
    fn events(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut tailing| async move {
            if tailing.done {
                return None;
            }
            let event = tailing.next_event().await;
            Some((Ok(event), tailing))
        })
    }

    async fn next_event(&mut self) -> Event {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return json_event(&record);
            }
            if Instant::now() >= self.ends_at {
                return self.end("max_duration", None);
            }
            match tokio::time::timeout_at(self.ends_at, self.tail.poll()).await {
                Ok(Ok(records)) if records.is_empty() => {
                    let next = (Instant::now() + STREAM_POLL_INTERVAL).min(self.ends_at);
                    tokio::time::sleep_until(next).await;
                }
                Ok(Ok(records)) => self.pending.extend(records),
                Ok(Err(error)) => return self.end("error", Some(ApiError::from(error).error)),
                // The end came while polling: the next turn says so.
                Err(_elapsed) => {}
            }
        }
    }

    fn end(&mut self, reason: &'static str, error: Option<String>) -> Event {
        self.done = true;
        json_event(&StreamEnd { reason, error }).event("end")
    }
}

fn json_event(data: &impl Serialize) -> Event {
    // Plain data with string keys: serialising cannot fail.
    Event::default().data(serde_json::to_string(data).unwrap_or_default())
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// JSON Lines: one record per line, as in a page.
    #[default]
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportRecordsQuery {
    /// `jsonl` (the default) or `csv`. In CSV, a key, value or headers cell that a spreadsheet
    /// would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return)
    /// gets a leading `'`; JSON Lines carries the exact bytes.
    #[param(inline)]
    pub format: Option<ExportFormat>,
    /// As for reading records.
    #[param(schema_with = from_schema)]
    pub from: Option<String>,
    /// As for reading records.
    pub key: Option<String>,
    /// As for reading records.
    pub value: Option<String>,
    /// As for reading records: `name:value`.
    #[param(example = "source:api", pattern = "^[^:]+:")]
    pub header: Option<String>,
    /// Only this partition.
    #[param(minimum = 0)]
    pub partition: Option<i32>,
    /// Most records to export (default and most 100000).
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<usize>,
    /// The `cursor` of an earlier page: export from where it stopped.
    pub cursor: Option<String>,
}

/// Export records of a topic
///
/// The records a read with the same query would return, page after page, as a download:
/// JSON Lines (each line a record as in a page) or CSV (RFC 4180: a header row
/// `partition,offset,timestamp,timestamp_rfc3339,key,key_encoding,value,value_encoding,headers`,
/// CRLF line ends, fields with commas, quotes or line breaks quoted; a null key or value is an
/// empty field; `headers` is the JSON array of a page). An export ends after `limit` records
/// (at most 100000), when the read reaches the end, or after reading 1 GiB or for 2 minutes,
/// whichever comes first. Errors found before the first byte is sent are answered as JSON;
/// a failure later cuts the download short (the connection is closed without the end of the
/// chunked body).
#[utoipa::path(
    get,
    path = "/api/v1/topics/{name}/records/export",
    tag = "topics",
    params(TopicPath, ExportRecordsQuery),
    responses(
        (status = 200, description = "The records, as a download",
         content(
             (String = "application/x-ndjson"),
             (String = "text/csv")
         ),
         headers(("Content-Disposition" = String, description = "`attachment; filename=\"<topic>-records.jsonl\"` (or `.csv`)"))),
        (status = 400, description = "Invalid topic name, `format`, `from`, `header`, `partition`, `limit` or `cursor`, an unknown query parameter, or a partition the topic does not have", body = ApiError),
        (status = 404, description = "No such topic", body = ApiError),
        (status = 503, description = "The cluster or a partition's leader is unreachable, or no cluster client runs in this process", body = ApiError),
    )
)]
pub async fn export_records(
    KafkaCluster(cluster): KafkaCluster,
    Path(name): Path<String>,
    Query(query): Query<ExportRecordsQuery>,
) -> Result<Response, ApiError> {
    let limit = export_limit(query.limit)?;
    let format = query.format.unwrap_or_default();
    let mut search = RecordSearch {
        from: query.from,
        key: query.key,
        value: query.value,
        header: query.header,
        partition: query.partition,
        limit: Some(limit.min(MAX_SEARCH_LIMIT)),
        cursor: query.cursor,
    };
    // The first page before the answer starts, so that a bad query or a missing topic is
    // answered with its status.
    let first = cluster.search_records(&name, &search).await?;
    search.cursor = None;
    let (content_type, extension) = match format {
        ExportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    // The name passed the topic name rules ([a-zA-Z0-9._-]): safe in a quoted header value.
    let disposition = format!("attachment; filename=\"{name}-records.{extension}\"");
    let export = Export {
        cluster,
        topic: name,
        search,
        format,
        remaining: limit,
        bytes_read: 0,
        ends_at: Instant::now() + MAX_EXPORT_TIME,
        page: Some(first),
        started: false,
        done: false,
    };
    let mut response = Body::from_stream(export.chunks()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let disposition = HeaderValue::from_str(&disposition)
        .map_err(|_| ApiError::internal("the export's file name is not a valid header"))?;
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    Ok(response)
}

/// The records an export asks for, or the default (all it may hold).
fn export_limit(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(MAX_EXPORT_RECORDS),
        Some(limit @ 1..=MAX_EXPORT_RECORDS) => Ok(limit),
        Some(limit) => Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: export 1 to {MAX_EXPORT_RECORDS} records"
        ))),
    }
}

/// An export being written: page after page, each read when the previous one is sent.
#[derive(Debug)]
struct Export {
    cluster: Cluster,
    topic: String,
    /// The query of the next page (its cursor set from the previous page).
    search: RecordSearch,
    format: ExportFormat,
    remaining: usize,
    bytes_read: u64,
    ends_at: Instant,
    /// A page read and not written yet.
    page: Option<TopicRecordPage>,
    /// Whether anything (the CSV header) was written.
    started: bool,
    done: bool,
}

impl Export {
    fn chunks(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::unfold(self, |mut export| async move {
            if export.done {
                return None;
            }
            let chunk = export.next_chunk().await;
            if chunk.is_err() {
                export.done = true;
            }
            Some((chunk, export))
        })
    }

    async fn next_chunk(&mut self) -> Result<Bytes, std::io::Error> {
        let page = match self.page.take() {
            Some(page) => page,
            None => {
                self.search.limit = Some(self.remaining.min(MAX_SEARCH_LIMIT));
                self.cluster
                    .search_records(&self.topic, &self.search)
                    .await
                    .map_err(|e| {
                        let error = full_message(&e);
                        tracing::warn!(topic = %self.topic, %error, "an export ends early");
                        std::io::Error::other(error)
                    })?
            }
        };
        let mut chunk = String::new();
        if !self.started && self.format == ExportFormat::Csv {
            chunk.push_str(CSV_HEADER);
        }
        self.started = true;
        let records = page.records.len().min(self.remaining);
        for record in &page.records[..records] {
            match self.format {
                ExportFormat::Jsonl => {
                    chunk.push_str(&serde_json::to_string(record).unwrap_or_default());
                    chunk.push('\n');
                }
                ExportFormat::Csv => push_csv_row(&mut chunk, record),
            }
        }
        self.remaining -= records;
        self.bytes_read = self.bytes_read.saturating_add(page.bytes_read);
        let finished = page.stopped_by == ScanStop::End;
        self.search.cursor = page.cursor;
        self.done = self.remaining == 0
            || finished
            || self.search.cursor.is_none()
            || self.bytes_read >= MAX_EXPORT_SCAN_BYTES
            || Instant::now() >= self.ends_at;
        Ok(Bytes::from(chunk))
    }
}

/// The header row of a CSV export.
pub const CSV_HEADER: &str = "partition,offset,timestamp,timestamp_rfc3339,key,key_encoding,\
                              value,value_encoding,headers\r\n";

fn push_csv_row(out: &mut String, record: &TopicRecord) {
    let inner = &record.record;
    let encoding = |encoding| match encoding {
        Encoding::Utf8 => "utf8",
        Encoding::Base64 => "base64",
    };
    let headers = serde_json::to_string(&inner.headers).unwrap_or_default();
    let fields = [
        record.partition.to_string(),
        inner.offset.to_string(),
        inner.timestamp.map(|t| t.to_string()).unwrap_or_default(),
        record.timestamp_rfc3339.clone().unwrap_or_default(),
        inert(inner.key.clone().unwrap_or_default()),
        encoding(inner.key_encoding).to_string(),
        inert(inner.value.clone().unwrap_or_default()),
        encoding(inner.value_encoding).to_string(),
        inert(headers),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(out, field);
    }
    out.push_str("\r\n");
}

/// A field of record data as a spreadsheet will not run it: one starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return would be taken for a formula (CSV injection: a device
/// decides what its events say), so it gets a leading `'`, which spreadsheets show as text.
/// JSON Lines exports carry the exact bytes.
fn inert(field: String) -> String {
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field
    }
}

/// One field, quoted (quotes doubled) when it holds a comma, a quote or a line break.
fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        let mut out = String::new();
        for field in ["plain", "a,b", "say \"hi\"", "two\r\nlines", "", "x\ny"] {
            push_csv_field(&mut out, field);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\r\nlines\"||\"x\ny\"|"
        );
    }

    #[test]
    fn record_data_a_spreadsheet_would_run_is_made_text() {
        for formula in ["=1+2", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(inert(formula.to_string()), format!("'{formula}"));
        }
        for plain in ["a=b", "10.0.0.1", "", "'quoted"] {
            assert_eq!(inert(plain.to_string()), plain);
        }
    }

    #[test]
    fn stream_slots_are_bounded_and_freed_when_dropped() {
        let before = OPEN_STREAMS.load(Ordering::Acquire);
        let slots: Vec<StreamSlot> = std::iter::from_fn(StreamSlot::acquire).collect();
        assert_eq!(slots.len() + before, MAX_STREAMS);
        assert!(StreamSlot::acquire().is_none());
        drop(slots);
        let again = StreamSlot::acquire();
        assert!(again.is_some());
    }

    #[test]
    fn export_limits_default_to_the_most() {
        assert_eq!(export_limit(None).ok(), Some(MAX_EXPORT_RECORDS));
        assert_eq!(export_limit(Some(7)).ok(), Some(7));
        for bad in [0, MAX_EXPORT_RECORDS + 1] {
            assert!(export_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
