//! Small helpers every layer shares, written once: SHA-256, the XDG data and cache folders,
//! opening spyglass's SQLite files, and HTML escaping.

pub mod html;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, read in blocks.
pub use crate::encoder::file_sha256;

/// A folder under an XDG base directory: `$VAR/spyglass`, else `~/<fallback>/spyglass` (an
/// empty variable counts as unset, as the XDG specification says).
fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback)))
        .unwrap_or_else(|| PathBuf::from(fallback))
        .join("spyglass")
}

/// `$XDG_DATA_HOME/spyglass` (else `~/.local/share/spyglass`): triage state, built-in defaults.
pub fn data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share")
}

/// `$XDG_CACHE_HOME/spyglass` (else `~/.cache/spyglass`): the embedding cache.
pub fn cache_dir() -> PathBuf {
    xdg("XDG_CACHE_HOME", ".cache")
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create folder `{path}`: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Opens (creating it and its folder if needed) one of spyglass's SQLite files, waiting up to
/// `busy` for another process's write to finish. Nothing is written: callers check the file is
/// theirs before they set its journal mode or create tables.
pub fn open_sqlite(path: &Path, busy: Duration) -> Result<rusqlite::Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_empty_string() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sqlite_files_open_with_their_folder_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/x.sqlite");
        let conn = open_sqlite(&path, Duration::from_secs(1)).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
        assert!(path.is_file());
    }
}
