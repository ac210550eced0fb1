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

/// How the one-step errors are modelled. Both run the same recursions and give the same point
/// forecasts for the same parameters; they differ in what a good fit is. Additive: errors of
/// one size throughout (least squares). Multiplicative: errors in proportion to the forecast,
/// for positive series whose noise grows with their level (the ETS(M,..) models of Hyndman et
/// al. 2008), so a fit is not ruled by the series' largest stretch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    Additive,
    Multiplicative,
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
    /// Sum of squared one-step errors relative to their forecasts.
    pub relative_sse: f64,
    /// Sum of the logarithms of the forecasts' sizes.
    pub log_forecasts: f64,
    pub points: usize,
}

impl Fitted {
    /// Minus twice the log-likelihood of the one-step errors, up to a constant shared by both
    /// kinds of errors (so fits of either kind compare by AIC): `n ln(SSE/n)` for additive
    /// errors, `n ln(SSE_rel/n) + 2 sum ln|forecast|` for multiplicative ones. Infinite when the
    /// errors cannot be of that kind (a forecast of 0 or below under multiplicative errors).
    pub fn deviance(&self, errors: Errors) -> f64 {
        let n = self.points as f64;
        let value = match errors {
            Errors::Additive => n * (self.sse / n).max(f64::MIN_POSITIVE).ln(),
            Errors::Multiplicative => {
                n * (self.relative_sse / n).max(f64::MIN_POSITIVE).ln() + 2.0 * self.log_forecasts
            }
        };
        if value.is_nan() {
            f64::INFINITY
        } else {
            value
        }
    }
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

/// The state before the first observation: level, trend and one seasonal component per
/// position in the season (the first season's positions, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub level: f64,
    pub trend: f64,
    pub seasonal: Vec<f64>,
}

/// A starting state from the series itself, the heuristic of R's `forecast::ets`
/// (Hyndman et al. 2008, section 2.6.1): the season from a classical decomposition of the first
/// few seasons (a centred moving average, the deviations or ratios from it averaged per
/// position and normalised), then level and trend from a straight line through the first
/// `max(10, 2m)` seasonally adjusted points. The fit moves it from there; the first season's
/// raw values alone made noisy seasons and a trend of one step's change.
pub fn initial_state(series: &[f64], spec: &Spec) -> Start {
    let m = spec.period.max(1);
    let n = series.len();
    let seasonal = if spec.season == Season::None {
        vec![0.0]
    } else {
        decomposed_season(&series[..(n / m).clamp(2, 4) * m], spec.season, m)
    };
    let adjusted: Vec<f64> = series
        .iter()
        .enumerate()
        .take(10.max(2 * m).min(n))
        .map(|(t, &y)| match spec.season {
            Season::None => y,
            Season::Additive => y - seasonal[t % m],
            Season::Multiplicative => y / seasonal[t % m],
        })
        .collect();
    let points = adjusted.len() as f64;
    let mean_t = (points + 1.0) / 2.0;
    let mean_y = adjusted.iter().sum::<f64>() / points;
    if spec.trend == Trend::None || adjusted.len() < 2 {
        return Start {
            level: mean_y,
            trend: 0.0,
            seasonal,
        };
    }
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (i, y) in adjusted.iter().enumerate() {
        let dt = (i + 1) as f64 - mean_t;
        covariance += dt * (y - mean_y);
        variance += dt * dt;
    }
    let trend = covariance / variance;
    Start {
        level: mean_y - trend * mean_t,
        trend,
        seasonal,
    }
}

/// Seasonal components of whole seasons `series` by classical decomposition: each point's
/// deviation from (or ratio to) the centred moving average of one season, averaged per
/// position, then made to sum to 0 (or average 1).
fn decomposed_season(series: &[f64], season: Season, m: usize) -> Vec<f64> {
    let n = series.len();
    let half = m / 2;
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for t in half..n.saturating_sub(half) {
        let average = if m.is_multiple_of(2) {
            // The 2xm moving average: the ends count half.
            (series[t - half] / 2.0
                + series[t - half + 1..t + half].iter().sum::<f64>()
                + series[t + half] / 2.0)
                / m as f64
        } else {
            series[t - half..=t + half].iter().sum::<f64>() / m as f64
        };
        sums[t % m] += match season {
            Season::Multiplicative => series[t] / average,
            _ => series[t] - average,
        };
        counts[t % m] += 1;
    }
    let neutral = if season == Season::Multiplicative {
        1.0
    } else {
        0.0
    };
    let raw: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(&s, &c)| if c == 0 { neutral } else { s / c as f64 })
        .collect();
    normalised(raw, season)
}

/// Seasonal components shifted to sum to 0 (additive) or scaled to average 1 (multiplicative).
pub fn normalised(mut seasonal: Vec<f64>, season: Season) -> Vec<f64> {
    let mean = seasonal.iter().sum::<f64>() / seasonal.len() as f64;
    for s in &mut seasonal {
        match season {
            Season::Multiplicative if mean > 0.0 => *s /= mean,
            Season::Multiplicative => {}
            _ => *s -= mean,
        }
    }
    seasonal
}

/// Runs the smoothing recursions over `series` from `start`. `None` when the state leaves the
/// finite numbers (parameters that explode, or a multiplicative season meeting a zero).
pub fn smooth_from(series: &[f64], spec: &Spec, p: &Parameters, start: &Start) -> Option<Fitted> {
    smooth_visiting(series, spec, p, start, |_| {})
}

/// The state as the recursions carry it before they read `series[t]`: the seasonal components
/// in a ring, `next` the position of the one that point uses.
struct Running<'a> {
    t: usize,
    level: f64,
    trend: f64,
    seasonal: &'a [f64],
    next: usize,
}

/// [`smooth_from`], showing `visit` the state before each point.
fn smooth_visiting(
    series: &[f64],
    spec: &Spec,
    p: &Parameters,
    start: &Start,
    mut visit: impl FnMut(Running),
) -> Option<Fitted> {
    let m = spec.period.max(1);
    let (mut level, mut trend, mut seasonal) = (start.level, start.trend, start.seasonal.clone());
    let phi = if spec.trend == Trend::Damped {
        p.phi
    } else {
        1.0
    };
    let (mut sse, mut relative_sse, mut log_forecasts) = (0.0, 0.0, 0.0);
    // The forecasts' product, its logarithm taken only when it nears the ends of f64: a
    // logarithm per step was half the cost of a fit.
    let mut product = 1.0f64;
    let mut position = 0;
    for (t, &y) in series.iter().enumerate() {
        visit(Running {
            t,
            level,
            trend,
            seasonal: &seasonal,
            next: position,
        });
        let damped = if spec.trend == Trend::None {
            0.0
        } else {
            phi * trend
        };
        let base = level + damped;
        let s = seasonal[position];
        let forecast = match spec.season {
            Season::None => base,
            Season::Additive => base + s,
            Season::Multiplicative => base * s,
        };
        let error = y - forecast;
        sse += error * error;
        relative_sse += (error / forecast).powi(2);
        // A forecast of 0 or below rules multiplicative errors out (NaN: `deviance` says so).
        product *= if forecast > 0.0 { forecast } else { f64::NAN };
        if !(1e-150..=1e150).contains(&product) {
            log_forecasts += product.ln();
            product = 1.0;
        }
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
            Season::Additive => seasonal[position] = p.gamma * (y - base) + (1.0 - p.gamma) * s,
            Season::Multiplicative => {
                seasonal[position] = p.gamma * (y / base) + (1.0 - p.gamma) * s
            }
        }
        position = if position + 1 == m { 0 } else { position + 1 };
        level = new_level;
        if !(level.is_finite() && trend.is_finite() && sse.is_finite()) {
            return None;
        }
    }
    log_forecasts += product.ln();
    // Oldest first: the component used next is seasonal[n % m].
    let n = series.len();
    let seasonal = (0..m).map(|i| seasonal[(n + i) % m]).collect();
    Some(Fitted {
        level,
        trend,
        seasonal,
        sse,
        relative_sse,
        log_forecasts,
        points: n,
    })
}

/// The model's own errors `h` steps ahead inside the series, for h in 1..=horizon: the root
/// mean square of `y[t+h-1] - forecast from t` (relative to the forecast under multiplicative
/// errors) over the origins `t` of the series' second half, all from one pass of the
/// recursions. `None` where fewer than 8 origins reach that far.
pub fn in_sample_spread(
    series: &[f64],
    spec: &Spec,
    p: &Parameters,
    start: &Start,
    errors: Errors,
    horizon: usize,
) -> Vec<Option<f64>> {
    let n = series.len();
    let first = (n / 2).max(spec.min_points());
    let mut sums = vec![(0.0, 0usize); horizon];
    smooth_visiting(series, spec, p, start, |state| {
        if state.t < first {
            return;
        }
        for (h, sum) in sums.iter_mut().enumerate().take(n - state.t) {
            let forecast = ahead(spec, p, &state, h + 1);
            let error = series[state.t + h] - forecast;
            let error = match errors {
                Errors::Additive => error,
                Errors::Multiplicative => error / forecast,
            };
            if error.is_finite() {
                sum.0 += error * error;
                sum.1 += 1;
            }
        }
    });
    sums.into_iter()
        .map(|(sum, count)| (count >= 8).then(|| (sum / count as f64).sqrt()))
        .collect()
}

/// The forecast `h` steps ahead of `state`.
fn ahead(spec: &Spec, p: &Parameters, state: &Running, h: usize) -> f64 {
    let base = state.level + damped_steps(spec, p.phi, h) * state.trend;
    let s = state.seasonal[(state.next + h - 1) % state.seasonal.len()];
    match spec.season {
        Season::None => base,
        Season::Additive => base + s,
        Season::Multiplicative => base * s,
    }
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
    let state = Running {
        t: fitted.points,
        level: fitted.level,
        trend: fitted.trend,
        seasonal: &fitted.seasonal,
        next: 0,
    };
    (1..=horizon).map(|h| ahead(spec, p, &state, h)).collect()
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

    /// The recursions from the series' own starting state.
    fn smooth(series: &[f64], spec: &Spec, p: &Parameters) -> Option<Fitted> {
        smooth_from(series, spec, p, &initial_state(series, spec))
    }

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
    fn the_starting_state_of_a_trending_season_is_its_trend_and_season() {
        let season = [5.0, -3.0, -4.0, 2.0];
        let series: Vec<f64> = (0..40)
            .map(|t| 100.0 + 2.0 * t as f64 + season[t % 4])
            .collect();
        let spec = Spec {
            trend: Trend::Additive,
            season: Season::Additive,
            period: 4,
        };
        let start = initial_state(&series, &spec);
        for (found, truth) in start.seasonal.iter().zip(season) {
            assert!((found - truth).abs() < 1e-9, "{:?}", start.seasonal);
        }
        // The state before the first point: its forecast of the first point is 100 + 5.
        assert!((start.trend - 2.0).abs() < 1e-9 && (start.level - 98.0).abs() < 1e-9);
    }

    #[test]
    fn multiplicative_errors_rule_out_forecasts_of_zero_or_below() {
        let spec = Spec {
            trend: Trend::Additive,
            season: Season::None,
            period: 1,
        };
        let p = Parameters {
            alpha: 0.5,
            beta: 0.5,
            gamma: 0.0,
            phi: 1.0,
        };
        let falling = smooth(&[9.0, 6.0, 3.0, 0.5, 0.2], &spec, &p).unwrap();
        assert!(falling.deviance(Errors::Additive).is_finite());
        assert_eq!(falling.deviance(Errors::Multiplicative), f64::INFINITY);
    }

    #[test]
    fn a_model_without_the_series_trend_misses_by_more_the_further_it_looks() {
        // A straight line, smoothed as if it had no trend: its h-step errors are h steps of
        // the line (minus what smoothing caught up), so they grow with h.
        let series: Vec<f64> = (0..60).map(|t| 2.0 * t as f64).collect();
        let spec = Spec {
            trend: Trend::None,
            season: Season::None,
            period: 1,
        };
        let p = Parameters {
            alpha: 0.999,
            beta: 0.0,
            gamma: 0.0,
            phi: 1.0,
        };
        let start = initial_state(&series, &spec);
        let spread = in_sample_spread(&series, &spec, &p, &start, Errors::Additive, 40);
        let one = spread[0].unwrap();
        let five = spread[4].unwrap();
        assert!(
            (one - 2.0).abs() < 0.01 && (five - 10.0).abs() < 0.05,
            "{spread:?}"
        );
        // Origins from the series' middle: 30 reach 1 step ahead, 9 reach 22, 7 reach 24.
        assert!(spread[21].is_some() && spread[23].is_none());
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
