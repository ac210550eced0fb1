//! A time series that is known to be usable: non-empty, finite, and not absurdly long.

use crate::FieldError;

/// The most points one job may carry. Large enough for a year of minute data in chunks, small
/// enough that one request cannot tie up a worker or blow the 1 MB NATS message limit
/// (100,000 points are about 1.9 MB of JSON at full precision, so the NATS server's
/// `max_payload` is raised to 8 MB in `nats/`).
pub const MAX_SERIES_POINTS: usize = 100_000;

/// An ordered series of finite `f64` values with 1 to [`MAX_SERIES_POINTS`] points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series(Vec<f64>);

impl Series {
    /// Checks `values`; `field` names them in the error (`data`).
    pub fn parse(values: Vec<f64>, field: &str) -> Result<Self, FieldError> {
        if values.is_empty() {
            return Err(FieldError::new(field, "must contain at least one value"));
        }
        if values.len() > MAX_SERIES_POINTS {
            return Err(FieldError::new(
                field,
                format!(
                    "has {} values; the maximum is {MAX_SERIES_POINTS}",
                    values.len()
                ),
            ));
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(FieldError::new(
                format!("{field}[{index}]"),
                "must be a finite number (NaN and infinity are not allowed)",
            ));
        }
        Ok(Self(values))
    }

    pub fn values(&self) -> &[f64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `Series` holds at least one value. Present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_inner(self) -> Vec<f64> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty() {
        assert_eq!(Series::parse(vec![], "data").unwrap_err().field, "data");
    }

    #[test]
    fn rejects_non_finite_and_names_the_index() {
        let err = Series::parse(vec![1.0, f64::NAN], "data").unwrap_err();
        assert_eq!(err.field, "data[1]");
        let err = Series::parse(vec![f64::INFINITY], "data").unwrap_err();
        assert_eq!(err.field, "data[0]");
    }

    #[test]
    fn rejects_oversized() {
        let err = Series::parse(vec![0.0; MAX_SERIES_POINTS + 1], "data").unwrap_err();
        assert!(err.message.contains("maximum"), "{err}");
        assert!(Series::parse(vec![0.0; MAX_SERIES_POINTS], "data").is_ok());
    }
}
