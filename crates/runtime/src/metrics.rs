//! Prometheus metrics: one recorder per process, scraped over HTTP when an address is set.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds buckets for job and call latencies, from 10 us to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for counts of things handled together (jobs in a model call, results in a write).
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Installs the global recorder. With `listen` set, serves `/metrics` there; the returned
/// handle renders the same text for a process that serves it itself (the gateway).
pub fn install(listen: Option<SocketAddr>) -> Result<PrometheusHandle, BuildError> {
    let builder = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("batch_size".into()), SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_jobs".into()), SIZE_BUCKETS)?;
    match listen {
        Some(addr) => {
            let builder = builder.with_http_listener(addr);
            let (recorder, exporter) = builder.build()?;
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(BuildError::FailedToSetGlobalRecorder)?;
            tokio::spawn(async move {
                if let Err(err) = exporter.await {
                    tracing::error!(error = ?err, "metrics listener stopped");
                }
            });
            tracing::info!(%addr, "serving Prometheus metrics");
            Ok(handle)
        }
        None => builder.install_recorder(),
    }
}
