//! The `auto_arima` function: a seasonal ARIMA model chosen and fitted for each series as
//! statsforecast's `AutoARIMA` and R's `forecast::auto.arima` choose it (differences from
//! unit-root tests, a stepwise search over the orders by AICc, each model fitted by
//! conditional sum of squares and then exact likelihood), with its forecast and prediction
//! intervals. `forecast` can also call it in-process ([`forecast`]).

pub mod model;
pub mod optimize;
pub mod polynomial;
pub mod search;
pub mod unit_root;

use orbit_contract::{FunctionDescriptor, JobFailure};
use orbit_runtime::{Function, Job};
use serde::Deserialize;
use serde_json::{json, Value};

pub use search::{Chosen, SearchError, Settings};

/// The parameters, as the declared schema has checked them.
#[derive(Debug, Clone, Deserialize)]
pub struct Params {
    pub horizon: usize,
    #[serde(default)]
    pub season_length: Option<usize>,
    #[serde(default)]
    pub level: Vec<f64>,
}

/// The function served by the `auto_arima` binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct AutoArima;

/// A forecast of the chosen model: the mean, and the lower and upper bounds per level.
#[derive(Debug, Clone)]
pub struct ArimaForecast {
    pub chosen: Chosen,
    pub mean: Vec<f64>,
    /// The standard deviation of each step's error under the model.
    pub spread: Vec<f64>,
}

/// Chooses the model of `series` (season length `m`, 1 for none) and forecasts `horizon`
/// steps.
pub fn forecast(series: &[f64], m: usize, horizon: usize) -> Result<ArimaForecast, SearchError> {
    let chosen = search::auto_arima(series, m, &Settings::default())?;
    let (mean, spread) = chosen.model.forecast(horizon);
    Ok(ArimaForecast {
        chosen,
        mean,
        spread,
    })
}

impl ArimaForecast {
    /// `ARIMA(p,d,q)(P,D,Q)[m] with drift`, as R and statsforecast print it.
    pub fn name(&self) -> String {
        let model = &self.chosen.model;
        let o = model.order;
        let mut name = format!("ARIMA({},{},{})", o.p, o.d, o.q);
        if o.m > 1 && (o.seasonal_p + o.seasonal_d + o.seasonal_q) > 0 {
            name += &format!(
                "({},{},{})[{}]",
                o.seasonal_p, o.seasonal_d, o.seasonal_q, o.m
            );
        }
        match (model.constant, o.d + o.seasonal_d) {
            (true, 0) => name += " with non-zero mean",
            (true, _) => name += " with drift",
            (false, 0) => name += " with zero mean",
            _ => {}
        }
        name
    }

    /// The interval at `level` percent: the mean plus and minus the normal quantile's spreads.
    pub fn interval(&self, level: f64) -> (Vec<f64>, Vec<f64>) {
        let z = holt_winters::normal_quantile(0.5 + level / 200.0);
        let bound = |sign: f64| -> Vec<f64> {
            self.mean
                .iter()
                .zip(&self.spread)
                .map(|(m, s)| m + sign * z * s)
                .collect()
        };
        (bound(-1.0), bound(1.0))
    }
}

/// The forecasters' shared parameters, but for `season_length`, which is not detected here.
fn parameter_schemas() -> serde_json::Map<String, Value> {
    let mut properties = holt_winters::forecast_parameter_schemas();
    properties.insert(
        "season_length".into(),
        json!({"type": "integer", "minimum": 2, "x-orbit-maximum": "series_length/2",
            "description": "points per season (12 for monthly data with a yearly cycle); absent: no seasonal part"}),
    );
    properties
}

impl Function for AutoArima {
    type Params = Params;

    fn descriptor(&self) -> FunctionDescriptor {
        holt_winters::forecaster_descriptor(
            "auto_arima",
            "AutoARIMA: a seasonal ARIMA model chosen by stepwise AICc search (as statsforecast and R's auto.arima), with prediction intervals",
            parameter_schemas(),
            json!({"season_length": 12, "horizon": 12, "level": [80, 95]}),
        )
    }

    fn call(&self, job: &Job<Params>) -> Result<Value, JobFailure> {
        let series = job.series()?.values();
        let params = &job.params;
        // Without a season length the model has no seasonal part, as in statsforecast and R
        // (a plain vector has frequency 1): an ARIMA user states the season.
        let season_length = params.season_length.unwrap_or(1);
        let result = forecast(series, season_length, params.horizon)
            .map_err(|err| JobFailure::function_error(err.to_string()))?;
        if !result
            .mean
            .iter()
            .chain(&result.spread)
            .all(|v| v.is_finite())
        {
            return Err(JobFailure::overflow());
        }
        let intervals: Vec<Value> = params
            .level
            .iter()
            .map(|&level| {
                let (lower, upper) = result.interval(level);
                json!({"level": level, "lower": lower, "upper": upper})
            })
            .collect();
        let model = &result.chosen.model;
        let o = model.order;
        let mut coefficients = json!({
            "ar": model.ar, "ma": model.ma,
            "seasonal_ar": model.seasonal_ar, "seasonal_ma": model.seasonal_ma,
        });
        if model.constant {
            let key = if o.d + o.seasonal_d == 0 {
                "mean"
            } else {
                "drift"
            };
            // A seasonal difference turns a drift per step into m times it.
            let per_step = model.intercept / (o.m.pow(o.seasonal_d as u32)) as f64;
            coefficients[key] = json!(per_step);
        }
        Ok(json!({
            "forecast": result.mean,
            "horizon": params.horizon,
            "season_length": (season_length > 1).then_some(season_length),
            "model": result.name(),
            "order": {"p": o.p, "d": o.d, "q": o.q, "P": o.seasonal_p, "D": o.seasonal_d, "Q": o.seasonal_q, "m": o.m},
            "coefficients": coefficients,
            "sigma2": model.sigma2,
            "aicc": result.chosen.aicc,
            "loglik": model.loglik,
            "models_fitted": result.chosen.models_fitted,
            "intervals": intervals,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(body: Value) -> Job<Params> {
        Job::from_body(&AutoArima, body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_airline_example_gets_a_seasonal_model_with_intervals() {
        let example = AutoArima.descriptor().example.unwrap();
        let output = AutoArima.call(&job(example)).unwrap();
        assert_eq!(output["order"]["m"], 12, "{output}");
        let forecast: Vec<f64> = serde_json::from_value(output["forecast"].clone()).unwrap();
        assert_eq!(forecast.len(), 12);
        // July above November, as in every year of the context.
        assert!(forecast[6] > forecast[10], "{forecast:?}");
        for interval in output["intervals"].as_array().unwrap() {
            let lower: Vec<f64> = serde_json::from_value(interval["lower"].clone()).unwrap();
            let upper: Vec<f64> = serde_json::from_value(interval["upper"].clone()).unwrap();
            for h in 0..12 {
                assert!(lower[h] < forecast[h] && forecast[h] < upper[h]);
            }
        }
    }

    #[test]
    fn a_constant_series_forecasts_itself() {
        let output = AutoArima
            .call(&job(
                json!({"data": [5, 5, 5, 5, 5, 5], "parameters": {"horizon": 3}}),
            ))
            .unwrap();
        assert_eq!(output["forecast"], json!([5.0, 5.0, 5.0]));
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let field = |body: Value| {
            Job::<Params>::from_body(&AutoArima, body.to_string().as_bytes())
                .unwrap_err()
                .field
        };
        assert_eq!(field(json!({"data": [1, 2, 3]})), "data");
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4], "parameters": {"horizon": 0}})),
            "parameters.horizon"
        );
        assert_eq!(
            field(json!({"data": [1, 2, 3, 4], "parameters": {"trend": "damped"}})),
            "parameters.trend"
        );
    }
}
