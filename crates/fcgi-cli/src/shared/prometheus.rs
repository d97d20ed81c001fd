//! php-fpm pools as Prometheus metrics, in the text exposition format
//! (version 0.0.4): the metric table ([`POOL_METRICS`], [`PROCESS_METRICS`])
//! and its rendering, shared by `fcgi status --format prometheus` and
//! `fcgi exporter`.
//!
//! Names follow Prometheus' conventions (counters end in `_total`, units
//! in the name: `_seconds`, `_bytes`) and stay close to hipages'
//! php-fpm_exporter (`phpfpm_*`), so its dashboards carry over with the
//! renames in the table's last column (`php_fpm_exporter` there). Every
//! series has the labels `address` (the upstream as given or discovered)
//! and `pool` (php-fpm's pool name; the last one seen when a scrape fails,
//! so a failing pool keeps its series). Per-process series add `child`: the
//! worker's slot in php-fpm's list (0 to `pm.max_children` - 1), not its
//! pid, so that recycled workers do not create new series; the pid is the
//! value of `phpfpm_process_pid`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::shared::fpm_status::{PoolStatus, ProcessStatus, PROCESS_STATES};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Goes up and down.
    Gauge,
    /// Only goes up (until the pool restarts).
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One pool-level metric: its name, type, help text, value and the name
/// php-fpm_exporter gives it.
pub struct PoolMetric {
    /// The metric's name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its `# HELP` text.
    pub help: &'static str,
    /// The status page field it comes from.
    pub field: &'static str,
    /// Its value for a pool.
    pub value: fn(&PoolStatus) -> f64,
    /// hipages php-fpm_exporter's name for it.
    pub php_fpm_exporter: &'static str,
}

/// The pool-level metrics of a successful scrape, in output order
/// (`phpfpm_up` and `phpfpm_scrape_duration_seconds` come first and are
/// there for failed scrapes too).
pub const POOL_METRICS: [PoolMetric; 13] = [
    PoolMetric {
        name: "phpfpm_start_since_seconds",
        kind: Kind::Gauge,
        help: "Seconds since the pool started.",
        field: "start since",
        value: |s| s.start_since as f64,
        php_fpm_exporter: "phpfpm_start_since",
    },
    PoolMetric {
        name: "phpfpm_start_time_seconds",
        kind: Kind::Gauge,
        help: "When the pool started, in seconds since 1970.",
        field: "start time",
        value: |s| s.start_time as f64,
        php_fpm_exporter: "(none)",
    },
    PoolMetric {
        name: "phpfpm_accepted_connections_total",
        kind: Kind::Counter,
        help: "Connections accepted by the pool since it started.",
        field: "accepted conn",
        value: |s| s.accepted_conn as f64,
        php_fpm_exporter: "phpfpm_accepted_connections",
    },
    PoolMetric {
        name: "phpfpm_listen_queue",
        kind: Kind::Gauge,
        help: "Connections waiting for a worker now (0 on Unix sockets, where php-fpm cannot read it).",
        field: "listen queue",
        value: |s| s.listen_queue as f64,
        php_fpm_exporter: "phpfpm_listen_queue",
    },
    PoolMetric {
        name: "phpfpm_max_listen_queue",
        kind: Kind::Gauge,
        help: "Highest listen queue since the pool started.",
        field: "max listen queue",
        value: |s| s.max_listen_queue as f64,
        php_fpm_exporter: "phpfpm_max_listen_queue",
    },
    PoolMetric {
        name: "phpfpm_listen_queue_length",
        kind: Kind::Gauge,
        help: "Size of the listen queue: the listen backlog in effect (a setting; 0 on Unix sockets).",
        field: "listen queue len",
        value: |s| s.listen_queue_len as f64,
        php_fpm_exporter: "phpfpm_listen_queue_length",
    },
    PoolMetric {
        name: "phpfpm_idle_processes",
        kind: Kind::Gauge,
        help: "Workers waiting for a request.",
        field: "idle processes",
        value: |s| s.idle_processes as f64,
        php_fpm_exporter: "phpfpm_idle_processes",
    },
    PoolMetric {
        name: "phpfpm_active_processes",
        kind: Kind::Gauge,
        help: "Workers serving a request (the status request itself included, unless it came through pm.status_listen).",
        field: "active processes",
        value: |s| s.active_processes as f64,
        php_fpm_exporter: "phpfpm_active_processes",
    },
    PoolMetric {
        name: "phpfpm_total_processes",
        kind: Kind::Gauge,
        help: "Workers, idle and active.",
        field: "total processes",
        value: |s| s.total_processes as f64,
        php_fpm_exporter: "phpfpm_total_processes",
    },
    PoolMetric {
        name: "phpfpm_max_active_processes",
        kind: Kind::Gauge,
        help: "Highest number of active workers since the pool started.",
        field: "max active processes",
        value: |s| s.max_active_processes as f64,
        php_fpm_exporter: "phpfpm_max_active_processes",
    },
    PoolMetric {
        name: "phpfpm_max_children_reached_total",
        kind: Kind::Counter,
        help: "Times the process manager wanted more workers than pm.max_children allows, since the pool started (dynamic and ondemand pools).",
        field: "max children reached",
        value: |s| s.max_children_reached as f64,
        php_fpm_exporter: "phpfpm_max_children_reached",
    },
    PoolMetric {
        name: "phpfpm_slow_requests_total",
        kind: Kind::Counter,
        help: "Requests that ran longer than request_slowlog_timeout, since the pool started.",
        field: "slow requests",
        value: |s| s.slow_requests as f64,
        php_fpm_exporter: "phpfpm_slow_requests",
    },
    PoolMetric {
        name: "phpfpm_memory_peak_bytes",
        kind: Kind::Gauge,
        help: "Peak memory of the pool's workers (php-fpm 8.4 and later; absent before).",
        field: "memory peak",
        value: |s| s.memory_peak.map_or(f64::NAN, |m| m as f64),
        php_fpm_exporter: "(none)",
    },
];

/// One per-process metric (`--per-process`).
pub struct ProcessMetric {
    /// The metric's name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its `# HELP` text.
    pub help: &'static str,
    /// Its value for a worker.
    pub value: fn(&ProcessStatus) -> f64,
    /// hipages php-fpm_exporter's name for it.
    pub php_fpm_exporter: &'static str,
}

/// The per-process metrics, in output order (`phpfpm_process_state`, one
/// series per state with 1 for the worker's state, comes last).
pub const PROCESS_METRICS: [ProcessMetric; 6] = [
    ProcessMetric {
        name: "phpfpm_process_pid",
        kind: Kind::Gauge,
        help: "Process id of the worker in this slot.",
        value: |p| f64::from(p.pid),
        php_fpm_exporter: "(the child label)",
    },
    ProcessMetric {
        name: "phpfpm_process_requests_total",
        kind: Kind::Counter,
        help: "Requests served by the worker in this slot.",
        value: |p| p.requests as f64,
        php_fpm_exporter: "phpfpm_process_requests",
    },
    ProcessMetric {
        name: "phpfpm_process_start_since_seconds",
        kind: Kind::Gauge,
        help: "Seconds since the worker in this slot started.",
        value: |p| p.start_since as f64,
        php_fpm_exporter: "(none)",
    },
    ProcessMetric {
        name: "phpfpm_process_request_duration_seconds",
        kind: Kind::Gauge,
        help: "Duration of the worker's current or last request.",
        value: |p| p.request_duration_us as f64 / 1e6,
        php_fpm_exporter: "phpfpm_process_request_duration (microseconds)",
    },
    ProcessMetric {
        name: "phpfpm_process_last_request_cpu_ratio",
        kind: Kind::Gauge,
        help: "CPU used by the worker's last request, as a ratio of one core (php-fpm's percent / 100).",
        value: |p| p.last_request_cpu / 100.0,
        php_fpm_exporter: "phpfpm_process_last_request_cpu (percent)",
    },
    ProcessMetric {
        name: "phpfpm_process_last_request_memory_bytes",
        kind: Kind::Gauge,
        help: "Peak memory of the worker's last request.",
        value: |p| p.last_request_memory as f64,
        php_fpm_exporter: "phpfpm_process_last_request_memory",
    },
];

/// The state metric's name (one series per state of [`PROCESS_STATES`]).
pub const PROCESS_STATE_METRIC: &str = "phpfpm_process_state";

/// Default cap on the workers exported per pool with `--per-process`.
pub const DEFAULT_MAX_PROCESSES: usize = 256;

/// One pool's scrape: where, the pool's name, and what came back.
#[derive(Debug, Clone)]
pub struct PoolScrape {
    /// The upstream address.
    pub address: String,
    /// The pool's name (from this scrape, or the last successful one; empty
    /// when never seen).
    pub pool: String,
    /// The figures, or why there are none.
    pub result: Result<PoolStatus, String>,
    /// How long the scrape took.
    pub duration: Duration,
}

/// Per-process output: off, or at most this many workers per pool.
pub type PerProcess = Option<usize>;

/// A metric value as the text format writes it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A label value escaped for the text format.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `{a="x",b="y"}`.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
}

/// The metrics of `scrapes` in the text format: `phpfpm_up` and the scrape
/// durations for every pool, the figures for those that answered, and
/// with `per_process` the workers' series.
pub fn render(scrapes: &[PoolScrape], per_process: PerProcess) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "phpfpm_up",
        Kind::Gauge,
        "1 when the pool's status page was read, 0 when the scrape failed or timed out (the exporter logs why).",
    );
    for s in scrapes {
        let up = if s.result.is_ok() { 1.0 } else { 0.0 };
        let l = labels(&[("address", &s.address), ("pool", &s.pool)]);
        let _ = writeln!(out, "phpfpm_up{l} {}", number(up));
    }
    header(
        &mut out,
        "phpfpm_scrape_duration_seconds",
        Kind::Gauge,
        "How long reading the pool's status page took.",
    );
    for s in scrapes {
        let l = labels(&[("address", &s.address), ("pool", &s.pool)]);
        let _ = writeln!(
            out,
            "phpfpm_scrape_duration_seconds{l} {}",
            number(s.duration.as_secs_f64())
        );
    }
    let answered: Vec<(&PoolScrape, &PoolStatus)> = scrapes
        .iter()
        .filter_map(|s| s.result.as_ref().ok().map(|status| (s, status)))
        .collect();
    for metric in &POOL_METRICS {
        let samples: Vec<(String, f64)> = answered
            .iter()
            .map(|(s, status)| {
                (
                    labels(&[("address", &s.address), ("pool", &status.pool)]),
                    (metric.value)(status),
                )
            })
            .filter(|(_, v)| !v.is_nan())
            .collect();
        if samples.is_empty() {
            continue;
        }
        header(&mut out, metric.name, metric.kind, metric.help);
        for (l, v) in samples {
            let _ = writeln!(out, "{}{l} {}", metric.name, number(v));
        }
    }
    if let Some(max) = per_process {
        render_processes(&mut out, &answered, max);
    }
    out
}

fn render_processes(out: &mut String, answered: &[(&PoolScrape, &PoolStatus)], max: usize) {
    if answered.iter().all(|(_, s)| s.processes.is_empty()) {
        return;
    }
    for metric in &PROCESS_METRICS {
        header(out, metric.name, metric.kind, metric.help);
        for (s, status) in answered {
            for (slot, process) in status.processes.iter().take(max).enumerate() {
                let child = slot.to_string();
                let l = labels(&[
                    ("address", &s.address),
                    ("pool", &status.pool),
                    ("child", &child),
                ]);
                let _ = writeln!(
                    out,
                    "{}{l} {}",
                    metric.name,
                    number((metric.value)(process))
                );
            }
        }
    }
    header(
        out,
        PROCESS_STATE_METRIC,
        Kind::Gauge,
        "1 for the state the worker in this slot is in, 0 for the others.",
    );
    for (s, status) in answered {
        for (slot, process) in status.processes.iter().take(max).enumerate() {
            let child = slot.to_string();
            for state in PROCESS_STATES {
                let l = labels(&[
                    ("address", &s.address),
                    ("pool", &status.pool),
                    ("child", &child),
                    ("state", state),
                ]);
                let on = if process.state == state { 1 } else { 0 };
                let _ = writeln!(out, "{PROCESS_STATE_METRIC}{l} {on}");
            }
        }
    }
    header(
        out,
        "phpfpm_processes_not_exported",
        Kind::Gauge,
        "Workers left out of the per-process series (over --max-processes).",
    );
    for (s, status) in answered {
        let l = labels(&[("address", &s.address), ("pool", &status.pool)]);
        let left_out = status.processes.len().saturating_sub(max);
        let _ = writeln!(out, "phpfpm_processes_not_exported{l} {left_out}");
    }
}

/// A name of the mapping table in code style, a remark after it plain.
fn code_name(text: &str) -> String {
    if text.starts_with('(') {
        return text.to_string();
    }
    match text.split_once(' ') {
        Some((name, rest)) => format!("`{name}` {rest}"),
        None => format!("`{text}`"),
    }
}

/// The mapping table of the documentation (`fcgi exporter
/// --print-mapping`): our name, type, the status page field and
/// php-fpm_exporter's name, as Markdown.
pub fn mapping_table() -> String {
    let mut out = String::from(
        "| metric | type | status page field | php-fpm_exporter |\n|---|---|---|---|\n",
    );
    out.push_str("| `phpfpm_up` | gauge | (the scrape worked) | `phpfpm_up` |\n");
    out.push_str("| `phpfpm_scrape_duration_seconds` | gauge | (scrape time) | (none) |\n");
    for m in &POOL_METRICS {
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} |",
            m.name,
            m.kind.as_str(),
            m.field,
            code_name(m.php_fpm_exporter)
        );
    }
    for m in &PROCESS_METRICS {
        let _ = writeln!(
            out,
            "| `{}` | {} | per process | {} |",
            m.name,
            m.kind.as_str(),
            code_name(m.php_fpm_exporter)
        );
    }
    let _ = writeln!(
        out,
        "| `{PROCESS_STATE_METRIC}` | gauge | per process: `state` | `phpfpm_process_state` |"
    );
    out.push_str("| `phpfpm_processes_not_exported` | gauge | (over --max-processes) | (none) |\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::fpm_status::parse_page;

    fn sample() -> PoolStatus {
        parse_page(
            200,
            "OK",
            crate::shared::fpm_status::tests::SAMPLE.as_bytes(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn the_cli_manual_has_the_current_mapping_table() {
        let manual = include_str!("../../README.md");
        assert!(
            manual.contains(&mapping_table()),
            "crates/fcgi-cli/README.md: paste the output of `fcgi exporter --print-mapping`"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn numbers_are_integers_when_whole() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.000351), "0.000351");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn a_failed_scrape_has_up_zero_and_no_figures() {
        let scrapes = [PoolScrape {
            address: "127.0.0.1:9000".into(),
            pool: "www".into(),
            result: Err("timed out".into()),
            duration: Duration::from_millis(1000),
        }];
        let text = render(&scrapes, None);
        assert!(
            text.contains("phpfpm_up{address=\"127.0.0.1:9000\",pool=\"www\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("phpfpm_listen_queue"), "{text}");
    }

    #[test]
    fn counters_end_in_total_and_each_family_is_declared_once() {
        let scrapes = [PoolScrape {
            address: "a".into(),
            pool: "www".into(),
            result: Ok(sample()),
            duration: Duration::from_millis(2),
        }];
        let text = render(&scrapes, Some(DEFAULT_MAX_PROCESSES));
        let mut declared = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            assert!(!declared.contains(&name), "{name} declared twice");
            declared.push(name);
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
        assert!(text.contains("phpfpm_slow_requests_total{address=\"a\",pool=\"www\"} 4\n"));
        assert!(text.contains(
            "phpfpm_process_state{address=\"a\",pool=\"www\",child=\"1\",state=\"Idle\"} 1\n"
        ));
        assert!(text.contains("phpfpm_process_pid{address=\"a\",pool=\"www\",child=\"1\"} 2688\n"));
    }

    #[test]
    fn per_process_series_are_capped() {
        let scrapes = [PoolScrape {
            address: "a".into(),
            pool: "www".into(),
            result: Ok(sample()),
            duration: Duration::ZERO,
        }];
        let text = render(&scrapes, Some(1));
        assert!(text.contains("child=\"0\""));
        assert!(!text.contains("child=\"1\""));
        assert!(text.contains("phpfpm_processes_not_exported{address=\"a\",pool=\"www\"} 1\n"));
    }
}
