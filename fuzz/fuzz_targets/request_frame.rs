//! Request decoding and handling: the input is one request frame (without its 4-byte size
//! prefix), started through `dispatch::start` on a real broker in a temp dir (on tmpfs when
//! there is one), exactly as the connection task starts the frames it reads from a socket, and
//! its answer awaited.
//!
//! The runtime's clock is paused (tokio's test-util): whenever every task waits on a timer,
//! time jumps to the next one. So long polls, group barriers and session timeouts run their
//! whole course at once and every answer is checked; `RESPONSE_WAIT` (virtual time, longer
//! than any wait the broker allows) only stops a request that would never be answered.
//! A blocking task (appends, fsyncs) holds the clock while it runs.
//!
//! Checks, besides "no panic, no abort":
//! - every answer is one well-formed response frame: its size prefix matches, it carries the
//!   request's correlation id, and it decodes as the response of the request's API and version
//!   (v0 for an unsupported ApiVersions version) with nothing left over.
//!
//! One broker serves many inputs (opening one per input would cost more than most requests);
//! it is replaced by a fresh one every `FRESHET_FUZZ_RESET_EVERY` inputs (default 2,000) so
//! that its state stays small. With `FRESHET_FUZZ_RESET_EVERY=1` every input meets a new
//! broker, which reproduces a crash that depends on one input alone. Every
//! `CLEAN_EVERY` inputs retention and compaction run over all partitions, as the broker's
//! background task would.

#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Buf, Bytes};
use freshet_broker::dispatch::{self, Started};
use freshet_broker::listener::Listener;
use freshet_broker::session::Session;
use freshet_broker::topics::TopicConfigs;
use freshet_broker::{versions, Broker, BrokerConfig};
use freshet_fuzz::{scratch_dir, SEED_TOPICS};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;

/// How long an answer is awaited, in the paused clock's virtual time.
const RESPONSE_WAIT: Duration = Duration::from_secs(120);
/// Retention and compaction run every this many inputs.
const CLEAN_EVERY: u64 = 256;

struct Harness {
    runtime: tokio::runtime::Runtime,
    state: Mutex<BrokerState>,
    reset_every: u64,
}

struct BrokerState {
    broker: Arc<Broker>,
    inputs: u64,
    /// Keeps the data directory until the broker is replaced.
    _dir: tempfile::TempDir,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|frame: &[u8]| {
    HARNESS.get_or_init(Harness::new).run(frame);
});

impl Harness {
    fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let reset_every = std::env::var("FRESHET_FUZZ_RESET_EVERY")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000u64)
            .max(1);
        let state = Mutex::new(BrokerState::open(&runtime));
        Harness {
            runtime,
            state,
            reset_every,
        }
    }

    fn run(&self, frame: &[u8]) {
        let (broker, clean) = {
            let mut state = self.state.lock().expect("harness state");
            if state.inputs >= self.reset_every {
                let old = std::mem::replace(&mut *state, BrokerState::open(&self.runtime));
                self.runtime.block_on(old.broker.close());
            }
            state.inputs += 1;
            (
                state.broker.clone(),
                state.inputs.is_multiple_of(CLEAN_EVERY),
            )
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut session = Session::new(peer, Arc::new(Listener::plaintext()), None);
        let request = Bytes::copy_from_slice(frame);
        self.runtime.block_on(async {
            if let Started::Respond(response) =
                dispatch::start(&broker, request, &mut session).await
            {
                if let Ok(response) = tokio::time::timeout(RESPONSE_WAIT, response).await {
                    check_response(frame, response);
                }
            }
        });
        if clean {
            broker.clean_logs();
        }
    }
}

impl BrokerState {
    fn open(runtime: &tokio::runtime::Runtime) -> BrokerState {
        let dir = scratch_dir();
        let mut config = BrokerConfig::new(dir.path());
        config.coordinator.initial_rebalance_delay = Duration::ZERO;
        config.default_partitions = 1;
        // Small segments, so retention and compaction have closed segments to work on, and a
        // small decompression cap, so bombs stay cheap.
        config.log_defaults.segment_bytes = 64 * 1024;
        config.log_defaults.retention_bytes = 256 * 1024;
        config.log_defaults.max_uncompressed_batch_bytes = 1 << 20;
        let broker = runtime.block_on(async {
            let broker = Broker::open(config).expect("broker opens");
            for (name, partitions, policy) in SEED_TOPICS {
                let configs = TopicConfigs(BTreeMap::from([(
                    "cleanup.policy".to_string(),
                    policy.to_string(),
                )]));
                broker
                    .create_topic(name, *partitions, configs)
                    .expect("seed topic");
            }
            broker
        });
        BrokerState {
            broker,
            inputs: 0,
            _dir: dir,
        }
    }
}

/// One response frame for the request `frame`: size prefix, correlation id, a body that
/// decodes as the request's API and version.
fn check_response(frame: &[u8], mut response: Bytes) {
    assert!(
        response.len() >= 8,
        "a response frame has a size and a header"
    );
    let size = response.len() - 4;
    assert_eq!(
        response.get_i32() as usize,
        size,
        "the size prefix counts the frame"
    );
    // The request header decoded, or there would be no answer: key, version, correlation id.
    let api = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(api).expect("an answered request has a known API key");
    let version = if versions::is_supported(api, version) {
        version
    } else {
        assert_eq!(
            api,
            ApiKey::ApiVersions,
            "only ApiVersions answers an unsupported version"
        );
        0
    };
    let header = ResponseHeader::decode(&mut response, api.response_header_version(version))
        .expect("the response header decodes");
    assert_eq!(
        header.correlation_id, correlation_id,
        "the answer carries the correlation id"
    );
    if let Err(error) = ResponseKind::decode(api, &mut response, version) {
        panic!("{api:?} v{version} response does not decode: {error:#}");
    }
    assert!(
        response.is_empty(),
        "{api:?} v{version} response has {} bytes left over",
        response.len()
    );
}
