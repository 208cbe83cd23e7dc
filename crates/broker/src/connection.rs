//! One client connection: frames in, responses out, in order.
//!
//! Kafka frames are a 4-byte big-endian size followed by that many bytes. The size is checked
//! before anything is buffered, so a client cannot make the broker take more than
//! `max_request_bytes` for one request. Memory follows the bytes that actually arrive: the
//! buffer grows with what was received, and every byte read is first reserved from the
//! broker-wide [`RequestBudget`]; a request keeps its share until its response is written.
//! Requests are started in arrival order ([`dispatch::start`]); the waiting part of each (see
//! the crate docs) runs concurrently in a `FuturesOrdered`, which yields responses in request
//! order.
//!
//! The same loop serves plain TCP and TLS streams, so it cannot wait for the socket to be
//! readable before reserving: it holds a small credit of budget ahead of the bytes (one read's
//! worth, kept across iterations), reserved while waiting for nothing else. An idle connection
//! holds `IDLE_STEP` of budget; one with a frame under way at most `READ_CHUNK`.
//!
//! Two clocks close a connection: an idle one (nothing received and nothing in flight for
//! `connections_max_idle`) and a frame one (a frame must arrive whole within
//! `request_read_timeout` of its first byte, so a peer cannot hold memory and budget by
//! sending one byte at a time, and connections stuck waiting for budget give it back).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::time::Instant;

use crate::dispatch::{self, PendingResponse, Started};
use crate::limits::{RequestBudget, Reservation};
use crate::listener::SecurityProtocol;
use crate::session::Session;
use crate::Broker;

/// Responses that may wait at once on one connection before the broker stops reading more
/// requests from it (backpressure on pipelining clients).
const MAX_IN_FLIGHT: usize = 64;

/// The most read from a socket at once, and the capacity the buffer is cut back to once
/// empty: an idle connection holds this much memory.
const READ_CHUNK: usize = 64 * 1024;

/// The budget an idle connection holds for its next read: enough for most requests whole,
/// small enough that many thousands of idle connections leave the budget to busy ones.
const IDLE_STEP: usize = 4 * 1024;

/// Serves one connection (plain TCP or TLS) until the client closes it, sends something
/// invalid, stays idle or too slow, or shutdown.
pub async fn handle<S>(
    broker: Arc<Broker>,
    stream: S,
    mut session: Session,
    budget: RequestBudget,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Reads go straight to the stream underneath (`get_mut`): reading and writing never
    // overlap, as responses are written between reads.
    let mut stream = BufWriter::with_capacity(64 * 1024, stream);
    let peer = session.peer;
    let protocol = session.listener.protocol();
    let mut frames = FrameReader::new(broker.config.max_request_bytes, protocol);
    let mut in_flight = FuturesOrdered::new();
    let idle_timeout = broker.config.connections_max_idle;
    let frame_timeout = broker.config.request_read_timeout;
    let mut last_activity = Instant::now();
    // Budget reserved for the next read, kept until bytes use it.
    let mut credit: Option<Reservation> = None;

    loop {
        // Start every complete request already buffered before waiting for anything else.
        while in_flight.len() < MAX_IN_FLIGHT {
            match frames.next_frame() {
                Ok(Some((frame, reservation))) => {
                    let (response, close) =
                        match dispatch::start(&broker, frame, &mut session).await {
                            Started::Respond(response) => (response, None),
                            Started::RespondAndClose(response, reason) => {
                                (ready_response(response), Some(reason))
                            }
                            Started::NoResponse => continue,
                            Started::Close(reason) => {
                                tracing::warn!(%peer, %reason, "closing connection");
                                return finish(&mut stream, &mut in_flight).await;
                            }
                        };
                    in_flight.push_back(async move {
                        let bytes = response.await;
                        drop(reservation);
                        bytes
                    });
                    if let Some(reason) = close {
                        tracing::info!(%peer, %reason, "closing connection after the response");
                        return finish(&mut stream, &mut in_flight).await;
                    }
                }
                Ok(None) => break,
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    return finish(&mut stream, &mut in_flight).await;
                }
            }
        }
        frames.release_spare_capacity();
        let step = frames.read_step();
        fit_credit(&mut credit, step, &budget);
        let can_read = in_flight.len() < MAX_IN_FLIGHT;
        let deadline = match frames.started_at() {
            // Not while reading is paused for responses: that wait is the broker's.
            Some(started) if can_read => Some((started + frame_timeout, Timeout::Frame)),
            None if in_flight.is_empty() => Some((last_activity + idle_timeout, Timeout::Idle)),
            _ => None,
        };
        let read = tokio::select! {
            Some(response) = in_flight.next() => {
                if let Err(e) = write_response(&mut stream, response, &mut in_flight).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    return;
                }
                last_activity = Instant::now();
                continue;
            }
            reserved = budget.reserve(step), if can_read && credit.is_none() => {
                credit = Some(reserved);
                continue;
            }
            read = frames.read_from(stream.get_mut(), &mut credit), if can_read && credit.is_some() => read,
            () = sleep_until(deadline.map(|(at, _)| at)), if deadline.is_some() => {
                let timeout = deadline.map_or(Timeout::Idle, |(_, kind)| kind);
                broker.metrics.connection_timed_out(timeout.is_idle());
                match timeout {
                    Timeout::Idle => tracing::debug!(%peer, ?idle_timeout, "closing idle connection"),
                    Timeout::Frame => tracing::warn!(
                        %peer,
                        received = frames.buffered(),
                        "closing connection: request not received whole within {frame_timeout:?}"
                    ),
                }
                return finish(&mut stream, &mut in_flight).await;
            }
            _ = shutdown.changed() => return finish(&mut stream, &mut in_flight).await,
        };
        match read {
            Ok(Read::Bytes) => last_activity = Instant::now(),
            Ok(Read::Closed) => return finish(&mut stream, &mut in_flight).await,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read failed");
                return;
            }
        }
    }
}

fn ready_response(response: Bytes) -> PendingResponse {
    Box::pin(std::future::ready(response))
}

/// Brings the credit for the next read to `step` bytes when the budget has room now: a new
/// credit, or a small remainder topped up (one larger read instead of a short one); gives
/// back what an idle connection should not hold. Without room, a missing credit is waited
/// for by the connection loop, in turn with other connections.
fn fit_credit(credit: &mut Option<Reservation>, step: u32, budget: &RequestBudget) {
    let Some(held) = credit.as_mut() else {
        *credit = budget.try_reserve(step);
        return;
    };
    let step = step as usize;
    if held.len() > step {
        drop(held.split_off(held.len() - step));
    } else if held.len() < step {
        let missing = u32::try_from(step - held.len()).unwrap_or(u32::MAX);
        if let Some(more) = budget.try_reserve(missing) {
            held.merge(more);
        }
    }
}

/// Which clock closed a connection.
#[derive(Clone, Copy, Debug)]
enum Timeout {
    Idle,
    Frame,
}

impl Timeout {
    fn is_idle(self) -> bool {
        matches!(self, Timeout::Idle)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What one read from the stream gave.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Bytes,
    /// The peer closed its side.
    Closed,
}

/// The read side of a connection: bytes received, split into frames, each with its share of
/// the request budget.
#[derive(Debug)]
struct FrameReader {
    buffer: BytesMut,
    max_frame: usize,
    /// The listener's protocol, to recognise a TLS client on a listener without TLS.
    protocol: SecurityProtocol,
    /// Budget for exactly the bytes in `buffer`.
    held: Option<Reservation>,
    /// When the first byte of the frame at the front of the buffer arrived.
    started_at: Option<Instant>,
}

impl FrameReader {
    fn new(max_frame: usize, protocol: SecurityProtocol) -> Self {
        FrameReader {
            buffer: BytesMut::with_capacity(READ_CHUNK),
            max_frame,
            protocol,
            held: None,
            started_at: None,
        }
    }

    /// Splits the next complete frame off the buffer, with the budget its bytes hold, or
    /// `None` when more bytes are needed. Refuses a frame whose declared size is negative or
    /// above `max_frame` before buffering it.
    fn next_frame(&mut self) -> Result<Option<(Bytes, Option<Reservation>)>, String> {
        let Some(size) = self.front_frame_size()? else {
            return Ok(None);
        };
        if self.buffer.len() < 4 + size {
            return Ok(None);
        }
        let reservation = self.held.as_mut().and_then(|held| held.split_off(4 + size));
        self.buffer.advance(4);
        let frame = self.buffer.split_to(size).freeze();
        // The next frame's clock starts with its first byte, which may already be here.
        self.started_at = (!self.buffer.is_empty()).then(Instant::now);
        Ok(Some((frame, reservation)))
    }

    /// The declared size of the frame at the front, once its 4 size bytes are here.
    fn front_frame_size(&self) -> Result<Option<usize>, String> {
        let Some(prefix) = self.buffer.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let size = usize::try_from(size).map_err(|_| format!("negative frame size {size}"))?;
        if size > self.max_frame {
            if !self.protocol.uses_tls() && is_tls_handshake(prefix) {
                return Err(format!(
                    "TLS handshake received on a {} listener: the client is configured for {}",
                    self.protocol,
                    self.protocol.with_tls()
                ));
            }
            return Err(format!(
                "frame of {size} bytes exceeds max request size {}",
                self.max_frame
            ));
        }
        Ok(Some(size))
    }

    /// How many bytes to read next: what the frame at the front still lacks (or a size
    /// prefix), at most [`READ_CHUNK`]. Bytes of the frames after it come along when they are
    /// already waiting, up to the chunk. With nothing buffered, [`IDLE_STEP`]: the budget an
    /// idle connection holds.
    fn read_step(&self) -> u32 {
        if self.buffer.is_empty() {
            return IDLE_STEP as u32;
        }
        let missing = match self.front_frame_size() {
            Ok(Some(size)) => (4 + size).saturating_sub(self.buffer.len()),
            _ => 4,
        };
        // Small frames come in bunches: a whole chunk costs no more than 4 bytes to read.
        let step = if missing < READ_CHUNK {
            READ_CHUNK
        } else {
            missing.min(READ_CHUNK)
        };
        u32::try_from(step).unwrap_or(u32::MAX)
    }

    /// Reads what the stream has, up to the bytes `credit` covers, moving the budget of the
    /// bytes read from the credit to the buffer (an emptied credit is dropped). The buffer
    /// grows with the bytes (amortised doubling), never ahead of them by more than the
    /// credit. Cancel-safe: nothing is read unless the read completes. Without credit, waits
    /// forever (the connection loop reserves some first).
    async fn read_from<R>(
        &mut self,
        stream: &mut R,
        credit: &mut Option<Reservation>,
    ) -> std::io::Result<Read>
    where
        R: AsyncRead + Unpin,
    {
        let Some(available) = credit.as_mut().filter(|c| !c.is_empty()) else {
            return std::future::pending().await;
        };
        let limit = available.len();
        self.buffer.reserve(limit);
        let n = match stream.read_buf(&mut (&mut self.buffer).limit(limit)).await {
            Ok(0) => return Ok(Read::Closed),
            Ok(n) => n,
            // A TLS peer that closes without close_notify (librdkafka does): as good as
            // closed, since a Kafka frame says where it ends and no truncation goes unseen.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Read::Closed),
            Err(e) => return Err(e),
        };
        if let Some(used) = available.split_off(n) {
            match self.held.as_mut() {
                Some(held) => held.merge(used),
                None => self.held = Some(used),
            }
        }
        if available.is_empty() {
            *credit = None;
        }
        if self.started_at.is_none() {
            self.started_at = Some(Instant::now());
        }
        Ok(Read::Bytes)
    }

    fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Lets go of the memory of a large frame once it has been handed on, so an idle
    /// connection holds [`READ_CHUNK`] at most.
    fn release_spare_capacity(&mut self) {
        if self.buffer.is_empty() && self.buffer.capacity() > READ_CHUNK {
            self.buffer = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

/// Whether a frame's first bytes are a TLS handshake record (content type 22, version 3.x)
/// rather than a size: a client speaking TLS to a listener without it.
fn is_tls_handshake(prefix: &[u8]) -> bool {
    matches!(prefix, [0x16, 0x03, ..])
}

/// Writes one response and any others already finished, then flushes once.
async fn write_response<W, F>(
    writer: &mut BufWriter<W>,
    first: Bytes,
    in_flight: &mut FuturesOrdered<F>,
) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    F: std::future::Future<Output = Bytes>,
{
    writer.write_all(&first).await?;
    // Batch ready responses into one flush; stop at the first still-pending one.
    while let Some(Some(next)) = futures::FutureExt::now_or_never(in_flight.next()) {
        writer.write_all(&next).await?;
    }
    writer.flush().await
}

/// Sends the responses of requests already accepted (their effects happened) before closing.
async fn finish<W, F>(writer: &mut BufWriter<W>, in_flight: &mut FuturesOrdered<F>)
where
    W: tokio::io::AsyncWrite + Unpin,
    F: std::future::Future<Output = Bytes>,
{
    while let Some(response) = in_flight.next().await {
        if writer.write_all(&response).await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    fn reader_with(bytes: &[u8], max_frame: usize, budget: &RequestBudget) -> FrameReader {
        let mut frames = FrameReader::new(max_frame, SecurityProtocol::Plaintext);
        frames.buffer.extend_from_slice(bytes);
        frames.held = budget.try_reserve(bytes.len() as u32);
        frames
    }

    fn held(frames: &FrameReader) -> usize {
        frames.held.as_ref().map_or(0, Reservation::len)
    }

    #[test]
    fn frames_are_split_only_when_complete_and_take_their_budget_along() {
        let budget = RequestBudget::new(1 << 20);
        let mut frames = reader_with(&[0, 0, 0, 3, b'a', b'b'], 100, &budget);
        assert!(frames.next_frame().expect("valid").is_none());
        frames.buffer.extend_from_slice(&[b'c', 0, 0]);
        frames
            .held
            .as_mut()
            .expect("held")
            .merge(budget.try_reserve(3).expect("free"));
        let (frame, reservation) = frames.next_frame().expect("valid").expect("complete");
        assert_eq!(frame, Bytes::from_static(b"abc"));
        assert_eq!(reservation.map(|r| r.len()), Some(7));
        assert!(frames.next_frame().expect("valid").is_none());
        assert_eq!((frames.buffered(), held(&frames)), (2, 2));
        assert!(frames.started_at().is_some(), "the next frame has begun");
    }

    #[test]
    fn oversize_and_negative_frames_are_refused_before_buffering() {
        let budget = RequestBudget::new(1 << 20);
        let mut frames = reader_with(&[0x7f, 0xff, 0xff, 0xff], 1024, &budget);
        assert!(frames.next_frame().is_err());
        assert!(frames.buffer.capacity() <= READ_CHUNK);
        let mut negative = reader_with(&[0xff, 0xff, 0xff, 0xfe], 1024, &budget);
        assert!(negative.next_frame().is_err());
    }

    #[test]
    fn a_large_frame_is_read_a_chunk_at_a_time() {
        let budget = RequestBudget::new(1 << 30);
        let declared = 100 * 1024 * 1024;
        let mut frames = reader_with(&(declared as i32).to_be_bytes(), declared, &budget);
        assert_eq!(frames.read_step() as usize, READ_CHUNK);
        let small = reader_with(&[0, 0, 0, 10], 100, &budget);
        assert_eq!(
            small.read_step() as usize,
            READ_CHUNK,
            "small frames read in bunches"
        );
        frames.buffer.extend_from_slice(&[0; 8]);
        assert!(frames.buffer.capacity() <= 2 * READ_CHUNK);
    }

    #[test]
    fn an_emptied_buffer_gives_its_memory_and_budget_back() {
        let budget = RequestBudget::new(1 << 30);
        let size = 1 << 20;
        let mut bytes = (size as i32).to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(7u8, size));
        let mut frames = reader_with(&bytes, size, &budget);
        let (frame, reservation) = frames.next_frame().expect("valid").expect("complete");
        assert_eq!(frame.len(), size);
        frames.release_spare_capacity();
        assert!(frames.buffer.capacity() <= READ_CHUNK);
        assert_eq!(held(&frames), 0);
        drop(reservation);
        assert_eq!(budget.available_bytes(), 1 << 30);
    }

    #[test]
    fn a_tls_handshake_on_a_plaintext_listener_is_named() {
        let budget = RequestBudget::new(1 << 20);
        // The first bytes of a ClientHello: handshake record, TLS 1.0 record version.
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
        let error = reader_with(&hello, 1024, &budget)
            .next_frame()
            .expect_err("refused");
        assert_eq!(
            error,
            "TLS handshake received on a PLAINTEXT listener: the client is configured for SSL"
        );
        let mut sasl = reader_with(&hello, 1024, &budget);
        sasl.protocol = SecurityProtocol::SaslPlaintext;
        let error = sasl.next_frame().expect_err("refused");
        assert!(
            error.ends_with("the client is configured for SASL_SSL"),
            "{error}"
        );
        let mut tls = reader_with(&hello, 1024, &budget);
        tls.protocol = SecurityProtocol::Ssl;
        let error = tls.next_frame().expect_err("refused");
        assert!(error.contains("exceeds max request size"), "{error}");
    }

    #[test]
    fn an_idle_connection_reads_and_holds_a_small_step() {
        let budget = RequestBudget::new(1 << 20);
        let frames = FrameReader::new(1024, SecurityProtocol::Plaintext);
        assert_eq!(frames.read_step() as usize, IDLE_STEP);
        let mut credit = budget.try_reserve(READ_CHUNK as u32);
        fit_credit(&mut credit, frames.read_step(), &budget);
        assert_eq!(credit.as_ref().map(Reservation::len), Some(IDLE_STEP));
        assert_eq!(budget.available_bytes(), (1 << 20) - IDLE_STEP);
        fit_credit(&mut credit, READ_CHUNK as u32, &budget);
        assert_eq!(credit.as_ref().map(Reservation::len), Some(READ_CHUNK));
        let mut none = None;
        fit_credit(&mut none, IDLE_STEP as u32, &budget);
        assert_eq!(none.as_ref().map(Reservation::len), Some(IDLE_STEP));
        let scarce = RequestBudget::new(100);
        let mut none = None;
        fit_credit(&mut none, IDLE_STEP as u32, &scarce);
        assert!(none.is_none(), "waited for by the connection loop instead");
    }

    #[tokio::test]
    async fn reads_keep_exactly_the_budget_of_the_bytes_read() {
        let (client, server) = tcp_pair().await;
        let mut server = server;
        let budget = RequestBudget::new(1 << 20);
        let mut frames = FrameReader::new(1024, SecurityProtocol::Plaintext);
        tokio::io::AsyncWriteExt::write_all(&mut { client }, &[0, 0, 0, 2, b'h', b'i'])
            .await
            .expect("write");
        let mut credit = budget.try_reserve(frames.read_step());
        assert_eq!(
            frames
                .read_from(&mut server, &mut credit)
                .await
                .expect("read"),
            Read::Bytes
        );
        assert_eq!((frames.buffered(), held(&frames)), (6, 6));
        assert_eq!(credit.as_ref().map(Reservation::len), Some(IDLE_STEP - 6));
        drop(credit);
        assert_eq!(budget.available_bytes(), (1 << 20) - 6);
        let (frame, reservation) = frames.next_frame().expect("valid").expect("complete");
        assert_eq!(&frame[..], b"hi");
        drop(reservation);
        assert_eq!(budget.available_bytes(), 1 << 20);
    }

    #[tokio::test]
    async fn a_used_up_credit_is_dropped_and_a_closed_peer_is_seen() {
        let (client, mut server) = tcp_pair().await;
        let budget = RequestBudget::new(1 << 20);
        let mut frames = FrameReader::new(1024, SecurityProtocol::Plaintext);
        let mut client = client;
        tokio::io::AsyncWriteExt::write_all(&mut client, &[0, 0, 0, 2, b'h', b'i'])
            .await
            .expect("write");
        drop(client);
        let mut credit = budget.try_reserve(4);
        let read = frames.read_from(&mut server, &mut credit).await;
        assert_eq!(read.expect("read"), Read::Bytes);
        assert!(credit.is_none(), "all 4 bytes of credit were used");
        let mut credit = budget.try_reserve(READ_CHUNK as u32);
        let read = frames.read_from(&mut server, &mut credit).await;
        assert_eq!(read.expect("read"), Read::Bytes);
        let read = frames.read_from(&mut server, &mut credit).await;
        assert_eq!(read.expect("read"), Read::Closed);
        assert_eq!(frames.buffered(), 6);
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }
}
