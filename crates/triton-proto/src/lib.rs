//! Triton's `inference.GRPCInferenceService`: the KServe v2 gRPC protocol plus the extensions
//! Triton's clients call (repository index, model configuration, statistics). The messages
//! and both the server trait and the client are generated at build time from the `.proto`
//! files vendored in `proto/` (see `proto/README.md` for their origin), with a pure-Rust proto
//! compiler, so building needs no `protoc`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// The `inference` package: messages, `grpc_inference_service_server` and
/// `grpc_inference_service_client`.
pub mod inference {
    tonic::include_proto!("inference");
}

pub use inference::*;
