//! A long-running `freshet` child process (a tracker node, `freshet up`) whose stderr is
//! echoed and kept, and a minimal HTTP/1.1 GET for its API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    label: String,
    /// The address printed after the ready marker.
    pub addr: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `command` and waits until it prints `marker` on stderr; the word after the
    /// marker is its address.
    pub fn start(mut command: Command, label: &str, marker: &str) -> Daemon {
        command.stderr(Stdio::piped());
        let mut child = command.spawn().expect("start freshet");
        let stderr = child.stderr.take().expect("stderr");
        let mut stderr = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let addr = loop {
            let line = match stderr.next() {
                Some(line) => line.expect("read stderr"),
                None => panic!("{label} exited before it was ready; stderr: {seen:#?}"),
            };
            eprintln!("[{label}] {line}");
            if let Some(rest) = line.split(marker).nth(1) {
                break rest.split_whitespace().next().expect("address").to_string();
            }
            seen.push(line);
        };
        let lines = Arc::new(Mutex::new(seen));
        {
            let lines = lines.clone();
            let label = label.to_string();
            std::thread::spawn(move || {
                for line in stderr.map_while(Result::ok) {
                    eprintln!("[{label}] {line}");
                    lines.lock().expect("lock").push(line);
                }
            });
        }
        Daemon {
            child,
            label: label.into(),
            addr,
            lines,
        }
    }

    /// The Kafka address the process printed before it was ready (its first listener).
    pub fn kafka_addr(&self) -> String {
        let lines = self.lines.lock().expect("lock");
        lines
            .iter()
            .find_map(|line| line.split("Kafka protocol on ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the Kafka address was printed")
            .to_string()
    }

    /// SIGKILL: no last checkpoint, no goodbye to the group.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "{} exited with {status}", self.label);
                return;
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.label);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status code, header lines and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpAnswer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

/// A minimal HTTP/1.1 request on `addr`, with a JSON body if one is given.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> std::io::Result<HttpAnswer> {
    http_with_headers(addr, method, path, &[], json)
}

/// [`http`] with extra header lines (`Authorization`, say).
pub fn http_with_headers(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: Option<&str>,
) -> std::io::Result<HttpAnswer> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = json.unwrap_or_default();
    let content_type = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content_type}\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok(HttpAnswer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// `GET path` on `addr`: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http(addr, "GET", path, None).map(|answer| (answer.status, answer.body))
}

/// `GET path` parsed as JSON; `None` while the node is not answering.
pub fn get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(addr, path).ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}
