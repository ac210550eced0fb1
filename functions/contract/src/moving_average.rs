//! Parameters of the `moving_average` function, parsed and checked against the series.
//!
//! The maths lives in the function crate; the rules live here so the gateway can reject a bad
//! window before anything is enqueued.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::model::ParamSource;
use crate::FieldError;

/// Window used when the request names none (the seed's example uses 5).
pub const DEFAULT_WINDOW: u32 = 5;

/// Which average to compute. All three return `n - window + 1` values, one per full window,
/// aligned to the window's last point (a trailing average).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AverageKind {
    /// Arithmetic mean of the window.
    #[default]
    Simple,
    /// Exponentially weighted, seeded with the simple mean of the first window, then
    /// `ema = alpha * x + (1 - alpha) * ema`; `alpha` defaults to `2 / (window + 1)`.
    Exponential,
    /// Linearly weighted: the newest point weighs `window`, the oldest 1.
    Weighted,
}

impl AverageKind {
    fn parse(value: &Value, field: &str) -> Result<Self, FieldError> {
        let name = value
            .as_str()
            .ok_or_else(|| FieldError::new(field, "must be a string"))?;
        match name.to_ascii_lowercase().as_str() {
            "simple" | "sma" => Ok(Self::Simple),
            "exponential" | "ema" => Ok(Self::Exponential),
            "weighted" | "wma" => Ok(Self::Weighted),
            other => Err(FieldError::new(
                field,
                format!("unknown kind '{other}'; expected simple, exponential or weighted"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Exponential => "exponential",
            Self::Weighted => "weighted",
        }
    }
}

/// A window length that is at least 1 and at most the series length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(u32);

impl Window {
    pub fn parse(value: &Value, field: &str, series_len: usize) -> Result<Self, FieldError> {
        let window = value
            .as_u64()
            .ok_or_else(|| FieldError::new(field, "must be a positive integer"))?;
        if window == 0 {
            return Err(FieldError::new(field, "must be at least 1"));
        }
        if window > series_len as u64 {
            return Err(FieldError::new(
                field,
                format!("is {window} but the series has only {series_len} values"),
            ));
        }
        Ok(Self(window as u32))
    }

    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Checked parameters of one moving-average job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MovingAverageParams {
    pub window: Window,
    pub kind: AverageKind,
    /// Smoothing factor, in (0, 1]; set (defaulted if need be) for the exponential kind only.
    pub alpha: Option<f64>,
}

impl MovingAverageParams {
    pub const KEYS: &'static [&'static str] = &["window", "kind", "alpha"];

    pub fn parse(source: &ParamSource<'_>, series_len: usize) -> Result<Self, FieldError> {
        source.reject_unknown(Self::KEYS)?;
        let window = match source.get("window") {
            Some((value, field)) => Window::parse(value, &field, series_len)?,
            None => Window::parse(&json!(DEFAULT_WINDOW), "parameters.window", series_len)
                .map_err(|err| {
                    FieldError::new(
                        "data",
                        format!(
                            "has {series_len} values, fewer than the default window of \
                             {DEFAULT_WINDOW}; send a smaller parameters.window ({})",
                            err.message
                        ),
                    )
                })?,
        };
        let kind = match source.get("kind") {
            Some((value, field)) => AverageKind::parse(value, &field)?,
            None => AverageKind::default(),
        };
        let alpha = match source.get("alpha") {
            Some((Value::Null, _)) | None => None,
            Some((value, field)) => {
                if kind != AverageKind::Exponential {
                    return Err(FieldError::new(field, "applies only to kind 'exponential'"));
                }
                let alpha = value
                    .as_f64()
                    .ok_or_else(|| FieldError::new(&field, "must be a number"))?;
                if !(alpha > 0.0 && alpha <= 1.0) {
                    return Err(FieldError::new(field, "must be in (0, 1]"));
                }
                Some(alpha)
            }
        };
        let alpha = match (kind, alpha) {
            (AverageKind::Exponential, None) => Some(2.0 / (window.get() as f64 + 1.0)),
            (_, alpha) => alpha,
        };
        Ok(Self {
            window,
            kind,
            alpha,
        })
    }

    /// The smoothing factor actually used by the exponential kind.
    pub fn effective_alpha(&self) -> f64 {
        self.alpha.unwrap_or(2.0 / (self.window.get() as f64 + 1.0))
    }

    /// The parameters with every default filled in, as carried on the JOBS stream.
    pub fn to_canonical(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("window".into(), json!(self.window.get()));
        map.insert("kind".into(), json!(self.kind.as_str()));
        if self.kind == AverageKind::Exponential {
            map.insert("alpha".into(), json!(self.effective_alpha()));
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        parameters: Value,
        metadata: Value,
        len: usize,
    ) -> Result<MovingAverageParams, FieldError> {
        let parameters = parameters.as_object().cloned().unwrap_or_default();
        let metadata = metadata.as_object().cloned().unwrap_or_default();
        MovingAverageParams::parse(&ParamSource::new(&parameters, &metadata), len)
    }

    #[test]
    fn defaults_to_simple_window_five() {
        let params = parse(json!({}), json!({}), 10).unwrap();
        assert_eq!(params.window.get(), 5);
        assert_eq!(params.kind, AverageKind::Simple);
    }

    #[test]
    fn seed_metadata_window_is_honoured_and_parameters_win() {
        assert_eq!(
            parse(json!({}), json!({"window": 3}), 10)
                .unwrap()
                .window
                .get(),
            3
        );
        assert_eq!(
            parse(json!({"window": 2}), json!({"window": 3}), 10)
                .unwrap()
                .window
                .get(),
            2
        );
    }

    #[test]
    fn window_errors_name_their_source() {
        assert_eq!(
            parse(json!({"window": 0}), json!({}), 10)
                .unwrap_err()
                .field,
            "parameters.window"
        );
        assert_eq!(
            parse(json!({}), json!({"window": 11}), 10)
                .unwrap_err()
                .field,
            "metadata.window"
        );
        assert_eq!(
            parse(json!({"window": "x"}), json!({}), 10)
                .unwrap_err()
                .field,
            "parameters.window"
        );
        assert_eq!(
            parse(json!({"window": 1.5}), json!({}), 10)
                .unwrap_err()
                .field,
            "parameters.window"
        );
        assert_eq!(parse(json!({}), json!({}), 3).unwrap_err().field, "data");
    }

    #[test]
    fn unknown_parameter_and_kind_are_rejected() {
        assert_eq!(
            parse(json!({"windw": 2}), json!({}), 10).unwrap_err().field,
            "parameters.windw"
        );
        assert_eq!(
            parse(json!({"kind": "median"}), json!({}), 10)
                .unwrap_err()
                .field,
            "parameters.kind"
        );
    }

    #[test]
    fn alpha_only_for_exponential_and_in_range() {
        assert!(parse(json!({"alpha": 0.5}), json!({}), 10).is_err());
        assert!(parse(json!({"kind": "ema", "alpha": 0.0}), json!({}), 10).is_err());
        let params = parse(json!({"kind": "ema", "alpha": 0.5}), json!({}), 10).unwrap();
        assert_eq!(params.effective_alpha(), 0.5);
    }

    #[test]
    fn canonical_form_round_trips() {
        let params = parse(json!({"kind": "exponential", "window": 4}), json!({}), 10).unwrap();
        let canonical = Value::Object(params.to_canonical());
        let again = parse(canonical, json!({}), 10).unwrap();
        assert_eq!(params, again);
    }
}
