//! Turning a series into a model row and a model's forecast back into the series' units.
//!
//! These are the documented pre- and post-processing choices of `config.toml` (`processing =
//! "standardise"`, `output.kind = "forecast"`); they are the only code the LSTM forecaster
//! needs of its own, and any other series model can choose them too.

/// Mean and spread of one window, and the window in model units.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub mean: f64,
    pub std: f64,
    pub values: Vec<f64>,
}

/// Per-series standardisation: population standard deviation, floored at
/// `1e-6 * max(1, |mean|)` so a constant series maps to zeros instead of dividing by zero.
/// Both sums are plain left-to-right loops, which is what the LSTM was trained with
/// (`models/lstm_net/normalisation.py`), bit for bit.
pub fn standardise(window: &[f64]) -> Prepared {
    let n = window.len() as f64;
    let mean = window.iter().sum::<f64>() / n;
    let variance = window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let std = variance.sqrt().max(1e-6 * mean.abs().max(1.0));
    let values = window.iter().map(|x| (x - mean) / std).collect();
    Prepared { mean, std, values }
}

/// The window unchanged (`processing = "none"`): mean 0 and spread 1 map outputs back as
/// they are.
pub fn identity(window: &[f64]) -> Prepared {
    Prepared {
        mean: 0.0,
        std: 1.0,
        values: window.to_vec(),
    }
}

/// The points a model reads: the most recent `max_context` at most.
pub fn context(series: &[f64], max_context: Option<usize>) -> &[f64] {
    match max_context {
        Some(max) => &series[series.len().saturating_sub(max)..],
        None => series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardisation_is_scale_free_and_handles_constants() {
        let a = standardise(&[1.0, 2.0, 3.0, 4.0]);
        let b = standardise(&[1000.0, 2000.0, 3000.0, 4000.0]);
        let close = a
            .values
            .iter()
            .zip(&b.values)
            .all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close, "{a:?} {b:?}");
        let flat = standardise(&[5.0; 20]);
        assert!(flat.values.iter().all(|v| *v == 0.0));
        assert!(flat.std > 0.0);
    }

    #[test]
    fn context_keeps_the_most_recent_points() {
        let series: Vec<f64> = (0..300).map(f64::from).collect();
        let window = context(&series, Some(256));
        assert_eq!(window.len(), 256);
        assert_eq!(window[255], 299.0);
        assert_eq!(context(&series[..20], Some(256)).len(), 20);
        assert_eq!(context(&series, None).len(), 300);
    }
}
