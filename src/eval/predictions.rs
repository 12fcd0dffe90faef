//! Predictions files for `eval --predictions`: JSONL lines of `id` plus `scores` (topic ->
//! probability) and/or `labels` (e.g. `spyglass label` output), checked whole before any
//! metric is computed.

use crate::io::records::PredictionLine;
use std::collections::{BTreeSet, HashMap};

/// Problems listed in one error at most; the rest are counted.
const MAX_PROBLEMS: usize = 20;

/// One article's prediction over the taxonomy's topics (in the order given to [`parse`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ArticlePrediction {
    /// The line's `labels`, else the topics it scores 0.5 or more.
    pub predicted: Vec<bool>,
    /// Every topic's probability, when the line scores them all.
    pub probs: Option<Vec<f32>>,
}

/// Every problem found in a predictions file, one line each with its `file:line`.
#[derive(Debug, thiserror::Error)]
#[error("invalid predictions:\n  {}", .problems.join("\n  "))]
pub struct InvalidPredictions {
    pub problems: Vec<String>,
}

/// Parses the text of a predictions file named `source`, by article id. Blank lines and the
/// error records `spyglass label` writes are skipped. Invalid JSON, unknown topics, scores
/// outside 0-1, lines with neither `scores` nor `labels`, and a second line for an id are
/// errors, all reported together.
pub fn parse(
    text: &str,
    source: &str,
    topics: &[String],
) -> Result<HashMap<String, ArticlePrediction>, InvalidPredictions> {
    let mut by_id: HashMap<String, ArticlePrediction> = HashMap::new();
    let mut line_of: HashMap<String, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (i, line) in crate::io::input::strip_bom_str(text).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let where_ = format!("{source}:{}", i + 1);
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{where_}: not valid JSON ({e})"));
                continue;
            }
        };
        if value.get("error").is_some() {
            continue; // an error record from `spyglass label`: that article has no prediction
        }
        let p: PredictionLine = match serde_json::from_value(value) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{where_}: {e}"));
                continue;
            }
        };
        let id = match &p.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let unknown: BTreeSet<&String> = p
            .scores
            .iter()
            .flat_map(|s| s.keys())
            .chain(p.labels.iter().flatten())
            .filter(|t| !topics.contains(t))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!("{where_}: unknown topics {unknown:?}"));
            continue;
        }
        if p.scores.is_none() && p.labels.is_none() {
            problems.push(format!("{where_}: needs `scores` or `labels`"));
            continue;
        }
        let out_of_range: Vec<String> = p
            .scores
            .iter()
            .flatten()
            .filter(|(_, v)| !(0.0..=1.0).contains(*v))
            .map(|(t, v)| format!("{t}={v}"))
            .collect();
        if !out_of_range.is_empty() {
            problems.push(format!(
                "{where_}: scores must be probabilities from 0 to 1, got {}",
                out_of_range.join(", ")
            ));
            continue;
        }
        if let Some(first) = line_of.insert(id.clone(), i + 1) {
            problems.push(format!(
                "{where_}: id `{id}` was already predicted on line {first}; one prediction per article"
            ));
            continue;
        }
        by_id.insert(id, prediction(&p, topics));
    }
    if !problems.is_empty() {
        let more = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        if more > 0 {
            problems.push(format!("… and {more} more"));
        }
        return Err(InvalidPredictions { problems });
    }
    Ok(by_id)
}

fn prediction(line: &PredictionLine, topics: &[String]) -> ArticlePrediction {
    let probs: Option<Vec<f32>> = line.scores.as_ref().and_then(|s| {
        topics
            .iter()
            .map(|t| s.get(t).copied())
            .collect::<Option<Vec<f32>>>()
    });
    let predicted = match (&line.labels, &line.scores) {
        (Some(labels), _) => topics.iter().map(|t| labels.contains(t)).collect(),
        // A topic without a score is not predicted.
        (None, Some(scores)) => topics
            .iter()
            .map(|t| scores.get(t).is_some_and(|&p| p >= 0.5))
            .collect(),
        (None, None) => vec![false; topics.len()],
    };
    ArticlePrediction { predicted, probs }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Vec<String> {
        vec!["espionage".into(), "cyberattack".into()]
    }

    #[test]
    fn labels_win_over_scores_and_scores_alone_threshold_at_one_half() {
        let text = "\u{feff}{\"id\":\"a\",\"labels\":[\"cyberattack\"],\"scores\":{\"espionage\":0.9,\"cyberattack\":0.1}}\n\n\
                    {\"id\":7,\"scores\":{\"espionage\":0.5,\"cyberattack\":0.49}}\n\
                    {\"id\":\"c\",\"scores\":{\"espionage\":0.8}}\n\
                    {\"id\":\"x\",\"error\":\"invalid UTF-8\"}\n";
        let got = parse(text, "p.jsonl", &topics()).unwrap();
        assert_eq!(got.len(), 3, "the error record is skipped");
        assert_eq!(got["a"].predicted, [false, true]);
        assert_eq!(got["a"].probs, Some(vec![0.9, 0.1]));
        // A numeric id is kept as its JSON text.
        assert_eq!(got["7"].predicted, [true, false]);
        // Scores for some topics only: labels from those, no probabilities (a partial set
        // would skew the calibration figures).
        assert_eq!(got["c"].predicted, [true, false]);
        assert_eq!(got["c"].probs, None);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "not json\n\
                    {\"id\":\"a\",\"labels\":[\"weather\"]}\n\
                    {\"id\":\"b\"}\n\
                    {\"id\":\"c\",\"scores\":{\"espionage\":1.5}}\n\
                    {\"id\":\"d\",\"labels\":[]}\n\
                    {\"id\":\"d\",\"labels\":[]}\n";
        let err = parse(text, "p.jsonl", &topics()).unwrap_err();
        let lines: Vec<&str> = err.problems.iter().map(String::as_str).collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(lines[0].starts_with("p.jsonl:1: not valid JSON"));
        assert!(lines[1].contains("p.jsonl:2: unknown topics") && lines[1].contains("weather"));
        assert_eq!(lines[2], "p.jsonl:3: needs `scores` or `labels`");
        assert!(lines[3].contains("p.jsonl:4:") && lines[3].contains("espionage=1.5"));
        assert!(lines[4].contains("p.jsonl:6: id `d` was already predicted on line 5"));
    }

    #[test]
    fn long_lists_of_problems_are_cut_and_counted() {
        let text = "x\n".repeat(25);
        let err = parse(&text, "p", &topics()).unwrap_err();
        assert_eq!(err.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(err.problems.last().unwrap(), "… and 5 more");
    }
}
