//! Waiting for a condition, with a deadline.

use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it holds; after `within`, panics with
/// `what` and what `logs` returns (the servers' logs).
pub async fn wait_until<F, Fut>(
    within: Duration,
    what: &str,
    logs: impl Fn() -> String,
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < within,
            "not within {within:?}: {what}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`wait_until`] for a test without a runtime: `check` is a plain
/// function and the thread sleeps between polls.
pub fn wait_until_blocking(
    within: Duration,
    what: &str,
    logs: impl Fn() -> String,
    mut check: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < within,
            "not within {within:?}: {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
