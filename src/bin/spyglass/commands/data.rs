//! `spyglass data check`: validates labelled article files and prints their counts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::Context;

use super::Outcome;
use crate::cli::DataCheckArgs;
use spyglass::encoder::ArticleTokenizer;
use spyglass::io::data::{self, LoadedFile};
use spyglass::model::taxonomy::Taxonomy;

/// Similarity at or above which two texts count as near-duplicates.
const NEAR_DUPLICATE_THRESHOLD: f64 = 0.5;
/// Articles longer than this many encoder tokens are "long" (they need more than one window).
const LONG_TOKENS: usize = 512;

pub fn check(args: &DataCheckArgs) -> anyhow::Result<Outcome> {
    let taxonomy = Taxonomy::load(&spyglass::model::defaults::taxonomy_or(
        args.taxonomy.as_deref(),
    )?)?;
    let files: Vec<LoadedFile> = args
        .files
        .iter()
        .map(|p| data::load_file(p, &taxonomy))
        .collect::<Result<_, _>>()?;
    let tokenizer = args
        .tokenizer
        .source()
        .resolve()
        .map_err(anyhow::Error::from)
        .and_then(|f| Ok(ArticleTokenizer::for_files(&f, Default::default())?));
    let tokenizer = match tokenizer {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("warning: token counts skipped, no tokenizer: {e:#}");
            None
        }
    };

    let mut problems = 0;
    for file in &files {
        for finding in &file.invalid {
            println!("invalid: {finding}");
            problems += 1;
        }
    }
    for (id, places) in data::duplicate_ids(&files) {
        println!("duplicate id `{id}` at {}", places.join(", "));
        problems += 1;
    }
    for pair in data::near_duplicates(&files, NEAR_DUPLICATE_THRESHOLD) {
        println!(
            "near-duplicate texts ({:.0}% of 8-grams shared): {} `{}` and {} `{}`",
            pair.similarity * 100.0,
            pair.a.0,
            pair.a.1,
            pair.b.0,
            pair.b.1
        );
        problems += 1;
    }
    print!("{}", counts_report(&files, &taxonomy, tokenizer.as_ref())?);
    if problems > 0 {
        anyhow::bail!(
            "data check found {problems} problem(s) (listed above); fix or remove those records"
        );
    }
    println!(
        "\nok: {} valid records, no duplicates",
        files.iter().map(|f| f.articles.len()).sum::<usize>()
    );
    Ok(Outcome::Ok)
}

fn median(values: &mut [usize]) -> usize {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[values.len() / 2]
}

/// Words of a text; CJK scripts count two letters as one word since they use no spaces.
pub fn word_count(text: &str, lang: &str) -> usize {
    if matches!(lang, "ja" | "zh") {
        text.chars().filter(|c| c.is_alphabetic()).count() / 2
    } else {
        text.split_whitespace().count()
    }
}

/// Markdown tables: per-file summary, languages and topics.
fn counts_report(
    files: &[LoadedFile],
    taxonomy: &Taxonomy,
    tokenizer: Option<&ArticleTokenizer>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let name = |f: &LoadedFile| {
        f.path.file_name().map_or_else(
            || f.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    writeln!(out, "\n### Articles per file\n")?;
    writeln!(out, "| file | articles | none | hard negatives | 2+ topics | long (>{LONG_TOKENS} tokens) | page noise | subtle | words min / median / max |")?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    for file in files {
        let a = &file.articles;
        let tagged = |tag: &str| a.iter().filter(|x| x.tags.iter().any(|t| t == tag)).count();
        let mut words: Vec<usize> = a.iter().map(|x| word_count(&x.text, &x.lang)).collect();
        let long = match tokenizer {
            Some(t) => {
                let mut n = 0;
                for article in a {
                    let tokens = t
                        .count_tokens(article.document())
                        .with_context(|| format!("cannot tokenize `{}`", article.id))?;
                    n += usize::from(tokens > LONG_TOKENS);
                }
                n.to_string()
            }
            None => "n/a".into(),
        };
        let (min, max) = (
            words.iter().min().copied().unwrap_or(0),
            words.iter().max().copied().unwrap_or(0),
        );
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} |",
            name(file),
            a.len(),
            a.iter().filter(|x| x.labels.is_empty()).count(),
            tagged("hard_negative"),
            a.iter().filter(|x| x.labels.len() >= 2).count(),
            long,
            tagged("noise"),
            tagged("subtle"),
            min,
            median(&mut words),
            max
        )?;
    }

    let langs: BTreeSet<&str> = files
        .iter()
        .flat_map(|f| f.articles.iter().map(|a| a.lang.as_str()))
        .collect();
    writeln!(out, "\n### Articles per language\n")?;
    writeln!(
        out,
        "| file | {} | total |",
        langs.iter().copied().collect::<Vec<_>>().join(" | ")
    )?;
    writeln!(out, "|---|{}---|", "---|".repeat(langs.len()))?;
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for file in files {
        let mut row = format!("| {} |", name(file));
        for lang in &langs {
            let n = file.articles.iter().filter(|a| a.lang == *lang).count();
            *totals.entry(lang).or_default() += n;
            write!(row, " {n} |")?;
        }
        writeln!(out, "{row} {} |", file.articles.len())?;
    }
    let all: usize = totals.values().sum();
    writeln!(
        out,
        "| **all** | {} | {all} |",
        langs
            .iter()
            .map(|l| totals[l].to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    )?;

    writeln!(
        out,
        "\n### Positives per topic (languages with at least one positive)\n"
    )?;
    let names: Vec<String> = files.iter().map(name).collect();
    writeln!(out, "| topic | {} | all |", names.join(" | "))?;
    writeln!(out, "|---|{}---|", "---|".repeat(files.len()))?;
    for topic in taxonomy.ids().into_iter().chain(std::iter::once("none")) {
        let mut row = format!("| `{topic}` |");
        let mut total = 0;
        let mut all_langs = BTreeSet::new();
        for file in files {
            let hits: Vec<_> = file
                .articles
                .iter()
                .filter(|a| {
                    if topic == "none" {
                        a.labels.is_empty()
                    } else {
                        a.labels.iter().any(|l| l == topic)
                    }
                })
                .collect();
            let file_langs: BTreeSet<&str> = hits.iter().map(|a| a.lang.as_str()).collect();
            all_langs.extend(file_langs.iter().copied());
            total += hits.len();
            write!(row, " {} ({} langs) |", hits.len(), file_langs.len())?;
        }
        writeln!(out, "{row} {total} ({} langs) |", all_langs.len())?;
    }
    Ok(out)
}
