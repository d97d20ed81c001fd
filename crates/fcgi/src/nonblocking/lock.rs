//! The async client's one way to take a `std` mutex: the data it guards
//! stays consistent across a panic, so a poisoned lock is taken as it is.

/// Locks `m`; the data the async client guards stays consistent across a
/// panic (counters, lists), so a poisoned lock is taken as it is.
#[inline]
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
