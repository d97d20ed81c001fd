//! The figures of a run, as wrk-style text or as one JSON object.

use serde_json::{json, Map, Value};

use super::engine::{Outcome, Plan};
use crate::shared::failure::Failure;
use crate::shared::output::write_stdout;

/// Everything a report shows, computed once.
#[derive(Debug)]
pub struct Summary<'a> {
    outcome: &'a Outcome,
    address: &'a str,
    plan: &'a Plan,
}

/// Latency figures in milliseconds.
struct Latency {
    min: f64,
    mean: f64,
    stdev: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn ms(us: f64) -> f64 {
    (us * 1000.0).round() / 1_000_000.0
}

impl<'a> Summary<'a> {
    /// The summary of `outcome`.
    pub fn new(outcome: &'a Outcome, address: &'a str, plan: &'a Plan) -> Summary<'a> {
        Summary {
            outcome,
            address,
            plan,
        }
    }

    fn requests(&self) -> u64 {
        self.outcome.successes() + self.outcome.error_count()
    }

    fn secs(&self) -> f64 {
        self.outcome.elapsed.as_secs_f64().max(1e-9)
    }

    fn rps(&self) -> f64 {
        self.requests() as f64 / self.secs()
    }

    fn latency(&self) -> Latency {
        let h = &self.outcome.latency_us;
        if h.is_empty() {
            return Latency {
                min: 0.0,
                mean: 0.0,
                stdev: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        let q = |p: f64| ms(h.value_at_quantile(p) as f64);
        Latency {
            min: ms(h.min() as f64),
            mean: ms(h.mean()),
            stdev: ms(h.stdev()),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: ms(h.max() as f64),
        }
    }

    /// One JSON object with every figure.
    pub fn json(&self) -> Value {
        let o = self.outcome;
        let l = self.latency();
        let status_counts: Map<String, Value> = o
            .status_counts
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        let kinds: Map<String, Value> = o
            .errors
            .iter()
            .map(|(k, t)| (k.to_string(), json!(t.count)))
            .collect();
        let examples: Map<String, Value> = o
            .errors
            .iter()
            .map(|(k, t)| (k.to_string(), json!(t.example)))
            .collect();
        json!({
            "address": self.address,
            "connections": self.plan.connections,
            "duration_s": round3(self.secs()),
            "requests": self.requests(),
            "successes": o.successes(),
            "errors": o.error_count(),
            "error_kinds": kinds,
            "error_examples": examples,
            "rps": round3(self.rps()),
            "body_bytes": o.body_bytes,
            "body_bytes_per_s": round3(o.body_bytes as f64 / self.secs()),
            "latency_ms": {
                "min": l.min, "mean": l.mean, "stdev": l.stdev,
                "p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max,
            },
            "status_counts": status_counts,
            "abandoned": o.abandoned,
            "rate": self.plan.rate,
            "latency_from": if self.plan.rate.is_some() { "intended send time" } else { "send time" },
            "intended_requests": o.intended,
            "missed_sends": o.missed(),
            "late_sends": self.plan.rate.map(|_| o.late),
        })
    }

    /// The text report, like wrk's.
    pub fn text(&self) -> String {
        let o = self.outcome;
        let l = self.latency();
        let mut out = String::new();
        let mut bound = match (self.plan.requests, self.plan.duration) {
            (Some(n), _) => format!("{n} requests"),
            (None, Some(d)) => format!("{}s", d.as_secs_f64()),
            (None, None) => String::new(),
        };
        if let Some(rate) = self.plan.rate {
            bound.push_str(&format!(
                ", --rate {rate}/s (latency from the intended send time)"
            ));
        }
        out.push_str(&format!(
            "fcgi bench {}: {} connections, {bound}\n",
            self.address, self.plan.connections
        ));
        out.push_str(&format!(
            "  {} requests in {:.2}s, {} answered, {} failed, {} of body read\n",
            self.requests(),
            self.secs(),
            o.successes(),
            o.error_count(),
            human_bytes(o.body_bytes as f64)
        ));
        if o.abandoned > 0 {
            out.push_str(&format!(
                "  {} requests in flight at the end, abandoned\n",
                o.abandoned
            ));
        }
        if let (Some(intended), Some(missed)) = (o.intended, o.missed()) {
            out.push_str(&format!(
                "  Schedule: {intended} sends due, {} made, {missed} missed (no connection free), {} late\n",
                o.sent, o.late
            ));
        }
        out.push_str(&format!("  Requests/sec: {:.2}\n", self.rps()));
        out.push_str(&format!(
            "  Transfer/sec: {} (response bodies)\n",
            human_bytes(o.body_bytes as f64 / self.secs())
        ));
        out.push_str(&format!(
            "  Latency (ms): min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (mean {:.3}, stdev {:.3}; answered requests)\n",
            l.min, l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.stdev
        ));
        let statuses: Vec<String> = o
            .status_counts
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        out.push_str(&format!(
            "  Status codes: {}\n",
            if statuses.is_empty() {
                "none".to_string()
            } else {
                statuses.join(", ")
            }
        ));
        if o.errors.is_empty() {
            out.push_str("  Errors: 0\n");
        } else {
            out.push_str(&format!("  Errors: {}\n", o.error_count()));
            for (kind, tally) in &o.errors {
                out.push_str(&format!(
                    "    {kind}: {} (first: {})\n",
                    tally.count, tally.example
                ));
            }
        }
        out
    }

    /// For `--fail-on-error`: the most frequent error kind as a failure.
    pub fn failure(&self) -> Option<Failure> {
        let (kind, tally) = self.outcome.errors.iter().max_by_key(|(_, t)| t.count)?;
        Some(Failure::new(
            tally.code,
            format!(
                "{} of {} requests failed (most often {kind}: {}) (--fail-on-error)",
                self.outcome.error_count(),
                self.requests(),
                tally.example
            ),
        ))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n:.0} {}", UNITS[unit])
    } else {
        format!("{n:.2} {}", UNITS[unit])
    }
}

/// Writes the report to standard output.
pub fn print(text: &str) -> Result<(), Failure> {
    write_stdout(text.as_bytes(), "the report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.50 KiB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0), "3.00 MiB");
    }
}
