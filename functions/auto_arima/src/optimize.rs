//! A quasi-Newton minimiser: R's `optim(method = "BFGS")` (Nash's variable metric `vmmin`),
//! with the gradient from central differences of step 1e-3 as `optim` takes it. ARIMA fits
//! in R and statsforecast run on it, so the same search stops at the same places.

/// Minimises `f` from `start`; returns the point and its value.
pub fn minimise(
    f: &mut dyn FnMut(&[f64]) -> f64,
    start: &[f64],
    max_iterations: usize,
) -> (Vec<f64>, f64) {
    const STEP_REDUCTION: f64 = 0.2;
    const ACCEPTANCE: f64 = 1e-4;
    const RELATIVE_TEST: f64 = 10.0;
    let reltol = f64::EPSILON.sqrt();
    let n = start.len();
    let mut b = start.to_vec();
    let mut fmin = f(&b);
    if n == 0 || !fmin.is_finite() {
        return (b, fmin);
    }
    let mut g = gradient(f, &b);
    let mut inverse = vec![vec![0.0; n]; n];
    let mut iterations = 1;
    let mut gradients = 1usize;
    let mut last_reset = gradients;
    loop {
        if last_reset == gradients {
            for (i, row) in inverse.iter_mut().enumerate() {
                row.iter_mut().for_each(|v| *v = 0.0);
                row[i] = 1.0;
            }
        }
        let x = b.clone();
        let previous_gradient = g.clone();
        let direction: Vec<f64> = inverse
            .iter()
            .map(|row| -row.iter().zip(&g).map(|(h, gi)| h * gi).sum::<f64>())
            .collect();
        let slope: f64 = direction.iter().zip(&g).map(|(d, gi)| d * gi).sum();
        let mut unchanged;
        if slope < 0.0 {
            let mut step = 1.0;
            let mut value;
            loop {
                unchanged = 0;
                for i in 0..n {
                    b[i] = x[i] + step * direction[i];
                    if RELATIVE_TEST + x[i] == RELATIVE_TEST + b[i] {
                        unchanged += 1;
                    }
                }
                if unchanged < n {
                    value = f(&b);
                    if value.is_finite() && value <= fmin + slope * step * ACCEPTANCE {
                        break;
                    }
                    step *= STEP_REDUCTION;
                } else {
                    value = fmin;
                    break;
                }
            }
            let enough = (value - fmin).abs() > reltol * (fmin.abs() + reltol);
            if !enough {
                unchanged = n;
                fmin = value;
            }
            if unchanged < n {
                fmin = value;
                g = gradient(f, &b);
                gradients += 1;
                iterations += 1;
                let t: Vec<f64> = direction.iter().map(|d| d * step).collect();
                let c: Vec<f64> = g
                    .iter()
                    .zip(&previous_gradient)
                    .map(|(a, p)| a - p)
                    .collect();
                let d1: f64 = t.iter().zip(&c).map(|(a, b)| a * b).sum();
                if d1 > 0.0 {
                    let hc: Vec<f64> = inverse
                        .iter()
                        .map(|row| row.iter().zip(&c).map(|(h, ci)| h * ci).sum())
                        .collect();
                    let d2 = 1.0 + hc.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>() / d1;
                    for i in 0..n {
                        for j in 0..n {
                            inverse[i][j] += (d2 * t[i] * t[j] - hc[i] * t[j] - t[i] * hc[j]) / d1;
                        }
                    }
                } else {
                    last_reset = gradients;
                }
            } else if last_reset < gradients {
                unchanged = 0;
                last_reset = gradients;
            }
        } else {
            unchanged = 0;
            if last_reset == gradients {
                unchanged = n;
            } else {
                last_reset = gradients;
            }
        }
        if iterations >= max_iterations {
            break;
        }
        if gradients - last_reset > 2 * n {
            last_reset = gradients;
        }
        if unchanged == n && last_reset == gradients {
            break;
        }
    }
    (b, fmin)
}

fn gradient(f: &mut dyn FnMut(&[f64]) -> f64, at: &[f64]) -> Vec<f64> {
    const STEP: f64 = 1e-3;
    let mut point = at.to_vec();
    (0..at.len())
        .map(|i| {
            point[i] = at[i] + STEP;
            let up = f(&point);
            point[i] = at[i] - STEP;
            let down = f(&point);
            point[i] = at[i];
            let slope = (up - down) / (2.0 * STEP);
            if slope.is_finite() {
                slope
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_curved_valley() {
        let mut rosenbrock =
            |x: &[f64]| (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2);
        let (point, value) = minimise(&mut rosenbrock, &[-1.2, 1.0], 200);
        assert!(value < 1e-4, "{point:?} {value}");
        assert!((point[0] - 1.0).abs() < 0.05, "{point:?}");
    }
}
