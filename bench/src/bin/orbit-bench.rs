//! `orbit-bench`: Orbit's benchmarks against the running local stack (`just up`).
//!
//! ```text
//! orbit-bench                       # the short suite (under 3 minutes): every scenario but scaling
//! orbit-bench --long                # bigger runs, plus scaling (1/2/4 replicas, bridge on/off)
//! orbit-bench single batch open     # chosen scenarios
//! orbit-bench single --jobs 20000 --concurrency 64 --model lstm_timeseries
//! orbit-bench panel --series 100000 # one request of 100,000 series to forecast
//! ```
//! Scenarios: single, batch, open, sync, v2, lstm, bridge, elasticsearch, relay, scaling, python,
//! peers (only when named: Orbit beside the Celery design it replaces), panel (only when named:
//! one request of many series). Prints a table per scenario and writes everything as JSON to
//! `bench/results/<time>.json`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use orbit_bench::e2e::{self, Load, Target};
use orbit_bench::peers::{self, Comparison, Peer};
use orbit_bench::ratios::{Figures, OpenRow};
use orbit_bench::resources::{CpuPerJob, Sampler, Usage};
use orbit_bench::stack::Stack;
use orbit_bench::{bridge, elastic, panel, probe, python, relay, scaling, settle, sync};
use serde_json::{json, Value};

/// What the benchmark can measure, each a scenario of its own (bench/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Single,
    Batch,
    Open,
    Sync,
    V2,
    Lstm,
    Bridge,
    Elasticsearch,
    Relay,
    Scaling,
    Python,
    Peers,
    Panel,
}

impl Scenario {
    /// Every scenario, in the order the suite runs them.
    const ALL: [Scenario; 13] = [
        Scenario::Single,
        Scenario::Batch,
        Scenario::Open,
        Scenario::Sync,
        Scenario::V2,
        Scenario::Lstm,
        Scenario::Bridge,
        Scenario::Elasticsearch,
        Scenario::Relay,
        Scenario::Scaling,
        Scenario::Python,
        Scenario::Peers,
        Scenario::Panel,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Single => "single",
            Scenario::Batch => "batch",
            Scenario::Open => "open",
            Scenario::Sync => "sync",
            Scenario::V2 => "v2",
            Scenario::Lstm => "lstm",
            Scenario::Bridge => "bridge",
            Scenario::Elasticsearch => "elasticsearch",
            Scenario::Relay => "relay",
            Scenario::Scaling => "scaling",
            Scenario::Python => "python",
            Scenario::Peers => "peers",
            Scenario::Panel => "panel",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the short suite (no `--long`) runs it; `peers` starts another system and
    /// `panel` runs for minutes, so they run only when named.
    fn in_short_suite(self) -> bool {
        self.in_long_suite() && self != Scenario::Scaling
    }

    fn in_long_suite(self) -> bool {
        self != Scenario::Peers && self != Scenario::Panel
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|s| s.name()).collect()
    }
}

struct Options {
    scenarios: Vec<Scenario>,
    long: bool,
    env: String,
    jobs: Option<usize>,
    concurrency: Option<usize>,
    batch_size: usize,
    model: Option<String>,
    rate: Option<f64>,
    seconds: Option<u64>,
    /// Series in the `panel` scenario's one request.
    series: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        scenarios: Vec::new(),
        long: false,
        env: "dev".into(),
        jobs: None,
        concurrency: None,
        batch_size: 100,
        model: None,
        rate: None,
        seconds: None,
        series: 100_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--long" => options.long = true,
            "--env" => options.env = value()?,
            "--jobs" => options.jobs = Some(value()?.parse()?),
            "--concurrency" => options.concurrency = Some(value()?.parse()?),
            "--batch-size" => options.batch_size = value()?.parse()?,
            "--model" => options.model = Some(value()?),
            "--rate" => options.rate = Some(value()?.parse()?),
            "--seconds" => options.seconds = Some(value()?.parse()?),
            "--series" => options.series = value()?.parse()?,
            "-h" | "--help" => {
                println!("orbit-bench [--long] [SCENARIO...] [--jobs N] [--concurrency N] [--batch-size N] [--model M] [--rate R] [--seconds S] [--series N] [--env dev|test]\nscenarios: {}", Scenario::names().join(" "));
                std::process::exit(0);
            }
            name => match Scenario::named(name) {
                Some(scenario) => options.scenarios.push(scenario),
                None => bail!(
                    "unknown argument {name}; scenarios are {}",
                    Scenario::names().join(", ")
                ),
            },
        }
    }
    if options.scenarios.is_empty() {
        options.scenarios = Scenario::ALL
            .into_iter()
            .filter(|s| {
                if options.long {
                    s.in_long_suite()
                } else {
                    s.in_short_suite()
                }
            })
            .collect();
    }
    Ok(options)
}

struct Bench {
    options: Options,
    stack: Stack,
    target: Target,
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    results: Vec<Value>,
    figures: Figures,
}

impl Bench {
    fn size(&self, short: usize, long: usize) -> usize {
        self.options
            .jobs
            .unwrap_or(if self.options.long { long } else { short })
    }

    fn model(&self, default: &str) -> String {
        self.options
            .model
            .clone()
            .unwrap_or_else(|| default.to_string())
    }

    fn record(&mut self, scenario: &str, label: String, report: Value, usage: Vec<Usage>) {
        print_usage(&usage);
        self.results.push(
            json!({ "scenario": scenario, "label": label, "report": report, "usage": usage }),
        );
    }

    /// Runs sync rows: (path, callers, calls, with the sinks and the bridge paused).
    async fn sync_rows(
        &mut self,
        clients: &sync::Clients,
        plan: Vec<(sync::Path, usize, usize, bool)>,
    ) -> anyhow::Result<()> {
        for (path, concurrency, calls, sinks_paused) in plan {
            let paused = if sinks_paused {
                self.stack.pause_sinks()?
            } else {
                Vec::new()
            };
            let sampler = Sampler::start(&self.stack, self_process());
            let report = sync::run(clients, path, calls, concurrency).await;
            let usage = sampler.finish();
            self.stack.resume(&paused);
            let report = report?;
            let label = if sinks_paused { ", sinks paused" } else { "" };
            println!("\n== sync: {} x{}{label}", report.path, concurrency);
            println!(
                "  {:>9.0} calls/s   p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms   errors {}",
                report.calls_per_second,
                report.latency.p50_ms,
                report.latency.p99_ms,
                report.latency.p999_ms,
                report.errors
            );
            if concurrency == 1 && !sinks_paused {
                let slot = match path {
                    sync::Path::NatsEcho => Some(&mut self.figures.echo),
                    sync::Path::Nats => Some(&mut self.figures.nats),
                    sync::Path::HttpRun => Some(&mut self.figures.http_run),
                    sync::Path::KServe => Some(&mut self.figures.kserve),
                    sync::Path::KServeBinary | sync::Path::NatsPython | sync::Path::Grpc => None,
                };
                if let Some(slot) = slot {
                    slot.get_or_insert(report.latency);
                }
            }
            self.record(
                "sync",
                format!("{} x{concurrency}{label}", report.path),
                serde_json::to_value(&report)?,
                usage,
            );
        }
        Ok(())
    }

    async fn e2e_closed(
        &mut self,
        scenario: Scenario,
        load: Load,
        jobs: usize,
        concurrency: usize,
        extra: Vec<(String, Vec<u32>)>,
    ) -> anyhow::Result<()> {
        let mut measured = self_process();
        measured.extend(extra);
        let sampler = Sampler::start(&self.stack, measured);
        let report = e2e::closed(&self.target, &load, jobs, concurrency).await?;
        let usage = sampler.finish();
        let label = format!(
            "{} {}, {} jobs of {} points, {} connections",
            load.model,
            if load.batch_size > 1 {
                format!("batches of {}", load.batch_size)
            } else {
                "single submits".into()
            },
            report.jobs,
            load.points,
            concurrency
        );
        println!("\n== {}: {label}", scenario.name());
        println!(
            "  submits/s {:>9.0}   end-to-end jobs/s {:>9.0} ({:.2} s)",
            report.submits_per_second, report.jobs_per_second, report.end_to_end_seconds
        );
        println!(
            "  accepted->row  p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms",
            report.latency.p50_ms, report.latency.p99_ms, report.latency.p999_ms
        );
        println!(
            "  http answer    p50 {:>8.2} ms  p99 {:>8.2} ms",
            report.http.p50_ms, report.http.p99_ms
        );
        print_cpu_per_job(&usage, report.jobs);
        if scenario == Scenario::Batch {
            self.figures.batch_cpu_us = cpu_per_job_us(&usage, report.jobs);
        }
        self.record(
            scenario.name(),
            label,
            serde_json::to_value(&report)?,
            usage,
        );
        Ok(())
    }

    /// Single submits offered at `rate` a second for `seconds`, open loop.
    async fn open_row(&mut self, rate: f64, seconds: u64) -> anyhow::Result<()> {
        let load = Load {
            model: self.model("moving_average"),
            points: 64,
            batch_size: 1,
        };
        let sampler = Sampler::start(&self.stack, self_process());
        let report = e2e::open(&self.target, &load, rate, Duration::from_secs(seconds)).await?;
        let usage = sampler.finish();
        let label = format!(
            "{} single submits offered at {rate:.0}/s for {seconds} s",
            load.model
        );
        println!("\n== open: {label}");
        if let Some(s) = report.scheduled_to_row {
            println!(
                "  scheduled->row p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  max {:>8.2} ms",
                s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms
            );
        }
        println!(
            "  accepted->row  p50 {:>8.2} ms  p99 {:>8.2} ms",
            report.latency.p50_ms, report.latency.p99_ms
        );
        println!(
            "  scheduled->202 p50 {:>8.2} ms  p99 {:>8.2} ms   rejected {}",
            report.http.p50_ms, report.http.p99_ms, report.rejected
        );
        print_cpu_per_job(&usage, report.jobs);
        if let Some(cpu) = CpuPerJob::of(&usage, report.jobs) {
            self.figures.open.push(OpenRow {
                rate,
                cpu_us_per_job: cpu.total_us,
                orbit_us_per_job: cpu.orbit_us,
                scheduled_to_row: report.scheduled_to_row,
            });
        }
        self.record("open", label, serde_json::to_value(&report)?, usage);
        Ok(())
    }

    async fn run(&mut self, scenario: Scenario) -> anyhow::Result<()> {
        let long = self.options.long;
        match scenario {
            Scenario::Single => {
                let load = Load {
                    model: self.model("moving_average"),
                    points: 64,
                    batch_size: 1,
                };
                let (jobs, conns) = (
                    self.size(10_000, 40_000),
                    self.options.concurrency.unwrap_or(64),
                );
                self.e2e_closed(Scenario::Single, load, jobs, conns, Vec::new())
                    .await
            }
            Scenario::Batch => {
                let load = Load {
                    model: self.model("moving_average"),
                    points: 64,
                    batch_size: self.options.batch_size,
                };
                let (jobs, conns) = (
                    self.size(20_000, 100_000),
                    self.options.concurrency.unwrap_or(4),
                );
                self.e2e_closed(Scenario::Batch, load, jobs, conns, Vec::new())
                    .await
            }
            Scenario::Lstm => {
                let load = Load {
                    model: "lstm_net".into(),
                    points: 64,
                    batch_size: self.options.batch_size,
                };
                let (jobs, conns) = (
                    self.size(10_000, 40_000),
                    self.options.concurrency.unwrap_or(4),
                );
                self.e2e_closed(Scenario::Lstm, load, jobs, conns, Vec::new())
                    .await
            }
            Scenario::Open => {
                // Where the cost per job is measured against saturation: the rate given, or
                // 1,000 and 100 jobs/s (and 400 in the long suite).
                let rates = match self.options.rate {
                    Some(rate) => vec![rate],
                    None if long => vec![1000.0, 400.0, 100.0],
                    None => vec![1000.0, 100.0],
                };
                let seconds = self.options.seconds.unwrap_or(if long { 60 } else { 10 });
                for rate in rates {
                    self.open_row(rate, seconds).await?;
                }
                Ok(())
            }
            Scenario::Sync => {
                let clients = sync::Clients {
                    nats: self.nats.clone(),
                    http: self.target.http.clone(),
                    base: self.stack.http.clone(),
                    grpc: None,
                };
                let n = |short: usize, long_n: usize| if long { long_n } else { short };
                // The last row freezes the sinks and the bridge: the same calls without the
                // work each record causes downstream on the same two cores (the records wait
                // in RESULTS and are stored once the sinks resume).
                let _echo = sync::EchoResponder::start(self.stack.nats().await?).await?;
                let plan = vec![
                    (sync::Path::NatsEcho, 1, n(5_000, 20_000), false),
                    (sync::Path::Nats, 1, n(5_000, 20_000), false),
                    (sync::Path::Nats, 16, n(30_000, 100_000), false),
                    (sync::Path::HttpRun, 1, n(3_000, 10_000), false),
                    (sync::Path::HttpRun, 16, n(10_000, 40_000), false),
                    (sync::Path::KServe, 1, n(3_000, 10_000), false),
                    (sync::Path::Nats, 1, n(5_000, 20_000), true),
                ];
                self.sync_rows(&clients, plan).await
            }
            Scenario::V2 => {
                // The Open Inference Protocol over HTTP and gRPC against /run and against the
                // bus alone, at 1, 16 and 64 callers: what /v2 adds over the /run path that
                // also goes over NATS, and what each door costs.
                let clients = sync::Clients {
                    nats: self.nats.clone(),
                    http: self.target.http.clone(),
                    base: self.stack.http.clone(),
                    grpc: Some(sync::grpc_client(&self.stack.grpc).await.with_context(|| {
                        format!("the gateway's gRPC door at {}", self.stack.grpc)
                    })?),
                };
                let _echo = sync::EchoResponder::start(self.stack.nats().await?).await?;
                let mut plan = Vec::new();
                for concurrency in [1usize, 16, 64] {
                    let calls = self.size(2_000, 8_000) * concurrency.clamp(1, 8);
                    for path in [
                        sync::Path::NatsEcho,
                        sync::Path::HttpRun,
                        sync::Path::KServe,
                        sync::Path::KServeBinary,
                        sync::Path::Grpc,
                    ] {
                        plan.push((path, concurrency, calls, false));
                    }
                }
                self.sync_rows(&clients, plan).await
            }
            Scenario::Bridge => {
                let backlog = self.size(30_000, 100_000);
                let rate = self.options.rate.unwrap_or(1000.0);
                let seconds = self.options.seconds.unwrap_or(10);
                let report = bridge::run(
                    &self.stack,
                    &self.js,
                    backlog,
                    rate,
                    Duration::from_secs(seconds),
                )
                .await?;
                println!("\n== bridge: RESULTS backlog of {backlog} into Kafka, then {rate:.0} results/s for {seconds} s");
                println!(
                    "  drained {:>9.0} results/s ({:.2} s)",
                    report.results_per_second, report.drain_seconds
                );
                println!("  published->readable in Kafka  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  (lost {})", report.latency.p50_ms, report.latency.p99_ms, report.latency.p999_ms, report.latency_lost);
                println!(
                    "  of which producer->Kafka ack  p50 {:.2} ms  p99 {:.2} ms",
                    report.delivery_p50_ms, report.delivery_p99_ms
                );
                let usage = report.drain_usage.clone();
                self.record(
                    "bridge",
                    format!("backlog {backlog}, {rate:.0}/s"),
                    serde_json::to_value(&report)?,
                    usage,
                );
                Ok(())
            }
            Scenario::Elasticsearch => {
                let backlog = self.size(30_000, 100_000);
                let report = elastic::run(&self.stack, &self.js, backlog).await?;
                println!("\n== elasticsearch: RESULTS backlog of {backlog} into the results index (_bulk)");
                println!(
                    "  indexed {:>9.0} results/s ({:.2} s; {} documents in the index)",
                    report.results_per_second, report.drain_seconds, report.indexed
                );
                let usage = report.drain_usage.clone();
                self.record(
                    "elasticsearch",
                    format!("backlog {backlog}"),
                    serde_json::to_value(&report)?,
                    usage,
                );
                Ok(())
            }
            Scenario::Relay => {
                let rate = self.options.rate.unwrap_or(5000.0);
                let clients = self.options.concurrency.unwrap_or(200);
                let seconds = self.options.seconds.unwrap_or(if long { 30 } else { 10 });
                let report = relay::run(
                    &self.stack,
                    &self.js,
                    clients,
                    rate,
                    Duration::from_secs(seconds),
                )
                .await?;
                println!("\n== relay: {clients} browsers, {rate:.0} results/s for {seconds} s");
                println!("  gateway {:.2} cores   {:.0} results/s pushed to each browser, {:.0} skipped each   {} of {} still connected", report.gateway_cores, report.results_per_client_per_second, report.skipped_per_client, report.connected_at_end, clients);
                println!(
                    "  published->browser  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
                    report.latency.p50_ms, report.latency.p99_ms, report.latency.p999_ms
                );
                let usage = report.usage.clone();
                self.record(
                    "relay",
                    format!("{clients} browsers at {rate:.0}/s"),
                    serde_json::to_value(&report)?,
                    usage,
                );
                Ok(())
            }
            Scenario::Scaling => self.scaling().await,
            Scenario::Python => self.python().await,
            Scenario::Peers => self.peers().await,
            Scenario::Panel => self.panel().await,
        }
    }

    async fn scaling(&mut self) -> anyhow::Result<()> {
        let jobs = self.size(20_000, 40_000);
        let load = Load {
            model: "moving_average".into(),
            points: 64,
            batch_size: 100,
        };
        let outcome = async {
            for count in [1, 2, 4] {
                let children = scaling::replicas(&self.stack, &self.nats, count).await?;
                let result = self
                    .e2e_closed(
                        Scenario::Scaling,
                        Load { ..load.clone() },
                        jobs,
                        4,
                        scaling::components(&children),
                    )
                    .await;
                scaling::stop(children);
                result?;
                if let Some(last) = self.results.last_mut() {
                    last["label"] = json!(format!(
                        "{count} moving_average replica(s), bridge on, batches of 100"
                    ));
                }
            }
            if self.stack.pid("bridge-kafka").is_some() {
                let children = scaling::replicas(&self.stack, &self.nats, 2).await?;
                self.stack.signal("bridge-kafka", "TERM")?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let result = self
                    .e2e_closed(
                        Scenario::Scaling,
                        load.clone(),
                        jobs,
                        4,
                        scaling::components(&children),
                    )
                    .await;
                scaling::stop(children);
                result?;
                if let Some(last) = self.results.last_mut() {
                    last["label"] = json!("2 moving_average replicas, bridge off, batches of 100");
                }
            }
            anyhow::Ok(())
        }
        .await;
        self.stack.restore()?;
        outcome
    }
}

impl Bench {
    /// The Python moving average beside the Rust one, one replica each: batch submits (jobs
    /// a second and each replica's CPU per job), then sync calls over NATS from one caller.
    async fn python(&mut self) -> anyhow::Result<()> {
        let outcome = async {
            let rust = scaling::replicas(&self.stack, &self.nats, 1).await?;
            let python = python::start(&self.stack, &self.nats).await;
            let measured = match &python {
                Ok(python) => self.python_rows(&rust, python).await,
                Err(_) => Ok(()),
            };
            scaling::stop(rust);
            scaling::stop(vec![python?]);
            measured
        }
        .await;
        self.stack.restore()?;
        outcome
    }

    async fn python_rows(
        &mut self,
        rust: &[std::process::Child],
        python: &std::process::Child,
    ) -> anyhow::Result<()> {
        let jobs = self.size(20_000, 100_000);
        let mut measured = scaling::components(rust);
        measured.push((python::WORKER.to_string(), vec![python.id()]));
        let mut rows = Vec::new();
        for (model, worker) in [
            ("moving_average", "bench-ma-0"),
            (python::FUNCTION, python::WORKER),
        ] {
            let load = Load {
                model: model.into(),
                points: 64,
                batch_size: 100,
            };
            self.e2e_closed(Scenario::Python, load, jobs, 4, measured.clone())
                .await?;
            let last = self.results.last();
            let jobs_per_second = last
                .and_then(|r| r["report"]["jobs_per_second"].as_f64())
                .unwrap_or(0.0);
            let replica_us = last
                .and_then(|r| r["usage"].as_array())
                .and_then(|usage| usage.iter().find(|u| u["component"] == worker))
                .and_then(|u| u["cpu_seconds"].as_f64())
                .map_or(0.0, |seconds| seconds * 1e6 / jobs as f64);
            rows.push((jobs_per_second, replica_us));
        }
        let clients = sync::Clients {
            nats: self.nats.clone(),
            http: self.target.http.clone(),
            base: self.stack.http.clone(),
            grpc: None,
        };
        let calls = self.size(5_000, 20_000);
        let mut p50 = Vec::new();
        for path in [sync::Path::Nats, sync::Path::NatsPython] {
            let report = sync::run(&clients, path, calls, 1).await?;
            println!(
                "\n== python: sync {} x1\n  {:>9.0} calls/s   p50 {:>7.3} ms  p99 {:>7.3} ms   errors {}",
                report.path,
                report.calls_per_second,
                report.latency.p50_ms,
                report.latency.p99_ms,
                report.errors
            );
            p50.push(report.latency.p50_ms);
        }
        println!(
            "\npython: batch_jobs_per_s={:.0} rust_batch_jobs_per_s={:.0} replica_cpu_us_per_job={:.1} rust_replica_cpu_us_per_job={:.1} sync_p50_ms={:.3} rust_sync_p50_ms={:.3} sync_p50_ratio={:.2}",
            rows[1].0,
            rows[0].0,
            rows[1].1,
            rows[0].1,
            p50[1],
            p50[0],
            p50[1] / p50[0].max(1e-9)
        );
        Ok(())
    }
}

impl Bench {
    /// One panel of `--series` synthetic monthly series (120 points, horizon 18, season 12) to
    /// `--model` (default `forecast`) over NDJSON, with a progress bar on stderr; ends with the
    /// `panel:` line and the stack's CPU per series. First, 200 lone requests of the same
    /// series, one at a time (p50 and p99).
    async fn panel(&mut self) -> anyhow::Result<()> {
        let function = self.model("forecast");
        let series = self.options.series.max(1);
        let lone = panel::lone(&self.target.http, &self.stack.http, &function, 200).await?;
        println!(
            "\n== lone requests: {} sequential /run calls of one {}-point series to {function}: p50 {:.2} ms, p99 {:.2} ms",
            lone.calls,
            panel::LENGTH,
            lone.p50_ms,
            lone.p99_ms
        );
        println!(
            "\n== panel: {series} series of {} points to {function} in one request (NDJSON)",
            panel::LENGTH
        );
        let sampler = Sampler::start(&self.stack, self_process());
        let report = panel::run(&self.target.http, &self.stack.http, &function, series).await;
        let usage = sampler.finish();
        let report = report?;
        println!("{}", report.line());
        println!(
            "  request {:.1} MB, first answer after {:.2} s",
            report.request_mb, report.first_answer_seconds
        );
        if let Some(failure) = &report.first_failure {
            println!("  first failure: {failure}");
        }
        // A function's replicas are `<name>` and `<name>-<i>`.
        let component = |name: &str| {
            let replica = format!("{name}-");
            usage
                .iter()
                .filter(|u| u.component == name || u.component.starts_with(&replica))
                .map(|u| u.cpu_seconds)
                .sum::<f64>()
                * 1e6
                / series as f64
        };
        println!(
            "  cpu per series: {function} {:.0} us, gateway {:.0} us",
            component(&function),
            component("gateway")
        );
        print_cpu_per_job(&usage, series);
        let line = report.line();
        self.record(
            "panel",
            format!("{series} series to {function}"),
            json!({ "report": report, "line": line, "lone": lone }),
            usage,
        );
        Ok(())
    }

    /// Orbit beside the Celery design it replaces, the same load offered to both: single
    /// submits at 100 jobs/s (CPU per job), each side saturated (Orbit through its batch
    /// endpoint, the peer through its one-submit-per-job API at the connection count that
    /// helps it most), and Orbit at 1,000 jobs/s (scheduled->row p99). Ends with the
    /// `peers:` line.
    async fn peers(&mut self) -> anyhow::Result<()> {
        let peer = Peer::start(&self.stack, &self.options.env).await?;
        let measured = self.peer_comparison(&peer).await;
        peer.stop()?;
        let comparison = measured?;
        println!("\n{}", comparison.line());
        println!("  (targets: cost_ratio_100 >= 3, saturation_ratio >= 50, open_p99_1000_ms < 25)");
        if let Some(p99) = comparison.orbit_open_p99_1000_search_paused_ms {
            println!("  (open_p99_1000_ms with the Elasticsearch stand-in paused: {p99:.1})");
        }
        self.results.push(json!({ "scenario": "peers", "label": "comparison", "report": comparison, "line": comparison.line() }));
        Ok(())
    }

    async fn peer_comparison(&mut self, peer: &Peer) -> anyhow::Result<Comparison> {
        let seconds = self.options.seconds.unwrap_or(20);
        let single = Load {
            model: "moving_average".into(),
            points: 64,
            batch_size: 1,
        };
        let mut comparison = Comparison::default();

        // The 100/s rows alternate between the sides, twice: this machine's speed drifts by
        // a third within minutes, and the ratio should not depend on which side ran first.
        let (mut orbit_us, mut peer_us) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            settle::settle(&self.js, Duration::from_secs(120)).await?;
            orbit_us.push(self.orbit_at_100(&single, seconds).await?);
            let sampler = Sampler::of(peer_components(peer));
            let report =
                e2e::open(&peer.target, &single, 100.0, Duration::from_secs(seconds)).await?;
            let usage = sampler.finish();
            peer_us.push(self.peer_row("celery", format!("100/s for {seconds} s"), &report, usage));
        }
        let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
        comparison.orbit_cpu_us_100 = Some(mean(&orbit_us));
        comparison.peer_cpu_us_100 = Some(mean(&peer_us));

        settle::settle(&self.js, Duration::from_secs(120)).await?;
        let sampler = Sampler::start(&self.stack, self_process());
        let report = e2e::open(&self.target, &single, 1000.0, Duration::from_secs(10)).await?;
        let usage = sampler.finish();
        comparison.orbit_open_p99_1000_ms = report.scheduled_to_row.map(|s| s.p99_ms);
        self.peer_row("orbit", "1000/s for 10 s".into(), &report, usage);

        // The same with the Elasticsearch stand-in frozen: how much of the tail is its
        // whole-store saves (docs/observability.md). Its sink waits, and indexes what it
        // missed once the stand-in runs again, before the next row starts.
        if self.stack.pid(peers::SEARCH).is_some() {
            settle::settle(&self.js, Duration::from_secs(120)).await?;
            self.stack.signal(peers::SEARCH, "STOP")?;
            let sampler = Sampler::start(&self.stack, self_process());
            let outcome = e2e::open(&self.target, &single, 1000.0, Duration::from_secs(10)).await;
            let usage = sampler.finish();
            self.stack.signal(peers::SEARCH, "CONT")?;
            let report = outcome?;
            comparison.orbit_open_p99_1000_search_paused_ms =
                report.scheduled_to_row.map(|s| s.p99_ms);
            let label = "1000/s for 10 s, the Elasticsearch stand-in paused".to_string();
            self.peer_row("orbit", label, &report, usage);
        }

        settle::settle(&self.js, Duration::from_secs(120)).await?;
        let batches = Load {
            batch_size: self.options.batch_size,
            ..single.clone()
        };
        let sampler = Sampler::start(&self.stack, self_process());
        let report = e2e::closed(&self.target, &batches, self.size(20_000, 100_000), 4).await?;
        let usage = sampler.finish();
        comparison.orbit_saturation = Some(report.jobs_per_second);
        let label = format!(
            "saturated, batches of {}, 4 connections",
            batches.batch_size
        );
        self.peer_row("orbit", label, &report, usage);

        let jobs = self.size(2_000, 10_000);
        for connections in [8, 32, 128] {
            let sampler = Sampler::of(peer_components(peer));
            let report = e2e::closed(&peer.target, &single, jobs, connections).await?;
            let usage = sampler.finish();
            let best = comparison.peer_saturation.unwrap_or(0.0);
            comparison.peer_saturation = Some(best.max(report.jobs_per_second));
            let label = format!("saturated, single submits, {connections} connections");
            self.peer_row("celery", label, &report, usage);
        }
        Ok(comparison)
    }

    /// Orbit's row at 100 jobs/s, with the NATS messages each job took; its CPU per job.
    async fn orbit_at_100(&mut self, single: &Load, seconds: u64) -> anyhow::Result<f64> {
        let monitor = self.stack.var("ORBIT_NATS_MONITOR_URL")?.to_string();
        let messages_before = peers::nats_messages(&self.target.http, &monitor).await?;
        let sampler = Sampler::start(&self.stack, self_process());
        let report = e2e::open(&self.target, single, 100.0, Duration::from_secs(seconds)).await?;
        let usage = sampler.finish();
        let messages = peers::nats_messages(&self.target.http, &monitor).await? - messages_before;
        let nats_seconds = usage
            .iter()
            .find(|u| u.component == "nats")
            .map_or(0.0, |u| u.cpu_seconds);
        let cpu = self.peer_row("orbit", format!("100/s for {seconds} s"), &report, usage);
        println!(
            "  nats: {:.1} messages per job (received + sent), {:.0} us of its CPU per message",
            messages as f64 / report.jobs.max(1) as f64,
            nats_seconds * 1e6 / messages.max(1) as f64
        );
        Ok(cpu)
    }

    /// Prints and records one row of the comparison; returns its CPU per job (microseconds).
    fn peer_row(
        &mut self,
        side: &str,
        label: String,
        report: &e2e::E2eReport,
        usage: Vec<Usage>,
    ) -> f64 {
        let cpu = peers::cpu_us_per_job(&usage, report.jobs);
        println!("\n== peers: {side}, {label}");
        println!(
            "  end-to-end jobs/s {:>8.0}   rejected {}",
            report.jobs_per_second, report.rejected
        );
        if let Some(s) = report.scheduled_to_row {
            println!(
                "  scheduled->row p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms",
                s.p50_ms, s.p99_ms, s.p999_ms
            );
        } else {
            println!(
                "  accepted->row  p50 {:>8.2} ms  p99 {:>8.2} ms",
                report.latency.p50_ms, report.latency.p99_ms
            );
        }
        println!(
            "  cpu per job {cpu:>8.0} us: {}",
            peers::split(&usage, report.jobs)
        );
        if let Some(search) = usage.iter().find(|u| u.component == peers::SEARCH) {
            println!(
                "  (the Elasticsearch stand-in, not counted: {:.0} us per job)",
                search.cpu_seconds * 1e6 / report.jobs.max(1) as f64
            );
        }
        let report = serde_json::to_value(report).unwrap_or(Value::Null);
        self.record("peers", format!("{side}, {label}"), report, usage);
        cpu
    }
}

/// The peer's processes, and the load generator's (measured, never counted).
fn peer_components(peer: &Peer) -> Vec<(String, orbit_bench::resources::Processes)> {
    let mut components = peer.components();
    components.push((
        "orbit-bench".into(),
        orbit_bench::resources::Processes::Fixed(vec![std::process::id()]),
    ));
    components
}

fn self_process() -> Vec<(String, Vec<u32>)> {
    vec![("orbit-bench".into(), vec![std::process::id()])]
}

/// CPU per job of the stack (Orbit's processes and the infrastructure, not the load
/// generator), in microseconds: far steadier from run to run than a rate.
fn cpu_per_job_us(usage: &[Usage], jobs: usize) -> Option<f64> {
    CpuPerJob::of(usage, jobs).map(|cpu| cpu.total_us)
}

fn print_cpu_per_job(usage: &[Usage], jobs: usize) {
    if let Some(cpu) = CpuPerJob::of(usage, jobs) {
        println!(
            "  cpu per job    {:>8.1} us  (Orbit {:.0} us: {}; infrastructure {:.0} us: {}; the load generator's {:.0} us not counted)",
            cpu.total_us,
            cpu.orbit_us,
            CpuPerJob::largest(usage, jobs, false, 3),
            cpu.infrastructure_us,
            CpuPerJob::largest(usage, jobs, true, 5),
            cpu.load_generator_us,
        );
    }
}

fn print_usage(usage: &[Usage]) {
    let mut line = String::from("  cpu s / peak MB:");
    for u in usage
        .iter()
        .filter(|u| u.cpu_seconds > 0.0 || u.peak_rss_mb > 0.0)
    {
        line.push_str(&format!(
            "  {} {:.2}/{:.0}",
            u.component, u.cpu_seconds, u.peak_rss_mb
        ));
    }
    println!("{line}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let root = std::env::current_dir()?;
    let stack = Stack::load(&root, &options.env)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(stack.var("ORBIT_DATABASE_URL")?)
        .await
        .context("connecting to Postgres")?;
    let nats = stack.nats().await.context("connecting to NATS")?;
    let js = async_nats::jetstream::new(nats.clone());
    let target = Target {
        http,
        base: stack.http.clone(),
        pg,
    };
    let started = chrono::Utc::now();
    let scenarios = options.scenarios.clone();
    let mut bench = Bench {
        options,
        stack,
        target,
        nats,
        js,
        results: Vec::new(),
        figures: Figures::default(),
    };
    let profile = bench.stack.profile();
    println!(
        "orbit-bench {} ({} suite) against {} (stack built with profile {profile})",
        started.format("%Y-%m-%d %H:%M"),
        if bench.options.long { "long" } else { "short" },
        bench.stack.http
    );
    let mut reference = Vec::new();
    for &scenario in &scenarios {
        settle::settle(&bench.js, Duration::from_secs(120)).await?;
        let work_ms = probe::reference_time().as_secs_f64() * 1000.0;
        let trip_us = probe::loopback_round_trip().map_or(f64::NAN, |t| t.as_secs_f64() * 1e6);
        println!(
            "\n-- machine: reference work {work_ms:.1} ms, loopback round trip {trip_us:.1} us (lower is faster; compare figures taken at similar values)"
        );
        reference.push(
            json!({ "before": scenario.name(), "work_ms": work_ms, "loopback_round_trip_us": trip_us }),
        );
        bench
            .run(scenario)
            .await
            .with_context(|| format!("scenario {}", scenario.name()))?;
    }
    let ratios = bench.figures.report();
    if !ratios.is_empty() {
        println!("\n== ratios (each between two figures of this run)");
        for line in &ratios {
            println!("  {line}");
        }
    }
    let out = PathBuf::from("bench/results");
    std::fs::create_dir_all(&out)?;
    let file = out.join(format!("{}.json", started.format("%Y%m%dT%H%M%S")));
    let document = json!({ "started": started, "long": bench.options.long, "machine": machine(), "profile": profile, "machine_probes": reference, "results": bench.results, "ratios": ratios });
    std::fs::write(&file, serde_json::to_string_pretty(&document)?)?;
    println!("\nwrote {}", file.display());
    Ok(())
}

fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1_048_576.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    json!({ "cpus": cpus, "memory_gb": (memory_gb * 10.0).round() / 10.0, "cpu_model": model })
}
