//! End-to-end: `fcgi exporter` and `fcgi status --format prometheus`
//! against a private php-fpm, a silent fake server and nothing at all; the
//! metrics are read with the Prometheus text parser of the official Python
//! client (`prometheus_client`, installed by scripts/ensure-deps.sh).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fcgi;
use fcgi_testkit::fake::silent;
use fcgi_testkit::{FakeServer, PhpFpm};
use serde_json::Value;

/// How long the exporter may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `fcgi exporter --listen 127.0.0.1:0 ...`, killed on drop.
struct Exporter {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Exporter {
    fn start(args: &[&str]) -> Exporter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fcgi"))
            .args(["exporter", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run fcgi exporter");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok(addr) = rx.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            panic!("fcgi exporter did not start; log:\n{}", log.lock().unwrap());
        };
        Exporter { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it has `lines` lines containing `needle` (the reader
    /// thread may lag behind the response); panics after a while.
    fn wait_log(&self, needle: &str, lines: usize) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= lines {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{lines} x {needle:?} in the log: {log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// GET `path`: the status code and the body.
    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path)
    }

    /// GET /metrics, checked to be 200 and parsed.
    fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        parse_metrics(&body)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET; the server closes after the response.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the exporter");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// One sample: its metric family's type, and its value, by name and labels.
#[derive(Debug)]
struct Metrics {
    /// Family name (as the parser names it) -> type.
    types: BTreeMap<String, String>,
    /// Samples: (sample name, sorted labels) -> value.
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// The value of `name` with (at least) these labels; panics when none
    /// or several match.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?} in {:#?}", self.samples);
        found[0]
    }

    fn count(&self, name: &str) -> usize {
        self.samples.iter().filter(|(n, _, _)| n == name).count()
    }
}

const PARSER: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("prometheus_client is missing: install it with `python3 -m pip install prometheus_client` (scripts/ensure-deps.sh does)")
out = {"types": {}, "samples": []}
for family in text_string_to_metric_families(sys.stdin.read()):
    out["types"][family.name] = family.type
    for s in family.samples:
        out["samples"].append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// Parses the text format with prometheus_client's parser (which rejects
/// what Prometheus would not read).
fn parse_metrics(text: &str) -> Metrics {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to check the metrics with prometheus_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let types = json["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let samples = json["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (
                s[0].as_str().unwrap().to_string(),
                labels,
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    Metrics { types, samples }
}

/// A TCP port nothing listens on.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

#[test]
fn the_exporter_serves_every_pool_in_a_format_prometheus_reads() {
    let fpm = PhpFpm::start();
    let (tcp, unix) = (fpm.tcp_address(), fpm.unix_address());
    let exporter = Exporter::start(&["--upstream", &tcp, "--upstream", &unix]);
    let metrics = exporter.metrics();
    for (address, pool) in [(tcp.as_str(), "tcp"), (unix.as_str(), "unix")] {
        let labels = [("address", address), ("pool", pool)];
        assert_eq!(metrics.value("phpfpm_up", &labels), 1.0);
        assert_eq!(metrics.value("phpfpm_total_processes", &labels), 4.0);
        assert_eq!(
            metrics.value("phpfpm_idle_processes", &labels)
                + metrics.value("phpfpm_active_processes", &labels),
            4.0
        );
        assert_eq!(
            metrics.value("phpfpm_max_children_reached_total", &labels),
            0.0
        );
        assert!(metrics.value("phpfpm_accepted_connections_total", &labels) >= 1.0);
    }
    // TCP: the listen backlog php-fpm reports; a Unix socket has none.
    assert!(metrics.value("phpfpm_listen_queue_length", &[("pool", "tcp")]) > 0.0);
    assert_eq!(metrics.types["phpfpm_accepted_connections"], "counter");
    assert_eq!(metrics.types["phpfpm_listen_queue"], "gauge");
    // No per-process series unless asked.
    assert_eq!(metrics.count("phpfpm_process_requests_total"), 0);
}

#[test]
fn per_process_series_are_labelled_by_slot_not_pid() {
    let fpm = PhpFpm::builder().max_children(3).start();
    let unix = fpm.unix_address();
    let exporter = Exporter::start(&["--upstream", &unix, "--per-process"]);
    let metrics = exporter.metrics();
    assert_eq!(metrics.count("phpfpm_process_requests_total"), 3);
    let unix_pids: Vec<u32> = (0..3)
        .map(|child| {
            let child = child.to_string();
            metrics.value("phpfpm_process_pid", &[("child", &child)]) as u32
        })
        .collect();
    for pid in &unix_pids {
        assert!(fpm.worker_pids().contains(pid), "{pid} is a worker");
    }
    // One state per worker is 1.
    let busy_or_idle: f64 = metrics
        .samples
        .iter()
        .filter(|(n, _, _)| n == "phpfpm_process_state")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(busy_or_idle, 3.0);
    // Capped: one worker exported, two counted as left out.
    let capped = Exporter::start(&["--upstream", &unix, "--per-process", "--max-processes", "1"]);
    let metrics = capped.metrics();
    assert_eq!(metrics.count("phpfpm_process_pid"), 1);
    assert_eq!(metrics.value("phpfpm_processes_not_exported", &[]), 2.0);
}

#[test]
fn a_pool_that_is_down_is_up_0_and_the_reason_is_logged() {
    let fpm = PhpFpm::start();
    let down = closed_port();
    let unix = fpm.unix_address();
    let exporter = Exporter::start(&["--upstream", &down, "--upstream", &unix]);
    let metrics = exporter.metrics();
    assert_eq!(metrics.value("phpfpm_up", &[("address", &down)]), 0.0);
    assert_eq!(metrics.value("phpfpm_up", &[("address", &unix)]), 1.0);
    // The figures are left out for the pool that is down.
    assert_eq!(metrics.count("phpfpm_total_processes"), 1);
    let log = exporter.wait_log("scrape failed", 1);
    let line = log
        .lines()
        .find(|l| l.contains("scrape failed"))
        .unwrap_or_else(|| panic!("a log line for {down}: {log}"));
    assert!(line.contains(&down), "{line}");
    assert!(line.contains("cannot connect"), "{line}");
}

#[test]
fn a_silent_pool_times_out_without_holding_up_other_scrapes() {
    let fpm = PhpFpm::start();
    let silent = FakeServer::tcp(silent());
    let silent_addr = silent.address();
    let unix = fpm.unix_address();
    let exporter = Exporter::start(&[
        "--upstream",
        &silent_addr,
        "--upstream",
        &unix,
        "--scrape-timeout",
        "300ms",
    ]);
    // Three scrapes at once: each waits on the silent pool, none on another.
    let scrapes: Vec<_> = (0..3)
        .map(|_| {
            let addr = exporter.addr.clone();
            std::thread::spawn(move || http_get(&addr, "/metrics"))
        })
        .collect();
    for scrape in scrapes {
        let (status, body) = scrape.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let metrics = parse_metrics(&body);
        assert_eq!(
            metrics.value("phpfpm_up", &[("address", &silent_addr)]),
            0.0
        );
        assert_eq!(metrics.value("phpfpm_up", &[("address", &unix)]), 1.0);
    }
    assert!(silent.connections() >= 3, "one connection per scrape");
    let log = exporter.wait_log("timed out", 3);
    assert!(log.contains("pm.status_listen"), "{log}");
}

#[test]
fn a_busy_pool_is_read_through_its_status_listener() {
    // One worker, kept busy: its own listener cannot answer the status page
    // in time, the pm.status_listen one can.
    let fpm = PhpFpm::builder()
        .max_children(1)
        .status_listen(true)
        .start();
    let sleeper = fpm.script("sleep.php").display().to_string();
    let unix = fpm.unix_address();
    let busy = std::thread::spawn(move || fcgi(&["request", &unix, &format!("{sleeper}?ms=3000")]));
    let status_addr = fpm.unix_status_address();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = fcgi(&["status", &status_addr, "--format", "json"]);
        run.expect_code(0);
        if run.json()["active processes"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never became busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let unix = fpm.unix_address();
    let exporter = Exporter::start(&[
        "--upstream",
        &unix,
        "--upstream",
        &status_addr,
        "--scrape-timeout",
        "500ms",
    ]);
    let metrics = exporter.metrics();
    assert_eq!(metrics.value("phpfpm_up", &[("address", &unix)]), 0.0);
    let labels = [("address", status_addr.as_str())];
    assert_eq!(metrics.value("phpfpm_up", &labels), 1.0);
    assert_eq!(metrics.value("phpfpm_active_processes", &labels), 1.0);
    assert_eq!(metrics.value("phpfpm_idle_processes", &labels), 0.0);
    busy.join().unwrap().expect_code(0);
}

#[test]
fn discovery_follows_sockets_that_match_a_pattern() {
    let fpm = PhpFpm::start();
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/php*-fpm.sock", dir.path().display());
    let exporter = Exporter::start(&["--discover", &pattern]);
    // Nothing there yet: an empty but valid answer.
    let metrics = exporter.metrics();
    assert_eq!(metrics.count("phpfpm_up"), 0);
    // A pool appears (a link to the fixture's socket) and is scraped.
    let link = dir.path().join("php8.2-fpm.sock");
    std::os::unix::fs::symlink(fpm.unix_path(), &link).unwrap();
    std::fs::write(dir.path().join("php8.2-fpm.pid"), "1").unwrap();
    let metrics = exporter.metrics();
    let address = format!("unix:{}", link.display());
    assert_eq!(metrics.value("phpfpm_up", &[("address", &address)]), 1.0);
    assert_eq!(metrics.count("phpfpm_up"), 1);
}

#[test]
fn the_exporter_answers_only_metrics() {
    let fpm = PhpFpm::start();
    let exporter = Exporter::start(&["--upstream", &fpm.unix_address()]);
    assert_eq!(exporter.get("/nope").0, 404);
    assert_eq!(exporter.get("/").0, 200);
}

#[test]
fn the_exporter_needs_a_pool() {
    let line = fcgi(&["exporter"]).expect_code(2);
    assert!(line.contains("--upstream"), "{line}");
    let line = fcgi(&[
        "exporter",
        "--upstream",
        "127.0.0.1:9000",
        "--discover",
        "/run/*/x.sock",
    ])
    .expect_code(2);
    assert!(line.contains("file name only"), "{line}");
}

#[test]
fn status_prints_the_exporter_metrics_for_one_pool() {
    let fpm = PhpFpm::start();
    let tcp = fpm.tcp_address();
    let run = fcgi(&["status", &tcp, "--format", "prometheus", "--full"]);
    run.expect_code(0);
    let metrics = parse_metrics(&run.stdout_text());
    let labels = [("address", tcp.as_str()), ("pool", "tcp")];
    assert_eq!(metrics.value("phpfpm_up", &labels), 1.0);
    assert_eq!(metrics.value("phpfpm_total_processes", &labels), 4.0);
    assert_eq!(metrics.count("phpfpm_process_pid"), 4);
}

#[test]
fn status_json_is_php_fpm_json_with_either_option() {
    let fpm = PhpFpm::start();
    let a = fcgi(&["status", &fpm.tcp_address(), "--format", "json"]);
    a.expect_code(0);
    assert_eq!(a.json()["pool"], "tcp");
    let line = fcgi(&["status", &fpm.tcp_address(), "--format", "text", "--json"]).expect_code(2);
    assert!(line.contains("--json"), "{line}");
}
