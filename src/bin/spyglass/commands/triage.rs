//! `spyglass triage`: polls news feeds, keeps the items not seen before, de-duplicates stories,
//! scores them with the model and writes them ranked (JSONL, Markdown or HTML); state between
//! runs lives in SQLite and is committed only after the output is written.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use super::model::load_model;
use super::Outcome;
use crate::cli::DigestFormat;
use crate::cli::TriageArgs;
use spyglass::io::output::Output;
use spyglass::model::load::LoadedModel;
use spyglass::triage::cycle::{run_cycle, CycleSettings, CycleSummary};
use spyglass::triage::feeds::{read_feeds_file, resolve_source, FeedEntry, FeedSource};
use spyglass::triage::fetch::{netloc, AddressPolicy, Fetcher};
use spyglass::triage::render::{self, DigestHeader, TriageRecord};
use spyglass::triage::state::{default_state_path, State};
use spyglass::triage::timespec::format_duration;

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

/// One poll of every feed: the library's cycle, its events printed as they come, then the
/// digest written and the state committed.
fn cycle(
    args: &TriageArgs,
    entries: &[FeedEntry],
    state: &mut State,
    model: &mut LoadedModel,
    shown: &[bool],
    fetcher: &Fetcher,
    stop: &AtomicBool,
) -> anyhow::Result<CycleSummary> {
    let started = Instant::now();
    let (hits0, misses0) = (model.encoder.stats.hits, model.encoder.stats.misses);
    let settings = CycleSettings {
        since: args.since,
        fetch_articles: args.fetch_articles,
        duplicate_similarity: args.duplicate_similarity,
        min_score: args.min_score,
        shown: shown.to_vec(),
        max_items_per_feed: args.max_items_per_feed,
    };
    let plan = run_cycle(
        entries,
        &settings,
        state,
        model,
        fetcher,
        stop,
        Utc::now(),
        &mut |event| {
            if event.is_warning() {
                eprintln!("warning: {event}");
            } else {
                eprintln!("{event}");
            }
        },
    )?;

    // Write the output, then record the run: an interrupted write records nothing.
    let quiet_watch = args.watch.is_some() && args.output != "-" && plan.digest.is_empty();
    if !quiet_watch {
        write_output(args, &plan.digest, model, plan.now, plan.sources)?;
    }
    state
        .commit(plan.now, &plan.feeds, &plan.items)
        .context("cannot save the triage state; the items of this run will come again next time")?;

    let summary = plan.summary;
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
    if summary.filtered_before > 0 {
        line.push_str(&format!(
            "; {} left out by a filter before were scored again",
            summary.filtered_before
        ));
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
