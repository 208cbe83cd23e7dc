//! [`wait_for_broker`]: whether a Kafka broker answers at the bootstrap servers, asked in
//! seconds before a command starts.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{bootstrap_addresses, ClientError, KafkaConfig};
use crate::cluster::wire::{reach, Reach};

/// How long a command waits for a broker to answer at its bootstrap servers before it gives
/// up ([`wait_for_broker`]).
pub const BROKER_WAIT: Duration = Duration::from_secs(5);
/// How soon [`wait_for_broker`] tries a server again that did not answer as a broker.
const RECONNECT_EVERY: Duration = Duration::from_millis(200);

/// Waits, for at most `within`, until one of `kafka`'s bootstrap servers answers as a Kafka
/// broker: it takes a connection (and a TLS handshake when `kafka` uses TLS) and answers
/// ApiVersions, which every broker answers before any sign-in. Commands call it before they
/// start, so that a wrong address fails in seconds rather than after librdkafka's own
/// timeouts (a minute or more).
///
/// It refuses only when no server gave a sign of a broker. The servers are tried at once; one
/// that refuses the connection, fails the TLS handshake or answers something other than Kafka
/// (an HTTP proxy, say) is tried again every 200 ms, so a cluster still starting up is waited
/// for. A server that took the connection but has not answered by the deadline counts as a
/// broker that is up but slow.
pub async fn wait_for_broker(kafka: &KafkaConfig, within: Duration) -> Result<(), ClientError> {
    let deadline = Instant::now() + within;
    let mut attempts = JoinSet::new();
    for address in bootstrap_addresses(&kafka.bootstrap_servers) {
        attempts.spawn(first_answer(address, kafka.clone(), deadline));
    }
    let mut reasons = Vec::new();
    while let Some(attempt) = attempts.join_next().await {
        match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => reasons.push(reason),
            Err(error) => reasons.push(format!("the attempt failed: {error}")),
        }
    }
    if reasons.is_empty() {
        reasons.push("no server is named".into());
    }
    Err(ClientError::NoBroker {
        servers: kafka.bootstrap_servers.clone(),
        within,
        reasons: reasons.join("; "),
    })
}

/// Tries `address` until it answers as a broker (or takes a connection and stays silent)
/// or `deadline` passes; the last reason it did not, naming it.
async fn first_answer(
    address: String,
    kafka: KafkaConfig,
    deadline: Instant,
) -> Result<(), String> {
    loop {
        let failure = match reach(&address, &kafka, deadline).await {
            Reach::Broker | Reach::Silent => return Ok(()),
            Reach::Failed(reason) => reason,
        };
        if Instant::now() + RECONNECT_EVERY >= deadline {
            return Err(failure);
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on (bound, then closed).
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let address = listener.local_addr().expect("its address").to_string();
        drop(listener);
        address
    }

    #[tokio::test]
    async fn no_broker_fails_within_the_wait_naming_the_servers_and_the_flag() {
        let address = closed_port();
        let kafka = KafkaConfig::new(&address);
        let started = std::time::Instant::now();
        let error = wait_for_broker(&kafka, Duration::from_millis(500))
            .await
            .expect_err("nothing listens");
        assert!(started.elapsed() < Duration::from_secs(3), "{error}");
        let message = error.to_string();
        assert!(matches!(error, ClientError::NoBroker { .. }), "{error:?}");
        assert!(
            message.contains(&format!("at {address} within")),
            "{message}"
        );
        assert!(message.contains("--bootstrap-servers"), "{message}");
    }

    /// Answers every connection on `listener` with `answer(correlation id)` to its first
    /// request, then keeps it open.
    fn serve(listener: tokio::net::TcpListener, answer: fn(i32) -> Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // A request header starts with the API key, its version and the
                    // correlation id.
                    let mut header = [0u8; 12];
                    if stream.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let correlation =
                        i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
                    let _ = stream.write_all(&answer(correlation)).await;
                    let _ = stream.read_to_end(&mut Vec::new()).await;
                });
            }
        });
    }

    /// An ApiVersions v0 answer: no error, no APIs.
    fn api_versions(correlation: i32) -> Vec<u8> {
        let mut frame = 10i32.to_be_bytes().to_vec();
        frame.extend(correlation.to_be_bytes());
        frame.extend([0, 0, 0, 0, 0, 0]);
        frame
    }

    fn http_error(_: i32) -> Vec<u8> {
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec()
    }

    async fn listener() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let address = listener.local_addr().expect("its address").to_string();
        (listener, address)
    }

    #[tokio::test]
    async fn one_server_that_answers_as_a_broker_is_enough() {
        let (broker, address) = listener().await;
        serve(broker, api_versions);
        let kafka = KafkaConfig::new(format!("{},{address}", closed_port()));
        let started = std::time::Instant::now();
        wait_for_broker(&kafka, Duration::from_secs(5))
            .await
            .expect("the second server answers");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_broker_that_starts_late_or_answers_slowly_is_not_refused() {
        let late = closed_port();
        let starting = late.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let broker = tokio::net::TcpListener::bind(&starting)
                .await
                .expect("bound");
            serve(broker, api_versions);
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        wait_for_broker(&KafkaConfig::new(&late), Duration::from_secs(5))
            .await
            .expect("the broker that started late answers");

        // Takes the connection, never answers: up but slow.
        let (silent, address) = listener().await;
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        wait_for_broker(&KafkaConfig::new(&address), Duration::from_millis(500))
            .await
            .expect("a silent server is not refused");
    }

    #[tokio::test]
    async fn a_server_that_is_not_kafka_is_refused_with_what_it_did() {
        let (proxy, address) = listener().await;
        serve(proxy, http_error);
        let error = wait_for_broker(&KafkaConfig::new(&address), Duration::from_millis(800))
            .await
            .expect_err("an HTTP server is no broker");
        let message = error.to_string();
        assert!(
            message.contains(&format!("{address} answered, but not as a Kafka broker")),
            "{message}"
        );
    }
}
