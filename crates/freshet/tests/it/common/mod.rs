//! Helpers shared by the tests that run the real `freshet` binary.
#![allow(dead_code)] // each test file uses its own subset

pub mod daemon;
pub mod prometheus;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The binary with none of the caller's `FRESHET_*` settings leaking in.
pub fn freshet() -> Command {
    without_freshet_env(Command::new(env!("CARGO_BIN_EXE_freshet")))
}

/// `sh -c SCRIPT freshet`: the script runs the binary as `"$0" "$@"` after setting something
/// up (a resource limit, say); arguments added to the command reach the binary.
pub fn freshet_through_shell(script: &str) -> Command {
    let mut command = without_freshet_env(Command::new("sh"));
    command
        .args(["-c", script])
        .arg(env!("CARGO_BIN_EXE_freshet"));
    command
}

fn without_freshet_env(mut command: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FRESHET_") {
            command.env_remove(name);
        }
    }
    command
}

/// `127.0.0.1:<port>` where nothing listens: a port bound, then closed again.
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("its address").to_string();
    drop(listener);
    address
}

/// Runs `command`, which must fail because no broker answers at `address`: within 10 s
/// (librdkafka alone would wait a minute), with one error line that names the address and
/// how to point the command elsewhere. Returns its stderr.
pub fn assert_fails_fast_without_a_broker(command: Command, address: &str) -> String {
    let started = Instant::now();
    let output = run(command, Duration::from_secs(30));
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "failed after {took:?}: {stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    for wanted in [
        format!("no Kafka broker answered at {address} within 5 s"),
        "--bootstrap-servers".to_string(),
        "FRESHET_BOOTSTRAP_SERVERS".to_string(),
    ] {
        assert!(errors[0].contains(&wanted), "{wanted:?} in {stderr}");
    }
    stderr
}

/// Runs a short-lived command, killing it if it is still running after `limit`.
pub fn run(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start freshet");
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(limit).is_err() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let _ = waiter.join();
        panic!("freshet did not exit within {limit:?}");
    }
    waiter
        .join()
        .expect("waiter thread")
        .expect("freshet output")
}

/// A `freshet broker` child process whose stderr is collected line by line.
pub struct BrokerProcess {
    child: Child,
    pub addr: String,
    /// Every stderr line so far.
    pub lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl BrokerProcess {
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> BrokerProcess {
        Self::start_on(data_dir, "127.0.0.1:0", env)
    }

    /// Starts the broker listening on `listen` (a fixed port lets clients outlive restarts).
    pub fn start_on(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> BrokerProcess {
        let mut command = freshet();
        command.args(["broker", "--kafka-listen", listen, "--data-dir"]);
        command.arg(data_dir);
        Self::spawn(command, env)
    }

    /// Starts the broker under an open-file limit of `limit` (soft and hard, as `ulimit -n`).
    pub fn start_with_open_files(
        data_dir: &Path,
        env: &[(&str, &str)],
        limit: u32,
    ) -> BrokerProcess {
        let mut command =
            freshet_through_shell(&format!("ulimit -n {limit} && exec \"$0\" \"$@\""));
        command.args(["broker", "--kafka-listen", "127.0.0.1:0", "--data-dir"]);
        command.arg(data_dir);
        Self::spawn(command, env)
    }

    fn spawn(mut command: Command, env: &[(&str, &str)]) -> BrokerProcess {
        command.env("FRESHET_LOG", "info").stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start freshet broker");
        let stderr = child.stderr.take().expect("stderr");
        let mut stderr = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let line = match stderr.next() {
                Some(line) => line.expect("read stderr"),
                None => panic!("broker exited before listening; stderr: {seen:#?}"),
            };
            eprintln!("[broker] {line}");
            if let Some(rest) = line.split("Kafka protocol on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_string();
            }
            seen.push(line);
        };
        let lines = Arc::new(Mutex::new(seen));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in stderr.map_while(Result::ok) {
                    eprintln!("[broker] {line}");
                    lines.lock().expect("lock").push(line);
                }
            })
        };
        BrokerProcess {
            child,
            addr,
            lines,
            reader: Some(reader),
        }
    }

    /// Sends SIGTERM and waits (with a deadline) for the process to exit. Returns its status
    /// and everything it wrote to stderr.
    pub fn terminate(mut self, limit: Duration) -> (ExitStatus, Duration, Vec<String>) {
        let sent = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM failed: {kill}");
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the broker") {
                break status;
            }
            assert!(
                sent.elapsed() < limit,
                "the broker did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = sent.elapsed();
        // stderr is at EOF now; the reader thread ends by itself.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        let lines = self.lines.lock().expect("lock").clone();
        (status, took, lines)
    }
}

impl BrokerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (with a deadline) for the process to exit by itself, e.g. at a crash point.
    #[allow(dead_code)] // Not every test binary sharing this module crashes the broker.
    pub fn wait_for_exit(mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the broker") {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the broker did not exit by itself within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process gets no chance to flush or close anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client_config(addr: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("broker.address.family", "v4");
    config
}

/// Reads every record of partition 0 of `topic` from the beginning: (offset, value) pairs.
pub fn read_all(addr: &str, topic: &str) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", "cli-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, TIMEOUT)
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let mut next = low;
    let deadline = Instant::now() + Duration::from_secs(30);
    while next < high {
        assert!(
            Instant::now() < deadline,
            "reading back stalled at offset {next} of {high}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("no consumer error");
            let value =
                String::from_utf8(message.payload().expect("value").to_vec()).expect("utf8");
            records.push((message.offset(), value));
            next = message.offset() + 1;
        }
    }
    records
}
