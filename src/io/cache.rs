//! The embedding cache: article embeddings stored in SQLite, keyed by everything that decides
//! them (encoder id, revision, weights hash, prefix, pooling, window settings, text), so that
//! retraining and evaluation never re-embed an unchanged article. SQLite transactions make it
//! safe under concurrent runs and interrupted writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::encoder::{ArticleEmbedding, Document, Encoder, EncoderError, Span, WindowEmbedding};
use crate::model::taxonomy::sha256_hex;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("embedding cache `{path}`: {source}; delete the file to start a fresh cache, or pass `--no-cache`")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("`{path}` is not a spyglass embedding cache (another database, or not a database); it was left untouched: pass another `--cache`, or `--no-cache`")]
    Foreign { path: PathBuf },
    #[error("cannot create the folder for embedding cache `{path}`: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot fingerprint encoder weights `{path}`: {source}")]
    Fingerprint {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Default cache file: `$XDG_CACHE_HOME/spyglass/embeddings.sqlite` (else `~/.cache/...`).
pub fn default_cache_path() -> PathBuf {
    crate::util::cache_dir().join("embeddings.sqlite")
}

/// Bumped whenever a code change alters embedding numerics, so that old cache entries miss.
/// 2: the compute path (precision and instruction-set level) joined the key.
/// 3: the candle path runs on candle-transformers (separate Q, K and V products, so its last
///    bits differ from the fused QKV it replaced).
pub const EMBEDDING_ENGINE_VERSION: u32 = 3;

/// Everything about an encoder that changes its embeddings, hashed into one identifier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmbeddingSpace {
    pub engine_version: u32,
    /// The weights' identity, not the encoder's name or path: `./enc`, `enc` and the Hub's copy
    /// of the same weights share their cached vectors.
    pub weights_sha256: String,
    pub prefix: String,
    pub pooling: crate::encoder::Pooling,
    pub window: crate::encoder::WindowConfig,
    /// Left out of the key when f32, so f32 keys are those of caches written before int8 existed.
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: crate::encoder::Precision,
    /// What computed the vectors (`Encoder::compute_path`): kernels at different
    /// instruction-set levels sum in different orders, so their vectors never mix.
    #[serde(default)]
    pub compute_path: String,
}

fn is_f32(precision: &crate::encoder::Precision) -> bool {
    *precision == crate::encoder::Precision::F32
}

impl EmbeddingSpace {
    pub fn of(encoder: &Encoder, weights_sha256: String) -> Self {
        Self {
            engine_version: EMBEDDING_ENGINE_VERSION,
            weights_sha256,
            prefix: encoder.settings().prefix.clone(),
            pooling: encoder.settings().pooling,
            window: encoder.window_config(),
            precision: encoder.precision(),
            compute_path: encoder.compute_path(),
        }
    }

    pub fn hash(&self) -> String {
        sha256_hex(
            serde_json::to_string(self)
                .expect("serializable")
                .as_bytes(),
        )
    }
}

/// The cache key of one article in one embedding space.
pub fn article_key(space_hash: &str, doc: Document<'_>) -> String {
    crate::util::sha256_hex_of(&[
        space_hash.as_bytes(),
        b"\0",
        doc.title.unwrap_or("").as_bytes(),
        b"\0",
        doc.text.as_bytes(),
    ])
}

pub struct EmbeddingCache {
    conn: Connection,
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoredWindow {
    start: usize,
    end: usize,
    tokens: usize,
}

/// What a cache lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(ArticleEmbedding),
    Miss,
    /// An entry whose checksum does not match its contents (edited or damaged): recomputed.
    Corrupt,
}

/// SHA-256 over an entry's key and stored fields, so an entry changed outside spyglass (or
/// moved to another key) is recognised and recomputed rather than trusted.
fn entry_checksum(
    key: &str,
    article: &[u8],
    windows: &str,
    vectors: &[u8],
    truncated: bool,
) -> String {
    let mut bytes =
        Vec::with_capacity(key.len() + article.len() + windows.len() + vectors.len() + 4);
    for part in [key.as_bytes(), article, windows.as_bytes(), vectors] {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    bytes.push(u8::from(truncated));
    sha256_hex(&bytes)
}

/// f32 values as little-endian bytes, the BLOB format of spyglass's SQLite files.
pub(crate) fn to_blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The inverse of [`to_blob`].
pub(crate) fn from_blob(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl EmbeddingCache {
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let err = |source| CacheError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn =
            crate::util::open_sqlite(path, Duration::from_secs(60)).map_err(|e| match e {
                crate::util::OpenError::Folder { path, source } => {
                    CacheError::Folder { path, source }
                }
                crate::util::OpenError::Sqlite(source) => err(source),
            })?;
        if crate::util::claim_sqlite(&conn, crate::util::CACHE_APPLICATION_ID, "embeddings")
            .map_err(err)?
            == crate::util::Claim::Foreign
        {
            return Err(CacheError::Foreign {
                path: path.to_path_buf(),
            });
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS embeddings (
                 key TEXT PRIMARY KEY,
                 article BLOB NOT NULL,
                 windows TEXT NOT NULL,
                 window_vectors BLOB NOT NULL,
                 truncated INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS fingerprints (
                 path TEXT PRIMARY KEY,
                 size INTEGER NOT NULL,
                 mtime INTEGER NOT NULL,
                 sha256 TEXT NOT NULL
             );",
        )
        .map_err(err)?;
        // Caches made before entries carried checksums gain the column; their entries have an
        // empty checksum, fail the check and are recomputed once.
        let has_checksum = conn
            .prepare("SELECT 1 FROM pragma_table_info('embeddings') WHERE name = 'checksum'")
            .and_then(|mut s| s.exists([]))
            .map_err(err)?;
        if !has_checksum {
            conn.execute_batch(
                "ALTER TABLE embeddings ADD COLUMN checksum TEXT NOT NULL DEFAULT ''",
            )
            .map_err(err)?;
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn get(&self, key: &str) -> Result<Lookup, CacheError> {
        let row = self
            .conn
            .query_row(
                "SELECT article, windows, window_vectors, truncated, checksum FROM embeddings WHERE key = ?1",
                params![key],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((article, windows, vectors, truncated, checksum)) = row else {
            return Ok(Lookup::Miss);
        };
        if checksum != entry_checksum(key, &article, &windows, &vectors, truncated) {
            return Ok(Lookup::Corrupt);
        }
        let embedding = from_blob(&article);
        let dim = embedding.len();
        let stored: Vec<StoredWindow> = match serde_json::from_str(&windows) {
            Ok(w) => w,
            Err(_) => return Ok(Lookup::Corrupt),
        };
        let vectors = from_blob(&vectors);
        if dim == 0 || vectors.len() != dim * stored.len() {
            return Ok(Lookup::Corrupt);
        }
        let windows = stored
            .iter()
            .zip(vectors.chunks_exact(dim))
            .map(|(w, v)| WindowEmbedding {
                span: Span {
                    start: w.start,
                    end: w.end,
                },
                tokens: w.tokens,
                embedding: v.to_vec(),
            })
            .collect();
        Ok(Lookup::Hit(ArticleEmbedding {
            embedding,
            windows,
            truncated,
        }))
    }

    /// Stores entries in one transaction: all of them land, or none.
    pub fn put_many(&mut self, entries: &[(String, &ArticleEmbedding)]) -> Result<(), CacheError> {
        let path = self.path.clone();
        let err = |source| CacheError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO embeddings (key, article, windows, window_vectors, truncated, checksum)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for (key, article) in entries {
                let windows: Vec<StoredWindow> = article
                    .windows
                    .iter()
                    .map(|w| StoredWindow {
                        start: w.span.start,
                        end: w.span.end,
                        tokens: w.tokens,
                    })
                    .collect();
                let vectors: Vec<f32> = article
                    .windows
                    .iter()
                    .flat_map(|w| w.embedding.iter().copied())
                    .collect();
                let (article_blob, windows_json, vectors_blob) = (
                    to_blob(&article.embedding),
                    serde_json::to_string(&windows).expect("serializable"),
                    to_blob(&vectors),
                );
                let checksum = entry_checksum(
                    key,
                    &article_blob,
                    &windows_json,
                    &vectors_blob,
                    article.truncated,
                );
                insert
                    .execute(params![
                        key,
                        article_blob,
                        windows_json,
                        vectors_blob,
                        article.truncated,
                        checksum
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The SHA-256 of a weights file, remembered by path, size and modification time.
    pub fn fingerprint(&self, file: &Path) -> Result<String, CacheError> {
        let meta = std::fs::metadata(file).map_err(|source| CacheError::Fingerprint {
            path: file.to_path_buf(),
            source,
        })?;
        let canonical = std::fs::canonicalize(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string();
        let size = meta.len() as i64;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let known: Option<String> = self
            .conn
            .query_row(
                "SELECT sha256 FROM fingerprints WHERE path = ?1 AND size = ?2 AND mtime = ?3",
                params![canonical, size, mtime],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(sha) = known {
            return Ok(sha);
        }
        let sha = crate::encoder::file_sha256(file).map_err(|source| CacheError::Fingerprint {
            path: file.to_path_buf(),
            source,
        })?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO fingerprints (path, size, mtime, sha256) VALUES (?1, ?2, ?3, ?4)",
                params![canonical, size, mtime, sha],
            )
            .map_err(|e| self.err(e))?;
        Ok(sha)
    }
}

/// Counts of how articles were obtained, for summaries and tests.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct CacheStats {
    pub hits: usize,
    pub misses: usize,
    /// Entries that failed their checksum and were recomputed (counted in `misses` too).
    pub corrupt: usize,
    /// Wall time spent in the encoder (tokenizing and embedding the misses).
    pub encoder_seconds: f64,
}

/// An encoder with an optional cache in front of it.
pub struct CachedEncoder {
    pub encoder: Encoder,
    cache: Option<EmbeddingCache>,
    space: EmbeddingSpace,
    space_hash: String,
    pub batch_size: usize,
    pub stats: CacheStats,
}

#[derive(Debug, thiserror::Error)]
pub enum CachedEncoderError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Encoder(Box<EncoderError>),
}

impl From<EncoderError> for CachedEncoderError {
    fn from(e: EncoderError) -> Self {
        Self::Encoder(Box::new(e))
    }
}

impl CachedEncoder {
    pub fn new(
        encoder: Encoder,
        cache: Option<EmbeddingCache>,
        batch_size: usize,
    ) -> Result<Self, CachedEncoderError> {
        let weights_sha256 = weights_fingerprint(&encoder, cache.as_ref())?;
        let space = EmbeddingSpace::of(&encoder, weights_sha256);
        Ok(Self {
            space_hash: space.hash(),
            space,
            encoder,
            cache,
            batch_size,
            stats: CacheStats::default(),
        })
    }

    pub fn space(&self) -> &EmbeddingSpace {
        &self.space
    }

    /// Embeds documents, taking what the cache has and storing what it lacked.
    pub fn embed(
        &mut self,
        docs: &[Document<'_>],
    ) -> Result<Vec<ArticleEmbedding>, CachedEncoderError> {
        let keys: Vec<String> = docs
            .iter()
            .map(|d| article_key(&self.space_hash, *d))
            .collect();
        let mut found: Vec<Option<ArticleEmbedding>> = Vec::with_capacity(docs.len());
        for key in &keys {
            found.push(match &self.cache {
                Some(cache) => match cache.get(key)? {
                    Lookup::Hit(e) => Some(e),
                    Lookup::Miss => None,
                    Lookup::Corrupt => {
                        self.stats.corrupt += 1;
                        None
                    }
                },
                None => None,
            });
        }
        let missing: Vec<usize> = (0..docs.len()).filter(|&i| found[i].is_none()).collect();
        self.stats.hits += docs.len() - missing.len();
        self.stats.misses += missing.len();
        if !missing.is_empty() {
            let to_embed: Vec<Document<'_>> = missing.iter().map(|&i| docs[i]).collect();
            let started = std::time::Instant::now();
            let embedded = self.encoder.embed(&to_embed, self.batch_size)?;
            self.stats.encoder_seconds += started.elapsed().as_secs_f64();
            if let Some(cache) = &mut self.cache {
                let entries: Vec<(String, &ArticleEmbedding)> = missing
                    .iter()
                    .zip(&embedded)
                    .map(|(&i, e)| (keys[i].clone(), e))
                    .collect();
                cache.put_many(&entries)?;
            }
            for (i, e) in missing.into_iter().zip(embedded) {
                found[i] = Some(e);
            }
        }
        Ok(found.into_iter().map(|e| e.expect("filled")).collect())
    }
}

/// The weights' SHA-256 (all shards joined), memoised in the cache when there is one.
fn weights_fingerprint(
    encoder: &Encoder,
    cache: Option<&EmbeddingCache>,
) -> Result<String, CacheError> {
    let mut parts = Vec::new();
    for file in &encoder.files().weights {
        parts.push(match cache {
            Some(c) => c.fingerprint(file)?,
            None => {
                crate::encoder::file_sha256(file).map_err(|source| CacheError::Fingerprint {
                    path: file.clone(),
                    source,
                })?
            }
        });
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        sha256_hex(parts.join(",").as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_entries_and_misses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EmbeddingCache::open(&dir.path().join("c/e.sqlite")).unwrap();
        let article = ArticleEmbedding {
            embedding: vec![0.6, 0.8],
            windows: vec![
                WindowEmbedding {
                    span: Span { start: 0, end: 5 },
                    tokens: 7,
                    embedding: vec![1.0, 0.0],
                },
                WindowEmbedding {
                    span: Span { start: 3, end: 9 },
                    tokens: 6,
                    embedding: vec![0.0, 1.0],
                },
            ],
            truncated: true,
        };
        cache.put_many(&[("k".into(), &article)]).unwrap();
        let Lookup::Hit(back) = cache.get("k").unwrap() else {
            panic!("stored entry not found")
        };
        assert_eq!(back.embedding, article.embedding);
        assert_eq!(back.windows[1].span, Span { start: 3, end: 9 });
        assert_eq!(back.windows[1].embedding, vec![0.0, 1.0]);
        assert!(back.truncated);
        assert!(matches!(cache.get("other").unwrap(), Lookup::Miss));

        // A vector changed behind spyglass's back fails the checksum and is not trusted.
        cache
            .conn
            .execute(
                "UPDATE embeddings SET article = ?1 WHERE key = 'k'",
                params![to_blob(&[0.8, 0.6])],
            )
            .unwrap();
        assert!(matches!(cache.get("k").unwrap(), Lookup::Corrupt));
    }

    #[test]
    fn key_depends_on_space_title_and_text() {
        let d = |t: &'static str| Document {
            title: Some("T"),
            text: t,
        };
        assert_eq!(article_key("s", d("a")), article_key("s", d("a")));
        assert_ne!(article_key("s", d("a")), article_key("s", d("b")));
        assert_ne!(article_key("s", d("a")), article_key("s2", d("a")));
        assert_ne!(
            article_key(
                "s",
                Document {
                    title: None,
                    text: "Ta"
                }
            ),
            article_key(
                "s",
                Document {
                    title: Some("T"),
                    text: "a"
                }
            )
        );
    }

    #[test]
    fn fingerprint_is_memoised_and_tracks_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::open(&dir.path().join("e.sqlite")).unwrap();
        let file = dir.path().join("w.bin");
        std::fs::write(&file, b"weights").unwrap();
        let first = cache.fingerprint(&file).unwrap();
        assert_eq!(first, sha256_hex(b"weights"));
        assert_eq!(cache.fingerprint(&file).unwrap(), first);
        std::fs::write(&file, b"other weights").unwrap();
        assert_eq!(
            cache.fingerprint(&file).unwrap(),
            sha256_hex(b"other weights")
        );
    }
}
