//! Faults under load: while client threads (or the tasks of the async
//! client) drive a real php-fpm pool, the pool is reloaded, workers are
//! killed, the master is restarted, or every worker is busy. Every request is counted: succeeded (body checked byte for
//! byte), failed with a typed error (by kind), hung (a time limit fired:
//! must be zero), corrupted (wrong bytes: must be zero).
//!
//! Each test prints its tally on one line (`cargo test --test
//! faults_under_load -- --nocapture` shows them); the README's fault matrix
//! comes from those lines.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(feature = "tokio")]
use fcgi::AsyncClient;
use fcgi::{Client, Config, Error, Request};
use fcgi_testkit::{pattern_at, PhpFpm};

const CLIENT_THREADS: usize = 8;
const WORKERS: usize = 4;
const LOAD_TIME: Duration = Duration::from_millis(2500);
const FAULT_AT: Duration = Duration::from_millis(800);

#[derive(Debug, Default)]
struct Tally {
    succeeded: usize,
    failed: BTreeMap<&'static str, usize>,
    hung: usize,
    corrupted: usize,
}

impl Tally {
    fn total(&self) -> usize {
        self.succeeded + self.failed.values().sum::<usize>() + self.hung + self.corrupted
    }
}

fn kind(error: &Error) -> &'static str {
    match error {
        Error::Connect { .. } => "connect",
        Error::ConnectionClosed { .. } => "closed",
        Error::Protocol { .. } => "protocol",
        Error::Rejected { .. } => "rejected",
        Error::Io { .. } => "io",
        _ => "other",
    }
}

fn config(keep_alive: bool) -> Config {
    Config::default()
        .keep_alive(keep_alive)
        .connect_timeout(Duration::from_secs(2))
        .idle_timeout(Duration::from_secs(5))
        .deadline(Duration::from_secs(10))
}

/// Drives the pool from `CLIENT_THREADS` threads (half over TCP, half over
/// the Unix socket) for `LOAD_TIME`, running `fault` at `FAULT_AT`.
fn under_load<R>(
    name: &str,
    fpm: &PhpFpm,
    keep_alive: bool,
    fault: impl FnOnce(&PhpFpm) -> R,
) -> (Tally, R) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let script = fpm.script("output.php").to_string_lossy().into_owned();
    let faulted = std::thread::scope(|scope| {
        for t in 0..CLIENT_THREADS {
            let (tally, stop, script) = (Arc::clone(&tally), Arc::clone(&stop), script.clone());
            let address = fpm.addresses()[t % 2].clone();
            scope.spawn(move || {
                let client = Client::with_config(address.as_str(), config(keep_alive)).unwrap();
                let mut i = t * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let len = 1_000 + (i * 7_919) % 150_000;
                    let started = Instant::now();
                    let outcome = client.execute(Request::get(&format!("{script}?bytes={len}")));
                    count(&tally, outcome, len, started);
                }
            });
        }
        std::thread::sleep(FAULT_AT);
        let faulted = fault(fpm);
        std::thread::sleep(LOAD_TIME.saturating_sub(FAULT_AT));
        stop.store(true, Ordering::Relaxed);
        faulted
    });
    report(name, tally, faulted)
}

/// Adds one request's outcome to the tally.
fn count(
    tally: &Mutex<Tally>,
    outcome: Result<fcgi::Response, Error>,
    len: usize,
    started: Instant,
) {
    let mut tally = tally.lock().unwrap();
    match outcome {
        Ok(r) if r.status == 200 && r.body.len() == len && r.body == pattern_at(0, len) => {
            tally.succeeded += 1
        }
        Ok(_) => tally.corrupted += 1,
        Err(e) if e.timeout_phase().is_some() => tally.hung += 1,
        Err(e) => *tally.failed.entry(kind(&e)).or_default() += 1,
    }
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "a request outlived its deadline"
    );
}

/// Prints the tally line of test `name`.
fn report<R>(name: &str, tally: Arc<Mutex<Tally>>, faulted: R) -> (Tally, R) {
    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    eprintln!(
        "fault-matrix: {name}: requests={} succeeded={} failed_cleanly={} {:?} hung={} corrupted={}",
        tally.total(),
        tally.succeeded,
        tally.failed.values().sum::<usize>(),
        tally.failed,
        tally.hung,
        tally.corrupted
    );
    (tally, faulted)
}

/// [`under_load`] with the async client: one client per address (TCP and
/// Unix), each pooling `WORKERS / 2` kept connections, shared by
/// `CLIENT_THREADS` tasks on a two-worker runtime.
#[cfg(feature = "tokio")]
fn under_load_async<R>(name: &str, fpm: &PhpFpm, fault: impl FnOnce(&PhpFpm) -> R) -> (Tally, R) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let script = fpm.script("output.php").to_string_lossy().into_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clients: Vec<AsyncClient> = fpm
        .addresses()
        .iter()
        .map(|address| {
            AsyncClient::builder()
                .upstream(address.as_str())
                .config(config(true))
                .max_connections(WORKERS / 2)
                .build()
                .unwrap()
        })
        .collect();
    let tasks: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let (tally, stop, script) = (Arc::clone(&tally), Arc::clone(&stop), script.clone());
            let client = clients[t % 2].clone();
            runtime.spawn(async move {
                let mut i = t * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let len = 1_000 + (i * 7_919) % 150_000;
                    let started = Instant::now();
                    let request = Request::get(&format!("{script}?bytes={len}"));
                    let outcome = client.execute(request).await;
                    count(&tally, outcome, len, started);
                }
            })
        })
        .collect();
    std::thread::sleep(FAULT_AT);
    let faulted = fault(fpm);
    std::thread::sleep(LOAD_TIME.saturating_sub(FAULT_AT));
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in tasks {
            task.await.expect("a load task panicked");
        }
    });
    report(name, tally, faulted)
}

fn pool() -> PhpFpm {
    PhpFpm::builder().max_children(WORKERS).start()
}

/// Three workers killed (SIGKILL), 200 ms apart.
fn kill_three_workers(fpm: &PhpFpm) {
    for _ in 0..3 {
        fpm.kill_worker().expect("a worker to kill");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every failed request failed as one of `kinds`.
fn assert_failed_only_as(tally: &Tally, kinds: &[&str]) {
    assert!(tally.failed.keys().all(|k| kinds.contains(k)), "{tally:?}");
}

fn assert_healthy(tally: &Tally) {
    assert!(tally.succeeded > 0, "no request succeeded: {tally:?}");
    assert_eq!(tally.hung, 0, "requests hit a time limit: {tally:?}");
    assert_eq!(tally.corrupted, 0, "wrong bytes: {tally:?}");
}

#[test]
fn graceful_reload_under_load() {
    let fpm = pool();
    let (tally, ()) = under_load("reload (SIGUSR2)", &fpm, true, |fpm| fpm.reload());
    assert_healthy(&tally);
}

#[test]
fn workers_killed_under_load() {
    let fpm = pool();
    let (tally, ()) = under_load(
        "workers killed (SIGKILL x3)",
        &fpm,
        true,
        kill_three_workers,
    );
    assert_healthy(&tally);
    // Only the requests on a killed worker may fail, and only as a closed connection.
    assert_failed_only_as(&tally, &["closed"]);
}

#[test]
fn master_restarted_under_load() {
    let fpm = pool();
    let (tally, ()) = under_load("master restarted", &fpm, true, |fpm| fpm.restart());
    assert_healthy(&tally);
    assert_failed_only_as(&tally, &["closed", "connect"]);
}

#[test]
fn full_pool_under_load() {
    let fpm = pool();
    let slow = fpm.script("sleep.php").to_string_lossy().into_owned();
    // Without keep-alive: a kept connection pins its worker, and the load
    // would then starve the slow requests instead of queueing behind them.
    let (tally, slow_requests) =
        under_load("pool full (all workers busy 1.5 s)", &fpm, false, |fpm| {
            fpm.addresses()
                .into_iter()
                .cycle()
                .take(WORKERS * 2)
                .map(|address| {
                    let slow = slow.clone();
                    std::thread::spawn(move || {
                        let client = Client::with_config(address.as_str(), config(false)).unwrap();
                        client.execute(Request::get(&format!("{slow}?ms=1500")))
                    })
                })
                .collect::<Vec<_>>()
        });
    for slow in slow_requests {
        let response = slow.join().unwrap().expect("slow request");
        assert_eq!(response.body, b"slept");
    }
    assert_healthy(&tally);
    assert!(
        tally.failed.is_empty(),
        "a full pool only delays requests: {tally:?}"
    );
}

#[test]
#[cfg(feature = "tokio")]
fn async_client_through_a_graceful_reload() {
    let fpm = pool();
    let (tally, ()) = under_load_async("async: reload (SIGUSR2)", &fpm, |fpm| fpm.reload());
    assert_healthy(&tally);
}

#[test]
#[cfg(feature = "tokio")]
fn async_client_with_workers_killed() {
    let fpm = pool();
    let (tally, ()) = under_load_async(
        "async: workers killed (SIGKILL x3)",
        &fpm,
        kill_three_workers,
    );
    assert_healthy(&tally);
    assert_failed_only_as(&tally, &["closed"]);
}

#[test]
#[cfg(feature = "tokio")]
fn async_client_through_a_master_restart() {
    let fpm = pool();
    let (tally, ()) = under_load_async("async: master restarted", &fpm, |fpm| fpm.restart());
    assert_healthy(&tally);
    assert_failed_only_as(&tally, &["closed", "connect"]);
}
