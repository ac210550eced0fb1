//! A function that exists only for the tests: it scales a series by `factor`. Its name comes
//! from `ORBIT_TEST_FUNCTION` (default `test_scale`), so a test can start one the gateway has
//! never heard of and watch the gateway learn it from discovery alone.

use orbit_contract::{Datatype, FunctionDescriptor, InputKind, JobFailure, Limits, TensorSpec};
use orbit_runtime::{Function, Job};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Params {
    factor: f64,
}

struct Scale {
    name: String,
}

impl Function for Scale {
    type Params = Params;

    fn descriptor(&self) -> FunctionDescriptor {
        FunctionDescriptor {
            name: self.name.clone(),
            version: "0.0.1".into(),
            versions: Vec::new(),
            description: "Scales a series (a test-only function)".into(),
            platform: "orbit".into(),
            input: InputKind::Series,
            parameters: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {"factor": {"type": "number", "minimum": -1000, "maximum": 1000, "default": 2}}
            }),
            inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
            outputs: vec![TensorSpec::new("scaled", Datatype::Fp64, vec![-1])],
            limits: Limits::default(),
            example: Some(json!({"data": [1, 2, 3], "parameters": {"factor": 3}})),
        }
    }

    fn call(&self, job: &Job<Params>) -> Result<Value, JobFailure> {
        let scaled: Vec<f64> = job
            .series()?
            .values()
            .iter()
            .map(|v| v * job.params.factor)
            .collect();
        Ok(json!({ "scaled": scaled }))
    }

    fn is_cheap(&self, _job: &Job<Params>) -> bool {
        true
    }
}

fn main() -> std::process::ExitCode {
    let name = std::env::var("ORBIT_TEST_FUNCTION").unwrap_or_else(|_| "test_scale".into());
    orbit_runtime::cli::main(|| Ok::<_, std::convert::Infallible>(Scale { name }))
}
