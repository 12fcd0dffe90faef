//! Finds an encoder's files: a local folder, the Hugging Face cache, or (online) the Hub.

use std::path::{Path, PathBuf};

/// The revision of encoder files read from a local folder (no Hub revision).
pub const LOCAL_REVISION: &str = "local";

/// Where the encoder files come from and how to reach them.
#[derive(Debug, Clone)]
pub struct EncoderSource {
    /// A local folder path or a Hub repository id (`owner/name`).
    pub id_or_dir: String,
    /// Hub revision (branch, tag or commit); ignored for local folders.
    pub revision: String,
    /// Use only the local Hugging Face cache, never the network.
    pub offline: bool,
    /// Hugging Face hub cache folder (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
}

/// The files that make up an encoder on disk.
#[derive(Debug, Clone)]
pub struct EncoderFiles {
    /// The id recorded in manifests: the Hub id, or the folder path as given.
    pub id: String,
    /// The Hub revision or commit these files came from (`local` for a folder).
    pub revision: String,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: Vec<PathBuf>,
    /// The folder the files live in (sentence-transformers side files are looked up here).
    pub dir: PathBuf,
    /// How to embed with these files when neither the folder's `spyglass-encoder.toml` nor the
    /// built-in list knows the model: what a model bundle recorded for its encoder, so a copy in
    /// a folder of any name embeds as the bundle's did.
    pub pinned_settings: Option<crate::manifest::EncoderSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("encoder folder `{dir}` has no `{file}`; a usable folder holds config.json, tokenizer.json and model.safetensors (or sharded model-*.safetensors with model.safetensors.index.json)")]
    MissingLocalFile { dir: PathBuf, file: String },
    #[error("`{file}` of encoder `{id}` (revision `{revision}`) is not in the Hugging Face cache `{cache}`{hint}; run once without `--offline` to download it, or pass a local folder with `--encoder DIR`")]
    NotCached {
        id: String,
        revision: String,
        file: String,
        cache: PathBuf,
        hint: String,
    },
    #[error("could not download `{file}` of encoder `{id}` (revision `{revision}`) from the Hugging Face Hub: {reason}; check the id and your network, or pass a local folder with `--encoder DIR`")]
    Download {
        id: String,
        revision: String,
        file: String,
        reason: String,
    },
    #[error("`{id}` is neither an existing folder nor a Hub id of the form `owner/name`; pass a folder holding config.json, tokenizer.json and model.safetensors, or a Hub id")]
    NotAnEncoder { id: String },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EncoderSource {
    /// An encoder in a local folder (config.json, tokenizer.json, safetensors weights).
    pub fn local(dir: impl Into<String>) -> Self {
        Self {
            id_or_dir: dir.into(),
            revision: "main".into(),
            offline: true,
            cache_dir: PathBuf::new(),
        }
    }

    /// The default Hugging Face hub cache: `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub fn default_cache_dir() -> PathBuf {
        if let Some(home) = std::env::var_os("HF_HOME") {
            return PathBuf::from(home).join("hub");
        }
        if let Some(cache) = std::env::var_os("HF_HUB_CACHE") {
            return PathBuf::from(cache);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".cache").join("huggingface").join("hub")
    }

    pub fn resolve(&self) -> Result<EncoderFiles, ResolveError> {
        let as_path = Path::new(&self.id_or_dir);
        if as_path.is_dir() {
            return resolve_local(as_path, &self.id_or_dir);
        }
        let looks_like_hub_id = self.id_or_dir.split('/').count() == 2
            && !self.id_or_dir.starts_with('.')
            && !self.id_or_dir.starts_with('/');
        if !looks_like_hub_id {
            return Err(ResolveError::NotAnEncoder {
                id: self.id_or_dir.clone(),
            });
        }
        self.resolve_hub()
    }

    fn resolve_hub(&self) -> Result<EncoderFiles, ResolveError> {
        let snapshot = self.cached_snapshot();
        let fetch = |file: &str| -> Result<PathBuf, ResolveError> {
            if let Some(dir) = &snapshot {
                let path = dir.join(file);
                if path.is_file() {
                    return Ok(path);
                }
            }
            if self.offline {
                let hint = match &snapshot {
                    Some(dir) => format!(" (snapshot `{}` lacks it)", dir.display()),
                    None => " (no snapshot of this revision is cached)".to_string(),
                };
                return Err(ResolveError::NotCached {
                    id: self.id_or_dir.clone(),
                    revision: self.revision.clone(),
                    file: file.to_string(),
                    cache: self.cache_dir.clone(),
                    hint,
                });
            }
            self.download(file)
        };
        let config = fetch("config.json")?;
        let tokenizer = fetch("tokenizer.json")?;
        let weights = match fetch("model.safetensors") {
            Ok(path) => vec![path],
            Err(single_err) => {
                let Ok(index) = fetch("model.safetensors.index.json") else {
                    return Err(single_err);
                };
                shard_names(&index)?
                    .iter()
                    .map(|name| fetch(name))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        // Optional sentence-transformers side files (pooling mode); absence is fine.
        let _ = fetch("1_Pooling/config.json");
        let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let revision = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.revision.clone());
        Ok(EncoderFiles {
            id: self.id_or_dir.clone(),
            revision,
            config,
            tokenizer,
            weights,
            dir,
            pinned_settings: None,
        })
    }

    /// `models--owner--name/snapshots/<commit>` for the requested revision, if cached.
    fn cached_snapshot(&self) -> Option<PathBuf> {
        let repo_dir = self
            .cache_dir
            .join(format!("models--{}", self.id_or_dir.replace('/', "--")));
        let commit = match std::fs::read_to_string(repo_dir.join("refs").join(&self.revision)) {
            Ok(commit) => commit.trim().to_string(),
            // A commit hash is its own snapshot name.
            Err(_) => self.revision.clone(),
        };
        let dir = repo_dir.join("snapshots").join(commit);
        dir.is_dir().then_some(dir)
    }

    fn download(&self, file: &str) -> Result<PathBuf, ResolveError> {
        let err = |reason: String| ResolveError::Download {
            id: self.id_or_dir.clone(),
            revision: self.revision.clone(),
            file: file.to_string(),
            reason,
        };
        let api = hf_hub::api::sync::ApiBuilder::new()
            .with_cache_dir(self.cache_dir.clone())
            .with_progress(false)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let repo = hf_hub::Repo::with_revision(
            self.id_or_dir.clone(),
            hf_hub::RepoType::Model,
            self.revision.clone(),
        );
        api.repo(repo).get(file).map_err(|e| err(e.to_string()))
    }
}

fn resolve_local(dir: &Path, id: &str) -> Result<EncoderFiles, ResolveError> {
    let require = |file: &str| -> Result<PathBuf, ResolveError> {
        let path = dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ResolveError::MissingLocalFile {
                dir: dir.to_path_buf(),
                file: file.to_string(),
            })
        }
    };
    let config = require("config.json")?;
    let tokenizer = require("tokenizer.json")?;
    let single = dir.join("model.safetensors");
    let weights = if single.is_file() {
        vec![single]
    } else if dir.join("model.safetensors.index.json").is_file() {
        shard_names(&dir.join("model.safetensors.index.json"))?
            .iter()
            .map(|name| require(name))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        return Err(ResolveError::MissingLocalFile {
            dir: dir.to_path_buf(),
            file: "model.safetensors".to_string(),
        });
    };
    Ok(EncoderFiles {
        id: id.trim_end_matches('/').to_string(),
        revision: LOCAL_REVISION.to_string(),
        config,
        tokenizer,
        weights,
        dir: dir.to_path_buf(),
        pinned_settings: None,
    })
}

/// The distinct shard file names listed in a `model.safetensors.index.json`.
fn shard_names(index: &Path) -> Result<Vec<String>, ResolveError> {
    let io = |source| ResolveError::Io {
        path: index.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(index).map_err(io)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let mut names: Vec<String> = value["weight_map"]
        .as_object()
        .map(|map| {
            map.values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_local_file_names_file_and_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = resolve_local(dir.path(), "x").unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn offline_miss_says_how_to_fix() {
        let cache = tempfile::tempdir().unwrap();
        let source = EncoderSource {
            id_or_dir: "someone/some-model".into(),
            revision: "main".into(),
            offline: true,
            cache_dir: cache.path().to_path_buf(),
        };
        let err = source.resolve().unwrap_err().to_string();
        assert!(err.contains("`config.json`"), "{err}");
        assert!(err.contains("--offline"), "{err}");
        assert!(err.contains("--encoder DIR"), "{err}");
    }

    #[test]
    fn nonsense_id_is_rejected() {
        let source = EncoderSource {
            id_or_dir: "./no/such/dir".into(),
            revision: "main".into(),
            offline: true,
            cache_dir: PathBuf::from("/nonexistent"),
        };
        assert!(matches!(
            source.resolve(),
            Err(ResolveError::NotAnEncoder { .. })
        ));
    }
}
