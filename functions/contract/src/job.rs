//! Jobs: the request a client sends, the checked job, and the envelope on the JOBS stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{Model, ModelParams, ParamSource};
use crate::{FieldError, Series};

/// The longest job id (and so `Idempotency-Key`) accepted.
pub const MAX_JOB_ID_LEN: usize = 128;

/// A job id: a UUIDv7 minted by the gateway, or the client's `Idempotency-Key`. It is the
/// JetStream `Nats-Msg-Id` of a job published alone and of its result (a bundle's id starts
/// with its first job's, [`crate::bundle::bundle_id`]), and the primary key of every sink.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, which are safe in a NATS header,
    /// a Redis key, a Kafka key and a URL path.
    pub fn parse(value: &str, field: &str) -> Result<Self, FieldError> {
        if value.is_empty() || value.len() > MAX_JOB_ID_LEN {
            return Err(FieldError::new(
                field,
                format!("must be 1 to {MAX_JOB_ID_LEN} characters"),
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(FieldError::new(
                field,
                "may contain only letters, digits, '.', '_', ':' and '-'",
            ));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client submits (seed-compatible):
/// `{"model_name": "moving_average", "data": [...], "metadata": {...}, "parameters": {...}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JobRequest {
    pub model_name: String,
    pub data: Vec<f64>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

/// The body of a synchronous call on `orbit.fn.<function>`: the subject names the function, so
/// `model_name` is optional (and must match when given).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SyncRequest {
    #[serde(default)]
    pub model_name: Option<String>,
    pub data: Vec<f64>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

impl SyncRequest {
    /// Turns the call into a job request for `function`.
    pub fn into_job_request(self, function: &str) -> Result<JobRequest, FieldError> {
        if let Some(name) = &self.model_name {
            if name != function {
                return Err(FieldError::new(
                    "model_name",
                    format!("is '{name}' but this endpoint serves '{function}'"),
                ));
            }
        }
        Ok(JobRequest {
            model_name: function.to_string(),
            data: self.data,
            metadata: self.metadata,
            parameters: self.parameters,
        })
    }
}

/// A job whose every part has been checked: known model, usable series, valid parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    pub model: Model,
    pub series: Series,
    pub params: ModelParams,
    /// Free-form client metadata (the seed's `pattern`, ...), passed through to the result.
    pub metadata: Map<String, Value>,
}

impl ValidJob {
    pub fn parse(request: JobRequest) -> Result<Self, FieldError> {
        let model = Model::parse(&request.model_name, "model_name")?;
        let series = Series::parse(request.data, "data")?;
        let metadata = request.metadata.unwrap_or_default();
        let parameters = request.parameters.unwrap_or_default();
        let params = model.parse_params(&ParamSource::new(&parameters, &metadata), series.len())?;
        Ok(Self {
            model,
            series,
            params,
            metadata,
        })
    }

    /// The envelope published on the JOBS stream.
    pub fn into_envelope(self, job_id: JobId, submitted_at: DateTime<Utc>) -> JobEnvelope {
        JobEnvelope {
            job_id,
            model_name: self.model.name().to_string(),
            parameters: self.params.to_canonical(),
            data: self.series.into_inner(),
            metadata: self.metadata,
            submitted_at,
        }
    }
}

/// A job as carried on `orbit.jobs.<function>`: the request with its id, its submit time and
/// its parameters in canonical form (every default filled in).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobEnvelope {
    pub job_id: JobId,
    pub model_name: String,
    pub data: Vec<f64>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub submitted_at: DateTime<Utc>,
}

impl JobEnvelope {
    /// Re-checks an envelope read off the stream: anything can publish on a subject, so a
    /// function trusts only what it parsed itself.
    pub fn to_valid(&self) -> Result<ValidJob, FieldError> {
        ValidJob::parse(JobRequest {
            model_name: self.model_name.clone(),
            data: self.data.clone(),
            metadata: Some(self.metadata.clone()),
            parameters: Some(self.parameters.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_json;

    #[test]
    fn seed_request_parses_and_validates() {
        let request: JobRequest = parse_json(
            br#"{"model_name":"moving_average","data":[1,2,3,4,5,6],"metadata":{"window":5,"pattern":"seasonal"}}"#,
        )
        .unwrap();
        let job = ValidJob::parse(request).unwrap();
        assert_eq!(job.model, Model::MovingAverage);
        assert_eq!(job.metadata["pattern"], "seasonal");
    }

    #[test]
    fn unknown_model_is_named() {
        let request: JobRequest = parse_json(br#"{"model_name":"gpt","data":[1]}"#).unwrap();
        let err = ValidJob::parse(request).unwrap_err();
        assert_eq!(err.field, "model_name");
        assert!(err.message.contains("moving_average"));
    }

    #[test]
    fn envelope_round_trip_keeps_the_job() {
        let request: JobRequest =
            parse_json(br#"{"model_name":"moving_average","data":[1,2,3],"parameters":{"window":2,"kind":"wma"}}"#)
                .unwrap();
        let job = ValidJob::parse(request).unwrap();
        let envelope = job.clone().into_envelope(JobId::generate(), Utc::now());
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let back: JobEnvelope = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.to_valid().unwrap(), job);
    }

    #[test]
    fn job_id_rules() {
        assert!(JobId::parse("order-42:retry.1_a", "Idempotency-Key").is_ok());
        assert!(JobId::parse("", "Idempotency-Key").is_err());
        assert!(JobId::parse("a b", "Idempotency-Key").is_err());
        assert!(JobId::parse(&"a".repeat(129), "Idempotency-Key").is_err());
        assert_ne!(JobId::generate(), JobId::generate());
    }

    #[test]
    fn sync_request_must_match_its_endpoint() {
        let call: SyncRequest = parse_json(br#"{"model_name":"other","data":[1]}"#).unwrap();
        assert_eq!(
            call.into_job_request("moving_average").unwrap_err().field,
            "model_name"
        );
    }
}
