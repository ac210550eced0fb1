//! Finding a series' season length when the request gives none: the lag of the highest peak of
//! the autocorrelation of the linearly detrended series, if that peak is clearly above noise.

/// The season length of `series`, or `None` when it shows none.
pub fn detect(series: &[f64]) -> Option<usize> {
    let n = series.len();
    if n < 8 {
        return None;
    }
    // Remove the least-squares line, which would otherwise make every lag look correlated.
    let mean_t = (n - 1) as f64 / 2.0;
    let mean_y = series.iter().sum::<f64>() / n as f64;
    let (mut covariance, mut variance_t) = (0.0, 0.0);
    for (t, &y) in series.iter().enumerate() {
        covariance += (t as f64 - mean_t) * (y - mean_y);
        variance_t += (t as f64 - mean_t).powi(2);
    }
    let slope = covariance / variance_t;
    let residuals: Vec<f64> = series
        .iter()
        .enumerate()
        .map(|(t, &y)| y - mean_y - slope * (t as f64 - mean_t))
        .collect();
    let variance: f64 = residuals.iter().map(|r| r * r).sum();
    if variance <= f64::EPSILON * n as f64 {
        return None;
    }
    let max_lag = (n / 2).min(400);
    let acf: Vec<f64> = (0..=max_lag + 1)
        .map(|lag| {
            residuals[..n - lag.min(n)]
                .iter()
                .zip(&residuals[lag.min(n)..])
                .map(|(a, b)| a * b)
                .sum::<f64>()
                / variance
        })
        .collect();
    // Above both a fixed bar and the noise band of a white series (about 2 / sqrt(n)).
    let threshold = (2.0 / (n as f64).sqrt()).max(0.25);
    (2..=max_lag)
        .filter(|&lag| acf[lag] > threshold && acf[lag] >= acf[lag - 1] && acf[lag] >= acf[lag + 1])
        .max_by(|&a, &b| {
            // The highest peak; near-ties go to the shorter lag (a season, not its multiple).
            let (x, y) = (acf[a], acf[b]);
            if (x - y).abs() < 0.05 {
                b.cmp(&a)
            } else {
                x.total_cmp(&y)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_season_of_a_trending_seasonal_series() {
        for period in [4usize, 7, 12, 24] {
            let series: Vec<f64> = (0..(period * 8))
                .map(|t| {
                    100.0
                        + 2.0 * t as f64
                        + 10.0 * (2.0 * std::f64::consts::PI * t as f64 / period as f64).sin()
                })
                .collect();
            assert_eq!(detect(&series), Some(period), "period {period}");
        }
    }

    #[test]
    fn finds_none_in_a_line_or_noise() {
        let line: Vec<f64> = (0..100).map(|t| t as f64).collect();
        assert_eq!(detect(&line), None);
        let mut state = 1u64;
        let noise: Vec<f64> = (0..200)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        assert_eq!(detect(&noise), None);
    }
}
