//! The `sink-elasticsearch` process: installs the index templates, then indexes results and
//! log events until stopped. `ORBIT_ELASTICSEARCH_URL` must be set (the stack leaves this
//! process out when it is not); `ORBIT_ELASTICSEARCH_LOGS=off` indexes results only.
//!
//! It lives in the library, its future boxed, so the binary compiles none of it again: rustc
//! compiles an async fn's body again in every crate that polls its future directly.

use std::time::Duration;

use crate::client::Elastic;
use crate::documents::{logs_template, results_template};
use crate::{BulkWriter, ElasticConfig, ElasticSink};
use anyhow::Context;
use futures::future::BoxFuture;
use orbit_contract::{LogRecord, StoredResult};
use orbit_runtime::backoff::backoff;
use orbit_runtime::sink::sink_consumer;
use orbit_runtime::{env_or, nats, run_sink, streams, telemetry, RuntimeConfig, Shutdown};

/// How long a batch of results or log records waits to fill before it is indexed, in
/// milliseconds (`ORBIT_ELASTICSEARCH_LINGER_MS`): by default a second, the index's refresh
/// interval, so a document becomes searchable at most one refresh later than it would have.
/// A `_bulk` request costs the cluster far more than the documents it carries; the local
/// stand-in rewrites its whole store after each one, so the local stacks wait longer.
const DEFAULT_LINGER_MS: u64 = 1000;

/// Runs the process until SIGINT or SIGTERM.
pub fn run() -> BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(process())
}

async fn process() -> anyhow::Result<()> {
    telemetry::init();
    let elastic_config = elastic_config()?;
    let results_index: String =
        env_or("ORBIT_ELASTICSEARCH_RESULTS_INDEX", "orbit-results".into())?;
    let logs_prefix: String = env_or("ORBIT_ELASTICSEARCH_LOGS_PREFIX", "orbit-logs-".into())?;
    let index_logs =
        !env_or("ORBIT_ELASTICSEARCH_LOGS", "on".to_string())?.eq_ignore_ascii_case("off");
    // `ORBIT_ELASTICSEARCH_DATA=off`: documents without the series, outputs and parameters
    // (Postgres keeps those); the results index holds what is searched, at a fraction of the
    // bytes.
    let with_data =
        !env_or("ORBIT_ELASTICSEARCH_DATA", "on".to_string())?.eq_ignore_ascii_case("off");
    // `ORBIT_ELASTICSEARCH_CONSUMER` (default `elasticsearch`): the consumers are
    // `sink-<name>` and `sink-<name>-logs`, so a second, independent indexer (another cluster,
    // a benchmark) reads RESULTS on its own. Named once per process, hence leaked.
    let name: String = env_or("ORBIT_ELASTICSEARCH_CONSUMER", "elasticsearch".into())?;
    let results_name: &'static str = Box::leak(name.clone().into_boxed_str());
    let logs_name: &'static str = Box::leak(format!("{name}-logs").into_boxed_str());
    let linger = Duration::from_millis(env_or("ORBIT_ELASTICSEARCH_LINGER_MS", DEFAULT_LINGER_MS)?);
    let config = RuntimeConfig::sink_from_env("sink-elasticsearch", linger)?;
    let shutdown = Shutdown::on_signals();

    orbit_runtime::metrics::install(config.metrics_addr)?;
    let elastic = Elastic::new(&elastic_config)?;
    let client = nats::connect(&config.nats_url, &config.worker_id).await?;
    let js = nats::jetstream(client.clone());
    streams::ensure(&js, &streams::StreamSettings::from_env()?).await?;
    // The consumers exist before Elasticsearch is waited for: results published while the
    // cluster is away (or slow to answer at start) wait in them, which matters most for a
    // consumer made at the streams' end (`ORBIT_SINK_DELIVER=new`).
    sink_consumer::<StoredResult>(&js, results_name, &config)
        .await
        .map_err(|err| anyhow::anyhow!("creating the results consumer: {err}"))?;
    if index_logs {
        sink_consumer::<LogRecord>(&js, logs_name, &config)
            .await
            .map_err(|err| anyhow::anyhow!("creating the logs consumer: {err}"))?;
    }
    if !prepare(&elastic, &results_index, &logs_prefix, &shutdown).await {
        return Ok(());
    }

    if let Some(retention) = retention()? {
        tokio::spawn(expire_results(
            elastic.clone(),
            results_index.clone(),
            retention,
            shutdown.clone(),
        ));
    }
    let writer = BulkWriter::new(elastic);
    let mut results_sink = ElasticSink::results(writer.clone(), results_name, results_index);
    if !with_data {
        results_sink = results_sink.without_data();
    }
    let results = run_sink(results_sink, js.clone(), config.clone(), shutdown.clone());
    let logs = async {
        if index_logs {
            let sink = ElasticSink::logs(writer, logs_name, logs_prefix);
            run_sink(sink, js, config, shutdown).await
        } else {
            Ok(())
        }
    };
    let (results, logs) = tokio::join!(results, logs);
    results.map_err(|err| anyhow::anyhow!("results: {err}"))?;
    logs.map_err(|err| anyhow::anyhow!("logs: {err}"))?;
    client.flush().await.ok();
    Ok(())
}

/// `ORBIT_ELASTICSEARCH_RESULTS_RETENTION_SECS`: how long result documents stay searchable;
/// unset or 0 keeps them (a real cluster's index lifecycle policy decides). Postgres keeps
/// every result whatever this says.
fn retention() -> anyhow::Result<Option<Duration>> {
    let seconds: u64 = env_or("ORBIT_ELASTICSEARCH_RESULTS_RETENTION_SECS", 0u64)?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds)))
}

/// Deletes the result documents older than `retention` (by `finished_at`) once a minute, or
/// more often for a short retention. The local Elasticsearch-API server writes its whole store
/// to disk after every change, so what it holds, not the rate, sets its CPU: bounded here, its
/// cost stays flat however long the stack runs.
async fn expire_results(elastic: Elastic, index: String, retention: Duration, shutdown: Shutdown) {
    let period = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        match elastic
            .delete_older_than(&index, "finished_at", retention)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                deleted,
                index,
                retention_secs = retention.as_secs(),
                "expired result documents"
            ),
            Err(err) => tracing::warn!(error = %err, index, "expiring result documents failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.wait() => return,
        }
    }
}

fn elastic_config() -> anyhow::Result<ElasticConfig> {
    let url: String = env_or("ORBIT_ELASTICSEARCH_URL", String::new())?;
    if url.is_empty() {
        anyhow::bail!("ORBIT_ELASTICSEARCH_URL is not set: say where Elasticsearch listens");
    }
    let optional = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let basic = match (
        optional("ORBIT_ELASTICSEARCH_USERNAME"),
        optional("ORBIT_ELASTICSEARCH_PASSWORD"),
    ) {
        (Some(user), Some(password)) => Some((user, password)),
        (Some(_), None) => {
            anyhow::bail!(
                "ORBIT_ELASTICSEARCH_USERNAME is set without ORBIT_ELASTICSEARCH_PASSWORD"
            )
        }
        _ => None,
    };
    Ok(ElasticConfig {
        url,
        api_key: optional("ORBIT_ELASTICSEARCH_API_KEY"),
        basic,
        ca_file: optional("ORBIT_ELASTICSEARCH_CA_FILE"),
        timeout: Duration::from_secs(env_or("ORBIT_ELASTICSEARCH_TIMEOUT_SECS", 30u64)?),
    })
}

/// Waits for the cluster and installs the index templates, retrying with back-off for as long
/// as it takes (results and logs wait in their streams meanwhile). False when stopped first.
async fn prepare(
    elastic: &Elastic,
    results_index: &str,
    logs_prefix: &str,
    shutdown: &Shutdown,
) -> bool {
    let mut attempt = 0u32;
    loop {
        let outcome = async {
            let version = elastic
                .version()
                .await
                .context("reading the cluster's version")?;
            // Each template is named after what it shapes, so an indexer with other indices
            // (a second cluster's, a benchmark's) never rewrites the stack's templates.
            let logs_name = logs_prefix.trim_end_matches(['-', '_', '.']);
            elastic
                .put_index_template(results_index, &results_template(results_index))
                .await
                .with_context(|| format!("installing the {results_index} index template"))?;
            elastic
                .put_index_template(logs_name, &logs_template(logs_prefix))
                .await
                .with_context(|| format!("installing the {logs_name} index template"))?;
            anyhow::Ok(version)
        }
        .await;
        match outcome {
            Ok(version) => {
                tracing::info!(%version, results_index, logs_prefix, "Elasticsearch ready; index templates installed");
                return true;
            }
            Err(err) => {
                attempt += 1;
                tracing::warn!(
                    error = format!("{err:#}"),
                    attempt,
                    "Elasticsearch not ready; results wait in RESULTS"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                    _ = shutdown.wait() => return false,
                }
            }
        }
    }
}
