//! Records across a topic: a page of every partition's records merged by timestamp, newest or
//! oldest first, filtered by key, value or header, resumable with a cursor; and a live tail of
//! new records.
//!
//! Reading goes through the same raw Fetch path as a partition page
//! ([`fetch`](super::fetch)): batches are read with the decompression cap, unreadable ones
//! are stepped over and reported, aborted transactions and control records are left out, and
//! records are shown with the partition page's view ([`consumed`]). One connection per leader
//! serves all the partitions it leads.
//!
//! # A page
//!
//! Each partition is read in windows: forwards from its start (oldest first), or backwards
//! from its end (newest first: a window of offsets below the last one read, read forwards and
//! reversed). Only matching records are kept. The next record of the page is the best of
//! each partition's next matching record (smallest timestamp oldest first, largest newest
//! first; ties by partition), so the page is a merge of the partitions in timestamp order;
//! a partition with no record found yet is read again (a window that found nothing makes the
//! next one larger, up to [`MAX_WINDOW`] offsets) before anything is returned.
//!
//! A page holds at most `limit` records and stops early at [`MAX_SCAN_BYTES`] read or after
//! [`SCAN_TIME`]. The bounds are checked between rounds of reads (one window of every
//! partition still looking for its next match), never inside one, so a page may go past
//! them by one round and every page covers something: a page that returns nothing still
//! moves the cursor past the records it found not to match.
//!
//! # The cursor
//!
//! base64url (no padding) of a small JSON object: the topic, the order and, for every
//! partition read, the offset the next page starts from (oldest first: the first offset not
//! covered; newest first: one past the highest offset not covered). Records found but not
//! returned are read again by the next page, which therefore continues the same merge: no
//! record is repeated or missed as long as the topic is not deleted or trimmed under it.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::batches::Record;
use super::fetch::{PageWalk, PartitionFetcher, FETCH_BYTES};
use super::records::{consumed, unavailable};
use super::topics::TopicLayout;
use super::view::{
    PartitionScan, RecordOrder, RecordSearch, ScanStop, SkippedBatch, TopicRecord, TopicRecordPage,
};
use super::{validate_partition, validate_topic_name, Cluster, ClusterError, REQUEST_TIMEOUT};

/// Records in a page of a topic-wide read when the request names no limit.
pub const DEFAULT_SEARCH_LIMIT: usize = 50;
/// Most records one page of a topic-wide read may hold.
pub const MAX_SEARCH_LIMIT: usize = 500;
/// Bytes one page may read before it stops (see [`TopicRecordPage::bytes_read`]): about 64
/// partition pages, enough to look through tens of thousands of small records for a match.
pub const MAX_SCAN_BYTES: u64 = 64 << 20;
/// How long one page may read before it stops: well within an HTTP client's patience.
pub const SCAN_TIME: Duration = Duration::from_secs(5);
/// Records one partition gives a tail per poll, at most (one Fetch of about 1 MiB each).
pub const MAX_TAIL_RECORDS_PER_POLL: usize = 500;
/// Offsets of a partition's first window. A window whose records decompress to more than
/// [`WINDOW_BYTES`] makes the next one four times smaller (down to 1); one under it that
/// found no match, four times larger (up to [`MAX_WINDOW`]).
const FIRST_WINDOW: i64 = 32;
/// Most offsets one window covers.
pub const MAX_WINDOW: i64 = 4096;
/// Bytes of records a window should hold at most; see [`FIRST_WINDOW`].
const WINDOW_BYTES: u64 = 1 << 20;
/// Bytes of matching records a partition keeps found and not returned, beyond its next one:
/// more are dropped and read again when needed, so that a page of a topic with many
/// partitions holds about a record per partition, not a window each.
const FOUND_BYTES_PER_PARTITION: u64 = 1 << 20;
/// The cursor format written and read.
const CURSOR_VERSION: u8 = 1;
/// Longest cursor taken: room for every partition of the largest topic the API creates.
const MAX_CURSOR_LEN: usize = 64 * 1024;

impl Cluster {
    /// One page of records across the topic's partitions (or the one `search.partition`
    /// names), filtered and merged by timestamp; see the module doc. Parameters are checked
    /// before the cluster is asked (`InvalidParams`); an unknown topic is `NotFound`, an
    /// unknown partition `InvalidParams`.
    pub async fn search_records(
        &self,
        topic: &str,
        search: &RecordSearch,
    ) -> Result<TopicRecordPage, ClusterError> {
        let request = SearchRequest::parse(topic, search)?;
        let limit = search_limit(search.limit)?;
        let order = match &request.cursor {
            Some(cursor) => cursor.o,
            None if request.start == Start::Latest => RecordOrder::NewestFirst,
            None => RecordOrder::OldestFirst,
        };
        let layout = self.topic_layout(topic).await?;
        let partitions = self.plan(topic, &layout, &request).await?;
        let mut scan = Scan {
            cluster: self.clone(),
            order,
            filter: request.filter,
            limit,
            partitions: partitions
                .into_iter()
                .map(|start| PartitionRead::new(start, order))
                .collect(),
            leaders: Leaders::new(topic),
            found: Vec::new(),
            bytes_read: 0,
        };
        let mut stopped_by = scan.run().await?;
        let reached_end = scan.partitions.iter().all(PartitionRead::reached_end);
        if stopped_by == ScanStop::Limit && reached_end {
            stopped_by = ScanStop::End;
        }
        let cursor = match order {
            RecordOrder::NewestFirst if reached_end => None,
            _ => Some(
                Cursor {
                    v: CURSOR_VERSION,
                    t: topic.to_string(),
                    o: order,
                    p: scan
                        .partitions
                        .iter()
                        .map(|p| (p.id, p.resume_at(order)))
                        .collect(),
                }
                .encode(),
            ),
        };
        Ok(TopicRecordPage {
            topic: topic.to_string(),
            order,
            partitions: scan.partitions.iter().map(|p| p.report(order)).collect(),
            records: scan.found,
            stopped_by,
            bytes_read: scan.bytes_read,
            cursor,
        })
    }

    /// A live tail of the topic (or one partition): from the end of each partition, or from
    /// `search.from` or an oldest-first `search.cursor`, with the filters of `search`
    /// (`limit` is not used). The caller polls it ([`RecordTail::poll`]).
    pub async fn tail_records(
        &self,
        topic: &str,
        search: &RecordSearch,
    ) -> Result<RecordTail, ClusterError> {
        let request = SearchRequest::parse(topic, search)?;
        if request
            .cursor
            .as_ref()
            .is_some_and(|cursor| cursor.o == RecordOrder::NewestFirst)
        {
            return Err(ClusterError::Invalid(
                "cursor reads newest first; a stream goes forwards: pass a cursor of an \
                 oldest-first read (from=earliest or a timestamp)"
                    .into(),
            ));
        }
        let layout = self.topic_layout(topic).await?;
        let partitions = self.plan(topic, &layout, &request).await?;
        Ok(RecordTail {
            cluster: self.clone(),
            topic: topic.to_string(),
            filter: request.filter,
            partitions: partitions
                .into_iter()
                .map(|start| TailPartition {
                    id: start.id,
                    leader: Some(start.leader),
                    position: start.position,
                })
                .collect(),
            leaders: Leaders::new(topic),
            refresh: false,
        })
    }

    /// Each partition to read, with its leader, watermarks and where the read starts.
    async fn plan(
        &self,
        topic: &str,
        layout: &TopicLayout,
        request: &SearchRequest,
    ) -> Result<Vec<PartitionStart>, ClusterError> {
        let count = layout.partitions.len();
        let missing = |partition: i32, what: &str| {
            ClusterError::NotFound(format!(
                "{what} partition {partition}, which topic {topic:?} does not have (it has \
                 {count})"
            ))
        };
        let wanted: Vec<(i32, Option<i64>)> = match (&request.cursor, request.partition) {
            (Some(cursor), Some(partition)) => {
                let position = cursor
                    .p
                    .iter()
                    .find(|(p, _)| *p == partition)
                    .map(|(_, position)| *position)
                    .ok_or_else(|| {
                        ClusterError::NotFound(format!(
                            "the cursor does not cover partition {partition}: pass the \
                             partition of the read it comes from"
                        ))
                    })?;
                vec![(partition, Some(position))]
            }
            (Some(cursor), None) => cursor.p.iter().map(|(p, o)| (*p, Some(*o))).collect(),
            (None, Some(partition)) => vec![(partition, None)],
            (None, None) => layout.partitions.iter().map(|p| (p.id, None)).collect(),
        };
        for (partition, _) in &wanted {
            if !layout.has_partition(*partition) {
                let what = if request.cursor.is_some() {
                    "the cursor names"
                } else {
                    "partition names"
                };
                return Err(missing(*partition, what));
            }
        }
        let leaders = wanted
            .iter()
            .map(|(partition, _)| {
                layout
                    .leader_address(*partition)
                    .map(str::to_string)
                    .ok_or_else(|| unavailable(topic, *partition, "it has no leader"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i32> = wanted.iter().map(|(partition, _)| *partition).collect();
        let watermarks = {
            let (topic, ids) = (topic.to_string(), ids.clone());
            self.blocking(move |cluster| {
                ids.iter()
                    .map(|partition| cluster.watermarks(&topic, *partition))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?
        };
        let at_time = match (request.start, &request.cursor) {
            (Start::At(timestamp), None) => {
                let topic = topic.to_string();
                Some(
                    self.blocking(move |cluster| cluster.offsets_at(&topic, &ids, timestamp))
                        .await?,
                )
            }
            _ => None,
        };
        let starts = wanted
            .into_iter()
            .zip(leaders)
            .zip(watermarks)
            .map(|(((id, from_cursor), leader), (earliest, latest))| {
                let position = match (from_cursor, request.start, &at_time) {
                    (Some(position), _, _) => position,
                    (None, Start::Earliest, _) => earliest,
                    (None, Start::Latest, _) => latest,
                    (None, Start::At(_), Some(found)) => {
                        found.get(&id).copied().flatten().unwrap_or(latest)
                    }
                    (None, Start::At(_), None) => latest,
                };
                PartitionStart {
                    id,
                    leader,
                    earliest,
                    latest,
                    // A cursor from before retention or a recreation of the topic starts
                    // within what the partition holds now.
                    position: position.clamp(earliest, latest.max(earliest)),
                }
            })
            .collect();
        Ok(starts)
    }

    /// The first offset at or after `timestamp` of each partition (ListOffsets by
    /// timestamp); `None` where no record is that late. Blocks.
    fn offsets_at(
        &self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<HashMap<i32, Option<i64>>, ClusterError> {
        let mut wanted = TopicPartitionList::new();
        for partition in partitions {
            wanted.add_partition_offset(topic, *partition, Offset::Offset(timestamp))?;
        }
        let answer = self
            .inner
            .metadata
            .offsets_for_times(wanted, REQUEST_TIMEOUT)?;
        answer
            .elements()
            .iter()
            .map(|element| {
                element.error()?;
                let offset = match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => Some(offset),
                    _ => None,
                };
                Ok((element.partition(), offset))
            })
            .collect()
    }
}

/// The page size a topic-wide read asks for, or the default.
pub fn search_limit(requested: Option<usize>) -> Result<usize, ClusterError> {
    match requested {
        None => Ok(DEFAULT_SEARCH_LIMIT),
        Some(limit @ 1..=MAX_SEARCH_LIMIT) => Ok(limit),
        Some(limit) => Err(ClusterError::Invalid(format!(
            "limit {limit} is out of range: ask for 1 to {MAX_SEARCH_LIMIT} records"
        ))),
    }
}

/// A [`RecordSearch`] checked: everything but the limit, which a page and an export bound
/// differently.
#[derive(Debug)]
struct SearchRequest {
    start: Start,
    filter: RecordFilter,
    partition: Option<i32>,
    cursor: Option<Cursor>,
}

impl SearchRequest {
    fn parse(topic: &str, search: &RecordSearch) -> Result<SearchRequest, ClusterError> {
        validate_topic_name(topic)?;
        if let Some(partition) = search.partition {
            validate_partition(partition)?;
        }
        Ok(SearchRequest {
            start: Start::parse(search.from.as_deref())?,
            filter: RecordFilter::parse(search)?,
            partition: search.partition,
            // An empty cursor is none, as an empty filter is no filter.
            cursor: search
                .cursor
                .as_deref()
                .filter(|text| !text.is_empty())
                .map(|text| Cursor::decode(text, topic))
                .transpose()?,
        })
    }
}

/// Where a read starts (`from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    /// Unix milliseconds, at least 0.
    At(i64),
}

impl Start {
    fn parse(from: Option<&str>) -> Result<Start, ClusterError> {
        let text = match from {
            None | Some("latest") => return Ok(Start::Latest),
            Some("earliest") => return Ok(Start::Earliest),
            Some(text) => text,
        };
        let refused = |reason: String| {
            ClusterError::Invalid(format!(
                "from {text:?} is not earliest, latest or an RFC 3339 timestamp \
                 (2024-09-18T14:14:10.124Z): {reason}"
            ))
        };
        // Only the ISO form: an epoch number would read like an offset.
        if text.as_bytes().get(4) != Some(&b'-') {
            return Err(refused("expected YYYY-MM-DDTHH:MM:SS with a zone".into()));
        }
        let at = freshet_timestamp::normalize(text).map_err(|e| refused(e.to_string()))?;
        // ListOffsets reads negative timestamps as its special values; every record is at or
        // after 1970 anyway.
        Ok(Start::At(at.unix_millis().max(0)))
    }
}

/// The filters of a read; a record must match all of them. Each looks for bytes (the UTF-8
/// of the text given) in the record's bytes, so text in a binary key is found too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RecordFilter {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// Header name (exact) and a substring of its value.
    header: Option<(String, Vec<u8>)>,
}

impl RecordFilter {
    fn parse(search: &RecordSearch) -> Result<RecordFilter, ClusterError> {
        let bytes = |text: &Option<String>| {
            text.as_deref()
                .filter(|text| !text.is_empty())
                .map(|text| text.as_bytes().to_vec())
        };
        let header = match search.header.as_deref() {
            None => None,
            Some(text) => match text.split_once(':') {
                Some((name, value)) if !name.is_empty() => {
                    Some((name.to_string(), value.as_bytes().to_vec()))
                }
                _ => {
                    return Err(ClusterError::Invalid(format!(
                        "header {text:?} is not name:value (a header name, a colon, then \
                         text its value contains, which may be empty)"
                    )))
                }
            },
        };
        Ok(RecordFilter {
            key: bytes(&search.key),
            value: bytes(&search.value),
            header,
        })
    }

    fn matches(&self, record: &Record) -> bool {
        let holds = |wanted: &Option<Vec<u8>>, bytes: &Option<Vec<u8>>| match wanted {
            None => true,
            Some(wanted) => bytes
                .as_deref()
                .is_some_and(|bytes| contains(bytes, wanted)),
        };
        holds(&self.key, &record.key)
            && holds(&self.value, &record.value)
            && self.header.as_ref().is_none_or(|(name, wanted)| {
                record.headers.iter().any(|(key, value)| {
                    key == name
                        && (wanted.is_empty()
                            || value
                                .as_deref()
                                .is_some_and(|value| contains(value, wanted)))
                })
            })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// What a cursor holds (short names: it travels in URLs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    /// [`CURSOR_VERSION`].
    v: u8,
    /// The topic.
    t: String,
    o: RecordOrder,
    /// `(partition, where the next page starts)`, by partition.
    p: Vec<(i32, i64)>,
}

impl Cursor {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self)
            .unwrap_or_else(|_| unreachable!("a cursor is plain data, always serialisable"));
        URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(text: &str, topic: &str) -> Result<Cursor, ClusterError> {
        // Any text may be a cursor as far as the query's schema goes; one no answer gave out
        // names no page, hence not found (as an offset past the end of a partition is).
        let refused = |reason: &str| {
            ClusterError::NotFound(format!(
                "cursor is not one this API gave out for topic {topic:?}: {reason}; pass the \
                 cursor of an earlier answer unchanged"
            ))
        };
        if text.len() > MAX_CURSOR_LEN {
            return Err(refused("it is too long"));
        }
        let json = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| refused("it is not base64url"))?;
        let cursor: Cursor =
            serde_json::from_slice(&json).map_err(|_| refused("its content is not a cursor"))?;
        if cursor.v != CURSOR_VERSION {
            return Err(refused("its version is unknown"));
        }
        if cursor.t != topic {
            return Err(refused(&format!("it is for topic {:?}", cursor.t)));
        }
        let mut partitions: Vec<i32> = cursor.p.iter().map(|(p, _)| *p).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let well_formed = !cursor.p.is_empty()
            && partitions.len() == cursor.p.len()
            && cursor.p.iter().all(|(p, o)| *p >= 0 && *o >= 0);
        if !well_formed {
            return Err(refused("its partitions or offsets are invalid"));
        }
        Ok(cursor)
    }
}

/// Where one partition's read starts.
#[derive(Debug, Clone)]
struct PartitionStart {
    id: i32,
    leader: String,
    earliest: i64,
    latest: i64,
    position: i64,
}

/// One partition of a page being read.
#[derive(Debug)]
struct PartitionRead {
    id: i32,
    leader: String,
    earliest: i64,
    latest: i64,
    /// Where the page started in this partition.
    start: i64,
    /// Oldest first: the next offset to read. Newest first: everything at or above it was
    /// read; the next window ends just below it.
    frontier: i64,
    /// Matching records read and not returned yet, the next one first.
    found: VecDeque<Record>,
    /// Nothing is left to read: newest first, down to the earliest offset; oldest first, up
    /// to the latest (or the last record readable now).
    exhausted: bool,
    /// Offsets of the next window.
    window: i64,
    skipped: Vec<SkippedBatch>,
}

impl PartitionRead {
    fn new(start: PartitionStart, order: RecordOrder) -> PartitionRead {
        let exhausted = match order {
            RecordOrder::OldestFirst => start.position >= start.latest,
            RecordOrder::NewestFirst => start.position <= start.earliest,
        };
        PartitionRead {
            id: start.id,
            leader: start.leader,
            earliest: start.earliest,
            latest: start.latest,
            start: start.position,
            frontier: start.position,
            found: VecDeque::new(),
            exhausted,
            window: FIRST_WINDOW,
            skipped: Vec::new(),
        }
    }

    fn needs_read(&self) -> bool {
        self.found.is_empty() && !self.exhausted
    }

    fn reached_end(&self) -> bool {
        self.found.is_empty() && self.exhausted
    }

    /// Where the next page starts: at the first record found and not returned, else where
    /// reading stopped.
    fn resume_at(&self, order: RecordOrder) -> i64 {
        match (order, self.found.front()) {
            (RecordOrder::OldestFirst, Some(next)) => next.offset,
            (RecordOrder::NewestFirst, Some(next)) => next.offset.saturating_add(1),
            (_, None) => self.frontier,
        }
    }

    fn report(&self, order: RecordOrder) -> PartitionScan {
        let resume = self.resume_at(order);
        let (scanned_from, scanned_to) = match order {
            RecordOrder::OldestFirst => (self.start, resume),
            RecordOrder::NewestFirst => (resume, self.start),
        };
        let mut skipped: Vec<SkippedBatch> = self
            .skipped
            .iter()
            .filter(|batch| batch.from_offset < scanned_to && batch.to_offset >= scanned_from)
            .cloned()
            .collect();
        skipped.sort_by_key(|batch| batch.from_offset);
        PartitionScan {
            partition: self.id,
            earliest_offset: self.earliest,
            latest_offset: self.latest,
            scanned_from,
            scanned_to,
            reached_end: self.reached_end(),
            skipped,
        }
    }

    /// Takes one window: its matching records (at most `room` of them, and about
    /// [`FOUND_BYTES_PER_PARTITION`]), its skipped batches (cut to the window) and how far it
    /// got; and sizes the next window.
    fn take_window(
        &mut self,
        order: RecordOrder,
        filter: &RecordFilter,
        window: WindowRead,
        room: usize,
    ) {
        let WindowRead {
            from,
            to,
            walk,
            stalled,
            bytes,
        } = window;
        let before = self.found.len();
        let reached = walk.position;
        let matching = walk.records.into_iter().filter(|r| filter.matches(r));
        match order {
            RecordOrder::OldestFirst => {
                self.found.extend(matching);
                self.frontier = reached.max(self.frontier);
                // The walk stopped short of the end: nothing more is readable now (records
                // of open transactions).
                self.exhausted = reached >= self.latest || stalled;
            }
            RecordOrder::NewestFirst => {
                let mut matching: Vec<Record> = matching.collect();
                matching.reverse();
                self.found.extend(matching);
                // Whatever the walk did not reach in the window is unreadable now (above the
                // last stable offset); the window is covered either way.
                self.frontier = from;
                self.exhausted = from <= self.earliest;
            }
        }
        let last = to.saturating_sub(1);
        self.skipped
            .extend(walk.skipped.into_iter().filter_map(|mut batch| {
                batch.from_offset = batch.from_offset.max(from);
                batch.to_offset = batch.to_offset.min(last);
                (batch.from_offset <= batch.to_offset).then_some(batch)
            }));
        if bytes > WINDOW_BYTES {
            self.window = (self.window / 4).max(1);
        } else if self.found.len() == before {
            self.window = self.window.saturating_mul(4).min(MAX_WINDOW);
        }
        self.keep_found(order, room);
    }

    /// Keeps at most `room` found records and, beyond the first, about
    /// [`FOUND_BYTES_PER_PARTITION`]; the rest are left unread: the partition is covered
    /// only up to the first record dropped.
    fn keep_found(&mut self, order: RecordOrder, room: usize) {
        let mut bytes = 0u64;
        let first_dropped = self.found.iter().enumerate().position(|(i, record)| {
            bytes = bytes.saturating_add(record_bytes(record));
            i >= room.max(1) || (i > 0 && bytes > FOUND_BYTES_PER_PARTITION)
        });
        let Some(first_dropped) = first_dropped else {
            return;
        };
        let offset = self.found[first_dropped].offset;
        self.found.truncate(first_dropped);
        self.exhausted = false;
        match order {
            RecordOrder::OldestFirst => {
                self.frontier = offset;
                self.skipped.retain(|batch| batch.from_offset < offset);
            }
            RecordOrder::NewestFirst => {
                self.frontier = offset.saturating_add(1);
                self.skipped.retain(|batch| batch.to_offset > offset);
            }
        }
    }
}

/// One window read of a partition: offsets `from` to `to` (exclusive), the walk over them,
/// whether it stopped short (nothing more readable now) and the bytes its records hold.
#[derive(Debug)]
struct WindowRead {
    from: i64,
    to: i64,
    walk: PageWalk,
    stalled: bool,
    bytes: u64,
}

/// A page being read.
struct Scan {
    cluster: Cluster,
    order: RecordOrder,
    filter: RecordFilter,
    limit: usize,
    partitions: Vec<PartitionRead>,
    leaders: Leaders,
    /// Returned so far, in order.
    found: Vec<TopicRecord>,
    bytes_read: u64,
}

impl Scan {
    async fn run(&mut self) -> Result<ScanStop, ClusterError> {
        let deadline = Instant::now() + SCAN_TIME;
        let mut rounds = 0u32;
        loop {
            if self.found.len() >= self.limit {
                return Ok(ScanStop::Limit);
            }
            let needing: Vec<usize> = (0..self.partitions.len())
                .filter(|i| self.partitions[*i].needs_read())
                .collect();
            if needing.is_empty() {
                match next_index(self.order, &self.partitions) {
                    Some(index) => self.found.push(take_next(&mut self.partitions[index])),
                    None => return Ok(ScanStop::End),
                }
                continue;
            }
            if rounds > 0 {
                if self.bytes_read >= MAX_SCAN_BYTES {
                    return Ok(ScanStop::Bytes);
                }
                if Instant::now() >= deadline {
                    return Ok(ScanStop::Time);
                }
            }
            rounds += 1;
            for index in needing {
                self.read_window(index).await?;
            }
        }
    }

    /// Reads the partition's next window and keeps its matching records.
    async fn read_window(&mut self, index: usize) -> Result<(), ClusterError> {
        let partition = &self.partitions[index];
        let (id, leader) = (partition.id, partition.leader.clone());
        let (from, to, limit) = match self.order {
            RecordOrder::OldestFirst => {
                let limit = usize::try_from(partition.window).unwrap_or(usize::MAX);
                (partition.frontier, partition.latest, limit)
            }
            RecordOrder::NewestFirst => {
                let from = partition
                    .frontier
                    .saturating_sub(partition.window)
                    .max(partition.earliest);
                (from, partition.frontier, usize::MAX)
            }
        };
        let walk = PageWalk::new(from, to, limit);
        let (walk, fetched_bytes) = self
            .leaders
            .read(&self.cluster, &leader, id, walk, false)
            .await
            .map_err(|reason| unavailable(&self.leaders.topic, id, &reason))?;
        let decoded: u64 = walk.records.iter().map(record_bytes).sum();
        self.bytes_read = self.bytes_read.saturating_add(fetched_bytes.max(decoded));
        let window = WindowRead {
            from,
            to,
            stalled: !walk.is_done(),
            walk,
            bytes: decoded,
        };
        let room = self.limit.saturating_sub(self.found.len());
        self.partitions[index].take_window(self.order, &self.filter, window, room);
        Ok(())
    }
}

/// The partition whose next found record comes next in the merge; `None` when none has a
/// record found and not returned.
fn next_index(order: RecordOrder, partitions: &[PartitionRead]) -> Option<usize> {
    let heads = partitions
        .iter()
        .enumerate()
        .filter_map(|(index, p)| p.found.front().map(|r| (index, p.id, sort_time(r))));
    match order {
        RecordOrder::OldestFirst => heads.min_by_key(|(_, id, time)| (*time, *id)),
        RecordOrder::NewestFirst => heads.min_by_key(|(_, id, time)| (Reverse(*time), *id)),
    }
    .map(|(index, _, _)| index)
}

/// The partition's next found record, which [`next_index`] chose.
fn take_next(partition: &mut PartitionRead) -> TopicRecord {
    let record = partition
        .found
        .pop_front()
        .unwrap_or_else(|| unreachable!("next_index picks a partition with a record found"));
    topic_record(partition.id, record)
}

/// A record's place in the merge: its timestamp, or -1 (Kafka's "none") without one.
fn sort_time(record: &Record) -> i64 {
    record.timestamp.unwrap_or(-1)
}

/// The bytes a record holds: key, value, header names and values.
fn record_bytes(record: &Record) -> u64 {
    let length = |bytes: &Option<Vec<u8>>| bytes.as_ref().map_or(0, Vec::len);
    let headers: usize = record
        .headers
        .iter()
        .map(|(name, value)| name.len() + length(value))
        .sum();
    (length(&record.key) + length(&record.value) + headers) as u64
}

fn topic_record(partition: i32, record: Record) -> TopicRecord {
    let timestamp_rfc3339 = record
        .timestamp
        .and_then(freshet_timestamp::NormalizedTs::from_unix_millis)
        .map(|at| at.as_str().to_string());
    TopicRecord {
        partition,
        record: consumed(record),
        timestamp_rfc3339,
    }
}

/// Connections to a topic's partition leaders, one per leader, opened when first needed.
#[derive(Debug)]
struct Leaders {
    topic: String,
    connections: HashMap<String, PartitionFetcher>,
}

impl Leaders {
    fn new(topic: &str) -> Leaders {
        Leaders {
            topic: topic.to_string(),
            connections: HashMap::new(),
        }
    }

    /// Walks `partition` from the walk's position until the walk is done, the partition has
    /// nothing more now, or (with `one_fetch`) after one Fetch. Returns the walk and the
    /// bytes fetched. A failure closes the leader's connection (the next read opens another).
    async fn read(
        &mut self,
        cluster: &Cluster,
        leader: &str,
        partition: i32,
        mut walk: PageWalk,
        one_fetch: bool,
    ) -> Result<(PageWalk, u64), String> {
        let mut fetcher = match self.connections.remove(leader) {
            Some(fetcher) => fetcher,
            None => {
                PartitionFetcher::open(
                    leader,
                    cluster.kafka(),
                    &self.topic,
                    partition,
                    REQUEST_TIMEOUT,
                )
                .await?
            }
        };
        let mut fetched_bytes = 0u64;
        while !walk.is_done() {
            let fetched = fetcher
                .fetch_partition(partition, walk.position, FETCH_BYTES)
                .await?;
            fetched_bytes = fetched_bytes.saturating_add(fetched.records.len() as u64);
            // Reading a batch is CPU work (up to the decompression cap): off the runtime.
            let (taken, moved) = tokio::task::spawn_blocking(move || {
                let moved = walk.take(&fetched);
                (walk, moved)
            })
            .await
            .map_err(|e| format!("reading batches failed: {e}"))?;
            walk = taken;
            if !moved || one_fetch {
                break;
            }
        }
        self.connections.insert(leader.to_string(), fetcher);
        Ok((walk, fetched_bytes))
    }
}

/// A live tail of a topic's partitions ([`Cluster::tail_records`]). Dropping it closes its
/// connections.
#[derive(Debug)]
pub struct RecordTail {
    cluster: Cluster,
    topic: String,
    filter: RecordFilter,
    partitions: Vec<TailPartition>,
    leaders: Leaders,
    /// A read failed: look the leaders and watermarks up again before the next poll.
    refresh: bool,
}

#[derive(Debug)]
struct TailPartition {
    id: i32,
    /// `None` while the partition has no leader.
    leader: Option<String>,
    /// The next offset to read.
    position: i64,
}

impl RecordTail {
    /// The matching records written since the last poll: one Fetch of each partition (at
    /// most [`MAX_TAIL_RECORDS_PER_POLL`] records each), sorted by timestamp, then partition
    /// and offset. Empty when nothing new arrived; the caller waits before polling again.
    ///
    /// A partition that cannot be read is skipped this time and its leader looked up again
    /// before the next poll. The topic gone is `NotFound`; the cluster failing while the
    /// leaders are looked up again is its error. Unreadable batches are stepped over.
    pub async fn poll(&mut self) -> Result<Vec<TopicRecord>, ClusterError> {
        if self.refresh {
            self.refresh_leaders().await?;
        }
        let mut found: Vec<(i32, Record)> = Vec::new();
        for partition in &mut self.partitions {
            let Some(leader) = partition.leader.clone() else {
                self.refresh = true;
                continue;
            };
            let walk = PageWalk::new(partition.position, i64::MAX, MAX_TAIL_RECORDS_PER_POLL);
            match self
                .leaders
                .read(&self.cluster, &leader, partition.id, walk, true)
                .await
            {
                Ok((walk, _)) => {
                    partition.position = walk.position;
                    let matching = walk.records.into_iter().filter(|r| self.filter.matches(r));
                    found.extend(matching.map(|record| (partition.id, record)));
                }
                Err(reason) => {
                    tracing::info!(
                        topic = %self.topic,
                        partition = partition.id,
                        %reason,
                        "a tail could not read a partition; looking its leader up again"
                    );
                    self.refresh = true;
                }
            }
        }
        found.sort_by_key(|(partition, record)| (sort_time(record), *partition, record.offset));
        Ok(found
            .into_iter()
            .map(|(partition, record)| topic_record(partition, record))
            .collect())
    }

    /// Looks up every partition's leader again, and moves a position the partition no
    /// longer holds (retention removed it, or the topic was recreated) within its offsets.
    async fn refresh_leaders(&mut self) -> Result<(), ClusterError> {
        let layout = self.cluster.topic_layout(&self.topic).await?;
        let ids: Vec<i32> = self.partitions.iter().map(|p| p.id).collect();
        let watermarks = {
            let topic = self.topic.clone();
            self.cluster
                .blocking(move |cluster| {
                    Ok(ids
                        .iter()
                        .map(|partition| cluster.watermarks(&topic, *partition).ok())
                        .collect::<Vec<_>>())
                })
                .await?
        };
        for (partition, watermarks) in self.partitions.iter_mut().zip(watermarks) {
            partition.leader = layout.leader_address(partition.id).map(str::to_string);
            if let Some((earliest, latest)) = watermarks {
                partition.position = partition.position.clamp(earliest, latest.max(earliest));
            }
        }
        self.refresh = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, timestamp: i64, key: &str, value: &str) -> Record {
        Record {
            offset,
            timestamp: Some(timestamp),
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("source".into(), Some(b"api-7".to_vec()))],
        }
    }

    fn search(pairs: &[(&str, &str)]) -> RecordSearch {
        let mut search = RecordSearch::default();
        for (name, value) in pairs {
            let value = Some(value.to_string());
            match *name {
                "from" => search.from = value,
                "key" => search.key = value,
                "value" => search.value = value,
                "header" => search.header = value,
                "cursor" => search.cursor = value,
                other => panic!("{other}"),
            }
        }
        search
    }

    fn filter(pairs: &[(&str, &str)]) -> RecordFilter {
        RecordFilter::parse(&search(pairs)).expect("a valid filter")
    }

    #[test]
    fn from_is_earliest_latest_or_an_iso_timestamp() {
        assert_eq!(Start::parse(None).ok(), Some(Start::Latest));
        assert_eq!(Start::parse(Some("latest")).ok(), Some(Start::Latest));
        assert_eq!(Start::parse(Some("earliest")).ok(), Some(Start::Earliest));
        assert_eq!(
            Start::parse(Some("2024-09-18T14:14:10.124Z")).ok(),
            Some(Start::At(1_726_668_850_124))
        );
        assert_eq!(
            Start::parse(Some("2024-09-18T16:14:10.124+02:00")).ok(),
            Some(Start::At(1_726_668_850_124))
        );
        assert_eq!(
            Start::parse(Some("1960-01-01T00:00:00Z")).ok(),
            Some(Start::At(0))
        );
        for bad in [
            "",
            "newest",
            "1726668850124",
            "2024-13-01T00:00:00Z",
            "2024-09-18",
        ] {
            let error = Start::parse(Some(bad)).expect_err(bad).to_string();
            assert!(error.contains("is not earliest, latest"), "{error}");
        }
    }

    #[test]
    fn filters_match_substrings_of_key_value_and_a_named_header() {
        let r = record(0, 0, "user-42", "{\"amount\": 7}");
        assert!(filter(&[]).matches(&r));
        assert!(filter(&[("key", "42"), ("value", "amount")]).matches(&r));
        assert!(!filter(&[("key", "43")]).matches(&r));
        assert!(!filter(&[("value", "AMOUNT")]).matches(&r), "case matters");
        assert!(filter(&[("header", "source:api")]).matches(&r));
        assert!(filter(&[("header", "source:")]).matches(&r), "presence");
        assert!(filter(&[("header", "source:i-7")]).matches(&r));
        assert!(
            !filter(&[("header", "Source:api")]).matches(&r),
            "exact name"
        );
        assert!(!filter(&[("header", "trace:")]).matches(&r));
        assert!(
            !filter(&[("header", "source:api-7:x")]).matches(&r),
            "only the first colon splits"
        );
        let mut tombstone = record(0, 0, "k", "");
        tombstone.value = None;
        assert!(!filter(&[("value", "x")]).matches(&tombstone));
        assert!(
            filter(&[("value", "")]).matches(&tombstone),
            "empty is no filter"
        );
        let mut binary = record(0, 0, "", "");
        binary.key = Some(vec![0xff, b'a', b'b', 0x00]);
        assert!(filter(&[("key", "ab")]).matches(&binary));
        for bad in ["no-colon", ":value"] {
            let error = RecordFilter::parse(&search(&[("header", bad)]))
                .expect_err(bad)
                .to_string();
            assert!(error.contains("is not name:value"), "{error}");
        }
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let cursor = Cursor {
            v: CURSOR_VERSION,
            t: "orders".into(),
            o: RecordOrder::NewestFirst,
            p: vec![(0, 12), (2, 0)],
        };
        let text = cursor.encode();
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Cursor::decode(&text, "orders").ok(), Some(cursor.clone()));
        let other_topic = Cursor::decode(&text, "payments").expect_err("other topic");
        assert!(other_topic
            .to_string()
            .contains("it is for topic \"orders\""));
        let encode = |json: &str| URL_SAFE_NO_PAD.encode(json);
        for bad in [
            "not a cursor!".to_string(),
            encode("{}"),
            encode(r#"{"v":2,"t":"orders","o":"oldest_first","p":[[0,1]]}"#),
            encode(r#"{"v":1,"t":"orders","o":"sideways","p":[[0,1]]}"#),
            encode(r#"{"v":1,"t":"orders","o":"oldest_first","p":[]}"#),
            encode(r#"{"v":1,"t":"orders","o":"oldest_first","p":[[0,1],[0,2]]}"#),
            encode(r#"{"v":1,"t":"orders","o":"oldest_first","p":[[-1,1]]}"#),
            encode(r#"{"v":1,"t":"orders","o":"oldest_first","p":[[0,-5]]}"#),
            "A".repeat(MAX_CURSOR_LEN + 1),
        ] {
            let error = Cursor::decode(&bad, "orders").expect_err(&bad).to_string();
            assert!(error.starts_with("cursor is not one"), "{error}");
        }
    }

    #[test]
    fn limits_default_and_bounds() {
        assert_eq!(search_limit(None).ok(), Some(DEFAULT_SEARCH_LIMIT));
        assert_eq!(
            search_limit(Some(MAX_SEARCH_LIMIT)).ok(),
            Some(MAX_SEARCH_LIMIT)
        );
        for bad in [0, MAX_SEARCH_LIMIT + 1] {
            assert!(search_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    fn partition(id: i32, order: RecordOrder, found: Vec<Record>) -> PartitionRead {
        let mut read = PartitionRead::new(
            PartitionStart {
                id,
                leader: "broker:9092".into(),
                earliest: 0,
                latest: 100,
                position: match order {
                    RecordOrder::OldestFirst => 0,
                    RecordOrder::NewestFirst => 100,
                },
            },
            order,
        );
        read.found = found.into();
        read.exhausted = true;
        read
    }

    /// The merge of partitions whose records are all found already.
    fn merged(order: RecordOrder, mut partitions: Vec<PartitionRead>) -> Vec<(i32, i64)> {
        let mut found = Vec::new();
        while let Some(index) = next_index(order, &partitions) {
            let record = take_next(&mut partitions[index]);
            found.push((record.partition, record.record.offset));
        }
        found
    }

    #[test]
    fn partitions_merge_by_timestamp_then_partition() {
        let oldest_first = merged(
            RecordOrder::OldestFirst,
            vec![
                partition(
                    0,
                    RecordOrder::OldestFirst,
                    vec![record(0, 10, "", ""), record(1, 30, "", "")],
                ),
                partition(
                    1,
                    RecordOrder::OldestFirst,
                    vec![record(0, 20, "", ""), record(1, 30, "", "")],
                ),
            ],
        );
        assert_eq!(oldest_first, [(0, 0), (1, 0), (0, 1), (1, 1)]);
        // Newest first each partition's records come highest offset first.
        let newest_first = merged(
            RecordOrder::NewestFirst,
            vec![
                partition(
                    0,
                    RecordOrder::NewestFirst,
                    vec![record(1, 30, "", ""), record(0, 10, "", "")],
                ),
                partition(
                    1,
                    RecordOrder::NewestFirst,
                    vec![record(1, 30, "", ""), record(0, 20, "", "")],
                ),
            ],
        );
        assert_eq!(newest_first, [(0, 1), (1, 1), (1, 0), (0, 0)]);
    }

    #[test]
    fn the_cursor_resumes_at_the_first_record_not_returned() {
        let mut read = partition(
            0,
            RecordOrder::NewestFirst,
            vec![record(9, 5, "", ""), record(4, 4, "", "")],
        );
        read.start = 12;
        read.frontier = 3;
        assert_eq!(read.resume_at(RecordOrder::NewestFirst), 10);
        let report = read.report(RecordOrder::NewestFirst);
        assert_eq!((report.scanned_from, report.scanned_to), (10, 12));
        assert!(!report.reached_end);
        read.found.clear();
        assert_eq!(read.resume_at(RecordOrder::NewestFirst), 3);
        let mut forward = partition(1, RecordOrder::OldestFirst, vec![record(7, 1, "", "")]);
        forward.start = 2;
        forward.frontier = 20;
        assert_eq!(forward.resume_at(RecordOrder::OldestFirst), 7);
        let report = forward.report(RecordOrder::OldestFirst);
        assert_eq!((report.scanned_from, report.scanned_to), (2, 7));
    }

    #[test]
    fn a_window_keeps_matches_in_read_order_and_grows_when_it_finds_none() {
        let order = RecordOrder::NewestFirst;
        let mut read = partition(0, order, Vec::new());
        read.exhausted = false;
        read.frontier = 100;
        let mut walk = PageWalk::new(36, 100, usize::MAX);
        walk.records = vec![record(40, 1, "a", ""), record(50, 2, "b", "")];
        walk.skipped = vec![SkippedBatch {
            from_offset: 90,
            to_offset: 120,
            reason: "bomb".into(),
        }];
        let window = |from, to, walk| WindowRead {
            from,
            to,
            walk,
            stalled: false,
            bytes: 100,
        };
        read.take_window(order, &RecordFilter::default(), window(36, 100, walk), 50);
        let offsets: Vec<i64> = read.found.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [50, 40], "newest first");
        assert_eq!(read.frontier, 36);
        assert_eq!(read.window, FIRST_WINDOW, "it found something");
        assert_eq!(
            (read.skipped[0].from_offset, read.skipped[0].to_offset),
            (90, 99),
            "cut to the window"
        );
        read.found.clear();
        let walk = PageWalk::new(0, 36, usize::MAX);
        read.take_window(order, &filter(&[("key", "zzz")]), window(0, 36, walk), 50);
        assert!(read.exhausted);
        assert_eq!(read.window, FIRST_WINDOW * 4);
    }

    #[test]
    fn a_partition_keeps_what_a_page_can_return_and_reads_the_rest_again() {
        let big = "x".repeat(700 * 1024);
        // Oldest first: room for 2 of 3 small records; the third is read again later.
        let order = RecordOrder::OldestFirst;
        let mut read = partition(0, order, Vec::new());
        read.exhausted = false;
        let mut walk = PageWalk::new(0, 100, 3);
        walk.records = (0..3).map(|i| record(i, i, "", "v")).collect();
        walk.position = 3;
        let window = WindowRead {
            from: 0,
            to: 100,
            walk,
            stalled: false,
            bytes: 3,
        };
        read.take_window(order, &RecordFilter::default(), window, 2);
        let offsets: Vec<i64> = read.found.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 1]);
        assert_eq!((read.frontier, read.exhausted), (2, false));
        // Newest first: large records beyond about 1 MiB are dropped, the first always kept.
        let order = RecordOrder::NewestFirst;
        let mut read = partition(0, order, Vec::new());
        read.exhausted = false;
        let mut walk = PageWalk::new(60, 100, usize::MAX);
        walk.records = (60..64).map(|i| record(i, i, "", &big)).collect();
        walk.skipped = vec![SkippedBatch {
            from_offset: 64,
            to_offset: 99,
            reason: "bomb".into(),
        }];
        let bytes = walk.records.iter().map(record_bytes).sum();
        let window = WindowRead {
            from: 60,
            to: 100,
            walk,
            stalled: false,
            bytes,
        };
        read.take_window(order, &RecordFilter::default(), window, 50);
        let offsets: Vec<i64> = read.found.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [63], "700 KiB kept, the next would pass 1 MiB");
        assert_eq!((read.frontier, read.exhausted), (63, false));
        assert_eq!(read.skipped.len(), 1, "above what is dropped");
        assert_eq!(read.window, FIRST_WINDOW / 4, "a window of 2.8 MB shrinks");
        let report = read.report(order);
        assert_eq!((report.scanned_from, report.scanned_to), (64, 100));
    }
}
