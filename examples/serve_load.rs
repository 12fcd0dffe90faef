//! Load generator for `spyglass serve` (used by `bench/serve.sh`): concurrent clients post
//! `/classify` requests of a few articles each, check that every response answers its own
//! request, and print throughput and latency percentiles.
//!
//! `cargo run --example serve_load -- URL ARTICLES.jsonl CLIENTS REQUESTS MIN MAX [SENT.jsonl]`
//! sends REQUESTS requests per client of MIN..=MAX articles drawn in turn from ARTICLES, and
//! writes the articles it sent, in a fixed order, to SENT.jsonl (the same work for
//! `spyglass label`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        eprintln!("usage: serve_load URL ARTICLES.jsonl CLIENTS REQUESTS MIN MAX [SENT.jsonl]");
        std::process::exit(2);
    }
    let url = format!("{}/classify", args[1].trim_end_matches('/'));
    let articles: Vec<Value> = std::fs::read_to_string(&args[2])
        .expect("articles file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSONL");
            json!({"title": v["title"], "text": v["text"], "lang": v["lang"]})
        })
        .collect();
    let clients: usize = args[3].parse().expect("CLIENTS");
    let requests: usize = args[4].parse().expect("REQUESTS");
    let (min, max): (usize, usize) = (args[5].parse().unwrap(), args[6].parse().unwrap());
    // Every request's articles, fixed before the run.
    let mut next = 0;
    let plan: Vec<Vec<Vec<Value>>> = (0..clients)
        .map(|c| {
            (0..requests)
                .map(|r| {
                    let n = min + (c * 7 + r * 3) % (max - min + 1);
                    (0..n)
                        .map(|k| {
                            let mut a = articles[next % articles.len()].clone();
                            next += 1;
                            a["id"] = json!(format!("c{c}-r{r}-{k}"));
                            a
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    if let Some(sent) = args.get(7) {
        let lines: String = plan
            .iter()
            .flatten()
            .flatten()
            .map(|a| a.to_string() + "\n")
            .collect();
        std::fs::write(sent, lines).expect("write SENT.jsonl");
    }
    let total_articles: usize = plan.iter().flatten().map(Vec::len).sum();
    let started = Instant::now();
    let workers: Vec<_> = plan
        .into_iter()
        .map(|mine| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(300))
                    .build();
                let mut latencies = Vec::new();
                let mut failures = 0;
                for inputs in mine {
                    let t = Instant::now();
                    let response = agent
                        .post(&url)
                        .set("Content-Type", "application/json")
                        .send_string(&json!({"inputs": inputs}).to_string());
                    latencies.push(t.elapsed().as_secs_f64());
                    let ok = response
                        .ok()
                        .and_then(|r| r.into_string().ok())
                        .and_then(|body| {
                            let got: Value = serde_json::from_str(&body).ok()?;
                            let ids: Vec<&str> = got
                                .as_array()?
                                .iter()
                                .filter_map(|r| r["id"].as_str())
                                .collect();
                            let sent: Vec<&str> =
                                inputs.iter().filter_map(|a| a["id"].as_str()).collect();
                            (ids == sent).then_some(())
                        });
                    if ok.is_none() {
                        failures += 1;
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for w in workers {
        let (l, f) = w.join().expect("client thread");
        latencies.extend(l);
        failures += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "clients": clients,
            "requests": latencies.len(),
            "articles": total_articles,
            "seconds": seconds,
            "articles_per_second": total_articles as f64 / seconds,
            "p50_ms": percentile(&latencies, 50.0) * 1000.0,
            "p99_ms": percentile(&latencies, 99.0) * 1000.0,
            "failed_or_mixed": failures,
        })
    );
}
