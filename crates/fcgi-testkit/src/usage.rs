//! What this process holds, from `/proc/self`: open file descriptors,
//! threads and resident memory, for tests that check nothing leaks; and the
//! CPU time a thread used, for tests that check a wait does not spin.

/// A snapshot of this process's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: u64,
    /// Resident set size in KiB.
    pub rss_kb: u64,
}

impl Usage {
    /// The resources this process holds now.
    pub fn now() -> Usage {
        Usage {
            fds: open_fds(),
            threads: status_field("Threads:"),
            rss_kb: rss_kb(),
        }
    }
}

/// CPU time the calling thread has used so far (the scheduler's account
/// in `/proc/thread-self/schedstat`, in nanoseconds).
pub fn thread_cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat");
    let nanos = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected /proc/thread-self/schedstat: {stat:?}"));
    std::time::Duration::from_nanos(nanos)
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Resident set size of this process in KiB.
pub fn rss_kb() -> u64 {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /proc/self/status"))
}

/// Panics unless `after` holds as many file descriptors and threads as
/// `before` and at most `max_rss_growth_kb` KiB more resident memory.
pub fn assert_no_growth(before: Usage, after: Usage, max_rss_growth_kb: u64) {
    assert_eq!(
        after.fds, before.fds,
        "open file descriptors: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.threads, before.threads,
        "threads: {before:?} -> {after:?}"
    );
    let growth_kb = after.rss_kb.saturating_sub(before.rss_kb);
    assert!(
        growth_kb < max_rss_growth_kb,
        "resident memory grew by {growth_kb} KiB: {before:?} -> {after:?}"
    );
}
