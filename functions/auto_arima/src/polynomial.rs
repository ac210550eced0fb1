//! The lag polynomials of a seasonal ARIMA model: their expansion into one polynomial, the
//! test that keeps a model away from a unit root, and the reparametrisation that keeps an
//! autoregressive part stationary while it is optimised (R's `partrans`).

/// The coefficients `c_1..c_k` of `(1 - sum a_i B^i)(1 - sum s_j B^{jm})`, written as
/// `1 - sum c_k B^k` (the autoregressive side: `sign = -1`), or of `(1 + sum a_i B^i)(1 + sum
/// s_j B^{jm})` as `1 + sum c_k B^k` (the moving-average side: `sign = 1`).
pub fn expand(plain: &[f64], seasonal: &[f64], m: usize, sign: f64) -> Vec<f64> {
    let degree = plain.len() + seasonal.len() * m;
    let mut product = vec![0.0; degree + 1];
    let mut left = vec![1.0];
    left.extend(plain.iter().map(|a| sign * a));
    let mut right = vec![0.0; seasonal.len() * m + 1];
    right[0] = 1.0;
    for (j, s) in seasonal.iter().enumerate() {
        right[(j + 1) * m] = sign * s;
    }
    for (i, a) in left.iter().enumerate() {
        for (j, b) in right.iter().enumerate() {
            product[i + j] += a * b;
        }
    }
    product[1..].iter().map(|c| sign * c).collect()
}

/// The coefficients of `prod (1 - B^lag)`, one factor per lag, as `1 - sum c_k B^k`.
pub fn differencing(lags: &[usize]) -> Vec<f64> {
    let mut poly = vec![1.0];
    for &lag in lags {
        let mut next = vec![0.0; poly.len() + lag];
        for (i, c) in poly.iter().enumerate() {
            next[i] += c;
            next[i + lag] -= c;
        }
        poly = next;
    }
    poly[1..].iter().map(|c| -c).collect()
}

/// Whether every root of `1 - sum a_k z^k` lies outside the circle of radius `radius`
/// (Schur-Cohn: the polynomial scaled by `radius` stepped down to its partial
/// autocorrelations, each of which must be inside (-1, 1)). With `radius = 1.01` this is the
/// unit-root margin that R's and statsforecast's `auto.arima` demand of a chosen model.
pub fn roots_outside(a: &[f64], radius: f64) -> bool {
    let mut work: Vec<f64> = a
        .iter()
        .enumerate()
        .map(|(k, c)| c * radius.powi(k as i32 + 1))
        .collect();
    while let Some(&last) = work.last() {
        if last.abs() < 1e-12 {
            work.pop();
        } else {
            break;
        }
    }
    for k in (1..=work.len()).rev() {
        let kappa = work[k - 1];
        if !kappa.is_finite() || kappa.abs() >= 1.0 {
            return false;
        }
        let scale = 1.0 - kappa * kappa;
        let previous: Vec<f64> = (0..k - 1)
            .map(|j| (work[j] + kappa * work[k - 2 - j]) / scale)
            .collect();
        work.truncate(k - 1);
        work.copy_from_slice(&previous);
    }
    true
}

/// Unconstrained values to a stationary autoregression (R's `partrans`): each value's tanh is
/// a partial autocorrelation, and the Durbin-Levinson recursion turns them into coefficients.
pub fn to_stationary(raw: &[f64]) -> Vec<f64> {
    let mut new: Vec<f64> = raw.iter().map(|r| r.tanh()).collect();
    let mut work = new.clone();
    for j in 1..new.len() {
        let a = new[j];
        for k in 0..j {
            work[k] -= a * new[j - k - 1];
        }
        new[..j].copy_from_slice(&work[..j]);
    }
    new
}

/// The inverse of [`to_stationary`]; `None` when the autoregression is not stationary.
pub fn from_stationary(phi: &[f64]) -> Option<Vec<f64>> {
    let mut new = phi.to_vec();
    let mut work = new.clone();
    for j in (1..new.len()).rev() {
        let a = new[j];
        if a.abs() >= 1.0 {
            return None;
        }
        for k in 0..j {
            work[k] = (new[k] + a * new[j - k - 1]) / (1.0 - a * a);
        }
        new[..j].copy_from_slice(&work[..j]);
    }
    new.iter()
        .map(|v| (v.abs() < 1.0).then(|| v.atanh()))
        .collect()
}

/// A moving-average part made invertible (R's `maInvert`): the roots of `1 + sum b_k z^k`
/// inside the unit circle are replaced by their reciprocals, which leaves the process's
/// autocorrelations, and so its likelihood, as they were.
pub fn invertible(ma: &[f64]) -> Vec<f64> {
    let q = match ma.iter().rposition(|b| b.abs() > 1e-12) {
        Some(last) => last + 1,
        None => return ma.to_vec(),
    };
    // The polynomial's coefficients in rising powers: 1, b_1, ..., b_q.
    let mut coefficients = vec![1.0];
    coefficients.extend_from_slice(&ma[..q]);
    let roots = complex_roots(&coefficients);
    if roots.iter().all(|r| r.norm() >= 1.0) {
        return ma.to_vec();
    }
    let flipped: Vec<Complex> = roots
        .into_iter()
        .map(|r| if r.norm() < 1.0 { r.recip() } else { r })
        .collect();
    // prod (1 - z / r) has constant term 1 and the same roots.
    let mut poly = vec![Complex::ONE];
    for root in &flipped {
        let factor = Complex::ONE.scale(-1.0).div(*root);
        let mut next = vec![Complex::ZERO; poly.len() + 1];
        for (i, c) in poly.iter().enumerate() {
            next[i] = next[i].add(*c);
            next[i + 1] = next[i + 1].add(c.mul(factor));
        }
        poly = next;
    }
    let mut out: Vec<f64> = poly[1..].iter().map(|c| c.re).collect();
    out.resize(ma.len(), 0.0);
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    const ONE: Complex = Complex { re: 1.0, im: 0.0 };
    const ZERO: Complex = Complex { re: 0.0, im: 0.0 };
    fn add(self, o: Complex) -> Complex {
        Complex {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn sub(self, o: Complex) -> Complex {
        Complex {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn mul(self, o: Complex) -> Complex {
        Complex {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn scale(self, k: f64) -> Complex {
        Complex {
            re: self.re * k,
            im: self.im * k,
        }
    }
    fn div(self, o: Complex) -> Complex {
        let d = o.re * o.re + o.im * o.im;
        Complex {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }
    fn recip(self) -> Complex {
        Complex::ONE.div(self)
    }
    fn norm(self) -> f64 {
        self.re.hypot(self.im)
    }
}

/// The roots of `sum c_i z^i` (rising powers, `c_last != 0`) by the Durand-Kerner iteration,
/// which converges for the low degrees (at most 7) of a moving-average factor.
fn complex_roots(c: &[f64]) -> Vec<Complex> {
    let degree = c.len() - 1;
    let lead = c[degree];
    let monic: Vec<f64> = c.iter().map(|v| v / lead).collect();
    let eval = |z: Complex| -> Complex {
        monic.iter().rev().fold(Complex::ZERO, |acc, &k| {
            acc.mul(z).add(Complex { re: k, im: 0.0 })
        })
    };
    let seed = Complex { re: 0.4, im: 0.9 };
    let mut roots: Vec<Complex> = (0..degree)
        .scan(Complex::ONE, |power, _| {
            let current = *power;
            *power = power.mul(seed);
            Some(current)
        })
        .collect();
    for _ in 0..500 {
        let mut moved: f64 = 0.0;
        for i in 0..degree {
            let mut denominator = Complex::ONE;
            for j in 0..degree {
                if i != j {
                    denominator = denominator.mul(roots[i].sub(roots[j]));
                }
            }
            let step = eval(roots[i]).div(denominator);
            roots[i] = roots[i].sub(step);
            moved = moved.max(step.norm());
        }
        if moved < 1e-14 {
            break;
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_factors_multiply_out() {
        // (1 - 0.5B)(1 - 0.3B^4) = 1 - 0.5B - 0.3B^4 + 0.15B^5
        let ar = expand(&[0.5], &[0.3], 4, -1.0);
        assert_eq!(ar.len(), 5);
        assert!((ar[0] - 0.5).abs() < 1e-12 && (ar[3] - 0.3).abs() < 1e-12);
        assert!((ar[4] + 0.15).abs() < 1e-12, "{ar:?}");
        // (1 + 0.5B)(1 + 0.3B^2) = 1 + 0.5B + 0.3B^2 + 0.15B^3
        let ma = expand(&[0.5], &[0.3], 2, 1.0);
        assert_eq!(ma, vec![0.5, 0.3, 0.15]);
        // (1 - B)(1 - B^12) = 1 - B - B^12 + B^13
        let delta = differencing(&[1, 12]);
        assert_eq!(delta[0], 1.0);
        assert_eq!(delta[11], 1.0);
        assert_eq!(delta[12], -1.0);
    }

    #[test]
    fn unit_roots_are_kept_at_a_distance() {
        assert!(roots_outside(&[0.5], 1.01));
        assert!(!roots_outside(&[1.0], 1.01));
        assert!(!roots_outside(&[0.995], 1.01));
        // 1 - 1.5z + 0.56z^2 = (1 - 0.7z)(1 - 0.8z): roots 1.43 and 1.25.
        assert!(roots_outside(&[1.5, -0.56], 1.01));
        assert!(!roots_outside(&[1.5, -0.56], 1.3));
        assert!(roots_outside(&[], 1.01));
    }

    #[test]
    fn the_stationary_reparametrisation_round_trips() {
        let phi = to_stationary(&[0.3, -1.2, 2.0]);
        assert!(roots_outside(&phi, 1.0));
        let raw = from_stationary(&phi).unwrap();
        assert!(
            (raw[0] - 0.3).abs() < 1e-9 && (raw[2] - 2.0).abs() < 1e-9,
            "{raw:?}"
        );
        assert_eq!(from_stationary(&[1.2]), None);
    }

    #[test]
    fn a_non_invertible_moving_average_is_flipped() {
        // 1 + 2B has its root at -0.5; flipped: 1 + 0.5B.
        let flipped = invertible(&[2.0]);
        assert!((flipped[0] - 0.5).abs() < 1e-9, "{flipped:?}");
        // (1 + 2B)(1 + 0.2B) = 1 + 2.2B + 0.4B^2 -> (1 + 0.5B)(1 + 0.2B) = 1 + 0.7B + 0.1B^2
        let two = invertible(&[2.2, 0.4]);
        assert!(
            (two[0] - 0.7).abs() < 1e-9 && (two[1] - 0.1).abs() < 1e-9,
            "{two:?}"
        );
        assert_eq!(invertible(&[0.3]), vec![0.3]);
    }
}
