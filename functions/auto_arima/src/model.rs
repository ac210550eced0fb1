//! One seasonal ARIMA model, (p,d,q)(P,D,Q)[m] with or without a constant: its fit by the
//! conditional sum of squares and then the exact Gaussian likelihood from a Kalman filter
//! (R's `arima(method = "CSS-ML")`, which statsforecast ports), and its forecast.
//!
//! The differences are taken first and the ARMA part is fitted to the differenced series;
//! that is the likelihood R's diffuse filter computes. A constant is the mean of the
//! differenced series: the series' mean without differences, its drift with one.

use crate::optimize::minimise;
use crate::polynomial::{
    differencing, expand, from_stationary, invertible, roots_outside, to_stationary,
};

/// The orders of a seasonal ARIMA model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Order {
    pub p: usize,
    pub d: usize,
    pub q: usize,
    pub seasonal_p: usize,
    pub seasonal_d: usize,
    pub seasonal_q: usize,
    /// The season length; 1 without a season.
    pub m: usize,
}

impl Order {
    /// The coefficients the fit estimates besides the spread.
    pub fn coefficients(&self, constant: bool) -> usize {
        self.p + self.q + self.seasonal_p + self.seasonal_q + usize::from(constant)
    }

    fn differences(&self) -> Vec<usize> {
        let mut lags = vec![1; self.d];
        lags.extend(std::iter::repeat_n(self.m, self.seasonal_d));
        lags
    }
}

/// How a model is fitted: by the conditional sum of squares alone (fast; the search's
/// approximation on long series) or then by the exact likelihood from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Css,
    CssMl,
}

/// The series and its differences, shared by every model of one search.
pub struct Data<'a> {
    pub series: &'a [f64],
    pub differenced: Vec<f64>,
    mean: f64,
    scale: f64,
}

impl<'a> Data<'a> {
    pub fn new(series: &'a [f64], d: usize, seasonal_d: usize, m: usize) -> Self {
        let mut differenced = series.to_vec();
        for _ in 0..seasonal_d {
            differenced = crate::unit_root::difference(&differenced, m);
        }
        for _ in 0..d {
            differenced = crate::unit_root::difference(&differenced, 1);
        }
        let n = differenced.len().max(1) as f64;
        let mean = differenced.iter().sum::<f64>() / n;
        let variance = differenced.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let scale = if variance > 0.0 { variance.sqrt() } else { 1.0 };
        Self {
            series,
            differenced,
            mean,
            scale,
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub order: Order,
    pub constant: bool,
    pub ar: Vec<f64>,
    pub ma: Vec<f64>,
    pub seasonal_ar: Vec<f64>,
    pub seasonal_ma: Vec<f64>,
    /// The mean of the differenced series (0 without a constant).
    pub intercept: f64,
    /// The one-step variance, `sum of squared residuals / (n - d - Dm - k)`.
    pub sigma2: f64,
    /// The exact log-likelihood (`None` when fitted by CSS alone).
    pub loglik: Option<f64>,
    /// The residual mean square of the fit's own criterion (`sigma2` of R's `arima`).
    pub fit_sigma2: f64,
    /// The filtered state at the end of the series, from which forecasts start.
    state: Vec<f64>,
    /// The last `d + Dm` points of the series, from which the differences are undone.
    tail: Vec<f64>,
}

/// Where the coefficients sit in the optimiser's vector: AR, MA, seasonal AR, seasonal MA,
/// constant (R's order).
#[derive(Debug, Clone, Copy)]
struct Layout {
    order: Order,
    constant: bool,
}

struct Parts<'v> {
    ar: &'v [f64],
    ma: &'v [f64],
    seasonal_ar: &'v [f64],
    seasonal_ma: &'v [f64],
    constant: f64,
}

impl Layout {
    fn len(&self) -> usize {
        self.order.coefficients(self.constant)
    }

    fn split<'v>(&self, v: &'v [f64]) -> Parts<'v> {
        let o = &self.order;
        let (ar, rest) = v.split_at(o.p);
        let (ma, rest) = rest.split_at(o.q);
        let (seasonal_ar, rest) = rest.split_at(o.seasonal_p);
        let (seasonal_ma, rest) = rest.split_at(o.seasonal_q);
        Parts {
            ar,
            ma,
            seasonal_ar,
            seasonal_ma,
            constant: rest.first().copied().unwrap_or(0.0),
        }
    }
}

/// The expanded polynomials and the mean of one candidate.
struct Arma {
    phi: Vec<f64>,
    theta: Vec<f64>,
    mean: f64,
}

impl Arma {
    fn of(layout: &Layout, data: &Data, v: &[f64], transformed: bool) -> Self {
        let parts = layout.split(v);
        let m = layout.order.m;
        let (ar, seasonal_ar) = if transformed {
            (to_stationary(parts.ar), to_stationary(parts.seasonal_ar))
        } else {
            (parts.ar.to_vec(), parts.seasonal_ar.to_vec())
        };
        let mean = if layout.constant {
            data.mean + data.scale * parts.constant
        } else {
            0.0
        };
        Self {
            phi: expand(&ar, &seasonal_ar, m, -1.0),
            theta: expand(parts.ma, parts.seasonal_ma, m, 1.0),
            mean,
        }
    }
}

/// Fits `order` (with a constant or not) to `data`; `None` when it cannot be fitted (an
/// autoregression the conditional fit leaves non-stationary, too few points).
pub fn fit(data: &Data, order: Order, constant: bool, method: Method) -> Option<Fitted> {
    let layout = Layout { order, constant };
    let w = &data.differenced;
    let ncond = order.p + order.seasonal_p * order.m;
    if w.len() <= ncond + layout.len() {
        return None;
    }
    let start = vec![0.0; layout.len()];
    let (css, css_value) = minimise(
        &mut |v: &[f64]| conditional_objective(&Arma::of(&layout, data, v, false), w),
        &start,
        100,
    );
    if !css_value.is_finite() {
        return None;
    }
    if method == Method::Css {
        let arma = Arma::of(&layout, data, &css, false);
        let (sum_of_squares, used) = conditional_residuals(&arma, w);
        let fit_sigma2 = sum_of_squares / used as f64;
        // A CSS fit only ranks the candidates; the one kept is refitted exactly, so it needs
        // no filtered state to forecast from.
        let state = Vec::new();
        return Some(finish(
            layout,
            &css,
            data,
            fit_sigma2,
            None,
            sum_of_squares,
            state,
        ));
    }
    let parts = layout.split(&css);
    if !roots_outside(parts.ar, 1.0) || !roots_outside(parts.seasonal_ar, 1.0) {
        return None;
    }
    // The exact fit optimises the autoregressions through their partial autocorrelations,
    // so that every step stays stationary.
    let mut raw = css.clone();
    raw[..order.p].copy_from_slice(&from_stationary(parts.ar)?);
    let seasonal_start = order.p + order.q;
    raw[seasonal_start..seasonal_start + order.seasonal_p]
        .copy_from_slice(&from_stationary(parts.seasonal_ar)?);
    let n = w.len() as f64;
    let (best, value) = minimise(
        &mut |v: &[f64]| match filter(&Arma::of(&layout, data, v, true), w) {
            Some(f) => 0.5 * ((f.sum_of_squares / n).ln() + f.sum_of_logs / n),
            None => f64::INFINITY,
        },
        &raw,
        100,
    );
    if !value.is_finite() {
        return None;
    }
    let mut coefficients = best.clone();
    let parts = layout.split(&best);
    coefficients[..order.p].copy_from_slice(&to_stationary(parts.ar));
    coefficients[seasonal_start..seasonal_start + order.seasonal_p]
        .copy_from_slice(&to_stationary(parts.seasonal_ar));
    coefficients[order.p..seasonal_start].copy_from_slice(&invertible(parts.ma));
    let seasonal_ma_start = seasonal_start + order.seasonal_p;
    coefficients[seasonal_ma_start..seasonal_ma_start + order.seasonal_q]
        .copy_from_slice(&invertible(parts.seasonal_ma));
    let filtered = filter(&Arma::of(&layout, data, &coefficients, false), w)?;
    let loglik = -0.5 * (2.0 * n * value + n + n * (2.0 * std::f64::consts::PI).ln());
    let fit_sigma2 = filtered.sum_of_squares / n;
    Some(finish(
        layout,
        &coefficients,
        data,
        fit_sigma2,
        Some(loglik),
        filtered.sum_of_squares,
        filtered.state,
    ))
}

fn finish(
    layout: Layout,
    coefficients: &[f64],
    data: &Data,
    fit_sigma2: f64,
    loglik: Option<f64>,
    sum_of_squares: f64,
    state: Vec<f64>,
) -> Fitted {
    let parts = layout.split(coefficients);
    let order = layout.order;
    let used = data.differenced.len() as f64;
    // statsforecast's residual variance: the squared residuals over n - d - Dm - k + ... with
    // k the coefficients and the spread (`nstar - npar + 1`).
    let denominator = (used - layout.len() as f64).max(1.0);
    let keep = order.d + order.seasonal_d * order.m;
    Fitted {
        tail: data.series[data.series.len().saturating_sub(keep)..].to_vec(),
        order,
        constant: layout.constant,
        ar: parts.ar.to_vec(),
        ma: parts.ma.to_vec(),
        seasonal_ar: parts.seasonal_ar.to_vec(),
        seasonal_ma: parts.seasonal_ma.to_vec(),
        intercept: if layout.constant {
            data.mean + data.scale * parts.constant
        } else {
            0.0
        },
        sigma2: sum_of_squares / denominator,
        loglik,
        fit_sigma2,
        state,
    }
}

/// `0.5 log(mean squared conditional residual)`, the conditional-sum-of-squares criterion.
fn conditional_objective(arma: &Arma, w: &[f64]) -> f64 {
    let (sum, used) = conditional_residuals(arma, w);
    if used == 0 || !sum.is_finite() {
        return f64::INFINITY;
    }
    0.5 * (sum / used as f64).ln()
}

/// The sum of squared residuals given the first `len(phi)` points, and how many there are.
fn conditional_residuals(arma: &Arma, w: &[f64]) -> (f64, usize) {
    let ncond = arma.phi.len();
    let phi: Vec<(usize, f64)> = nonzero(&arma.phi);
    let theta: Vec<(usize, f64)> = nonzero(&arma.theta);
    let mut residuals = vec![0.0; w.len()];
    let mut sum = 0.0;
    for t in ncond..w.len() {
        let mut e = w[t] - arma.mean;
        for &(lag, c) in &phi {
            e -= c * (w[t - lag] - arma.mean);
        }
        for &(lag, c) in &theta {
            if lag <= t {
                e -= c * residuals[t - lag];
            }
        }
        residuals[t] = e;
        sum += e * e;
    }
    (sum, w.len().saturating_sub(ncond))
}

fn nonzero(c: &[f64]) -> Vec<(usize, f64)> {
    c.iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, v)| (i + 1, *v))
        .collect()
}

/// What the Kalman filter leaves: the sums of the concentrated likelihood and the last state.
struct Filtered {
    sum_of_squares: f64,
    sum_of_logs: f64,
    state: Vec<f64>,
}

/// The exact likelihood's sums by the Kalman filter over Harvey's state space of the ARMA
/// process (unit innovation variance; the spread is concentrated out), started from the
/// stationary covariance of the state. Once the predicted covariance stops changing (to 1e-12
/// of the one-step variance) it is held: the filter has reached its steady state, and each
/// further step costs O(r) instead of O(r^2).
fn filter(arma: &Arma, w: &[f64]) -> Option<Filtered> {
    let r = arma.phi.len().max(arma.theta.len() + 1);
    let mut phi = arma.phi.clone();
    phi.resize(r, 0.0);
    let mut loading = vec![1.0];
    loading.extend_from_slice(&arma.theta);
    loading.resize(r, 0.0);
    let mut predicted = stationary_covariance(&phi, &loading)?;
    let mut next = vec![0.0; r * r];
    let mut steady = false;
    let mut a = vec![0.0; r];
    let (mut sum_of_squares, mut sum_of_logs) = (0.0, 0.0);
    let mut last_gain = f64::INFINITY;
    for (t, &observation) in w.iter().enumerate() {
        if t > 0 {
            let first = a[0];
            for i in 0..r {
                a[i] = phi[i] * first + if i + 1 < r { a[i + 1] } else { 0.0 };
            }
            if !steady {
                advance_covariance(&predicted, 1.0 / last_gain, &phi, &loading, &mut next);
                let change = next
                    .iter()
                    .zip(&predicted)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                steady = change <= 1e-11 * next[0].abs();
                std::mem::swap(&mut predicted, &mut next);
            }
        }
        let gain = predicted[0];
        if !gain.is_finite() || gain <= 0.0 {
            return None;
        }
        let innovation = observation - arma.mean - a[0];
        sum_of_squares += innovation * innovation / gain;
        sum_of_logs += gain.ln();
        // The covariance is symmetric: its first row is its first column.
        for i in 0..r {
            a[i] += predicted[i] * innovation / gain;
        }
        last_gain = gain;
    }
    if !sum_of_squares.is_finite() {
        return None;
    }
    Some(Filtered {
        sum_of_squares,
        sum_of_logs,
        state: a,
    })
}

/// The next step's predicted covariance, `T (P - c c' / g) T' + R R'`: the observation's
/// update (`c` the first column of `P`, `g` its first element; `inverse_gain = 1/g`, or 0 for
/// no update) and the prediction through the companion transition `T` (first column `phi`,
/// ones above the diagonal) in one pass over the upper triangle, O(r^2).
fn advance_covariance(p: &[f64], inverse_gain: f64, phi: &[f64], loading: &[f64], out: &mut [f64]) {
    let r = phi.len();
    let column = &p[..r];
    // The updated covariance's first row, F[0][j].
    let row: Vec<f64> = (0..r)
        .map(|j| p[j] - column[0] * column[j] * inverse_gain)
        .collect();
    let f00 = row[0];
    for i in 0..r {
        // F[i+1][0], and the row i+1 of F where it exists.
        let below = if i + 1 < r { row[i + 1] } else { 0.0 };
        for j in i..r {
            let right = if j + 1 < r { row[j + 1] } else { 0.0 };
            let diagonal = if i + 1 < r && j + 1 < r {
                p[(i + 1) * r + j + 1] - column[i + 1] * column[j + 1] * inverse_gain
            } else {
                0.0
            };
            let value = phi[i] * phi[j] * f00
                + phi[i] * right
                + phi[j] * below
                + diagonal
                + loading[i] * loading[j];
            out[i * r + j] = value;
            out[j * r + i] = value;
        }
    }
}

/// The stationary covariance of the state, from the process's autocovariances: its first
/// row directly, the rest by the stationarity equation `P = T P T' + R R'` worked back from
/// the last row. `None` when the autoregression is not stationary.
fn stationary_covariance(phi: &[f64], loading: &[f64]) -> Option<Vec<f64>> {
    let r = phi.len();
    let p = phi.iter().rposition(|c| *c != 0.0).map_or(0, |i| i + 1);
    // psi weights (MA(infinity) of the ARMA) and autocovariances, lags 0..=r.
    let mut psi = vec![0.0; r + 1];
    for j in 0..=r {
        let mut value = loading.get(j).copied().unwrap_or(0.0);
        for k in 1..=j.min(p) {
            value += phi[k - 1] * psi[j - k];
        }
        psi[j] = value;
    }
    let theta_at = |j: usize| loading.get(j).copied().unwrap_or(0.0);
    let right = |h: usize| -> f64 { (h..r).map(|j| theta_at(j) * psi[j - h]).sum() };
    let mut gamma = vec![0.0; r + 1];
    // gamma(h) - sum phi_k gamma(|h-k|) = sum_{j>=h} theta_j psi_{j-h}, h = 0..=p.
    let size = p + 1;
    let mut matrix = vec![0.0; size * size];
    let mut rhs = vec![0.0; size];
    for h in 0..size {
        matrix[h * size + h] += 1.0;
        for k in 1..=p {
            matrix[h * size + h.abs_diff(k)] -= phi[k - 1];
        }
        rhs[h] = right(h);
    }
    let solved = solve(&mut matrix, &mut rhs, size)?;
    gamma[..size].copy_from_slice(&solved);
    for h in size..=r {
        gamma[h] = (1..=p).map(|k| phi[k - 1] * gamma[h - k]).sum::<f64>() + right(h);
    }
    if !gamma[0].is_finite() || gamma[0] <= 0.0 {
        return None;
    }
    let mut cov = vec![0.0; r * r];
    for j in 0..r {
        cov[j] = (0..r - j)
            .map(|k| phi[j + k] * gamma[k + 1] + theta_at(j + k) * psi[k])
            .sum();
        cov[j * r] = cov[j];
    }
    let at = |cov: &[f64], i: usize, j: usize| if i < r && j < r { cov[i * r + j] } else { 0.0 };
    for i in (1..r).rev() {
        for j in (i..r).rev() {
            let value = phi[i] * phi[j] * cov[0]
                + phi[i] * at(&cov, 0, j + 1)
                + phi[j] * at(&cov, i + 1, 0)
                + at(&cov, i + 1, j + 1)
                + loading[i] * loading[j];
            cov[i * r + j] = value;
            cov[j * r + i] = value;
        }
    }
    cov.iter().all(|v| v.is_finite()).then_some(cov)
}

/// Gaussian elimination with partial pivoting; `None` for a singular system.
fn solve(matrix: &mut [f64], rhs: &mut [f64], n: usize) -> Option<Vec<f64>> {
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| {
            matrix[a * n + col]
                .abs()
                .total_cmp(&matrix[b * n + col].abs())
        })?;
        if matrix[pivot * n + col].abs() < 1e-12 {
            return None;
        }
        if pivot != col {
            for k in 0..n {
                matrix.swap(col * n + k, pivot * n + k);
            }
            rhs.swap(col, pivot);
        }
        for row in col + 1..n {
            let factor = matrix[row * n + col] / matrix[col * n + col];
            for k in col..n {
                matrix[row * n + k] -= factor * matrix[col * n + k];
            }
            rhs[row] -= factor * rhs[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| matrix[row * n + k] * x[k]).sum();
        x[row] = (rhs[row] - tail) / matrix[row * n + row];
    }
    Some(x)
}

impl Fitted {
    /// The ARMA part's full polynomials (seasonal factors multiplied out).
    pub fn polynomials(&self) -> (Vec<f64>, Vec<f64>) {
        let m = self.order.m;
        (
            expand(&self.ar, &self.seasonal_ar, m, -1.0),
            expand(&self.ma, &self.seasonal_ma, m, 1.0),
        )
    }

    /// Whether every root of both polynomials lies at least 1.01 from the origin.
    pub fn clear_of_unit_roots(&self) -> bool {
        let (phi, theta) = self.polynomials();
        let negated: Vec<f64> = theta.iter().map(|c| -c).collect();
        roots_outside(&phi, 1.01) && roots_outside(&negated, 1.01)
    }

    /// The mean forecast `horizon` steps on, and the standard deviation of each step's error.
    pub fn forecast(&self, horizon: usize) -> (Vec<f64>, Vec<f64>) {
        let (phi, theta) = self.polynomials();
        let r = phi.len().max(theta.len() + 1);
        let mut padded = phi.clone();
        padded.resize(r, 0.0);
        let mut state = self.state.clone();
        state.resize(r, 0.0);
        let mut differenced = Vec::with_capacity(horizon);
        for _ in 0..horizon {
            let first = state[0];
            for i in 0..r {
                state[i] = padded[i] * first + if i + 1 < r { state[i + 1] } else { 0.0 };
            }
            differenced.push(state[0] + self.intercept);
        }
        // Undo the differences: y_t = w_t + sum delta_k y_{t-k}.
        let delta = differencing(&self.order.differences());
        let mut history = self.series_tail(delta.len());
        let mut mean = Vec::with_capacity(horizon);
        for w in differenced {
            let len = history.len();
            let value = w + delta
                .iter()
                .enumerate()
                .map(|(k, c)| c * history[len - 1 - k])
                .sum::<f64>();
            history.push(value);
            mean.push(value);
        }
        // The error's spread: psi weights of the whole model, differences included.
        let whole_ar = multiply_ar(&phi, &delta);
        let mut psi = vec![0.0; horizon];
        let mut variance = 0.0;
        let mut spread = Vec::with_capacity(horizon);
        for j in 0..horizon {
            let mut value = if j == 0 {
                1.0
            } else {
                theta.get(j - 1).copied().unwrap_or(0.0)
            };
            for k in 1..=j.min(whole_ar.len()) {
                value += whole_ar[k - 1] * psi[j - k];
            }
            psi[j] = value;
            variance += value * value;
            spread.push((self.sigma2 * variance).sqrt());
        }
        (mean, spread)
    }

    fn series_tail(&self, len: usize) -> Vec<f64> {
        self.tail[self.tail.len().saturating_sub(len)..].to_vec()
    }
}

/// `(1 - sum a B^k)(1 - sum b B^k)` as `1 - sum c B^k`.
fn multiply_ar(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut left = vec![1.0];
    left.extend(a.iter().map(|c| -c));
    let mut right = vec![1.0];
    right.extend(b.iter().map(|c| -c));
    let mut product = vec![0.0; left.len() + right.len() - 1];
    for (i, x) in left.iter().enumerate() {
        for (j, y) in right.iter().enumerate() {
            product[i + j] += x * y;
        }
    }
    product[1..].iter().map(|c| -c).collect()
}

/// The model without ARMA terms whose differenced series is constant or has a fixed mean:
/// `(0,d,0)(0,D,0)`, with `intercept` as the differenced series' mean (R's `fixed`).
pub fn fixed(data: &Data, order: Order, intercept: Option<f64>) -> Fitted {
    let w = &data.differenced;
    let mean = intercept.unwrap_or(0.0);
    let sum_of_squares: f64 = w.iter().map(|v| (v - mean).powi(2)).sum();
    let used = w.len().max(1) as f64;
    let keep = order.d + order.seasonal_d * order.m;
    Fitted {
        order,
        constant: intercept.is_some(),
        ar: Vec::new(),
        ma: Vec::new(),
        seasonal_ar: Vec::new(),
        seasonal_ma: Vec::new(),
        intercept: mean,
        sigma2: sum_of_squares / used,
        loglik: None,
        fit_sigma2: sum_of_squares / used,
        state: vec![0.0],
        tail: data.series[data.series.len().saturating_sub(keep)..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit_root::tests::noise;

    fn simulate(phi: f64, theta: f64, n: usize, seed: u64) -> Vec<f64> {
        let e = noise(seed, n + 100);
        let mut x = vec![0.0; n + 100];
        for t in 1..n + 100 {
            x[t] = phi * x[t - 1] + e[t] + theta * e[t - 1];
        }
        x[100..].iter().map(|v| v + 10.0).collect()
    }

    fn plain(p: usize, d: usize, q: usize) -> Order {
        Order {
            p,
            d,
            q,
            seasonal_p: 0,
            seasonal_d: 0,
            seasonal_q: 0,
            m: 1,
        }
    }

    #[test]
    fn an_arma_process_is_recovered() {
        let series = simulate(0.6, 0.3, 500, 11);
        let data = Data::new(&series, 0, 0, 1);
        let fitted = fit(&data, plain(1, 0, 1), true, Method::CssMl).unwrap();
        assert!((fitted.ar[0] - 0.6).abs() < 0.1, "{fitted:?}");
        assert!((fitted.ma[0] - 0.3).abs() < 0.12, "{fitted:?}");
        assert!((fitted.intercept - 10.0).abs() < 0.5, "{fitted:?}");
        assert!((fitted.sigma2 - 1.0).abs() < 0.15, "{fitted:?}");
        assert!(fitted.clear_of_unit_roots());
        let (mean, spread) = fitted.forecast(20);
        // The forecast decays to the mean and its spread grows to the process's.
        assert!((mean[19] - fitted.intercept).abs() < 0.05, "{mean:?}");
        assert!(spread[0] < spread[5] && spread[5] < 2.0, "{spread:?}");
    }

    #[test]
    fn the_exact_likelihood_of_white_noise_is_the_gaussian_one() {
        let series = noise(5, 200);
        let data = Data::new(&series, 0, 0, 1);
        let fitted = fit(&data, plain(0, 0, 0), true, Method::CssMl).unwrap();
        let n = series.len() as f64;
        let mean = series.iter().sum::<f64>() / n;
        let s2 = series.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let expected = -0.5 * n * (1.0 + (2.0 * std::f64::consts::PI * s2).ln());
        assert!(
            (fitted.loglik.unwrap() - expected).abs() < 1e-6,
            "{fitted:?} {expected}"
        );
    }

    #[test]
    fn a_stationary_covariance_solves_its_equation() {
        // ARMA(2,1): P = T P T' + R R'.
        let phi = vec![0.5, -0.3];
        let loading = vec![1.0, 0.4];
        let p = stationary_covariance(&phi, &loading).unwrap();
        let mut next = vec![0.0; 4];
        advance_covariance(&p, 0.0, &phi, &loading, &mut next);
        for (a, b) in p.iter().zip(&next) {
            assert!((a - b).abs() < 1e-9, "{p:?} {next:?}");
        }
    }

    #[test]
    fn differences_are_undone_in_the_forecast() {
        // A straight line with a season: (0,1,0)(0,1,0)[4] forecasts it exactly.
        let season = [3.0, -1.0, 0.5, -2.5];
        let series: Vec<f64> = (0..40).map(|t| 2.0 * t as f64 + season[t % 4]).collect();
        let order = Order {
            p: 0,
            d: 1,
            q: 0,
            seasonal_p: 0,
            seasonal_d: 1,
            seasonal_q: 0,
            m: 4,
        };
        let data = Data::new(&series, 1, 1, 4);
        let fitted = fixed(&data, order, None);
        let (mean, _) = fitted.forecast(8);
        for (h, value) in mean.iter().enumerate() {
            let t = 40 + h;
            assert!(
                (value - (2.0 * t as f64 + season[t % 4])).abs() < 1e-9,
                "{mean:?}"
            );
        }
    }
}
