//! A hostile or careless peer against a real `freshet broker` process: half-sent frames,
//! idle and slow connections, too many connections from one address, and a broker short of
//! file descriptors. Memory is read from the broker's `/proc/<pid>/status`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common;
use common::BrokerProcess;
use freshet_testkit::memory::Memory;

const MIB: u64 = 1024 * 1024;

/// An ApiVersions v0 request frame (size prefix included) with correlation id `id`.
fn api_versions_frame(id: i32) -> Vec<u8> {
    let client = b"hostile-test";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // version 0
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&(client.len() as i16).to_be_bytes());
    body.extend_from_slice(client);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// Sends ApiVersions and reads the answer's correlation id, or the error that prevented it.
fn ask_api_versions(stream: &mut TcpStream, id: i32) -> std::io::Result<i32> {
    stream.write_all(&api_versions_frame(id))?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    stream.read_exact(&mut body)?;
    Ok(i32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

/// How long until the broker closes `stream` (a read returns end of stream or a reset), or
/// `None` if it is still open after `limit`. Anything the broker sends first is a failure.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Some(start.elapsed()),
        Ok(_) => panic!("the broker answered a request it should not have read whole"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(start.elapsed()),
    }
}

#[test]
fn half_sent_frames_cost_the_bytes_sent_not_the_size_they_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let pid = broker.pid();
    let mut warm = connect(&broker.addr);
    ask_api_versions(&mut warm, 1).expect("a normal request is answered");
    let virtual_before = Memory::of(pid).virtual_mib;

    // 40 connections each announce a 100 MiB request and send 8 bytes of it.
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut stream = connect(&broker.addr);
        stream
            .write_all(&(100 * MIB as i32).to_be_bytes())
            .expect("size");
        stream.write_all(&[0; 8]).expect("8 bytes");
        stalled.push(stream);
    }
    // The broker is still serving others while they stall.
    let mut other = connect(&broker.addr);
    assert_eq!(ask_api_versions(&mut other, 2).expect("answered"), 2);
    let virtual_grown = Memory::of(pid).virtual_mib.saturating_sub(virtual_before);
    eprintln!("virtual memory grew by {virtual_grown} MiB");
    assert!(
        virtual_grown < 100,
        "40 half-sent 100 MiB frames reserved {virtual_grown} MiB of address space"
    );
}

#[test]
fn memory_of_large_requests_is_returned_when_their_connections_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let pid = broker.pid();
    let resident_before = Memory::of(pid).resident_mib;

    // Four connections each send 60 MiB of a 64 MiB request, then go away.
    let chunk = vec![0u8; MIB as usize];
    let mut senders = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&broker.addr);
        stream
            .write_all(&(64 * MIB as i32).to_be_bytes())
            .expect("size");
        for _ in 0..60 {
            stream.write_all(&chunk).expect("1 MiB");
        }
        senders.push(stream);
    }
    let resident_holding = Memory::of(pid).resident_mib;
    drop(senders);
    let mut resident_after = u64::MAX;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        resident_after = Memory::of(pid).resident_mib;
        if resident_after < resident_before + 64 {
            break;
        }
    }
    eprintln!(
        "resident: {resident_before} MiB before, {resident_holding} MiB holding 4 x 60 MiB, \
         {resident_after} MiB after they closed"
    );
    assert!(
        resident_after < resident_before + 64,
        "{resident_after} MiB still resident after the connections closed ({resident_before} MiB before)"
    );
}

#[test]
fn idle_connections_are_closed_and_busy_ones_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[("FRESHET_CONNECTIONS_MAX_IDLE_MS", "700")]);
    let mut idle = connect(&broker.addr);
    ask_api_versions(&mut idle, 1).expect("answered");
    let mut busy = connect(&broker.addr);
    let start = Instant::now();
    for id in 0..10 {
        assert_eq!(ask_api_versions(&mut busy, id).expect("still open"), id);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(start.elapsed() > Duration::from_millis(1400));
    let closed = closed_within(&mut idle, Duration::from_secs(10));
    assert!(
        closed.is_some(),
        "an idle connection was still open after 12 s"
    );
}

#[test]
fn a_request_that_does_not_arrive_in_time_closes_its_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[("FRESHET_REQUEST_READ_TIMEOUT_MS", "1000")]);

    // A frame that stalls after 8 bytes.
    let mut stalled = connect(&broker.addr);
    stalled
        .write_all(&api_versions_frame(1)[..8])
        .expect("8 bytes");
    let closed = closed_within(&mut stalled, Duration::from_secs(10));
    assert!(
        closed.is_some(),
        "a half-sent frame was still open after 10 s"
    );

    // A frame sent one byte every 150 ms would take ~4.5 s: it is cut off before it is whole.
    let frame = api_versions_frame(2);
    let mut dribbling = connect(&broker.addr);
    let mut cut_off = false;
    for byte in &frame {
        if dribbling.write_all(&[*byte]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        cut_off || closed_within(&mut dribbling, Duration::from_secs(5)).is_some(),
        "a request sent one byte at a time was read to the end"
    );
    let lines = broker.lines.lock().expect("lock").clone();
    assert!(
        lines.iter().any(|l| l.contains("not received whole")),
        "the broker logs why it closed: {lines:#?}"
    );
}

#[test]
fn connections_over_the_per_address_limit_are_closed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[("FRESHET_MAX_CONNECTIONS_PER_IP", "3")]);
    let mut admitted: Vec<TcpStream> = (0..3).map(|_| connect(&broker.addr)).collect();
    for (id, stream) in admitted.iter_mut().enumerate() {
        assert_eq!(
            ask_api_versions(stream, id as i32).expect("answered"),
            id as i32
        );
    }
    let mut fourth = connect(&broker.addr);
    let refused = closed_within(&mut fourth, Duration::from_secs(5));
    assert!(refused.is_some(), "the fourth connection was not closed");
    drop(admitted.pop());
    // The slot is freed when the broker sees the close; retry until it has.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect(&broker.addr);
        match ask_api_versions(&mut again, 9) {
            Ok(id) => {
                assert_eq!(id, 9);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no slot freed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_broker_short_of_descriptors_keeps_some_for_its_log_and_refuses_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start_with_open_files(dir.path(), &[], 256);
    // More connections than the process could ever hold.
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let mut stream = connect(&broker.addr);
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        match ask_api_versions(&mut stream, 1) {
            Ok(_) => streams.push(stream),
            Err(_) => refused += 1,
        }
    }
    eprintln!("{} connections served, {refused} refused", streams.len());
    assert!(
        refused > 0,
        "all 300 connections were served under a limit of 256 files"
    );
    assert!(
        streams.len() > 100,
        "only {} connections were served",
        streams.len()
    );

    // With every connection taken, the log can still open a topic's files: free one
    // connection and create a 16-partition topic through it (48 segment and index files).
    drop(streams.pop());
    std::thread::sleep(Duration::from_millis(300));
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        common::client_config(&broker.addr).create().expect("admin");
    let topic =
        rdkafka::admin::NewTopic::new("with-files", 16, rdkafka::admin::TopicReplication::Fixed(1));
    let created = futures::executor::block_on(
        admin.create_topics([&topic], &rdkafka::admin::AdminOptions::new()),
    )
    .expect("create topics");
    assert!(
        matches!(created.as_slice(), [Ok(_)]),
        "create failed: {created:?}"
    );
    let lines = broker.lines.lock().expect("lock").clone();
    assert!(
        !lines.iter().any(|l| l.contains("Too many open files")),
        "the broker ran out of descriptors: {lines:#?}"
    );
}

#[test]
fn accept_failures_are_logged_at_most_once_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A connection cap above the open-file limit lets accept itself fail.
    let broker = BrokerProcess::start_with_open_files(
        dir.path(),
        &[("FRESHET_MAX_CONNECTIONS", "100000")],
        128,
    );
    let start = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = TcpStream::connect(&broker.addr) {
            streams.push(stream);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(streams);
    // Once the descriptors are back, a new client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut fresh = connect(&broker.addr);
        fresh
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        if ask_api_versions(&mut fresh, 3).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no client served after descriptors came back"
        );
    }
    let seconds = start.elapsed().as_secs() + 1;
    let lines = broker.lines.lock().expect("lock").clone();
    let logged = lines.iter().filter(|l| l.contains("accept failed")).count() as u64;
    assert!(logged >= 1, "accept failures were not logged: {lines:#?}");
    assert!(
        logged <= seconds + 1,
        "{logged} accept-failure lines in {seconds} s"
    );
}
