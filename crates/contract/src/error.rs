//! The one error shape for bad input: which field is wrong and why.
//!
//! The gateway turns it into an HTTP 4xx JSON body and the function runtime into a NATS service
//! error, so a client sees the same wording whichever door it came through.

use serde::{Deserialize, Serialize};

/// A rejected input, naming the offending field with a JSON-path-like name such as
/// `data[3]` or `parameters.window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Where the problem is (`data`, `data[7]`, `parameters.window`, `body`, ...).
    pub field: String,
    /// What is wrong, in words a client can act on.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix` in front of its field, for errors inside a batch entry.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() || self.field == "body" {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// Deserializes `bytes` as JSON, naming the field that failed (`data[2]`, `model_name`).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    // The plain parse first: tracking the path costs on every field, and only a failure needs
    // it, so a bad body is parsed a second time to say where it went wrong.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = if path == "." || path.is_empty() {
            "body".to_string()
        } else {
            path
        };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else {
            inner.to_string()
        };
        FieldError::new(field, message)
    })?;
    deserializer
        .end()
        .map_err(|err| FieldError::new("body", format!("malformed JSON: {err}")))?;
    Ok(value)
}

/// Deserializes an already-parsed JSON value, naming the field that failed.
pub fn parse_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        FieldError::new(field, err.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_come_through_the_field_naming_parser() {
        let raw: Box<serde_json::value::RawValue> =
            parse_json(br#"{"jobs": [1, 2.5]}"#).expect("raw");
        assert_eq!(raw.get(), r#"{"jobs": [1, 2.5]}"#);
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        data: Vec<f64>,
    }

    #[test]
    fn names_the_element_with_the_wrong_type() {
        let err = parse_json::<Sample>(br#"{"data":[1.0,"x"]}"#).unwrap_err();
        assert_eq!(err.field, "data[1]");
        assert!(err.message.contains("invalid type"), "{err}");
    }

    #[test]
    fn malformed_json_is_reported_against_the_body() {
        let err = parse_json::<Sample>(b"{\"data\":[1,").unwrap_err();
        assert!(err.message.starts_with("malformed JSON"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let err = parse_json::<Sample>(b"{}").unwrap_err();
        assert!(err.message.contains("missing field `data`"), "{err}");
    }

    #[test]
    fn within_prefixes_batch_entries() {
        let err = FieldError::new("data[1]", "bad").within("jobs[3]");
        assert_eq!(err.field, "jobs[3].data[1]");
    }
}
