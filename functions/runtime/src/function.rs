//! What a function author implements, and [`serve`], which runs it.

use std::sync::Arc;

use orbit_contract::{JobFailure, Model, ValidJob};
use serde_json::Value;

use crate::executor::{BatchPolicy, Executor};
use crate::{config::RuntimeConfig, nats, service, streams, worker, Shutdown};

/// One serverless function: pure computation on checked input. Everything about NATS, retries,
/// batching and shutdown is the runtime's business.
pub trait Function: Send + Sync + 'static {
    /// The model this function serves; its name is the service name and subject token.
    fn model(&self) -> Model;

    /// Reported in results and in `$SRV.INFO` (semantic version).
    fn version(&self) -> &'static str;

    /// One line for `nats micro info`.
    fn description(&self) -> &'static str;

    /// Runs one job.
    fn call(&self, job: &ValidJob) -> Result<Value, JobFailure>;

    /// Runs many jobs in one go, one output per job in the same order. Override it when a batch
    /// is cheaper than its parts (one model call for many series).
    fn call_batch(&self, jobs: &[ValidJob]) -> Vec<Result<Value, JobFailure>> {
        jobs.iter().map(|job| self.call(job)).collect()
    }

    /// Whether `job` is cheap enough to run on an async thread (microseconds). Anything else
    /// runs on the blocking pool so it never stalls NATS traffic.
    fn is_cheap(&self, _job: &ValidJob) -> bool {
        false
    }

    /// Dynamic batching: `Some` stacks concurrent jobs (sync calls and async batches alike)
    /// into one `call_batch`, for functions where one call for many inputs is much cheaper
    /// than many calls (a model).
    fn batching(&self) -> Option<BatchPolicy> {
        None
    }
}

/// Errors that stop a function process.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Connect(#[from] nats::ConnectError),
    #[error(transparent)]
    Streams(#[from] streams::StreamError),
    #[error("metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error("job loop: {0}")]
    Worker(async_nats::Error),
    #[error("service: {0}")]
    Service(async_nats::Error),
}

/// Runs `function` until `shutdown`: the async job loop on its durable consumer and the
/// synchronous micro service, side by side, on one NATS connection.
pub async fn serve<F: Function>(
    function: F,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let name = function.model().name();
    crate::metrics::install(config.metrics_addr)?;
    let client = nats::connect(&config.nats_url, &config.worker_id).await?;
    let js = nats::jetstream(client.clone());
    streams::ensure(&js, &streams::StreamSettings::from_env()?).await?;
    tracing::info!(
        function = name,
        version = function.version(),
        worker_id = %config.worker_id,
        "function starting"
    );

    let executor = Arc::new(Executor::new(Arc::new(function)));
    let jobs = worker::run(
        executor.clone(),
        js.clone(),
        client.clone(),
        config.clone(),
        shutdown.clone(),
    );
    let calls = service::run(executor, js, client.clone(), config, shutdown.clone());
    let (jobs, calls) = tokio::join!(jobs, calls);
    // Whatever stopped first, stop the other too before reporting.
    shutdown.trigger();
    let flushed = client.flush().await;
    jobs.map_err(ServeError::Worker)?;
    calls.map_err(ServeError::Service)?;
    if let Err(err) = flushed {
        tracing::warn!(error = %err, "final flush failed");
    }
    tracing::info!(function = name, "function stopped");
    Ok(())
}

/// Runs `call_batch`, isolating a panic to the job that caused it: a panicking batch is re-run
/// one job at a time, and only the jobs that panic alone fail.
pub(crate) fn call_isolated<F: Function>(
    function: &F,
    jobs: &[ValidJob],
) -> Vec<Result<Value, JobFailure>> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if let Ok(outputs) = catch_unwind(AssertUnwindSafe(|| function.call_batch(jobs))) {
        if outputs.len() == jobs.len() {
            return outputs;
        }
        tracing::error!(
            expected = jobs.len(),
            got = outputs.len(),
            "call_batch returned the wrong number of outputs; running jobs singly"
        );
    }
    jobs.iter()
        .map(|job| {
            catch_unwind(AssertUnwindSafe(|| function.call(job))).unwrap_or_else(|_| {
                Err(JobFailure {
                    code: "function_panicked".into(),
                    message: "the function panicked on this input".into(),
                    field: None,
                })
            })
        })
        .collect()
}
