//! The load loop: one thread and one keep-alive blocking client per
//! connection, each recording into its own HDR histogram and tallies, merged
//! at the end; a shared counter hands out the request budget (`-n`) or a
//! shared end time stops the loops (`-d`).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fcgi::{Address, Chunk, Client, Config, ResponseStream};
use hdrhistogram::Histogram;

use super::Template;
use crate::failure::Failure;

/// Highest latency the histogram tells apart: one hour, in microseconds;
/// longer ones are recorded as this (every request is bounded by --timeout,
/// which is at most about 11.5 days but in practice far below).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant figures of the histogram.
const HISTOGRAM_PRECISION: u8 = 3;
/// How often the live progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// How much load to send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Connections, one thread each.
    pub connections: u64,
    /// Requests in all (`-n`), or
    pub requests: Option<u64>,
    /// how long to send them (`-d`).
    pub duration: Option<Duration>,
    /// Draw a live progress line on standard error.
    pub progress: bool,
}

/// One kind of error: how often, the exit code it maps to, one message.
#[derive(Debug, Clone)]
pub struct ErrorTally {
    /// How many requests failed this way.
    pub count: u64,
    /// The exit code of `fcgi request` for this error.
    pub code: u8,
    /// The first message seen.
    pub example: String,
}

/// What a run measured, all connections merged.
#[derive(Debug)]
pub struct Outcome {
    /// From the first request sent to the last one finished.
    pub elapsed: Duration,
    /// Latency of every answered request, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Answered requests by HTTP status.
    pub status_counts: BTreeMap<u16, u64>,
    /// Failed requests by kind.
    pub errors: BTreeMap<&'static str, ErrorTally>,
    /// Response body bytes received.
    pub body_bytes: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            elapsed: Duration::ZERO,
            latency_us: new_histogram(),
            status_counts: BTreeMap::new(),
            errors: BTreeMap::new(),
            body_bytes: 0,
        }
    }

    /// Requests answered (any HTTP status).
    pub fn successes(&self) -> u64 {
        self.status_counts.values().sum()
    }

    /// Requests that failed.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|t| t.count).sum()
    }

    fn merge(&mut self, other: Outcome) {
        // Both histograms have the same bounds: adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (status, n) in other.status_counts {
            *self.status_counts.entry(status).or_default() += n;
        }
        for (kind, tally) in other.errors {
            self.errors
                .entry(kind)
                .and_modify(|t| t.count += tally.count)
                .or_insert(tally);
        }
        self.body_bytes += other.body_bytes;
    }

    fn record_error(&mut self, err: &fcgi::Error) {
        let kind = error_kind(err);
        self.errors
            .entry(kind)
            .and_modify(|t| t.count += 1)
            .or_insert_with(|| {
                let failure = Failure::from_fcgi(err);
                ErrorTally {
                    count: 1,
                    code: failure.code,
                    example: failure.message,
                }
            });
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, HISTOGRAM_PRECISION)
        .expect("constant histogram bounds are valid")
}

/// The kind under which an error is counted.
pub fn error_kind(err: &fcgi::Error) -> &'static str {
    use fcgi::Error as E;
    match err {
        E::InvalidAddress(_) => "invalid_address",
        E::InvalidRequest(_) => "invalid_request",
        E::Connect { .. } => "connect",
        E::Timeout {
            phase: fcgi::TimeoutPhase::Connect,
            ..
        } => "connect_timeout",
        E::Timeout { .. } => "timeout",
        E::ConnectionClosed { .. } => "closed",
        E::Protocol { .. } => "protocol",
        E::Rejected { .. } => "rejected",
        E::LimitExceeded { .. } => "limit",
        E::Body(_) => "body",
        E::Io { .. } => "io",
        _ => "other",
    }
}

/// State shared by the connection threads.
struct Shared {
    /// Requests handed out so far (`-n`).
    issued: AtomicU64,
    /// Requests finished so far (answered or failed), for the progress line.
    finished: AtomicU64,
    /// Requests failed so far, for the progress line.
    failed: AtomicU64,
    /// Set when a request cannot be built or sent at all: stop everywhere.
    stop: AtomicBool,
    limit: Option<u64>,
    end: Option<Instant>,
}

impl Shared {
    /// Whether this thread may send one more request.
    fn next(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if let Some(end) = self.end {
            if Instant::now() >= end {
                return false;
            }
        }
        match self.limit {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }
}

/// Runs the plan against `address`; returns the merged figures. A request
/// that cannot be built (refused before anything is sent) stops the run.
pub fn run(
    address: &Address,
    config: Config,
    template: &Template,
    plan: &Plan,
) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let shared = Shared {
        issued: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        limit: plan.requests,
        end: plan.duration.map(|d| started + d),
    };
    let mut total = Outcome::new();
    let mut refused: Option<Failure> = None;
    thread::scope(|scope| -> Result<(), Failure> {
        let (done_tx, done_rx) = mpsc::channel();
        for i in 0..plan.connections {
            let client = Client::with_config(address.clone(), config.clone())?;
            let done_tx = done_tx.clone();
            let shared = &shared;
            thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn_scoped(scope, move || {
                    let result = connection_loop(&client, template, shared);
                    let _ = done_tx.send(result);
                })
                .map_err(|e| {
                    shared.stop.store(true, Ordering::Relaxed);
                    Failure::new(
                        crate::failure::OTHER,
                        format!("cannot start connection thread {i}: {e}"),
                    )
                })?;
        }
        drop(done_tx);
        let mut remaining = plan.connections;
        while remaining > 0 {
            match done_rx.recv_timeout(PROGRESS_EVERY) {
                Ok((outcome, stop)) => {
                    total.merge(outcome);
                    if let Some(failure) = stop {
                        refused.get_or_insert(failure);
                    }
                    remaining -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if plan.progress {
                draw_progress(&shared, started, plan);
            }
        }
        Ok(())
    })?;
    total.elapsed = started.elapsed();
    if plan.progress {
        // Clear the progress line.
        let _ = write!(io::stderr().lock(), "\r\x1b[2K");
    }
    match refused {
        Some(failure) => Err(failure),
        None => Ok(total),
    }
}

/// One connection's loop; returns its figures, and the failure that stopped
/// the whole run, if any.
fn connection_loop(
    client: &Client,
    template: &Template,
    shared: &Shared,
) -> (Outcome, Option<Failure>) {
    let mut outcome = Outcome::new();
    let request = template.request();
    // Encoded once; a request that cannot be prepared goes the long way, so
    // that its error is counted (or stops the run) exactly as per request.
    let prepared = client.prepare(template.request()).ok();
    while shared.next() {
        let result = match &prepared {
            Some(prepared) => client.stream_prepared(prepared),
            None => client.stream_again(&request),
        };
        // Latency counts from when the client began the request.
        let result = result.and_then(|mut stream| {
            let (status, bytes) = drain(&mut stream)?;
            Ok((status, bytes, stream.started().elapsed()))
        });
        match result {
            Ok((status, bytes, elapsed)) => {
                let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                outcome.latency_us.saturating_record(us.max(1));
                *outcome.status_counts.entry(status).or_default() += 1;
                outcome.body_bytes += bytes;
            }
            Err(err) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                if matches!(
                    err,
                    fcgi::Error::InvalidRequest(_) | fcgi::Error::InvalidAddress(_)
                ) {
                    // The same request would be refused every time.
                    shared.stop.store(true, Ordering::Relaxed);
                    return (outcome, Some(Failure::from_fcgi(&err)));
                }
                outcome.record_error(&err);
            }
        }
        shared.finished.fetch_add(1, Ordering::Relaxed);
    }
    (outcome, None)
}

/// The rest of one response: status and body bytes, the body read and
/// dropped as it comes.
fn drain(stream: &mut ResponseStream) -> Result<(u16, u64), fcgi::Error> {
    let status = stream.status();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next_chunk()? {
        if let Chunk::Body(body) = chunk {
            bytes += body.len() as u64;
        }
    }
    Ok((status, bytes))
}

fn draw_progress(shared: &Shared, started: Instant, plan: &Plan) {
    let secs = started.elapsed().as_secs_f64();
    let finished = shared.finished.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    let goal = match (plan.requests, plan.duration) {
        (Some(n), _) => format!("/{n}"),
        (None, Some(d)) => format!(" (of {:.0}s)", d.as_secs_f64()),
        (None, None) => String::new(),
    };
    let rate = if secs > 0.0 {
        finished as f64 / secs
    } else {
        0.0
    };
    let _ = write!(
        io::stderr().lock(),
        "\r\x1b[2K[{secs:6.1}s] {finished}{goal} requests, {failed} errors, {rate:.0} req/s"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_kind_with_the_first_message() {
        let mut outcome = Outcome::new();
        let closed = fcgi::Error::ConnectionClosed {
            address: "x".into(),
            received: 0,
        };
        outcome.record_error(&closed);
        outcome.record_error(&closed);
        outcome.record_error(&fcgi::Error::Timeout {
            phase: fcgi::TimeoutPhase::Idle,
            after: Duration::from_secs(1),
            address: "x".into(),
        });
        assert_eq!(outcome.errors["closed"].count, 2);
        assert_eq!(outcome.errors["closed"].code, crate::failure::PROTOCOL);
        assert_eq!(outcome.errors["timeout"].count, 1);
        assert_eq!(outcome.error_count(), 3);
    }

    #[test]
    fn merged_outcomes_add_up() {
        let mut a = Outcome::new();
        a.status_counts.insert(200, 3);
        a.latency_us.saturating_record(100);
        let mut b = Outcome::new();
        b.status_counts.insert(200, 1);
        b.status_counts.insert(500, 2);
        b.latency_us.saturating_record(300);
        a.merge(b);
        assert_eq!(a.successes(), 6);
        assert_eq!(a.status_counts[&500], 2);
        assert_eq!(a.latency_us.len(), 2);
    }
}
