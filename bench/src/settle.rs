//! Waiting for the stack to be quiet before a scenario: whatever an earlier scenario left
//! behind (results that piled up while the sinks were paused, a backlog the functions are
//! still working through) would otherwise be counted against the next one.

use std::time::{Duration, Instant};

use async_nats::jetstream;

/// The stack's own durable consumers: the functions' (`fn-*`) and the sinks' (`sink-*`).
fn is_stack_consumer(name: &str) -> bool {
    name.starts_with("fn-") || name.starts_with("sink-")
}

/// Messages the stack's consumers on `streams` still have to take or acknowledge.
async fn outstanding(js: &jetstream::Context, streams: &[&str]) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in streams {
        let stream = js.get_stream(*name).await?;
        let mut consumers = stream.consumers();
        while let Some(info) = futures::StreamExt::next(&mut consumers).await {
            let info = info?;
            if is_stack_consumer(&info.name) {
                total += info.num_pending + info.num_ack_pending as u64;
            }
        }
    }
    Ok(total)
}

/// Waits until the functions and sinks have nothing outstanding, up to `limit`; says so when
/// that took a while, and goes on with a warning when it did not happen.
pub async fn settle(js: &jetstream::Context, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let left = outstanding(js, &["JOBS", "RESULTS"]).await?;
        if left == 0 {
            if started.elapsed() > Duration::from_secs(1) {
                println!(
                    "  (waited {:.1} s for the stack to finish earlier work)",
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if started.elapsed() > limit {
            println!("  (warning: {left} messages still outstanding; figures may include them)");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
