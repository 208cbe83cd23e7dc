//! The blocker's checkpoints: how a partition's state is cut into signed chunks, fenced
//! between owners, and read back when a blocker gains the partition.
//!
//! A partition's state (its JSON, at most [`MAX_CHECKPOINT_BYTES`]) is written as one or more
//! chunk records, each value at most [`MAX_CHUNK_BYTES`] (below 512 KiB, so a topic with a
//! stock Kafka's default `max.message.bytes` of 1 MB takes them). Key
//! `<input topic>/<partition>/<epoch>/<slot>/<chunk>`; value a [`ChunkHeader`] then the
//! chunk's slice of the state; the MAC (header [`MAC_HEADER`]) covers key and value bytes.
//!
//! - **Slots.** The slot is the generation modulo 2. A checkpoint goes to the slot that does
//!   not hold the newest acknowledged one (a failed write is retried two generations on, in
//!   the same slot), so a crash half-way through leaves that one whole. Keys repeat from
//!   generation to generation, so compaction replaces old chunks; once a checkpoint is
//!   acknowledged, every other key known to hold a chunk of the partition (the other slot,
//!   chunks beyond the new count, older epochs, the old single-record format) gets a
//!   tombstone.
//! - **Fencing.** The blocker that gains a partition claims an epoch one above the highest it
//!   read for it (and a random writer id). Readers take the complete checkpoint with the
//!   highest (epoch, generation): a blocker paused past its session timeout (a zombie) that
//!   wakes up and checkpoints under its old epoch, into keys of its own, neither replaces nor
//!   damages the new owner's checkpoints. (Two owners that claimed the same epoch, which
//!   needs a zombie that never wrote in its epoch, share keys: their chunks never combine,
//!   the writer id tells them apart, but one may break the other's, and the partition then
//!   replays.)
//! - **Complete.** A checkpoint counts only when every chunk of its (epoch, writer,
//!   generation) is there, each validly signed, and together they are the announced length
//!   of a readable state. Anything else (a crash mid-write, a forged or altered chunk) is
//!   ignored, and the previous complete one is used.
//! - **Upgrade.** A record of the old single-record format (key `<input topic>/<partition>`,
//!   value the JSON state, same MAC) still counts, as epoch 0 generation 0, and is
//!   tombstoned once a new checkpoint of the partition is acknowledged.
//! - **Bounds.** A state above [`MAX_CHECKPOINT_BYTES`] is not checkpointed (logged; the
//!   partition resumes from its previous checkpoint). Readers keep only signed chunks of the
//!   partitions being assigned that claim at most that total, so memory holds a few
//!   checkpoints of the assigned partitions at most.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::blocker::BlockerConfig;
use super::mac::{self, Canonical, MAC_HEADER};
use super::rules::PartitionState;
use super::secret::GuardSecret;
use super::GuardError;
use crate::binary::Reader;
use crate::kafka::CreateClient;
use crate::KafkaConfig;

/// Largest partition state (its JSON) checkpointed, over all its chunks: a partition with tens
/// of thousands of users under attack. It bounds what a blocker reads and keeps in memory
/// when it gains partitions (inside the rebalance, which waits for it), not any record.
pub const MAX_CHECKPOINT_BYTES: usize = 16 << 20;
/// Largest checkpoint chunk value (header and state bytes): below 512 KiB, so two fit a stock
/// Kafka's default record and request limits (1 MB).
pub const MAX_CHUNK_BYTES: usize = 512 * 1024 - 1;
/// State bytes per chunk.
const CHUNK_STATE_BYTES: usize = MAX_CHUNK_BYTES - CHUNK_HEADER_BYTES;
/// Most chunks a checkpoint of at most [`MAX_CHECKPOINT_BYTES`] has.
const MAX_CHUNKS: u32 = MAX_CHECKPOINT_BYTES.div_ceil(CHUNK_STATE_BYTES) as u32;
const _: () = assert!(MAX_CHUNK_BYTES < 512 * 1024 && CHUNK_STATE_BYTES > 0);
const CHUNK_MAGIC: &[u8; 4] = b"FGC1";
/// Magic, epoch, writer, generation, chunk, count, state length.
const CHUNK_HEADER_BYTES: usize = 4 + 8 + 8 + 8 + 4 + 4 + 8;
/// The checkpoint reader's fetch size: records of the old single-record format are up to
/// 16 MiB.
const LEGACY_CHECKPOINT_FETCH_BYTES: usize = (16 << 20) + 4096;

/// A worker's claim on one partition's checkpoints, from assignment to revocation.
#[derive(Debug)]
pub(super) struct Claim {
    pub(super) epoch: u64,
    /// Random: tells apart two owners that claimed the same epoch.
    pub(super) writer: u64,
    /// The generation after the last one written (or tried).
    next: u64,
    /// The newest acknowledged generation of this claim.
    complete: Option<u64>,
    /// Keys that may hold a value for the partition: read at assignment, or written since.
    pub(super) live: BTreeSet<String>,
}

impl Claim {
    /// The claim of a worker that read `epoch` as the partition's highest and `live` as its
    /// keys.
    pub(super) fn new(epoch: u64, live: BTreeSet<String>) -> Claim {
        Claim {
            epoch: epoch.saturating_add(1),
            writer: uuid::Uuid::new_v4().as_u64_pair().0,
            next: 0,
            complete: None,
            live,
        }
    }

    /// The generation of the next checkpoint: never in the slot of the newest acknowledged
    /// one, so that one stays whole whatever happens to this one.
    pub(super) fn next_generation(&mut self) -> u64 {
        let mut generation = self.next;
        if self.complete.is_some_and(|c| c % 2 == generation % 2) {
            generation += 1;
        }
        self.next = generation + 1;
        generation
    }

    /// `generation`, written to `keys`, is acknowledged: returns every other key that may
    /// hold a value, to tombstone.
    pub(super) fn acknowledged(&mut self, generation: u64, keys: BTreeSet<String>) -> Vec<String> {
        self.complete = Some(generation);
        let superseded = self.live.difference(&keys).cloned().collect();
        self.live = keys;
        superseded
    }
}

/// What every chunk value starts with (little-endian, 44 bytes): magic `FGC1`,
/// epoch u64, writer u64, generation u64, chunk u32, count u32, state length u64. The chunk's
/// slice of the state's JSON follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The writer's claim on the partition.
    pub epoch: u64,
    /// Random per claim.
    pub writer: u64,
    /// Checkpoints written (or tried) under this claim before this one.
    pub generation: u64,
    /// This chunk's place, from 0.
    pub chunk: u32,
    /// Chunks of the checkpoint.
    pub count: u32,
    /// Bytes of the whole state.
    pub state_len: u64,
}

impl ChunkHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(CHUNK_MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.writer.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.state_len.to_le_bytes());
    }

    /// The header of a chunk value and the state bytes after it; `None` if it is not one.
    pub fn decode(value: &[u8]) -> Option<(ChunkHeader, &[u8])> {
        let mut r = Reader::new(value);
        if r.bytes(CHUNK_MAGIC.len()).ok()? != CHUNK_MAGIC {
            return None;
        }
        let header = ChunkHeader {
            epoch: r.u64().ok()?,
            writer: r.u64().ok()?,
            generation: r.u64().ok()?,
            chunk: r.u32().ok()?,
            count: r.u32().ok()?,
            state_len: r.u64().ok()?,
        };
        Some((header, r.rest()))
    }
}

/// The key of one chunk: `<input topic>/<partition>/<epoch>/<slot>/<chunk>`, the slot being
/// the generation modulo 2.
pub fn chunk_key(topic: &str, partition: i32, epoch: u64, generation: u64, chunk: u32) -> String {
    let slot = generation % 2;
    format!("{topic}/{partition}/{epoch}/{slot}/{chunk}")
}

/// The key of a checkpoint of the old single-record format.
pub fn legacy_checkpoint_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The chunk records, (key, value) unsigned, of a checkpoint of `state` (the partition
/// state's JSON): at least one, each value at most [`MAX_CHUNK_BYTES`].
pub fn encode_checkpoint(
    topic: &str,
    partition: i32,
    epoch: u64,
    writer: u64,
    generation: u64,
    state: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let mut slices: Vec<&[u8]> = state.chunks(CHUNK_STATE_BYTES).collect();
    if slices.is_empty() {
        slices.push(&[]);
    }
    let count = u32::try_from(slices.len()).unwrap_or(u32::MAX);
    slices
        .into_iter()
        .zip(0..)
        .map(|(slice, chunk)| {
            let header = ChunkHeader {
                epoch,
                writer,
                generation,
                chunk,
                count,
                state_len: state.len() as u64,
            };
            let mut value = Vec::with_capacity(CHUNK_HEADER_BYTES + slice.len());
            header.encode(&mut value);
            value.extend_from_slice(slice);
            (chunk_key(topic, partition, epoch, generation, chunk), value)
        })
        .collect()
}

/// The MAC (hex, for the [`MAC_HEADER`] header) of a checkpoint record: it covers the key and
/// the value's bytes, which this code alone writes and reads, so its bytes are what is meant.
/// The same for chunks and for the old single-record format.
pub fn sign_checkpoint(secret: &GuardSecret, key: &str, value: &[u8]) -> String {
    mac::sign(secret, &checkpoint_canonical(key, value))
}

fn checkpoint_canonical(key: &str, value: &[u8]) -> Canonical {
    Canonical::new("checkpoint", Some(key.as_bytes())).bytes(value)
}

/// Whether the guard wrote this checkpoint record.
fn checkpoint_is_signed(secret: &GuardSecret, key: &str, message: &BorrowedMessage<'_>) -> bool {
    let signature = message
        .headers()
        .and_then(|headers| headers.iter().find(|h| h.key == MAC_HEADER))
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok());
    let value = message.payload().unwrap_or_default();
    mac::verify(secret, &checkpoint_canonical(key, value), signature).is_ok()
}

/// What a checkpoint key (past `<input topic>/`) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointKey {
    /// `<partition>`: the old single-record format.
    Legacy { partition: i32 },
    /// `<partition>/<epoch>/<slot>/<chunk>`.
    Chunk {
        partition: i32,
        epoch: u64,
        slot: u64,
        chunk: u32,
    },
}

impl CheckpointKey {
    fn parse(rest: &str) -> Option<CheckpointKey> {
        let mut parts = rest.split('/');
        let partition = parts.next()?.parse().ok()?;
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (None, ..) => Some(CheckpointKey::Legacy { partition }),
            (Some(epoch), Some(slot), Some(chunk), None) => Some(CheckpointKey::Chunk {
                partition,
                epoch: epoch.parse().ok()?,
                slot: slot.parse().ok()?,
                chunk: chunk.parse().ok()?,
            }),
            _ => None,
        }
    }

    fn partition(self) -> i32 {
        match self {
            CheckpointKey::Legacy { partition } | CheckpointKey::Chunk { partition, .. } => {
                partition
            }
        }
    }
}

/// A signed checkpoint record, checked against its key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stored {
    /// The state's JSON, in the old single-record format.
    Legacy(Vec<u8>),
    Chunk(ChunkHeader, Vec<u8>),
}

impl Stored {
    /// The record as a checkpoint, if it is one this reader can use.
    fn from_record(key: CheckpointKey, value: &[u8]) -> Option<Stored> {
        match key {
            CheckpointKey::Legacy { .. } => Some(Stored::Legacy(value.to_vec())),
            CheckpointKey::Chunk {
                epoch, slot, chunk, ..
            } => {
                let (header, state) = ChunkHeader::decode(value)?;
                let fits = header.epoch == epoch
                    && header.generation % 2 == slot
                    && header.chunk == chunk
                    && header.chunk < header.count
                    && header.count <= MAX_CHUNKS
                    && header.state_len <= MAX_CHECKPOINT_BYTES as u64
                    && state.len() as u64 <= header.state_len;
                fits.then(|| Stored::Chunk(header, state.to_vec()))
            }
        }
    }
}

/// The latest record of each checkpoint key of one partition, as read (or as compaction
/// leaves them).
#[derive(Debug, Default)]
struct PartitionRecords {
    /// Signed, usable values by key.
    values: HashMap<String, Stored>,
    /// Keys whose latest record has a value, usable or not: what a new checkpoint
    /// supersedes.
    keys: BTreeSet<String>,
}

impl PartitionRecords {
    /// Applies the next record of `key`: `None` for a tombstone; `Some(None)` for a value
    /// without a valid MAC or that is no checkpoint, which changes nothing but the keys.
    fn apply(&mut self, key: &str, value: Option<Option<Stored>>) {
        match value {
            None => {
                self.values.remove(key);
                self.keys.remove(key);
            }
            Some(stored) => {
                self.keys.insert(key.to_string());
                if let Some(stored) = stored {
                    self.values.insert(key.to_string(), stored);
                }
            }
        }
    }

    /// The newest complete checkpoint: the highest (epoch, generation) whose chunks are all
    /// here and make a state, else one of the old format.
    fn resume(self, partition: i32) -> Resumed {
        let mut epoch = 0;
        let mut legacy = None;
        let mut checkpoints: BTreeMap<(u64, u64, u64), Chunks> = BTreeMap::new();
        for stored in self.values.into_values() {
            match stored {
                Stored::Legacy(state) => legacy = Some(state),
                Stored::Chunk(header, state) => {
                    epoch = epoch.max(header.epoch);
                    checkpoints
                        .entry((header.epoch, header.generation, header.writer))
                        .or_default()
                        .push((header, state));
                }
            }
        }
        let mut newest = None;
        for ((epoch, generation, _), chunks) in checkpoints.into_iter().rev() {
            newest = assemble(chunks);
            if newest.is_some() {
                break;
            }
            tracing::warn!(
                partition,
                epoch,
                generation,
                "ignoring an incomplete blocker checkpoint (missing or unsigned chunks)"
            );
        }
        let newest = newest.or_else(|| {
            let bytes = legacy?;
            let state = serde_json::from_slice::<PartitionState>(&bytes).ok()?;
            Some((state, bytes))
        });
        Resumed {
            newest,
            epoch,
            keys: self.keys,
        }
    }
}

/// Chunks of one checkpoint: headers and state bytes.
type Chunks = Vec<(ChunkHeader, Vec<u8>)>;

/// One checkpoint's chunks joined, if they are all there and make a state.
fn assemble(mut chunks: Chunks) -> Option<(PartitionState, Vec<u8>)> {
    chunks.sort_by_key(|(header, _)| header.chunk);
    let (first, _) = chunks.first()?;
    let (count, state_len) = (first.count, first.state_len);
    let whole = chunks.len() == count as usize
        && chunks
            .iter()
            .zip(0..)
            .all(|((h, _), i)| h.chunk == i && h.count == count && h.state_len == state_len)
        && chunks.iter().map(|(_, s)| s.len() as u64).sum::<u64>() == state_len;
    if !whole {
        return None;
    }
    let bytes = chunks
        .into_iter()
        .flat_map(|(_, state)| state)
        .collect::<Vec<u8>>();
    let state = serde_json::from_slice::<PartitionState>(&bytes).ok()?;
    Some((state, bytes))
}

/// What a worker gaining a partition starts from.
#[derive(Debug, Default)]
pub(super) struct Resumed {
    /// The newest complete checkpoint: the state and its JSON.
    pub(super) newest: Option<(PartitionState, Vec<u8>)>,
    /// The highest epoch of any signed chunk of the partition (0: none).
    pub(super) epoch: u64,
    /// Keys that hold a value for the partition.
    pub(super) keys: BTreeSet<String>,
}

/// The newest complete checkpoint of each partition of `wanted`, its highest epoch and its
/// keys, read from the compacted checkpoint topic up to its current end.
pub(super) fn read_checkpoints(
    kafka: &KafkaConfig,
    config: &BlockerConfig,
    wanted: &HashSet<i32>,
) -> Result<HashMap<i32, Resumed>, GuardError> {
    let consumer: BaseConsumer = kafka
        .reader_config(
            "guard-checkpoints",
            &format!("{}-checkpoints", config.group),
        )
        .set(
            "fetch.message.max.bytes",
            LEGACY_CHECKPOINT_FETCH_BYTES.to_string(),
        )
        .create_client()?;
    let topic = &config.checkpoint_topic;
    let failed = |what: &str| GuardError::kafka(format!("{what} {topic}"));
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map_err(failed("reading the offsets of"))?;
    let mut records: HashMap<i32, PartitionRecords> = HashMap::new();
    if high > low {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .and_then(|()| consumer.assign(&assignment))
            .map_err(failed("assigning"))?;
    }
    let prefix = format!("{}/", config.attempts_topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut position = low;
    while position < high {
        if Instant::now() >= deadline {
            return Err(GuardError::CheckpointsTimeout);
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(failed("reading"))?;
        position = message.offset() + 1;
        let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
        let parsed = key
            .and_then(|k| k.strip_prefix(&prefix))
            .and_then(CheckpointKey::parse);
        let (Some(key), Some(parsed)) = (key, parsed) else {
            continue;
        };
        let partition = parsed.partition();
        if !wanted.contains(&partition) {
            continue;
        }
        let value = match message.payload() {
            // Forgetting a checkpoint only makes the partition replay: no need to sign that.
            None => None,
            Some(value) if checkpoint_is_signed(&config.secret, key, &message) => {
                let stored = Stored::from_record(parsed, value);
                if stored.is_none() {
                    tracing::warn!(
                        partition,
                        offset = message.offset(),
                        "ignoring a signed blocker checkpoint record this version cannot read"
                    );
                }
                Some(stored)
            }
            Some(_) => {
                tracing::warn!(
                    partition,
                    offset = message.offset(),
                    "ignoring a blocker checkpoint record without a valid MAC"
                );
                Some(None)
            }
        };
        records.entry(partition).or_default().apply(key, value);
    }
    Ok(records
        .into_iter()
        .map(|(partition, records)| (partition, records.resume(partition)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::attempts::Attempt;
    use super::super::rules::Rules;
    use super::*;

    const TOPIC: &str = "login-attempts";

    fn state_json(next_offset: i64, padding_users: usize) -> Vec<u8> {
        let mut state = PartitionState::default();
        state.next_offset = next_offset;
        let rules = Rules {
            window_ms: i64::MAX / 4,
            ..Rules::default()
        };
        for i in 0..padding_users {
            let attempt = Attempt::login(&format!("user-{i:05}"), "10.0.0.1", false);
            state.apply(&attempt, &rules);
        }
        serde_json::to_vec(&state).expect("json")
    }

    /// The records of a checkpoint, as the reader stores them.
    fn stored(
        partition: i32,
        epoch: u64,
        writer: u64,
        generation: u64,
        state: &[u8],
    ) -> Vec<(String, Stored)> {
        encode_checkpoint(TOPIC, partition, epoch, writer, generation, state)
            .into_iter()
            .map(|(key, value)| {
                let parsed = key
                    .strip_prefix("login-attempts/")
                    .and_then(CheckpointKey::parse)
                    .expect("key");
                (key, Stored::from_record(parsed, &value).expect("chunk"))
            })
            .collect()
    }

    fn apply_all(records: &mut PartitionRecords, chunks: Vec<(String, Stored)>) {
        for (key, value) in chunks {
            records.apply(&key, Some(Some(value)));
        }
    }

    fn resumed_offset(records: PartitionRecords) -> Option<i64> {
        records.resume(0).newest.map(|(state, _)| state.next_offset)
    }

    #[test]
    fn a_large_state_is_cut_into_bounded_chunks_that_join_again() {
        let state = state_json(7, 20_000);
        assert!(state.len() > 1 << 20, "{} bytes", state.len());
        let chunks = encode_checkpoint(TOPIC, 2, 3, 9, 5, &state);
        assert!(chunks.len() >= 3);
        assert!(chunks.iter().all(|(_, v)| v.len() <= MAX_CHUNK_BYTES));
        assert_eq!(chunks[0].0, "login-attempts/2/3/1/0");
        assert_eq!(chunks[1].0, "login-attempts/2/3/1/1");
        let (header, _) = ChunkHeader::decode(&chunks[1].1).expect("header");
        assert_eq!(
            header,
            ChunkHeader {
                epoch: 3,
                writer: 9,
                generation: 5,
                chunk: 1,
                count: chunks.len() as u32,
                state_len: state.len() as u64,
            }
        );
        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(2, 3, 9, 5, &state));
        let resumed = records.resume(2);
        assert_eq!(resumed.epoch, 3);
        assert_eq!(resumed.newest.map(|(_, bytes)| bytes), Some(state));
        assert_eq!(resumed.keys.len(), chunks.len());
        // Generations alternate between two slots; keys repeat.
        assert_eq!(
            encode_checkpoint(TOPIC, 2, 3, 9, 7, b"{}")[0].0,
            chunks[0].0
        );
        assert_eq!(
            encode_checkpoint(TOPIC, 2, 3, 9, 6, b"{}")[0].0,
            "login-attempts/2/3/0/0"
        );
    }

    #[test]
    fn a_checkpoint_with_a_missing_chunk_gives_way_to_the_previous_complete_one() {
        let old = state_json(100, 8_000);
        let new = state_json(200, 8_000);
        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(0, 1, 1, 4, &old));
        let mut newer = stored(0, 1, 1, 5, &new);
        assert!(newer.len() >= 2);
        newer.remove(1);
        apply_all(&mut records, newer);
        assert_eq!(resumed_offset(records), Some(100));
    }

    #[test]
    fn the_highest_epoch_wins_whatever_the_generations_and_the_order() {
        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(0, 2, 1, 0, &state_json(300, 0)));
        // A zombie of epoch 1 checkpoints later, with more generations behind it.
        apply_all(&mut records, stored(0, 1, 2, 41, &state_json(250, 0)));
        records.apply(
            &legacy_checkpoint_key(TOPIC, 0),
            Some(Some(Stored::Legacy(state_json(900, 0)))),
        );
        let resumed = records.resume(0);
        assert_eq!(resumed.epoch, 2);
        assert_eq!(resumed.newest.map(|(s, _)| s.next_offset), Some(300));
        assert_eq!(resumed.keys.len(), 3, "every key is superseded later");
    }

    #[test]
    fn chunks_of_two_writers_never_combine() {
        let a = state_json(10, 8_000);
        let b = state_json(20, 8_000);
        let mut records = PartitionRecords::default();
        let mut first = stored(0, 1, 1, 0, &a);
        let second = stored(0, 1, 2, 0, &b);
        // Writer 2 overwrote chunk 0 only (it crashed after it).
        first[0] = second[0].clone();
        apply_all(&mut records, first);
        assert_eq!(resumed_offset(records), None);
    }

    #[test]
    fn an_old_single_record_checkpoint_is_read_until_a_chunked_one_exists() {
        let mut records = PartitionRecords::default();
        let key = legacy_checkpoint_key(TOPIC, 0);
        assert_eq!(
            CheckpointKey::parse("0"),
            Some(CheckpointKey::Legacy { partition: 0 })
        );
        records.apply(&key, Some(Some(Stored::Legacy(state_json(42, 3)))));
        let resumed = records.resume(0);
        assert_eq!(resumed.epoch, 0);
        assert_eq!(resumed.newest.map(|(s, _)| s.next_offset), Some(42));

        let mut records = PartitionRecords::default();
        records.apply(&key, Some(Some(Stored::Legacy(state_json(42, 3)))));
        apply_all(&mut records, stored(0, 1, 1, 0, &state_json(50, 3)));
        assert_eq!(resumed_offset(records), Some(50));
    }

    #[test]
    fn unsigned_values_change_nothing_and_tombstones_forget() {
        let mut records = PartitionRecords::default();
        let chunks = stored(0, 1, 1, 0, &state_json(5, 0));
        let key = chunks[0].0.clone();
        apply_all(&mut records, chunks);
        records.apply(&key, Some(None));
        assert_eq!(resumed_offset(records), Some(5));

        let mut records = PartitionRecords::default();
        apply_all(&mut records, stored(0, 1, 1, 0, &state_json(5, 0)));
        records.apply(&key, None);
        let resumed = records.resume(0);
        assert!(resumed.newest.is_none() && resumed.keys.is_empty());
    }

    #[test]
    fn chunks_that_do_not_match_their_key_or_the_bounds_are_refused() {
        let (_, value) = encode_checkpoint(TOPIC, 0, 1, 1, 0, b"{}").remove(0);
        let key = |epoch, slot, chunk| CheckpointKey::Chunk {
            partition: 0,
            epoch,
            slot,
            chunk,
        };
        assert!(Stored::from_record(key(1, 0, 0), &value).is_some());
        assert!(Stored::from_record(key(2, 0, 0), &value).is_none());
        assert!(Stored::from_record(key(1, 1, 0), &value).is_none());
        assert!(Stored::from_record(key(1, 0, 1), &value).is_none());
        assert!(Stored::from_record(key(1, 0, 0), &value[..10]).is_none());
        let mut huge = value.clone();
        huge[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Stored::from_record(key(1, 0, 0), &huge).is_none());
        assert_eq!(CheckpointKey::parse("0/1/0"), None);
        assert_eq!(CheckpointKey::parse("x"), None);
    }

    #[test]
    fn a_new_checkpoint_never_goes_to_the_slot_of_the_newest_acknowledged_one() {
        let mut claim = Claim::new(4, BTreeSet::from(["old".to_string()]));
        assert_eq!(claim.epoch, 5);
        let g0 = claim.next_generation();
        let keys = |g: u64| BTreeSet::from([format!("slot{}", g % 2)]);
        assert_eq!(claim.acknowledged(g0, keys(g0)), ["old"]);
        let g1 = claim.next_generation();
        assert_ne!(g1 % 2, g0 % 2);
        // g1 fails: the retry stays out of g0's slot.
        claim.live.extend(keys(g1));
        let retry = claim.next_generation();
        assert!(retry > g1 && retry % 2 == g1 % 2);
        assert_eq!(claim.acknowledged(retry, keys(retry)), ["slot0"]);
    }
}
