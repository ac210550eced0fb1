//! Holt-Winters exponential smoothing (the ETS error-correction form in Hyndman et al.,
//! *Forecasting with Exponential Smoothing*, 2008): level, optional (damped) trend, optional
//! additive or multiplicative season; one-step errors for fitting, forecasts and the variance of
//! a forecast `h` steps ahead for prediction intervals.

/// How the trend evolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    None,
    Additive,
    /// Additive, fading by `phi` per step.
    Damped,
}

/// How the season combines with level and trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Season {
    None,
    Additive,
    Multiplicative,
}

/// The model's shape: which components it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub trend: Trend,
    pub season: Season,
    /// Season length (1 when there is no season).
    pub period: usize,
}

/// Smoothing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parameters {
    pub alpha: f64,
    /// Trend smoothing, in the Holt-Winters form (a share of the level's change).
    pub beta: f64,
    pub gamma: f64,
    /// Damping (1 for an undamped trend).
    pub phi: f64,
}

/// The state after the last observation, and how well the model tracked the series.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub level: f64,
    pub trend: f64,
    /// The last `period` seasonal components, oldest first.
    pub seasonal: Vec<f64>,
    /// Sum of squared one-step errors.
    pub sse: f64,
    pub points: usize,
}

impl Spec {
    /// Fewest points a fit needs: two full seasons, or four points without a season.
    pub fn min_points(&self) -> usize {
        if self.season == Season::None {
            4
        } else {
            (2 * self.period).max(4)
        }
    }
}

/// The usual starting state: the first season's mean as level, the change between the first
/// two seasons' means as trend, and the first season's deviations (or ratios) as season.
fn initial_state(series: &[f64], spec: &Spec) -> (f64, f64, Vec<f64>) {
    let m = spec.period.max(1);
    if spec.season == Season::None {
        let trend = if spec.trend == Trend::None || series.len() < 2 {
            0.0
        } else {
            series[1] - series[0]
        };
        return (series[0], trend, vec![0.0]);
    }
    let first: f64 = series[..m].iter().sum::<f64>() / m as f64;
    let second: f64 = series[m..2 * m].iter().sum::<f64>() / m as f64;
    let trend = if spec.trend == Trend::None {
        0.0
    } else {
        (second - first) / m as f64
    };
    let seasonal = series[..m]
        .iter()
        .map(|&y| match spec.season {
            Season::Multiplicative => y / first,
            _ => y - first,
        })
        .collect();
    (first, trend, seasonal)
}

/// Runs the smoothing recursions over `series`. `None` when the state leaves the finite
/// numbers (parameters that explode, or a multiplicative season meeting a zero).
pub fn smooth(series: &[f64], spec: &Spec, p: &Parameters) -> Option<Fitted> {
    let m = spec.period.max(1);
    let (mut level, mut trend, mut seasonal) = initial_state(series, spec);
    let phi = if spec.trend == Trend::Damped {
        p.phi
    } else {
        1.0
    };
    let mut sse = 0.0;
    for (t, &y) in series.iter().enumerate() {
        let damped = if spec.trend == Trend::None {
            0.0
        } else {
            phi * trend
        };
        let base = level + damped;
        let s = seasonal[t % m];
        let forecast = match spec.season {
            Season::None => base,
            Season::Additive => base + s,
            Season::Multiplicative => base * s,
        };
        let error = y - forecast;
        sse += error * error;
        let new_level = match spec.season {
            Season::None => p.alpha * y + (1.0 - p.alpha) * base,
            Season::Additive => p.alpha * (y - s) + (1.0 - p.alpha) * base,
            Season::Multiplicative => p.alpha * (y / s) + (1.0 - p.alpha) * base,
        };
        if spec.trend != Trend::None {
            trend = p.beta * (new_level - level) + (1.0 - p.beta) * damped;
        }
        match spec.season {
            Season::None => {}
            Season::Additive => seasonal[t % m] = p.gamma * (y - base) + (1.0 - p.gamma) * s,
            Season::Multiplicative => seasonal[t % m] = p.gamma * (y / base) + (1.0 - p.gamma) * s,
        }
        level = new_level;
        if !(level.is_finite() && trend.is_finite() && sse.is_finite()) {
            return None;
        }
    }
    // Oldest first: the component used next is seasonal[n % m].
    let n = series.len();
    let seasonal = (0..m).map(|i| seasonal[(n + i) % m]).collect();
    Some(Fitted {
        level,
        trend,
        seasonal,
        sse,
        points: n,
    })
}

/// Sum of `phi^1..=phi^h` (or `h` for an undamped trend).
fn damped_steps(spec: &Spec, phi: f64, h: usize) -> f64 {
    match spec.trend {
        Trend::None => 0.0,
        Trend::Additive => h as f64,
        Trend::Damped => (1..=h).map(|i| phi.powi(i as i32)).sum(),
    }
}

/// Point forecasts for steps 1..=horizon.
pub fn forecast(fitted: &Fitted, spec: &Spec, p: &Parameters, horizon: usize) -> Vec<f64> {
    let m = spec.period.max(1);
    (1..=horizon)
        .map(|h| {
            let base = fitted.level + damped_steps(spec, p.phi, h) * fitted.trend;
            let s = fitted.seasonal[(h - 1) % m];
            match spec.season {
                Season::None => base,
                Season::Additive => base + s,
                Season::Multiplicative => base * s,
            }
        })
        .collect()
}

/// The forecast variance at each step 1..=horizon, as a multiple of the one-step variance:
/// `1 + sum_{j<h} c_j^2` with `c_j = alpha (1 + beta phi_j) + gamma [j is a whole season]`
/// (exact for additive seasons; for a multiplicative one it is the usual approximation).
pub fn variance_factors(spec: &Spec, p: &Parameters, horizon: usize) -> Vec<f64> {
    let m = spec.period.max(1);
    let mut total = 1.0;
    let mut factors = Vec::with_capacity(horizon);
    for h in 1..=horizon {
        factors.push(total);
        let j = h;
        let trend_part = if spec.trend == Trend::None {
            0.0
        } else {
            p.beta * damped_steps(spec, p.phi, j)
        };
        let season_part = if spec.season != Season::None && j % m == 0 {
            p.gamma
        } else {
            0.0
        };
        let c = p.alpha * (1.0 + trend_part) + season_part;
        total += c * c;
    }
    factors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasonal_series(n: usize, m: usize) -> Vec<f64> {
        (0..n)
            .map(|t| 50.0 + 10.0 * (2.0 * std::f64::consts::PI * t as f64 / m as f64).sin())
            .collect()
    }

    #[test]
    fn a_perfectly_seasonal_series_is_forecast_exactly() {
        let m = 12;
        let series = seasonal_series(120, m);
        let spec = Spec {
            trend: Trend::None,
            season: Season::Additive,
            period: m,
        };
        let p = Parameters {
            alpha: 0.5,
            beta: 0.1,
            gamma: 0.1,
            phi: 1.0,
        };
        let fitted = smooth(&series, &spec, &p).unwrap();
        let future = seasonal_series(144, m);
        for (h, value) in forecast(&fitted, &spec, &p, 24).iter().enumerate() {
            assert!(
                (value - future[120 + h]).abs() < 1e-9,
                "step {h}: {value} vs {}",
                future[120 + h]
            );
        }
    }

    #[test]
    fn simple_smoothing_without_trend_or_season_is_flat() {
        let spec = Spec {
            trend: Trend::None,
            season: Season::None,
            period: 1,
        };
        let p = Parameters {
            alpha: 0.5,
            beta: 0.0,
            gamma: 0.0,
            phi: 1.0,
        };
        let fitted = smooth(&[1.0, 2.0, 3.0, 4.0], &spec, &p).unwrap();
        let out = forecast(&fitted, &spec, &p, 3);
        assert!(out.iter().all(|v| (v - out[0]).abs() < 1e-12));
        assert_eq!(variance_factors(&spec, &p, 3), vec![1.0, 1.25, 1.5]);
    }

    #[test]
    fn damping_bends_the_trend_flat() {
        let series: Vec<f64> = (0..40).map(|t| t as f64).collect();
        let spec = Spec {
            trend: Trend::Damped,
            season: Season::None,
            period: 1,
        };
        let p = Parameters {
            alpha: 0.8,
            beta: 0.5,
            gamma: 0.0,
            phi: 0.8,
        };
        let fitted = smooth(&series, &spec, &p).unwrap();
        let out = forecast(&fitted, &spec, &p, 50);
        assert!(out[49] - out[48] < 1e-3, "converges");
        assert!(out[49] < 45.0);
    }
}
