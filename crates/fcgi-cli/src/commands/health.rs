//! `fcgi health`: a container probe for a php-fpm pool. Ping, then the
//! status page checked against thresholds; one line says what failed, and
//! the exit code says which check (see [`HealthArgs`]'s help).
//!
//! The figures are used for what they are: `listen queue` (connections
//! waiting now, not `listen queue len`, which is the size of the queue),
//! idle and active workers now (the worker answering this very status
//! request is not counted as active), and the counters `slow requests` and
//! `max children reached` as their **increase since the previous check**
//! (kept in a small state file), never as their total since the pool
//! started: a spike an hour ago must not fail every probe until a restart.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use crate::shared::client::client;
use crate::shared::failure::Failure;
use crate::shared::fpm_status::{self, PageArgs, PoolStatus};
use crate::shared::options::{ConnArgs, ADDRESS_HELP};
use crate::shared::output::write_failure;
use crate::shared::target::resolve;

/// Exit code: more connections waiting than `--max-listen-queue`.
pub const LISTEN_QUEUE: u8 = 10;
/// Exit code: fewer idle workers than `--min-idle`.
pub const IDLE: u8 = 11;
/// Exit code: a larger share of active workers than `--max-active-ratio`.
pub const ACTIVE_RATIO: u8 = 12;
/// Exit code: more new slow requests than `--max-slow-requests`.
pub const SLOW_REQUESTS: u8 = 13;
/// Exit code: `max children reached` grew by more than
/// `--max-children-reached`.
pub const MAX_CHILDREN: u8 = 14;

const HEALTH_HELP: &str = "\
Reads the status page (--status-path; exit 1 when there is none), checks
that the ping page answers (--ping-path, --expect; exit 1 when it answers
something else), then applies each threshold given:

  --max-listen-queue N     connections waiting for a worker now (`listen
                           queue`; TCP only: php-fpm reports 0 on Unix
                           sockets)                                    exit 10
  --min-idle N             idle workers now                            exit 11
  --max-active-ratio R     active / total workers now, 0 to 1          exit 12
  --max-slow-requests N    new slow requests since the last check      exit 13
  --max-children-reached N new `max children reached` since the last
                           check (dynamic and ondemand pools)          exit 14

The worker that answers the status request itself is counted idle, not
active (with pm.status_listen the request does not take a worker at all,
and the status page answers even when every worker is busy: use it for
probes). `listen queue len` is the size of the queue, a setting, and is not
checked. `slow requests` and `max children reached` only ever grow: they are
compared with the previous check's reading, kept in --state-file (default: a
file in the temporary directory named after ADDR and the status path); the
first check only records them, and a pool restart starts over.

Success prints one line with the figures on standard output, exit 0. A
failure prints one `fcgi: error: unhealthy: ...` line naming every check
that failed, and exits with the code of the first. A pool that cannot be
reached exits as the other commands do: 3 cannot connect, 4 timed out, 5
not FastCGI, 6 rejected.

Examples:
  fcgi health 127.0.0.1:9000 --max-listen-queue 10 --min-idle 1
  fcgi health unix:/run/php/php8.2-fpm.sock --max-active-ratio 0.9 --max-slow-requests 5
  HEALTHCHECK CMD [\"fcgi\", \"health\", \"127.0.0.1:9001\", \"--max-listen-queue\", \"20\"]";

/// `fcgi health`.
#[derive(Debug, Args)]
#[command(after_help = format!("{HEALTH_HELP}\n\n{ADDRESS_HELP}"))]
pub struct HealthArgs {
    /// The server's address (discovered when left out).
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    #[command(flatten)]
    pub pages: PageArgs,
    /// Fail (exit 10) when more connections than N wait for a worker.
    #[arg(long, value_name = "N")]
    pub max_listen_queue: Option<u64>,
    /// Fail (exit 11) when fewer than N workers are idle.
    #[arg(long, value_name = "N")]
    pub min_idle: Option<u64>,
    /// Fail (exit 12) when active / total workers is above R (0 to 1).
    #[arg(long, value_name = "R", value_parser = parse_ratio)]
    pub max_active_ratio: Option<f64>,
    /// Fail (exit 13) when more than N slow requests happened since the
    /// previous check.
    #[arg(long, value_name = "N")]
    pub max_slow_requests: Option<u64>,
    /// Fail (exit 14) when `max children reached` grew by more than N since
    /// the previous check.
    #[arg(long, value_name = "N")]
    pub max_children_reached: Option<u64>,
    /// Where the counters of the previous check are kept.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Print the result as one JSON object on standard output (failures
    /// too, then with the exit code as usual).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?}: give a ratio from 0 to 1, such as 0.9")),
    }
}

/// The counters kept between checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// The pool's start time: another value means it restarted.
    pub start_time: u64,
    /// `slow requests` then.
    pub slow_requests: u64,
    /// `max children reached` then.
    pub max_children_reached: u64,
}

impl Counters {
    fn of(status: &PoolStatus) -> Counters {
        Counters {
            start_time: status.start_time,
            slow_requests: status.slow_requests,
            max_children_reached: status.max_children_reached,
        }
    }

    fn read(path: &Path) -> Option<Counters> {
        let text = fs::read_to_string(path).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(Counters {
            start_time: value["start_time"].as_u64()?,
            slow_requests: value["slow_requests"].as_u64()?,
            max_children_reached: value["max_children_reached"].as_u64()?,
        })
    }

    fn write(&self, path: &Path) -> Result<(), Failure> {
        let text = json!({
            "start_time": self.start_time,
            "slow_requests": self.slow_requests,
            "max_children_reached": self.max_children_reached,
        })
        .to_string();
        // Written aside and renamed: a probe killed halfway leaves the old
        // state, never half a file.
        let partial = path.with_extension("partial");
        fs::write(&partial, text)
            .and_then(|()| fs::rename(&partial, path))
            .map_err(|e| {
                Failure::new(
                    crate::shared::failure::OTHER,
                    format!(
                        "cannot write the state file {} (--state-file): {e}",
                        path.display()
                    ),
                )
            })
    }
}

/// The increase of the counters since `previous`, or `None` when there is
/// nothing to compare with (first check, or the pool restarted).
pub fn increase(previous: Option<Counters>, now: Counters) -> Option<(u64, u64)> {
    let previous = previous?;
    if previous.start_time != now.start_time
        || now.slow_requests < previous.slow_requests
        || now.max_children_reached < previous.max_children_reached
    {
        return None;
    }
    Some((
        now.slow_requests - previous.slow_requests,
        now.max_children_reached - previous.max_children_reached,
    ))
}

/// The default state file: in the temporary directory, named after the
/// address and the status path.
fn default_state_file(address: &str, status_path: &str) -> PathBuf {
    // FNV-1a: a stable name for the same pool, no dependency.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in address.bytes().chain([0]).chain(status_path.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    std::env::temp_dir().join(format!("fcgi-health-{hash:016x}.json"))
}

/// One failed check: its exit code and what to say.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// The exit code.
    pub code: u8,
    /// What failed, e.g. `listen queue 3 > --max-listen-queue 0`.
    pub what: String,
}

/// What was measured, the status request itself left out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Connections waiting now.
    pub listen_queue: u64,
    /// Idle workers (the one answering the status request included).
    pub idle: u64,
    /// Active workers (the one answering the status request left out).
    pub active: u64,
    /// All workers.
    pub total: u64,
}

impl Reading {
    /// The figures of `status`; `status_path` tells the status request
    /// (running in one of the workers, unless through pm.status_listen)
    /// from the others.
    pub fn of(status: &PoolStatus, status_path: &str) -> Reading {
        let own = status
            .processes
            .iter()
            .filter(|p| {
                p.state == "Running" && p.request_uri.starts_with(&format!("{status_path}?"))
            })
            .count() as u64;
        let own = own.min(1).min(status.active_processes);
        Reading {
            listen_queue: status.listen_queue,
            idle: status.idle_processes + own,
            active: status.active_processes - own,
            total: status.total_processes,
        }
    }

    /// active / total (0 for a pool with no workers).
    pub fn active_ratio(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.active as f64 / self.total as f64
        }
    }
}

/// Every threshold broken, in the order of the exit codes.
pub fn check(args: &HealthArgs, reading: &Reading, increase: Option<(u64, u64)>) -> Vec<Breach> {
    let mut breaches = Vec::new();
    if let Some(max) = args.max_listen_queue {
        if reading.listen_queue > max {
            breaches.push(Breach {
                code: LISTEN_QUEUE,
                what: format!(
                    "listen queue {} > --max-listen-queue {max}",
                    reading.listen_queue
                ),
            });
        }
    }
    if let Some(min) = args.min_idle {
        if reading.idle < min {
            breaches.push(Breach {
                code: IDLE,
                what: format!("idle processes {} < --min-idle {min}", reading.idle),
            });
        }
    }
    if let Some(max) = args.max_active_ratio {
        if reading.active_ratio() > max {
            breaches.push(Breach {
                code: ACTIVE_RATIO,
                what: format!(
                    "active processes {}/{} = {:.2} > --max-active-ratio {max}",
                    reading.active,
                    reading.total,
                    reading.active_ratio()
                ),
            });
        }
    }
    if let Some((slow, reached)) = increase {
        if let Some(max) = args.max_slow_requests {
            if slow > max {
                breaches.push(Breach {
                    code: SLOW_REQUESTS,
                    what: format!(
                        "{slow} new slow requests since the last check > --max-slow-requests {max}"
                    ),
                });
            }
        }
        if let Some(max) = args.max_children_reached {
            if reached > max {
                breaches.push(Breach {
                    code: MAX_CHILDREN,
                    what: format!(
                        "max children reached {reached} more times since the last check > --max-children-reached {max} (raise pm.max_children)"
                    ),
                });
            }
        }
    }
    breaches
}

/// `fcgi health`.
pub fn run(args: &HealthArgs) -> Result<(), Failure> {
    let target = resolve(args.address.as_deref())?;
    let address = target.address.to_string();
    let client = client(&target, &args.conn, None)?;
    let verbose = args.conn.verbose;
    // The status page first: a worker that just answered our ping may
    // still be finishing, and would count as active.
    let page = fpm_status::fetch(&client, &args.pages.status_path, true, verbose)
        .map_err(|e| e.failure("status", &args.pages.status_path, &address))?;
    let ping = fpm_status::ping(&client, &args.pages.ping_path, &args.pages.expect, verbose)
        .map_err(|e| {
            e.failure(
                "ping",
                &args.pages.ping_path,
                &format!("{address} (expected {:?})", args.pages.expect),
            )
        })?;
    let status = &page.status;
    let reading = Reading::of(status, &args.pages.status_path);
    let counters = Counters::of(status);
    let watch_counters = args.max_slow_requests.is_some() || args.max_children_reached.is_some();
    let (increase, state_file) = if watch_counters || args.state_file.is_some() {
        let path = args
            .state_file
            .clone()
            .unwrap_or_else(|| default_state_file(&address, &args.pages.status_path));
        let previous = Counters::read(&path);
        counters.write(&path)?;
        (increase(previous, counters), Some(path))
    } else {
        (None, None)
    };
    let breaches = check(args, &reading, increase);
    let counters_text = match increase {
        Some((slow, reached)) => format!("slow requests +{slow}, max children reached +{reached}"),
        None if state_file.is_some() => "counters recorded (first check or pool restarted)".into(),
        None => format!(
            "slow requests {}, max children reached {} (since start)",
            status.slow_requests, status.max_children_reached
        ),
    };
    let summary = format!(
        "{address} pool {}: ping {:.1} ms, listen queue {}, idle {} of {}, active {}, {counters_text}",
        status.pool,
        ping.as_secs_f64() * 1000.0,
        reading.listen_queue,
        reading.idle,
        reading.total,
        reading.active,
    );
    if args.json {
        let object = json!({
            "healthy": breaches.is_empty(),
            "address": address,
            "pool": status.pool,
            "ping_ms": (ping.as_secs_f64() * 1e6).round() / 1000.0,
            "listen_queue": reading.listen_queue,
            "idle": reading.idle,
            "active": reading.active,
            "total": reading.total,
            "slow_requests_increase": increase.map(|i| i.0),
            "max_children_reached_increase": increase.map(|i| i.1),
            "failed": breaches.iter().map(|b| json!({"code": b.code, "what": b.what})).collect::<Vec<_>>(),
        });
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{object}").map_err(write_failure("the result to standard output"))?;
    } else if breaches.is_empty() {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "healthy: {summary}")
            .map_err(write_failure("the result to standard output"))?;
    }
    match breaches.first() {
        None => Ok(()),
        Some(first) => {
            let what: Vec<&str> = breaches.iter().map(|b| b.what.as_str()).collect();
            Err(Failure::new(
                first.code,
                format!("unhealthy: {} ({summary})", what.join("; ")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> HealthArgs {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            health: HealthArgs,
        }
        let mut argv = vec!["health"];
        argv.extend_from_slice(extra);
        Wrap::parse_from(argv).health
    }

    fn counters(start: u64, slow: u64, reached: u64) -> Counters {
        Counters {
            start_time: start,
            slow_requests: slow,
            max_children_reached: reached,
        }
    }

    #[test]
    fn counters_are_compared_with_the_previous_check() {
        assert_eq!(increase(None, counters(1, 5, 0)), None);
        assert_eq!(
            increase(Some(counters(1, 5, 2)), counters(1, 7, 3)),
            Some((2, 1))
        );
        // A restart (new start time, or counters going down) starts over.
        assert_eq!(increase(Some(counters(1, 5, 2)), counters(9, 7, 3)), None);
        assert_eq!(increase(Some(counters(1, 5, 2)), counters(1, 1, 2)), None);
    }

    #[test]
    fn every_broken_threshold_is_named_in_exit_code_order() {
        let a = args(&[
            "--max-listen-queue",
            "0",
            "--min-idle",
            "2",
            "--max-active-ratio",
            "0.5",
            "--max-slow-requests",
            "0",
        ]);
        let reading = Reading {
            listen_queue: 3,
            idle: 1,
            active: 3,
            total: 4,
        };
        let breaches = check(&a, &reading, Some((1, 0)));
        let codes: Vec<u8> = breaches.iter().map(|b| b.code).collect();
        assert_eq!(codes, [LISTEN_QUEUE, IDLE, ACTIVE_RATIO, SLOW_REQUESTS]);
        assert!(
            breaches[0].what.contains("listen queue 3"),
            "{:?}",
            breaches[0]
        );
        // Within the thresholds: nothing.
        let calm = Reading {
            listen_queue: 0,
            idle: 3,
            active: 1,
            total: 4,
        };
        assert!(check(&a, &calm, Some((0, 0))).is_empty());
    }

    #[test]
    fn the_status_request_itself_is_not_counted_active() {
        let (status, _) =
            fpm_status::parse_page(200, "OK", fpm_status::tests::SAMPLE.as_bytes()).unwrap();
        // SAMPLE: 1 active (the /status request itself), 1 idle.
        let reading = Reading::of(&status, "/status");
        assert_eq!((reading.active, reading.idle, reading.total), (0, 2, 2));
    }

    #[test]
    fn a_ratio_is_between_0_and_1() {
        assert_eq!(parse_ratio("0.9"), Ok(0.9));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
        assert!(parse_ratio("x").is_err());
    }
}
