//! Parameters of the `lstm_timeseries` forecaster, checked against the series.

use serde_json::{json, Map, Value};

use crate::model::ParamSource;
use crate::FieldError;

/// Fewest points the model accepts: shorter windows carry too little shape to forecast from.
pub const MIN_CONTEXT: usize = 16;
/// Most recent points the model reads; longer series are accepted and their tail is used
/// (the model was trained on windows of 16 to 256 points).
pub const MAX_CONTEXT: usize = 256;
/// Steps the model forecasts in one pass (a direct multi-horizon head).
pub const MAX_HORIZON: usize = 24;
/// Steps returned when the request names none.
pub const DEFAULT_HORIZON: usize = 12;

/// Checked parameters of one forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LstmParams {
    /// Steps to return, 1 to [`MAX_HORIZON`].
    pub horizon: usize,
}

impl LstmParams {
    pub const KEYS: &'static [&'static str] = &["horizon"];

    pub fn parse(source: &ParamSource<'_>, series_len: usize) -> Result<Self, FieldError> {
        source.reject_unknown(Self::KEYS)?;
        if series_len < MIN_CONTEXT {
            return Err(FieldError::new(
                "data",
                format!("has {series_len} values; lstm_timeseries needs at least {MIN_CONTEXT}"),
            ));
        }
        let horizon = match source.get("horizon") {
            None => DEFAULT_HORIZON,
            Some((value, field)) => {
                let horizon = value
                    .as_u64()
                    .ok_or_else(|| FieldError::new(&field, "must be a positive integer"))?;
                if horizon == 0 || horizon > MAX_HORIZON as u64 {
                    return Err(FieldError::new(
                        field,
                        format!("must be 1 to {MAX_HORIZON}, got {horizon}"),
                    ));
                }
                horizon as usize
            }
        };
        Ok(Self { horizon })
    }

    pub fn to_canonical(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("horizon".into(), json!(self.horizon));
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parameters: Value, len: usize) -> Result<LstmParams, FieldError> {
        let parameters = parameters.as_object().cloned().unwrap_or_default();
        LstmParams::parse(&ParamSource::new(&parameters, &Map::new()), len)
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(parse(json!({}), 16).unwrap().horizon, DEFAULT_HORIZON);
        assert_eq!(parse(json!({"horizon": 24}), 100).unwrap().horizon, 24);
        assert_eq!(
            parse(json!({"horizon": 25}), 100).unwrap_err().field,
            "parameters.horizon"
        );
        assert_eq!(
            parse(json!({"horizon": 0}), 100).unwrap_err().field,
            "parameters.horizon"
        );
        assert_eq!(parse(json!({}), 15).unwrap_err().field, "data");
        assert_eq!(
            parse(json!({"window": 3}), 100).unwrap_err().field,
            "parameters.window"
        );
    }
}
