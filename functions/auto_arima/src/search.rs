//! The automatic choice of a seasonal ARIMA model (Hyndman and Khandakar 2008), as R's
//! `forecast::auto.arima` and statsforecast's `AutoARIMA` make it: differences from unit-root
//! tests, then a stepwise search over the orders from (2,d,2)(1,D,1), moving to any
//! neighbouring model with a lower AICc, each fitted by CSS-ML.

use crate::model::{self, Data, Fitted, Method, Order};
use crate::unit_root::{first_differences, is_constant, seasonal_difference};

/// The search's bounds, statsforecast's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_p: usize,
    pub max_q: usize,
    pub max_seasonal_p: usize,
    pub max_seasonal_q: usize,
    pub max_d: usize,
    pub start_p: usize,
    pub start_q: usize,
    pub start_seasonal_p: usize,
    pub start_seasonal_q: usize,
    /// The most models the stepwise search fits.
    pub max_models: usize,
    /// Compare models by their conditional-sum-of-squares fit and refit only the chosen one
    /// exactly (R's `approximation`); statsforecast's default is off.
    pub approximation: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_p: 5,
            max_q: 5,
            max_seasonal_p: 2,
            max_seasonal_q: 2,
            max_d: 2,
            start_p: 2,
            start_q: 2,
            start_seasonal_p: 1,
            start_seasonal_q: 1,
            max_models: 94,
            approximation: false,
        }
    }
}

/// The chosen model.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub model: Fitted,
    /// Its AICc (`None` for the fixed models of a constant differenced series).
    pub aicc: Option<f64>,
    /// How many models the search fitted.
    pub models_fitted: usize,
}

/// Why no model was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("the series is too short for an ARIMA model after {0} differences")]
    TooShort(usize),
    #[error("no ARIMA model fits this series clear of unit roots")]
    NoSuitableModel,
}

/// Chooses and fits the ARIMA model of `series` with season length `m` (1: none).
pub fn auto_arima(series: &[f64], m: usize, settings: &Settings) -> Result<Chosen, SearchError> {
    let n = series.len();
    let m = m.max(1);
    let order = |p, d, q, seasonal_p, seasonal_d, seasonal_q| Order {
        p,
        d,
        q,
        seasonal_p,
        seasonal_d,
        seasonal_q,
        m,
    };
    if is_constant(series) {
        let data = Data::new(series, 0, 0, m);
        let mean = series.iter().sum::<f64>() / n.max(1) as f64;
        return Ok(fixed_choice(model::fixed(
            &data,
            order(0, 0, 0, 0, 0, 0),
            Some(mean),
        )));
    }
    let third = n / 3;
    let mut max_p = settings.max_p.min(third);
    let mut max_q = settings.max_q.min(third);
    let mut max_seasonal_p = settings.max_seasonal_p.min(third / m);
    let mut max_seasonal_q = settings.max_seasonal_q.min(third / m);
    let mut seasonal_d = 0;
    if m == 1 {
        max_seasonal_p = 0;
        max_seasonal_q = 0;
    } else if n > 2 * m && seasonal_difference(series, m) {
        seasonal_d = 1;
    }
    let seasonally_differenced = if seasonal_d > 0 {
        crate::unit_root::difference(series, m)
    } else {
        series.to_vec()
    };
    let mut d = first_differences(&seasonally_differenced, settings.max_d);
    if d >= seasonally_differenced.len() {
        d = seasonally_differenced.len().saturating_sub(1);
    }
    let data = Data::new(series, d, seasonal_d, m);
    let dx = &data.differenced;
    if dx.is_empty() {
        return Err(SearchError::TooShort(d + seasonal_d * m));
    }
    if is_constant(dx) {
        let mean = dx.iter().sum::<f64>() / dx.len() as f64;
        let intercept = (d + seasonal_d <= 1).then_some(mean);
        return Ok(fixed_choice(model::fixed(
            &data,
            order(0, d, 0, 0, seasonal_d, 0),
            intercept,
        )));
    }
    if m > 1 {
        max_p = max_p.min(m - 1);
        max_q = max_q.min(m - 1);
    }
    let nstar = dx.len() as f64;
    // With the approximation, a model's criterion is its CSS spread put on the scale of the
    // exact likelihood by the offset of the plain differenced model (R's auto.arima).
    let offset = if settings.approximation {
        let base = order(0, d, 0, 0, seasonal_d, 0);
        model::fit(&data, base, d + seasonal_d == 0, Method::CssMl)
            .and_then(|f| Some(-2.0 * f.loglik? - n as f64 * f.fit_sigma2.ln()))
            .unwrap_or(0.0)
    } else {
        0.0
    };
    let drift_or_mean = d + seasonal_d <= 1;
    let method = if settings.approximation {
        Method::Css
    } else {
        Method::CssMl
    };
    let criterion = |fitted: &Fitted, method: Method| -> f64 {
        let npar = (fitted.order.coefficients(fitted.constant) + 1) as f64;
        let aic = match (method, fitted.loglik) {
            (Method::Css, _) if fitted.fit_sigma2 > 0.0 => {
                offset + nstar * fitted.fit_sigma2.ln() + 2.0 * npar
            }
            (Method::CssMl, Some(loglik)) => -2.0 * loglik + 2.0 * npar,
            _ => return f64::INFINITY,
        };
        let denominator = nstar - npar - 1.0;
        if denominator <= 0.0 || !aic.is_finite() || !fitted.clear_of_unit_roots() {
            return f64::INFINITY;
        }
        aic + 2.0 * npar * (npar + 1.0) / denominator
    };
    let mut tried: Vec<(Key, f64)> = Vec::new();
    let evaluate = |key: Key, method: Method| -> (f64, Option<Fitted>) {
        let fitted = model::fit(
            &data,
            order(key.p, d, key.q, key.seasonal_p, seasonal_d, key.seasonal_q),
            key.constant,
            method,
        );
        let ic = fitted
            .as_ref()
            .map_or(f64::INFINITY, |f| criterion(f, method));
        (ic, fitted)
    };

    let (mut start_p, mut start_q) = (settings.start_p, settings.start_q);
    let (mut start_sp, mut start_sq) = (settings.start_seasonal_p, settings.start_seasonal_q);
    if n < 10 {
        start_p = start_p.min(1);
        start_q = start_q.min(1);
        start_sp = 0;
        start_sq = 0;
    }
    let mut current = Key {
        p: start_p.min(max_p),
        q: start_q.min(max_q),
        seasonal_p: start_sp.min(max_seasonal_p),
        seasonal_q: start_sq.min(max_seasonal_q),
        constant: drift_or_mean,
    };
    let mut best: (f64, Option<Fitted>) = evaluate(current, method);
    tried.push((current, best.0));
    let consider =
        |key: Key, best: &mut (f64, Option<Fitted>), tried: &mut Vec<(Key, f64)>| -> bool {
            let candidate = evaluate(key, method);
            tried.push((key, candidate.0));
            if candidate.0 < best.0 {
                *best = candidate;
                true
            } else {
                false
            }
        };
    let null = Key {
        p: 0,
        q: 0,
        seasonal_p: 0,
        seasonal_q: 0,
        constant: drift_or_mean,
    };
    if consider(null, &mut best, &mut tried) {
        current = null;
    }
    if max_p > 0 || max_seasonal_p > 0 {
        let key = Key {
            p: usize::from(max_p > 0),
            q: 0,
            seasonal_p: usize::from(m > 1 && max_seasonal_p > 0),
            seasonal_q: 0,
            constant: drift_or_mean,
        };
        if consider(key, &mut best, &mut tried) {
            current = key;
        }
    }
    if max_q > 0 || max_seasonal_q > 0 {
        let key = Key {
            p: 0,
            q: usize::from(max_q > 0),
            seasonal_p: 0,
            seasonal_q: usize::from(m > 1 && max_seasonal_q > 0),
            constant: drift_or_mean,
        };
        if consider(key, &mut best, &mut tried) {
            current = key;
        }
    }
    if drift_or_mean {
        let key = Key {
            constant: false,
            ..null
        };
        if consider(key, &mut best, &mut tried) {
            current = key;
        }
    }
    // The neighbours, in statsforecast's order; the first that improves becomes the current
    // model and the walk starts again from it.
    let mut start = 0;
    while start < tried.len() && tried.len() < settings.max_models {
        start = tried.len();
        let c = current;
        let mut moves: Vec<Key> = Vec::with_capacity(17);
        let shift = |v: usize, by: isize| v.checked_add_signed(by);
        let seasonal = [
            (-1, 0),
            (0, -1),
            (1, 0),
            (0, 1),
            (-1, -1),
            (-1, 1),
            (1, -1),
            (1, 1),
        ];
        for (dp, dq) in seasonal {
            if let (Some(sp), Some(sq)) = (shift(c.seasonal_p, dp), shift(c.seasonal_q, dq)) {
                if sp <= max_seasonal_p && sq <= max_seasonal_q {
                    moves.push(Key {
                        seasonal_p: sp,
                        seasonal_q: sq,
                        ..c
                    });
                }
            }
        }
        for (dp, dq) in seasonal {
            if let (Some(p), Some(q)) = (shift(c.p, dp), shift(c.q, dq)) {
                if p <= max_p && q <= max_q {
                    moves.push(Key { p, q, ..c });
                }
            }
        }
        if drift_or_mean {
            moves.push(Key {
                constant: !c.constant,
                ..c
            });
        }
        for key in moves {
            if tried.len() >= settings.max_models {
                break;
            }
            if tried.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if consider(key, &mut best, &mut tried) {
                current = key;
                break;
            }
        }
    }
    let models_fitted = tried.len();
    if settings.approximation {
        let mut ranked = tried.clone();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        best = (f64::INFINITY, None);
        for (key, ic) in ranked {
            if !ic.is_finite() {
                break;
            }
            let refitted = evaluate(key, Method::CssMl);
            if refitted.0.is_finite() {
                best = refitted;
                break;
            }
        }
    }
    match best {
        (ic, Some(model)) if ic.is_finite() => Ok(Chosen {
            model,
            aicc: Some(ic),
            models_fitted,
        }),
        _ => Err(SearchError::NoSuitableModel),
    }
}

fn fixed_choice(model: Fitted) -> Chosen {
    Chosen {
        model,
        aicc: None,
        models_fitted: 1,
    }
}

/// A candidate of the search: its ARMA orders and whether it has a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    p: usize,
    q: usize,
    seasonal_p: usize,
    seasonal_q: usize,
    constant: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit_root::tests::noise;

    /// An AR(1) series around 20 and a seasonal random walk with drift, both reproducible.
    fn autoregressive(n: usize) -> Vec<f64> {
        let e = noise(21, n + 50);
        let mut x = vec![0.0; n + 50];
        for t in 1..n + 50 {
            x[t] = 0.7 * x[t - 1] + e[t];
        }
        x[50..].iter().map(|v| v + 20.0).collect()
    }

    fn seasonal_walk(n: usize) -> Vec<f64> {
        let e = noise(8, n);
        let mut y = vec![0.0; n];
        for t in 0..n {
            let season = 8.0 * (2.0 * std::f64::consts::PI * t as f64 / 12.0).sin();
            let previous = if t >= 12 { y[t - 12] - season } else { 100.0 };
            y[t] = previous + 0.5 + e[t] + season;
        }
        y
    }

    #[test]
    fn a_stationary_autoregression_gets_no_difference_and_an_ar_term() {
        let chosen = auto_arima(&autoregressive(200), 1, &Settings::default()).unwrap();
        let order = chosen.model.order;
        assert_eq!((order.d, order.seasonal_d), (0, 0), "{chosen:?}");
        assert!(order.p >= 1, "{chosen:?}");
        assert!(chosen.model.constant, "{chosen:?}");
        assert!(chosen.models_fitted > 5 && chosen.models_fitted <= 94);
    }

    #[test]
    fn a_seasonal_walk_takes_a_seasonal_difference_with_or_without_the_approximation() {
        let series = seasonal_walk(144);
        let exact = auto_arima(&series, 12, &Settings::default()).unwrap();
        assert_eq!(exact.model.order.seasonal_d, 1, "{exact:?}");
        let approximate = auto_arima(
            &series,
            12,
            &Settings {
                approximation: true,
                ..Settings::default()
            },
        )
        .unwrap();
        assert_eq!(approximate.model.order.seasonal_d, 1, "{approximate:?}");
        // The approximation only ranks the candidates; the one it keeps is fitted exactly.
        assert!(approximate.model.loglik.is_some());
        assert!(approximate.aicc.is_some_and(f64::is_finite));
    }

    #[test]
    fn the_shortest_series_get_the_plain_models_their_differences_call_for() {
        // Four or five points leave room for no ARMA term: at most a mean or a drift.
        let level = auto_arima(&[1.0, 5.0, 2.0, 8.0], 1, &Settings::default()).unwrap();
        assert_eq!(level.model.order.coefficients(false), 0, "{level:?}");
        assert_eq!(level.model.order.d, 0);
        let growing = auto_arima(&[1.0, 2.0, 4.0, 8.0, 16.0], 1, &Settings::default()).unwrap();
        assert_eq!(growing.model.order.d, 1, "{growing:?}");
        assert_eq!(growing.model.order.coefficients(false), 0, "{growing:?}");
        for chosen in [level, growing] {
            assert!(chosen.aicc.is_some_and(f64::is_finite));
            let (mean, spread) = chosen.model.forecast(3);
            assert!(
                mean.iter().chain(&spread).all(|v| v.is_finite()),
                "{chosen:?}"
            );
        }
    }
}
