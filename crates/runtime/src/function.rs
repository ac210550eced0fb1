//! What a function author implements, and how the runtime checks what reaches it.
//!
//! The runtime's machinery (the job loop, the micro service, the executor) holds a function as
//! an `Arc<dyn Hostable>` and its jobs as `Job<AnyParams>`: the parameters' type is known only
//! where the function is called. So that machinery is compiled once, in this crate, instead of
//! once more at full optimisation in every function binary.

use std::any::Any;
use std::sync::{Arc, RwLock};

use orbit_contract::{
    FieldError, FunctionDescriptor, FunctionSpec, JobFailure, JobInput, RequestParts, Series,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::executor::BatchPolicy;

/// One serverless function: pure computation on checked input. Everything about NATS,
/// discovery, retries, batching and shutdown is the runtime's business.
///
/// The function declares itself in [`Function::descriptor`]: its name, version, a JSON Schema
/// of its parameters, its input and output tensors and limits. The runtime publishes that in
/// `$SRV.INFO` and the function catalog, the gateway checks requests against it, and the
/// runtime checks every job again before [`Function::call`] sees it, so `call` gets a job that
/// fits the declaration and parameters already deserialized into [`Function::Params`].
pub trait Function: Send + Sync + 'static {
    /// The parameters, deserialized from the checked parameter object (every declared property
    /// present, defaults filled in). `Map<String, Value>` keeps them as JSON.
    type Params: DeserializeOwned + Send + Sync + 'static;

    /// What the function declares about itself. Called at start, and again whenever
    /// [`Function::descriptor_updates`] ticks.
    fn descriptor(&self) -> FunctionDescriptor;

    /// Ticks when the descriptor changed (a model repository reloaded a version); the runtime
    /// then publishes the new one. `None`: it never changes.
    fn descriptor_updates(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Runs one job.
    fn call(&self, job: &Job<Self::Params>) -> Result<Value, JobFailure>;

    /// Runs many jobs in one go, one output per job in the same order. Override it when a batch
    /// is cheaper than its parts (one model call for many series).
    fn call_batch(&self, jobs: &[Job<Self::Params>]) -> Vec<Result<Value, JobFailure>> {
        jobs.iter().map(|job| self.call(job)).collect()
    }

    /// Whether `job` is cheap enough to run on an async thread (microseconds). Anything else
    /// runs on the blocking pool so it never stalls NATS traffic.
    fn is_cheap(&self, _job: &Job<Self::Params>) -> bool {
        false
    }

    /// Dynamic batching: `Some` stacks concurrent jobs (sync calls and async batches alike)
    /// into one `call_batch`, for functions where one call for many inputs is much cheaper
    /// than many calls (a model).
    fn batching(&self) -> Option<BatchPolicy> {
        None
    }
}

/// A job as a function sees it: checked against its declaration.
#[derive(Debug, Clone)]
pub struct Job<P> {
    /// The version that runs it: the one the request named, or the default.
    pub version: String,
    pub input: JobInput,
    pub params: P,
}

impl<P: DeserializeOwned> Job<P> {
    /// Checks a request body (the `orbit.fn.<function>` form: `{"data": [...],
    /// "parameters": {...}}`) against `function`'s declaration and turns it into its job,
    /// exactly as the runtime does before [`Function::call`]: for a function's own tests.
    pub fn from_body<F: Function<Params = P>>(
        function: &F,
        body: &[u8],
    ) -> Result<Self, FieldError> {
        let descriptor = function.descriptor();
        let name = descriptor.name.clone();
        let spec = FunctionSpec::new(descriptor)
            .map_err(|err| FieldError::new("descriptor", err.to_string()))?;
        let call: orbit_contract::SyncRequest = orbit_contract::parse_json(body)?;
        prepare_with(&spec, call.into_parts(&name)?)
    }
}

impl<P> Job<P> {
    /// The series of a series function's job (every such job has one).
    pub fn series(&self) -> Result<&Series, JobFailure> {
        self.input
            .series()
            .ok_or_else(|| JobFailure::function_error("this job carries tensors, not a series"))
    }
}

/// A function's parameters with their type hidden from the runtime's machinery.
pub(crate) type AnyParams = Box<dyn Any + Send + Sync>;

/// [`Function`] as the runtime holds it: object-safe, the parameters' type erased. Every
/// `Function` is one.
pub(crate) trait Hostable: Send + Sync + 'static {
    fn descriptor(&self) -> FunctionDescriptor;
    fn descriptor_updates(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
    fn batching(&self) -> Option<BatchPolicy>;
    /// Deserializes checked parameters into the function's own type.
    fn params(&self, parameters: Map<String, Value>) -> Result<AnyParams, FieldError>;
    /// Gives `jobs` (whose parameters [`Hostable::params`] made) their type back, ready to run.
    fn typed(self: Arc<Self>, jobs: Vec<Job<AnyParams>>) -> Box<dyn TypedBatch>;
}

/// Jobs of one function with their parameters' type restored.
pub(crate) trait TypedBatch: Send {
    /// Whether every job is cheap enough to run on an async thread ([`Function::is_cheap`]).
    fn is_cheap(&self) -> bool;
    /// Runs them ([`call_isolated`]): one output per job, in order.
    fn call(self: Box<Self>) -> Vec<Result<Value, JobFailure>>;
}

impl<F: Function> Hostable for F {
    fn descriptor(&self) -> FunctionDescriptor {
        Function::descriptor(self)
    }

    fn descriptor_updates(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Function::descriptor_updates(self)
    }

    fn batching(&self) -> Option<BatchPolicy> {
        Function::batching(self)
    }

    fn params(&self, parameters: Map<String, Value>) -> Result<AnyParams, FieldError> {
        params_from::<F::Params>(parameters).map(|params| Box::new(params) as AnyParams)
    }

    fn typed(self: Arc<Self>, jobs: Vec<Job<AnyParams>>) -> Box<dyn TypedBatch> {
        let mut typed = Vec::with_capacity(jobs.len());
        let mut mismatched = Vec::new();
        for (index, job) in jobs.into_iter().enumerate() {
            match job.params.downcast::<F::Params>() {
                Ok(params) => typed.push(Job {
                    version: job.version,
                    input: job.input,
                    params: *params,
                }),
                Err(_) => mismatched.push(index),
            }
        }
        Box::new(Typed {
            function: self,
            jobs: typed,
            mismatched,
        })
    }
}

/// Jobs of function `F`, and the places of any whose parameters were not `F`'s (none, unless
/// the runtime mixed up two functions' jobs: they fail rather than vanish).
struct Typed<F: Function> {
    function: Arc<F>,
    jobs: Vec<Job<F::Params>>,
    mismatched: Vec<usize>,
}

impl<F: Function> TypedBatch for Typed<F> {
    fn is_cheap(&self) -> bool {
        self.jobs.iter().all(|job| self.function.is_cheap(job))
    }

    fn call(self: Box<Self>) -> Vec<Result<Value, JobFailure>> {
        let mut outputs = call_isolated(&*self.function, &self.jobs);
        for index in self.mismatched {
            let failure = JobFailure::function_error("the job's parameters are another function's");
            outputs.insert(index.min(outputs.len()), Err(failure));
        }
        outputs
    }
}

/// A function with its declaration, checked once and kept current.
pub(crate) struct Declared {
    pub function: Arc<dyn Hostable>,
    spec: RwLock<Arc<FunctionSpec>>,
}

/// A declaration the runtime refuses to serve.
#[derive(Debug, thiserror::Error)]
#[error("function {name}: {source}")]
pub struct DeclarationError {
    pub name: String,
    #[source]
    pub source: orbit_contract::descriptor::DescriptorError,
}

impl Declared {
    pub fn new(function: Arc<dyn Hostable>) -> Result<Self, DeclarationError> {
        let spec = Self::spec_of(&*function)?;
        Ok(Self {
            function,
            spec: RwLock::new(Arc::new(spec)),
        })
    }

    fn spec_of(function: &dyn Hostable) -> Result<FunctionSpec, DeclarationError> {
        let descriptor = function.descriptor();
        let name = descriptor.name.clone();
        FunctionSpec::new(descriptor).map_err(|source| DeclarationError { name, source })
    }

    /// Reads the descriptor again; the new one applies to the jobs checked from now on.
    pub fn refresh(&self) -> Result<Arc<FunctionSpec>, DeclarationError> {
        let spec = Arc::new(Self::spec_of(&*self.function)?);
        if let Ok(mut current) = self.spec.write() {
            *current = spec.clone();
        }
        Ok(spec)
    }

    pub fn spec(&self) -> Arc<FunctionSpec> {
        match self.spec.read() {
            Ok(spec) => spec.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn name(&self) -> String {
        self.spec().name().to_string()
    }

    /// Checks a request's parts and turns them into the function's job; the error is the
    /// `invalid_input` failure the job ends with.
    pub fn prepare(&self, parts: RequestParts) -> Result<Job<AnyParams>, FieldError> {
        let (job, parameters) = checked(&self.spec(), parts)?;
        Ok(Job {
            version: job.version,
            input: job.input,
            params: self.function.params(parameters)?,
        })
    }
}

/// A request's parts checked against `spec`: the job with its parameters still as JSON.
fn checked(
    spec: &FunctionSpec,
    parts: RequestParts,
) -> Result<(Job<()>, Map<String, Value>), FieldError> {
    let version = spec.descriptor().resolve(parts.version.as_deref())?.version;
    let checked = spec.check(parts)?;
    let job = Job {
        version,
        input: checked.input,
        params: (),
    };
    Ok((job, checked.parameters))
}

fn prepare_with<P: DeserializeOwned>(
    spec: &FunctionSpec,
    parts: RequestParts,
) -> Result<Job<P>, FieldError> {
    let (job, parameters) = checked(spec, parts)?;
    Ok(Job {
        version: job.version,
        input: job.input,
        params: params_from(parameters)?,
    })
}

/// Deserializes checked parameters into a function's own type. The schema has already
/// accepted them, so a failure here means the schema and the type disagree.
fn params_from<P: DeserializeOwned>(parameters: Map<String, Value>) -> Result<P, FieldError> {
    orbit_contract::parse_value(Value::Object(parameters)).map_err(|err| {
        let field = if err.field.is_empty() {
            "parameters".to_string()
        } else {
            format!("parameters.{}", err.field)
        };
        FieldError::new(field, err.message)
    })
}

/// Runs `call_batch`, isolating a panic to the job that caused it: a panicking batch is re-run
/// one job at a time, and only the jobs that panic alone fail.
pub(crate) fn call_isolated<F: Function>(
    function: &F,
    jobs: &[Job<F::Params>],
) -> Vec<Result<Value, JobFailure>> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if let Ok(outputs) = catch_unwind(AssertUnwindSafe(|| function.call_batch(jobs))) {
        if outputs.len() == jobs.len() {
            return outputs;
        }
        tracing::error!(
            expected = jobs.len(),
            got = outputs.len(),
            "call_batch returned the wrong number of outputs; running jobs singly"
        );
    }
    jobs.iter()
        .map(|job| {
            catch_unwind(AssertUnwindSafe(|| function.call(job))).unwrap_or_else(|_| {
                Err(JobFailure {
                    code: "function_panicked".into(),
                    message: "the function panicked on this input".into(),
                    field: None,
                })
            })
        })
        .collect()
}
