//! The `moving_average` function: simple, exponential and weighted trailing averages.
//!
//! Every kind returns one value per full window, `n - window + 1` values for `n` points, the
//! i-th aligned to input point `i + window - 1` (the window's newest point). No padding, no
//! partial windows at the start: a value is only emitted where the whole window exists.
//! All arithmetic is `f64`; running sums are compensated and rebuilt periodically so a long
//! series accumulates no visible drift.

use orbit_contract::{Datatype, FunctionDescriptor, InputKind, JobFailure, Limits, TensorSpec};
use orbit_runtime::{Function, Job};
use serde::Deserialize;
use serde_json::{json, Value};

/// Series up to this length run inline on the async threads (a few tens of microseconds).
const INLINE_POINTS: usize = 20_000;

/// Which average to compute. All three return `n - window + 1` values, one per full window,
/// aligned to the window's last point (a trailing average).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AverageKind {
    /// Arithmetic mean of the window.
    #[default]
    #[serde(alias = "sma")]
    Simple,
    /// Exponentially weighted, seeded with the simple mean of the first window, then
    /// `ema = alpha * x + (1 - alpha) * ema`; `alpha` defaults to `2 / (window + 1)`.
    #[serde(alias = "ema")]
    Exponential,
    /// Linearly weighted: the newest point weighs `window`, the oldest 1.
    #[serde(alias = "wma")]
    Weighted,
}

impl AverageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Exponential => "exponential",
            Self::Weighted => "weighted",
        }
    }
}

/// The parameters, as the declared schema has checked them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Params {
    /// Points per window, 1 to the series length.
    pub window: usize,
    pub kind: AverageKind,
    /// Smoothing factor of `exponential`, in (0, 1].
    #[serde(default)]
    pub alpha: Option<f64>,
}

impl Params {
    /// The smoothing factor the exponential kind uses.
    pub fn effective_alpha(&self) -> f64 {
        self.alpha.unwrap_or(2.0 / (self.window as f64 + 1.0))
    }
}

/// The function served by the `moving_average` binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct MovingAverage;

impl Function for MovingAverage {
    type Params = Params;

    fn descriptor(&self) -> FunctionDescriptor {
        FunctionDescriptor {
            name: "moving_average".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            versions: Vec::new(),
            description: "Trailing simple, exponential or weighted moving average of a time series"
                .into(),
            platform: "orbit".into(),
            input: InputKind::Series,
            parameters: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "window": {
                        "type": "integer", "minimum": 1, "default": 5,
                        "x-orbit-maximum": "series_length",
                        "description": "points per window, 1 to the series length"
                    },
                    "kind": {
                        "enum": ["simple", "exponential", "weighted", "sma", "ema", "wma"],
                        "default": "simple",
                        "description": "simple (mean), exponential (seeded with the first window's mean), weighted (linear, newest = window)"
                    },
                    "alpha": {
                        "type": "number", "exclusiveMinimum": 0, "maximum": 1,
                        "description": "smoothing factor of exponential; default 2 / (window + 1)"
                    }
                },
                "dependentSchemas": {
                    "alpha": {"properties": {"kind": {"enum": ["exponential", "ema"]}}}
                }
            }),
            inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
            outputs: vec![TensorSpec::new("values", Datatype::Fp64, vec![-1])],
            limits: Limits::default(),
            example: Some(json!({
                "data": [1, 2, 3, 4, 5, 6, 7, 8],
                "parameters": {"window": 3, "kind": "simple"}
            })),
        }
    }

    fn call(&self, job: &Job<Params>) -> Result<Value, JobFailure> {
        let series = job.series()?.values();
        let params = &job.params;
        if params.window == 0 || params.window > series.len() {
            return Err(JobFailure::invalid_input(orbit_contract::FieldError::new(
                "parameters.window",
                format!("must be 1 to the series length ({})", series.len()),
            )));
        }
        let values = compute(series, params);
        if !values.iter().all(|v| v.is_finite()) {
            return Err(JobFailure::overflow());
        }
        let mut output = json!({
            "kind": params.kind.as_str(),
            "window": params.window,
            "values": values,
        });
        if params.kind == AverageKind::Exponential {
            output["alpha"] = json!(params.effective_alpha());
        }
        Ok(output)
    }

    fn is_cheap(&self, job: &Job<Params>) -> bool {
        job.input.series().is_some_and(|s| s.len() <= INLINE_POINTS)
    }
}

/// The average of `series` for `params`; `1 <= window <= series.len()`.
pub fn compute(series: &[f64], params: &Params) -> Vec<f64> {
    let window = params.window;
    match params.kind {
        AverageKind::Simple => simple(series, window),
        AverageKind::Weighted => weighted(series, window),
        AverageKind::Exponential => exponential(series, window, params.effective_alpha()),
    }
}

/// Neumaier-compensated sum: adding and removing values keeps the error at a few ulps.
#[derive(Default, Clone, Copy)]
struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    fn of(values: &[f64]) -> Self {
        let mut total = Self::default();
        values.iter().for_each(|&v| total.add(v));
        total
    }

    fn add(&mut self, value: f64) {
        let t = self.sum + value;
        if self.sum.abs() >= value.abs() {
            self.compensation += (self.sum - t) + value;
        } else {
            self.compensation += (value - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(self) -> f64 {
        self.sum + self.compensation
    }
}

/// How often (in outputs) running sums are rebuilt from scratch: at least every 1024 steps,
/// and never more often than once per window, so the rebuild cost stays O(n) overall.
fn rebuild_every(window: usize) -> usize {
    window.max(1024)
}

pub fn simple(series: &[f64], window: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(series.len() - window + 1);
    let rebuild = rebuild_every(window);
    let mut sum = CompensatedSum::of(&series[..window]);
    out.push(sum.value() / window as f64);
    for end in window..series.len() {
        let start = end + 1 - window;
        if (end - window + 1).is_multiple_of(rebuild) {
            sum = CompensatedSum::of(&series[start..=end]);
        } else {
            sum.add(series[end]);
            sum.add(-series[start - 1]);
        }
        out.push(sum.value() / window as f64);
    }
    out
}

/// Linear weights 1..=window, newest heaviest, via the running recurrence
/// `numerator' = numerator + window * new - sum_of_previous_window`.
pub fn weighted(series: &[f64], window: usize) -> Vec<f64> {
    let denominator = (window * (window + 1)) as f64 / 2.0;
    let exact = |slice: &[f64]| {
        let mut numerator = CompensatedSum::default();
        for (k, &v) in slice.iter().enumerate() {
            numerator.add((k + 1) as f64 * v);
        }
        (numerator, CompensatedSum::of(slice))
    };
    let rebuild = rebuild_every(window);
    let mut out = Vec::with_capacity(series.len() - window + 1);
    let (mut numerator, mut sum) = exact(&series[..window]);
    out.push(numerator.value() / denominator);
    for end in window..series.len() {
        let start = end + 1 - window;
        if (end - window + 1).is_multiple_of(rebuild) {
            (numerator, sum) = exact(&series[start..=end]);
        } else {
            numerator.add(window as f64 * series[end]);
            numerator.add(-sum.value());
            sum.add(series[end]);
            sum.add(-series[start - 1]);
        }
        out.push(numerator.value() / denominator);
    }
    out
}

/// Seeded with the simple mean of the first window, then `ema = alpha * x + (1 - alpha) * ema`.
pub fn exponential(series: &[f64], window: usize, alpha: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(series.len() - window + 1);
    let mut ema = CompensatedSum::of(&series[..window]).value() / window as f64;
    out.push(ema);
    for &value in &series[window..] {
        ema += alpha * (value - ema);
        out.push(ema);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_simple(x: &[f64], w: usize) -> Vec<f64> {
        x.windows(w)
            .map(|s| s.iter().sum::<f64>() / w as f64)
            .collect()
    }

    fn naive_weighted(x: &[f64], w: usize) -> Vec<f64> {
        let denominator = (w * (w + 1)) as f64 / 2.0;
        x.windows(w)
            .map(|s| {
                s.iter()
                    .enumerate()
                    .map(|(k, v)| (k + 1) as f64 * v)
                    .sum::<f64>()
                    / denominator
            })
            .collect()
    }

    /// Deterministic pseudo-random series (no dependency on a RNG crate).
    fn series(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                1000.0 + (i as f64 * 0.1).sin() * 50.0 + noise * 10.0
            })
            .collect()
    }

    fn assert_close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                "index {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn simple_matches_definition() {
        assert_eq!(simple(&[1.0, 2.0, 3.0, 4.0], 2), vec![1.5, 2.5, 3.5]);
        for (n, w) in [
            (1, 1),
            (64, 5),
            (5000, 1),
            (5000, 37),
            (5000, 5000),
            (20_000, 3000),
        ] {
            let x = series(n, n as u64 + w as u64);
            assert_close(&simple(&x, w), &naive_simple(&x, w));
        }
    }

    #[test]
    fn weighted_matches_definition() {
        // (1*1 + 2*2 + 3*3) / 6 and (1*2 + 2*3 + 3*4) / 6
        assert_close(
            &weighted(&[1.0, 2.0, 3.0, 4.0], 3),
            &[14.0 / 6.0, 20.0 / 6.0],
        );
        for (n, w) in [(64, 5), (5000, 1), (5000, 64), (5000, 5000), (20_000, 3000)] {
            let x = series(n, 7 + n as u64);
            assert_close(&weighted(&x, w), &naive_weighted(&x, w));
        }
    }

    #[test]
    fn exponential_is_seeded_with_the_first_mean() {
        let out = exponential(&[1.0, 2.0, 3.0, 10.0], 3, 0.5);
        assert_eq!(out, vec![2.0, 6.0]);
    }

    #[test]
    fn output_length_is_n_minus_window_plus_one() {
        let x = series(100, 1);
        for w in [1, 10, 100] {
            assert_eq!(simple(&x, w).len(), 100 - w + 1);
            assert_eq!(weighted(&x, w).len(), 100 - w + 1);
            assert_eq!(exponential(&x, w, 0.3).len(), 100 - w + 1);
        }
    }

    #[test]
    fn a_constant_series_averages_to_itself_without_drift() {
        let x = vec![0.1; 100_000];
        for value in simple(&x, 7).into_iter().chain(weighted(&x, 7)) {
            assert!((value - 0.1).abs() < 1e-15, "{value}");
        }
    }

    fn job(body: &str) -> Result<Job<Params>, orbit_contract::FieldError> {
        Job::from_body(&MovingAverage, body.as_bytes())
    }

    #[test]
    fn an_overflowing_average_fails_instead_of_returning_infinity() {
        let job = job(r#"{"data":[1.7e308,1.7e308,1.7e308],"parameters":{"window":2}}"#).unwrap();
        assert_eq!(
            MovingAverage.call(&job).unwrap_err().code,
            "numeric_overflow"
        );
    }

    #[test]
    fn the_declared_rules_are_the_old_rules() {
        let field = |body: &str| job(body).unwrap_err().field;
        assert_eq!(
            field(r#"{"data":[1,2,3],"parameters":{"window":0}}"#),
            "parameters.window"
        );
        assert_eq!(
            field(r#"{"data":[1,2,3],"metadata":{"window":4}}"#),
            "metadata.window"
        );
        assert_eq!(
            field(r#"{"data":[1,2,3],"parameters":{"window":1.5}}"#),
            "parameters.window"
        );
        assert_eq!(
            field(r#"{"data":[1,2,3],"parameters":{"kind":"median","window":2}}"#),
            "parameters.kind"
        );
        assert_eq!(
            field(r#"{"data":[1,2,3],"parameters":{"windw":2}}"#),
            "parameters.windw"
        );
        assert_eq!(
            field(r#"{"data":[1,2,3,4,5],"parameters":{"alpha":0.5}}"#),
            "parameters.alpha"
        );
        assert_eq!(
            field(r#"{"data":[1,2,3,4,5],"parameters":{"kind":"ema","alpha":1.5}}"#),
            "parameters.alpha"
        );
        assert_eq!(field(r#"{"data":[1,2,3]}"#), "parameters.window");
        let seed =
            job(r#"{"data":[1,2,3,4,5,6],"metadata":{"window":3,"pattern":"seasonal"}}"#).unwrap();
        assert_eq!(seed.params.window, 3);
        assert_eq!(seed.params.kind, AverageKind::Simple);
        let ema = job(r#"{"data":[1,2,3,4,5],"parameters":{"kind":"ema","alpha":0.5}}"#).unwrap();
        assert_eq!(ema.params.effective_alpha(), 0.5);
    }

    #[test]
    fn the_example_runs() {
        let example = MovingAverage.descriptor().example.unwrap();
        let output = MovingAverage
            .call(&job(&example.to_string()).unwrap())
            .unwrap();
        assert_eq!(output["values"], json!([2.0, 3.0, 4.0, 5.0, 6.0, 7.0]));
    }

    #[test]
    fn call_reports_kind_window_and_values() {
        let job = job(r#"{"data":[1,2,3,4],"parameters":{"window":2,"kind":"ema"}}"#).unwrap();
        let output = MovingAverage.call(&job).unwrap();
        assert_eq!(output["kind"], "exponential");
        assert_eq!(output["window"], 2);
        assert_eq!(output["values"].as_array().unwrap().len(), 3);
        assert!((output["alpha"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }
}
