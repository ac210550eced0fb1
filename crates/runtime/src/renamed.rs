//! Serving a function under another name (`ORBIT_FUNCTION_NAME`, read by [`crate::cli`]): the
//! same code answers as a function of its own, with its own consumer, micro service, catalog
//! entry and metrics. It is how a name that clients already call keeps working when a better
//! implementation takes it over (the default forecaster answers as `lstm_timeseries`, the name
//! the seed's clients use), without a crate or a gateway rule for the old name.

use orbit_contract::{FunctionDescriptor, JobFailure};
use serde_json::Value;

use crate::executor::BatchPolicy;
use crate::{Function, Job};

/// `inner`, declared and served as `name`.
pub struct Renamed<F> {
    inner: F,
    name: String,
}

impl<F: Function> Renamed<F> {
    /// Fails when `name` is not a valid function name (the contract's rule).
    pub fn new(inner: F, name: &str) -> Result<Self, orbit_contract::descriptor::DescriptorError> {
        orbit_contract::descriptor::check_name(name)?;
        Ok(Self {
            inner,
            name: name.to_string(),
        })
    }
}

impl<F: Function> Function for Renamed<F> {
    type Params = F::Params;

    fn descriptor(&self) -> FunctionDescriptor {
        let mut descriptor = self.inner.descriptor();
        if descriptor.name != self.name {
            descriptor.description = format!(
                "{} (the `{}` function, served under this name)",
                descriptor.description, descriptor.name
            );
            descriptor.name = self.name.clone();
        }
        descriptor
    }

    fn descriptor_updates(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.descriptor_updates()
    }

    fn call(&self, job: &Job<Self::Params>) -> Result<Value, JobFailure> {
        self.inner.call(job)
    }

    fn call_batch(&self, jobs: &[Job<Self::Params>]) -> Vec<Result<Value, JobFailure>> {
        self.inner.call_batch(jobs)
    }

    fn is_cheap(&self, job: &Job<Self::Params>) -> bool {
        self.inner.is_cheap(job)
    }

    fn batching(&self) -> Option<BatchPolicy> {
        self.inner.batching()
    }
}

#[cfg(test)]
mod tests {
    use orbit_contract::{Datatype, InputKind, Limits, TensorSpec};
    use serde_json::{json, Map};

    use super::*;

    struct Double;

    impl Function for Double {
        type Params = Map<String, Value>;

        fn descriptor(&self) -> FunctionDescriptor {
            FunctionDescriptor {
                name: "double".into(),
                version: "1".into(),
                versions: Vec::new(),
                description: "doubles a series".into(),
                platform: "orbit".into(),
                input: InputKind::Series,
                parameters: json!({"type": "object", "additionalProperties": false, "properties": {}}),
                inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
                outputs: vec![TensorSpec::new("values", Datatype::Fp64, vec![-1])],
                limits: Limits::default(),
                example: None,
            }
        }

        fn call(&self, job: &Job<Self::Params>) -> Result<Value, JobFailure> {
            let values: Vec<f64> = job.series()?.values().iter().map(|v| v * 2.0).collect();
            Ok(json!({ "values": values }))
        }
    }

    #[test]
    fn the_renamed_function_declares_the_new_name_and_answers_the_same() {
        let renamed = Renamed::new(Double, "twice").expect("a valid name");
        let descriptor = renamed.descriptor();
        assert_eq!(descriptor.name, "twice");
        assert!(
            descriptor.description.contains("`double` function"),
            "{}",
            descriptor.description
        );
        let job = Job::from_body(&renamed, br#"{"data": [1, 2.5]}"#).expect("a valid job");
        assert_eq!(
            renamed.call(&job).expect("an answer"),
            json!({"values": [2.0, 5.0]})
        );
    }

    #[test]
    fn a_name_that_is_no_subject_token_is_refused() {
        assert!(Renamed::new(Double, "two words").is_err());
        assert!(Renamed::new(Double, "a.b").is_err());
        assert!(Renamed::new(Double, "").is_err());
    }
}
