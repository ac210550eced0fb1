//! The host: watches the model repository and serves each model as its own function.
//!
//! Every `ORBIT_MODEL_POLL_MS` the repository is scanned. A new model folder is loaded and
//! served (its own JetStream consumer and micro service `orbit.fn.<name>`, on the host's one
//! NATS connection); a model whose files changed is reloaded in place and its declaration
//! published again; a folder that disappeared stops being served and leaves the catalog. A
//! change is acted on once it has stayed the same for one poll, so a file still being copied
//! is not loaded half-written (writing to a temporary name and renaming it is better still).
//! A version that fails to load is reported (log, metrics, `ready: false` with the reason in
//! its declaration) and never stops the others.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orbit_runtime::config::{env_or, ConfigError};
use orbit_runtime::{catalog, Bus, Function, RuntimeConfig, Shutdown};

use crate::config::Provider;
use crate::model::OnnxModel;
use crate::repository::{self, ModelFolder};
use crate::session::RuntimeSettings;

/// Where the repository is and how to watch it.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// `ORBIT_MODEL_REPOSITORY`, default `models`.
    pub root: PathBuf,
    /// `ORBIT_MODELS`: a comma-separated subset of the models to serve; default all.
    pub only: Option<Vec<String>>,
    /// `ORBIT_MODEL_POLL_MS`, default 1000.
    pub poll: Duration,
    /// `ORT_DYLIB_PATH`.
    pub dylib: Option<PathBuf>,
}

impl HostSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let only: String = env_or("ORBIT_MODELS", String::new())?;
        let only: Vec<String> = only
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        // Checked now so a typo is an error at start, not a host that serves nothing.
        device_setting()?;
        Ok(Self {
            root: env_or("ORBIT_MODEL_REPOSITORY", PathBuf::from("models"))?,
            only: (!only.is_empty()).then_some(only),
            poll: Duration::from_millis(env_or("ORBIT_MODEL_POLL_MS", 1000u64)?.max(50)),
            dylib: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        })
    }

    fn runtime(&self) -> RuntimeSettings {
        RuntimeSettings {
            dylib: self.dylib.clone(),
            provider: Provider::Cpu,
            threads: 1,
        }
    }
}

fn device_setting() -> Result<Option<Provider>, ConfigError> {
    match env_or("ORBIT_ONNX_DEVICE", String::new())?.as_str() {
        "" => Ok(None),
        "cpu" => Ok(Some(Provider::Cpu)),
        "cuda" | "gpu" => Ok(Some(Provider::Cuda)),
        other => Err(ConfigError {
            name: "ORBIT_ONNX_DEVICE".into(),
            message: format!("{other:?}: must be cpu or cuda"),
        }),
    }
}

/// `ORBIT_ONNX_DEVICE` (`cpu` or `cuda`): overrides every model's preferred provider.
pub fn device_override() -> Option<Provider> {
    device_setting().ok().flatten()
}

/// `ORBIT_ONNX_THREADS`: overrides every model's intra-op thread count.
pub fn threads_override() -> Option<usize> {
    env_or("ORBIT_ONNX_THREADS", 0usize).ok().filter(|&n| n > 0)
}

/// Errors that stop the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("model repository {path}: {source}")]
    Repository {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] orbit_runtime::ServeError),
}

/// Loads every model of the repository (for `describe` and `register`, which do not serve).
pub fn load_all(settings: &HostSettings) -> Result<Vec<OnnxModel>, HostError> {
    let folders = scan(settings)?;
    Ok(folders
        .iter()
        .map(|folder| OnnxModel::load(folder, settings.runtime()))
        .collect())
}

fn scan(settings: &HostSettings) -> Result<Vec<ModelFolder>, HostError> {
    repository::scan(&settings.root, settings.only.as_deref()).map_err(|source| {
        HostError::Repository {
            path: settings.root.display().to_string(),
            source,
        }
    })
}

/// One model being served.
struct Served {
    model: Arc<OnnxModel>,
    folder: ModelFolder,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
    batching: Option<orbit_runtime::BatchPolicy>,
}

fn start(
    bus: &Bus,
    model: Arc<OnnxModel>,
    config: &RuntimeConfig,
    shutdown: &Shutdown,
) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let stop = shutdown.child();
    let (bus, config, task_stop) = (bus.clone(), config.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let name = model.name().to_string();
        if let Err(err) = orbit_runtime::serve_on(&bus, model, config, task_stop).await {
            tracing::error!(model = %name, error = %err, "model stopped serving");
        }
    });
    (stop, task)
}

/// Serves the repository until `shutdown`.
pub async fn run(
    settings: HostSettings,
    bus: Bus,
    config: RuntimeConfig,
    shutdown: Shutdown,
) -> Result<(), HostError> {
    tracing::info!(repository = %settings.root.display(), poll_ms = settings.poll.as_millis() as u64,
        "serving the model repository");
    let mut served: BTreeMap<String, Served> = BTreeMap::new();
    let mut previous: Option<Vec<ModelFolder>> = None;
    loop {
        let scanned = {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || scan(&settings)).await
        };
        match scanned {
            Ok(Ok(folders)) => {
                apply(
                    &settings,
                    &bus,
                    &config,
                    &shutdown,
                    &mut served,
                    &folders,
                    previous.as_deref(),
                )
                .await;
                previous = Some(folders);
            }
            Ok(Err(err)) => tracing::error!(error = %err, "cannot read the model repository"),
            Err(err) => tracing::error!(error = %err, "repository scan failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.poll) => {}
            _ = shutdown.wait() => break,
        }
    }
    for (_, entry) in served {
        entry.stop.trigger();
        let _ = entry.task.await;
    }
    tracing::info!("model host stopped");
    Ok(())
}

/// Brings what is served in line with `folders`.
async fn apply(
    settings: &HostSettings,
    bus: &Bus,
    config: &RuntimeConfig,
    shutdown: &Shutdown,
    served: &mut BTreeMap<String, Served>,
    folders: &[ModelFolder],
    previous: Option<&[ModelFolder]>,
) {
    for folder in folders {
        // On the first scan everything is taken as it is; later, a change waits one poll.
        let settled = previous.is_none_or(|previous| previous.contains(folder));
        if !settled {
            continue;
        }
        match served.get_mut(&folder.name) {
            None => {
                let (runtime, found) = (settings.runtime(), folder.clone());
                let Ok(model) =
                    tokio::task::spawn_blocking(move || OnnxModel::load(&found, runtime)).await
                else {
                    continue;
                };
                let model = Arc::new(model);
                let batching = model.batching();
                let (stop, task) = start(bus, model.clone(), config, shutdown);
                tracing::info!(model = %folder.name, ready = model.is_ready(), "model served");
                served.insert(
                    folder.name.clone(),
                    Served {
                        model,
                        folder: folder.clone(),
                        stop,
                        task,
                        batching,
                    },
                );
            }
            Some(entry) if entry.folder != *folder || entry.task.is_finished() => {
                let (model, found) = (entry.model.clone(), folder.clone());
                let changed = tokio::task::spawn_blocking(move || model.reload(&found))
                    .await
                    .unwrap_or(false);
                entry.folder = folder.clone();
                let batching = entry.model.batching();
                if batching != entry.batching || entry.task.is_finished() {
                    // Batching is set when a function starts serving: serve it anew, the new
                    // loop up before the old one stops.
                    let (stop, task) = start(bus, entry.model.clone(), config, shutdown);
                    let old = std::mem::replace(&mut entry.stop, stop);
                    old.trigger();
                    entry.task = task;
                    entry.batching = batching;
                }
                if changed {
                    tracing::info!(model = %folder.name, ready = entry.model.is_ready(), "model reloaded");
                }
            }
            Some(_) => {}
        }
    }
    let gone: Vec<String> = served
        .keys()
        .filter(|name| !folders.iter().any(|f| &f.name == *name))
        .cloned()
        .collect();
    for name in gone {
        if let Some(entry) = served.remove(&name) {
            entry.stop.trigger();
            let _ = entry.task.await;
            if let Err(err) = catalog::unregister(&bus.jetstream, &name).await {
                tracing::warn!(model = %name, error = %err, "model not removed from the catalog");
            }
            tracing::info!(model = %name, "model removed from the repository; no longer served");
        }
    }
}
