//! Compiles the vendored protos with protox (pure Rust, no `protoc` on the machine).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/grpc_service.proto", "proto/model_config.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Tensor blobs stay `Bytes`: no copy between the wire and a job.
        .bytes(".")
        // What Orbit does not serve (shared memory, model load, trace settings) answers
        // UNIMPLEMENTED without a line of code.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
