//! The function contract as a kit: what Orbit promises of every function, checked against a
//! running one by its name alone. A function plugs in through its descriptor, whatever language
//! it is written in, so a new one (a `stack.toml` entry, a model dropped into the repository, a
//! Python `command`) is held to the whole contract without a line of test code of its own:
//!
//! 1. its descriptor is valid and the same in `$SRV.INFO`, the catalog and `/api/v1/models`;
//! 2. its example is answered through every door (`/api/v1` sync and async, `/v2`, NATS);
//! 3. a batch of it is accepted and recorded once per job;
//! 4. a parameter out of its schema's range is refused, naming the field, at the gateway (and
//!    nothing is enqueued) and on the bus;
//! 5. a message that is no job is dead-lettered once, and the queue keeps moving;
//! 6. a replica killed with `kill -9` under load loses and duplicates nothing;
//! 7. its example as a Kafka record on the bridge's request topic runs and is recorded once.
//!
//! Each check runs on its own and says what it found, so one broken promise never hides
//! another: [`check_all`] reports every check of a function, [`conform`] fails with all of the
//! failures at once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use futures::StreamExt;
use orbit_contract::{FunctionDescriptor, FunctionSpec, InputKind};
use serde_json::{json, Map, Value};

use crate::kafka::Bridge;
use crate::ledger::Ledger;
use crate::load::Outcome;
use crate::{functions_of, series, wait_until, Clients, Stack};

/// The key a schema that takes no unknown parameter must refuse.
pub const UNKNOWN_PARAMETER: &str = "orbit_conformance_unknown";

/// How many copies of the example one batch submit carries (check 3).
const BATCH_JOBS: usize = 20;
/// The load of check 6: batch submits of [`LOAD_BATCH`] jobs, [`LOAD_PAUSE`] apart; the replica
/// dies halfway, in a burst of [`KILL_BURST`] smaller ones (350 jobs in all). Enough that both
/// replicas hold work when one dies, little enough that the slowest function of a debug build
/// drains it in seconds.
const LOAD_BATCHES: usize = 6;
const LOAD_BATCH: usize = 50;
const LOAD_PAUSE: Duration = Duration::from_millis(250);
/// The batches sent at once when the replica dies, of half a [`LOAD_BATCH`] each.
const KILL_BURST: usize = 4;
/// How long the jobs of one check may take to reach their final state everywhere.
const SETTLE: Duration = Duration::from_secs(120);
/// Longer than the replicas' ack wait (`ORBIT_ACK_WAIT_MS`, 2 s in the tests): a message a
/// replica took and did not settle is delivered again by then, so a second dead letter of the
/// same poison would have appeared.
const REDELIVERY_WINDOW: Duration = Duration::from_secs(4);

/// One function under test, and the `stack.toml` entry whose process serves it (a host of many
/// models serves several functions from one entry).
#[derive(Debug, Clone)]
pub struct Subject {
    pub function: String,
    pub process: orbit_stack::Process,
}

/// The promises checked, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Descriptor,
    Doors,
    Batch,
    OutOfRange,
    Poison,
    KillUnderLoad,
    Kafka,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Descriptor => "descriptor",
            Check::Doors => "example at every door",
            Check::Batch => "batch",
            Check::OutOfRange => "parameter out of range",
            Check::Poison => "poison dead-lettered once",
            Check::KillUnderLoad => "kill -9 under load",
            Check::Kafka => "example through Kafka",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone)]
pub enum Verdict {
    Passed(String),
    /// The check does not apply to this function; why.
    Skipped(String),
    Failed(String),
}

/// Every check of one function.
#[derive(Debug, Clone)]
pub struct Report {
    pub function: String,
    pub checks: Vec<(Check, Verdict, Duration)>,
}

impl Report {
    /// `function: check: why` for each failed check.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter_map(|(check, verdict, _)| match verdict {
                Verdict::Failed(why) => Some(format!("{}: {}: {why}", self.function, check.name())),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.function)?;
        for (check, verdict, took) in &self.checks {
            let (word, text) = match verdict {
                Verdict::Passed(note) => ("ok", note),
                Verdict::Skipped(why) => ("skipped", why),
                Verdict::Failed(why) => ("FAILED", why),
            };
            writeln!(
                f,
                "  {:<26} {word:<7} {:>6.1}s  {text}",
                check.name(),
                took.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// Checks everything the contract promises of `subject`; fails naming every broken promise.
pub async fn conform(
    clients: &Clients,
    stack: &mut Stack,
    subject: &Subject,
    kafka: Option<&Bridge>,
) -> anyhow::Result<()> {
    let report = check_all(clients, stack, subject, kafka).await;
    let failures = report.failures();
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("\n"))
    }
}

/// Runs every check on `subject`, each whatever the others found. The stack must run two
/// replicas of the subject's process, and leaves with two again (check 6 kills one and
/// restarts it); check 7 runs where a Kafka bridge is given.
pub async fn check_all(
    clients: &Clients,
    stack: &mut Stack,
    subject: &Subject,
    kafka: Option<&Bridge>,
) -> Report {
    let name = &subject.function;
    let mut checks = Vec::new();
    let started = Instant::now();
    let described = within(
        Duration::from_secs(60),
        check_descriptor(clients, stack, name),
    )
    .await;
    let descriptor = match described {
        Ok(descriptor) => {
            checks.push((
                Check::Descriptor,
                Verdict::Passed(format!(
                    "v{}, {} input, platform {}; same in $SRV.INFO, catalog and /api/v1/models",
                    descriptor.version,
                    input_name(descriptor.input),
                    descriptor.platform
                )),
                started.elapsed(),
            ));
            Some(descriptor)
        }
        Err(err) => {
            checks.push((
                Check::Descriptor,
                Verdict::Failed(format!("{err:#}")),
                started.elapsed(),
            ));
            // The other checks still run, from whatever the function declared somewhere.
            catalog_descriptor(clients, name).await.ok()
        }
    };
    let Some(descriptor) = descriptor else {
        for check in [
            Check::Doors,
            Check::Batch,
            Check::OutOfRange,
            Check::Poison,
            Check::KillUnderLoad,
            Check::Kafka,
        ] {
            checks.push((
                check,
                Verdict::Failed("no descriptor to work from".into()),
                Duration::ZERO,
            ));
        }
        return Report {
            function: name.clone(),
            checks,
        };
    };
    let request = example_request(&descriptor, &subject.process);

    let started = Instant::now();
    let verdict = judged(
        within(
            Duration::from_secs(90),
            check_doors(clients, stack, &descriptor, &request),
        )
        .await,
    );
    checks.push((Check::Doors, verdict, started.elapsed()));

    let started = Instant::now();
    let verdict = judged(
        within(
            SETTLE + Duration::from_secs(30),
            check_batch(clients, stack, name, &request),
        )
        .await,
    );
    checks.push((Check::Batch, verdict, started.elapsed()));

    let started = Instant::now();
    let verdict = judged(
        within(
            Duration::from_secs(60),
            check_out_of_range(clients, stack, &descriptor, &request),
        )
        .await,
    );
    checks.push((Check::OutOfRange, verdict, started.elapsed()));

    let started = Instant::now();
    let verdict = judged(
        within(
            Duration::from_secs(90),
            check_poison(clients, stack, name, &request),
        )
        .await,
    );
    checks.push((Check::Poison, verdict, started.elapsed()));

    let started = Instant::now();
    let verdict = judged(check_kill_under_load(clients, stack, subject, &request).await);
    checks.push((Check::KillUnderLoad, verdict, started.elapsed()));

    if let Some(bridge) = kafka {
        let started = Instant::now();
        let verdict = judged(within(SETTLE, check_kafka(clients, bridge, name, &request)).await);
        checks.push((Check::Kafka, verdict, started.elapsed()));
    }

    Report {
        function: name.clone(),
        checks,
    }
}

/// Check 7: the example as a record on the bridge's request topic (keyed, as a producer that
/// wants one job per record keys it) becomes a job that succeeds and is recorded once.
pub async fn check_kafka(
    clients: &Clients,
    bridge: &Bridge,
    function: &str,
    request: &Value,
) -> anyhow::Result<Verdict> {
    let key = format!(
        "conformance-kafka-{function}-{}",
        uuid::Uuid::now_v7().simple()
    );
    let record = json!({ "key": key, "value": api_body(function, request).to_string() });
    crate::kafka::produce(clients, &bridge.brokers, &bridge.requests_topic, &[record]).await?;
    let ids = [key];
    clients.wait_recorded(&ids, SETTLE).await?;
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM inference_results WHERE job_id = $1")
            .bind(&ids[0])
            .fetch_one(&clients.pg)
            .await?;
    ensure!(status == "succeeded", "the Kafka job ended {status}");
    Ok(Verdict::Passed(format!(
        "a record on {} ran and was recorded once",
        bridge.requests_topic
    )))
}

fn judged(result: anyhow::Result<Verdict>) -> Verdict {
    result.unwrap_or_else(|err| Verdict::Failed(format!("{err:#}")))
}

/// `future`, failed when it takes longer than `limit`: a hung door fails its check, not the
/// whole suite.
async fn within<T>(
    limit: Duration,
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| anyhow!("no answer within {limit:?}"))?
}

fn input_name(input: InputKind) -> &'static str {
    match input {
        InputKind::Series => "series",
        InputKind::Tensors => "tensor",
    }
}

// ---- 1. the descriptor -------------------------------------------------------------------

/// Check 1: every replica's `$SRV.INFO` carries the descriptor under `orbit.descriptor`; it
/// parses, the runtime's own checks (`FunctionSpec::new`) accept it, it names the function, the
/// catalog holds the same, and `/api/v1/models` lists the function with its platform. Returns
/// the descriptor.
pub async fn check_descriptor(
    clients: &Clients,
    stack: &Stack,
    function: &str,
) -> anyhow::Result<FunctionDescriptor> {
    let infos = srv_infos(clients, function).await?;
    ensure!(!infos.is_empty(), "no replica answers $SRV.INFO.{function}");
    let mut served: Option<FunctionDescriptor> = None;
    for info in &infos {
        ensure!(
            info["name"] == function,
            "$SRV.INFO.{function} answered for service {}",
            info["name"]
        );
        let endpoints = info["endpoints"].as_array().cloned().unwrap_or_default();
        let endpoint = endpoints
            .iter()
            .find(|e| {
                e["metadata"][orbit_contract::descriptor::DESCRIPTOR_METADATA_KEY].is_string()
            })
            .with_context(|| {
                format!(
                    "no endpoint of $SRV.INFO.{function} has metadata `{}`: {info}",
                    orbit_contract::descriptor::DESCRIPTOR_METADATA_KEY
                )
            })?;
        let subject = orbit_contract::subjects::function_subject(function);
        ensure!(
            endpoint["subject"] == subject.as_str(),
            "its endpoint listens on {}, not {subject}",
            endpoint["subject"]
        );
        let text = endpoint["metadata"][orbit_contract::descriptor::DESCRIPTOR_METADATA_KEY]
            .as_str()
            .unwrap_or_default();
        let descriptor: FunctionDescriptor = serde_json::from_str(text)
            .with_context(|| format!("`orbit.descriptor` is not a descriptor: {text}"))?;
        ensure!(
            descriptor.name == function,
            "the descriptor names {}",
            descriptor.name
        );
        FunctionSpec::new(descriptor.clone())
            .map_err(|err| anyhow!("FunctionSpec::new refuses the descriptor: {err}"))?;
        match &served {
            Some(first) if *first != descriptor => {
                bail!("two replicas serve different descriptors: {first:?} and {descriptor:?}")
            }
            Some(_) => {}
            None => served = Some(descriptor),
        }
    }
    let descriptor = served.context("no descriptor")?;

    let cataloged = catalog_descriptor(clients, function).await?;
    ensure!(
        cataloged == descriptor,
        "the catalog's descriptor differs from $SRV.INFO's:\ncatalog:  {}\n$SRV.INFO: {}",
        serde_json::to_string(&cataloged)?,
        serde_json::to_string(&descriptor)?
    );

    let (status, models) = clients.get_json(&stack.url("/api/v1/models")).await?;
    ensure!(status == 200, "/api/v1/models answered {status}: {models}");
    let listed = models["functions"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == function))
        .with_context(|| format!("/api/v1/models does not list {function}"))?;
    ensure!(
        listed["platform"] == descriptor.platform.as_str(),
        "/api/v1/models lists platform {}, the descriptor says {}",
        listed["platform"],
        descriptor.platform
    );
    Ok(descriptor)
}

/// Every `$SRV.INFO.<function>` answer that arrives within half a second: one per replica.
async fn srv_infos(clients: &Clients, function: &str) -> anyhow::Result<Vec<Value>> {
    let inbox = clients.nats.new_inbox();
    let mut replies = clients.nats.subscribe(inbox.clone()).await?;
    clients
        .nats
        .publish_with_reply(format!("$SRV.INFO.{function}"), inbox, "".into())
        .await?;
    clients.nats.flush().await?;
    let mut infos = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            reply = replies.next() => match reply {
                // The server's "no responders" status is an empty message: no replica.
                Some(reply) if !reply.payload.is_empty() => {
                    infos.push(serde_json::from_slice(&reply.payload).with_context(|| {
                        format!("$SRV.INFO.{function} is not JSON")
                    })?);
                }
                Some(_) => {}
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    Ok(infos)
}

/// The descriptor the catalog (`orbit_functions`) holds for `function`.
pub async fn catalog_descriptor(
    clients: &Clients,
    function: &str,
) -> anyhow::Result<FunctionDescriptor> {
    let bucket = clients
        .jetstream
        .get_key_value(orbit_contract::subjects::FUNCTIONS_BUCKET)
        .await
        .map_err(|err| anyhow!("the catalog bucket: {err}"))?;
    let entry = bucket
        .get(function)
        .await
        .map_err(|err| anyhow!("the catalog entry of {function}: {err}"))?
        .with_context(|| format!("the catalog has no entry {function}"))?;
    serde_json::from_slice(&entry)
        .with_context(|| format!("the catalog entry of {function} is not a descriptor"))
}

// ---- the example -------------------------------------------------------------------------

/// The request body of a typical job, without `model_name`: the descriptor's `example`, else
/// a series (or zero tensors of the declared shapes) with the parameters of the entry's
/// `stack.toml` example that the schema knows.
pub fn example_request(descriptor: &FunctionDescriptor, process: &orbit_stack::Process) -> Value {
    if let Some(example) = descriptor.example.clone().filter(Value::is_object) {
        return example;
    }
    let known = descriptor.parameters["properties"].as_object();
    let closed = descriptor.parameters["additionalProperties"] == false;
    let parameters: Map<String, Value> = process
        .example
        .as_ref()
        .map(|e| e.parameters.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| !closed || known.is_some_and(|k| k.contains_key(key)))
        .collect();
    let mut request = match descriptor.input {
        InputKind::Series => {
            let limits = &descriptor.limits;
            let points = 48
                .max(limits.min_series_length)
                .min(limits.max_series_length);
            json!({ "data": series(points) })
        }
        InputKind::Tensors => {
            let inputs: Vec<Value> = descriptor
                .inputs
                .iter()
                .map(|spec| {
                    let shape: Vec<usize> = spec
                        .shape
                        .iter()
                        .map(|&d| usize::try_from(d).unwrap_or(8))
                        .collect();
                    let size: usize = shape.iter().product();
                    json!({
                        "name": spec.name,
                        "datatype": spec.datatype,
                        "shape": shape,
                        "data": vec![0; size],
                    })
                })
                .collect();
            json!({ "inputs": inputs })
        }
    };
    if !parameters.is_empty() {
        request["parameters"] = Value::Object(parameters);
    }
    request
}

/// `request` as a body of `/api/v1`: with `model_name`.
fn api_body(function: &str, request: &Value) -> Value {
    let mut body = request.clone();
    body["model_name"] = json!(function);
    body
}

/// `request` as an Open Inference Protocol infer request: a series becomes the FP64 tensor
/// `data`, tensors go as they are; parameters alike.
fn v2_body(descriptor: &FunctionDescriptor, request: &Value) -> Value {
    let inputs = match descriptor.input {
        InputKind::Series => {
            let data = request["data"].as_array().cloned().unwrap_or_default();
            let name = descriptor
                .inputs
                .first()
                .map_or("data", |spec| spec.name.as_str());
            json!([{"name": name, "datatype": "FP64", "shape": [data.len()], "data": data}])
        }
        InputKind::Tensors => request["inputs"].clone(),
    };
    let mut body = json!({ "inputs": inputs });
    if let Some(parameters) = request.get("parameters").filter(|p| p.is_object()) {
        body["parameters"] = parameters.clone();
    }
    body
}

// ---- 2. every door -----------------------------------------------------------------------

/// Check 2: the example succeeds with an output through `/api/v1/inference/run`, a submit
/// polled on its status URL, `/v2/models/F/infer` and a NATS request on `orbit.fn.F`.
pub async fn check_doors(
    clients: &Clients,
    stack: &Stack,
    descriptor: &FunctionDescriptor,
    request: &Value,
) -> anyhow::Result<Verdict> {
    let function = descriptor.name.as_str();
    let body = api_body(function, request);
    let mut failures = Vec::new();

    let (status, reply) = clients
        .post_json(&stack.url("/api/v1/inference/run"), &body)
        .await?;
    if status != 200 || reply["status"] != "succeeded" || is_empty(&reply["output"]) {
        failures.push(format!("/api/v1/inference/run answered {status}: {reply}"));
    }

    match stack.submit(clients, &body).await {
        Ok(job_id) => {
            let view = final_view(clients, stack, &job_id).await?;
            if view["status"] != "succeeded" || is_empty(&view["result"]) {
                failures.push(format!("the submitted job {job_id} ended {view}"));
            }
        }
        Err(err) => failures.push(format!("/api/v1/inference/submit: {err:#}")),
    }

    let (status, reply) = clients
        .post_json(
            &stack.url(&format!("/v2/models/{function}/infer")),
            &v2_body(descriptor, request),
        )
        .await?;
    let outputs = reply["outputs"].as_array().cloned().unwrap_or_default();
    if status != 200 || outputs.is_empty() || outputs.iter().any(|o| is_empty(&o["data"])) {
        failures.push(format!(
            "/v2/models/{function}/infer answered {status}: {reply}"
        ));
    }

    let subject = orbit_contract::subjects::function_subject(function);
    let answer = clients
        .nats
        .request(subject.clone(), request.to_string().into())
        .await
        .map_err(|err| anyhow!("NATS request on {subject}: {err}"))?;
    let reply: Value = serde_json::from_slice(&answer.payload).unwrap_or(Value::Null);
    if answer
        .headers
        .is_some_and(|h| h.get("Nats-Service-Error-Code").is_some())
        || reply["status"] != "succeeded"
        || is_empty(&reply["output"])
    {
        failures.push(format!(
            "NATS request on {subject} answered {}",
            String::from_utf8_lossy(&answer.payload)
        ));
    }

    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(Verdict::Passed(
        "/api/v1 run, /api/v1 submit, /v2 infer and NATS all succeeded with an output".into(),
    ))
}

fn is_empty(output: &Value) -> bool {
    match output {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// Polls a job's status URL until it reads a final state; the job.
async fn final_view(clients: &Clients, stack: &Stack, job_id: &str) -> anyhow::Result<Value> {
    let url = stack.job_url(job_id);
    wait_until(
        &format!("job {job_id} finished"),
        Duration::from_secs(60),
        || async {
            let (_, view) = clients.get_json(&url).await?;
            let done = matches!(view["status"].as_str(), Some("succeeded" | "failed"));
            Ok(done.then_some(view))
        },
    )
    .await
}

// ---- 3. a batch --------------------------------------------------------------------------

/// Check 3: a batch of copies of the example is accepted whole, every job ends `succeeded`
/// on its status URL and is recorded once in Postgres.
pub async fn check_batch(
    clients: &Clients,
    stack: &Stack,
    function: &str,
    request: &Value,
) -> anyhow::Result<Verdict> {
    let ids = submit_batch(clients, stack, function, request, BATCH_JOBS).await?;
    ensure!(
        ids.len() == BATCH_JOBS,
        "{} of {BATCH_JOBS} jobs accepted",
        ids.len()
    );
    let rows = recorded_rows(clients, &ids, SETTLE).await?;
    let mut failures = Vec::new();
    for id in &ids {
        match rows.get(id) {
            Some(row) if row.status == "succeeded" && row.model_name == function => {}
            Some(row) => failures.push(format!("{id}: recorded {row:?}")),
            None => failures.push(format!("{id}: not recorded")),
        }
        let view = final_view(clients, stack, id).await?;
        if view["status"] != "succeeded" {
            failures.push(format!("{id}: status URL reads {view}"));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(Verdict::Passed(format!(
        "{BATCH_JOBS} accepted, succeeded, one row each"
    )))
}

/// Submits `count` copies of `request` in one batch; the ids of the accepted jobs. Fails on
/// anything but a 202 or a job not `queued`.
async fn submit_batch(
    clients: &Clients,
    stack: &Stack,
    function: &str,
    request: &Value,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let body = api_body(function, request);
    let (status, answer) = clients
        .post_json(
            &stack.url("/api/v1/inference/batch"),
            &json!({ "jobs": vec![body; count] }),
        )
        .await?;
    ensure!(status == 202, "batch answered {status}: {answer}");
    let jobs = answer["jobs"].as_array().cloned().unwrap_or_default();
    let mut ids = Vec::with_capacity(jobs.len());
    for job in &jobs {
        ensure!(
            job["status"] == "queued",
            "a batch job was not queued: {job}"
        );
        let id = job["job_id"]
            .as_str()
            .with_context(|| format!("a batch job without an id: {job}"))?;
        ids.push(id.to_string());
    }
    ensure!(
        answer["accepted"] == json!(ids.len()),
        "batch answered {answer}"
    );
    Ok(ids)
}

/// A job's row in Postgres.
#[derive(Debug, Clone)]
struct Row {
    model_name: String,
    status: String,
    worker_id: String,
    attempt: i32,
}

/// The rows of `ids` in Postgres, once all are there or `timeout` has passed.
async fn recorded_rows(
    clients: &Clients,
    ids: &[String],
    timeout: Duration,
) -> anyhow::Result<HashMap<String, Row>> {
    let _ = clients.wait_recorded(ids, timeout).await;
    let rows: Vec<(String, String, String, String, i32)> = sqlx::query_as(
        "SELECT job_id, model_name, status, worker_id, attempt FROM inference_results \
         WHERE job_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&clients.pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, model_name, status, worker_id, attempt)| {
            (
                id,
                Row {
                    model_name,
                    status,
                    worker_id,
                    attempt,
                },
            )
        })
        .collect())
}

// ---- 4. a parameter out of range ---------------------------------------------------------

/// A parameter value `schema` (a function's parameter JSON Schema) refuses, derived from the
/// schema alone: below a `minimum`, at an `exclusiveMinimum`, above a `maximum`, at an
/// `exclusiveMaximum`, outside an `enum`, a string for an integer (tried in that order, each
/// over the properties by name); else an unknown key where the schema takes none. `None` where
/// the schema accepts anything.
pub fn out_of_range(schema: &Value) -> Option<(String, Value)> {
    fn below(bound: &Value) -> Option<Value> {
        match bound.as_i64() {
            Some(int) => Some(int.checked_sub(1).map_or(json!(-1e300), Value::from)),
            None => bound.as_f64().map(|float| json!(float - 1.0)),
        }
    }
    fn above(bound: &Value) -> Option<Value> {
        match bound.as_i64() {
            Some(int) => Some(int.checked_add(1).map_or(json!(1e300), Value::from)),
            None => bound.as_f64().map(|float| json!(float + 1.0)),
        }
    }
    let rules: [fn(&Value) -> Option<Value>; 6] = [
        |p| p.get("minimum").and_then(below),
        |p| p.get("exclusiveMinimum").filter(|b| b.is_number()).cloned(),
        |p| p.get("maximum").and_then(above),
        |p| p.get("exclusiveMaximum").filter(|b| b.is_number()).cloned(),
        |p| {
            p.get("enum")
                .and_then(Value::as_array)
                .map(|_| json!("orbit_conformance_no_such_choice"))
        },
        |p| (p["type"] == "integer").then(|| json!("not an integer")),
    ];
    let properties = schema["properties"].as_object();
    let mut names: Vec<&String> = properties.map(|p| p.keys().collect()).unwrap_or_default();
    names.sort();
    for rule in rules {
        for name in &names {
            let property = properties.and_then(|p| p.get(*name));
            if let Some(bad) = property.and_then(rule) {
                return Some(((*name).clone(), bad));
            }
        }
    }
    (schema["additionalProperties"] == false).then(|| (UNKNOWN_PARAMETER.to_string(), json!(1)))
}

/// Check 4: the example with one parameter out of range ([`out_of_range`]) is refused by every
/// door of the gateway with a 4xx JSON error naming the parameter, nothing enqueued; and on the
/// bus with a NATS service error 400 naming it.
pub async fn check_out_of_range(
    clients: &Clients,
    stack: &Stack,
    descriptor: &FunctionDescriptor,
    request: &Value,
) -> anyhow::Result<Verdict> {
    let Some((parameter, bad)) = out_of_range(&descriptor.parameters) else {
        // A schema that bounds nothing and takes any key has no value out of its range.
        return Ok(Verdict::Skipped(
            "its parameter schema accepts every parameter".into(),
        ));
    };
    let function = descriptor.name.as_str();
    let mut wrong = request.clone();
    if !wrong["parameters"].is_object() {
        wrong["parameters"] = json!({});
    }
    wrong["parameters"][&parameter] = bad.clone();
    let body = api_body(function, &wrong);
    let before = clients.jobs_last_sequence().await?;
    let mut failures = Vec::new();
    let doors = [
        ("/api/v1/inference/submit".to_string(), body.clone()),
        ("/api/v1/inference/run".to_string(), body.clone()),
        (
            "/api/v1/inference/batch".to_string(),
            json!({ "jobs": [body] }),
        ),
        (
            format!("/v2/models/{function}/infer"),
            v2_body(descriptor, &wrong),
        ),
    ];
    for (path, body) in doors {
        let response = clients
            .http
            .post(stack.url(&path))
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let is_json = serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object());
        if !(400..500).contains(&status) || !is_json || !text.contains(&parameter) {
            failures.push(format!("{path} answered {status}: {text}"));
        }
    }
    let after = clients.jobs_last_sequence().await?;
    if after != before {
        failures.push(format!(
            "{} job(s) enqueued by the refused requests",
            after - before
        ));
    }

    let subject = orbit_contract::subjects::function_subject(function);
    let answer = clients
        .nats
        .request(subject.clone(), wrong.to_string().into())
        .await
        .map_err(|err| anyhow!("NATS request on {subject}: {err}"))?;
    let header = |name: &str| {
        answer
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    let (code, error) = (
        header("Nats-Service-Error-Code"),
        header("Nats-Service-Error"),
    );
    if code.as_deref() != Some("400") || !error.as_deref().is_some_and(|e| e.contains(&parameter)) {
        failures.push(format!(
            "NATS request on {subject} answered code {code:?}, error {error:?}: {}",
            String::from_utf8_lossy(&answer.payload)
        ));
    }
    ensure!(
        failures.is_empty(),
        "parameters.{parameter} = {bad}: {}",
        failures.join("; ")
    );
    Ok(Verdict::Passed(format!(
        "parameters.{parameter} = {bad} refused at 4 gateway doors and on NATS, nothing enqueued"
    )))
}

// ---- 5. a poison message -----------------------------------------------------------------

/// Check 5: a message on `orbit.jobs.F` that is not a job envelope is dead-lettered on
/// `orbit.deadletter.F` once, with a reason, and a job submitted after it still succeeds.
pub async fn check_poison(
    clients: &Clients,
    stack: &Stack,
    function: &str,
    request: &Value,
) -> anyhow::Result<Verdict> {
    let before = clients.deadletter_last_sequence().await?;
    let id = format!("conformance-poison-{}", uuid::Uuid::now_v7());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(orbit_contract::subjects::JOB_ID_HEADER, id.as_str());
    headers.insert("Nats-Msg-Id", id.as_str());
    clients
        .jetstream
        .publish_with_headers(
            orbit_contract::subjects::job_subject(function),
            headers,
            r#"{"not":"a job"}"#.into(),
        )
        .await?
        .await?;
    let subject = orbit_contract::subjects::deadletter_subject(function);
    let ids = std::slice::from_ref(&id);
    let letters = clients.dead_letters_for(before, &subject, ids).await?;
    let first_seen = Instant::now();
    let reason = letters
        .first()
        .and_then(|(_, letter)| {
            letter
                .headers
                .get(orbit_contract::subjects::DEADLETTER_REASON_HEADER)
        })
        .map(|v| v.as_str().to_string())
        .filter(|r| !r.is_empty())
        .with_context(|| format!("the dead letter of {id} has no Orbit-Deadletter-Reason"))?;

    let job_id = stack.submit(clients, &api_body(function, request)).await?;
    let view = final_view(clients, stack, &job_id).await?;
    ensure!(
        view["status"] == "succeeded",
        "a job submitted after the poison ended {view}"
    );

    if let Some(left) = REDELIVERY_WINDOW.checked_sub(first_seen.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let letters = clients.dead_letters_for(before, &subject, ids).await?;
    ensure!(
        letters.len() == 1,
        "{} dead letters of the one poison message {id}",
        letters.len()
    );
    Ok(Verdict::Passed(format!(
        "one dead letter ({reason}); the next job succeeded"
    )))
}

// ---- 6. kill -9 under load ---------------------------------------------------------------

/// Check 6: under a load of batch submits, one of two replicas of the subject's process is
/// killed with `kill -9` halfway; every accepted job must be recorded once in Postgres and end
/// `succeeded` there and in the Redis job cache. The killed replica is started again before
/// this returns, so the next function finds two.
pub async fn check_kill_under_load(
    clients: &Clients,
    stack: &mut Stack,
    subject: &Subject,
    request: &Value,
) -> anyhow::Result<Verdict> {
    let function = subject.function.as_str();
    let replicas: Vec<usize> = stack
        .functions
        .iter()
        .enumerate()
        .filter(|(_, p)| is_instance_of(&p.name, &subject.process.name))
        .map(|(i, _)| i)
        .collect();
    ensure!(
        replicas.len() >= 2,
        "the stack runs {} replica(s) of {}, the check needs two",
        replicas.len(),
        subject.process.name
    );
    wait_until(
        &format!("two replicas of {function}"),
        Duration::from_secs(60),
        || async { Ok((clients.replicas(function).await? >= 2).then_some(())) },
    )
    .await?;
    let victim = replicas[0];
    let victim_name = stack.functions[victim].name.clone();

    let mut accepted = Vec::new();
    let mut load_failures = Vec::new();
    let mut tally = |submitted: anyhow::Result<Vec<String>>| match submitted {
        Ok(ids) => accepted.extend(ids),
        Err(err) => load_failures.push(format!("{err:#}")),
    };
    for batch in 0..LOAD_BATCHES {
        if batch == LOAD_BATCHES / 2 {
            // The kill lands while jobs are out with the replicas, not between two bursts when
            // a fast function has emptied the queue (a replica that dies holding nothing proves
            // nothing): a burst of small batches, one message each, so both replicas take some,
            // and the signal as soon as JetStream counts two messages unacknowledged.
            let pid = i32::try_from(stack.functions[victim].pid())?;
            let burst = futures::future::join_all(
                (0..KILL_BURST)
                    .map(|_| submit_batch(clients, stack, function, request, LOAD_BATCH / 2)),
            );
            let kill = async {
                let deadline = Instant::now() + Duration::from_secs(1);
                while Instant::now() < deadline
                    && ack_pending(clients, function).await.unwrap_or(0) < 2
                {
                    tokio::task::yield_now().await;
                }
                orbit_stack::pids::signal(pid, orbit_stack::pids::SIGKILL)
            };
            let (submitted, killed) = tokio::join!(burst, kill);
            killed.with_context(|| format!("kill -9 {victim_name}"))?;
            // Reaped (the process is gone already).
            stack.functions[victim].kill_hard()?;
            submitted.into_iter().for_each(&mut tally);
        } else {
            tally(submit_batch(clients, stack, function, request, LOAD_BATCH).await);
        }
        tokio::time::sleep(LOAD_PAUSE).await;
    }
    let counted = count_ledger(clients, function, &accepted, &victim_name).await;

    // Back for the next function, whatever was found; the survivor did the work alone.
    stack.functions[victim].restart()?;
    let process = subject.process.clone();
    for served in functions_of(&process, &clients.env)? {
        wait_until(
            &format!("{victim_name} serving {served} again"),
            Duration::from_secs(60),
            || async { Ok((clients.replicas(&served).await? >= 2).then_some(())) },
        )
        .await?;
    }
    ensure!(
        load_failures.is_empty(),
        "batch submits failed under load: {}",
        load_failures.join("; ")
    );
    counted
}

/// Jobs of `function` delivered to a replica and not yet acknowledged.
async fn ack_pending(clients: &Clients, function: &str) -> anyhow::Result<usize> {
    let stream = clients
        .jetstream
        .get_stream(orbit_contract::subjects::JOBS_STREAM)
        .await?;
    let info = stream
        .consumer_info(format!("fn-{function}"))
        .await
        .map_err(|err| anyhow!("the consumer of {function}: {err}"))?;
    Ok(info.num_ack_pending)
}

/// Whether `name` is an instance of process `process` as [`Stack::start`] names them
/// (`<process>-<i>`).
fn is_instance_of(name: &str, process: &str) -> bool {
    name.strip_prefix(process)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

/// Check 6's ledger: every accepted job once in Postgres, `succeeded` there and in Redis.
async fn count_ledger(
    clients: &Clients,
    function: &str,
    accepted: &[String],
    victim: &str,
) -> anyhow::Result<Verdict> {
    let unique: HashSet<&String> = accepted.iter().collect();
    ensure!(
        unique.len() == accepted.len(),
        "the gateway gave {} ids to {} accepted jobs",
        unique.len(),
        accepted.len()
    );
    let outcome = Outcome {
        accepted: accepted.to_vec(),
        ..Outcome::default()
    };
    let ledger = Ledger::take(clients, &outcome, None, None, SETTLE).await?;
    let rows = recorded_rows(clients, accepted, Duration::ZERO).await?;
    let mut failures = Vec::new();
    for store in ["postgres", "redis"] {
        let count = ledger
            .store(store)
            .with_context(|| format!("no {store} in the ledger"))?;
        if count.lost > 0 || count.duplicated > 0 || count.not_succeeded > 0 {
            failures.push(format!(
                "{store}: {} lost, {} duplicated, {} not succeeded",
                count.lost, count.duplicated, count.not_succeeded
            ));
        }
    }
    let foreign: Vec<&String> = rows
        .iter()
        .filter(|(_, row)| row.model_name != function)
        .map(|(id, _)| id)
        .collect();
    if !foreign.is_empty() {
        failures.push(format!("{} rows name another function", foreign.len()));
    }
    ensure!(
        failures.is_empty(),
        "{} accepted; {}\n{ledger}",
        accepted.len(),
        failures.join("; ")
    );
    let by_victim = rows.values().filter(|r| r.worker_id == victim).count();
    let again = rows.values().filter(|r| r.attempt > 1).count();
    Ok(Verdict::Passed(format!(
        "{} accepted, each once and succeeded in Postgres and Redis ({by_victim} done by {victim} \
         before it died, {again} redelivered)",
        accepted.len()
    )))
}
