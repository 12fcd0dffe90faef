//! Small helpers every layer shares, written once: SHA-256, the XDG data and cache folders,
//! opening spyglass's SQLite files, and HTML escaping.

pub mod html;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha256_hex_of(&[bytes])
}

/// SHA-256 of the concatenated `parts`, as lowercase hex, without joining them in memory.
pub fn sha256_hex_of(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

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

/// `PRAGMA application_id` of spyglass's embedding cache ("SGec").
pub const CACHE_APPLICATION_ID: i32 = 0x5347_6563;
/// `PRAGMA application_id` of spyglass's triage state ("SGts").
pub const STATE_APPLICATION_ID: i32 = 0x5347_7473;

/// Whether an opened SQLite file is ours to write.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// It carries `application_id`, or it was empty and now does.
    Ours,
    /// Another database, or not a database at all; nothing was written to it.
    Foreign,
}

/// Claims a SQLite file for one of spyglass's uses before anything is written to it: a file with
/// our `application_id` is ours; an empty one is stamped with it; one made by an older spyglass
/// (no id, but `own_table` present) is stamped too. Anything else is refused untouched.
pub fn claim_sqlite(
    conn: &rusqlite::Connection,
    application_id: i32,
    own_table: &str,
) -> Result<Claim, rusqlite::Error> {
    let found: i32 = match conn.query_row("PRAGMA application_id", [], |r| r.get(0)) {
        Ok(id) => id,
        // "file is not a database": some other file.
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            return Ok(Claim::Foreign)
        }
        Err(e) => return Err(e),
    };
    if found == application_id {
        return Ok(Claim::Ours);
    }
    if found != 0 {
        return Ok(Claim::Foreign);
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if tables.is_empty() || tables.iter().any(|t| t == own_table) {
        conn.execute_batch(&format!("PRAGMA application_id = {application_id};"))?;
        Ok(Claim::Ours)
    } else {
        Ok(Claim::Foreign)
    }
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
    fn only_empty_or_own_sqlite_files_are_claimed_and_others_stay_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.sqlite");
        let conn = open_sqlite(&fresh, Duration::from_secs(1)).unwrap();
        assert_eq!(claim_sqlite(&conn, 7, "items").unwrap(), Claim::Ours);
        assert_eq!(claim_sqlite(&conn, 7, "items").unwrap(), Claim::Ours);
        assert_eq!(claim_sqlite(&conn, 8, "items").unwrap(), Claim::Foreign);

        let other = dir.path().join("other.sqlite");
        let conn = open_sqlite(&other, Duration::from_secs(1)).unwrap();
        conn.execute_batch("CREATE TABLE invoices (x INTEGER);")
            .unwrap();
        drop(conn);
        let before = std::fs::read(&other).unwrap();
        let conn = open_sqlite(&other, Duration::from_secs(1)).unwrap();
        assert_eq!(claim_sqlite(&conn, 7, "items").unwrap(), Claim::Foreign);
        drop(conn);
        assert_eq!(
            std::fs::read(&other).unwrap(),
            before,
            "a foreign database is not touched"
        );

        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "not a database, but long enough to have a header....",
        )
        .unwrap();
        let conn = open_sqlite(&text, Duration::from_secs(1)).unwrap();
        assert_eq!(claim_sqlite(&conn, 7, "items").unwrap(), Claim::Foreign);
        drop(conn);
        assert_eq!(
            std::fs::read_to_string(&text).unwrap(),
            "not a database, but long enough to have a header...."
        );

        let legacy = dir.path().join("legacy.sqlite");
        let conn = open_sqlite(&legacy, Duration::from_secs(1)).unwrap();
        conn.execute_batch("CREATE TABLE items (x INTEGER);")
            .unwrap();
        assert_eq!(claim_sqlite(&conn, 7, "items").unwrap(), Claim::Ours);
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
