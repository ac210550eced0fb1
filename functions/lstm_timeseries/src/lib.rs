//! The `lstm_timeseries` function: a small LSTM forecaster (ONNX, trained by
//! `model/train.py`, described in `model/README.md`) served with dynamic batching.
//!
//! Each series is normalised on its own (`(x - mean) / std` over the points the model reads),
//! so its scale does not matter, and forecasts are mapped back. Series in one batch are grouped
//! by length and each group is one ONNX call: there is no padding, so no padded value can
//! change a forecast.

pub mod onnx;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use orbit_contract::lstm::MAX_CONTEXT;
use orbit_contract::{JobFailure, Model, ModelParams, ValidJob};
use orbit_runtime::{env_or, BatchPolicy, Function};
use serde_json::{json, Value};

pub use onnx::{Device, ModelError, ModelSettings, OnnxModel, HORIZON};

/// Mean and spread of one window, and the window in model units.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    pub mean: f64,
    pub std: f64,
    pub values: Vec<f32>,
}

/// The model's per-series normalisation: population standard deviation, floored at
/// `1e-6 * max(1, |mean|)` so a constant series maps to zeros instead of dividing by zero.
pub fn normalise(window: &[f64]) -> Normalised {
    let n = window.len() as f64;
    let mean = window.iter().sum::<f64>() / n;
    let variance = window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let std = variance.sqrt().max(1e-6 * mean.abs().max(1.0));
    let values = window.iter().map(|x| ((x - mean) / std) as f32).collect();
    Normalised { mean, std, values }
}

/// The points the model reads: the most recent [`MAX_CONTEXT`] at most.
pub fn context(series: &[f64]) -> &[f64] {
    &series[series.len().saturating_sub(MAX_CONTEXT)..]
}

/// Most rows per model call, from `ORBIT_LSTM_CHUNK_ROWS` (default 64).
pub fn chunk_rows_from_env() -> Result<usize, orbit_runtime::config::ConfigError> {
    env_or("ORBIT_LSTM_CHUNK_ROWS", 64usize)
}

/// Settings of the dynamic batcher, from `ORBIT_LSTM_MAX_BATCH` (default 512) and
/// `ORBIT_LSTM_MAX_DELAY_US` (default 500).
pub fn batch_policy_from_env() -> Result<BatchPolicy, orbit_runtime::config::ConfigError> {
    Ok(BatchPolicy {
        max_batch: env_or("ORBIT_LSTM_MAX_BATCH", 512usize)?.max(1),
        max_delay: Duration::from_micros(env_or("ORBIT_LSTM_MAX_DELAY_US", 500u64)?),
    })
}

/// The function served by the `lstm-timeseries` binary.
pub struct LstmForecaster {
    model: Mutex<OnnxModel>,
    policy: BatchPolicy,
    chunk_rows: usize,
}

impl LstmForecaster {
    /// `chunk_rows`: most rows per model call (`ORBIT_LSTM_CHUNK_ROWS`, default 64).
    pub fn new(model: OnnxModel, policy: BatchPolicy, chunk_rows: usize) -> Self {
        Self {
            model: Mutex::new(model),
            policy,
            chunk_rows: chunk_rows.max(1),
        }
    }

    /// Runs one group of same-length windows, in model calls of at most `chunk_rows` rows:
    /// past a few dozen rows per call, throughput falls as the LSTM's state outgrows the cache
    /// (measured with `lstm-bench`, see bench/README.md).
    fn forecast_group(
        &self,
        length: usize,
        windows: &[Normalised],
    ) -> Result<Vec<Vec<f32>>, JobFailure> {
        let mut model = self.model.lock().map_err(|_| {
            JobFailure::function_error("the model is unavailable after an earlier failure")
        })?;
        let mut forecasts = Vec::with_capacity(windows.len());
        for chunk in windows.chunks(self.chunk_rows) {
            let rows: Vec<f32> = chunk
                .iter()
                .flat_map(|w| w.values.iter().copied())
                .collect();
            let values = model
                .forecast(length, rows)
                .map_err(|err| JobFailure::function_error(err.to_string()))?;
            forecasts.extend(values.chunks(HORIZON).map(<[f32]>::to_vec));
        }
        Ok(forecasts)
    }
}

impl Function for LstmForecaster {
    fn model(&self) -> Model {
        Model::LstmTimeseries
    }

    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn description(&self) -> &'static str {
        "LSTM forecaster (ONNX): the next value and a forecast of up to 24 steps"
    }

    fn call(&self, job: &ValidJob) -> Result<Value, JobFailure> {
        self.call_batch(std::slice::from_ref(job))
            .pop()
            .unwrap_or_else(|| Err(JobFailure::function_error("no output")))
    }

    fn call_batch(&self, jobs: &[ValidJob]) -> Vec<Result<Value, JobFailure>> {
        let mut outputs: Vec<Result<Value, JobFailure>> =
            vec![Err(JobFailure::function_error("not run")); jobs.len()];
        // Group by context length: one model call per distinct length, no padding.
        let mut groups: BTreeMap<usize, Vec<(usize, usize, Normalised)>> = BTreeMap::new();
        for (index, job) in jobs.iter().enumerate() {
            let ModelParams::LstmTimeseries(params) = &job.params else {
                outputs[index] = Err(JobFailure::wrong_function(
                    job.model.name(),
                    "lstm_timeseries",
                ));
                continue;
            };
            let window = context(job.series.values());
            groups.entry(window.len()).or_default().push((
                index,
                params.horizon,
                normalise(window),
            ));
        }
        for (length, members) in groups {
            let windows: Vec<Normalised> = members.iter().map(|(_, _, w)| w.clone()).collect();
            match self.forecast_group(length, &windows) {
                Ok(forecasts) => {
                    for ((index, horizon, window), forecast) in members.into_iter().zip(forecasts) {
                        let values: Vec<f64> = forecast[..horizon]
                            .iter()
                            .map(|&v| f64::from(v) * window.std + window.mean)
                            .collect();
                        if !values.iter().all(|v| v.is_finite()) {
                            outputs[index] = Err(JobFailure::overflow());
                            continue;
                        }
                        outputs[index] = Ok(json!({
                            "next": values[0],
                            "forecast": values,
                            "horizon": horizon,
                            "context_length": length,
                        }));
                    }
                }
                Err(failure) => {
                    for (index, _, _) in members {
                        outputs[index] = Err(failure.clone());
                    }
                }
            }
        }
        outputs
    }

    fn batching(&self) -> Option<BatchPolicy> {
        Some(self.policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_scale_free_and_handles_constants() {
        let a = normalise(&[1.0, 2.0, 3.0, 4.0]);
        let b = normalise(&[1000.0, 2000.0, 3000.0, 4000.0]);
        assert_eq!(a.values, b.values);
        let flat = normalise(&[5.0; 20]);
        assert!(flat.values.iter().all(|v| *v == 0.0));
        assert!(flat.std > 0.0);
    }

    #[test]
    fn context_keeps_the_most_recent_points() {
        let series: Vec<f64> = (0..300).map(f64::from).collect();
        let window = context(&series);
        assert_eq!(window.len(), MAX_CONTEXT);
        assert_eq!(window[MAX_CONTEXT - 1], 299.0);
        assert_eq!(context(&series[..20]).len(), 20);
    }
}
