//! Freshet child processes for the benchmarks: a broker, a tracker node. Each is this same
//! binary (`std::env::current_exe()`) started with another subcommand, so what is measured
//! runs in a process of its own exactly as it would be deployed, and the benchmark's own work
//! (generating, polling) is not counted in its memory.
//!
//! Every child is killed when its guard is dropped, including on an error or a panic, so a
//! failed benchmark never leaves a broker or a tracker running.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Stderr lines kept per child, to say why it failed.
const KEPT_STDERR_LINES: usize = 20;

/// A `freshet <subcommand>` child process that announced its address on stderr.
#[derive(Debug)]
pub(super) struct FreshetChild {
    child: Child,
    /// The word after the ready marker in the child's stderr.
    pub addr: String,
    /// When the process was spawned (before it was ready).
    pub spawned: Instant,
    recent_stderr: Arc<Mutex<VecDeque<String>>>,
}

impl FreshetChild {
    /// Spawns the binary with `args` and waits until a stderr line contains `marker`; the word
    /// after it is the child's address. Stderr keeps being drained afterwards so the child
    /// never blocks on a full pipe.
    pub fn start<I, S>(args: I, marker: &str) -> anyhow::Result<FreshetChild>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Ok(FreshetChild::start_announcing(args, marker, 1)?.0)
    }

    /// [`start`](Self::start) for a child that announces `count` lines with `marker` (a
    /// broker with several listeners): waits for all of them and returns what follows the
    /// marker on each, in order. `addr` is the first word of the first.
    pub fn start_announcing<I, S>(
        args: I,
        marker: &str,
        count: usize,
    ) -> anyhow::Result<(FreshetChild, Vec<String>)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let exe = std::env::current_exe().context("locating the freshet binary")?;
        let mut command = Command::new(exe);
        command
            .args(args)
            .env("FRESHET_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let stderr = child.stderr.take().context("child stderr")?;
        let recent_stderr = Arc::new(Mutex::new(VecDeque::new()));
        // From here on `guard` kills the child if waiting for the marker fails.
        let mut guard = FreshetChild {
            child,
            addr: String::new(),
            spawned,
            recent_stderr,
        };
        let mut lines = BufReader::new(stderr).lines();
        let mut announced = Vec::with_capacity(count);
        while announced.len() < count.max(1) {
            let Some(line) = lines.next() else {
                bail!(
                    "{command:?} exited before it was ready; its last stderr lines:\n{}",
                    guard.recent_stderr()
                );
            };
            let line = line.context("reading the child's stderr")?;
            match line.split(marker).nth(1) {
                Some(rest) => announced.push(rest.to_string()),
                None => guard.keep_line(line),
            }
        }
        guard.addr = announced
            .first()
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        let recent = Arc::clone(&guard.recent_stderr);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep(&recent, line);
            }
        });
        Ok((guard, announced))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the child has exited, with its status and last stderr lines.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the child process exited ({status}); its last stderr lines:\n{}",
                self.recent_stderr()
            );
        }
        Ok(())
    }

    /// Resident memory of the child, from `/proc/<pid>/status`.
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<u64>().ok())
            .with_context(|| format!("no VmRSS line in {path}"))?;
        Ok(kib * 1024)
    }

    pub fn recent_stderr(&self) -> String {
        let lines = self.recent_stderr.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn keep_line(&self, line: String) {
        keep(&self.recent_stderr, line);
    }
}

fn keep(recent: &Mutex<VecDeque<String>>, line: String) {
    let mut lines = recent.lock().unwrap_or_else(|e| e.into_inner());
    if lines.len() == KEPT_STDERR_LINES {
        lines.pop_front();
    }
    lines.push_back(line);
}

impl Drop for FreshetChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `freshet broker` child process on a free port in a temporary data directory, which is
/// removed after the broker is killed.
#[derive(Debug)]
pub(super) struct ChildBroker {
    // Declared before the directory: fields drop in order, so the broker is gone before its
    // data directory is removed.
    process: FreshetChild,
    _dir: tempfile::TempDir,
}

impl ChildBroker {
    /// Starts a broker with its defaults plus `extra_args`.
    pub fn start(extra_args: &[&str]) -> anyhow::Result<ChildBroker> {
        let dir = tempfile::tempdir().context("temporary data directory")?;
        let mut args: Vec<&OsStr> = ["broker", "--kafka-listen", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(OsStr::new)
            .collect();
        args.push(dir.path().as_os_str());
        args.extend(extra_args.iter().map(OsStr::new));
        let process = FreshetChild::start(args, "Kafka protocol on ")?;
        Ok(ChildBroker { process, _dir: dir })
    }

    /// Starts a broker on `dir`, prepared by the caller (users added, say), with one Kafka
    /// listener per entry of `listeners` (`[PROTOCOL://]host:port`) plus `extra_args`; with
    /// it, each listener's protocol and bound address, as the broker announced them.
    pub fn start_listeners(
        dir: tempfile::TempDir,
        listeners: &[&str],
        extra_args: &[&str],
    ) -> anyhow::Result<(ChildBroker, Vec<(String, String)>)> {
        let mut args: Vec<&OsStr> = vec![OsStr::new("broker")];
        for listener in listeners {
            args.push(OsStr::new("--kafka-listen"));
            args.push(OsStr::new(listener));
        }
        args.push(OsStr::new("--data-dir"));
        args.push(dir.path().as_os_str());
        args.extend(extra_args.iter().map(OsStr::new));
        let (process, announced) =
            FreshetChild::start_announcing(args, "Kafka protocol on ", listeners.len())?;
        // "127.0.0.1:45251 (SASL_SSL, advertised as ...": the address, then the protocol.
        let bound = announced
            .iter()
            .filter_map(|rest| {
                let mut words = rest.split_whitespace();
                let addr = words.next()?.to_string();
                let protocol = words.next()?.trim_matches(|c| c == '(' || c == ',');
                Some((protocol.to_string(), addr))
            })
            .collect();
        Ok((ChildBroker { process, _dir: dir }, bound))
    }

    pub fn addr(&self) -> &str {
        &self.process.addr
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        self.process.resident_bytes()
    }
}

/// `GET path` on `addr` (HTTP/1.1, one connection per request): the status code and body.
pub(super) fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
