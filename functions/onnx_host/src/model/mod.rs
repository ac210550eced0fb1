//! One model of the repository as an Orbit function: its versions, its declaration, and how
//! jobs run on it.
//!
//! The loaded versions live behind one `Arc` that a reload replaces whole, so a batch already
//! running keeps the versions it started with. A version that leaves (removed, or replaced by a
//! newer one under the `latest` policy) is kept a while longer for jobs that were checked
//! against it but had not run yet, so in-flight requests finish on the version they asked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use orbit_contract::{
    Datatype, FunctionDescriptor, InputKind, JobFailure, Limits, TensorSpec, VersionDescriptor,
};
use orbit_runtime::{BatchPolicy, Function, Job};
use serde_json::{json, Map, Value};

use crate::config::{InputConfig, ModelConfig, OutputConfig, VersionPolicy};
use crate::repository::{Fingerprint, ModelFolder, VersionFolder};
use crate::session::{OnnxSession, RuntimeSettings};

mod run;

pub use run::outputs_json;
use run::{run_series, run_tensors};

/// How long a version that left stays loaded for jobs already checked against it.
const RETIRE_AFTER: Duration = Duration::from_secs(60);

/// A loaded version.
pub struct Loaded {
    pub version: u64,
    pub session: OnnxSession,
    fingerprint: (Fingerprint, Option<Fingerprint>),
}

/// A version the policy selected: loaded, or not, and why.
enum Slot {
    Ready(Arc<Loaded>),
    Failed {
        reason: String,
        fingerprint: Option<(Fingerprint, Option<Fingerprint>)>,
    },
}

/// Everything one reload produced.
struct State {
    config: ModelConfig,
    config_fingerprint: Option<Fingerprint>,
    /// A config that could not be read: the model is listed, but nothing runs.
    config_error: Option<String>,
    slots: BTreeMap<u64, Slot>,
}

impl State {
    fn ready(&self, version: u64) -> Option<Arc<Loaded>> {
        match self.slots.get(&version) {
            Some(Slot::Ready(loaded)) => Some(loaded.clone()),
            _ => None,
        }
    }

    /// The version that runs when a request names none: the highest that loaded, or (when
    /// none did) the highest listed, which then reports why it cannot run.
    fn default_version(&self) -> Option<u64> {
        self.slots
            .iter()
            .rev()
            .find(|(_, slot)| matches!(slot, Slot::Ready(_)))
            .or_else(|| self.slots.iter().next_back())
            .map(|(&version, _)| version)
    }
}

/// One model of the repository, served as a function.
pub struct OnnxModel {
    name: String,
    settings: RuntimeSettings,
    state: RwLock<Arc<State>>,
    retired: Mutex<Vec<(Instant, Arc<Loaded>)>>,
    updates: tokio::sync::watch::Sender<u64>,
}

/// The most horizon steps a forecast output declares, read from its shape `[rows, H]`.
fn horizon_of(spec: &TensorSpec) -> Option<usize> {
    match spec.shape.as_slice() {
        [_, h] if *h > 0 => Some(*h as usize),
        _ => None,
    }
}

impl OnnxModel {
    /// Loads `folder` (every version its policy selects); failures are recorded, not raised.
    pub fn load(folder: &ModelFolder, settings: RuntimeSettings) -> Self {
        let (updates, _) = tokio::sync::watch::channel(0);
        let model = Self {
            name: folder.name.clone(),
            settings,
            state: RwLock::new(Arc::new(State {
                config: ModelConfig::default(),
                config_fingerprint: None,
                config_error: None,
                slots: BTreeMap::new(),
            })),
            retired: Mutex::new(Vec::new()),
            updates,
        };
        model.reload(folder);
        model
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> Arc<State> {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Brings the loaded versions in line with `folder`; returns whether anything changed
    /// (the declaration is then published again). Loading is blocking work.
    pub fn reload(&self, folder: &ModelFolder) -> bool {
        let old = self.state();
        let config_changed = old.config_fingerprint != folder.config
            || (old.slots.is_empty() && old.config_error.is_none());
        let (config, config_error) = if config_changed {
            match ModelConfig::load(&folder.config_path()) {
                Ok(config) => (config, None),
                Err(err) if old.config_error.is_none() && !old.slots.is_empty() => {
                    // A broken edit of a working model: keep serving what runs, say so loudly.
                    tracing::error!(model = %self.name, error = %err,
                        "config.toml refused; the model keeps its previous configuration");
                    return false;
                }
                Err(err) => (ModelConfig::default(), Some(err.to_string())),
            }
        } else {
            (old.config.clone(), old.config_error.clone())
        };
        let settings = RuntimeSettings {
            provider: self.settings_provider(&config),
            threads: self.settings_threads(&config),
            dylib: self.settings.dylib.clone(),
        };
        let mut slots = BTreeMap::new();
        if let Some(reason) = &config_error {
            for &version in folder.versions.keys() {
                slots.insert(
                    version,
                    Slot::Failed {
                        reason: reason.clone(),
                        fingerprint: None,
                    },
                );
            }
        } else {
            let reuse = |version: u64, found: &VersionFolder| -> Option<Slot> {
                if config_changed {
                    return None;
                }
                match old.slots.get(&version)? {
                    Slot::Ready(loaded) if loaded.fingerprint == found.fingerprint => {
                        Some(Slot::Ready(loaded.clone()))
                    }
                    Slot::Failed {
                        reason,
                        fingerprint: Some(f),
                    } if *f == found.fingerprint => Some(Slot::Failed {
                        reason: reason.clone(),
                        fingerprint: Some(*f),
                    }),
                    _ => None,
                }
            };
            let load = |version: u64, found: &VersionFolder| -> Slot {
                if let Some(slot) = reuse(version, found) {
                    return slot;
                }
                self.load_version(version, found, &config, &settings)
            };
            match &config.versions {
                VersionPolicy::Latest { count } => {
                    let mut ready = 0;
                    for (&version, found) in folder.versions.iter().rev() {
                        if ready == *count {
                            break;
                        }
                        let slot = load(version, found);
                        ready += usize::from(matches!(slot, Slot::Ready(_)));
                        slots.insert(version, slot);
                    }
                }
                VersionPolicy::All => {
                    for (&version, found) in &folder.versions {
                        slots.insert(version, load(version, found));
                    }
                }
                VersionPolicy::Specific { versions } => {
                    for &version in versions {
                        let slot = match folder.versions.get(&version) {
                            Some(found) => load(version, found),
                            None => Slot::Failed {
                                reason: format!("config.toml asks for version {version}, which has no folder with a {}", crate::repository::MODEL_FILE),
                                fingerprint: None,
                            },
                        };
                        slots.insert(version, slot);
                    }
                }
            }
        }
        let state = State {
            config,
            config_fingerprint: folder.config,
            config_error,
            slots,
        };
        let changed = !same_versions(&old, &state) || config_changed;
        if changed {
            self.retire(&old, &state);
            if let Ok(mut current) = self.state.write() {
                *current = Arc::new(state);
            }
            self.updates.send_modify(|n| *n += 1);
        }
        changed
    }

    fn settings_provider(&self, config: &ModelConfig) -> crate::config::Provider {
        self.settings_override_provider()
            .unwrap_or(config.execution.provider)
    }

    fn settings_override_provider(&self) -> Option<crate::config::Provider> {
        crate::host::device_override()
    }

    fn settings_threads(&self, config: &ModelConfig) -> usize {
        crate::host::threads_override().unwrap_or(config.execution.threads)
    }

    fn load_version(
        &self,
        version: u64,
        found: &VersionFolder,
        config: &ModelConfig,
        settings: &RuntimeSettings,
    ) -> Slot {
        let loaded = OnnxSession::load(&found.model, settings)
            .map_err(|err| err.to_string())
            .and_then(|session| {
                let session = apply_declared_tensors(session, config)?;
                check_contract(&session, config)?;
                Ok(session)
            });
        match loaded {
            Ok(session) => {
                tracing::info!(model = %self.name, version, provider = session.provider.as_str(),
                    sha256 = %session.sha256, "model version loaded");
                metrics::counter!("orbit_model_loads_total", "model" => self.name.clone(), "outcome" => "loaded")
                    .increment(1);
                Slot::Ready(Arc::new(Loaded {
                    version,
                    session,
                    fingerprint: found.fingerprint,
                }))
            }
            Err(reason) => {
                tracing::error!(model = %self.name, version, reason = %reason,
                    "model version failed to load; it is not served");
                metrics::counter!("orbit_model_loads_total", "model" => self.name.clone(), "outcome" => "failed")
                    .increment(1);
                Slot::Failed {
                    reason,
                    fingerprint: Some(found.fingerprint),
                }
            }
        }
    }

    /// Keeps versions that left for a while, for jobs already checked against them.
    fn retire(&self, old: &State, new: &State) {
        let Ok(mut retired) = self.retired.lock() else {
            return;
        };
        let now = Instant::now();
        retired.retain(|(at, _)| now.duration_since(*at) < RETIRE_AFTER);
        for (version, slot) in &old.slots {
            if let Slot::Ready(loaded) = slot {
                let still = new.ready(*version).is_some_and(|l| Arc::ptr_eq(&l, loaded));
                if !still {
                    retired.push((now, loaded.clone()));
                }
            }
        }
    }

    fn find(&self, state: &State, version: &str) -> Option<Arc<Loaded>> {
        let number: u64 = version.parse().ok()?;
        state.ready(number).or_else(|| {
            let retired = self.retired.lock().ok()?;
            retired
                .iter()
                .rev()
                .find(|(_, loaded)| loaded.version == number)
                .map(|(_, loaded)| loaded.clone())
        })
    }

    /// Where the default version runs.
    pub fn provider(&self) -> crate::config::Provider {
        let state = self.state();
        state
            .default_version()
            .and_then(|v| state.ready(v))
            .map_or(crate::config::Provider::Cpu, |loaded| {
                loaded.session.provider
            })
    }

    /// Whether some version can run.
    pub fn is_ready(&self) -> bool {
        self.state()
            .slots
            .values()
            .any(|slot| matches!(slot, Slot::Ready(_)))
    }
}

/// Narrows the graph's tensors to what `config.toml` declares (names must exist in the graph).
fn apply_declared_tensors(
    mut session: OnnxSession,
    config: &ModelConfig,
) -> Result<OnnxSession, String> {
    for (declared, graph, what) in [
        (&config.inputs, &mut session.inputs, "input"),
        (&config.outputs, &mut session.outputs, "output"),
    ] {
        for tensor in declared {
            let Some(spec) = graph.iter_mut().find(|s| s.name == tensor.name) else {
                return Err(format!(
                    "config.toml declares {what} {} but the graph has none by that name",
                    tensor.name
                ));
            };
            if spec.datatype != tensor.datatype || spec.shape.len() != tensor.shape.len() {
                return Err(format!(
                    "config.toml declares {what} {} as {} {:?}; the graph has {} {:?}",
                    tensor.name, tensor.datatype, tensor.shape, spec.datatype, spec.shape
                ));
            }
            *spec = TensorSpec::from(tensor);
        }
    }
    Ok(session)
}

/// Checks that the graph fits the config's input and output kinds.
fn check_contract(session: &OnnxSession, config: &ModelConfig) -> Result<(), String> {
    if let InputConfig::Series { tensor, .. } = &config.input {
        let input = series_input(session, tensor.as_deref())?;
        if input.shape.len() != 2 || !matches!(input.datatype, Datatype::Fp32 | Datatype::Fp64) {
            return Err(format!(
                "a series model's input {} must be FP32 or FP64 of shape [rows, length], not {} {:?}",
                input.name, input.datatype, input.shape
            ));
        }
    }
    if let OutputConfig::Forecast {
        tensor,
        default_horizon,
    } = &config.output
    {
        let output = forecast_output(session, tensor.as_deref())?;
        let horizon = horizon_of(output).ok_or_else(|| {
            format!(
                "forecast output {} must have shape [rows, H] with a fixed H, not {:?}",
                output.name, output.shape
            )
        })?;
        if default_horizon.is_some_and(|h| h > horizon) {
            return Err(format!(
                "default_horizon is more than the model's {horizon} steps"
            ));
        }
    }
    Ok(())
}

fn series_input<'a>(
    session: &'a OnnxSession,
    name: Option<&str>,
) -> Result<&'a TensorSpec, String> {
    match name {
        Some(name) => session
            .inputs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("the graph has no input {name}")),
        None if session.inputs.len() == 1 => Ok(&session.inputs[0]),
        None => Err("the graph has several inputs; name the series one in [input] tensor".into()),
    }
}

fn forecast_output<'a>(
    session: &'a OnnxSession,
    name: Option<&str>,
) -> Result<&'a TensorSpec, String> {
    match name {
        Some(name) => session
            .outputs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("the graph has no output {name}")),
        None if session.outputs.len() == 1 => Ok(&session.outputs[0]),
        None => {
            Err("the graph has several outputs; name the forecast one in [output] tensor".into())
        }
    }
}

fn same_versions(a: &State, b: &State) -> bool {
    a.slots.len() == b.slots.len()
        && a.slots.iter().zip(&b.slots).all(|((va, sa), (vb, sb))| {
            va == vb
                && match (sa, sb) {
                    (Slot::Ready(x), Slot::Ready(y)) => Arc::ptr_eq(x, y),
                    (Slot::Failed { reason: x, .. }, Slot::Failed { reason: y, .. }) => x == y,
                    _ => false,
                }
        })
}

impl Function for OnnxModel {
    type Params = Map<String, Value>;

    fn descriptor(&self) -> FunctionDescriptor {
        let state = self.state();
        let config = &state.config;
        let series = matches!(config.input, InputConfig::Series { .. });
        let versions: Vec<VersionDescriptor> = state
            .slots
            .iter()
            .rev()
            .map(|(version, slot)| match slot {
                Slot::Ready(loaded) => {
                    let (inputs, outputs) = request_tensors(config, &loaded.session);
                    VersionDescriptor {
                        version: version.to_string(),
                        ready: true,
                        reason: None,
                        inputs,
                        outputs,
                    }
                }
                Slot::Failed { reason, .. } => VersionDescriptor {
                    version: version.to_string(),
                    ready: false,
                    reason: Some(reason.clone()),
                    inputs: declared(&config.inputs, series, true),
                    outputs: declared(&config.outputs, series, false),
                },
            })
            .collect();
        let default = state.default_version();
        let current = versions
            .iter()
            .find(|v| Some(v.version.as_str()) == default.map(|d| d.to_string()).as_deref());
        let (inputs, outputs) = current.map_or_else(
            || {
                (
                    declared(&config.inputs, series, true),
                    declared(&config.outputs, series, false),
                )
            },
            |v| (v.inputs.clone(), v.outputs.clone()),
        );
        let horizon = match &config.output {
            OutputConfig::Forecast {
                tensor,
                default_horizon,
            } => default
                .and_then(|d| state.ready(d))
                .and_then(|loaded| {
                    forecast_output(&loaded.session, tensor.as_deref())
                        .ok()
                        .and_then(horizon_of)
                })
                .map(|max| (max, default_horizon.unwrap_or(max).min(max))),
            OutputConfig::Tensors => None,
        };
        let parameters = match horizon {
            Some((max, default)) => json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "horizon": {
                        "type": "integer", "minimum": 1, "maximum": max, "default": default,
                        "description": format!("steps to forecast, 1 to {max}")
                    }
                }
            }),
            None => json!({"type": "object", "additionalProperties": false}),
        };
        let limits = match &config.input {
            InputConfig::Series { min_length, .. } => Limits {
                min_series_length: *min_length,
                ..Limits::default()
            },
            InputConfig::Tensors => Limits {
                max_input_bytes: config.max_input_bytes,
                ..Limits::default()
            },
        };
        FunctionDescriptor {
            name: self.name.clone(),
            version: default.map_or_else(|| "0".to_string(), |d| d.to_string()),
            versions: if versions.is_empty() {
                vec![VersionDescriptor {
                    version: "0".into(),
                    ready: false,
                    reason: Some(
                        state
                            .config_error
                            .clone()
                            .unwrap_or_else(|| "no version folder holds a model.onnx".into()),
                    ),
                    inputs: inputs.clone(),
                    outputs: outputs.clone(),
                }]
            } else {
                versions
            },
            description: if config.description.is_empty() {
                format!("ONNX model {}", self.name)
            } else {
                config.description.clone()
            },
            platform: "onnxruntime_onnx".into(),
            input: if series {
                InputKind::Series
            } else {
                InputKind::Tensors
            },
            parameters,
            inputs,
            outputs,
            limits,
            example: config
                .example
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
        }
    }

    fn descriptor_updates(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.updates.subscribe())
    }

    fn call(&self, job: &Job<Self::Params>) -> Result<Value, JobFailure> {
        self.call_batch(std::slice::from_ref(job))
            .pop()
            .unwrap_or_else(|| Err(JobFailure::no_output()))
    }

    fn call_batch(&self, jobs: &[Job<Self::Params>]) -> Vec<Result<Value, JobFailure>> {
        let state = self.state();
        let mut outputs: Vec<Result<Value, JobFailure>> =
            vec![Err(JobFailure::no_output()); jobs.len()];
        let mut by_version: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, job) in jobs.iter().enumerate() {
            by_version
                .entry(job.version.as_str())
                .or_default()
                .push(index);
        }
        for (version, members) in by_version {
            let Some(loaded) = self.find(&state, version) else {
                for index in members {
                    outputs[index] = Err(JobFailure::function_error(format!(
                        "version {version} of {} is not loaded any more",
                        self.name
                    )));
                }
                continue;
            };
            let results = match &state.config.input {
                InputConfig::Series {
                    tensor,
                    processing,
                    max_context,
                    ..
                } => run_series(
                    &loaded.session,
                    &state.config,
                    tensor.as_deref(),
                    *processing,
                    *max_context,
                    members.iter().map(|&i| &jobs[i]).collect(),
                ),
                InputConfig::Tensors => run_tensors(
                    &loaded.session,
                    state.config.batching.chunk_rows,
                    members.iter().map(|&i| &jobs[i]).collect(),
                ),
            };
            for (index, result) in members.into_iter().zip(results) {
                outputs[index] = result;
            }
        }
        outputs
    }

    fn batching(&self) -> Option<BatchPolicy> {
        let batching = self.state().config.batching;
        (batching.max_batch > 0).then(|| BatchPolicy {
            max_batch: batching.max_batch,
            max_delay: Duration::from_micros(batching.max_delay_us),
        })
    }
}

/// The tensors a request carries and an answer holds, as clients see them: a series model
/// takes `data` (FP64, any length) and a forecast answers `forecast`; a tensor model's are
/// the graph's own.
fn request_tensors(
    config: &ModelConfig,
    session: &OnnxSession,
) -> (Vec<TensorSpec>, Vec<TensorSpec>) {
    match &config.input {
        InputConfig::Series { .. } => (
            vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
            match &config.output {
                OutputConfig::Forecast { .. } => {
                    vec![TensorSpec::new("forecast", Datatype::Fp64, vec![-1])]
                }
                OutputConfig::Tensors => session.outputs.clone(),
            },
        ),
        InputConfig::Tensors => (session.inputs.clone(), session.outputs.clone()),
    }
}

/// What can be said of a version's tensors without a loaded graph.
fn declared(tensors: &[crate::config::TensorConfig], series: bool, input: bool) -> Vec<TensorSpec> {
    if series && input {
        return vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])];
    }
    tensors.iter().map(TensorSpec::from).collect()
}
