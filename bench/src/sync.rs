//! Synchronous moving averages: NATS request/reply straight to the function, and the same call
//! through the gateway (`/api/v1/inference/run`, KServe `/v2/.../infer`); and, as the floor
//! under them, the same request answered at once by an echo responder on the same NATS server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use triton_proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use triton_proto::infer_parameter::ParameterChoice;
use triton_proto::model_infer_request::InferInputTensor;
use triton_proto::{InferParameter, ModelInferRequest};

use crate::jobs::job;
use crate::latency::{Latencies, Summary};

#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub path: &'static str,
    pub concurrency: usize,
    pub calls: usize,
    pub calls_per_second: f64,
    pub latency: Summary,
    pub errors: usize,
}

#[derive(Clone, Copy, Debug)]
pub enum Path {
    /// The bus alone: [`EchoResponder`] answers with the request body. No parse, no compute, no
    /// record; what any NATS request/reply of this size costs here.
    NatsEcho,
    Nats,
    /// The same call to the Python twin of the function ([`crate::python::FUNCTION`]).
    NatsPython,
    HttpRun,
    KServe,
    /// `/v2` with the series as a raw little-endian FP64 tensor (Triton's binary extension).
    KServeBinary,
    /// The gRPC door's `ModelInfer`, the series in `raw_input_contents` (as tritonclient and
    /// perf_analyzer send it), over one HTTP/2 channel.
    Grpc,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::NatsEcho => "nats echo (the bus alone)",
            Path::Nats => "nats orbit.fn.moving_average",
            Path::NatsPython => "nats orbit.fn.py_moving_average (Python)",
            Path::HttpRun => "http /api/v1/inference/run",
            Path::KServe => "http /v2/models/moving_average/infer",
            Path::KServeBinary => "http /v2/models/moving_average/infer (binary)",
            Path::Grpc => "grpc ModelInfer moving_average (raw)",
        }
    }
}

pub struct Clients {
    pub nats: async_nats::Client,
    pub http: reqwest::Client,
    pub base: String,
    /// The gateway's gRPC door, for [`Path::Grpc`].
    pub grpc: Option<GrpcClient>,
}

pub type GrpcClient = GrpcInferenceServiceClient<tonic::transport::Channel>;

/// A client of the gRPC door at `uri` (`http://127.0.0.1:8001`).
pub async fn grpc_client(uri: &str) -> anyhow::Result<GrpcClient> {
    Ok(GrpcInferenceServiceClient::connect(uri.to_string()).await?)
}

/// The benchmark's series as a gRPC `ModelInfer` request.
pub fn grpc_request(series: &serde_json::Value) -> ModelInferRequest {
    let raw: Vec<u8> = series
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v.as_f64().unwrap_or_default().to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: "moving_average".into(),
        parameters: [(
            "window".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(5)),
            },
        )]
        .into(),
        inputs: vec![InferInputTensor {
            name: "data".into(),
            datatype: "FP64".into(),
            shape: vec![(raw.len() / 8) as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(raw)],
        ..Default::default()
    }
}

/// `calls` calls over `concurrency` callers, each waiting for its answer.
pub async fn run(
    clients: &Clients,
    path: Path,
    calls: usize,
    concurrency: usize,
) -> anyhow::Result<SyncReport> {
    let series = job("moving_average", 64, 0)["data"].clone();
    let nats_body = Bytes::from(json!({ "data": series, "parameters": {"window": 5} }).to_string());
    let run_body = job("moving_average", 64, 0);
    let kserve_body = json!({ "inputs": [{ "name": "data", "shape": [64], "datatype": "FP64", "data": series }], "parameters": {"window": 5} });
    let (binary_body, header_length) = {
        let header = json!({ "inputs": [{ "name": "data", "shape": [64], "datatype": "FP64",
            "parameters": {"binary_data_size": 64 * 8} }], "parameters": {"window": 5, "binary_data_output": true} })
        .to_string();
        let mut body = header.clone().into_bytes();
        for value in series.as_array().into_iter().flatten() {
            body.extend(value.as_f64().unwrap_or_default().to_le_bytes());
        }
        (Bytes::from(body), header.len())
    };
    let grpc_body = grpc_request(&series);
    // The function a NATS row calls.
    let subject = async_nats::Subject::from(match path {
        Path::NatsPython => format!("orbit.fn.{}", crate::python::FUNCTION),
        _ => "orbit.fn.moving_average".to_string(),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..concurrency {
        let (mut grpc, grpc_body) = (clients.grpc.clone(), grpc_body.clone());
        let (nats, http, base, next, subject) = (
            clients.nats.clone(),
            clients.http.clone(),
            clients.base.clone(),
            next.clone(),
            subject.clone(),
        );
        let (nats_body, run_body, kserve_body, binary_body) = (
            nats_body.clone(),
            run_body.clone(),
            kserve_body.clone(),
            binary_body.clone(),
        );
        callers.push(tokio::spawn(async move {
            let mut latency = Latencies::new();
            let mut errors = 0;
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let sent = Instant::now();
                let ok = match path {
                    Path::NatsEcho => nats.request(ECHO_SUBJECT, nats_body.clone()).await.is_ok(),
                    Path::Nats | Path::NatsPython => {
                        match nats.request(subject.clone(), nats_body.clone()).await {
                            Ok(reply) => reply
                                .headers
                                .as_ref()
                                .and_then(|h| h.get("Nats-Service-Error"))
                                .is_none(),
                            Err(_) => false,
                        }
                    }
                    Path::HttpRun => http
                        .post(format!("{base}/api/v1/inference/run"))
                        .json(&run_body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    Path::KServe => http
                        .post(format!("{base}/v2/models/moving_average/infer"))
                        .json(&kserve_body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    Path::KServeBinary => http
                        .post(format!("{base}/v2/models/moving_average/infer"))
                        .header("Inference-Header-Content-Length", header_length)
                        .body(binary_body.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    Path::Grpc => match grpc.as_mut() {
                        Some(client) => client.model_infer(grpc_body.clone()).await.is_ok(),
                        None => false,
                    },
                };
                latency.record(sent.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (latency, errors)
        }));
    }
    let mut latency = Latencies::new();
    let mut errors = 0;
    for caller in callers {
        let (more, failed) = caller.await?;
        latency.merge(&more);
        errors += failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(SyncReport {
        path: path.name(),
        concurrency,
        calls,
        calls_per_second: calls as f64 / seconds,
        latency: latency.summary(),
        errors,
    })
}

/// Subject of the [`EchoResponder`]; outside every subject Orbit serves.
pub const ECHO_SUBJECT: &str = "orbit-bench.echo";

/// A responder on its own NATS connection that answers every request on [`ECHO_SUBJECT`]
/// with its body, as a replica would with no work to do. Stops when dropped.
pub struct EchoResponder {
    task: tokio::task::JoinHandle<()>,
}

impl EchoResponder {
    pub async fn start(client: async_nats::Client) -> anyhow::Result<Self> {
        let mut requests = client.subscribe(ECHO_SUBJECT).await?;
        client.flush().await?;
        let task = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = client.publish(reply, request.payload).await;
                }
            }
        });
        Ok(Self { task })
    }
}

impl Drop for EchoResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
