//! The signals the long-running commands (`serve`, `exporter`) stop on.

/// Resolves on Ctrl-C or SIGTERM; says which.
pub async fn shutdown_signal() -> &'static str {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = ctrl_c => "interrupted",
            _ = term.recv() => "terminated",
        },
        Err(_) => {
            let _ = ctrl_c.await;
            "interrupted"
        }
    }
}
