//! `spyglass triage`: polls news feeds, keeps the items not seen before, de-duplicates stories,
//! scores them with the model and writes them ranked (JSONL, Markdown or HTML); state between
//! runs lives in SQLite and is committed only after the output is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};

use super::model::load_model;
use super::Outcome;
use crate::cli::TriageArgs;
use spyglass::encoder::{Document, Span};
use spyglass::io::output::Output;
use spyglass::label::EXCERPT_CHARS;
use spyglass::model::classify::{excerpt, round4, topic_labels, Prediction, TopicLabels};
use spyglass::model::load::LoadedModel;
use spyglass::triage::dedup::{
    best_match, canonical_url, group_near_duplicates, item_keys, short_id,
};
use spyglass::triage::extract::extract_article;
use spyglass::triage::feeds::{
    parse_feed, read_feeds_file, resolve_source, FeedEntry, FeedItem, FeedParseError, FeedSource,
};
use spyglass::triage::fetch::{netloc, AddressPolicy, Fetched, Fetcher, Purpose, Validators};
use spyglass::triage::render::{self, DigestFormat, DigestHeader, Source, TriageRecord};
use spyglass::triage::state::{
    default_state_path, DuplicateOf, FeedRecord, ItemRecord, ItemStatus, State,
};
use spyglass::triage::timespec::format_duration;

/// Articles embedded together between checks for Ctrl-C.
const EMBED_CHUNK: usize = 16;
/// How far back stored stories are compared for near-duplicates.
const RECENT_DAYS: i64 = 7;
const RECENT_LIMIT: usize = 5000;
const FEED_ACCEPT: &str =
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5";
const PAGE_ACCEPT: &str = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5";

pub fn run(args: &TriageArgs) -> anyhow::Result<Outcome> {
    validate(args)?;
    let entries = feed_entries(args)?;
    let state_path = args.state.clone().unwrap_or_else(default_state_path);
    let mut state = State::open(&state_path)?;
    let mut model = load_model(&args.model, &args.encoder, &args.cache)?;
    let shown = super::model::topic_filter(&model, &args.topics)?;
    let stop = install_ctrlc();
    // The feeds the user named are trusted wherever they are; everything a feed links to, and
    // every redirect away from those hosts, must be on a public address.
    let policy = AddressPolicy {
        trusted_feed_hosts: entries
            .iter()
            .filter_map(|e| match resolve_source(&e.text, &e.base) {
                Ok(FeedSource::Url(url)) => netloc(&url),
                _ => None,
            })
            .collect(),
        allow_private: args.allow_private_addresses,
    };
    let fetcher = Fetcher::new(args.timeout, &args.user_agent, &policy);
    let Some(interval) = args.watch else {
        let summary = cycle(
            args, &entries, &mut state, &mut model, &shown, &fetcher, &stop,
        )?;
        if summary.feeds_read + summary.feeds_not_modified == 0 && !summary.interrupted {
            bail!(
                "none of the {} feeds could be read (see the warnings above); fix or remove them",
                summary.feeds_total
            );
        }
        return Ok(Outcome::Ok);
    };
    eprintln!(
        "triage: watching {} feeds every {} (Ctrl-C stops)",
        entries.len(),
        format_duration(interval)
    );
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        if let Err(error) = cycle(
            args, &entries, &mut state, &mut model, &shown, &fetcher, &stop,
        ) {
            eprintln!("error: {error:#}; trying again at the next poll");
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let next = Utc::now()
            + chrono::Duration::from_std(interval.saturating_sub(started.elapsed()))
                .unwrap_or_default();
        eprintln!("triage: next poll at {}", next.format("%H:%M:%S UTC"));
        while started.elapsed() < interval && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "triage: stopped; state saved in `{}`",
        state.path().display()
    );
    Ok(Outcome::Ok)
}

fn validate(args: &TriageArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.min_score) {
        bail!(
            "`--min-score` must be a probability between 0 and 1, got {}",
            args.min_score
        );
    }
    if !(args.duplicate_similarity > 0.0 && args.duplicate_similarity <= 1.0) {
        bail!(
            "`--duplicate-similarity` must be a cosine similarity in (0, 1], got {}; 0.93 merges rewrites of one story",
            args.duplicate_similarity
        );
    }
    if args.timeout.is_zero() {
        bail!("`--timeout` must be longer than zero, e.g. `20s`");
    }
    if args.watch.is_some_and(|w| w < Duration::from_secs(1)) {
        bail!("`--watch` must be at least `1s`; feeds rarely change faster than every few minutes (e.g. `15m`)");
    }
    if args.output != "-" {
        let target = PathBuf::from(&args.output);
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                bail!(
                    "`--output` folder `{}` does not exist; create it or write elsewhere",
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// The feeds to read: `--feed` values, then the feeds file's entries, without repeats.
fn feed_entries(args: &TriageArgs) -> anyhow::Result<Vec<FeedEntry>> {
    let mut entries: Vec<FeedEntry> = args
        .feeds
        .iter()
        .map(|f| FeedEntry {
            text: f.trim().to_string(),
            origin: "--feed".into(),
            base: PathBuf::from("."),
        })
        .collect();
    if let Some(path) = &args.feeds_file {
        let listed = read_feeds_file(path)?;
        if listed.is_empty() {
            eprintln!("warning: feeds file `{}` lists no feeds", path.display());
        }
        entries.extend(listed);
    }
    let mut seen = HashSet::new();
    entries.retain(|e| seen.insert((e.base.clone(), e.text.clone())));
    if entries.is_empty() {
        bail!("no feeds to read: pass `--feed URL_OR_FILE` (repeatable) or `--feeds-file FILE` with one feed per line");
    }
    Ok(entries)
}

/// A Ctrl-C flag: the first press finishes the current step and stops cleanly, a second quits.
fn install_ctrlc() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\ntriage: interrupted again; quitting without saving this run");
            spyglass::io::output::remove_partial_files();
            std::process::exit(130);
        }
        eprintln!("\ntriage: stopping after the current step (Ctrl-C again to quit at once)");
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupted run saves nothing");
    }
    stop
}

/// A new story of this run, from one or more feed items with the same link or GUID.
struct Candidate {
    keys: Vec<String>,
    /// Feeds (indices into the cycle's sources) it came from.
    feeds: Vec<usize>,
    feed_key: String,
    guid: Option<String>,
    title: String,
    link: Option<String>,
    text: String,
    content: &'static str,
    published: Option<DateTime<Utc>>,
    sources: Vec<Source>,
    lang_hint: Option<String>,
}

impl Candidate {
    /// What the encoder sees: the title, and the text (the title alone for an empty item).
    fn document(&self) -> Document<'_> {
        if self.text.is_empty() {
            Document {
                title: None,
                text: &self.title,
            }
        } else {
            Document {
                title: Some(self.title.as_str()).filter(|t| !t.is_empty()),
                text: &self.text,
            }
        }
    }
}

struct Scored {
    candidate: Candidate,
    embedding: spyglass::encoder::ArticleEmbedding,
    prediction: Prediction,
    /// Highest probability among the reported topics, and its topic index.
    score: f32,
    top: usize,
}

#[derive(Default)]
struct Summary {
    feeds_total: usize,
    feeds_read: usize,
    feeds_not_modified: usize,
    feeds_skipped: usize,
    items: usize,
    seen: usize,
    new: usize,
    same_link: usize,
    near_run: usize,
    near_earlier: usize,
    old: usize,
    empty: usize,
    listed: usize,
    filtered: usize,
    article_fallbacks: usize,
    interrupted: bool,
}

fn now_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One poll of every feed: fetch, select new items, score, write, record.
fn cycle(
    args: &TriageArgs,
    entries: &[FeedEntry],
    state: &mut State,
    model: &mut LoadedModel,
    shown: &[bool],
    fetcher: &Fetcher,
    stop: &AtomicBool,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let now = Utc::now();
    let cutoff = args.since.map(|s| s.cutoff(now));
    let (hits0, misses0) = (model.encoder.stats.hits, model.encoder.stats.misses);
    let mut summary = Summary {
        feeds_total: entries.len(),
        ..Summary::default()
    };

    // Which feeds to read.
    let mut sources: Vec<FeedSource> = Vec::new();
    for entry in entries {
        match resolve_source(&entry.text, &entry.base) {
            Ok(source) => {
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
            Err(error) => {
                summary.feeds_skipped += 1;
                eprintln!("warning: skipped feed ({}): {error}", entry.origin);
            }
        }
    }

    // Fetch and parse each feed; keep the items not seen before.
    let mut feed_records: Vec<Option<FeedRecord>> = vec![None; sources.len()];
    let mut feed_titles: Vec<Option<String>> = vec![None; sources.len()];
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut records: Vec<ItemRecord> = Vec::new();
    for (fi, source) in sources.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            summary.interrupted = true;
            break;
        }
        let name = source.name();
        let key = source.key();
        let validators = state.validators(&key)?;
        let (parsed, new_validators) = match read_feed(fetcher, source, &validators) {
            Ok(None) => {
                summary.feeds_not_modified += 1;
                eprintln!("feed `{name}`: not modified since the last run");
                feed_records[fi] = Some(FeedRecord {
                    key,
                    title: None,
                    validators: None,
                    status: "not-modified".into(),
                });
                continue;
            }
            Ok(Some(got)) => got,
            Err(message) => {
                summary.feeds_skipped += 1;
                eprintln!("warning: skipped feed `{name}`: {message}");
                feed_records[fi] = Some(FeedRecord {
                    key,
                    title: None,
                    validators: None,
                    status: message,
                });
                continue;
            }
        };
        summary.feeds_read += 1;
        feed_titles[fi] = parsed.title.clone();
        let lang_hint = parsed
            .language
            .as_deref()
            .and_then(|l| l.split(['-', '_']).next())
            .map(str::to_ascii_lowercase)
            .filter(|l| l.len() == 2 || l.len() == 3);
        let (mut fresh, mut seen_here, mut repeats, mut old, mut empty) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        let total = parsed.items.len();
        for (n, item) in parsed.items.into_iter().enumerate() {
            summary.items += 1;
            let FeedItem {
                guid,
                title,
                link,
                text,
                published,
            } = item;
            let canonical = link.as_deref().and_then(canonical_url);
            let keys = item_keys(&key, guid.as_deref(), canonical.as_deref(), &title, &text);
            if state.seen(&keys)?.is_some() {
                seen_here += 1;
                continue;
            }
            let record = |status| ItemRecord {
                keys: keys.clone(),
                feed: key.clone(),
                guid: guid.clone(),
                url: canonical.clone().or(link.clone()),
                title: title.clone(),
                published,
                status,
                score: None,
                topics: String::new(),
                scores: None,
                model: None,
                duplicate_of: None,
                embedding: None,
            };
            if title.is_empty() && text.is_empty() {
                summary.empty += 1;
                empty += 1;
                eprintln!(
                    "warning: skipped item {} of feed `{name}`: it has no title and no text",
                    n + 1
                );
                records.push(record(ItemStatus::Empty));
                continue;
            }
            let source_entry = Source {
                feed: name.clone(),
                feed_title: feed_titles[fi].clone(),
                title: title.clone(),
                link: canonical.clone().or(link.clone()),
                published: published.map(now_rfc3339),
            };
            if let Some(&ci) = keys.iter().find_map(|k| by_key.get(k)) {
                // The same link (or GUID) again, in this feed or another: one story, more sources.
                summary.same_link += 1;
                repeats += 1;
                let c = &mut candidates[ci];
                for k in &keys {
                    if !c.keys.contains(k) {
                        c.keys.push(k.clone());
                    }
                    by_key.insert(k.clone(), ci);
                }
                if !c.feeds.contains(&fi) {
                    c.feeds.push(fi);
                }
                c.sources.push(source_entry);
                continue;
            }
            if let (Some(cut), Some(p)) = (cutoff, published) {
                if p < cut {
                    summary.old += 1;
                    old += 1;
                    records.push(record(ItemStatus::Old));
                    continue;
                }
            }
            fresh += 1;
            for k in &keys {
                by_key.insert(k.clone(), candidates.len());
            }
            candidates.push(Candidate {
                keys,
                feeds: vec![fi],
                feed_key: key.clone(),
                guid,
                title,
                link: canonical.or(link),
                text,
                content: "feed",
                published,
                sources: vec![source_entry],
                lang_hint: lang_hint.clone(),
            });
        }
        summary.seen += seen_here;
        let mut line =
            format!("feed `{name}`: {total} items, {fresh} new, {seen_here} seen before");
        if repeats > 0 {
            line.push_str(&format!(", {repeats} with a link or GUID already listed"));
        }
        if old > 0 {
            line.push_str(&format!(", {old} older than --since"));
        }
        if empty > 0 {
            line.push_str(&format!(", {empty} empty"));
        }
        eprintln!("{line}");
        feed_records[fi] = Some(FeedRecord {
            key,
            title: feed_titles[fi].clone(),
            validators: new_validators,
            status: "ok".into(),
        });
    }

    // Article pages, when asked for.
    if args.fetch_articles {
        for c in candidates.iter_mut() {
            if stop.load(Ordering::SeqCst) {
                summary.interrupted = true;
                break;
            }
            let Some(link) = c
                .link
                .clone()
                .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
            else {
                continue;
            };
            match fetch_article(fetcher, &link) {
                Ok(text) => {
                    c.text = text;
                    c.content = "article";
                }
                Err(message) => {
                    summary.article_fallbacks += 1;
                    eprintln!("warning: article `{link}`: {message}; using the feed's text");
                }
            }
        }
    }

    // Embed and score, a chunk at a time so Ctrl-C is answered promptly.
    let mut scored: Vec<Scored> = Vec::with_capacity(candidates.len());
    let mut pending = candidates.into_iter().peekable();
    while pending.peek().is_some() {
        if stop.load(Ordering::SeqCst) {
            summary.interrupted = true;
            break;
        }
        let chunk: Vec<Candidate> = pending.by_ref().take(EMBED_CHUNK).collect();
        let docs: Vec<Document> = chunk.iter().map(Candidate::document).collect();
        let embedded = model
            .encoder
            .embed(&docs)
            .context("cannot embed the new feed items")?;
        for (candidate, embedding) in chunk.into_iter().zip(embedded) {
            let prediction = model.classifier.predict(&embedding, candidate.document());
            let (top, score) = prediction
                .probs
                .iter()
                .enumerate()
                .filter(|(t, _)| shown[*t])
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(t, p)| (t, *p))
                .unwrap_or((0, 0.0));
            scored.push(Scored {
                candidate,
                embedding,
                prediction,
                score,
                top,
            });
        }
    }
    // Feeds with items left unscored by an interruption keep their old state, so those items
    // come again next time.
    let mut incomplete: HashSet<usize> = HashSet::new();
    for c in pending {
        incomplete.extend(c.feeds.iter().copied());
    }
    if summary.interrupted {
        for (fi, record) in feed_records.iter_mut().enumerate() {
            if incomplete.contains(&fi) {
                *record = None;
            }
        }
    }
    summary.new = scored.len();

    // Near-duplicates of stories seen in earlier runs.
    let recent = state.recent_items(now - chrono::Duration::days(RECENT_DAYS), RECENT_LIMIT)?;
    let threshold = args.duplicate_similarity;
    let mut fresh: Vec<Scored> = Vec::new();
    for s in scored {
        match best_match(
            &s.embedding.embedding,
            recent.iter().map(|r| r.embedding.as_slice()),
            threshold,
        ) {
            Some((i, similarity)) => {
                summary.near_earlier += 1;
                eprintln!(
                    "duplicate: \"{}\" repeats \"{}\" from an earlier run (similarity {similarity:.3})",
                    s.candidate.title, recent[i].title
                );
                records.push(item_record(
                    model,
                    &s,
                    ItemStatus::Duplicate,
                    Some(DuplicateOf::Stored(recent[i].id)),
                ));
            }
            None => fresh.push(s),
        }
    }

    // Rank, then merge near-duplicates of this run into their best-ranked story.
    fresh.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.candidate.published.cmp(&a.candidate.published))
    });
    let vectors: Vec<&[f32]> = fresh
        .iter()
        .map(|s| s.embedding.embedding.as_slice())
        .collect();
    let groups = group_near_duplicates(&vectors, threshold);
    let mut out_records: Vec<TriageRecord> = Vec::new();
    let mut fresh: Vec<Option<Scored>> = fresh.into_iter().map(Some).collect();
    for group in &groups {
        let leader = fresh[group[0]].take().expect("each item in one group");
        let mut sources = leader.candidate.sources.clone();
        let mut members = Vec::new();
        for &i in &group[1..] {
            let member = fresh[i].take().expect("each item in one group");
            summary.near_run += 1;
            eprintln!(
                "duplicate: \"{}\" ({}) is the same story as \"{}\"",
                member.candidate.title, member.candidate.sources[0].feed, leader.candidate.title
            );
            sources.extend(member.candidate.sources.iter().cloned());
            members.push(member);
        }
        let listed = leader.score >= args.min_score;
        let status = if listed {
            ItemStatus::Reported
        } else {
            ItemStatus::Filtered
        };
        if listed {
            summary.listed += 1;
            out_records.push(triage_record(
                model,
                &leader,
                sources,
                out_records.len() + 1,
                now,
            ));
        } else {
            summary.filtered += 1;
        }
        let leader_record = item_record(model, &leader, status, None);
        let leader_key = leader_record.keys.first().cloned();
        records.push(leader_record);
        for member in &members {
            let duplicate_of = leader_key
                .clone()
                .map(|leader_key| DuplicateOf::Run { leader_key });
            records.push(item_record(
                model,
                member,
                ItemStatus::Duplicate,
                duplicate_of,
            ));
        }
    }

    // Write the output, then record the run: an interrupted write records nothing.
    let quiet_watch = args.watch.is_some() && args.output != "-" && out_records.is_empty();
    if !quiet_watch {
        write_output(args, &out_records, model, now, sources.len())?;
    }
    let feed_records: Vec<FeedRecord> = feed_records.into_iter().flatten().collect();
    state
        .commit(now, &feed_records, &records)
        .context("cannot save the triage state; the items of this run will come again next time")?;

    let duplicates = summary.same_link + summary.near_run + summary.near_earlier;
    let embedded = (model.encoder.stats.hits - hits0) + (model.encoder.stats.misses - misses0);
    let mut line = format!(
        "triage: {} feeds ({} read, {} not modified, {} skipped); {} items: {} new, {} seen before, {} duplicates ({} same link, {} similar story, {} of earlier stories)",
        summary.feeds_total,
        summary.feeds_read,
        summary.feeds_not_modified,
        summary.feeds_skipped,
        summary.items,
        summary.new,
        summary.seen,
        duplicates,
        summary.same_link,
        summary.near_run,
        summary.near_earlier
    );
    if summary.old > 0 {
        line.push_str(&format!(", {} older than --since", summary.old));
    }
    if summary.empty > 0 {
        line.push_str(&format!(", {} empty", summary.empty));
    }
    line.push_str(&format!(
        "; {} stories, {} listed",
        summary.listed + summary.filtered,
        summary.listed
    ));
    if summary.filtered > 0 {
        line.push_str(&format!(", {} below --min-score", summary.filtered));
    }
    if args.fetch_articles && summary.article_fallbacks > 0 {
        line.push_str(&format!(
            "; {} articles fell back to the feed's text",
            summary.article_fallbacks
        ));
    }
    line.push_str(&format!(
        "; {embedded} embedded ({} cached) in {:.1} s; state `{}`",
        model.encoder.stats.hits - hits0,
        started.elapsed().as_secs_f64(),
        state.path().display()
    ));
    if summary.interrupted {
        line.push_str("; interrupted: unfinished feeds come again next run");
    }
    eprintln!("{line}");
    Ok(summary)
}

/// Fetches (or reads) and parses one feed. `Ok(None)`: not modified since the last fetch.
#[allow(clippy::type_complexity)]
fn read_feed(
    fetcher: &Fetcher,
    source: &FeedSource,
    validators: &Validators,
) -> Result<Option<(spyglass::triage::feeds::ParsedFeed, Option<Validators>)>, String> {
    match source {
        FeedSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read feed file `{}`: {e}; fix the path",
                    path.display()
                )
            })?;
            parse_feed(&bytes, None)
                .map(|p| Some((p, None)))
                .map_err(|e| format!("{e}; fix the file `{}`", path.display()))
        }
        FeedSource::Url(url) => {
            match fetcher.get(url.as_str(), validators, FEED_ACCEPT, Purpose::Feed) {
                Ok(Fetched::NotModified) => Ok(None),
                Ok(Fetched::Body {
                    bytes,
                    final_url,
                    validators,
                    ..
                }) => {
                    let base = url::Url::parse(&final_url).unwrap_or_else(|_| url.clone());
                    parse_feed(&bytes, Some(&base))
                    .map(|p| Some((p, Some(validators))))
                    .map_err(|e| match e {
                        FeedParseError::NoFeed => format!("{e}; check that `{url}` is the feed's address"),
                        FeedParseError::Malformed(_) => {
                            format!("{e}; the publisher has to fix it, and it is skipped until then")
                        }
                    })
                }
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// Downloads an article page and extracts its story text.
fn fetch_article(fetcher: &Fetcher, link: &str) -> Result<String, String> {
    match fetcher.get(link, &Validators::default(), PAGE_ACCEPT, Purpose::Page) {
        Ok(Fetched::Body {
            bytes,
            final_url,
            content_type,
            ..
        }) => {
            if !(content_type.is_empty()
                || content_type.contains("html")
                || content_type.contains("xml"))
            {
                return Err(format!("is `{content_type}`, not a web page"));
            }
            let html = String::from_utf8_lossy(&bytes);
            extract_article(&html, &final_url)
                .map(|a| a.text)
                .map_err(|e| e.to_string())
        }
        Ok(Fetched::NotModified) => Err("answered 304 Not Modified to a plain request".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn assigned_topics(model: &LoadedModel, s: &Scored) -> Vec<String> {
    model
        .classifier
        .topics
        .iter()
        .enumerate()
        .filter(|(t, _)| s.prediction.assigned[*t])
        .map(|(_, topic)| topic.clone())
        .collect()
}

fn item_record(
    model: &LoadedModel,
    s: &Scored,
    status: ItemStatus,
    duplicate_of: Option<DuplicateOf>,
) -> ItemRecord {
    let c = &s.candidate;
    let scores: BTreeMap<&str, f32> = model
        .classifier
        .topics
        .iter()
        .zip(&s.prediction.probs)
        .map(|(t, p)| (t.as_str(), round4(*p)))
        .collect();
    ItemRecord {
        keys: c.keys.clone(),
        feed: c.feed_key.clone(),
        guid: c.guid.clone(),
        url: c.link.clone(),
        title: c.title.clone(),
        published: c.published,
        status,
        score: Some(round4(s.score)),
        topics: assigned_topics(model, s).join(","),
        scores: serde_json::to_string(&scores).ok(),
        model: Some(model.model_name.clone()),
        duplicate_of,
        embedding: Some(s.embedding.embedding.clone()),
    }
}

fn triage_record(
    model: &LoadedModel,
    s: &Scored,
    sources: Vec<Source>,
    rank: usize,
    now: DateTime<Utc>,
) -> TriageRecord {
    let c = &s.candidate;
    let doc = c.document();
    let text = doc.text;
    let TopicLabels {
        scores,
        labels: mut topics,
        evidence,
    } = topic_labels(
        &model.classifier.topics,
        &s.prediction,
        text,
        None,
        0.0,
        EXCERPT_CHARS,
    );
    // Most probable topic first.
    topics.sort_by(|a: &String, b: &String| scores[b].total_cmp(&scores[a]));
    let whole = Span {
        start: 0,
        end: text.chars().count(),
    };
    let top_excerpt = match s.prediction.evidence[s.top] {
        Some((_, span)) => excerpt(text, span, EXCERPT_CHARS),
        None => String::new(),
    };
    let top_excerpt = if top_excerpt.is_empty() {
        excerpt(text, whole, EXCERPT_CHARS)
    } else {
        top_excerpt
    };
    let mut lang = spyglass::model::lang::detect(&format!("{}\n{}", c.title, c.text));
    if lang == "und" {
        if let Some(hint) = &c.lang_hint {
            lang = hint.clone();
        }
    }
    TriageRecord {
        rank,
        id: short_id(&c.keys[0]),
        title: c.title.clone(),
        link: c.link.clone(),
        time: now_rfc3339(c.published.unwrap_or(now)),
        score: round4(s.score),
        top_topic: model.classifier.topics[s.top].clone(),
        topics,
        scores,
        excerpt: top_excerpt,
        evidence,
        lang,
        content: c.content,
        sources,
        model: model.model_name.clone(),
        truncated: s.embedding.truncated,
    }
}

fn write_output(
    args: &TriageArgs,
    records: &[TriageRecord],
    model: &LoadedModel,
    now: DateTime<Utc>,
    feeds: usize,
) -> anyhow::Result<()> {
    let mut output = Output::create(&args.output)?;
    let header = DigestHeader {
        generated: now.format("%Y-%m-%d %H:%M UTC").to_string(),
        model: &model.model_name,
        feeds,
    };
    match args.format {
        DigestFormat::Jsonl => {
            for record in records {
                output.write_json(record)?;
            }
        }
        DigestFormat::Markdown => output.write_str(&render::markdown(&header, records))?,
        DigestFormat::Html => output.write_str(&render::html(&header, records))?,
    }
    output.finish()?;
    Ok(())
}
