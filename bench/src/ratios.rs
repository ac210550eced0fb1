//! The performance targets as ratios between figures of one run (issue "performance,
//! restated against this machine's own floors"): each is a quotient of two figures taken
//! minutes apart on the same machine, so the machine's speed of the day cancels out. The
//! benchmark collects the figures as its scenarios run and prints the ratios last.

use crate::latency::Summary;

/// One open-loop row: the offered rate, CPU per job and scheduled->row latency.
#[derive(Debug, Clone, Copy)]
pub struct OpenRow {
    pub rate: f64,
    /// The stack's CPU per job (the load generator's not counted), and Orbit's own share of
    /// it (the rest is NATS, Postgres, Redis, Kafka and Elasticsearch).
    pub cpu_us_per_job: f64,
    pub orbit_us_per_job: f64,
    pub scheduled_to_row: Option<Summary>,
}

/// What the ratios are made of, filled in by the scenarios that ran.
#[derive(Debug, Default)]
pub struct Figures {
    /// CPU per job of the saturating batch run.
    pub batch_cpu_us: Option<f64>,
    pub open: Vec<OpenRow>,
    /// One caller, the whole stack running: the bus alone and the function over it.
    pub echo: Option<Summary>,
    pub nats: Option<Summary>,
    pub http_run: Option<Summary>,
    pub kserve: Option<Summary>,
}

impl Figures {
    /// The lines to print: each ratio with the target it is held to, and whether it is met.
    pub fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let verdict = |met: bool| if met { "met" } else { "not met" };
        for row in &self.open {
            let mut line = format!(
                "open {:>5.0}/s: cpu per job {:>7.0} us (Orbit {:.0}, infrastructure {:.0})",
                row.rate,
                row.cpu_us_per_job,
                row.orbit_us_per_job,
                row.cpu_us_per_job - row.orbit_us_per_job
            );
            if let Some(batch) = self.batch_cpu_us.filter(|b| *b > 0.0) {
                let ratio = row.cpu_us_per_job / batch;
                line += &format!(" = {ratio:.1}x the batch run's {batch:.0} us");
                if row.rate >= 1000.0 {
                    line += &format!(" (target <= 2x: {})", verdict(ratio <= 2.0));
                }
            }
            if row.rate <= 100.0 {
                line += &format!(
                    " (target <= 1000 us: {})",
                    verdict(row.cpu_us_per_job <= 1000.0)
                );
            }
            if let Some(s) = row.scheduled_to_row {
                line += &format!(
                    "; scheduled->row p50 {:.1} ms, p99 {:.1} ms (targets < 10 / < 25 ms: {})",
                    s.p50_ms,
                    s.p99_ms,
                    verdict(s.p50_ms < 10.0 && s.p99_ms < 25.0)
                );
            }
            lines.push(line);
        }
        if let (Some(echo), Some(nats)) = (self.echo, self.nats) {
            let (p50, p99) = (nats.p50_ms / echo.p50_ms, nats.p99_ms / echo.p99_ms);
            lines.push(format!(
                "sync nats x1: p50 {:.3} ms = {p50:.1}x the echo's {:.3} ms (target <= 2x: {}); p99 {:.3} ms = {p99:.1}x the echo's {:.3} ms (target <= 3x: {})",
                nats.p50_ms,
                echo.p50_ms,
                verdict(p50 <= 2.0),
                nats.p99_ms,
                echo.p99_ms,
                verdict(p99 <= 3.0)
            ));
            for (name, row) in [("/run", self.http_run), ("/v2", self.kserve)] {
                if let Some(row) = row {
                    let added = row.p50_ms - nats.p50_ms;
                    lines.push(format!(
                        "sync {name} x1: p50 {:.3} ms, {added:+.3} ms over NATS (target <= +0.2 ms: {})",
                        row.p50_ms,
                        verdict(added <= 0.2)
                    ));
                }
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p50_ms: f64, p99_ms: f64) -> Summary {
        Summary {
            count: 1000,
            p50_ms,
            p99_ms,
            p999_ms: p99_ms,
            max_ms: p99_ms,
        }
    }

    #[test]
    fn ratios_are_quotients_of_the_same_runs_figures() {
        let figures = Figures {
            batch_cpu_us: Some(200.0),
            open: vec![
                OpenRow {
                    rate: 1000.0,
                    cpu_us_per_job: 300.0,
                    orbit_us_per_job: 120.0,
                    scheduled_to_row: Some(summary(5.0, 20.0)),
                },
                OpenRow {
                    rate: 100.0,
                    cpu_us_per_job: 7500.0,
                    orbit_us_per_job: 2500.0,
                    scheduled_to_row: Some(summary(4.0, 12.0)),
                },
            ],
            echo: Some(summary(0.15, 0.5)),
            nats: Some(summary(1.95, 2.9)),
            http_run: Some(summary(2.1, 4.0)),
            kserve: None,
        };
        let report = figures.report().join("\n");
        assert!(
            report.contains("= 1.5x the batch run's 200 us (target <= 2x: met)"),
            "{report}"
        );
        assert!(
            report.contains("7500 us (Orbit 2500, infrastructure 5000) = 37.5x"),
            "{report}"
        );
        assert!(report.contains("(target <= 1000 us: not met)"), "{report}");
        assert!(
            report.contains("= 13.0x the echo's 0.150 ms (target <= 2x: not met)"),
            "{report}"
        );
        assert!(
            report.contains("+0.150 ms over NATS (target <= +0.2 ms: met)"),
            "{report}"
        );
    }
}
