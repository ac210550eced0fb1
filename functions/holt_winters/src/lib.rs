//! The `holt_winters` function: exponential smoothing with trend and seasonality (Holt-Winters),
//! parameters fitted to each series unless the request fixes them, the season length detected
//! when not given, and prediction intervals at the levels asked for.
//!
//! It is a whole Orbit function in one crate: the declaration below is everything the gateway,
//! the OpenAPI document and the dashboard learn about it, and `main.rs` is the process.

pub mod fit;
pub mod model;
pub mod season;

use orbit_contract::{
    Datatype, FieldError, FunctionDescriptor, InputKind, JobFailure, Limits, TensorSpec,
};
use orbit_runtime::{Function, Job};
use serde::Deserialize;
use serde_json::{json, Value};

use fit::Bound;
use model::{Errors, Season, Spec, Trend};

/// The most steps one request may forecast.
pub const MAX_HORIZON: usize = 1000;

/// Which trend to model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendKind {
    Additive,
    Damped,
    None,
}

/// Which season to model; `auto` is additive when the series has a season, none otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeasonKind {
    Auto,
    Additive,
    Multiplicative,
    None,
}

/// How the one-step errors are modelled (see [`model::Errors`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    #[default]
    Additive,
    Multiplicative,
}

/// The parameters, as the declared schema has checked them.
#[derive(Debug, Clone, Deserialize)]
pub struct Params {
    pub horizon: usize,
    #[serde(default)]
    pub season_length: Option<usize>,
    pub trend: TrendKind,
    pub seasonal: SeasonKind,
    #[serde(default)]
    pub error: ErrorKind,
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub beta: Option<f64>,
    #[serde(default)]
    pub gamma: Option<f64>,
    #[serde(default)]
    pub phi: Option<f64>,
    #[serde(default)]
    pub level: Vec<f64>,
    /// Not a request parameter: how a caller in this process wants the starting season.
    #[serde(skip)]
    pub season_start: fit::SeasonStart,
}

/// The function served by the `holt_winters` binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct HoltWinters;

/// The first three years of the airline passengers series (monthly, thousands): the example
/// request of the forecasters built on this crate.
pub const EXAMPLE_SERIES: [f64; 36] = [
    112.0, 118.0, 132.0, 129.0, 121.0, 135.0, 148.0, 148.0, 136.0, 119.0, 104.0, 118.0, 115.0,
    126.0, 141.0, 135.0, 125.0, 149.0, 170.0, 170.0, 158.0, 133.0, 114.0, 140.0, 145.0, 150.0,
    178.0, 163.0, 172.0, 178.0, 199.0, 199.0, 184.0, 162.0, 146.0, 166.0,
];

/// The parameters every forecaster built on this crate shares (`horizon`, `season_length`,
/// `level`), declared once so that they read and check the same in each of them.
pub fn forecast_parameter_schemas() -> serde_json::Map<String, Value> {
    json!({
        "horizon": {"type": "integer", "minimum": 1, "maximum": MAX_HORIZON, "default": 12,
            "description": "steps to forecast"},
        "season_length": {"type": "integer", "minimum": 2, "x-orbit-maximum": "series_length/2",
            "description": "points per season (12 for monthly data with a yearly cycle); detected from the data when absent"},
        "level": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
            "maxItems": 5, "uniqueItems": true, "default": [],
            "description": "prediction interval levels in percent, e.g. [80, 95]"}
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// The declaration every forecaster built on this crate shares: one series in, `forecast`
/// out, at least 4 points, the airline series as the example; the name, the description, the
/// parameters and the example's parameters are each forecaster's own.
pub fn forecaster_descriptor(
    name: &str,
    description: &str,
    properties: serde_json::Map<String, Value>,
    example_parameters: Value,
) -> FunctionDescriptor {
    FunctionDescriptor {
        name: name.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        versions: Vec::new(),
        description: description.into(),
        platform: "orbit".into(),
        input: InputKind::Series,
        parameters: json!({
            "type": "object",
            "additionalProperties": false,
            "properties": properties,
        }),
        inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
        outputs: vec![TensorSpec::new("forecast", Datatype::Fp64, vec![-1])],
        limits: Limits {
            min_series_length: 4,
            ..Limits::default()
        },
        example: Some(json!({"data": &EXAMPLE_SERIES[..], "parameters": example_parameters})),
    }
}

fn smoothing(description: &str) -> Value {
    json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "description": description})
}

impl Function for HoltWinters {
    type Params = Params;

    fn descriptor(&self) -> FunctionDescriptor {
        let mut properties = forecast_parameter_schemas();
        properties.extend(
            json!({
                    "trend": {"enum": ["additive", "damped", "none"], "default": "additive"},
                    "seasonal": {"enum": ["auto", "additive", "multiplicative", "none"], "default": "auto",
                        "description": "auto: additive when the series has a season (given or detected), none otherwise"},
                    "error": {"enum": ["additive", "multiplicative"], "default": "additive",
                        "description": "multiplicative: errors in proportion to the level (positive series), which changes the fit and widens intervals with the forecast"},
                    "alpha": smoothing("level smoothing; fitted when absent"),
                    "beta": smoothing("trend smoothing; fitted when absent"),
                    "gamma": smoothing("season smoothing; fitted when absent"),
                    "phi": {"type": "number", "minimum": 0.5, "maximum": 1,
                        "description": "trend damping of trend = damped; fitted (0.8 to 0.98) when absent"}
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
        forecaster_descriptor(
            "holt_winters",
            "Holt-Winters exponential smoothing: forecast with trend, season and prediction intervals",
            properties,
            json!({"season_length": 12, "horizon": 12, "seasonal": "multiplicative", "level": [80, 95]}),
        )
    }

    fn call(&self, job: &Job<Params>) -> Result<Value, JobFailure> {
        let series = job.series()?.values();
        forecast(series, &job.params)
    }
}

fn invalid(field: &str, message: String) -> JobFailure {
    JobFailure::invalid_input(FieldError::new(field, message))
}

/// Fits (or takes) the model for `series` and forecasts it.
pub fn forecast(series: &[f64], params: &Params) -> Result<Value, JobFailure> {
    let trend = match params.trend {
        TrendKind::Additive => Trend::Additive,
        TrendKind::Damped => Trend::Damped,
        TrendKind::None => Trend::None,
    };
    let detected = params.season_length.or_else(|| match params.seasonal {
        SeasonKind::None => None,
        _ => season::detect(series),
    });
    let period = detected.filter(|&m| series.len() >= 2 * m);
    let season = match (params.seasonal, period) {
        (SeasonKind::None, _) | (SeasonKind::Auto, None) => Season::None,
        (SeasonKind::Auto | SeasonKind::Additive, Some(_)) => Season::Additive,
        (SeasonKind::Multiplicative, Some(_)) => Season::Multiplicative,
        (SeasonKind::Additive | SeasonKind::Multiplicative, None) => {
            return Err(invalid(
                "parameters.season_length",
                format!(
                    "no season found in {} points; give season_length (at most half the series)",
                    series.len()
                ),
            ))
        }
    };
    let errors = match params.error {
        ErrorKind::Additive => Errors::Additive,
        ErrorKind::Multiplicative => Errors::Multiplicative,
    };
    let positive = series.iter().all(|&y| y > 0.0);
    if season == Season::Multiplicative && !positive {
        return Err(invalid(
            "data",
            "multiplicative seasonality needs every value above 0".into(),
        ));
    }
    if errors == Errors::Multiplicative && !positive {
        return Err(invalid(
            "data",
            "multiplicative errors need every value above 0".into(),
        ));
    }
    let spec = Spec {
        trend,
        season,
        period: if season == Season::None {
            1
        } else {
            period.unwrap_or(1)
        },
    };
    if series.len() < spec.min_points() {
        return Err(invalid(
            "data",
            format!(
                "has {} values; this model needs at least {}",
                series.len(),
                spec.min_points()
            ),
        ));
    }
    let open = |fixed: Option<f64>, low: f64, high: f64, start: f64| Bound {
        low,
        high,
        fixed,
        start,
    };
    let bounds = [
        open(params.alpha, 1e-4, 0.9999, 0.3),
        open(
            if trend == Trend::None {
                Some(0.0)
            } else {
                params.beta
            },
            1e-4,
            0.9999,
            0.1,
        ),
        open(
            if season == Season::None {
                Some(0.0)
            } else {
                params.gamma
            },
            1e-4,
            0.9999,
            0.1,
        ),
        open(
            if trend == Trend::Damped {
                params.phi
            } else {
                Some(1.0)
            },
            0.8,
            0.98,
            0.9,
        ),
    ];
    let (parameters, start) = fit::fit(series, &spec, errors, bounds, params.season_start)
        .ok_or_else(|| {
            JobFailure::function_error("no finite fit of this series (values too extreme?)")
        })?;
    let fitted = model::smooth_from(series, &spec, &parameters, &start)
        .ok_or_else(|| JobFailure::function_error("the fitted model diverges on this series"))?;
    let points = model::forecast(&fitted, &spec, &parameters, params.horizon);
    if !points.iter().all(|v| v.is_finite()) {
        return Err(JobFailure::overflow());
    }
    let rmse = (fitted.sse / fitted.points as f64).sqrt();
    // The one-step error's spread, counting what the fit estimated (free parameters and the
    // starting state), as R's `ets` does: the in-sample RMSE understates it, and intervals
    // built on it covered less than their level on held-out series.
    let estimated = bounds.iter().filter(|b| b.fixed.is_none()).count()
        + 1
        + usize::from(trend != Trend::None)
        + if season == Season::None {
            0
        } else {
            spec.period - 1
        };
    let squares = match errors {
        Errors::Additive => fitted.sse,
        Errors::Multiplicative => fitted.relative_sse,
    };
    let sigma = (squares / fitted.points.saturating_sub(estimated).max(1) as f64).sqrt();
    // AICc, with the error's spread counted as one more estimate.
    let (n, k) = (fitted.points as f64, (estimated + 1) as f64);
    let aicc = if n - k - 1.0 > 0.0 {
        fitted.deviance(errors) + 2.0 * k + 2.0 * k * (k + 1.0) / (n - k - 1.0)
    } else {
        f64::INFINITY
    };
    let factors = model::variance_factors(&spec, &parameters, params.horizon);
    // The model's spread h steps ahead, widened to its own h-step errors inside the series
    // where those were larger: the formula assumes the model is right, and held-out
    // coverage fell short of the level where it was not.
    let mut spreads: Vec<f64> = factors.iter().map(|f| sigma * f.sqrt()).collect();
    if !params.level.is_empty() {
        let observed =
            model::in_sample_spread(series, &spec, &parameters, &start, errors, params.horizon);
        let mut ratio = 1.0f64;
        for (spread, seen) in spreads.iter_mut().zip(observed) {
            if let Some(seen) = seen {
                ratio = (seen / *spread).max(1.0);
            }
            *spread *= ratio;
        }
    }
    let intervals: Vec<Value> = params
        .level
        .iter()
        .map(|&level| {
            let z = normal_quantile(0.5 + level / 200.0);
            // Multiplicative errors scale with the forecast (the usual approximation).
            let half: Vec<f64> = spreads
                .iter()
                .zip(&points)
                .map(|(spread, p)| match errors {
                    Errors::Additive => z * spread,
                    Errors::Multiplicative => z * spread * p.abs(),
                })
                .collect();
            json!({
                "level": level,
                "lower": points.iter().zip(&half).map(|(p, h)| p - h).collect::<Vec<_>>(),
                "upper": points.iter().zip(&half).map(|(p, h)| p + h).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "forecast": points,
        "horizon": params.horizon,
        "season_length": (season != Season::None).then_some(spec.period),
        "season_detected": params.season_length.is_none() && season != Season::None,
        "trend": match trend { Trend::Additive => "additive", Trend::Damped => "damped", Trend::None => "none" },
        "seasonal": match season { Season::Additive => "additive", Season::Multiplicative => "multiplicative", Season::None => "none" },
        "alpha": parameters.alpha,
        "beta": (trend != Trend::None).then_some(parameters.beta),
        "gamma": (season != Season::None).then_some(parameters.gamma),
        "phi": (trend == Trend::Damped).then_some(parameters.phi),
        "error": match errors { Errors::Additive => "additive", Errors::Multiplicative => "multiplicative" },
        "rmse": rmse,
        "sigma": sigma,
        "aicc": aicc.is_finite().then_some(aicc),
        "intervals": intervals,
    }))
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
// The coefficients are quoted as published, digits beyond f64's precision included.
#[allow(clippy::excessive_precision)]
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(body: Value) -> Result<Job<Params>, FieldError> {
        Job::from_body(&HoltWinters, body.to_string().as_bytes())
    }

    #[test]
    fn the_example_forecasts_the_next_season_with_intervals() {
        let example = HoltWinters.descriptor().example.unwrap();
        let output = HoltWinters.call(&job(example).unwrap()).unwrap();
        let forecast: Vec<f64> = serde_json::from_value(output["forecast"].clone()).unwrap();
        assert_eq!(forecast.len(), 12);
        // The airline series peaks in July and August and dips in November.
        assert!(
            forecast[6] > forecast[10] && forecast[7] > forecast[10],
            "{forecast:?}"
        );
        let intervals = output["intervals"].as_array().unwrap();
        assert_eq!(intervals.len(), 2);
        let width = |i: usize, h: usize| {
            intervals[i]["upper"][h].as_f64().unwrap() - intervals[i]["lower"][h].as_f64().unwrap()
        };
        assert!(width(1, 0) > width(0, 0), "95 % is wider than 80 %");
        assert!(
            width(0, 11) > width(0, 0),
            "intervals widen with the horizon"
        );
    }

    #[test]
    fn the_season_is_detected_when_not_given() {
        let series: Vec<f64> = (0..96)
            .map(|t| {
                20.0 + 0.1 * t as f64 + 5.0 * (2.0 * std::f64::consts::PI * t as f64 / 12.0).cos()
            })
            .collect();
        let output = HoltWinters
            .call(&job(json!({"data": series, "parameters": {"horizon": 12}})).unwrap())
            .unwrap();
        assert_eq!(output["season_length"], 12);
        assert_eq!(output["season_detected"], true);
        let forecast: Vec<f64> = serde_json::from_value(output["forecast"].clone()).unwrap();
        for (h, value) in forecast.iter().enumerate() {
            let t = (96 + h) as f64;
            let truth = 20.0 + 0.1 * t + 5.0 * (2.0 * std::f64::consts::PI * t / 12.0).cos();
            assert!((value - truth).abs() < 0.5, "step {h}: {value} vs {truth}");
        }
    }

    #[test]
    fn the_declared_rules_hold() {
        let field = |body: Value| job(body).unwrap_err().field;
        assert_eq!(field(json!({"data": [1, 2, 3]})), "data");
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4, 5, 6], "parameters": {"season_length": 4}})),
            "parameters.season_length"
        );
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4], "parameters": {"alpha": 1}})),
            "parameters.alpha"
        );
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4], "parameters": {"level": [80, 80]}})),
            "parameters.level[1]"
        );
        let failure = HoltWinters
            .call(&job(json!({"data": [1, -2, 3, 4, 5, 6, 7, 8], "parameters": {"season_length": 2, "seasonal": "multiplicative"}})).unwrap())
            .unwrap_err();
        assert_eq!(failure.field.as_deref(), Some("data"));
    }

    #[test]
    fn the_starting_trend_is_fitted_not_read_off_the_first_step() {
        // A straight line whose first step is flat: a start taken from that step alone
        // began with no trend at all.
        let mut series: Vec<f64> = (0..40).map(|t| 50.0 + 3.0 * t as f64).collect();
        series[1] = series[0];
        let output = HoltWinters
            .call(&job(json!({"data": series, "parameters": {"horizon": 3, "seasonal": "none", "alpha": 0.1, "beta": 0.1}})).unwrap())
            .unwrap();
        let forecast: Vec<f64> = serde_json::from_value(output["forecast"].clone()).unwrap();
        for (h, value) in forecast.iter().enumerate() {
            let truth = 50.0 + 3.0 * (40 + h) as f64;
            assert!((value - truth).abs() < 1.0, "step {h}: {value} vs {truth}");
        }
    }

    #[test]
    fn multiplicative_errors_scale_the_intervals_with_the_forecast() {
        // Growing 3 % a step with noise of about 5 % of the level.
        let noise = [0.04, -0.05, 0.06, -0.03, 0.05, -0.06, 0.02, -0.04];
        let series: Vec<f64> = (0..60)
            .map(|t| 100.0 * 1.03f64.powi(t) * (1.0 + noise[t as usize % noise.len()]))
            .collect();
        let output = HoltWinters
            .call(&job(json!({"data": series, "parameters": {"horizon": 2, "seasonal": "none", "error": "multiplicative", "level": [95]}})).unwrap())
            .unwrap();
        assert_eq!(output["error"], "multiplicative");
        assert!(output["aicc"].as_f64().is_some(), "{output}");
        let forecast: Vec<f64> = serde_json::from_value(output["forecast"].clone()).unwrap();
        let upper = output["intervals"][0]["upper"][0].as_f64().unwrap();
        // The half-width is a share of the forecast near the noise's size (z * sigma).
        let share = (upper - forecast[0]) / forecast[0];
        assert!(share > 0.03 && share < 0.25, "{share}");
        let failure = HoltWinters
            .call(&job(json!({"data": [1, -2, 3, 4, 5], "parameters": {"seasonal": "none", "error": "multiplicative"}})).unwrap())
            .unwrap_err();
        assert_eq!(failure.field.as_deref(), Some("data"));
    }

    #[test]
    fn normal_quantiles_are_right() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.9) - 1.281552).abs() < 1e-5);
        assert!(normal_quantile(0.5).abs() < 1e-12);
    }
}
