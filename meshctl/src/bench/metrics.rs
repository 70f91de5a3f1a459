//! Where a request's time goes: a per-hop breakdown from the mesh's own Prometheus metrics.
//!
//! Every duration the mesh records (`router_request_duration_seconds`, the gateways'
//! `http_server_request_duration_seconds` by route, `grpc_server_request_duration_seconds` by
//! service and method, and whatever else ends in `_seconds`) is exported with `_sum` and
//! `_count`. Scraped before and after a load, their differences give the calls each hop made
//! during it and the mean time of one call. The parser reads the exposition text and knows no
//! metric by name, so a new hop shows up without a change here.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{Method, StatusCode};
use serde::Serialize;

use super::conn::{self};
use super::mesh::next_setup_source;

/// Rows per metric on the terminal (the JSON has them all).
const ROWS_PER_METRIC: usize = 8;

/// Every sample of one or more scrapes: `name{labels}` → value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Exposition(BTreeMap<String, f64>);

/// The time of one hop during a load.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct HopTime {
    /// The metric, without `_sum`/`_count`.
    pub(crate) metric: String,
    /// Its labels as exported, e.g. `{service="auth",method="VerifyToken"}`.
    pub(crate) labels: String,
    pub(crate) calls: f64,
    pub(crate) mean_ms: f64,
    /// Calls per request the router served (the fan-out of this hop).
    pub(crate) calls_per_request: f64,
}

// === impl Exposition ===

impl Exposition {
    /// Scrapes `/metrics` of each address; a failed scrape adds nothing (the breakdown is a
    /// diagnosis, never a reason to fail the bench).
    pub(crate) async fn scrape(admins: &[SocketAddr]) -> Self {
        let mut all = Self::default();
        for &admin in admins {
            if let Ok((StatusCode::OK, body)) =
                conn::call(admin, next_setup_source(), Method::GET, "/metrics", None, None).await
            {
                all.add_text(&String::from_utf8_lossy(&body));
            }
        }
        all
    }

    /// Adds the samples of one exposition text (the same series scraped twice keeps one value).
    fn add_text(&mut self, text: &str) {
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            if let Ok(value) = value.parse::<f64>() {
                self.0.entry(series.trim().to_owned()).or_insert(value);
            }
        }
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The hop times between `before` and `self`, router first, then gateways, gRPC, store;
    /// within a metric the most time first.
    pub(crate) fn breakdown_since(&self, before: &Self) -> Vec<HopTime> {
        let mut hops: Vec<(f64, HopTime)> = Vec::new();
        for (series, sum) in &self.0 {
            let (name, labels) = series.split_at(series.find('{').unwrap_or(series.len()));
            let Some(metric) = name.strip_suffix("_sum") else { continue };
            if !metric.ends_with("_seconds") {
                continue;
            }
            let count = format!("{metric}_count{labels}");
            let calls = self.get(&count) - before.get(&count);
            let seconds = sum - before.get(series);
            if calls >= 1.0 {
                let mean_ms = seconds / calls * 1000.0;
                let hop = HopTime {
                    metric: metric.into(),
                    labels: labels.into(),
                    calls,
                    mean_ms,
                    calls_per_request: 0.0,
                };
                hops.push((seconds, hop));
            }
        }
        let requests: f64 = hops
            .iter()
            .filter(|(_, h)| h.metric == "router_request_duration_seconds")
            .map(|(_, h)| h.calls)
            .sum();
        hops.sort_by(|(a_time, a), (b_time, b)| {
            (hop_rank(&a.metric), &a.metric)
                .cmp(&(hop_rank(&b.metric), &b.metric))
                .then(b_time.total_cmp(a_time))
        });
        hops.into_iter()
            .map(|(_, mut hop)| {
                hop.calls_per_request = if requests > 0.0 { hop.calls / requests } else { 0.0 };
                hop
            })
            .collect()
    }
}

/// The order hops are shown in: the way a request travels.
fn hop_rank(metric: &str) -> u8 {
    ["router", "http_server", "grpc_client", "grpc_server", "store", "redis"]
        .iter()
        .position(|hop| metric.contains(hop))
        .unwrap_or(6) as u8
}

/// Prints the breakdown: per metric, its busiest series.
pub(crate) fn print_breakdown(title: &str, hops: &[HopTime]) {
    if hops.is_empty() {
        println!("  {title}: no duration metrics scraped");
        return;
    }
    println!("  {title}");
    println!("    {:<44} {:<52} {:>9} {:>9} {:>9}", "metric", "labels", "calls", "mean ms", "per req");
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    for hop in hops {
        let n = shown.entry(&hop.metric).or_default();
        *n += 1;
        if *n > ROWS_PER_METRIC {
            continue;
        }
        let labels: String = hop.labels.chars().take(52).collect();
        println!(
            "    {:<44} {:<52} {:>9.0} {:>9.3} {:>9.2}",
            hop.metric, labels, hop.calls, hop.mean_ms, hop.calls_per_request
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breakdown_is_the_mean_of_what_happened_between_two_scrapes() {
        let mut before = Exposition::default();
        before.add_text("# TYPE x summary\nrouter_request_duration_seconds_sum{pool=\"a\"} 1\nrouter_request_duration_seconds_count{pool=\"a\"} 10\n");
        let mut after = Exposition::default();
        after.add_text(concat!(
            "router_request_duration_seconds_sum{pool=\"a\"} 3\n",
            "router_request_duration_seconds_count{pool=\"a\"} 110\n",
            "grpc_server_request_duration_seconds_sum{method=\"Get\"} 0.5\n",
            "grpc_server_request_duration_seconds_count{method=\"Get\"} 200\n",
            "router_requests_total 110\n",
        ));
        let hops = after.breakdown_since(&before);
        assert_eq!(hops.len(), 2);
        assert_eq!(hops[0].metric, "router_request_duration_seconds");
        assert!((hops[0].mean_ms - 20.0).abs() < 1e-9);
        assert!((hops[1].mean_ms - 2.5).abs() < 1e-9);
        assert!((hops[1].calls_per_request - 2.0).abs() < 1e-9);
    }
}
