//! One client connection: frames in, responses out, in order.
//!
//! Kafka frames are a 4-byte big-endian size followed by that many bytes. The size is checked
//! before anything is buffered, so a client cannot make the broker allocate more than
//! `max_request_bytes` for one request. Requests are started in arrival order
//! ([`dispatch::start`]); the waiting part of each (see the crate docs) runs concurrently in a
//! `FuturesOrdered`, which yields responses in request order.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

use crate::dispatch::{self, Started};
use crate::Broker;

/// Responses that may wait at once on one connection before the broker stops reading more
/// requests from it (backpressure on pipelining clients).
const MAX_IN_FLIGHT: usize = 64;

/// Serves one connection until the client closes it, sends something invalid, or shutdown.
pub async fn handle(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let (mut reader, writer) = socket.into_split();
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut in_flight = FuturesOrdered::new();
    let max_frame = broker.config.max_request_bytes;

    loop {
        // Start every complete request already buffered before waiting for anything else.
        while in_flight.len() < MAX_IN_FLIGHT {
            match next_frame(&mut buffer, max_frame) {
                Ok(Some(frame)) => match dispatch::start(&broker, frame, peer).await {
                    Started::Respond(response) => in_flight.push_back(response),
                    Started::NoResponse => {}
                    Started::Close(reason) => {
                        tracing::warn!(%peer, %reason, "closing connection");
                        return finish(&mut writer, &mut in_flight).await;
                    }
                },
                Ok(None) => break,
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    return finish(&mut writer, &mut in_flight).await;
                }
            }
        }
        let can_read = in_flight.len() < MAX_IN_FLIGHT;
        tokio::select! {
            Some(response) = in_flight.next() => {
                if let Err(e) = write_response(&mut writer, response, &mut in_flight).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    return;
                }
            }
            read = reader.read_buf(&mut buffer), if can_read => {
                match read {
                    Ok(0) => return finish(&mut writer, &mut in_flight).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "read failed");
                        return;
                    }
                }
            }
            _ = shutdown.changed() => return finish(&mut writer, &mut in_flight).await,
        }
    }
}

/// Splits the next complete frame off `buffer`, or `None` when more bytes are needed.
/// Refuses a frame whose declared size is negative or above `max_frame` before buffering it.
fn next_frame(buffer: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, String> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    let size = usize::try_from(size).map_err(|_| format!("negative frame size {size}"))?;
    if size > max_frame {
        return Err(format!(
            "frame of {size} bytes exceeds max request size {max_frame}"
        ));
    }
    if buffer.len() < 4 + size {
        buffer.reserve(4 + size - buffer.len());
        return Ok(None);
    }
    buffer.advance(4);
    Ok(Some(buffer.split_to(size).freeze()))
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

    #[test]
    fn frames_are_split_only_when_complete() {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&[0, 0, 0, 3, b'a', b'b']);
        assert_eq!(next_frame(&mut buffer, 100), Ok(None));
        buffer.extend_from_slice(&[b'c', 0, 0]);
        assert_eq!(
            next_frame(&mut buffer, 100),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert_eq!(next_frame(&mut buffer, 100), Ok(None));
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn oversize_and_negative_frames_are_refused_before_buffering() {
        let mut buffer = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(next_frame(&mut buffer, 1024).is_err());
        assert!(
            buffer.capacity() < 1024,
            "nothing was reserved for the frame"
        );
        let mut negative = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(next_frame(&mut negative, 1024).is_err());
    }
}
