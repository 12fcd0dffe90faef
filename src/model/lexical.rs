//! The lexical channel: character n-gram TF-IDF vectors of an article's text, with a vocabulary
//! learnt from the training split, so the head can also read surface forms the encoder blurs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How text becomes n-grams: lowercased, split on whitespace, each word padded with one space on
/// both sides, then every character n-gram of the padded word for `n` in `min_n..=max_n`
/// (scikit-learn's `char_wb` analyzer). Padding marks word starts and ends; n-grams never span
/// two words, so page furniture between words adds no cross-word noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NgramConfig {
    pub min_n: usize,
    pub max_n: usize,
}

impl Default for NgramConfig {
    fn default() -> Self {
        Self { min_n: 2, max_n: 5 }
    }
}

/// Calls `f` with every n-gram of `text` (with repeats), in text order.
pub fn for_each_ngram(text: &str, config: NgramConfig, mut f: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    let mut padded = String::new();
    let mut bounds: Vec<usize> = Vec::new();
    for word in lower.split_whitespace() {
        padded.clear();
        padded.push(' ');
        padded.push_str(word);
        padded.push(' ');
        bounds.clear();
        bounds.extend(padded.char_indices().map(|(i, _)| i));
        bounds.push(padded.len());
        let chars = bounds.len() - 1;
        for n in config.min_n..=config.max_n {
            if chars <= n {
                // A padded word no longer than n is one n-gram, counted once, and longer n
                // would only repeat it (scikit-learn stops here too).
                f(&padded);
                break;
            }
            for start in 0..=chars - n {
                f(&padded[bounds[start]..bounds[start + n]]);
            }
        }
    }
}

/// A sparse vector: (feature index, value) pairs in increasing index order.
pub type SparseVector = Vec<(u32, f32)>;

/// An n-gram vocabulary with inverse document frequencies: text in, L2-normalised TF-IDF out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vectorizer {
    pub ngrams: NgramConfig,
    /// The n-grams, in feature order.
    pub terms: Vec<String>,
    /// Smoothed inverse document frequency per feature: ln((1 + n) / (1 + df)) + 1.
    pub idf: Vec<f32>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum VectorizerError {
    #[error("the lexical vocabulary has {terms} terms but {idf} idf values")]
    Shape { terms: usize, idf: usize },
    #[error("the lexical vocabulary repeats the term {0:?}")]
    Duplicate(String),
    #[error("the lexical vocabulary has an idf value that is not a finite positive number")]
    BadIdf,
}

impl Vectorizer {
    /// Builds the vocabulary from training texts: n-grams in at least `min_df` documents, the
    /// `max_features` most frequent of them over the corpus (ties broken by the n-gram itself, so
    /// the vocabulary is deterministic).
    pub fn fit(texts: &[&str], ngrams: NgramConfig, min_df: usize, max_features: usize) -> Self {
        let mut stats: HashMap<String, (u32, u64)> = HashMap::new();
        for text in texts {
            let mut counts: HashMap<String, u32> = HashMap::new();
            for_each_ngram(text, ngrams, |g| match counts.get_mut(g) {
                Some(count) => *count += 1,
                // Allocate only for an n-gram the document has not shown yet.
                None => {
                    counts.insert(g.to_string(), 1);
                }
            });
            for (gram, count) in counts {
                let entry = stats.entry(gram).or_default();
                entry.0 += 1;
                entry.1 += u64::from(count);
            }
        }
        let mut kept: Vec<(String, u32, u64)> = stats
            .into_iter()
            .filter(|(_, (df, _))| *df as usize >= min_df)
            .map(|(g, (df, total))| (g, df, total))
            .collect();
        kept.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        kept.truncate(max_features);
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        let n = texts.len() as f64;
        let idf = kept
            .iter()
            .map(|(_, df, _)| (((1.0 + n) / (1.0 + f64::from(*df))).ln() + 1.0) as f32)
            .collect();
        let terms = kept.into_iter().map(|(g, _, _)| g).collect();
        Self::new(ngrams, terms, idf).expect("a fitted vocabulary is consistent")
    }

    /// A vectorizer from a stored vocabulary, checked whole.
    pub fn new(
        ngrams: NgramConfig,
        terms: Vec<String>,
        idf: Vec<f32>,
    ) -> Result<Self, VectorizerError> {
        if terms.len() != idf.len() {
            return Err(VectorizerError::Shape {
                terms: terms.len(),
                idf: idf.len(),
            });
        }
        if idf.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err(VectorizerError::BadIdf);
        }
        let mut index = HashMap::with_capacity(terms.len());
        for (i, term) in terms.iter().enumerate() {
            if index.insert(term.clone(), i as u32).is_some() {
                return Err(VectorizerError::Duplicate(term.clone()));
            }
        }
        Ok(Self {
            ngrams,
            terms,
            idf,
            index,
        })
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The text's TF-IDF vector: sublinear term frequency (1 + ln tf) times idf, L2-normalised.
    /// Text with no known n-gram gives the empty vector.
    pub fn transform(&self, text: &str) -> SparseVector {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for_each_ngram(text, self.ngrams, |g| {
            if let Some(&i) = self.index.get(g) {
                *counts.entry(i).or_default() += 1;
            }
        });
        let mut vector: SparseVector = counts
            .into_iter()
            .map(|(i, tf)| (i, (1.0 + (tf as f32).ln()) * self.idf[i as usize]))
            .collect();
        vector.sort_unstable_by_key(|&(i, _)| i);
        let norm = vector.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (_, v) in &mut vector {
                *v /= norm;
            }
        }
        vector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams(text: &str, min_n: usize, max_n: usize) -> Vec<String> {
        let mut out = Vec::new();
        for_each_ngram(text, NgramConfig { min_n, max_n }, |g| {
            out.push(g.to_string())
        });
        out
    }

    #[test]
    fn ngrams_stay_within_padded_words() {
        assert_eq!(
            grams("Ab  c", 2, 3),
            vec![" a", "ab", "b ", " ab", "ab ", " c", "c ", " c "]
        );
        // Multi-byte characters are whole characters, and a short word counts once.
        assert_eq!(grams("間諜", 4, 5), vec![" 間諜 "]);
        assert_eq!(grams("a", 2, 4), vec![" a", "a ", " a "]);
        assert_eq!(grams("Éa", 3, 3), vec![" éa", "éa "]);
    }

    #[test]
    fn vocabulary_keeps_frequent_shared_ngrams_and_tfidf_is_unit_length() {
        let texts = ["spy spy ring", "spy case", "bake sale"];
        let v = Vectorizer::fit(&texts, NgramConfig { min_n: 3, max_n: 3 }, 2, 100);
        // "spy" occurs in two documents; "bak" in one only, so it is dropped.
        assert!(v.terms.contains(&"spy".to_string()));
        assert!(!v.terms.contains(&"bak".to_string()));
        let x = v.transform("a spy");
        let norm: f32 = x.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-6, "{norm}");
        assert!(x.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(v.transform("zzz").is_empty());
        // max_features keeps the most frequent; " sp", "spy" and "py " tie at 3 and the
        // n-gram's own order breaks the tie.
        let small = Vectorizer::fit(&texts, NgramConfig { min_n: 3, max_n: 3 }, 1, 1);
        assert_eq!(small.terms, vec![" sp".to_string()]);
    }

    #[test]
    fn stored_vocabulary_is_checked() {
        let cfg = NgramConfig::default();
        assert!(Vectorizer::new(cfg, vec!["a".into()], vec![]).is_err());
        assert!(Vectorizer::new(cfg, vec!["a".into(), "a".into()], vec![1.0, 1.0]).is_err());
        assert!(Vectorizer::new(cfg, vec!["a".into()], vec![f32::NAN]).is_err());
        assert!(Vectorizer::new(cfg, vec!["a".into()], vec![1.5]).is_ok());
    }
}
