//! The `sink-elasticsearch` process: installs the index templates, then indexes results and
//! log events until stopped. `ORBIT_ELASTICSEARCH_URL` must be set (the stack leaves this
//! process out when it is not); `ORBIT_ELASTICSEARCH_LOGS=off` indexes results only.

use std::time::Duration;

use anyhow::Context;
use orbit_runtime::worker::backoff;
use orbit_runtime::{env_or, nats, run_sink, streams, telemetry, RuntimeConfig, Shutdown};
use sink_elasticsearch::client::Elastic;
use sink_elasticsearch::documents::{logs_template, results_template};
use sink_elasticsearch::{BulkWriter, ElasticConfig, ElasticSink};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let elastic_config = elastic_config()?;
    let results_index: String =
        env_or("ORBIT_ELASTICSEARCH_RESULTS_INDEX", "orbit-results".into())?;
    let logs_prefix: String = env_or("ORBIT_ELASTICSEARCH_LOGS_PREFIX", "orbit-logs-".into())?;
    let index_logs =
        !env_or("ORBIT_ELASTICSEARCH_LOGS", "on".to_string())?.eq_ignore_ascii_case("off");
    let config = RuntimeConfig::sink_from_env("sink-elasticsearch")?;
    let shutdown = Shutdown::on_signals();

    orbit_runtime::metrics::install(config.metrics_addr)?;
    let elastic = Elastic::new(&elastic_config)?;
    if !prepare(&elastic, &results_index, &logs_prefix, &shutdown).await {
        return Ok(());
    }
    let client = nats::connect(&config.nats_url, &config.worker_id).await?;
    let js = nats::jetstream(client.clone());
    streams::ensure(&js, &streams::StreamSettings::from_env()?).await?;

    let writer = BulkWriter::new(elastic);
    let results = run_sink(
        ElasticSink::results(writer.clone(), results_index),
        js.clone(),
        config.clone(),
        shutdown.clone(),
    );
    let logs = async {
        if index_logs {
            run_sink(ElasticSink::logs(writer, logs_prefix), js, config, shutdown).await
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
            elastic
                .put_index_template("orbit-results", &results_template(results_index))
                .await
                .context("installing the orbit-results index template")?;
            elastic
                .put_index_template("orbit-logs", &logs_template(logs_prefix))
                .await
                .context("installing the orbit-logs index template")?;
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
