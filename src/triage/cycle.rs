//! One poll of every feed, as library code: read the feeds, keep the items not seen before, merge
//! items with the same link or GUID, fetch article pages when asked, score through a [`Scorer`],
//! set aside near-duplicates of stored stories, rank, and merge near-duplicates of this run.
//! The result is the digest and what to record; the caller writes the digest first and commits
//! the state after, so an interrupted write records nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::encoder::{ArticleEmbedding, Document, Span};
use crate::label::EXCERPT_CHARS;
use crate::model::classify::{excerpt, round4, topic_labels, Prediction, TopicLabels};
use crate::model::load::LoadedModel;
use crate::triage::dedup::{best_match, canonical_url, group_near_duplicates, item_keys, short_id};
use crate::triage::extract::extract_article;
use crate::triage::feeds::{
    parse_feed, resolve_source, FeedEntry, FeedItem, FeedParseError, FeedSource, ParsedFeed,
};
use crate::triage::fetch::{Fetched, Fetcher, Purpose, Validators};
use crate::triage::render::{Source, TriageRecord};
use crate::triage::state::{DuplicateOf, FeedRecord, ItemRecord, ItemStatus, State, StateError};
use crate::triage::timespec::Since;

/// Articles scored together between checks for Ctrl-C.
pub const SCORE_CHUNK: usize = 16;
/// How far back stored stories are compared for near-duplicates.
const RECENT_DAYS: i64 = 7;
const RECENT_LIMIT: usize = 5000;
const FEED_ACCEPT: &str =
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5";
const PAGE_ACCEPT: &str = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5";

/// An article's embedding and what the classifier made of it.
#[derive(Debug, Clone)]
pub struct ScoredDocument {
    pub embedding: ArticleEmbedding,
    pub prediction: Prediction,
}

/// What triage needs of a model: score documents, and name its topics and itself.
pub trait Scorer {
    /// Topic ids, in the order of every prediction's vectors.
    fn topics(&self) -> &[String];
    /// The name records carry.
    fn model_name(&self) -> &str;
    /// One result per document, in order.
    fn score(
        &mut self,
        docs: &[Document<'_>],
    ) -> Result<Vec<ScoredDocument>, Box<dyn std::error::Error + Send + Sync>>;
}

impl Scorer for LoadedModel {
    fn topics(&self) -> &[String] {
        &self.classifier.topics
    }

    fn model_name(&self) -> &str {
        &self.model_name
    }

    fn score(
        &mut self,
        docs: &[Document<'_>],
    ) -> Result<Vec<ScoredDocument>, Box<dyn std::error::Error + Send + Sync>> {
        let embedded = self.encoder.embed(docs)?;
        Ok(embedded
            .into_iter()
            .zip(docs)
            .map(|(embedding, doc)| ScoredDocument {
                prediction: self.classifier.predict(&embedding, *doc),
                embedding,
            })
            .collect())
    }
}

/// How a cycle chooses and ranks stories.
#[derive(Debug, Clone)]
pub struct CycleSettings {
    /// Items published before this are recorded as old and not scored.
    pub since: Option<Since>,
    /// Replace each item's feed text by its article page's.
    pub fetch_articles: bool,
    /// Cosine similarity from which two items are one story.
    pub duplicate_similarity: f32,
    /// Stories whose best shown score is lower are recorded but not listed.
    pub min_score: f32,
    /// Which topics rank and are reported, in scorer order.
    pub shown: Vec<bool>,
    /// New items taken per feed per cycle, newest first; the rest wait for a later cycle.
    pub max_items_per_feed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot score the new feed items")]
    Score(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{got} topic flags for a scorer of {expected} topics")]
    Shown { got: usize, expected: usize },
}

/// What happened during a cycle, for a front end to report as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TriageEvent {
    /// A feed entry that names no readable feed.
    EntrySkipped {
        origin: String,
        message: String,
    },
    /// A feed that could not be fetched or parsed.
    FeedSkipped {
        name: String,
        message: String,
    },
    FeedNotModified {
        name: String,
    },
    FeedRead {
        name: String,
        total: usize,
        fresh: usize,
        seen: usize,
        repeats: usize,
        old: usize,
        empty: usize,
    },
    EmptyItem {
        feed: String,
        position: usize,
    },
    /// A feed with more new items than `max_items_per_feed`: the newest were taken, the rest
    /// wait for a later cycle.
    FeedCapped {
        name: String,
        kept: usize,
        deferred: usize,
    },
    ArticleFallback {
        link: String,
        message: String,
    },
    DuplicateOfEarlier {
        title: String,
        earlier: String,
        similarity: f32,
    },
    DuplicateInRun {
        title: String,
        feed: String,
        leader: String,
    },
}

impl TriageEvent {
    /// Whether a user should read it as a warning.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            TriageEvent::EntrySkipped { .. }
                | TriageEvent::FeedSkipped { .. }
                | TriageEvent::EmptyItem { .. }
                | TriageEvent::FeedCapped { .. }
                | TriageEvent::ArticleFallback { .. }
        )
    }
}

impl std::fmt::Display for TriageEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriageEvent::EntrySkipped { origin, message } => {
                write!(f, "skipped feed ({origin}): {message}")
            }
            TriageEvent::FeedSkipped { name, message } => {
                write!(f, "skipped feed `{name}`: {message}")
            }
            TriageEvent::FeedNotModified { name } => {
                write!(f, "feed `{name}`: not modified since the last run")
            }
            TriageEvent::FeedRead {
                name,
                total,
                fresh,
                seen,
                repeats,
                old,
                empty,
            } => {
                write!(f, "feed `{name}`: {total} items, {fresh} new, {seen} seen before")?;
                if *repeats > 0 {
                    write!(f, ", {repeats} with a link or GUID already listed")?;
                }
                if *old > 0 {
                    write!(f, ", {old} older than --since")?;
                }
                if *empty > 0 {
                    write!(f, ", {empty} empty")?;
                }
                Ok(())
            }
            TriageEvent::EmptyItem { feed, position } => write!(
                f,
                "skipped item {position} of feed `{feed}`: it has no title and no text"
            ),
            TriageEvent::FeedCapped {
                name,
                kept,
                deferred,
            } => write!(
                f,
                "feed `{name}`: took the newest {kept} new items (`--max-items-per-feed`); {deferred} more come next time"
            ),
            TriageEvent::ArticleFallback { link, message } => {
                write!(f, "article `{link}`: {message}; using the feed's text")
            }
            TriageEvent::DuplicateOfEarlier {
                title,
                earlier,
                similarity,
            } => write!(
                f,
                "duplicate: \"{title}\" repeats \"{earlier}\" from an earlier run (similarity {similarity:.3})"
            ),
            TriageEvent::DuplicateInRun {
                title,
                feed,
                leader,
            } => write!(
                f,
                "duplicate: \"{title}\" ({feed}) is the same story as \"{leader}\""
            ),
        }
    }
}

/// Counts of one cycle.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleSummary {
    pub feeds_total: usize,
    pub feeds_read: usize,
    pub feeds_not_modified: usize,
    pub feeds_skipped: usize,
    pub items: usize,
    pub seen: usize,
    /// Items scored this cycle.
    pub new: usize,
    pub same_link: usize,
    pub near_run: usize,
    pub near_earlier: usize,
    pub old: usize,
    pub empty: usize,
    pub listed: usize,
    pub filtered: usize,
    /// Items a filter left out in an earlier run, read again (they stay unseen until listed).
    pub filtered_before: usize,
    pub article_fallbacks: usize,
    pub interrupted: bool,
}

/// A cycle's result: the ranked digest, and what to record once it is written.
#[derive(Debug)]
pub struct CyclePlan {
    pub now: DateTime<Utc>,
    /// Feeds read this cycle (the digest's header counts them).
    pub sources: usize,
    pub digest: Vec<TriageRecord>,
    pub feeds: Vec<FeedRecord>,
    pub items: Vec<ItemRecord>,
    pub summary: CycleSummary,
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
    embedding: ArticleEmbedding,
    prediction: Prediction,
    /// Highest probability among the reported topics, and its topic index.
    score: f32,
    top: usize,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One poll of every feed in `entries`, at time `now`; `stop` (Ctrl-C) ends it at the next
/// step, and feeds with items left unscored then get no record, so they come again.
#[allow(clippy::too_many_arguments)]
pub fn run_cycle(
    entries: &[FeedEntry],
    settings: &CycleSettings,
    state: &State,
    scorer: &mut dyn Scorer,
    fetcher: &Fetcher,
    stop: &AtomicBool,
    now: DateTime<Utc>,
    events: &mut dyn FnMut(TriageEvent),
) -> Result<CyclePlan, CycleError> {
    if settings.shown.len() != scorer.topics().len() {
        return Err(CycleError::Shown {
            got: settings.shown.len(),
            expected: scorer.topics().len(),
        });
    }
    let cutoff = settings.since.map(|s| s.cutoff(now));
    let mut summary = CycleSummary {
        feeds_total: entries.len(),
        ..CycleSummary::default()
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
                events(TriageEvent::EntrySkipped {
                    origin: entry.origin.clone(),
                    message: error.to_string(),
                });
            }
        }
    }

    // Fetch and parse each feed; keep the items not seen before.
    let mut feed_records: Vec<Option<FeedRecord>> = vec![None; sources.len()];
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
                events(TriageEvent::FeedNotModified { name: name.clone() });
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
                events(TriageEvent::FeedSkipped {
                    name: name.clone(),
                    message: message.clone(),
                });
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
        let feed_title = parsed.title.clone();
        let lang_hint = parsed
            .language
            .as_deref()
            .and_then(|l| l.split(['-', '_']).next())
            .map(str::to_ascii_lowercase)
            .filter(|l| l.len() == 2 || l.len() == 3);
        let (mut fresh, mut seen_here, mut repeats, mut old, mut empty) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        let total = parsed.items.len();
        let mut items: Vec<(usize, FeedItem)> = parsed.items.into_iter().enumerate().collect();
        if items.len() > settings.max_items_per_feed {
            // Newest first (undated items last, in feed order), so the cap below keeps the
            // newest new stories.
            items.sort_by(|(ia, a), (ib, b)| b.published.cmp(&a.published).then(ia.cmp(ib)));
        }
        let mut deferred = 0usize;
        for (n, item) in items {
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
            if state.filtered_before(&keys)? {
                summary.filtered_before += 1;
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
                excerpt: None,
            };
            if title.is_empty() && text.is_empty() {
                summary.empty += 1;
                empty += 1;
                events(TriageEvent::EmptyItem {
                    feed: name.clone(),
                    position: n + 1,
                });
                records.push(record(ItemStatus::Empty));
                continue;
            }
            let source_entry = Source {
                feed: name.clone(),
                feed_title: feed_title.clone(),
                title: title.clone(),
                link: canonical.clone().or(link.clone()),
                published: published.map(rfc3339),
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
            if fresh == settings.max_items_per_feed {
                // Past the cap: left unrecorded, so it comes again next cycle.
                deferred += 1;
                continue;
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
        events(TriageEvent::FeedRead {
            name,
            total,
            fresh,
            seen: seen_here,
            repeats,
            old,
            empty,
        });
        if deferred > 0 {
            events(TriageEvent::FeedCapped {
                name: source.name(),
                kept: fresh,
                deferred,
            });
        }
        feed_records[fi] = Some(FeedRecord {
            key,
            title: feed_title,
            // With items deferred, the old caching headers stay, so the next fetch is not
            // answered "not modified" before those items are read.
            validators: if deferred > 0 { None } else { new_validators },
            status: "ok".into(),
        });
    }

    // Article pages, when asked for.
    if settings.fetch_articles {
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
                    events(TriageEvent::ArticleFallback { link, message });
                }
            }
        }
    }

    // Score, a chunk at a time so Ctrl-C is answered promptly.
    let mut scored: Vec<Scored> = Vec::with_capacity(candidates.len());
    let mut pending = candidates.into_iter().peekable();
    while pending.peek().is_some() {
        if stop.load(Ordering::SeqCst) {
            summary.interrupted = true;
            break;
        }
        let chunk: Vec<Candidate> = pending.by_ref().take(SCORE_CHUNK).collect();
        let docs: Vec<Document> = chunk.iter().map(Candidate::document).collect();
        let results = scorer.score(&docs).map_err(CycleError::Score)?;
        for (
            candidate,
            ScoredDocument {
                embedding,
                prediction,
            },
        ) in chunk.into_iter().zip(results)
        {
            let (top, score) = prediction
                .probs
                .iter()
                .enumerate()
                .filter(|(t, _)| settings.shown[*t])
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
    let threshold = settings.duplicate_similarity;
    let mut fresh: Vec<Scored> = Vec::new();
    for s in scored {
        match best_match(
            &s.embedding.embedding,
            recent.iter().map(|r| r.embedding.as_slice()),
            threshold,
        ) {
            Some((i, similarity)) => {
                summary.near_earlier += 1;
                events(TriageEvent::DuplicateOfEarlier {
                    title: s.candidate.title.clone(),
                    earlier: recent[i].title.clone(),
                    similarity,
                });
                records.push(item_record(
                    &*scorer,
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
    let mut digest: Vec<TriageRecord> = Vec::new();
    let mut fresh: Vec<Option<Scored>> = fresh.into_iter().map(Some).collect();
    for group in &groups {
        let leader = fresh[group[0]].take().expect("each item in one group");
        let mut story_sources = leader.candidate.sources.clone();
        let mut members = Vec::new();
        for &i in &group[1..] {
            let member = fresh[i].take().expect("each item in one group");
            summary.near_run += 1;
            events(TriageEvent::DuplicateInRun {
                title: member.candidate.title.clone(),
                feed: member.candidate.sources[0].feed.clone(),
                leader: leader.candidate.title.clone(),
            });
            story_sources.extend(member.candidate.sources.iter().cloned());
            members.push(member);
        }
        let listed = leader.score >= settings.min_score;
        let status = if listed {
            ItemStatus::Reported
        } else {
            ItemStatus::Filtered
        };
        if listed {
            summary.listed += 1;
            digest.push(triage_record(
                &*scorer,
                &leader,
                story_sources,
                digest.len() + 1,
                now,
            ));
        } else {
            summary.filtered += 1;
        }
        let leader_record = item_record(&*scorer, &leader, status, None);
        let leader_key = leader_record.keys.first().cloned();
        records.push(leader_record);
        for member in &members {
            let duplicate_of = leader_key
                .clone()
                .map(|leader_key| DuplicateOf::Run { leader_key });
            records.push(item_record(
                &*scorer,
                member,
                ItemStatus::Duplicate,
                duplicate_of,
            ));
        }
    }

    Ok(CyclePlan {
        now,
        sources: sources.len(),
        digest,
        feeds: feed_records.into_iter().flatten().collect(),
        items: records,
        summary,
    })
}

/// Runs `work` (parsing or extracting one untrusted document) with a deadline, so a hostile
/// document costs at most `deadline` of this run: past it the document is given up with an
/// error (the work finishes in the background, bounded by the size caps, and is dropped).
fn within<T: Send + 'static>(
    deadline: std::time::Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("spyglass-parse".into())
        .spawn(move || {
            let _ = send.send(work());
        })
        .map_err(|e| format!("cannot start a parsing thread: {e}"))?;
    receive.recv_timeout(deadline).map_err(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => format!(
            "parsing took longer than {} (`--timeout`); the document is too large or hostile",
            crate::triage::timespec::format_duration(deadline)
        ),
        std::sync::mpsc::RecvTimeoutError::Disconnected => {
            "the parser failed on this document".to_string()
        }
    })
}

/// Fetches (or reads) and parses one feed. `Ok(None)`: not modified since the last fetch.
fn read_feed(
    fetcher: &Fetcher,
    source: &FeedSource,
    validators: &Validators,
) -> Result<Option<(ParsedFeed, Option<Validators>)>, String> {
    match source {
        FeedSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read feed file `{}`: {e}; fix the path",
                    path.display()
                )
            })?;
            within(fetcher.timeout(), move || parse_feed(&bytes, None))?
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
                    within(fetcher.timeout(), move || parse_feed(&bytes, Some(&base)))?
                        .map(|p| Some((p, Some(validators))))
                        .map_err(|e| match e {
                            FeedParseError::NoFeed => {
                                format!("{e}; check that `{url}` is the feed's address")
                            }
                            FeedParseError::Malformed(_) => format!(
                                "{e}; the publisher has to fix it, and it is skipped until then"
                            ),
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
            let media = content_type.to_ascii_lowercase();
            if !(media.is_empty() || media.contains("html") || media.contains("xml")) {
                return Err(format!("is `{content_type}`, not a web page"));
            }
            // Pages are decoded by their declared charset (header, BOM, <meta>), not as UTF-8.
            within(fetcher.timeout(), move || {
                let html = crate::triage::charset::decode_page(&bytes, &content_type);
                extract_article(&html, &final_url)
            })?
            .map(|a| a.text)
            .map_err(|e| e.to_string())
        }
        Ok(Fetched::NotModified) => Err("answered 304 Not Modified to a plain request".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn item_record(
    scorer: &dyn Scorer,
    s: &Scored,
    status: ItemStatus,
    duplicate_of: Option<DuplicateOf>,
) -> ItemRecord {
    let c = &s.candidate;
    let topics = scorer.topics();
    let scores: BTreeMap<&str, f32> = topics
        .iter()
        .zip(&s.prediction.probs)
        .map(|(t, p)| (t.as_str(), round4(*p)))
        .collect();
    let assigned: Vec<&str> = topics
        .iter()
        .zip(&s.prediction.assigned)
        .filter(|(_, assigned)| **assigned)
        .map(|(topic, _)| topic.as_str())
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
        topics: assigned.join(","),
        scores: serde_json::to_string(&scores).ok(),
        model: Some(scorer.model_name().to_string()),
        duplicate_of,
        embedding: Some(s.embedding.embedding.clone()),
        excerpt: Some(top_excerpt(s)),
    }
}

/// The evidence excerpt of the story's most probable topic, else the article's opening.
fn top_excerpt(s: &Scored) -> String {
    let text = s.candidate.document().text;
    let top = match s.prediction.evidence[s.top] {
        Some((_, span)) => excerpt(text, span, EXCERPT_CHARS),
        None => String::new(),
    };
    if top.is_empty() {
        let whole = Span {
            start: 0,
            end: text.chars().count(),
        };
        excerpt(text, whole, EXCERPT_CHARS)
    } else {
        top
    }
}

fn triage_record(
    scorer: &dyn Scorer,
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
        scorer.topics(),
        &s.prediction,
        text,
        None,
        0.0,
        EXCERPT_CHARS,
    );
    // Most probable topic first.
    topics.sort_by(|a: &String, b: &String| scores[b].total_cmp(&scores[a]));
    let top_excerpt = top_excerpt(s);
    let mut lang = crate::model::lang::detect(&format!("{}\n{}", c.title, c.text));
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
        time: rfc3339(c.published.unwrap_or(now)),
        score: round4(s.score),
        top_topic: scorer.topics()[s.top].clone(),
        topics,
        scores,
        excerpt: top_excerpt,
        evidence,
        lang,
        content: c.content,
        sources,
        model: scorer.model_name().to_string(),
        truncated: s.embedding.truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use crate::triage::fetch::AddressPolicy;

    const DIM: usize = 16;

    /// Scores by a table keyed on the item's text: a one-hot story vector (items sharing a
    /// vector are the same story) and a probability per topic.
    struct FakeScorer {
        topics: Vec<String>,
        table: HashMap<String, (usize, Vec<f32>)>,
        calls: usize,
        /// Raised after this many calls, as Ctrl-C would be.
        stop_after: Option<(usize, Arc<AtomicBool>)>,
    }

    impl FakeScorer {
        fn new(rows: &[(&str, usize, [f32; 2])]) -> Self {
            FakeScorer {
                topics: vec!["espionage".into(), "cyberattack".into()],
                table: rows
                    .iter()
                    .map(|(text, story, probs)| (text.to_string(), (*story, probs.to_vec())))
                    .collect(),
                calls: 0,
                stop_after: None,
            }
        }
    }

    impl Scorer for FakeScorer {
        fn topics(&self) -> &[String] {
            &self.topics
        }

        fn model_name(&self) -> &str {
            "fake@1"
        }

        fn score(
            &mut self,
            docs: &[Document<'_>],
        ) -> Result<Vec<ScoredDocument>, Box<dyn std::error::Error + Send + Sync>> {
            self.calls += 1;
            if let Some((after, flag)) = &self.stop_after {
                if self.calls >= *after {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            docs.iter()
                .map(|doc| {
                    let (story, probs) = self
                        .table
                        .get(doc.text)
                        .cloned()
                        .ok_or_else(|| format!("no fake score for `{}`", doc.text))?;
                    let mut vector = vec![0.0; DIM];
                    vector[story] = 1.0;
                    let span = Span {
                        start: 0,
                        end: doc.text.chars().count(),
                    };
                    Ok(ScoredDocument {
                        embedding: ArticleEmbedding {
                            embedding: vector,
                            windows: Vec::new(),
                            truncated: false,
                        },
                        prediction: Prediction {
                            assigned: probs.iter().map(|p| *p >= 0.5).collect(),
                            raw: probs.clone(),
                            evidence: vec![Some((0, span)); probs.len()],
                            thresholds: vec![0.5; probs.len()],
                            probs,
                        },
                    })
                })
                .collect()
        }
    }

    /// An RSS file of (title, link, text, day of December 2026) items.
    fn write_feed(dir: &Path, name: &str, items: &[(&str, &str, &str, u32)]) -> FeedEntry {
        let mut xml = String::from(
            "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Test</title><link>https://example.org/</link><description>d</description>",
        );
        for (title, link, text, day) in items {
            xml.push_str(&format!(
                "<item><title>{title}</title><link>{link}</link><description>{text}</description><pubDate>{day:02} Dec 2026 10:00:00 GMT</pubDate></item>"
            ));
        }
        xml.push_str("</channel></rss>");
        let path = dir.join(name);
        std::fs::write(&path, xml).unwrap();
        FeedEntry {
            text: path.display().to_string(),
            origin: "--feed".into(),
            base: PathBuf::from("."),
        }
    }

    fn settings(min_score: f32, shown: [bool; 2]) -> CycleSettings {
        CycleSettings {
            since: None,
            fetch_articles: false,
            duplicate_similarity: 0.93,
            min_score,
            shown: shown.to_vec(),
            max_items_per_feed: 500,
        }
    }

    fn fetcher() -> Fetcher {
        Fetcher::new(
            std::time::Duration::from_secs(5),
            "spyglass-test",
            &AddressPolicy {
                trusted_feed_hosts: HashSet::new(),
                allow_private: false,
            },
        )
    }

    fn cycle(
        entries: &[FeedEntry],
        settings: &CycleSettings,
        state: &State,
        scorer: &mut FakeScorer,
        stop: &AtomicBool,
    ) -> (CyclePlan, Vec<TriageEvent>) {
        let mut events = Vec::new();
        let plan = run_cycle(
            entries,
            settings,
            state,
            scorer,
            &fetcher(),
            stop,
            Utc::now(),
            &mut |e| events.push(e),
        )
        .unwrap();
        (plan, events)
    }

    fn titles(plan: &CyclePlan) -> Vec<&str> {
        plan.digest.iter().map(|r| r.title.as_str()).collect()
    }

    #[test]
    fn the_same_link_in_two_feeds_is_one_story_with_both_sources() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_feed(
            dir.path(),
            "a.xml",
            &[(
                "Spies caught",
                "https://news.example/spies?utm_source=a",
                "spies",
                1,
            )],
        );
        let b = write_feed(
            dir.path(),
            "b.xml",
            &[(
                "Spies caught (wire)",
                "https://news.example/spies",
                "spies wire",
                1,
            )],
        );
        let state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let mut scorer =
            FakeScorer::new(&[("spies", 0, [0.9, 0.1]), ("spies wire", 1, [0.9, 0.1])]);
        let (plan, _) = cycle(
            &[a, b],
            &settings(0.0, [true, true]),
            &state,
            &mut scorer,
            &AtomicBool::new(false),
        );
        assert_eq!(plan.summary.same_link, 1);
        assert_eq!(plan.summary.new, 1);
        assert_eq!(titles(&plan), vec!["Spies caught"]);
        assert_eq!(plan.digest[0].sources.len(), 2);
        assert_eq!(plan.feeds.len(), 2);
    }

    #[test]
    fn items_left_unscored_by_an_interruption_come_again_next_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<String> = (0..SCORE_CHUNK + 4).map(|i| format!("story {i}")).collect();
        let links: Vec<String> = (0..texts.len())
            .map(|i| format!("https://news.example/{i}"))
            .collect();
        let items: Vec<(&str, &str, &str, u32)> = texts
            .iter()
            .zip(&links)
            .map(|(t, l)| (t.as_str(), l.as_str(), t.as_str(), 1))
            .collect();
        let feed = write_feed(dir.path(), "a.xml", &items);
        let rows: Vec<(&str, usize, [f32; 2])> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i % DIM, [0.6, 0.1]))
            .collect();
        let mut state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut scorer = FakeScorer::new(&rows);
        scorer.stop_after = Some((1, stop.clone()));
        // Distinct stories only: similarity 1.0 keeps the one-hot vectors that repeat apart.
        let mut exact = settings(0.0, [true, true]);
        exact.duplicate_similarity = 1.0;
        let (plan, _) = cycle(
            std::slice::from_ref(&feed),
            &exact,
            &state,
            &mut scorer,
            &stop,
        );
        assert!(plan.summary.interrupted);
        assert_eq!(plan.summary.new, SCORE_CHUNK);
        assert!(
            plan.feeds.is_empty(),
            "the unfinished feed keeps its old state: {:?}",
            plan.feeds
        );
        assert_eq!(plan.items.len(), SCORE_CHUNK);
        state.commit(plan.now, &plan.feeds, &plan.items).unwrap();

        stop.store(false, Ordering::SeqCst);
        scorer.stop_after = None;
        let (plan, _) = cycle(&[feed], &exact, &state, &mut scorer, &stop);
        assert!(!plan.summary.interrupted);
        assert_eq!((plan.summary.new, plan.summary.seen), (4, SCORE_CHUNK));
        assert_eq!(plan.feeds.len(), 1);
    }

    #[test]
    fn a_near_duplicate_of_a_stored_story_is_recorded_but_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let stop = AtomicBool::new(false);
        let mut scorer = FakeScorer::new(&[
            ("first telling", 3, [0.8, 0.1]),
            ("second telling", 3, [0.7, 0.1]),
        ]);
        let first = write_feed(
            dir.path(),
            "a.xml",
            &[("Breach at bank", "https://a.example/1", "first telling", 1)],
        );
        let (plan, _) = cycle(
            &[first],
            &settings(0.0, [true, true]),
            &state,
            &mut scorer,
            &stop,
        );
        assert_eq!(titles(&plan), vec!["Breach at bank"]);
        state.commit(plan.now, &plan.feeds, &plan.items).unwrap();

        let second = write_feed(
            dir.path(),
            "b.xml",
            &[("Bank breached", "https://b.example/9", "second telling", 2)],
        );
        let (plan, events) = cycle(
            &[second],
            &settings(0.0, [true, true]),
            &state,
            &mut scorer,
            &stop,
        );
        assert!(plan.digest.is_empty());
        assert_eq!(plan.summary.near_earlier, 1);
        assert_eq!(plan.items.len(), 1);
        assert_eq!(plan.items[0].status, ItemStatus::Duplicate);
        assert!(matches!(
            plan.items[0].duplicate_of,
            Some(DuplicateOf::Stored(_))
        ));
        assert!(events.iter().any(|e| matches!(e, TriageEvent::DuplicateOfEarlier { earlier, .. } if earlier == "Breach at bank")));
    }

    #[test]
    fn stories_rank_by_their_best_shown_score_then_by_newest() {
        let dir = tempfile::tempdir().unwrap();
        let feed = write_feed(
            dir.path(),
            "a.xml",
            &[
                ("A", "https://n.example/a", "a", 1),
                ("B", "https://n.example/b", "b", 1),
                ("C", "https://n.example/c", "c", 1),
                ("D", "https://n.example/d", "d", 1),
                ("E old", "https://n.example/e", "e", 1),
                ("F new", "https://n.example/f", "f", 3),
            ],
        );
        let state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let mut scorer = FakeScorer::new(&[
            ("a", 0, [0.9, 0.1]),
            ("b", 1, [0.3, 0.95]),
            ("c", 2, [0.55, 0.2]),
            ("d", 3, [0.2, 0.1]),
            ("e", 4, [0.7, 0.0]),
            ("f", 5, [0.7, 0.0]),
        ]);
        let stop = AtomicBool::new(false);
        let (plan, _) = cycle(
            std::slice::from_ref(&feed),
            &settings(0.5, [true, true]),
            &state,
            &mut scorer,
            &stop,
        );
        assert_eq!(titles(&plan), vec!["B", "A", "F new", "E old", "C"]);
        assert_eq!(
            plan.digest.iter().map(|r| r.rank).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(plan.digest[0].top_topic, "cyberattack");
        assert_eq!((plan.summary.listed, plan.summary.filtered), (5, 1));

        // Only espionage shown: B's cyberattack score no longer ranks it.
        let (plan, _) = cycle(
            &[feed],
            &settings(0.5, [true, false]),
            &state,
            &mut scorer,
            &stop,
        );
        assert_eq!(titles(&plan), vec!["A", "F new", "E old", "C"]);
        let d = plan.items.iter().find(|i| i.title == "D").unwrap();
        assert_eq!(d.status, ItemStatus::Filtered);
    }

    #[test]
    fn near_duplicates_of_this_run_merge_into_the_best_ranked_story() {
        let dir = tempfile::tempdir().unwrap();
        let feed = write_feed(
            dir.path(),
            "a.xml",
            &[
                ("Weaker telling", "https://x.example/1", "weak", 1),
                ("Stronger telling", "https://y.example/2", "strong", 1),
                ("Other story", "https://z.example/3", "other", 1),
            ],
        );
        let state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let mut scorer = FakeScorer::new(&[
            ("weak", 7, [0.6, 0.0]),
            ("strong", 7, [0.8, 0.0]),
            ("other", 8, [0.7, 0.0]),
        ]);
        let (plan, events) = cycle(
            &[feed],
            &settings(0.0, [true, true]),
            &state,
            &mut scorer,
            &AtomicBool::new(false),
        );
        assert_eq!(titles(&plan), vec!["Stronger telling", "Other story"]);
        assert_eq!(plan.digest[0].sources.len(), 2);
        assert_eq!(plan.summary.near_run, 1);
        let leader = plan
            .items
            .iter()
            .find(|i| i.title == "Stronger telling")
            .unwrap();
        let member = plan
            .items
            .iter()
            .find(|i| i.title == "Weaker telling")
            .unwrap();
        assert_eq!(leader.status, ItemStatus::Reported);
        assert_eq!(member.status, ItemStatus::Duplicate);
        assert_eq!(
            member.duplicate_of,
            Some(DuplicateOf::Run {
                leader_key: leader.keys[0].clone()
            })
        );
        assert!(events.contains(&TriageEvent::DuplicateInRun {
            title: "Weaker telling".into(),
            feed: plan.digest[0].sources[1].feed.clone(),
            leader: "Stronger telling".into(),
        }));
    }

    #[test]
    fn stories_a_filter_left_out_come_back_when_the_filter_widens() {
        let dir = tempfile::tempdir().unwrap();
        let feed = write_feed(
            dir.path(),
            "a.xml",
            &[("Quiet story", "https://n.example/q", "quiet", 1)],
        );
        let mut state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let mut scorer = FakeScorer::new(&[("quiet", 0, [0.1, 0.7])]);
        let stop = AtomicBool::new(false);
        // Only espionage shown: the story is filtered out.
        let (plan, _) = cycle(
            std::slice::from_ref(&feed),
            &settings(0.5, [true, false]),
            &state,
            &mut scorer,
            &stop,
        );
        assert!(plan.digest.is_empty());
        state.commit(plan.now, &plan.feeds, &plan.items).unwrap();
        // Every topic shown: it is listed now, not "seen before", nor a duplicate of itself.
        let (plan, _) = cycle(
            std::slice::from_ref(&feed),
            &settings(0.5, [true, true]),
            &state,
            &mut scorer,
            &stop,
        );
        assert_eq!(titles(&plan), vec!["Quiet story"]);
        assert_eq!(
            (
                plan.summary.seen,
                plan.summary.filtered_before,
                plan.summary.near_earlier
            ),
            (0, 1, 0)
        );
        state.commit(plan.now, &plan.feeds, &plan.items).unwrap();
        // Once listed it is seen.
        let (plan, _) = cycle(
            &[feed],
            &settings(0.5, [true, true]),
            &state,
            &mut scorer,
            &stop,
        );
        assert_eq!((plan.summary.seen, plan.summary.new), (1, 0));
        assert_eq!(state.item_count().unwrap(), 1);
    }

    #[test]
    fn parsing_past_its_deadline_is_given_up_with_a_clear_error() {
        let slow = within(std::time::Duration::from_millis(50), || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            1
        });
        assert!(slow.unwrap_err().contains("longer than"));
        assert_eq!(within(std::time::Duration::from_secs(5), || 2), Ok(2));
        let failed = within(std::time::Duration::from_secs(5), || -> u8 {
            panic!("parser bug")
        });
        assert_eq!(failed.unwrap_err(), "the parser failed on this document");
    }

    #[test]
    fn a_huge_feed_is_read_newest_first_up_to_the_cap_and_the_rest_next_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let feed = write_feed(
            dir.path(),
            "a.xml",
            &[
                ("Oldest", "https://n.example/1", "one", 1),
                ("Newest", "https://n.example/2", "two", 9),
                ("Middle", "https://n.example/3", "three", 5),
            ],
        );
        let mut state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let mut scorer = FakeScorer::new(&[
            ("one", 0, [0.9, 0.0]),
            ("two", 1, [0.9, 0.0]),
            ("three", 2, [0.9, 0.0]),
        ]);
        let mut capped = settings(0.0, [true, true]);
        capped.max_items_per_feed = 2;
        let stop = AtomicBool::new(false);
        let (plan, events) = cycle(
            std::slice::from_ref(&feed),
            &capped,
            &state,
            &mut scorer,
            &stop,
        );
        let mut read: Vec<&str> = plan.items.iter().map(|i| i.title.as_str()).collect();
        read.sort_unstable();
        assert_eq!(read, vec!["Middle", "Newest"]);
        assert!(events.iter().any(|e| matches!(
            e,
            TriageEvent::FeedCapped {
                kept: 2,
                deferred: 1,
                ..
            }
        )));
        state.commit(plan.now, &plan.feeds, &plan.items).unwrap();
        // The deferred item is the next cycle's new one.
        let (plan, _) = cycle(&[feed], &capped, &state, &mut scorer, &stop);
        assert_eq!(titles(&plan), vec!["Oldest"]);
        assert_eq!(plan.summary.seen, 2);
    }

    #[test]
    fn a_feed_that_cannot_be_read_is_skipped_and_the_others_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_feed(dir.path(), "a.xml", &[("A", "https://n.example/a", "a", 1)]);
        std::fs::write(dir.path().join("bad.xml"), "not a feed").unwrap();
        let bad = FeedEntry {
            text: dir.path().join("bad.xml").display().to_string(),
            origin: "--feed".into(),
            base: PathBuf::from("."),
        };
        let state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let mut scorer = FakeScorer::new(&[("a", 0, [0.9, 0.1])]);
        let (plan, events) = cycle(
            &[bad, good],
            &settings(0.0, [true, true]),
            &state,
            &mut scorer,
            &AtomicBool::new(false),
        );
        assert_eq!(
            (plan.summary.feeds_read, plan.summary.feeds_skipped),
            (1, 1)
        );
        assert_eq!(titles(&plan), vec!["A"]);
        assert!(events
            .iter()
            .any(|e| e.is_warning() && matches!(e, TriageEvent::FeedSkipped { .. })));
    }
}
