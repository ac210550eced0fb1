//! The `forecast` function: Orbit's default forecaster. It combines fitted exponential
//! smoothing (the `holt_winters` crate's forms, with the season given or detected, averaged
//! with their Akaike weights) with the LSTM of the model repository (`models/lstm_net`, run in
//! this process) and a non-seasonal AutoARIMA (the `auto_arima` crate). It also answers as
//! `lstm_timeseries`, the name the seed's clients call (`ORBIT_FUNCTION_NAME`, `stack.toml`).
//!
//! Why a combination, and this one: on real held-out series (`bench/forecast/evaluate.py`),
//! exponential smoothing is the better of them wherever there is a season, and the LSTM,
//! which is never told a season length, is worse than repeating the last season there. On
//! series without a season the LSTM and ARIMA each improve the mean. So a series whose chosen
//! form has a season gets exponential smoothing alone; one without gets the mean of smoothing
//! and the LSTM (for the LSTM's 24 steps), averaged half and half with ARIMA. Prediction
//! intervals are the chosen form's, centred on the combined forecast and widened by how far
//! the members of the combination are apart.

use holt_winters::fit::SeasonStart;
use holt_winters::{ErrorKind, SeasonKind, TrendKind};
use onnx_host::config::Provider;
use onnx_host::repository;
use onnx_host::session::RuntimeSettings;
use onnx_host::{HostSettings, OnnxModel};
use orbit_contract::{FunctionDescriptor, JobFailure};
use orbit_runtime::{Function, Job};
use serde::Deserialize;
use serde_json::{json, Value};

/// The most steps one request may forecast.
pub const MAX_HORIZON: usize = holt_winters::MAX_HORIZON;

/// The LSTM model of the repository that takes part, unless `ORBIT_FORECAST_LSTM` names another.
pub const DEFAULT_LSTM: &str = "lstm_net";

/// The parameters, as the declared schema has checked them.
#[derive(Debug, Clone, Deserialize)]
pub struct Params {
    pub horizon: usize,
    #[serde(default)]
    pub season_length: Option<usize>,
    #[serde(default)]
    pub level: Vec<f64>,
}

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("{0}")]
    Settings(String),
    #[error("model repository {path}: {source}")]
    Repository {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("model {name} is not in the repository {root}")]
    MissingModel { name: String, root: String },
    #[error("model {0} did not load (its log line says why)")]
    NotLoaded(String),
}

/// The function served by the `forecast` binary.
pub struct Forecast {
    lstm: Option<OnnxModel>,
}

impl Forecast {
    /// Exponential smoothing combined with `lstm` where it has no season; `None`: exponential
    /// smoothing alone.
    pub fn new(lstm: Option<OnnxModel>) -> Self {
        Self { lstm }
    }

    /// Loads the LSTM from the model repository (`ORBIT_MODEL_REPOSITORY`, default `models`;
    /// `ORBIT_FORECAST_LSTM` names the model, `none` leaves it out). A model that is named but
    /// does not load stops the start: a forecaster that silently lost half of itself would
    /// answer worse without anyone knowing.
    pub fn from_env() -> Result<Self, ForecastError> {
        let name = std::env::var("ORBIT_FORECAST_LSTM").unwrap_or_else(|_| DEFAULT_LSTM.into());
        if name == "none" {
            tracing::info!("ORBIT_FORECAST_LSTM=none: exponential smoothing alone");
            return Ok(Self::new(None));
        }
        let settings =
            HostSettings::from_env().map_err(|err| ForecastError::Settings(err.to_string()))?;
        let folder = repository::scan(&settings.root, Some(std::slice::from_ref(&name)))
            .map_err(|source| ForecastError::Repository {
                path: settings.root.display().to_string(),
                source,
            })?
            .pop()
            .ok_or_else(|| ForecastError::MissingModel {
                name: name.clone(),
                root: settings.root.display().to_string(),
            })?;
        let model = OnnxModel::load(
            &folder,
            RuntimeSettings {
                dylib: settings.dylib.clone(),
                provider: onnx_host::host::device_override().unwrap_or(Provider::Cpu),
                threads: onnx_host::host::threads_override().unwrap_or(1),
            },
        );
        if !model.is_ready() {
            return Err(ForecastError::NotLoaded(name));
        }
        tracing::info!(model = %name, provider = model.provider().as_str(), "LSTM loaded");
        Ok(Self::new(Some(model)))
    }

    fn lstm_name(&self) -> &str {
        self.lstm.as_ref().map_or("", |model| model.name())
    }

    /// The LSTM's forecast of `series` (at most its own horizon), or `None` where it cannot
    /// take part (no model, a series shorter than it reads).
    fn lstm_forecast(&self, series: &[f64], horizon: usize) -> Option<Vec<f64>> {
        let model = self.lstm.as_ref()?;
        let descriptor = model.descriptor();
        if series.len() < descriptor.limits.min_series_length {
            return None;
        }
        let body = json!({"data": series, "parameters": {"horizon": horizon.min(24)}});
        let job = Job::from_body(model, body.to_string().as_bytes()).ok()?;
        match model.call(&job) {
            Ok(output) => serde_json::from_value(output["forecast"].clone()).ok(),
            Err(failure) => {
                tracing::warn!(error = %failure.message, "the LSTM failed; exponential smoothing alone");
                None
            }
        }
    }
}

/// The mean of `forecast` and `other` at each step `other` reaches; `forecast` beyond.
fn halfway(forecast: &[f64], other: Option<&[f64]>) -> Vec<f64> {
    let other = other.unwrap_or_default();
    forecast
        .iter()
        .enumerate()
        .map(|(h, f)| other.get(h).map_or(*f, |o| (f + o) / 2.0))
        .collect()
}

/// The forecast of the AutoARIMA model without a season (`auto_arima`), or `None` where no
/// model fits.
fn arima_forecast(series: &[f64], horizon: usize) -> Option<Vec<f64>> {
    match auto_arima::forecast(series, 1, horizon) {
        Ok(result) => Some(result.mean),
        Err(err) => {
            tracing::debug!(error = %err, "no ARIMA model; the others alone");
            None
        }
    }
}

/// The exponential smoothing model of `series` with the lowest AICc among its forms (AutoETS's
/// restricted space): trend none, additive or damped; when a season length is given or
/// detected, also an additive or (positive series) multiplicative season; additive errors,
/// and multiplicative ones for positive series. The AICc is `holt_winters`' (from the
/// likelihood of the form's kind of errors, the parameters, starting state and spread
/// counted). The answer also carries the forms' Akaike-weighted forecast and spread. When no
/// form fits, the first failure is the answer (it names the field at fault).
fn select_smoothing(series: &[f64], params: &Params) -> Result<Value, JobFailure> {
    let season_length = match params.season_length {
        Some(m) => Some(m),
        None => holt_winters::season::detect(series),
    }
    .filter(|&m| series.len() >= 2 * m);
    // A season length (given or detected) allows a season; whether the series has one is
    // the fit's to say, as in AutoETS: the forms without a season compete too.
    let seasonal_forms: &[SeasonKind] = match season_length {
        Some(_) if series.iter().all(|&y| y > 0.0) => &[
            SeasonKind::None,
            SeasonKind::Additive,
            SeasonKind::Multiplicative,
        ],
        Some(_) => &[SeasonKind::None, SeasonKind::Additive],
        None => &[SeasonKind::None],
    };
    let positive = series.iter().all(|&y| y > 0.0);
    let errors: &[ErrorKind] = if positive {
        &[ErrorKind::Additive, ErrorKind::Multiplicative]
    } else {
        &[ErrorKind::Additive]
    };
    let mut forms = Vec::new();
    for &error in errors {
        for &seasonal in seasonal_forms {
            // R's and statsforecast's restricted model space: additive errors on a
            // multiplicative season make an unstable model, and leaving them out changed
            // held-out MASE by under 0.01 while saving a sixth of the fitting.
            if error == ErrorKind::Additive && seasonal == SeasonKind::Multiplicative {
                continue;
            }
            for trend in [TrendKind::None, TrendKind::Additive, TrendKind::Damped] {
                forms.push((error, seasonal, trend));
            }
        }
    }
    let fit = |(error, seasonal, trend): (ErrorKind, SeasonKind, TrendKind), season_start| {
        holt_winters::forecast(
            series,
            &holt_winters::Params {
                horizon: params.horizon,
                season_length,
                trend,
                seasonal,
                error,
                alpha: None,
                beta: None,
                gamma: None,
                phi: None,
                level: params.level.clone(),
                season_start,
            },
        )
    };
    // A form with too many states for the series has no AICc; it answers only when nothing
    // else fits.
    let aicc = |output: &Value| output["aicc"].as_f64().unwrap_or(f64::INFINITY);
    // Every form with the decomposed starting season first; then the seasonal forms that
    // could matter (within 10 AICc points of the best: beyond, an Akaike weight is under 1 %)
    // again with the starting season fitted, which is most of a seasonal fit's cost.
    let mut fitted: Vec<_> = forms
        .iter()
        .map(|&form| (form, fit(form, SeasonStart::Decomposed)))
        .collect();
    let least = fitted
        .iter()
        .filter_map(|(_, attempt)| attempt.as_ref().ok().map(aicc))
        .fold(f64::INFINITY, f64::min);
    for (form, attempt) in fitted.iter_mut() {
        let promising = attempt
            .as_ref()
            .is_ok_and(|output| aicc(output) < least + 10.0);
        if form.1 != SeasonKind::None && promising {
            if let Ok(refitted) = fit(*form, SeasonStart::Fitted) {
                if aicc(&refitted) <= attempt.as_ref().map_or(f64::INFINITY, aicc) {
                    *attempt = Ok(refitted);
                }
            }
        }
    }
    let mut best: Option<(f64, Value)> = None;
    let mut candidates: Vec<(f64, Vec<f64>)> = Vec::new();
    let mut first_failure = None;
    for (_, attempt) in fitted {
        let output = match attempt {
            Ok(output) => output,
            Err(failure) => {
                first_failure.get_or_insert(failure);
                continue;
            }
        };
        let aicc = aicc(&output);
        if aicc.is_finite() {
            if let Ok(forecast) = serde_json::from_value::<Vec<f64>>(output["forecast"].clone()) {
                candidates.push((aicc, forecast));
            }
        }
        if best.as_ref().is_none_or(|(b, _)| aicc < *b) {
            best = Some((aicc, output));
        }
    }
    if let Some((_, output)) = best.as_mut() {
        if let Some(weighted) = akaike_weighted(&candidates) {
            output["weighted_forecast"] = json!(weighted.mean);
            output["weighted_spread"] = json!(weighted.spread);
            output["forms"] = json!(candidates.len());
        }
    }
    match (best, first_failure) {
        (Some((_, output)), _) => Ok(output),
        (None, Some(failure)) => Err(failure),
        (None, None) => Err(JobFailure::function_error(
            "no exponential smoothing model fits this series",
        )),
    }
}

/// The mean of the forms' forecasts weighted by their Akaike weights, `exp(-delta/2)` with
/// `delta` a form's AICc above the best's (Kolassa, "Combining exponential smoothing forecasts
/// using Akaike weights", IJF 2011). Forms that fit almost as well keep a say, so a near-tie in
/// AICc does not swing the whole forecast to one form; on the held-out series this lowered
/// mean MASE at every context length (README).
fn akaike_weighted(candidates: &[(f64, Vec<f64>)]) -> Option<Weighted> {
    let least = candidates
        .iter()
        .map(|(aicc, _)| *aicc)
        .fold(f64::INFINITY, f64::min);
    if !least.is_finite() {
        return None;
    }
    let weights: Vec<f64> = candidates
        .iter()
        .map(|(aicc, _)| (-(aicc - least) / 2.0).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let steps = candidates.iter().map(|(_, f)| f.len()).min()?;
    let average = |value: &dyn Fn(&[f64]) -> f64| -> f64 {
        candidates
            .iter()
            .zip(&weights)
            .map(|((_, forecast), weight)| value(forecast) * weight)
            .sum::<f64>()
            / total
    };
    let mean: Vec<f64> = (0..steps).map(|h| average(&|f| f[h])).collect();
    let spread = (0..steps)
        .map(|h| average(&|f| (f[h] - mean[h]).powi(2)).sqrt())
        .collect();
    Some(Weighted { mean, spread })
}

/// The forms' Akaike-weighted forecast, and how far apart they are around it (the weighted
/// standard deviation, per step).
#[derive(Debug, PartialEq)]
struct Weighted {
    mean: Vec<f64>,
    spread: Vec<f64>,
}

impl Function for Forecast {
    type Params = Params;

    fn descriptor(&self) -> FunctionDescriptor {
        holt_winters::forecaster_descriptor(
            "forecast",
            "Orbit's default forecaster: exponential smoothing, the LSTM and AutoARIMA combined, with prediction intervals",
            holt_winters::forecast_parameter_schemas(),
            json!({"season_length": 12, "horizon": 12, "level": [80, 95]}),
        )
    }

    fn call(&self, job: &Job<Params>) -> Result<Value, JobFailure> {
        let series = job.series()?.values();
        let params = &job.params;
        let smoothing = select_smoothing(series, params)?;
        let numbers = |value: &Value| -> Vec<f64> {
            serde_json::from_value(value.clone()).unwrap_or_default()
        };
        // The chosen form's own forecast (its intervals are centred on it) and the forms'
        // Akaike-weighted one, which takes part.
        let own = numbers(&smoothing["forecast"]);
        let base = match numbers(&smoothing["weighted_forecast"]) {
            weighted if weighted.len() == own.len() => weighted,
            _ => own.clone(),
        };
        let season_length = smoothing["season_length"].as_u64();
        let (lstm, arima) = match season_length {
            None => (
                self.lstm_forecast(series, params.horizon),
                arima_forecast(series, params.horizon),
            ),
            Some(_) => (None, None),
        };
        // Smoothing and the LSTM first (their mean where the LSTM reaches), then that and
        // ARIMA half and half.
        let with_lstm = halfway(&base, lstm.as_deref());
        let combined = halfway(&with_lstm, arima.as_deref());
        if !combined.iter().all(|v| v.is_finite()) {
            return Err(JobFailure::overflow());
        }
        // The intervals: the chosen form's, centred on the combined forecast and widened by
        // how far the members of the combination are apart (the forms around their weighted
        // mean, the two halves of each mean), added in variance as in Buckland et al.
        // (1997): the chosen form's spread alone assumes the right model was chosen, and
        // held-out coverage fell short of the level.
        let spread = numbers(&smoothing["weighted_spread"]);
        let half_gap = |a: f64, b: Option<&f64>| b.map_or(0.0, |b| (a - b) / 2.0);
        let apart: Vec<f64> = (0..combined.len())
            .map(|h| {
                let forms = spread.get(h).copied().unwrap_or(0.0);
                let lstm_gap = half_gap(base[h], lstm.as_ref().and_then(|l| l.get(h)));
                let arima_gap = half_gap(with_lstm[h], arima.as_ref().and_then(|a| a.get(h)));
                forms.hypot(lstm_gap).hypot(arima_gap)
            })
            .collect();
        let intervals: Vec<Value> = smoothing["intervals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|interval| {
                let (lower, upper) = (numbers(&interval["lower"]), numbers(&interval["upper"]));
                let z = holt_winters::normal_quantile(
                    0.5 + interval["level"].as_f64().unwrap_or(0.0) / 200.0,
                );
                let half: Vec<f64> = (0..combined.len().min(lower.len()).min(upper.len()))
                    .map(|h| ((upper[h] - lower[h]) / 2.0).hypot(z * apart[h]))
                    .collect();
                let bound = |sign: f64| -> Vec<f64> {
                    combined
                        .iter()
                        .zip(&half)
                        .map(|(c, w)| c + sign * w)
                        .collect()
                };
                json!({"level": interval["level"], "lower": bound(-1.0), "upper": bound(1.0)})
            })
            .collect();
        let mut members = vec![json!({
            "name": "exponential_smoothing",
            "trend": smoothing["trend"],
            "seasonal": smoothing["seasonal"],
            "error": smoothing["error"],
            "forms": smoothing["forms"],
            "steps": base.len(),
        })];
        if let Some(lstm) = &lstm {
            members.push(json!({"name": self.lstm_name(), "steps": lstm.len()}));
        }
        if let Some(arima) = &arima {
            members.push(json!({"name": "auto_arima", "steps": arima.len()}));
        }
        Ok(json!({
            // `next` and `context_length` as the seed's `lstm_timeseries` answered them, so its
            // clients read this answer unchanged.
            "next": combined.first(),
            "forecast": combined,
            "horizon": params.horizon,
            "context_length": series.len(),
            "season_length": smoothing["season_length"],
            "season_detected": params.season_length.is_none() && season_length.is_some(),
            "members": members,
            "intervals": intervals,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(body: Value) -> Job<Params> {
        Job::from_body(&Forecast::new(None), body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_seasonal_series_is_forecast_by_exponential_smoothing_with_intervals() {
        let function = Forecast::new(None);
        let example = function.descriptor().example.unwrap();
        let output = function.call(&job(example)).unwrap();
        assert_eq!(output["season_length"], 12);
        let forecast: Vec<f64> = serde_json::from_value(output["forecast"].clone()).unwrap();
        assert_eq!(forecast.len(), 12);
        assert!(forecast[6] > forecast[10], "{forecast:?}");
        let intervals = output["intervals"].as_array().unwrap();
        assert_eq!(intervals.len(), 2);
        for interval in intervals {
            let lower: Vec<f64> = serde_json::from_value(interval["lower"].clone()).unwrap();
            let upper: Vec<f64> = serde_json::from_value(interval["upper"].clone()).unwrap();
            for h in 0..12 {
                assert!(lower[h] < forecast[h] && forecast[h] < upper[h]);
            }
        }
        assert_eq!(output["members"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_season_that_grows_with_the_level_is_modelled_multiplicatively() {
        let series: Vec<f64> = (0..96)
            .map(|t| {
                let level = 100.0 * 1.02f64.powi(t);
                level * (1.0 + 0.3 * (2.0 * std::f64::consts::PI * t as f64 / 12.0).sin())
            })
            .collect();
        let function = Forecast::new(None);
        let output = function
            .call(&job(
                json!({"data": series, "parameters": {"season_length": 12, "horizon": 12}}),
            ))
            .unwrap();
        assert_eq!(
            output["members"][0]["seasonal"], "multiplicative",
            "{output}"
        );
        assert_eq!(output["season_detected"], false);
        let forecast: Vec<f64> = serde_json::from_value(output["forecast"].clone()).unwrap();
        for (h, value) in forecast.iter().enumerate() {
            let t = (96 + h) as i32;
            let truth = 100.0
                * 1.02f64.powi(t)
                * (1.0 + 0.3 * (2.0 * std::f64::consts::PI * t as f64 / 12.0).sin());
            assert!(
                (value - truth).abs() / truth < 0.05,
                "step {h}: {value} vs {truth}"
            );
        }
    }

    #[test]
    fn forms_are_weighted_by_their_akaike_weights() {
        let tied = akaike_weighted(&[(10.0, vec![1.0, 2.0]), (10.0, vec![3.0, 4.0])]).unwrap();
        assert_eq!(tied.mean, vec![2.0, 3.0]);
        assert_eq!(tied.spread, vec![1.0, 1.0]);
        // Twenty AICc points behind: a weight of exp(-10), next to nothing.
        let distant = akaike_weighted(&[(10.0, vec![1.0]), (30.0, vec![100.0])]).unwrap();
        assert!((distant.mean[0] - 1.0).abs() < 0.01, "{distant:?}");
        assert_eq!(akaike_weighted(&[]), None);
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let function = Forecast::new(None);
        let field = |body: Value| {
            Job::<Params>::from_body(&function, body.to_string().as_bytes())
                .unwrap_err()
                .field
        };
        assert_eq!(field(json!({"data": [1, 2, 3]})), "data");
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4], "parameters": {"horizon": 0}})),
            "parameters.horizon"
        );
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4, 5, 6], "parameters": {"season_length": 4}})),
            "parameters.season_length"
        );
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4], "parameters": {"trend": "damped"}})),
            "parameters.trend"
        );
    }
}
