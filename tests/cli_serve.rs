//! `spyglass serve` through real HTTP on 127.0.0.1: every endpoint, every error status, results
//! identical to `spyglass label`, feeds from a triage state, graceful shutdown, and a bounded load
//! test with 16 concurrent clients.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

mod common;

use common::{model_dir, spyglass};

/// A running server, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    base: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn start(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_spyglass"));
        command
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--no-cache",
                "--encoder",
                model_dir(),
            ])
            .args(extra)
            .env_remove("SPYGLASS_API_KEY")
            .env_remove("SPYGLASS_ENCODER")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spyglass serve starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let base = loop {
            let line = receiver
                .recv_timeout(Duration::from_secs(120))
                .expect("the server says where it listens");
            if let Some(at) = line.find("http://127.0.0.1:") {
                let address: String = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                break address;
            }
        };
        Server {
            child,
            base,
            stderr: receiver,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, headers we check, and JSON (or text) body of a request.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    Answer {
        status: response.status(),
        retry_after: response.header("Retry-After").map(str::to_string),
        content_type: response.header("Content-Type").unwrap_or("").to_string(),
        body: response.into_string().unwrap(),
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn post(server: &Server, path: &str, body: &str) -> Answer {
    answer(
        agent()
            .post(&server.url(path))
            .set("Content-Type", "application/json")
            .send_string(body),
    )
}

fn get(server: &Server, path: &str) -> Answer {
    answer(agent().get(&server.url(path)).call())
}

/// The first `n` articles of the test split, as `spyglass label` reads them.
fn articles(n: usize) -> Vec<Value> {
    std::fs::read_to_string("eval/data/test.jsonl")
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            json!({"id": v["id"], "title": v["title"], "text": v["text"], "lang": v["lang"]})
        })
        .collect()
}

fn assert_error(a: &Answer, status: u16, kind: &str, mentions: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let body = a.json();
    assert_eq!(body["error_type"], kind, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

#[test]
fn every_endpoint_answers_and_classify_equals_label() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let sample = articles(12);
    std::fs::write(
        &input,
        sample
            .iter()
            .map(|a| a.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let expected = common::jsonl(&common::label_shipped(&input, "-"));

    let server = Server::start(&[], &[]);
    let a = post(&server, "/classify", &json!({"inputs": sample}).to_string());
    assert_eq!(a.status, 200, "{}", a.body);
    let got = a.json();
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), expected.len());
    for (mut served, labelled) in got.iter().cloned().zip(&expected) {
        let thresholds = served.as_object_mut().unwrap().remove("thresholds");
        assert_eq!(&served, labelled, "same record as `spyglass label`");
        assert_eq!(thresholds.unwrap().as_object().unwrap().len(), 5);
    }

    // Plain strings get their position as id; `topics`, `min_score` and `evidence` apply.
    let a = post(
        &server,
        "/classify",
        &json!({"inputs": ["Ransomware encrypted the hospital's servers overnight.", "  "],
                "topics": ["cyberattack"], "min_score": 0.5, "evidence": false})
        .to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let got = a.json();
    assert_eq!(got[0]["id"], 0);
    assert_eq!(got[0]["labels"], json!(["cyberattack"]));
    assert_eq!(got[0]["scores"].as_object().unwrap().len(), 1);
    assert!(got[0].get("evidence").is_none(), "{got}");
    assert_eq!(got[1]["id"], "1");
    assert!(
        got[1]["error"]
            .as_str()
            .unwrap()
            .contains("nothing to read"),
        "{got}"
    );

    // TEI's /embed and OpenAI's /v1/embeddings: the same unit vectors.
    let tei = post(
        &server,
        "/embed",
        r#"{"inputs": ["a spy was caught", "ransomware"]}"#,
    );
    assert_eq!(tei.status, 200, "{}", tei.body);
    let tei = tei.json();
    assert_eq!(tei.as_array().unwrap().len(), 2);
    let v: Vec<f64> = tei[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(v.len(), 384);
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit length within 1e-4: {norm}");
    let openai = post(
        &server,
        "/v1/embeddings",
        r#"{"input": "a spy was caught", "model": "multilingual-e5-small"}"#,
    );
    assert_eq!(openai.status, 200, "{}", openai.body);
    let openai = openai.json();
    assert_eq!(openai["object"], "list");
    assert_eq!(openai["data"][0]["index"], 0);
    assert_eq!(openai["data"][0]["embedding"], tei[0]);
    assert!(openai["usage"]["prompt_tokens"].as_u64().unwrap() > 3);

    assert_eq!(get(&server, "/health").json(), json!({"status": "ok"}));
    let info = get(&server, "/info").json();
    assert_eq!(info["model"], "default@2.0.0");
    assert_eq!(info["encoder"]["hidden_size"], 384);
    assert_eq!(info["compute"]["precision"], "f32");
    assert_eq!(info["topics"].as_array().unwrap().len(), 5);
    assert!(info["topics"][0]["threshold"].as_f64().unwrap() > 0.0);
    let metrics = get(&server, "/metrics");
    assert!(
        metrics.content_type.starts_with("text/plain"),
        "{}",
        metrics.content_type
    );
    for expected in [
        "spyglass_requests_total{endpoint=\"/classify\",status=\"200\"} 2",
        "spyglass_articles_total 16",
        "spyglass_queue_depth 0",
        "spyglass_batch_articles_count",
        "spyglass_request_duration_seconds_bucket{endpoint=\"/classify\",le=\"+Inf\"} 2",
    ] {
        assert!(
            metrics.body.contains(expected),
            "{expected} in\n{}",
            metrics.body
        );
    }
}

#[test]
fn every_error_has_its_status_and_a_json_body() {
    let server = Server::start(
        &[
            "--max-body-bytes",
            "2000",
            "--max-inputs",
            "3",
            "--max-input-chars",
            "100",
            "--request-timeout-ms",
            "1500",
        ],
        &[],
    );
    let send = |path: &str, body: &str| post(&server, path, body);
    assert_error(
        &send("/classify", "{\"inputs\": [}"),
        400,
        "invalid_json",
        "",
    );
    let no_type = answer(agent().post(&server.url("/classify")).send_string("{}"));
    assert_error(
        &no_type,
        415,
        "unsupported_media_type",
        "Content-Type: application/json",
    );
    assert_error(
        &send("/classify", r#"{"input": "x"}"#),
        422,
        "validation",
        "unknown field `input`",
    );
    assert_error(
        &send("/classify", r#"{}"#),
        422,
        "validation",
        "missing field `inputs`",
    );
    assert_error(
        &send("/classify", r#"[1, 2]"#),
        422,
        "validation",
        "JSON object",
    );
    assert_error(
        &send("/classify", r#"{"inputs": 5}"#),
        422,
        "validation",
        "`inputs` must be",
    );
    assert_error(
        &send("/classify", r#"{"inputs": []}"#),
        422,
        "validation",
        "`inputs` is empty",
    );
    assert_error(
        &send("/classify", r#"{"inputs": "x", "topics": ["spying"]}"#),
        422,
        "validation",
        "`spying`",
    );
    assert_error(
        &send("/classify", r#"{"inputs": "x", "min_score": 2}"#),
        422,
        "validation",
        "`min_score`",
    );
    assert_error(
        &send("/classify", r#"{"inputs": ["a", "b", "c", "d"]}"#),
        413,
        "payload_too_large",
        "`--max-inputs`",
    );
    assert_error(
        &send(
            "/classify",
            &json!({"inputs": ["x".repeat(101)]}).to_string(),
        ),
        413,
        "payload_too_large",
        "`inputs[0]` has 101 characters",
    );
    assert_error(
        &send(
            "/classify",
            &json!({"inputs": ["x ".repeat(1500)]}).to_string(),
        ),
        413,
        "payload_too_large",
        "",
    );
    assert_error(
        &send("/embed", r#"{"inputs": ["ok", 3]}"#),
        422,
        "validation",
        "`inputs[1]`",
    );
    assert_error(
        &send("/embed", r#"{"inputs": "x", "normalize": false}"#),
        422,
        "validation",
        "normalize",
    );
    assert_error(
        &send("/embed", r#"{"inputs": " "}"#),
        422,
        "validation",
        "empty",
    );
    assert_error(
        &send("/v1/embeddings", r#"{"input": [[1, 2, 3]]}"#),
        422,
        "validation",
        "token ids",
    );
    assert_error(
        &send(
            "/v1/embeddings",
            r#"{"input": "x", "encoding_format": "base64"}"#,
        ),
        422,
        "validation",
        "encoding_format",
    );
    assert_error(
        &get(&server, "/nowhere"),
        404,
        "not_found",
        "no such endpoint",
    );
    assert_error(
        &get(&server, "/classify"),
        405,
        "method_not_allowed",
        "POST /classify",
    );
    assert_error(
        &get(&server, "/feeds/all.atom"),
        404,
        "not_found",
        "--triage-state",
    );
    // A body that never finishes arriving is cut off at the time limit.
    let slow = {
        use std::io::{Read, Write};
        let address = server.base.trim_start_matches("http://").to_string();
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .write_all(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\":")
            .unwrap();
        let mut reply = String::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = stream.read_to_string(&mut reply);
        reply
    };
    assert!(slow.starts_with("HTTP/1.1 503"), "{slow}");
    assert!(slow.contains("`--request-timeout-ms`"), "{slow}");
    // After all that, the server still answers.
    assert_eq!(get(&server, "/health").status, 200);
}

#[test]
fn the_api_key_guards_everything_but_health() {
    let server = Server::start(&[], &[("SPYGLASS_API_KEY", "s3cret")]);
    assert_eq!(get(&server, "/health").status, 200);
    assert_error(
        &get(&server, "/info"),
        401,
        "unauthorized",
        "Authorization: Bearer",
    );
    let wrong = answer(
        agent()
            .post(&server.url("/classify"))
            .set("Content-Type", "application/json")
            .set("Authorization", "Bearer s3cre")
            .send_string(r#"{"inputs": "x"}"#),
    );
    assert_error(&wrong, 401, "unauthorized", "API key");
    let right = answer(
        agent()
            .get(&server.url("/info"))
            .set("Authorization", "Bearer s3cret")
            .call(),
    );
    assert_eq!(right.status, 200, "{}", right.body);
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_shutdown_finishes_requests_in_flight() {
    // Each batch waits up to 1.5 s for company, so the first request stays queued meanwhile.
    let mut server = Server::start(&["--max-queue", "1", "--max-wait-ms", "1500"], &[]);
    let url = server.url("/classify");
    let first = std::thread::spawn(move || {
        answer(
            agent()
                .post(&url)
                .set("Content-Type", "application/json")
                .send_string(r#"{"inputs": [{"id": "slow", "text": "A spy was caught."}]}"#),
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    let busy = post(&server, "/classify", r#"{"inputs": "Another article."}"#);
    assert_error(&busy, 503, "overloaded", "busy");
    assert_eq!(busy.retry_after.as_deref(), Some("1"));

    // SIGTERM while the first request waits: it is still answered, then the process exits 0.
    let status = server.stop();
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()[0]["id"], "slow");
    assert!(status.success(), "exit {status:?}");
    let said: Vec<String> = server.stderr.try_iter().collect();
    assert!(said.iter().any(|l| l.contains("stopped")), "{said:?}");
    assert!(
        agent().get(&server.url("/health")).call().is_err(),
        "no longer accepting"
    );
}

#[test]
fn sixteen_concurrent_clients_get_their_own_answers() {
    let server = Server::start(&[], &[]);
    let url = server.url("/classify");
    let sample = articles(24);
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|client| {
            let url = url.clone();
            let sample = sample.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut checked = 0;
                for request in 0..16 {
                    let n = 1 + (client + request) % 3;
                    let inputs: Vec<Value> = (0..n)
                        .map(|k| {
                            let mut a =
                                sample[(client * 7 + request * 3 + k) % sample.len()].clone();
                            a["id"] = json!(format!("c{client}-r{request}-{k}"));
                            a
                        })
                        .collect();
                    let a = answer(
                        agent
                            .post(&url)
                            .set("Content-Type", "application/json")
                            .send_string(&json!({"inputs": inputs}).to_string()),
                    );
                    assert_eq!(a.status, 200, "{}", a.body);
                    let got = a.json();
                    let ids: Vec<&str> = got
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["id"].as_str().unwrap())
                        .collect();
                    let sent: Vec<&str> =
                        inputs.iter().map(|a| a["id"].as_str().unwrap()).collect();
                    assert_eq!(ids, sent, "each response answers its own request, in order");
                    for r in got.as_array().unwrap() {
                        assert!(r.get("error").is_none(), "{r}");
                        assert_eq!(r["scores"].as_object().unwrap().len(), 5);
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(answered, 256);
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "time box: the load test must finish, not be fast"
    );
    let metrics = get(&server, "/metrics").body;
    assert!(
        metrics.contains("spyglass_requests_total{endpoint=\"/classify\",status=\"200\"} 256"),
        "{metrics}"
    );
}

#[test]
fn triage_state_becomes_per_topic_atom_feeds() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state.sqlite");
    let digest = tmp.path().join("digest.jsonl");
    let triage = spyglass(&[
        "triage",
        "--feeds-file",
        "examples/feeds.txt",
        "--state",
        state.to_str().unwrap(),
        "--output",
        digest.to_str().unwrap(),
        "--no-cache",
        "--encoder",
        model_dir(),
    ]);
    assert!(
        triage.status.success(),
        "{}",
        String::from_utf8_lossy(&triage.stderr)
    );
    let reported = common::read_jsonl(Path::new(&digest));
    assert!(!reported.is_empty());

    let server = Server::start(&["--triage-state", state.to_str().unwrap()], &[]);
    let all = get(&server, "/feeds/all.atom");
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(
        all.content_type.starts_with("application/atom+xml"),
        "{}",
        all.content_type
    );
    let feed = feed_rs::parser::parse(all.body.as_bytes()).expect("valid Atom");
    assert_eq!(
        feed.entries.len(),
        reported.len(),
        "every reported story, once"
    );
    let mut titles: Vec<String> = feed
        .entries
        .iter()
        .map(|e| e.title.as_ref().unwrap().content.clone())
        .collect();
    let mut expected: Vec<String> = reported
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect();
    titles.sort();
    expected.sort();
    assert_eq!(titles, expected);
    // Stable ids: the same entries on a second request.
    let again = feed_rs::parser::parse(get(&server, "/feeds/all.atom").body.as_bytes()).unwrap();
    let ids = |f: &feed_rs::model::Feed| f.entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&feed), ids(&again));

    // A topic's feed holds exactly the stories assigned that topic.
    let espionage: Vec<&Value> = reported
        .iter()
        .filter(|r| {
            r["topics"]
                .as_array()
                .unwrap()
                .contains(&json!("espionage"))
        })
        .collect();
    let topic =
        feed_rs::parser::parse(get(&server, "/feeds/espionage.atom").body.as_bytes()).unwrap();
    assert_eq!(topic.entries.len(), espionage.len());
    for entry in &topic.entries {
        assert!(entry.categories.iter().any(|c| c.term == "espionage"));
        assert!(entry.summary.is_some());
    }
    assert_error(
        &get(&server, "/feeds/spying.atom"),
        404,
        "not_found",
        "topics: all",
    );
    assert_error(
        &get(&server, "/feeds/espionage.rss"),
        404,
        "not_found",
        ".atom",
    );
    // A state removed while serving is an error, never a new empty database.
    std::fs::remove_file(&state).unwrap();
    assert_error(
        &get(&server, "/feeds/all.atom"),
        500,
        "triage_state",
        "is gone",
    );
    assert!(!state.exists());
}
