//! The Open Inference Protocol over gRPC: Triton's `inference.GRPCInferenceService` on
//! `ORBIT_GRPC_ADDR` (Triton's port 8001 by default), for the clients that speak gRPC only
//! (tritonclient.grpc, perf_analyzer, most production callers).
//!
//! It is a second door onto the same house as `/v2`: the same registry, the same infer code
//! past decoding ([`crate::routes::v2::run_infer`]), the same statistics and repository
//! index, the same API keys and scopes (`authorization: Bearer <key>` in the call's metadata)
//! and limits (a message over `ORBIT_MAX_BODY_BYTES` is RESOURCE_EXHAUSTED). Errors are
//! gRPC status codes: NOT_FOUND for an unknown model or version, INVALID_ARGUMENT naming the
//! field, UNAVAILABLE when no replica answers, DEADLINE_EXCEEDED when none answered in time,
//! UNAUTHENTICATED / PERMISSION_DENIED / RESOURCE_EXHAUSTED from the keys. What Orbit does
//! not do (shared memory, model load and unload, trace and log settings) is UNIMPLEMENTED.

pub mod convert;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::SystemTime;

use futures::{Stream, StreamExt};
use orbit_contract::{Datatype, TensorSpec};
use orbit_runtime::traces::{self, TraceParent};
use orbit_runtime::Shutdown;
use prost::Message;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use triton_proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use triton_proto::model_metadata_response::TensorMetadata;
use triton_proto::repository_index_response::ModelIndex;
use triton_proto::*;

use crate::auth::{Denial, Scope};
use crate::error::ApiError;
use crate::limits::Admitted;
use crate::routes::v2::{self, stats, V2Error};
use crate::state::AppState;

/// Where the door listens and with which certificate.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// `None`: no gRPC door (`ORBIT_GRPC_ADDR` set empty).
    pub addr: Option<SocketAddr>,
    /// PEM certificate chain and key (`ORBIT_GRPC_TLS_CERT`, `ORBIT_GRPC_TLS_KEY`).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// An error of the `/v2` door as a gRPC status.
impl From<V2Error> for Status {
    fn from(err: V2Error) -> Self {
        let message = v2::message(&err.0);
        match err.0 {
            ApiError::Malformed(_) | ApiError::Invalid(_) | ApiError::JobFailed { .. } => {
                Status::invalid_argument(message)
            }
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::Conflict(_) => Status::failed_precondition(message),
            ApiError::TooLarge { .. } => Status::resource_exhausted(message),
            ApiError::QueueFull | ApiError::Unavailable(_) => Status::unavailable(message),
            ApiError::Timeout(_) => Status::deadline_exceeded(message),
            ApiError::Internal(_) => {
                tracing::warn!(error = %message, "gRPC request failed");
                Status::internal(message)
            }
        }
    }
}

fn denied(denial: Denial) -> Status {
    match denial {
        Denial::Unauthenticated(message) => Status::unauthenticated(message),
        Denial::Forbidden(message) => Status::permission_denied(message),
        Denial::Limited { refusal, key } => Status::resource_exhausted(refusal.message(&key)),
    }
}

/// The service: every method reads the gateway's shared state.
pub struct Door {
    state: AppState,
}

impl Door {
    /// Admits a call needing `scope` on the key in its metadata; held while the call runs.
    fn admit<T>(&self, request: &Request<T>, scope: Scope) -> Result<Admitted, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(crate::auth::bearer);
        self.state
            .auth
            .admit(presented, scope, false)
            .map_err(denied)
    }

    /// One infer, in a span of its own (a child of the caller's `traceparent`) when traces
    /// are on, whose context the jobs carry.
    async fn infer(
        &self,
        request: ModelInferRequest,
        parent: Option<TraceParent>,
    ) -> Result<ModelInferResponse, Status> {
        if !traces::enabled() {
            return traces::scope(parent, self.infer_untraced(request)).await;
        }
        let mut span = traces::open(
            "ModelInfer",
            parent,
            SystemTime::now(),
            traces::Details {
                kind: Some(traces::Kind::Server),
                attributes: vec![
                    traces::Attribute::new("rpc.system", "grpc"),
                    traces::Attribute::new("rpc.method", "ModelInfer"),
                    traces::Attribute::new("orbit.function", request.model_name.clone()),
                ],
                links: Vec::new(),
            },
        );
        let answer = traces::scope(span.context(), self.infer_untraced(request)).await;
        if let Err(status) = &answer {
            span.set_attribute(traces::Attribute::new(
                "rpc.grpc.status_code",
                status.code() as i64,
            ));
            span.fail(status.message().to_string());
        }
        span.end();
        answer
    }

    async fn infer_untraced(
        &self,
        request: ModelInferRequest,
    ) -> Result<ModelInferResponse, Status> {
        let limit = self.state.config.max_body_bytes;
        if request.encoded_len() > limit {
            return Err(Status::resource_exhausted(format!(
                "the request is {} bytes, over the limit of {limit} (ORBIT_MAX_BODY_BYTES)",
                request.encoded_len()
            )));
        }
        let model = request.model_name.clone();
        let version = version_asked(&request.model_version);
        let decoded = convert::decode(request).map_err(V2Error::from)?;
        let inferred = v2::run_infer(&self.state, &model, version, &decoded, None).await?;
        Ok(convert::encode(&model, decoded.id, inferred))
    }
}

/// The caller's trace context, from the call's `traceparent` metadata.
fn trace_of<T>(request: &Request<T>) -> Option<TraceParent> {
    traces::parse(
        request
            .metadata()
            .get(traces::TRACEPARENT)
            .and_then(|value| value.to_str().ok()),
    )
}

/// The protocol's "no version" is an empty string.
fn version_asked(version: &str) -> Option<String> {
    (!version.is_empty()).then(|| version.to_string())
}

fn tensor_metadata(specs: &[TensorSpec]) -> Vec<TensorMetadata> {
    specs
        .iter()
        .map(|s| TensorMetadata {
            name: s.name.clone(),
            datatype: s.datatype.as_str().to_string(),
            shape: s.shape.clone(),
        })
        .collect()
}

fn config_type(datatype: Datatype) -> i32 {
    DataType::from_str_name(&format!("TYPE_{datatype}")).map_or(0, |t| t as i32)
}

type InferStream = Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send>>;

/// How many requests of one stream run at once; answers carry their request's id.
const STREAM_CONCURRENCY: usize = 64;

#[tonic::async_trait]
impl GrpcInferenceService for Door {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.nats.connection_state() == async_nats::connection::State::Connected;
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let _admitted = self.admit(&request, Scope::Read)?;
        let asked = request.get_ref();
        let version = version_asked(&asked.version);
        let ready = v2::is_ready(&self.state, &asked.name, version.as_deref()).await?;
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let _admitted = self.admit(&request, Scope::Read)?;
        Ok(Response::new(ServerMetadataResponse {
            name: "orbit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: v2::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let _admitted = self.admit(&request, Scope::Read)?;
        let asked = request.into_inner();
        let spec = v2::known(&self.state, &asked.name).await?;
        let version = version_asked(&asked.version);
        let chosen = v2::version_of(&spec, version.as_deref())?;
        let descriptor = spec.descriptor();
        let versions = match version {
            Some(_) => vec![chosen.version.clone()],
            None => descriptor.served().into_iter().map(|v| v.version).collect(),
        };
        Ok(Response::new(ModelMetadataResponse {
            name: descriptor.name.clone(),
            versions,
            platform: descriptor.platform.clone(),
            inputs: tensor_metadata(&chosen.inputs),
            outputs: tensor_metadata(&chosen.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let _admitted = self.admit(&request, Scope::Submit)?;
        let parent = trace_of(&request);
        Ok(Response::new(
            self.infer(request.into_inner(), parent).await?,
        ))
    }

    /// Each request of the stream runs as a `ModelInfer` would; a failed one answers with its
    /// `error_message` and the stream goes on.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<InferStream>, Status> {
        // Held by the stream: the key's in-flight slot is freed when the stream ends.
        let admitted = self.admit(&request, Scope::Submit)?;
        let parent = trace_of(&request);
        let door = std::sync::Arc::new(Door {
            state: self.state.clone(),
        });
        let answers = request
            .into_inner()
            .map(move |message| {
                let _held = &admitted;
                let door = door.clone();
                async move {
                    let request = message?;
                    let id = request.id.clone();
                    Ok(match door.infer(request, parent).await {
                        Ok(response) => ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(status) => ModelStreamInferResponse {
                            error_message: status.message().to_string(),
                            infer_response: Some(ModelInferResponse {
                                id,
                                ..Default::default()
                            }),
                        },
                    })
                }
            })
            .buffer_unordered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let _admitted = self.admit(&request, Scope::Read)?;
        let asked = request.into_inner();
        let spec = v2::known(&self.state, &asked.name).await?;
        let version = version_asked(&asked.version);
        let chosen = v2::version_of(&spec, version.as_deref())?;
        let descriptor = spec.descriptor();
        let inputs = chosen
            .inputs
            .iter()
            .map(|s| ModelInput {
                name: s.name.clone(),
                data_type: config_type(s.datatype),
                dims: s.shape.clone(),
                ..Default::default()
            })
            .collect();
        let outputs = chosen
            .outputs
            .iter()
            .map(|s| ModelOutput {
                name: s.name.clone(),
                data_type: config_type(s.datatype),
                dims: s.shape.clone(),
                ..Default::default()
            })
            .collect();
        let versions = descriptor
            .served()
            .iter()
            .filter_map(|v| v.version.parse::<i64>().ok())
            .collect();
        Ok(Response::new(ModelConfigResponse {
            config: Some(ModelConfig {
                name: descriptor.name.clone(),
                platform: descriptor.platform.clone(),
                // Shapes are explicit: no implicit batch dimension.
                max_batch_size: 0,
                input: inputs,
                output: outputs,
                version_policy: Some(ModelVersionPolicy {
                    policy_choice: Some(model_version_policy::PolicyChoice::Specific(
                        model_version_policy::Specific { versions },
                    )),
                }),
                ..Default::default()
            }),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let _admitted = self.admit(&request, Scope::Read)?;
        let asked = request.into_inner();
        let version = version_asked(&asked.version);
        let names = if asked.name.is_empty() {
            self.state.registry.names()
        } else {
            let spec = v2::known(&self.state, &asked.name).await?;
            v2::version_of(&spec, version.as_deref())?;
            vec![asked.name.clone()]
        };
        let per_model = futures::future::join_all(
            names
                .iter()
                .map(|name| stats::counters(&self.state, name, version.as_deref())),
        )
        .await;
        let duration = |t: &orbit_runtime::stats::Timed| StatisticDuration {
            count: t.count,
            ns: t.ns,
        };
        let model_stats = names
            .iter()
            .zip(per_model)
            .flat_map(|(name, versions)| {
                versions
                    .into_iter()
                    .map(move |(version, counted)| ModelStatistics {
                        name: name.clone(),
                        version,
                        last_inference: u64::try_from(counted.last_inference).unwrap_or(0),
                        inference_count: counted.inference_count,
                        execution_count: counted.execution_count.round() as u64,
                        inference_stats: Some(InferStatistics {
                            success: Some(duration(&counted.success)),
                            fail: Some(duration(&counted.fail)),
                            queue: Some(duration(&counted.queue)),
                            compute_infer: Some(duration(&counted.compute)),
                            compute_input: Some(StatisticDuration::default()),
                            compute_output: Some(StatisticDuration::default()),
                            cache_hit: Some(StatisticDuration::default()),
                            cache_miss: Some(StatisticDuration::default()),
                        }),
                        ..Default::default()
                    })
            })
            .collect();
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let _admitted = self.admit(&request, Scope::Admin)?;
        let models = v2::repository(&self.state, request.get_ref().ready)
            .into_iter()
            .map(|m| ModelIndex {
                name: m.name,
                version: m.version,
                state: m.state.to_string(),
                reason: m.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }
}

/// Serves the door until `shutdown`; `None` when it is turned off.
pub async fn serve(
    state: AppState,
    config: GrpcConfig,
    shutdown: Shutdown,
) -> Result<(), GrpcError> {
    let Some(addr) = config.addr else {
        return Ok(());
    };
    let limit = state.config.max_body_bytes;
    let service = GrpcInferenceServiceServer::new(Door { state })
        // A little over the limit, so a call over it is answered RESOURCE_EXHAUSTED by the
        // door (with the setting to change), not OUT_OF_RANGE by the codec.
        .max_decoding_message_size(limit.saturating_mul(2).max(4 * 1024 * 1024))
        .max_encoding_message_size(usize::MAX);
    let mut server = Server::builder();
    if let Some((cert, key)) = &config.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| GrpcError::Tls {
                path: path.display().to_string(),
                source,
            })
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|err| GrpcError::Serve(err.to_string()))?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| GrpcError::Bind { addr, source })?;
    tracing::info!(%addr, tls = config.tls.is_some(), "gRPC door listening");
    server
        .add_service(service)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a response's last frame waits for the peer's delayed ACK:
            // 40 ms per call.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move { shutdown.wait().await },
        )
        .await
        .map_err(|err| GrpcError::Serve(err.to_string()))
}

/// The door could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("binding the gRPC door to {addr} (ORBIT_GRPC_ADDR): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading {path} (ORBIT_GRPC_TLS_CERT / ORBIT_GRPC_TLS_KEY): {source}")]
    Tls {
        path: String,
        source: std::io::Error,
    },
    #[error("gRPC door: {0}")]
    Serve(String),
}
