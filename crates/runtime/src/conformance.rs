//! What every function must pass before it is served: a declaration the runtime accepts, an
//! example request, and that example answered through the same checks as a real job. The
//! crates `orbit fn new` writes run it in their tests; any function's tests can.

use serde_json::Value;

use crate::function::{Function, Job};

/// Why a function does not conform, naming the part at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("descriptor: {0}")]
    Descriptor(String),
    #[error("the descriptor has no example request")]
    NoExample,
    #[error("its own example is refused: {0}")]
    ExampleRefused(String),
    #[error("its own example fails: {0}")]
    ExampleFails(String),
    #[error("a body that is not JSON was accepted")]
    AcceptsGarbage,
}

/// Runs the checks on `function`; returns what it answers its example with.
pub fn check<F: Function>(function: &F) -> Result<Value, ConformanceError> {
    let descriptor = function.descriptor();
    if descriptor.version.trim().is_empty() {
        return Err(ConformanceError::Descriptor("an empty version".into()));
    }
    orbit_contract::FunctionSpec::new(descriptor.clone())
        .map_err(|err| ConformanceError::Descriptor(err.to_string()))?;
    let example = descriptor.example.ok_or(ConformanceError::NoExample)?;
    let body = serde_json::to_vec(&example)
        .map_err(|err| ConformanceError::ExampleRefused(err.to_string()))?;
    let job = Job::from_body(function, &body)
        .map_err(|err| ConformanceError::ExampleRefused(err.to_string()))?;
    let output = function
        .call(&job)
        .map_err(|failure| ConformanceError::ExampleFails(format!("{failure:?}")))?;
    if Job::<F::Params>::from_body(function, b"{not json").is_ok() {
        return Err(ConformanceError::AcceptsGarbage);
    }
    Ok(output)
}
