//! One client connection: frames in, responses out, in order.
//!
//! Kafka frames are a 4-byte big-endian size followed by that many bytes. The size is checked
//! before anything is buffered, so a client cannot make the broker take more than
//! `max_request_bytes` for one request. Memory follows the bytes that actually arrive: the
//! socket is read only once it is readable, into a buffer that grows with what was received,
//! and every byte read is first reserved from the broker-wide [`RequestBudget`]; a request
//! keeps its share until its response is written. Requests are started in arrival order
//! ([`dispatch::start`]); the waiting part of each (see the crate docs) runs concurrently in a
//! `FuturesOrdered`, which yields responses in request order.
//!
//! Two clocks close a connection: an idle one (nothing received and nothing in flight for
//! `connections_max_idle`) and a frame one (a frame must arrive whole within
//! `request_read_timeout` of its first byte, so a peer cannot hold memory and budget by
//! sending one byte at a time, and connections stuck waiting for budget give it back).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::dispatch::{self, Started};
use crate::limits::{RequestBudget, Reservation};
use crate::Broker;

/// Responses that may wait at once on one connection before the broker stops reading more
/// requests from it (backpressure on pipelining clients).
const MAX_IN_FLIGHT: usize = 64;

/// The most read from a socket at once, and the capacity the buffer is cut back to once
/// empty: an idle connection holds this much memory and no budget.
const READ_CHUNK: usize = 64 * 1024;

/// Serves one connection until the client closes it, sends something invalid, stays idle or
/// too slow, or shutdown.
pub async fn handle(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    budget: RequestBudget,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let (reader, writer) = socket.into_split();
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut frames = FrameReader::new(broker.config.max_request_bytes);
    let mut in_flight = FuturesOrdered::new();
    let idle_timeout = broker.config.connections_max_idle;
    let frame_timeout = broker.config.request_read_timeout;
    let mut last_activity = Instant::now();
    // Set while the socket has bytes for us but the budget has no room for them.
    let mut waiting_for_budget: Option<u32> = None;

    loop {
        // Start every complete request already buffered before waiting for anything else.
        while in_flight.len() < MAX_IN_FLIGHT {
            match frames.next_frame() {
                Ok(Some((frame, reservation))) => {
                    match dispatch::start(&broker, frame, peer).await {
                        Started::Respond(response) => in_flight.push_back(async move {
                            let bytes = response.await;
                            drop(reservation);
                            bytes
                        }),
                        Started::NoResponse => {}
                        Started::Close(reason) => {
                            tracing::warn!(%peer, %reason, "closing connection");
                            return finish(&mut writer, &mut in_flight).await;
                        }
                    }
                }
                Ok(None) => break,
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    return finish(&mut writer, &mut in_flight).await;
                }
            }
        }
        frames.release_spare_capacity();
        let can_read = in_flight.len() < MAX_IN_FLIGHT;
        let deadline = match frames.started_at() {
            // Not while reading is paused for responses: that wait is the broker's.
            Some(started) if can_read => Some((started + frame_timeout, Timeout::Frame)),
            None if in_flight.is_empty() => Some((last_activity + idle_timeout, Timeout::Idle)),
            _ => None,
        };
        let read = tokio::select! {
            Some(response) = in_flight.next() => {
                if let Err(e) = write_response(&mut writer, response, &mut in_flight).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    return;
                }
                last_activity = Instant::now();
                continue;
            }
            ready = reader.readable(), if can_read && waiting_for_budget.is_none() => {
                match ready {
                    Ok(()) => {
                        let step = frames.read_step();
                        match budget.try_reserve(step) {
                            Some(credit) => frames.read_from(&reader, credit),
                            None => {
                                waiting_for_budget = Some(step);
                                continue;
                            }
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            credit = budget.reserve(waiting_for_budget.unwrap_or(0)), if waiting_for_budget.is_some() => {
                waiting_for_budget = None;
                frames.read_from(&reader, credit)
            }
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
                return finish(&mut writer, &mut in_flight).await;
            }
            _ = shutdown.changed() => return finish(&mut writer, &mut in_flight).await,
        };
        match read {
            Ok(Read::Bytes) => last_activity = Instant::now(),
            Ok(Read::NotReady) => {}
            Ok(Read::Closed) => return finish(&mut writer, &mut in_flight).await,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read failed");
                return;
            }
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

/// What one read from the socket gave.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Bytes,
    /// The readiness was spurious; nothing was read.
    NotReady,
    /// The peer closed its side.
    Closed,
}

/// The read side of a connection: bytes received, split into frames, each with its share of
/// the request budget.
#[derive(Debug)]
struct FrameReader {
    buffer: BytesMut,
    max_frame: usize,
    /// Budget for exactly the bytes in `buffer`.
    held: Option<Reservation>,
    /// When the first byte of the frame at the front of the buffer arrived.
    started_at: Option<Instant>,
}

impl FrameReader {
    fn new(max_frame: usize) -> Self {
        FrameReader {
            buffer: BytesMut::with_capacity(READ_CHUNK),
            max_frame,
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
            return Err(format!(
                "frame of {size} bytes exceeds max request size {}",
                self.max_frame
            ));
        }
        Ok(Some(size))
    }

    /// How many bytes to read next: what the frame at the front still lacks (or a size
    /// prefix), at most [`READ_CHUNK`]. Bytes of the frames after it come along when they are
    /// already waiting, up to the chunk.
    fn read_step(&self) -> u32 {
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

    /// Reads what the socket has, up to the bytes `credit` covers, keeping exactly as much of
    /// the credit as was read. The buffer grows with the bytes (amortised doubling), never
    /// ahead of them.
    fn read_from(
        &mut self,
        reader: &OwnedReadHalf,
        mut credit: Reservation,
    ) -> std::io::Result<Read> {
        self.buffer.reserve(credit.len());
        let read = reader.try_read_buf(&mut (&mut self.buffer).limit(credit.len()));
        let n = match read {
            Ok(0) => return Ok(Read::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Read::NotReady),
            Err(e) => return Err(e),
        };
        if let Some(used) = credit.split_off(n) {
            match self.held.as_mut() {
                Some(held) => held.merge(used),
                None => self.held = Some(used),
            }
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

    fn reader_with(bytes: &[u8], max_frame: usize, budget: &RequestBudget) -> FrameReader {
        let mut frames = FrameReader::new(max_frame);
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

    #[tokio::test]
    async fn reads_keep_exactly_the_budget_of_the_bytes_read() {
        let (client, server) = tcp_pair().await;
        let (reader, _writer) = server.into_split();
        let budget = RequestBudget::new(1 << 20);
        let mut frames = FrameReader::new(1024);
        tokio::io::AsyncWriteExt::write_all(&mut { client }, &[0, 0, 0, 2, b'h', b'i'])
            .await
            .expect("write");
        reader.readable().await.expect("readable");
        let credit = budget.try_reserve(frames.read_step()).expect("free");
        assert_eq!(
            frames.read_from(&reader, credit).expect("read"),
            Read::Bytes
        );
        assert_eq!((frames.buffered(), held(&frames)), (6, 6));
        assert_eq!(budget.available_bytes(), (1 << 20) - 6);
        let (frame, reservation) = frames.next_frame().expect("valid").expect("complete");
        assert_eq!(&frame[..], b"hi");
        drop(reservation);
        assert_eq!(budget.available_bytes(), 1 << 20);
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
