//! Seeded mutation fuzzing of every reader of untrusted input: JSONL articles, gold files,
//! predictions files, feeds files, feeds, article HTML, the taxonomy, bundle manifests and eval
//! reports. Each starts from valid inputs and mutates them a bounded number of times; a reader
//! may refuse any of them, but none may panic. A failure prints the seed that reproduces it.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use spyglass::eval::evaluate::EvalReport;
use spyglass::io::input::ArticleReader;
use spyglass::model::bundle::Bundle;
use spyglass::model::taxonomy::Taxonomy;

/// Mutated inputs per reader; bounded so the whole file runs in seconds.
const ROUNDS: u64 = 2000;

/// SplitMix64: small, seedable and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that often break parsers: quotes, brackets, entities, huge or odd numbers,
/// control characters, BOMs and invalid UTF-8.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"<",
    b">",
    b"&",
    b"&#x0;",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]>",
    b"NaN",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"null",
    b"\x00",
    b"\xEF\xBB\xBF",
    b"\xFF\xFE",
    b"\xC3",
    b"\n",
    b"\r\n",
    b"\\u0000",
    b"\\ud800",
    b"\xE2\x80\xAE",
    b"0.5",
    b"true",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            1 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(out.len())..end);
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            3 => out.truncate(at),
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(64)).min(out.len());
                let copy = out[start..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out
}

/// Runs `read` on `ROUNDS` mutations of each seed; a panic fails with the reproducing seed.
fn fuzz(name: &str, seeds: &[Vec<u8>], mut read: impl FnMut(&[u8])) {
    for (s, seed) in seeds.iter().enumerate() {
        for round in 0..ROUNDS {
            let key = (s as u64) << 32 | round;
            let mut rng = Rng(key ^ 0x5EED);
            let input = mutate(seed, &mut rng);
            if catch_unwind(AssertUnwindSafe(|| read(&input))).is_err() {
                panic!(
                    "{name}: panicked on seed {s} round {round}; input: {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn taxonomy() -> Taxonomy {
    Taxonomy::load(&root().join("labels/taxonomy.toml")).unwrap()
}

#[test]
fn jsonl_articles() {
    let seeds = vec![
        br#"{"id":"a","text":"Hackers stole records.","title":"T","lang":"en"}
{"id":7,"text":"Second article.","url":"https://x.example/1","extra":{"k":[1,2]}}
"#
        .to_vec(),
    ];
    fuzz("jsonl", &seeds, |bytes| {
        let mut reader =
            ArticleReader::from_reader("in", Box::new(std::io::Cursor::new(bytes.to_vec())), None);
        reader.max_record_bytes = 256;
        for item in reader.by_ref() {
            let _ = item;
        }
    });
}

#[test]
fn gold_files_predictions_and_feeds_lists() {
    let taxonomy = taxonomy();
    let topics: Vec<String> = taxonomy.ids().iter().map(|s| s.to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let gold = std::fs::read(root().join("eval/data/dev.jsonl")).unwrap();
    let gold_seed = gold
        .split(|&b| b == b'\n')
        .take(3)
        .collect::<Vec<_>>()
        .join(&b'\n');
    let path = dir.path().join("gold.jsonl");
    fuzz("gold", &[gold_seed], |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = spyglass::io::data::load_file(&path, &taxonomy);
    });
    let predictions = br#"{"id":"a","scores":{"espionage":0.9,"cyberattack":0.1}}
{"id":"b","labels":["data_theft"]}
"#
    .to_vec();
    fuzz("predictions", &[predictions], |bytes| {
        let _ = spyglass::eval::predictions::parse(&String::from_utf8_lossy(bytes), "p", &topics);
    });
    let list = b"# feeds\nhttps://news.example/rss.xml\nfeeds/local.atom\n\n".to_vec();
    fuzz("feeds list", &[list], |bytes| {
        let _ =
            spyglass::triage::feeds::parse_feeds_list(&String::from_utf8_lossy(bytes), dir.path());
    });
}

#[test]
fn feeds_and_article_html() {
    let feeds: Vec<Vec<u8>> = ["security-wire.xml", "tech-brief.json", "world-desk.atom"]
        .iter()
        .map(|f| std::fs::read(root().join("examples/feeds").join(f)).unwrap())
        .collect();
    let base = url::Url::parse("https://feeds.example/").unwrap();
    fuzz("feed", &feeds, |bytes| {
        let _ = spyglass::triage::feeds::parse_feed(bytes, Some(&base));
    });
    let pages: Vec<Vec<u8>> = ["bakery.html", "hospital.html"]
        .iter()
        .map(|f| std::fs::read(root().join("tests/fixtures/triage").join(f)).unwrap())
        .collect();
    fuzz("article html", &pages, |bytes| {
        let html = spyglass::triage::charset::decode_page(bytes, "text/html");
        let _ = spyglass::triage::extract::extract_article(&html, "https://news.example/a");
    });
}

#[test]
fn taxonomy_and_bundle_manifests() {
    let text = std::fs::read(root().join("labels/taxonomy.toml")).unwrap();
    fuzz("taxonomy", &[text], |bytes| {
        let _ = Taxonomy::parse(bytes, Path::new("t.toml"));
    });
    let dir = tempfile::tempdir().unwrap();
    for file in ["manifest.json", "head.safetensors"] {
        std::fs::copy(
            root().join("models/default").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let manifest = std::fs::read(dir.path().join("manifest.json")).unwrap();
    fuzz("bundle manifest", &[manifest], |bytes| {
        std::fs::write(dir.path().join("manifest.json"), bytes).unwrap();
        let _ = Bundle::load(dir.path());
    });
}

#[test]
fn eval_reports() {
    // A real report, written by `spyglass eval --predictions` (no encoder needed).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    let preds = dir.path().join("p.jsonl");
    let mut gold = String::new();
    let mut predicted = String::new();
    for (i, label) in ["cyberattack", "espionage", "data_theft"]
        .iter()
        .enumerate()
    {
        gold.push_str(&format!(
            "{{\"id\":\"a{i}\",\"lang\":\"en\",\"title\":\"T\",\"text\":\"Article {i}.\",\"labels\":[\"{label}\"],\"source\":\"written\"}}\n"
        ));
        predicted.push_str(&format!("{{\"id\":\"a{i}\",\"labels\":[\"{label}\"]}}\n"));
    }
    std::fs::write(&data, gold).unwrap();
    std::fs::write(&preds, predicted).unwrap();
    let report = dir.path().join("report.json");
    let run = common::spyglass(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--predictions",
        preds.to_str().unwrap(),
        "--bootstrap",
        "10",
        "--json",
        report.to_str().unwrap(),
        "--taxonomy",
        root().join("labels/taxonomy.toml").to_str().unwrap(),
    ]);
    common::ok(&run);
    let seed = std::fs::read(&report).unwrap();
    fuzz("eval report", &[seed], |bytes| {
        let Ok(report) = serde_json::from_slice::<EvalReport>(bytes) else {
            return;
        };
        if report.check_shapes().is_ok() {
            let _ = spyglass::eval::evaluate::compare(&report, &report, 5, 1);
        }
    });
}
