//! The verbs that talk to a running stack's doors: the gateway's HTTP API (`functions`,
//! `invoke`, `get`, `deadletter`, `watch` over its WebSocket) and NATS (`invoke --via nats`).
//! They work against the local stack with no setup, and against any deployment with `--url`,
//! `--nats` and a key.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::fail::Failure;
use crate::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Via {
    Http,
    Nats,
}

#[derive(Args)]
pub struct InvokeArgs {
    /// The function
    pub function: String,
    /// The input: JSON (a series like '[1,2,3]'; an object is merged into the request, e.g.
    /// '{"inputs":[...]}' for tensors), or @FILE holding it
    #[arg(long)]
    pub data: String,
    /// Parameters as a JSON object, or @FILE
    #[arg(long)]
    pub parameters: Option<String>,
    /// A version the function serves [default: its default version]
    #[arg(long)]
    pub version: Option<String>,
    /// Submit and print the job id instead of waiting for the result (HTTP only)
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Which door to call through
    #[arg(long, value_enum, default_value = "http")]
    pub via: Via,
}

#[derive(Subcommand)]
pub enum DeadletterVerb {
    /// What was set aside, oldest first
    Ls {
        /// Only letters of this origin (a function, sink-<name>, results, logs)
        #[arg(long)]
        origin: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One letter with its payload
    Show { id: String },
    /// Put a letter's job back on its queue (or every letter with --all)
    Redrive {
        /// The letter's id
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every letter (of --origin), a page at a time
        #[arg(long)]
        all: bool,
        #[arg(long)]
        origin: Option<String>,
    },
}

pub fn block_on(
    future: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Failure::Local(format!("no async runtime: {err}")))?
        .block_on(future)
}

/// The doors of the stack `target` names: its flags, else the local stack's ports.
struct Doors {
    http: String,
    nats: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl Doors {
    fn of(target: &Target) -> Result<Self, Failure> {
        let ports = orbit_stack::Ports::from_process_env(crate::local::stack_env(target)?);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|err| Failure::Local(err.to_string()))?;
        Ok(Self {
            http: target
                .url
                .clone()
                .unwrap_or_else(|| format!("http://127.0.0.1:{}", ports.http))
                .trim_end_matches('/')
                .to_string(),
            nats: target
                .nats
                .clone()
                .unwrap_or_else(|| format!("nats://127.0.0.1:{}", ports.nats)),
            key: target.key.clone(),
            client,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.http));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request` and returns its JSON body; an error status is a refusal naming the
    /// service's own message, no answer is unreachable.
    async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let response = request.send().await.map_err(|err| {
            if err.is_connect() || err.is_timeout() {
                Failure::Unreachable(format!("{}: {}", self.http, root_cause(&err)))
            } else {
                Failure::Local(root_cause(&err))
            }
        })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|err| Failure::Unreachable(root_cause(&err)))?;
        let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        if status.is_success() {
            return Ok(value);
        }
        let error = &value["error"];
        let message = match (error["code"].as_str(), error["message"].as_str()) {
            (Some(code), Some(message)) => {
                let field = error["field"]
                    .as_str()
                    .map(|f| format!("{f}: "))
                    .unwrap_or_default();
                format!("{code}: {field}{message}")
            }
            _ => value.to_string(),
        };
        Err(Failure::Refused(format!(
            "HTTP {}: {message}",
            status.as_u16()
        )))
    }
}

fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A JSON argument, or `@FILE` holding one.
fn json_argument(what: &str, text: &str) -> Result<Value, Failure> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| Failure::Usage(format!("--{what} @{path}: {err}")))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text)
        .map_err(|err| Failure::Usage(format!("--{what} is not JSON: {err}")))
}

fn print(value: &Value) -> Result<(), Failure> {
    let text =
        serde_json::to_string_pretty(value).map_err(|err| Failure::Local(err.to_string()))?;
    println!("{text}");
    Ok(())
}

pub async fn functions(target: &Target) -> Result<(), Failure> {
    let doors = Doors::of(target)?;
    let listing = doors
        .json(doors.request(reqwest::Method::GET, "/api/v1/models"))
        .await?;
    let functions = listing["functions"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<24} {:<20} {:>8} {:<8} {:<10} DESCRIPTION",
        "FUNCTION", "VERSIONS", "REPLICAS", "READY", "PLATFORM"
    );
    for function in &functions {
        let versions: Vec<String> = function["versions"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v["version"].as_str().or(v.as_str()).map(str::to_string))
                    .collect()
            })
            .filter(|vs: &Vec<String>| !vs.is_empty())
            .unwrap_or_else(|| {
                function["version"]
                    .as_str()
                    .map(str::to_string)
                    .into_iter()
                    .collect()
            });
        println!(
            "{:<24} {:<20} {:>8} {:<6} {:<17} {}",
            function["name"].as_str().unwrap_or("?"),
            versions.join(","),
            function["replicas"].as_u64().unwrap_or(0),
            function["ready"].as_bool().unwrap_or(false),
            function["platform"].as_str().unwrap_or(""),
            function["description"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// The request body both doors take: data, parameters, version.
fn request_body(args: &InvokeArgs) -> Result<Map<String, Value>, Failure> {
    let mut body = Map::new();
    match json_argument("data", &args.data)? {
        Value::Object(fields) => body.extend(fields),
        data => {
            body.insert("data".into(), data);
        }
    }
    if let Some(parameters) = &args.parameters {
        match json_argument("parameters", parameters)? {
            Value::Object(parameters) => {
                body.insert("parameters".into(), Value::Object(parameters));
            }
            _ => return Err(Failure::Usage("--parameters must be a JSON object".into())),
        }
    }
    if let Some(version) = &args.version {
        body.insert("model_version".into(), json!(version));
    }
    Ok(body)
}

pub async fn invoke(target: &Target, args: &InvokeArgs) -> Result<(), Failure> {
    let doors = Doors::of(target)?;
    let mut body = request_body(args)?;
    match (args.via, args.asynchronous) {
        (Via::Nats, true) => Err(Failure::Usage(
            "--async goes through HTTP (a NATS caller may call functions, not queue jobs)".into(),
        )),
        (Via::Nats, false) => invoke_nats(&doors, target, &args.function, &body).await,
        (Via::Http, asynchronous) => {
            body.insert("model_name".into(), json!(args.function));
            let path = if asynchronous {
                "/api/v1/inference/submit"
            } else {
                "/api/v1/inference/run"
            };
            let reply = doors
                .json(doors.request(reqwest::Method::POST, path).json(&body))
                .await?;
            if asynchronous {
                println!("{}", reply["job_id"].as_str().unwrap_or_default());
                return Ok(());
            }
            print(&reply)?;
            if reply["status"] == "failed" {
                return Err(Failure::Refused(format!(
                    "the job failed: {}",
                    reply["error"]
                )));
            }
            Ok(())
        }
    }
}

async fn invoke_nats(
    doors: &Doors,
    target: &Target,
    function: &str,
    body: &Map<String, Value>,
) -> Result<(), Failure> {
    let mut options = async_nats::ConnectOptions::new()
        .name("orbit-cli")
        .request_timeout(Some(Duration::from_secs(60)));
    if let (Some(user), Some(password)) = (&target.nats_user, &target.nats_password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    let client = options
        .connect(doors.nats.as_str())
        .await
        .map_err(|err| Failure::Unreachable(format!("{}: {err}", doors.nats)))?;
    let payload = serde_json::to_vec(body).map_err(|err| Failure::Local(err.to_string()))?;
    let reply = client
        .request(format!("orbit.fn.{function}"), payload.into())
        .await
        .map_err(|err| match err.kind() {
            async_nats::RequestErrorKind::NoResponders => Failure::Refused(format!(
                "no replica of {function} answers on orbit.fn.{function}"
            )),
            async_nats::RequestErrorKind::TimedOut => {
                Failure::Unreachable(format!("{function} did not answer in 60 s"))
            }
            _ => Failure::Unreachable(err.to_string()),
        })?;
    let error = reply.headers.as_ref().and_then(|headers| {
        headers
            .get("Nats-Service-Error")
            .map(|text| text.to_string())
            .map(|text| {
                let code = headers
                    .get("Nats-Service-Error-Code")
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                format!("{code} {text}")
            })
    });
    let value: Value = serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.payload).into_owned()));
    if let Some(error) = error {
        return Err(Failure::Refused(format!("service error {}", error.trim())));
    }
    print(&value)
}

pub async fn get(target: &Target, job_id: &str) -> Result<(), Failure> {
    let doors = Doors::of(target)?;
    let path = format!("/api/v1/inference/{job_id}");
    let reply = doors
        .json(doors.request(reqwest::Method::GET, &path))
        .await?;
    print(&reply)
}

pub async fn deadletter(target: &Target, verb: &DeadletterVerb) -> Result<(), Failure> {
    let doors = Doors::of(target)?;
    match verb {
        DeadletterVerb::Ls { origin, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(origin) = origin {
                query.push(("origin", origin.clone()));
            }
            let reply = doors
                .json(
                    doors
                        .request(reqwest::Method::GET, "/api/v1/deadletter")
                        .query(&query),
                )
                .await?;
            println!(
                "{:<12} {:<22} {:<24} {:<40} REASON",
                "ID", "ORIGIN", "TIME", "JOB"
            );
            for letter in reply["dead_letters"].as_array().into_iter().flatten() {
                println!(
                    "{:<12} {:<22} {:<24} {:<40} {}",
                    letter["id"].to_string().trim_matches('"'),
                    letter["origin"].as_str().unwrap_or(""),
                    letter["time"].as_str().unwrap_or(""),
                    letter["job_id"].as_str().unwrap_or("-"),
                    letter["reason"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        DeadletterVerb::Show { id } => {
            let path = format!("/api/v1/deadletter/{id}");
            print(
                &doors
                    .json(doors.request(reqwest::Method::GET, &path))
                    .await?,
            )
        }
        DeadletterVerb::Redrive { id: Some(id), .. } => {
            let path = format!("/api/v1/deadletter/{id}/redrive");
            print(
                &doors
                    .json(doors.request(reqwest::Method::POST, &path))
                    .await?,
            )
        }
        DeadletterVerb::Redrive {
            id: None, origin, ..
        } => {
            let mut after: Option<Value> = None;
            let mut redriven = 0usize;
            loop {
                let mut page = json!({"limit": 1000});
                if let Some(origin) = origin {
                    page["origin"] = json!(origin);
                }
                if let Some(after) = &after {
                    page["after"] = after.clone();
                }
                let reply = doors
                    .json(
                        doors
                            .request(reqwest::Method::POST, "/api/v1/deadletter/redrive")
                            .json(&page),
                    )
                    .await?;
                redriven += reply["redriven"].as_array().map_or(0, Vec::len);
                for skipped in reply["skipped"].as_array().into_iter().flatten() {
                    eprintln!(
                        "skipped {}: {}",
                        skipped["id"],
                        skipped["reason"].as_str().unwrap_or("")
                    );
                }
                match &reply["next"] {
                    Value::Null => break,
                    next => after = Some(next.clone()),
                }
            }
            println!("{redriven} letters redriven");
            Ok(())
        }
    }
}

pub async fn watch(target: &Target, function: Option<&str>) -> Result<(), Failure> {
    let doors = Doors::of(target)?;
    let mut url = format!(
        "{}{}",
        doors.http.replacen("http", "ws", 1),
        "/api/v1/dashboard/ws"
    );
    let mut query = Vec::new();
    if let Some(function) = function {
        query.push(format!("function={function}"));
    }
    if let Some(key) = &doors.key {
        query.push(format!("access_token={key}"));
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|err| match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => Failure::Refused(format!(
                "HTTP {}: {}",
                response.status(),
                response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            )),
            other => Failure::Unreachable(format!("{}: {other}", doors.http)),
        })?;
    eprintln!(
        "watching {} (Ctrl-C to stop)",
        function.unwrap_or("every function")
    );
    while let Some(frame) = socket.next().await {
        let frame = frame.map_err(|err| Failure::Unreachable(err.to_string()))?;
        let Ok(text) = frame.into_text() else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match event["type"].as_str() {
            Some("result") => println!("{}", one_line(&event)),
            Some("deadletter") => println!("dead letter: {}", event),
            Some("update") => {
                // The first update is a snapshot with the latest results, newest first.
                let recent = event["recent_results"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for result in recent.iter().rev() {
                    println!("{}", one_line(result));
                }
                let stats = &event["statistics"];
                eprintln!(
                    "-- {} jobs, {} succeeded, {} failed",
                    stats["total_jobs"], stats["completed"], stats["failed"]
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// A result as the dashboard pushes it, as one line: when it finished, the function, how it
/// ended, the job id, its timings and worker, the output's length or the failure.
fn one_line(result: &Value) -> String {
    let outcome = if result["status"] == "failed" {
        result["error"].to_string()
    } else {
        result["output_len"]
            .as_u64()
            .map(|n| format!("{n} values"))
            .unwrap_or_default()
    };
    format!(
        "{} {:<20} {:<9} {} queue {:.1} ms compute {:.1} ms {} {}",
        result["finished_at"].as_str().unwrap_or(""),
        result["function"].as_str().unwrap_or("?"),
        result["status"].as_str().unwrap_or("?"),
        result["job_id"].as_str().unwrap_or("?"),
        result["queue_ms"].as_f64().unwrap_or(0.0),
        result["compute_ms"].as_f64().unwrap_or(0.0),
        result["worker_id"].as_str().unwrap_or(""),
        outcome
    )
}
