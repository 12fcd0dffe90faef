//! `spyglass data check`: validates labelled article files and prints their counts.

use super::Outcome;
use crate::cli::DataCheckArgs;
use spyglass::encoder::ArticleTokenizer;
use spyglass::io::data::{self, LoadedFile};
use spyglass::model::taxonomy::Taxonomy;

/// Similarity at or above which two texts count as near-duplicates.
const NEAR_DUPLICATE_THRESHOLD: f64 = 0.5;

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
    for group in data::near_duplicates(&files, NEAR_DUPLICATE_THRESHOLD) {
        // One line per group, however many copies: the first few members, then a count.
        const SHOWN: usize = 6;
        let mut names: Vec<String> = group
            .members
            .iter()
            .take(SHOWN)
            .map(|(file, id)| format!("{file} `{id}`"))
            .collect();
        if group.members.len() > SHOWN {
            names.push(format!("and {} more", group.members.len() - SHOWN));
        }
        println!(
            "near-duplicate texts ({:.0}% of 8-grams shared at least), {} records: {}",
            group.similarity * 100.0,
            group.members.len(),
            names.join(", ")
        );
        problems += 1;
    }
    print!(
        "{}",
        data::counts_report(&files, &taxonomy, tokenizer.as_ref())?
    );
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
