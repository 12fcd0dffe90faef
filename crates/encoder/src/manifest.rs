//! Per-encoder embedding settings (text prefix, pooling) from `models/encoders.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::resolve::EncoderFiles;

/// The encoder manifest shipped with spyglass, compiled in so the binary works from anywhere.
const BUILTIN_MANIFEST: &str = include_str!("../../../models/encoders.toml");
/// A local encoder folder may carry this file to set its prefix and pooling.
pub const LOCAL_MANIFEST: &str = "spyglass-encoder.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Masked mean over all tokens, special tokens included (as sentence-transformers does).
    Mean,
    /// The first token's hidden state.
    Cls,
}

/// How an encoder's inputs and outputs are shaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderSettings {
    pub prefix: String,
    /// Put before short queries such as the zero-shot head's topic descriptions.
    pub query_prefix: String,
    pub pooling: Pooling,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    encoder: Vec<ManifestEntry>,
}

#[derive(Debug, Deserialize)]
struct ManifestEntry {
    id: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    query_prefix: String,
    pooling: Pooling,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "invalid encoder manifest `{path}`: {reason}; see models/encoders.toml for the format"
    )]
    Invalid { path: String, reason: String },
}

fn parse(text: &str, path: &str) -> Result<Vec<ManifestEntry>, ManifestError> {
    toml::from_str::<ManifestFile>(text)
        .map(|m| m.encoder)
        .map_err(|e| ManifestError::Invalid {
            path: path.to_string(),
            reason: e.to_string(),
        })
}

impl EncoderSettings {
    /// The Hub id of the built-in manifest entry these files match (by id or folder name).
    pub fn known_id(files: &EncoderFiles) -> Option<String> {
        let entries = parse(BUILTIN_MANIFEST, "models/encoders.toml (built in)").ok()?;
        let folder_name = Path::new(&files.id)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        entries
            .into_iter()
            .find(|e| e.id == files.id || e.id.rsplit('/').next() == Some(folder_name.as_str()))
            .map(|e| e.id)
    }

    /// Settings for resolved encoder files: the folder's own `spyglass-encoder.toml`, else the
    /// built-in entry for its id (or folder name), else no prefix with the pooling that a
    /// sentence-transformers `1_Pooling/config.json` names (mean when absent).
    pub fn for_encoder(files: &EncoderFiles) -> Result<Self, ManifestError> {
        let local = files.dir.join(LOCAL_MANIFEST);
        if local.is_file() {
            let text = std::fs::read_to_string(&local).map_err(|e| ManifestError::Invalid {
                path: local.display().to_string(),
                reason: e.to_string(),
            })?;
            if let Some(entry) = parse(&text, &local.display().to_string())?
                .into_iter()
                .next()
            {
                return Ok(Self {
                    prefix: entry.prefix,
                    query_prefix: entry.query_prefix,
                    pooling: entry.pooling,
                });
            }
        }
        let entries = parse(BUILTIN_MANIFEST, "models/encoders.toml (built in)")?;
        let folder_name = Path::new(&files.id)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let known = entries
            .into_iter()
            .find(|e| e.id == files.id || e.id.rsplit('/').next() == Some(folder_name.as_str()));
        Ok(match known {
            Some(entry) => Self {
                prefix: entry.prefix,
                query_prefix: entry.query_prefix,
                pooling: entry.pooling,
            },
            None if files.pinned_settings.is_some() => {
                files.pinned_settings.clone().expect("checked")
            }
            None => Self {
                prefix: String::new(),
                query_prefix: String::new(),
                pooling: sentence_transformers_pooling(&files.dir).unwrap_or(Pooling::Mean),
            },
        })
    }
}

fn sentence_transformers_pooling(dir: &Path) -> Option<Pooling> {
    let text = std::fs::read_to_string(dir.join("1_Pooling").join("config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    if value["pooling_mode_cls_token"].as_bool() == Some(true) {
        Some(Pooling::Cls)
    } else {
        Some(Pooling::Mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(id: &str, dir: &Path) -> EncoderFiles {
        EncoderFiles {
            id: id.into(),
            revision: "local".into(),
            config: dir.join("config.json"),
            tokenizer: dir.join("tokenizer.json"),
            weights: vec![],
            dir: dir.to_path_buf(),
            pinned_settings: None,
        }
    }

    #[test]
    fn builtin_manifest_parses_and_knows_e5() {
        let dir = tempfile::tempdir().unwrap();
        let s = EncoderSettings::for_encoder(&files("intfloat/multilingual-e5-small", dir.path()))
            .unwrap();
        assert_eq!(s.prefix, "passage: ");
        assert_eq!(s.query_prefix, "query: ");
        assert_eq!(s.pooling, Pooling::Mean);
    }

    #[test]
    fn local_folder_is_matched_by_name() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("multilingual-e5-small");
        std::fs::create_dir(&dir).unwrap();
        let s = EncoderSettings::for_encoder(&files(dir.to_str().unwrap(), &dir)).unwrap();
        assert_eq!(s.prefix, "passage: ");
    }

    #[test]
    fn pinned_settings_fill_in_only_for_an_unknown_folder() {
        let parent = tempfile::tempdir().unwrap();
        let pinned = EncoderSettings {
            prefix: "passage: ".into(),
            query_prefix: "query: ".into(),
            pooling: Pooling::Mean,
        };
        let unknown = parent.path().join("my-download");
        std::fs::create_dir(&unknown).unwrap();
        let mut f = files(unknown.to_str().unwrap(), &unknown);
        assert_eq!(EncoderSettings::for_encoder(&f).unwrap().prefix, "");
        f.pinned_settings = Some(pinned.clone());
        assert_eq!(EncoderSettings::for_encoder(&f).unwrap(), pinned);
        // A known model keeps its own settings whatever a bundle pinned.
        let mut known = files(
            "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
            &unknown,
        );
        known.pinned_settings = Some(pinned.clone());
        assert_eq!(EncoderSettings::for_encoder(&known).unwrap().prefix, "");
    }

    #[test]
    fn unknown_folder_reads_sentence_transformers_pooling_and_local_manifest_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true}"#,
        )
        .unwrap();
        let f = files(dir.path().to_str().unwrap(), dir.path());
        let s = EncoderSettings::for_encoder(&f).unwrap();
        assert_eq!((s.prefix.as_str(), s.pooling), ("", Pooling::Cls));
        std::fs::write(
            dir.path().join(LOCAL_MANIFEST),
            "[[encoder]]\nid = \"mine\"\nprefix = \"doc: \"\npooling = \"mean\"\n",
        )
        .unwrap();
        let s = EncoderSettings::for_encoder(&f).unwrap();
        assert_eq!((s.prefix.as_str(), s.pooling), ("doc: ", Pooling::Mean));
    }
}
