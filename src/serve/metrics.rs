//! The server's counters and histograms, rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::batcher::BatchObserver;

/// A histogram with fixed upper bounds (Prometheus `le` buckets, cumulative when rendered).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum: Mutex<f64>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: Mutex::new(0.0),
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        *self.sum.lock().expect("histogram sum") += value;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = *self.sum.lock().expect("histogram sum");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Everything `/metrics` reports.
pub struct Metrics {
    /// (endpoint, status) -> requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// endpoint -> latency.
    latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    pub articles: AtomicU64,
    pub tokens: AtomicU64,
    batch_articles: Histogram,
    batch_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
            articles: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            batch_articles: Histogram::new(BATCH_BOUNDS),
            batch_seconds: Histogram::new(LATENCY_BOUNDS),
        }
    }
}

impl Metrics {
    pub fn request(&self, endpoint: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .expect("request counters")
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        let histogram = self
            .latency
            .lock()
            .expect("latency histograms")
            .entry(endpoint.to_string())
            .or_insert_with(|| std::sync::Arc::new(Histogram::new(LATENCY_BOUNDS)))
            .clone();
        histogram.observe(seconds);
    }

    /// Prometheus text exposition (version 0.0.4).
    pub fn render(&self, queue_depth: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP spyglass_requests_total HTTP requests answered, by endpoint and status.\n# TYPE spyglass_requests_total counter\n");
        for ((endpoint, status), n) in self.requests.lock().expect("request counters").iter() {
            let _ = writeln!(
                out,
                "spyglass_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP spyglass_request_duration_seconds Time from request to response, by endpoint.\n# TYPE spyglass_request_duration_seconds histogram\n");
        for (endpoint, histogram) in self.latency.lock().expect("latency histograms").iter() {
            histogram.render(
                &mut out,
                "spyglass_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP spyglass_articles_total Articles embedded.\n# TYPE spyglass_articles_total counter\nspyglass_articles_total {}",
            self.articles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP spyglass_tokens_total Estimated tokens of the articles embedded.\n# TYPE spyglass_tokens_total counter\nspyglass_tokens_total {}",
            self.tokens.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP spyglass_queue_depth Articles waiting for or in the encoder.\n# TYPE spyglass_queue_depth gauge\nspyglass_queue_depth {queue_depth}"
        );
        out.push_str("# HELP spyglass_batch_articles Articles per encoder batch.\n# TYPE spyglass_batch_articles histogram\n");
        self.batch_articles
            .render(&mut out, "spyglass_batch_articles", "");
        out.push_str("# HELP spyglass_batch_seconds Encoder time per batch.\n# TYPE spyglass_batch_seconds histogram\n");
        self.batch_seconds
            .render(&mut out, "spyglass_batch_seconds", "");
        out
    }
}

impl BatchObserver for Metrics {
    fn batch(&self, articles: usize, tokens: usize, seconds: f64) {
        self.articles.fetch_add(articles as u64, Ordering::Relaxed);
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.batch_articles.observe(articles as f64);
        self.batch_seconds.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/classify", 200, 0.02);
        m.request("/classify", 200, 0.3);
        m.request("/classify", 503, 0.001);
        m.batch(3, 120, 0.2);
        let text = m.render(4);
        for line in [
            "spyglass_requests_total{endpoint=\"/classify\",status=\"200\"} 2",
            "spyglass_requests_total{endpoint=\"/classify\",status=\"503\"} 1",
            "spyglass_request_duration_seconds_bucket{endpoint=\"/classify\",le=\"0.005\"} 1",
            "spyglass_request_duration_seconds_bucket{endpoint=\"/classify\",le=\"0.025\"} 2",
            "spyglass_request_duration_seconds_bucket{endpoint=\"/classify\",le=\"+Inf\"} 3",
            "spyglass_request_duration_seconds_count{endpoint=\"/classify\"} 3",
            "spyglass_articles_total 3",
            "spyglass_tokens_total 120",
            "spyglass_queue_depth 4",
            "spyglass_batch_articles_bucket{le=\"4\"} 1",
            "spyglass_batch_articles_bucket{le=\"2\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
