//! The topic taxonomy (`labels/taxonomy.toml`): topic ids, names, definitions and the multilingual
//! descriptions the zero-shot head uses as label prompts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Taxonomy {
    pub version: u32,
    #[serde(rename = "topic")]
    pub topics: Vec<Topic>,
    /// SHA-256 of the file's bytes; bundles record it to refuse a mismatched taxonomy.
    #[serde(skip)]
    pub hash: String,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Topic {
    pub id: String,
    pub name: String,
    pub definition: String,
    /// Language code -> short descriptions of a typical article about the topic.
    pub descriptions: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("cannot read taxonomy `{path}`: {source}; pass `--taxonomy FILE` (default: `labels/taxonomy.toml` in the working directory, else the taxonomy built into spyglass)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid taxonomy `{path}`: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Taxonomy {
    pub fn load(path: &Path) -> Result<Self, TaxonomyError> {
        let bytes = std::fs::read(path).map_err(|source| TaxonomyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, TaxonomyError> {
        let invalid = |reason: String| TaxonomyError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
        let mut taxonomy: Taxonomy = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for topic in &taxonomy.topics {
            let valid_id = !topic.id.is_empty()
                && topic
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_id {
                return Err(invalid(format!(
                    "topic id `{}` must be snake_case (a-z, 0-9, _)",
                    topic.id
                )));
            }
            if !seen.insert(topic.id.clone()) {
                return Err(invalid(format!("topic id `{}` appears twice", topic.id)));
            }
            if topic.descriptions.values().all(|d| d.is_empty()) {
                return Err(invalid(format!(
                    "topic `{}` has no descriptions; add at least one under [topic.descriptions]",
                    topic.id
                )));
            }
        }
        if taxonomy.topics.is_empty() {
            return Err(invalid("no [[topic]] tables".into()));
        }
        taxonomy.hash = sha256_hex(bytes);
        taxonomy.path = path.to_path_buf();
        Ok(taxonomy)
    }

    pub fn ids(&self) -> Vec<&str> {
        self.topics.iter().map(|t| t.id.as_str()).collect()
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.topics.iter().position(|t| t.id == id)
    }
}

pub use crate::util::sha256_hex;

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
version = 3
[[topic]]
id = "espionage"
name = "Espionage"
definition = "Spying."
[topic.descriptions]
en = ["Spies arrested."]
"#;

    #[test]
    fn parses_and_hashes() {
        let t = Taxonomy::parse(MINI.as_bytes(), Path::new("t.toml")).unwrap();
        assert_eq!(t.version, 3);
        assert_eq!(t.ids(), ["espionage"]);
        assert_eq!(t.hash.len(), 64);
    }

    #[test]
    fn rejects_duplicate_and_bad_ids() {
        let dup = format!("{MINI}\n[[topic]]\nid = \"espionage\"\nname = \"E\"\ndefinition = \"x\"\n[topic.descriptions]\nen = [\"y\"]\n");
        let err = Taxonomy::parse(dup.as_bytes(), Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        let bad = MINI.replace("\"espionage\"", "\"Espionage!\"");
        assert!(Taxonomy::parse(bad.as_bytes(), Path::new("t.toml")).is_err());
    }

    #[test]
    fn shipped_taxonomy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("labels/taxonomy.toml");
        let t = Taxonomy::load(&path).unwrap();
        assert_eq!(
            t.ids(),
            [
                "espionage",
                "data_theft",
                "national_security_review",
                "tech_decoupling",
                "cyberattack"
            ]
        );
        for topic in &t.topics {
            for lang in ["en", "de", "ja", "zh", "fr", "es", "ru"] {
                assert!(
                    topic.descriptions.get(lang).is_some_and(|d| !d.is_empty()),
                    "{} lacks {lang}",
                    topic.id
                );
            }
        }
    }
}
