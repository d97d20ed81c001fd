//! The load loop: one thread and one keep-alive blocking client per
//! connection, each recording into its own HDR histogram and tallies, merged
//! at the end; a shared counter hands out the request budget (`-n`) or a
//! shared end time stops the loops (`-d`).
//!
//! With `--rate` (open model, as wrk2) the counter hands out send slots on
//! a fixed schedule instead: slot i is meant to go out at start + i/rate,
//! whichever connection is free takes it, and its latency is measured from
//! that intended time, so a slow server cannot hide behind the client's
//! own waiting (coordinated omission). Slots still unsent at the end are
//! missed sends.
//!
//! A run with a duration ends when it is up: the main thread stops waiting,
//! closes every connection's tally, and a request still in flight is
//! counted as abandoned, never waited for (its thread is left to its
//! blocking read, which ends with the process).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fcgi::{Address, Chunk, Client, Config, ResponseStream};
use hdrhistogram::Histogram;

use super::Template;
use crate::shared::failure::Failure;

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
    /// `--rate`: requests per second, sent on schedule (open model).
    pub rate: Option<f64>,
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
    /// Requests in flight when the duration ran out, abandoned.
    pub abandoned: u64,
    /// `--rate`: sends the schedule asked for.
    pub intended: Option<u64>,
    /// `--rate`: sends made.
    pub sent: u64,
    /// `--rate`: sends made late (see [`LATE_AFTER`]).
    pub late: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            elapsed: Duration::ZERO,
            latency_us: new_histogram(),
            status_counts: BTreeMap::new(),
            errors: BTreeMap::new(),
            body_bytes: 0,
            abandoned: 0,
            intended: None,
            sent: 0,
            late: 0,
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

    /// `--rate`: scheduled sends that never went out before the end, all
    /// connections being busy.
    pub fn missed(&self) -> Option<u64> {
        self.intended.map(|i| i.saturating_sub(self.sent))
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
        self.abandoned += other.abandoned;
        self.sent += other.sent;
        self.late += other.late;
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
    /// Requests handed out so far (`-n`), or send slots taken (`--rate`).
    issued: AtomicU64,
    /// Requests finished so far (answered or failed), for the progress line.
    finished: AtomicU64,
    /// Requests failed so far, for the progress line.
    failed: AtomicU64,
    /// Set when a request cannot be built or sent at all: stop everywhere.
    stop: AtomicBool,
    limit: Option<u64>,
    started: Instant,
    end: Option<Instant>,
    /// `--rate`: the time between two intended sends.
    period: Option<Duration>,
}

impl Shared {
    /// Closed-model pacing: whether this thread may send one more request.
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

    /// Open-model pacing (`--rate`): the intended send time of the next
    /// free slot, once it has come (the thread sleeps until then); `None`
    /// when the run is over.
    fn next_slot(&self, period: Duration) -> Option<Instant> {
        let slot = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|limit| slot >= limit) {
            return None;
        }
        let intended = self.started + period.mul_f64(slot as f64);
        if self.end.is_some_and(|end| intended >= end) {
            return None;
        }
        let now = Instant::now();
        if intended > now {
            thread::sleep(intended - now);
        }
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        Some(intended)
    }
}

/// One connection's figures, shared with the main thread so that the run
/// can end at its duration without waiting for a request in flight.
#[derive(Debug)]
struct Slot {
    outcome: Outcome,
    /// A request is on its way.
    in_flight: bool,
    /// The run is over: record nothing more, send nothing more.
    closed: bool,
}

type SlotCell = Mutex<Slot>;

fn lock(slot: &SlotCell) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends later than their intended time by more than this (or by more than
/// the interval between sends, if longer) count as late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

/// Runs the plan against `address`; returns the merged figures. A request
/// that cannot be built (refused before anything is sent) stops the run.
/// With a duration, the run ends when it is up: requests still in flight
/// are abandoned (counted in [`Outcome::abandoned`]), never waited for.
pub fn run(
    address: &Address,
    config: Config,
    template: &Template,
    plan: &Plan,
) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        limit: plan.requests,
        started,
        end: plan.duration.map(|d| started + d),
        period: plan.rate.map(|rate| Duration::from_secs_f64(1.0 / rate)),
    });
    let template = Arc::new(template.clone());
    let mut slots: Vec<Arc<SlotCell>> = Vec::new();
    let (done_tx, done_rx) = mpsc::channel();
    for i in 0..plan.connections {
        let client = Client::with_config(address.clone(), config.clone())?;
        let slot = Arc::new(Mutex::new(Slot {
            outcome: Outcome::new(),
            in_flight: false,
            closed: false,
        }));
        slots.push(Arc::clone(&slot));
        let done_tx = done_tx.clone();
        let thread_shared = Arc::clone(&shared);
        let template = Arc::clone(&template);
        thread::Builder::new()
            .name(format!("bench-{i}"))
            .spawn(move || {
                let stop = connection_loop(&client, &template, &thread_shared, &slot);
                let _ = done_tx.send(stop);
            })
            .map_err(|e| {
                shared.stop.store(true, Ordering::Relaxed);
                Failure::new(
                    crate::shared::failure::OTHER,
                    format!("cannot start connection thread {i}: {e}"),
                )
            })?;
    }
    drop(done_tx);
    let mut refused: Option<Failure> = None;
    let mut remaining = plan.connections;
    while remaining > 0 {
        let wait = match shared.end {
            Some(end) => match end.checked_duration_since(Instant::now()) {
                Some(left) => left.min(PROGRESS_EVERY),
                // The duration is up: whatever is in flight is abandoned.
                None => break,
            },
            None => PROGRESS_EVERY,
        };
        match done_rx.recv_timeout(wait) {
            Ok(stop) => {
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
    let mut total = Outcome::new();
    total.elapsed = started.elapsed();
    if let Some(duration) = plan.duration {
        total.elapsed = total.elapsed.min(duration);
    }
    for slot in &slots {
        let mut slot = lock(slot);
        slot.closed = true;
        if slot.in_flight {
            total.abandoned += 1;
        }
        let outcome = std::mem::replace(&mut slot.outcome, Outcome::new());
        total.merge(outcome);
    }
    if let Some(period) = shared.period {
        total.intended = Some(intended_sends(plan, period));
    }
    if plan.progress {
        // Clear the progress line.
        let _ = write!(io::stderr().lock(), "\r\x1b[2K");
    }
    match refused {
        Some(failure) => Err(failure),
        None => Ok(total),
    }
}

/// How many sends the schedule asks for: `-n`, or one per interval over
/// the duration (the first at 0).
fn intended_sends(plan: &Plan, period: Duration) -> u64 {
    match (plan.requests, plan.duration) {
        (Some(n), _) => n,
        (None, Some(d)) => (d.as_secs_f64() / period.as_secs_f64()).ceil() as u64,
        (None, None) => 0,
    }
}

/// One connection's loop, recording into its slot; returns the failure
/// that stopped the whole run, if any.
fn connection_loop(
    client: &Client,
    template: &Template,
    shared: &Shared,
    slot: &SlotCell,
) -> Option<Failure> {
    let request = template.request();
    // Encoded once; a request that cannot be prepared goes the long way, so
    // that its error is counted (or stops the run) exactly as per request.
    let prepared = client.prepare(template.request()).ok();
    let late_after = shared.period.map_or(LATE_AFTER, |p| p.max(LATE_AFTER));
    loop {
        let intended = match shared.period {
            Some(period) => match shared.next_slot(period) {
                Some(at) => Some(at),
                None => return None,
            },
            None if shared.next() => None,
            None => return None,
        };
        {
            let mut slot = lock(slot);
            if slot.closed {
                return None;
            }
            slot.in_flight = true;
            if let Some(at) = intended {
                slot.outcome.sent += 1;
                if at.elapsed() > late_after {
                    slot.outcome.late += 1;
                }
            }
        }
        let result = match &prepared {
            Some(prepared) => client.stream_prepared(prepared),
            None => client.stream_again(&request),
        };
        // Latency counts from the intended send time (--rate: no
        // coordinated omission), else from when the client began.
        let result = result.and_then(|mut stream| {
            let (status, bytes) = drain(&mut stream)?;
            let from = intended.unwrap_or_else(|| stream.started());
            Ok((status, bytes, from.elapsed()))
        });
        let mut slot = lock(slot);
        if slot.closed {
            // Counted as abandoned when the run ended.
            return None;
        }
        slot.in_flight = false;
        match result {
            Ok((status, bytes, elapsed)) => {
                let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                slot.outcome.latency_us.saturating_record(us.max(1));
                *slot.outcome.status_counts.entry(status).or_default() += 1;
                slot.outcome.body_bytes += bytes;
            }
            Err(err) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                if matches!(
                    err,
                    fcgi::Error::InvalidRequest(_) | fcgi::Error::InvalidAddress(_)
                ) {
                    // The same request would be refused every time.
                    shared.stop.store(true, Ordering::Relaxed);
                    return Some(Failure::from_fcgi(&err));
                }
                slot.outcome.record_error(&err);
            }
        }
        drop(slot);
        shared.finished.fetch_add(1, Ordering::Relaxed);
    }
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
        assert_eq!(
            outcome.errors["closed"].code,
            crate::shared::failure::PROTOCOL
        );
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
