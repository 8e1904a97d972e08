//! Waiting for the operator: polling with a deadline, and the standard timeouts.

use std::time::{Duration, Instant};

/// Standard timeout for the operator to converge.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// Timeout for changes only a resync notices (resyncPeriod 30s in those tests).
pub const RESYNC: Duration = Duration::from_secs(90);

/// Polls `check` every 500 ms until it returns Some or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
