//! How many differences a series needs, decided as statsforecast's and R's `auto.arima`
//! decide it: the KPSS test for first differences (`ndiffs`), the strength of the season for
//! a seasonal difference (`nsdiffs` with the "seas" heuristic).

/// The 5 % critical value of the KPSS level-stationarity statistic (Kwiatkowski et al. 1992).
const KPSS_CRITICAL_5: f64 = 0.463;

/// The seasonal strength above which a seasonal difference is taken (Wang, Smith and Hyndman
/// 2006; the threshold of `forecast::nsdiffs` and statsforecast).
const SEASONAL_STRENGTH: f64 = 0.64;

/// The number of first differences (at most `max_d`) after which the KPSS test no longer
/// rejects level stationarity at 5 % (statsforecast's `ndiffs`).
pub fn first_differences(series: &[f64], max_d: usize) -> usize {
    let mut x = series.to_vec();
    if is_constant(&x) {
        return 0;
    }
    let mut d = 0;
    while d < max_d && kpss_rejects(&x) {
        d += 1;
        // statsforecast's `ndiffs` drops one more point after each difference than the
        // difference itself costs; kept, so that the two choose the same d.
        x = difference(&x, 1).into_iter().skip(1).collect();
        if is_constant(&x) {
            return d;
        }
    }
    d
}

/// Whether the KPSS statistic (level, Bartlett window of `floor(3 sqrt(n) / 13)` lags, as
/// `ndiffs` sets it) exceeds its 5 % critical value.
fn kpss_rejects(x: &[f64]) -> bool {
    let n = x.len();
    if n < 3 {
        return false;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let residuals: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let mut partial = 0.0;
    let eta = residuals
        .iter()
        .map(|r| {
            partial += r;
            partial * partial
        })
        .sum::<f64>()
        / (n * n) as f64;
    let lags = (3.0 * (n as f64).sqrt() / 13.0).floor() as usize;
    let mut spread = residuals.iter().map(|r| r * r).sum::<f64>();
    for lag in 1..=lags.min(n - 1) {
        let weight = 1.0 - lag as f64 / (lags as f64 + 1.0);
        let cross: f64 = (lag..n).map(|t| residuals[t] * residuals[t - lag]).sum();
        spread += 2.0 * weight * cross;
    }
    let spread = spread / n as f64;
    spread > 0.0 && eta / spread > KPSS_CRITICAL_5
}

/// Whether the series takes one seasonal difference of lag `m`: its seasonal strength,
/// `1 - var(remainder) / var(season + remainder)`, above 0.64. The decomposition follows STL
/// as statsforecast runs it (a seasonal window of 11 cycles, local constant fits): the trend
/// is a centred moving average of one season, and the season at each point the
/// tricube-weighted mean of the detrended values at the same position in the nearest 11
/// cycles, so a season that grows or shifts over the years is followed as STL follows it.
pub fn seasonal_difference(series: &[f64], m: usize) -> bool {
    let n = series.len();
    if m < 2 || n <= 2 * m || is_constant(series) {
        return false;
    }
    let trend = centred_average(series, m);
    let detrended: Vec<Option<f64>> = trend
        .iter()
        .zip(series)
        .map(|(level, y)| level.map(|level| y - level))
        .collect();
    let mut season = vec![None; n];
    for position in 0..m {
        let points: Vec<(usize, f64)> = (position..n)
            .step_by(m)
            .enumerate()
            .filter_map(|(cycle, t)| detrended[t].map(|v| (cycle, v)))
            .collect();
        for (cycle, t) in (position..n).step_by(m).enumerate() {
            if detrended[t].is_some() {
                season[t] = local_mean(&points, cycle, SEASONAL_WINDOW);
            }
        }
    }
    // STL takes the season's own trend out of it (its low-pass step): here the centred
    // moving average of the local seasons, where it is defined.
    let seasons: Vec<f64> = season.iter().map(|s| s.unwrap_or(f64::NAN)).collect();
    let level = centred_average(&seasons, m);
    let mut remainder = Vec::new();
    let mut without_trend = Vec::new();
    for t in 0..n {
        if let (Some(d), Some(s), Some(l)) = (detrended[t], season[t], level[t]) {
            if l.is_finite() {
                remainder.push(d - (s - l));
                without_trend.push(d);
            }
        }
    }
    if remainder.len() < 2 * m {
        return false;
    }
    let whole = variance(&without_trend);
    whole > 0.0 && (1.0 - variance(&remainder) / whole).clamp(0.0, 1.0) > SEASONAL_STRENGTH
}

/// The cycles over which a season is averaged (statsforecast's `s_window` of 7 + 4).
const SEASONAL_WINDOW: usize = 11;

/// The tricube-weighted mean of the `window` points (by cycle) nearest to `at`, a local
/// constant loess fit.
fn local_mean(points: &[(usize, f64)], at: usize, window: usize) -> Option<f64> {
    let mut distances: Vec<usize> = points.iter().map(|(c, _)| c.abs_diff(at)).collect();
    distances.sort_unstable();
    let reach = *distances.get(window.min(points.len()).checked_sub(1)?)?;
    // loess widens the reach when the window is wider than the data.
    let reach = if window > points.len() {
        reach as f64 * window as f64 / points.len() as f64
    } else {
        reach as f64
    }
    .max(1.0)
        * 1.000001;
    let (mut sum, mut weights) = (0.0, 0.0);
    for &(cycle, value) in points {
        let u = cycle.abs_diff(at) as f64 / reach;
        if u < 1.0 {
            let w = (1.0 - u * u * u).powi(3);
            sum += w * value;
            weights += w;
        }
    }
    (weights > 0.0).then(|| sum / weights)
}

/// The centred moving average of one season (a 2 x m average for an even m), `None` where the
/// window runs off the series.
fn centred_average(x: &[f64], m: usize) -> Vec<Option<f64>> {
    let n = x.len();
    let half = m / 2;
    (0..n)
        .map(|t| {
            if t < half || t + half >= n {
                return None;
            }
            if m % 2 == 1 {
                Some(x[t - half..=t + half].iter().sum::<f64>() / m as f64)
            } else {
                let inner: f64 = x[t - half + 1..t + half].iter().sum();
                Some((inner + 0.5 * (x[t - half] + x[t + half])) / m as f64)
            }
        })
        .collect()
}

fn variance(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (x.len() - 1) as f64
}

/// `x_t - x_{t-lag}`.
pub fn difference(x: &[f64], lag: usize) -> Vec<f64> {
    (lag..x.len()).map(|t| x[t] - x[t - lag]).collect()
}

pub fn is_constant(x: &[f64]) -> bool {
    x.windows(2).all(|w| w[0] == w[1])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reproducible stream of standard normal draws (xorshift and Box-Muller).
    pub fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed.max(1);
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform().max(1e-300), uniform());
                (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
            })
            .collect()
    }

    #[test]
    fn random_walks_take_one_difference_and_noise_none() {
        let walk = |seed| -> Vec<f64> {
            noise(seed, 200)
                .iter()
                .scan(0.0, |level, s| {
                    *level += s;
                    Some(*level)
                })
                .collect()
        };
        // The test has power, not certainty: nearly every walk is differenced once, nearly
        // no white noise is.
        let walks = (1..=20)
            .filter(|&s| first_differences(&walk(s), 2) == 1)
            .count();
        let noises = (1..=20)
            .filter(|&s| first_differences(&noise(s, 200), 2) == 0)
            .count();
        assert!(walks >= 17, "{walks} of 20 walks differenced once");
        assert!(noises >= 17, "{noises} of 20 noises left alone");
        assert_eq!(first_differences(&[3.0; 20], 2), 0);
    }

    #[test]
    fn a_strong_season_takes_a_seasonal_difference() {
        let wiggle = noise(3, 120);
        let seasonal: Vec<f64> = (0..120)
            .map(|t| 10.0 * (2.0 * std::f64::consts::PI * t as f64 / 12.0).sin() + wiggle[t])
            .collect();
        assert!(seasonal_difference(&seasonal, 12));
        assert!(!seasonal_difference(&wiggle, 12));
    }
}
