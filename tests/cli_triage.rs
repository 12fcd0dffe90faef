//! `spyglass triage` through the binary, against feeds and pages served by a small HTTP server
//! on 127.0.0.1 inside the test (conditional GET, gzip, redirects, failures, stalls).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{jsonl, model_dir, ok, spyglass, toy};

const FIXTURES: &str = "tests/fixtures/triage";

/// Arguments every triage run needs: the toy model, the encoder, the cache and a state file.
fn triage_args(state: &Path) -> Vec<String> {
    let (bundle, cache) = toy();
    [
        "triage",
        "--model",
        bundle.to_str().unwrap(),
        "--encoder",
        model_dir(),
        "--cache",
        cache.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_triage(state: &Path, extra: &[&str]) -> Output {
    let mut args = triage_args(state);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spyglass(&args)
}

fn fixture(name: &str, base: &str) -> Vec<u8> {
    std::fs::read_to_string(Path::new(FIXTURES).join(name))
        .unwrap()
        .replace("{BASE}", base)
        .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server on 127.0.0.1.

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: HashMap<String, String>,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Accept the request and never answer.
    stall: bool,
}

impl Reply {
    fn ok(content_type: &str, body: Vec<u8>) -> Self {
        Reply {
            status: 200,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
            stall: false,
        }
    }
    fn status(status: u16) -> Self {
        Reply {
            status,
            headers: vec![("Content-Type", "text/plain".into())],
            body: b"no".to_vec(),
            stall: false,
        }
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Handler = Arc<dyn Fn(&Request, &str) -> Reply + Send + Sync>;

struct Server {
    base: String,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (base2, log2) = (base.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, base, log) = (handler.clone(), base2.clone(), log2.clone());
                std::thread::spawn(move || serve(stream, &handler, &base, &log));
            }
        });
        Server { base, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self, path: &str) -> Vec<Request> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn serve(stream: TcpStream, handler: &Handler, base: &str, log: &Mutex<Vec<Request>>) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let request = Request { path, headers };
    log.lock().unwrap().push(request.clone());
    let reply = handler(&request, base);
    let mut stream = stream;
    if reply.stall {
        std::thread::sleep(Duration::from_secs(4));
        return;
    }
    let reason = match reply.status {
        200 => "OK",
        301 => "Moved Permanently",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Other",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nConnection: close\r\nContent-Length: {}\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if reply.status != 304 {
        let _ = stream.write_all(&reply.body);
    }
    let _ = stream.flush();
    let mut rest = Vec::new();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.read_to_end(&mut rest);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn ranks_new_stories_dedups_reports_failures_and_second_run_shows_only_new() {
    let round = Arc::new(AtomicUsize::new(1));
    let r = round.clone();
    let handler: Handler = Arc::new(move |req: &Request, base: &str| {
        let round = r.load(Ordering::SeqCst);
        match req.path.as_str() {
            // RSS with an ETag: the second round answers 304 to the matching If-None-Match.
            "/metro.xml" => {
                if req.headers.get("if-none-match").map(String::as_str) == Some("\"metro-v1\"") {
                    return Reply::status(304);
                }
                Reply::ok("application/rss+xml", fixture("metro.rss.xml", base))
                    .header("ETag", "\"metro-v1\"")
            }
            // Atom behind a redirect, gzipped when asked, with Last-Modified; round 2 adds an entry.
            "/county" => Reply::status(301).header("Location", "/feeds/county.atom"),
            "/feeds/county.atom" => {
                let stamp = "Mon, 10 Mar 2025 12:00:00 GMT";
                if round == 1
                    && req.headers.get("if-modified-since").map(String::as_str) == Some(stamp)
                {
                    return Reply::status(304);
                }
                let extra = if round >= 2 {
                    String::from_utf8(fixture("county-new-entry.xml", base)).unwrap()
                } else {
                    String::new()
                };
                let body = String::from_utf8(fixture("county.atom.xml", base))
                    .unwrap()
                    .replace("{EXTRA}", &extra);
                let gz = req
                    .headers
                    .get("accept-encoding")
                    .is_some_and(|v| v.contains("gzip"));
                let reply = if gz {
                    Reply::ok("application/atom+xml", gzip(body.as_bytes()))
                        .header("Content-Encoding", "gzip")
                } else {
                    Reply::ok("application/atom+xml", body.into_bytes())
                };
                let modified = if round >= 2 {
                    "Tue, 11 Mar 2025 07:00:00 GMT"
                } else {
                    stamp
                };
                reply.header("Last-Modified", modified)
            }
            "/broken.xml" => Reply::ok("application/rss+xml", fixture("broken.xml", base)),
            "/slow.xml" => Reply {
                stall: true,
                ..Reply::status(200)
            },
            _ => Reply::status(404),
        }
    });
    let server = Server::start(handler);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/triage.sqlite");
    let feeds_file = dir.path().join("feeds.txt");
    std::fs::write(
        &feeds_file,
        format!(
            "# test feeds\n{}\n{}   # atom, redirected\n\n{}\n{}\n{}\n",
            server.url("/metro.xml"),
            server.url("/county"),
            server.url("/broken.xml"),
            server.url("/missing.xml"),
            server.url("/slow.xml")
        ),
    )
    .unwrap();
    let feeds = feeds_file.to_str().unwrap();
    let started = Instant::now();
    let run = run_triage(&state, &["--feeds-file", feeds, "--timeout", "1s"]);
    let stderr = ok(&run);
    let rows = jsonl(&run.stdout);

    // Failures are reported with their reason, and the good feeds still come through.
    assert!(
        stderr.contains(&format!(
            "warning: skipped feed `{}`: malformed feed",
            server.url("/broken.xml")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: skipped feed `{}`: HTTP 404 Not Found",
            server.url("/missing.xml")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: skipped feed `{}`: no answer from",
            server.url("/slow.xml")
        )),
        "{stderr}"
    );
    assert!(stderr.contains("within 1s (`--timeout`)"), "{stderr}");
    assert!(stderr.contains("the publisher has to fix it"), "{stderr}");
    let metro_line = format!(
        "feed `{}`: 3 items, 3 new, 0 seen before\n",
        server.url("/metro.xml")
    );
    assert!(stderr.contains(&metro_line), "{stderr}");
    let county_line = format!(
        "feed `{}`: 3 items, 2 new, 0 seen before, 1 with a link or GUID already listed",
        server.url("/county")
    );
    assert!(stderr.contains(&county_line), "{stderr}");
    assert!(stderr.contains("5 feeds (2 read, 0 not modified, 3 skipped); 6 items: 5 new, 0 seen before, 2 duplicates (1 same link, 1 similar story, 0 of earlier stories); 4 stories, 4 listed"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));

    // Four stories: the cyberattack first; the same link in two feeds and the same wire story
    // in two outlets each became one entry listing both sources.
    let titles: Vec<&str> = rows.iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(rows.len(), 4, "{titles:?}");
    let first = &rows[0];
    assert_eq!(
        first["title"],
        "Ransomware attack shuts down city hospital computers"
    );
    assert_eq!(first["rank"], 1);
    assert_eq!(first["topics"], serde_json::json!(["cyberattack"]));
    assert_eq!(first["top_topic"], "cyberattack");
    assert_eq!(
        first["link"],
        server.url("/news/hospital"),
        "tracking parameters are dropped"
    );
    assert_eq!(first["time"], "2025-03-10T06:30:00Z");
    assert_eq!(first["lang"], "en");
    assert_eq!(first["content"], "feed");
    assert!(
        first["excerpt"]
            .as_str()
            .unwrap()
            .starts_with("A ransomware attack encrypted"),
        "{first}"
    );
    assert!(
        first["evidence"]["cyberattack"]["excerpt"]
            .as_str()
            .is_some(),
        "{first}"
    );
    assert_eq!(first["sources"][0]["feed_title"], "Metro Times");
    let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let by_title = |t: &str| {
        rows.iter()
            .find(|r| r["title"].as_str().unwrap().contains(t))
            .unwrap_or_else(|| panic!("{t} in {titles:?}"))
    };
    let bakery = by_title("Bakery");
    let feeds_of = |r: &serde_json::Value| -> Vec<String> {
        let mut f: Vec<String> = r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["feed_title"].as_str().unwrap().to_string())
            .collect();
        f.sort();
        f
    };
    assert_eq!(feeds_of(bakery), ["County Herald", "Metro Times"]);
    let lanes = by_title("cycle lanes");
    assert_eq!(feeds_of(lanes), ["County Herald", "Metro Times"]);
    assert!(by_title("choir")["sources"].as_array().unwrap().len() == 1);
    // The Atom feed was fetched through the redirect, gzipped.
    let county = server.requests("/feeds/county.atom");
    assert!(county[0].headers["accept-encoding"].contains("gzip"));
    assert!(county[0].headers["user-agent"].starts_with("spyglass/"));

    // Second run: the RSS feed answers 304, the Atom feed has two new entries, one of them a
    // rewrite of the hospital story already reported; only the other one is listed.
    round.store(2, Ordering::SeqCst);
    let run = run_triage(&state, &["--feeds-file", feeds, "--timeout", "1s"]);
    let stderr = ok(&run);
    let rows = jsonl(&run.stdout);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["title"],
        "Airline website knocked offline by denial-of-service attack"
    );
    assert!(
        stderr.contains(&format!(
            "feed `{}`: not modified since the last run",
            server.url("/metro.xml")
        )),
        "{stderr}"
    );
    let county_line = format!(
        "feed `{}`: 5 items, 2 new, 3 seen before",
        server.url("/county")
    );
    assert!(stderr.contains(&county_line), "{stderr}");
    assert!(stderr.contains("duplicate: \"City hospital computers shut down by ransomware attack\" repeats \"Ransomware attack shuts down city hospital computers\" from an earlier run"), "{stderr}");
    assert!(stderr.contains("5 feeds (1 read, 1 not modified, 3 skipped); 5 items: 2 new, 3 seen before, 1 duplicates (0 same link, 0 similar story, 1 of earlier stories); 1 stories, 1 listed"), "{stderr}");
    let metro = server.requests("/metro.xml");
    assert_eq!(metro.len(), 2);
    assert_eq!(
        metro[1].headers.get("if-none-match").map(String::as_str),
        Some("\"metro-v1\"")
    );
    let county = server.requests("/feeds/county.atom");
    assert_eq!(
        county[1]
            .headers
            .get("if-modified-since")
            .map(String::as_str),
        Some("Mon, 10 Mar 2025 12:00:00 GMT")
    );

    // A third run finds nothing new and writes an empty list.
    let run = run_triage(&state, &["--feeds-file", feeds, "--timeout", "1s"]);
    let stderr = ok(&run);
    assert!(
        run.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(stderr.contains("0 new"), "{stderr}");
    // Every run says where its state is, so "0 new" can be explained.
    assert!(
        stderr.contains(&format!("state `{}`", state.display())),
        "{stderr}"
    );
}

#[test]
fn fetched_articles_drop_related_blocks_and_failed_pages_fall_back_to_feed_text() {
    let handler: Handler = Arc::new(|req: &Request, base: &str| match req.path.as_str() {
        "/pages.xml" => Reply::ok("application/rss+xml", fixture("pages.rss.xml", base)),
        "/story/bakery.html" => Reply::ok("text/html; charset=utf-8", fixture("bakery.html", base)),
        "/story/hospital.html" => {
            Reply::ok("text/html; charset=utf-8", fixture("hospital.html", base))
        }
        _ => Reply::status(404),
    });
    let server = Server::start(handler);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    let out = dir.path().join("ranked.jsonl");
    let run = run_triage(
        &state,
        &[
            "--feed",
            &server.url("/pages.xml"),
            "--fetch-articles",
            // The pages live on 127.0.0.1, like every page of this test server.
            "--allow-private-addresses",
            "--output",
            out.to_str().unwrap(),
            "--timeout",
            "2s",
        ],
    );
    let stderr = ok(&run);
    let rows = jsonl(&std::fs::read(&out).unwrap());
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["title"], "Hospital systems down");
    assert_eq!(rows[0]["content"], "article");
    assert_eq!(rows[0]["topics"], serde_json::json!(["cyberattack"]));
    assert!(
        rows[0]["excerpt"]
            .as_str()
            .unwrap()
            .contains("ransomware attack encrypted"),
        "{}",
        rows[0]
    );

    // The bakery page's "Related articles" block is full of attack words; the story is not.
    let bakery = rows
        .iter()
        .find(|r| r["title"] == "Bakery extends opening hours")
        .unwrap();
    assert_eq!(bakery["content"], "article");
    let excerpt = bakery["excerpt"].as_str().unwrap();
    assert!(excerpt.contains("rye bread"), "{excerpt}");
    for word in ["Ransomware", "Hackers", "cookies", "phishing", "Sport"] {
        assert!(!excerpt.contains(word), "{word} leaked into {excerpt}");
    }
    assert_eq!(bakery["topics"], serde_json::json!([]), "{bakery}");
    assert!(bakery["score"].as_f64().unwrap() < rows[0]["score"].as_f64().unwrap());

    // A page that cannot be fetched falls back to the feed's own text, and says so.
    let library = rows
        .iter()
        .find(|r| r["title"] == "Library reopens after renovation")
        .unwrap();
    assert_eq!(library["content"], "feed");
    assert!(library["excerpt"]
        .as_str()
        .unwrap()
        .starts_with("The town library reopened"));
    assert!(
        stderr.contains(&format!(
            "warning: article `{}`: HTTP 404 Not Found",
            server.url("/story/gone.html")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 articles fell back to the feed's text"),
        "{stderr}"
    );
}

#[test]
fn hostile_redirects_fail_one_source_and_private_pages_are_refused() {
    const SECRET: &str = "internal admin token 7f3a";
    let handler: Handler = Arc::new(|req: &Request, base: &str| {
        match req.path.as_str() {
        "/to-file" => Reply::status(302).header("Location", "file:///etc/passwd"),
        "/to-mailto" => Reply::status(302).header("Location", "mailto:editor@example.org"),
        "/to-data" => Reply::status(301).header("Location", "data:text/xml,<rss/>"),
        "/to-js" => Reply::status(307).header("Location", "javascript:alert(1)"),
        "/to-metadata" => Reply::status(302).header("Location", "http://169.254.169.254/latest/"),
        "/news.xml" => Reply::ok(
            "application/rss+xml",
            format!(
                r#"<?xml version="1.0"?><rss version="2.0"><channel><title>N</title>
<item><title>Council budget approved</title><link>{base}/secret</link><guid>n1</guid>
<description>The council approved its budget for next year after a long debate on Tuesday evening.</description></item>
<item><title>Harbour crane repaired</title><link>{base}/to-metadata</link><guid>n2</guid>
<description>The harbour's largest crane is working again after a week of repairs to its cables.</description></item>
<item><title>Ferry timetable changes</title><link>{base}/to-file</link><guid>n3</guid>
<description>The winter ferry timetable starts on Monday with two fewer crossings a day.</description></item>
</channel></rss>"#
            )
            .into_bytes(),
        ),
        "/secret" => Reply::ok(
            "text/html",
            format!("<html><body><article><p>{SECRET}. Do not share.</p></article></body></html>")
                .into_bytes(),
        ),
        _ => Reply::status(404),
    }
    });
    let server = Server::start(handler);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    let mut args: Vec<String> = [
        "/to-file",
        "/to-mailto",
        "/to-data",
        "/to-js",
        "/to-metadata",
        "/news.xml",
    ]
    .iter()
    .flat_map(|p| ["--feed".to_string(), server.url(p)])
    .collect();
    args.extend(["--fetch-articles", "--timeout", "2s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_triage(&state, &args);
    // No panic: the bad sources fail with a clear line each and the run completes.
    let stderr = ok(&run);
    for (path, location) in [
        ("/to-file", "file:///etc/passwd"),
        ("/to-mailto", "mailto:editor@example.org"),
        ("/to-data", "data:text/xml,<rss/>"),
        ("/to-js", "javascript:alert(1)"),
    ] {
        assert!(
            stderr.contains(&format!(
                "redirects to `{location}`, which is not an http or https address"
            )),
            "{path}: {stderr}"
        );
        assert!(stderr.contains(&server.url(path)), "{path}: {stderr}");
    }
    // A redirect from the user's feed host to a link-local address is refused before connecting.
    assert!(stderr.contains("169.254.169.254"), "{stderr}");
    assert!(stderr.contains("`--allow-private-addresses`"), "{stderr}");
    // Article pages on a private address are refused by default: never requested, never copied.
    assert!(server.requests("/secret").is_empty());
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(!out.contains(SECRET), "{out}");
    let rows = jsonl(&run.stdout);
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows.iter().all(|r| r["content"] == "feed"), "{out}");

    // With the opt-in, the local page is fetched.
    let run = run_triage(
        &dir.path().join("other.sqlite"),
        &[
            "--feed",
            &server.url("/news.xml"),
            "--fetch-articles",
            "--allow-private-addresses",
            "--timeout",
            "2s",
        ],
    );
    ok(&run);
    assert_eq!(server.requests("/secret").len(), 1);
}

#[test]
fn example_feeds_make_markdown_and_html_digests_and_since_filters() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("digest.html");
    let run = run_triage(
        &dir.path().join("a.sqlite"),
        &[
            "--feeds-file",
            "examples/feeds.txt",
            "--format",
            "html",
            "-o",
            html.to_str().unwrap(),
        ],
    );
    let stderr = ok(&run);
    assert!(
        stderr.contains("3 feeds (3 read, 0 not modified, 0 skipped); 11 items: 11 new"),
        "{stderr}"
    );
    assert!(stderr.contains("1 similar story"), "{stderr}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("10 new stories from 3 feeds"), "{page}");
    let first = page.split("<li>").nth(1).unwrap();
    assert!(first.contains("Eastbridge"), "{first}");
    assert!(
        first.contains(">Harbour Gazette</a>") && first.contains(">World Desk</a>"),
        "{first}"
    );

    // --since keeps the afternoon's items only; --min-score drops the low scorers from the list.
    let md = dir.path().join("digest.md");
    let run = run_triage(
        &dir.path().join("b.sqlite"),
        &[
            "--feeds-file",
            "examples/feeds.txt",
            "--format",
            "markdown",
            "-o",
            md.to_str().unwrap(),
            "--since",
            "2025-03-11T13:00:00Z",
            "--min-score",
            "0.4",
        ],
    );
    let stderr = ok(&run);
    assert!(stderr.contains("7 older than --since"), "{stderr}");
    let digest = std::fs::read_to_string(&md).unwrap();
    assert!(digest.starts_with("# spyglass triage"), "{digest}");
    assert!(digest.contains("## 1. [Phishing campaign breaks into council email accounts](<https://tech-brief.example/902>)"), "{digest}");
    assert!(!digest.contains("Eastbridge"), "{digest}");
    assert!(
        !digest.contains("medieval maps"),
        "below --min-score: {digest}"
    );
}

#[test]
fn watch_polls_until_ctrl_c_and_finishes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.xml");
    std::fs::write(&feed, fixture("metro.rss.xml", "https://metro.example")).unwrap();
    let out = dir.path().join("out.jsonl");
    let mut args = triage_args(&dir.path().join("state.sqlite"));
    args.extend(
        [
            "--feed",
            feed.to_str().unwrap(),
            "--watch",
            "1s",
            "-o",
            out.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(&args)
        .env_remove("SPYGLASS_ENCODER")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait for two polls: the first reports three stories, the second nothing new.
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("triage: next poll"))
        .count()
        < 2
    {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no second poll: {seen:?}"),
        }
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    seen.extend(rx.iter());
    assert!(status.success(), "{status:?} {seen:?}");
    assert!(
        seen.iter().any(|l| l.starts_with("triage: stopped")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("3 items: 0 new, 3 seen before")),
        "{seen:?}"
    );
    // The file holds the last digest with stories (the quiet second poll left it alone).
    let rows = jsonl(&std::fs::read(&out).unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["title"],
        "Ransomware attack shuts down city hospital computers"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    let fails = |extra: &[&str], needle: &str| {
        let run = run_triage(&state, extra);
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    };
    fails(&[], "no feeds to read: pass `--feed URL_OR_FILE`");
    // Values past any sane range are errors, not panics or hangs.
    let feed = "examples/feeds/world-desk.atom";
    fails(
        &["--feed", feed, "--since", "99999999999999999d"],
        "longer than 100 years",
    );
    fails(
        &["--feed", feed, "--watch", "18446744073709551615s"],
        "longer than 100 years",
    );
    fails(&["--feed", feed, "--threads", "99999999"], "from 1 to 1024");
    fails(&["--feed", feed, "--batch-size", "0"], "from 1 to 4096");
    // A `--state` that is some other file is refused and left as it was.
    let notes = dir.path().join("notes.sqlite");
    let text = "my notes, not a spyglass database; long enough for a header check......";
    std::fs::write(&notes, text).unwrap();
    let run = run_triage(&notes, &["--feed", feed]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not a spyglass triage state"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), text);
    fails(
        &["--feeds-file", "nope/feeds.txt"],
        "cannot read feeds file `nope/feeds.txt`",
    );
    fails(
        &[
            "--feed",
            "examples/feeds/world-desk.atom",
            "--since",
            "last tuesday",
        ],
        "--since",
    );
    fails(
        &[
            "--feed",
            "examples/feeds/world-desk.atom",
            "--watch",
            "often",
        ],
        "--watch",
    );
    fails(
        &[
            "--feed",
            "examples/feeds/world-desk.atom",
            "--min-score",
            "3",
        ],
        "`--min-score` must be a probability",
    );
    fails(
        &[
            "--feed",
            "examples/feeds/world-desk.atom",
            "--format",
            "pdf",
        ],
        "--format",
    );
    fails(
        &[
            "--feed",
            "examples/feeds/world-desk.atom",
            "-o",
            "no/such/dir/out.jsonl",
        ],
        "`--output` folder `no/such/dir` does not exist",
    );
    let not_db = dir.path().join("not-a-db.sqlite");
    std::fs::write(
        &not_db,
        "plain text, not a database; plain text, not a database",
    )
    .unwrap();
    let run = run_triage(&not_db, &["--feed", "examples/feeds/world-desk.atom"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("pass another `--state`"));
    // Feeds that cannot be read at all are an error after each is reported; one good feed is
    // enough for success.
    let bad_list = dir.path().join("feeds.txt");
    std::fs::write(&bad_list, "ftp://example.com/feed.xml\nmissing-feed.xml\n").unwrap();
    let run = run_triage(
        &state,
        &[
            "--feeds-file",
            bad_list.to_str().unwrap(),
            "--topics",
            "cyberattack",
        ],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: skipped feed ({}:1): `ftp://example.com/feed.xml` uses an unsupported scheme",
            bad_list.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("`missing-feed.xml` is neither an http(s) URL nor an existing file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("none of the 2 feeds could be read"),
        "{stderr}"
    );
    fails(
        &[
            "--feed",
            "examples/feeds/world-desk.atom",
            "--topics",
            "weather",
        ],
        "`--topics` names `weather`",
    );
}

#[test]
fn article_pages_are_decoded_by_their_declared_charset() {
    const JA: &str = "東京の研究所から新型半導体の設計図が盗まれた事件で、警察は元社員を逮捕した。捜査当局によると、元社員は外国の企業に機密情報を渡していた疑いがある。研究所は社内の管理体制を見直すと発表した。";
    const FR: &str = "Une entreprise de défense a découvert que des données sensibles avaient été copiées par un employé. L'enquête a été confiée à la police judiciaire, qui a perquisitionné les bureaux à Besançon.";
    let handler: Handler = Arc::new(|req: &Request, base: &str| {
        match req.path.as_str() {
        "/news.xml" => Reply::ok(
            "application/rss+xml",
            format!(
                r#"<?xml version="1.0"?><rss version="2.0"><channel><title>N</title>
<item><title>設計図流出</title><link>{base}/ja</link><guid>ja</guid><description>短い要約。</description></item>
<item><title>Fuite de données</title><link>{base}/fr</link><guid>fr</guid><description>Résumé court.</description></item>
</channel></rss>"#
            )
            .into_bytes(),
        ),
        // Shift_JIS, said only by the HTTP header.
        "/ja" => Reply::ok(
            "text/html; charset=Shift_JIS",
            encoding_rs::SHIFT_JIS
                .encode(&format!(
                    "<html><head><title>記事</title></head><body><article><h1>設計図流出</h1><p>{JA}</p><p>{JA}</p></article></body></html>"
                ))
                .0
                .into_owned(),
        ),
        // windows-1252, said only by a <meta> tag.
        "/fr" => Reply::ok(
            "text/html",
            encoding_rs::WINDOWS_1252
                .encode(&format!(
                    "<html><head><meta charset=\"windows-1252\"><title>Article</title></head><body><article><h1>Fuite</h1><p>{FR}</p><p>{FR}</p></article></body></html>"
                ))
                .0
                .into_owned(),
        ),
        _ => Reply::status(404),
    }
    });
    let server = Server::start(handler);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.sqlite");
    let feed = server.url("/news.xml");
    let run = run_triage(
        &state,
        &[
            "--feed",
            &feed,
            "--fetch-articles",
            "--allow-private-addresses",
            "--timeout",
            "5s",
        ],
    );
    let stderr = ok(&run);
    let rows = jsonl(&run.stdout);
    assert_eq!(rows.len(), 2, "{stderr}");
    for row in &rows {
        assert_eq!(row["content"], "article", "{row}\n{stderr}");
        let excerpt = row["excerpt"].as_str().unwrap();
        assert!(!excerpt.contains('\u{FFFD}'), "{excerpt}");
    }
    let all: String = rows.iter().map(|r| r.to_string()).collect();
    assert!(all.contains("設計図が盗まれた"), "{all}");
    assert!(all.contains("défense") || all.contains("données"), "{all}");
}
