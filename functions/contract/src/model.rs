//! The registry of functions Orbit can run, and how each one's parameters are found.
//!
//! A model name the registry does not know is rejected at the edge, so nothing is enqueued on a
//! subject no function listens to.

use serde_json::{Map, Value};

use crate::lstm::LstmParams;
use crate::moving_average::MovingAverageParams;
use crate::FieldError;

/// A function Orbit serves. Its name is the NATS micro service name and the subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    MovingAverage,
    LstmTimeseries,
}

impl Model {
    /// Every model, in the order clients see them listed.
    pub const ALL: &'static [Model] = &[Model::MovingAverage, Model::LstmTimeseries];

    pub fn name(self) -> &'static str {
        match self {
            Model::MovingAverage => "moving_average",
            Model::LstmTimeseries => "lstm_timeseries",
        }
    }

    pub fn parse(name: &str, field: &str) -> Result<Self, FieldError> {
        Self::ALL
            .iter()
            .copied()
            .find(|model| model.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
                FieldError::new(
                    field,
                    format!("unknown model '{name}'; available: {}", known.join(", ")),
                )
            })
    }

    /// Parses this model's parameters for a series of `series_len` points.
    pub fn parse_params(
        self,
        source: &ParamSource<'_>,
        series_len: usize,
    ) -> Result<ModelParams, FieldError> {
        match self {
            Model::MovingAverage => {
                MovingAverageParams::parse(source, series_len).map(ModelParams::MovingAverage)
            }
            Model::LstmTimeseries => {
                LstmParams::parse(source, series_len).map(ModelParams::LstmTimeseries)
            }
        }
    }
}

/// Checked parameters, one variant per model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelParams {
    MovingAverage(MovingAverageParams),
    LstmTimeseries(LstmParams),
}

impl ModelParams {
    pub fn to_canonical(&self) -> Map<String, Value> {
        match self {
            ModelParams::MovingAverage(params) => params.to_canonical(),
            ModelParams::LstmTimeseries(params) => params.to_canonical(),
        }
    }
}

/// Where a job's parameters come from: `parameters` first, then the seed's `metadata` (the
/// seed sent `{"metadata": {"window": 5}}`), so old clients keep working.
pub struct ParamSource<'a> {
    parameters: &'a Map<String, Value>,
    metadata: &'a Map<String, Value>,
}

impl<'a> ParamSource<'a> {
    pub fn new(parameters: &'a Map<String, Value>, metadata: &'a Map<String, Value>) -> Self {
        Self {
            parameters,
            metadata,
        }
    }

    /// The value of `key` and the field name to blame if it is wrong.
    pub fn get(&self, key: &str) -> Option<(&'a Value, String)> {
        if let Some(value) = self.parameters.get(key) {
            return Some((value, format!("parameters.{key}")));
        }
        self.metadata
            .get(key)
            .map(|value| (value, format!("metadata.{key}")))
    }

    /// Rejects a `parameters` key the model does not know (a typo must not silently fall back
    /// to a default). `metadata` is free-form and never rejected.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), FieldError> {
        match self
            .parameters
            .keys()
            .find(|key| !known.contains(&key.as_str()))
        {
            Some(key) => Err(FieldError::new(
                format!("parameters.{key}"),
                format!("unknown parameter; expected one of: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }
}
