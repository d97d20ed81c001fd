//! The event loops of `fcgi serve`, as nginx has worker processes: one
//! thread per loop, each a single-threaded tokio runtime with its own
//! gateway and its own share of the upstream pool (nginx splits its
//! `keepalive` connections between workers the same way). Loop 0 also
//! accepts, and hands each new client connection to the loop with the
//! fewest open ones; a connection then stays on its loop, so no request
//! ever moves between threads (no cross-thread wake-up per request, which
//! is what a work-stealing runtime pays).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fcgi::gateway::Gateway;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::{conn, Common, State};
use crate::shared::failure::{self, Failure};

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The number of event loops: `threads` (0: one per two cores, rounded up),
/// but never more than there are upstream connections to share among them.
///
/// Why half the cores by default: the PHP workers behind the gateway need
/// CPU too, usually on the same machine. On 2 cores next to php-fpm, one
/// loop served as many requests per second as two (hello.php, a static
/// file, 100 KB POSTs) at 15 to 20% less CPU per request
/// (`bench/serve-vs-nginx`, bench/SERVE-RESULTS.md).
pub fn count(threads: usize, max_connections: usize) -> usize {
    let wanted = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)),
        n => n,
    };
    wanted.min(max_connections).max(1)
}

/// Loop `index`'s share of `total` upstream connections.
pub fn share(total: usize, loops: usize, index: usize) -> usize {
    total / loops + usize::from(index < total % loops)
}

/// What the loops share: settings, the cap on client connections, the stop
/// signal, and how many connections each loop has open.
pub struct Shared {
    common: Arc<Common>,
    slots: Arc<Semaphore>,
    max_clients: usize,
    stop: watch::Sender<bool>,
    open: Vec<AtomicUsize>,
}

impl Shared {
    pub fn new(common: Common, max_clients: usize, loops: usize) -> Shared {
        Shared {
            common: Arc::new(common),
            slots: Arc::new(Semaphore::new(max_clients)),
            max_clients,
            stop: watch::channel(false).0,
            open: (0..loops).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// The loop with the fewest open connections.
    fn least_busy(&self) -> usize {
        (0..self.open.len())
            .min_by_key(|&i| self.open[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// A client connection on its way to its loop.
struct Handoff {
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(failure::OTHER, format!("cannot start an event loop: {e}")))
}

/// Runs every loop until Ctrl-C or SIGTERM, then lets in-flight requests
/// finish (at most `shutdown_timeout`).
pub fn run(
    listener: std::net::TcpListener,
    gateways: Vec<Gateway>,
    shared: Shared,
    shutdown_timeout: Duration,
) -> Result<(), Failure> {
    let shared = Arc::new(shared);
    let mut states = gateways.into_iter().map(|gateway| {
        Arc::new(State {
            gateway,
            common: Arc::clone(&shared.common),
        })
    });
    let first = states
        .next()
        .ok_or_else(|| Failure::new(failure::OTHER, "no event loop"))?;
    let mut senders = Vec::new();
    for (i, state) in states.enumerate() {
        let index = i + 1;
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        let runtime = runtime()?;
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("fcgi-serve-{index}"))
            .spawn(move || runtime.block_on(worker(index, rx, state, shared)))
            .map_err(|e| Failure::new(failure::OTHER, format!("cannot start a thread: {e}")))?;
    }
    runtime()?.block_on(accept(listener, first, senders, shared, shutdown_timeout))
}

/// A loop other than the first: serves the connections handed to it, until
/// the process ends.
async fn worker(
    index: usize,
    mut handoffs: mpsc::UnboundedReceiver<Handoff>,
    state: Arc<State>,
    shared: Arc<Shared>,
) {
    while let Some(handoff) = handoffs.recv().await {
        match TcpStream::from_std(handoff.tcp) {
            Ok(tcp) => spawn_connection(index, tcp, handoff.peer, handoff.permit, &state, &shared),
            Err(error) => {
                shared.open[index].fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(target: "fcgi_cli", %error, "cannot register a connection");
            }
        }
    }
    // The acceptor has stopped; connections still running finish here.
    std::future::pending::<()>().await;
}

fn spawn_connection(
    index: usize,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    state: &Arc<State>,
    shared: &Arc<Shared>,
) {
    let state = Arc::clone(state);
    let shared = Arc::clone(shared);
    let stop = shared.stop.subscribe();
    tokio::spawn(async move {
        conn::serve(state, tcp, peer, stop).await;
        shared.open[index].fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    });
}

/// Loop 0: accepts, hands connections out, and stops everything on a
/// signal.
async fn accept(
    listener: std::net::TcpListener,
    state: Arc<State>,
    senders: Vec<mpsc::UnboundedSender<Handoff>>,
    shared: Arc<Shared>,
    shutdown_timeout: Duration,
) -> Result<(), Failure> {
    let listener = TcpListener::from_std(listener)
        .map_err(|e| Failure::new(failure::OTHER, format!("listener: {e}")))?;
    let shutdown = crate::shared::signals::shutdown_signal();
    tokio::pin!(shutdown);
    let mut warned_full = false;
    let signal = loop {
        let permit = match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !warned_full {
                    warned_full = true;
                    tracing::warn!(target: "fcgi_cli", max = shared.max_clients, "--max-client-connections reached: new connections wait in the listen queue");
                }
                tokio::select! {
                    permit = Arc::clone(&shared.slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break "stopped",
                    },
                    signal = &mut shutdown => break signal,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(target: "fcgi_cli", %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            signal = &mut shutdown => break signal,
        };
        let index = shared.least_busy();
        shared.open[index].fetch_add(1, Ordering::Relaxed);
        if index == 0 {
            spawn_connection(0, tcp, peer, permit, &state, &shared);
            continue;
        }
        let handed = tcp.into_std().map_err(|e| e.to_string()).and_then(|tcp| {
            senders[index - 1]
                .send(Handoff { tcp, peer, permit })
                .map_err(|_| "the event loop is gone".to_string())
        });
        if let Err(error) = handed {
            shared.open[index].fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(target: "fcgi_cli", %peer, %error, "cannot hand a connection to its event loop");
        }
    };
    eprintln!("fcgi serve: {signal}: no new connections; waiting for in-flight requests");
    drop(listener);
    let _ = shared.stop.send(true);
    let all = u32::try_from(shared.max_clients).unwrap_or(u32::MAX);
    tokio::select! {
        _ = shared.slots.acquire_many(all) => eprintln!("fcgi serve: all requests finished; bye"),
        _ = tokio::time::sleep(shutdown_timeout) => {
            eprintln!("fcgi serve: requests still running after {shutdown_timeout:?}; exiting")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_split_between_loops_and_loops_never_outnumber_it() {
        assert_eq!(count(2, 4), 2);
        assert_eq!(count(8, 3), 3);
        assert_eq!(count(1, 4), 1);
        let shares: Vec<usize> = (0..2).map(|i| share(5, 2, i)).collect();
        assert_eq!(shares, [3, 2]);
        assert_eq!((0..3).map(|i| share(3, 3, i)).sum::<usize>(), 3);
    }
}
