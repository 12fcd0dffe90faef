//! Triage state in SQLite: items already seen (with their scores and embeddings, for
//! near-duplicate checks across runs) and each feed's caching headers. A run's changes are
//! committed in one transaction after its output is written, so a crash loses nothing: the
//! interrupted run's items simply come again.

use crate::io::cache::{from_blob, to_blob};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::fetch::Validators;

/// Schema version written to `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the folder `{path}` for the triage state: {source}; pass a writable `--state` file")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("triage state `{path}`: {source}; if the file is not a spyglass state database, move it away or pass another `--state`")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("`{path}` is not a spyglass triage state (another database, or not a database); it was left untouched: pass another `--state`")]
    Foreign { path: PathBuf },
    #[error("triage state `{path}` was written by a newer spyglass (schema {found}, this one reads {SCHEMA_VERSION}); upgrade spyglass or pass another `--state`")]
    Newer { path: PathBuf, found: i64 },
}

/// Default state file: `$XDG_DATA_HOME/spyglass/triage.sqlite` (else `~/.local/share/...`).
pub fn default_state_path() -> PathBuf {
    crate::util::data_dir().join("triage.sqlite")
}

/// What became of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    /// Listed in the run's output.
    Reported,
    /// Scored, but below `--min-score` or outside `--topics`.
    Filtered,
    /// Same story as another item (same link, or a near-duplicate).
    Duplicate,
    /// Published before `--since`.
    Old,
    /// No title and no text.
    Empty,
}

impl ItemStatus {
    fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Reported => "reported",
            ItemStatus::Filtered => "filtered",
            ItemStatus::Duplicate => "duplicate",
            ItemStatus::Old => "old",
            ItemStatus::Empty => "empty",
        }
    }
}

/// The item an item duplicates: one stored earlier (by id), or one of this run, named by one of
/// its keys, so the link holds however the run's records are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuplicateOf {
    Stored(i64),
    Run { leader_key: String },
}

/// One item to record.
#[derive(Debug, Clone)]
pub struct ItemRecord {
    pub keys: Vec<String>,
    pub feed: String,
    pub guid: Option<String>,
    pub url: Option<String>,
    pub title: String,
    pub published: Option<DateTime<Utc>>,
    pub status: ItemStatus,
    pub score: Option<f32>,
    /// Assigned topics, comma-separated.
    pub topics: String,
    /// Calibrated scores as a JSON object.
    pub scores: Option<String>,
    pub model: Option<String>,
    pub duplicate_of: Option<DuplicateOf>,
    pub embedding: Option<Vec<f32>>,
    /// The evidence excerpt of the item's most probable topic (scored items only).
    pub excerpt: Option<String>,
}

/// A reported story as the per-topic feeds show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedStory {
    pub id: i64,
    pub feed: String,
    pub feed_title: Option<String>,
    pub url: Option<String>,
    pub title: String,
    pub published: Option<String>,
    pub first_seen: String,
    pub score: Option<f32>,
    pub topics: Vec<String>,
    /// Calibrated scores as the JSON object the state stores.
    pub scores: Option<String>,
    pub excerpt: Option<String>,
    pub model: Option<String>,
    /// Links of the other items merged into this story (same link or near-duplicates).
    pub other_sources: Vec<String>,
}

/// A feed's outcome to record.
#[derive(Debug, Clone)]
pub struct FeedRecord {
    pub key: String,
    pub title: Option<String>,
    /// New caching headers; `None` keeps the stored ones (304 or failure).
    pub validators: Option<Validators>,
    /// `ok`, `not-modified` or the error message.
    pub status: String,
}

/// An item stored earlier, for near-duplicate checks.
#[derive(Debug, Clone)]
pub struct StoredItem {
    pub id: i64,
    pub title: String,
    pub embedding: Vec<f32>,
}

pub struct State {
    conn: Connection,
    path: PathBuf,
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl State {
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let err = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn =
            crate::util::open_sqlite(path, Duration::from_secs(30)).map_err(|e| match e {
                crate::util::OpenError::Folder { path, source } => {
                    StateError::Folder { path, source }
                }
                crate::util::OpenError::Sqlite(source) => err(source),
            })?;
        if crate::util::claim_sqlite(&conn, crate::util::STATE_APPLICATION_ID, "items")
            .map_err(err)?
            == crate::util::Claim::Foreign
        {
            return Err(StateError::Foreign {
                path: path.to_path_buf(),
            });
        }
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(StateError::Newer {
                path: path.to_path_buf(),
                found,
            });
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS feeds (
                 feed TEXT PRIMARY KEY,
                 title TEXT,
                 etag TEXT,
                 last_modified TEXT,
                 last_fetched TEXT NOT NULL,
                 last_status TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS items (
                 id INTEGER PRIMARY KEY,
                 feed TEXT NOT NULL,
                 guid TEXT,
                 url TEXT,
                 title TEXT NOT NULL,
                 published TEXT,
                 first_seen TEXT NOT NULL,
                 status TEXT NOT NULL,
                 score REAL,
                 topics TEXT NOT NULL,
                 scores TEXT,
                 model TEXT,
                 duplicate_of INTEGER REFERENCES items(id),
                 embedding BLOB
             );
             CREATE INDEX IF NOT EXISTS items_first_seen ON items(first_seen);
             CREATE TABLE IF NOT EXISTS item_keys (
                 key TEXT PRIMARY KEY,
                 item INTEGER NOT NULL REFERENCES items(id)
             );
             PRAGMA user_version = 1;",
        )
        .map_err(err)?;
        // Added after the first schema: the top topic's evidence excerpt, for the feeds `serve`
        // publishes. Older states gain the column; older spyglass versions ignore it.
        let has_excerpt: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('items') WHERE name = 'excerpt'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if has_excerpt == 0 {
            conn.execute_batch("ALTER TABLE items ADD COLUMN excerpt TEXT")
                .map_err(err)?;
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The caching headers stored for a feed.
    pub fn validators(&self, feed: &str) -> Result<Validators, StateError> {
        self.conn
            .query_row(
                "SELECT etag, last_modified FROM feeds WHERE feed = ?1",
                params![feed],
                |r| {
                    Ok(Validators {
                        etag: r.get(0)?,
                        last_modified: r.get(1)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| self.err(e))
    }

    /// The stored item any of `keys` belongs to, unless it was left out by a filter
    /// (`--min-score`, `--topics`, `--since`): those stay unseen, so a wider filter later shows
    /// them.
    pub fn seen(&self, keys: &[String]) -> Result<Option<i64>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT k.item FROM item_keys k JOIN items i ON i.id = k.item
                 WHERE k.key = ?1 AND i.status NOT IN ('filtered', 'old')",
            )
            .map_err(|e| self.err(e))?;
        for key in keys {
            if let Some(id) = stmt
                .query_row(params![key], |r| r.get::<_, i64>(0))
                .optional()
                .map_err(|e| self.err(e))?
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Whether any of `keys` belongs to an item a filter left out in an earlier run.
    pub fn filtered_before(&self, keys: &[String]) -> Result<bool, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM item_keys k JOIN items i ON i.id = k.item
                 WHERE k.key = ?1 AND i.status IN ('filtered', 'old')",
            )
            .map_err(|e| self.err(e))?;
        for key in keys {
            if stmt.exists(params![key]).map_err(|e| self.err(e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Embedded items first seen at or after `since`, newest first, at most `limit`. Filtered
    /// items are not among them: they come again as themselves, not as earlier stories.
    pub fn recent_items(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredItem>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, title, embedding FROM items
                 WHERE embedding IS NOT NULL AND first_seen >= ?1
                   AND status NOT IN ('duplicate', 'filtered', 'old')
                 ORDER BY first_seen DESC, id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![timestamp(since), limit as i64], |r| {
                Ok(StoredItem {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    embedding: from_blob(&r.get::<_, Vec<u8>>(2)?),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Reported stories, newest first (by publication, else first sighting), at most `limit`;
    /// only those assigned `topic` when one is given.
    pub fn reported_stories(
        &self,
        topic: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ReportedStory>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.id, i.feed, f.title, i.url, i.title, i.published, i.first_seen, i.score,
                        i.topics, i.scores, i.excerpt, i.model
                 FROM items i LEFT JOIN feeds f ON f.feed = i.feed
                 WHERE i.status = 'reported'
                   AND (?1 IS NULL OR (',' || i.topics || ',') LIKE ('%,' || ?1 || ',%'))
                 ORDER BY COALESCE(i.published, i.first_seen) DESC, i.id DESC
                 LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let mut sources = self
            .conn
            .prepare(
                "SELECT url FROM items WHERE duplicate_of = ?1 AND url IS NOT NULL ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![topic, limit as i64], |r| {
                Ok(ReportedStory {
                    id: r.get(0)?,
                    feed: r.get(1)?,
                    feed_title: r.get(2)?,
                    url: r.get(3)?,
                    title: r.get(4)?,
                    published: r.get(5)?,
                    first_seen: r.get(6)?,
                    score: r.get::<_, Option<f64>>(7)?.map(|s| s as f32),
                    topics: r
                        .get::<_, String>(8)?
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect(),
                    scores: r.get(9)?,
                    excerpt: r.get(10)?,
                    model: r.get(11)?,
                    other_sources: Vec::new(),
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let mut stories = rows;
        for story in &mut stories {
            story.other_sources = sources
                .query_map(params![story.id], |r| r.get::<_, String>(0))
                .map_err(|e| self.err(e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?;
            story
                .other_sources
                .retain(|u| Some(u) != story.url.as_ref());
            story.other_sources.dedup();
        }
        Ok(stories)
    }

    /// Number of items stored.
    pub fn item_count(&self) -> Result<usize, StateError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM items", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }

    /// Records a run: feeds and items, all or nothing.
    pub fn commit(
        &mut self,
        now: DateTime<Utc>,
        feeds: &[FeedRecord],
        items: &[ItemRecord],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        // IMMEDIATE: the write lock is taken before anything is read, so a second run committing
        // at the same time waits (busy timeout) and then sees what the first added.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let now_s = timestamp(now);
        {
            let mut upsert_feed = tx
                .prepare(
                    "INSERT INTO feeds (feed, title, etag, last_modified, last_fetched, last_status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(feed) DO UPDATE SET
                         title = COALESCE(excluded.title, feeds.title),
                         etag = CASE WHEN ?7 THEN excluded.etag ELSE feeds.etag END,
                         last_modified = CASE WHEN ?7 THEN excluded.last_modified ELSE feeds.last_modified END,
                         last_fetched = excluded.last_fetched,
                         last_status = excluded.last_status",
                )
                .map_err(err)?;
            for f in feeds {
                let v = f.validators.clone().unwrap_or_default();
                upsert_feed
                    .execute(params![
                        f.key,
                        f.title,
                        v.etag,
                        v.last_modified,
                        now_s,
                        f.status,
                        f.validators.is_some()
                    ])
                    .map_err(err)?;
            }
            let mut insert_item = tx
                .prepare(
                    "INSERT INTO items (feed, guid, url, title, published, first_seen, status, score, topics, scores, model, duplicate_of, embedding, excerpt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(err)?;
            let mut insert_key = tx
                .prepare("INSERT OR IGNORE INTO item_keys (key, item) VALUES (?1, ?2)")
                .map_err(err)?;
            let mut stored_key = tx
                .prepare(
                    "SELECT k.item, i.status FROM item_keys k JOIN items i ON i.id = k.item
                     WHERE k.key = ?1",
                )
                .map_err(err)?;
            let mut rescored = tx
                .prepare(
                    "UPDATE items SET status = ?2, score = ?3, topics = ?4, scores = ?5, model = ?6,
                         duplicate_of = ?7, embedding = ?8, title = ?9, excerpt = ?10
                     WHERE id = ?1",
                )
                .map_err(err)?;
            // Items that others duplicate go first, so their ids exist when referenced.
            let mut order: Vec<&ItemRecord> = items.iter().collect();
            order.sort_by_key(|item| matches!(item.duplicate_of, Some(DuplicateOf::Run { .. })));
            let mut ids_by_key: std::collections::HashMap<&str, i64> =
                std::collections::HashMap::new();
            for item in order {
                // Another run (started at the same time) may have stored this item since this
                // one read the state: keep its row rather than adding a second.
                let mut already = None;
                for key in &item.keys {
                    already = stored_key
                        .query_row(params![key], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                        })
                        .optional()
                        .map_err(err)?;
                    if already.is_some() {
                        break;
                    }
                }
                let duplicate_of = match &item.duplicate_of {
                    Some(DuplicateOf::Stored(id)) => Some(*id),
                    Some(DuplicateOf::Run { leader_key }) => {
                        ids_by_key.get(leader_key.as_str()).copied()
                    }
                    None => None,
                };
                if let Some((id, status)) = already {
                    // A story a filter left out earlier, scored again: its row takes the new
                    // outcome (first_seen stays).
                    if status == "filtered" || status == "old" {
                        rescored
                            .execute(params![
                                id,
                                item.status.as_str(),
                                item.score,
                                item.topics,
                                item.scores,
                                item.model,
                                duplicate_of.filter(|d| *d != id),
                                item.embedding.as_deref().map(to_blob),
                                item.title,
                                item.excerpt,
                            ])
                            .map_err(err)?;
                    }
                    for key in &item.keys {
                        ids_by_key.insert(key, id);
                        insert_key.execute(params![key, id]).map_err(err)?;
                    }
                    continue;
                }
                insert_item
                    .execute(params![
                        item.feed,
                        item.guid,
                        item.url,
                        item.title,
                        item.published.map(timestamp),
                        now_s,
                        item.status.as_str(),
                        item.score,
                        item.topics,
                        item.scores,
                        item.model,
                        duplicate_of,
                        item.embedding.as_deref().map(to_blob),
                        item.excerpt,
                    ])
                    .map_err(err)?;
                let id = tx.last_insert_rowid();
                for key in &item.keys {
                    ids_by_key.insert(key, id);
                    insert_key.execute(params![key, id]).map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, status: ItemStatus, dup: Option<DuplicateOf>) -> ItemRecord {
        ItemRecord {
            keys: vec![key.to_string(), format!("{key}-alt")],
            feed: "f".into(),
            guid: None,
            url: None,
            title: key.into(),
            published: None,
            status,
            score: Some(0.5),
            topics: String::new(),
            scores: None,
            model: None,
            duplicate_of: dup,
            embedding: Some(vec![0.6, 0.8]),
            excerpt: None,
        }
    }

    #[test]
    fn filtered_items_stay_unseen_until_they_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let now: DateTime<Utc> = "2025-03-03T00:00:00Z".parse().unwrap();
        let filtered = item("f", ItemStatus::Filtered, None);
        state
            .commit(now, &[], std::slice::from_ref(&filtered))
            .unwrap();
        assert_eq!(state.seen(&filtered.keys).unwrap(), None);
        assert!(state.filtered_before(&filtered.keys).unwrap());
        assert!(state
            .recent_items(now - chrono::Duration::days(1), 10)
            .unwrap()
            .is_empty());
        // Listed in a later run: the same row, now seen.
        let listed = item("f", ItemStatus::Reported, None);
        state
            .commit(now, &[], std::slice::from_ref(&listed))
            .unwrap();
        assert_eq!(state.item_count().unwrap(), 1);
        assert!(state.seen(&listed.keys).unwrap().is_some());
        assert!(!state.filtered_before(&listed.keys).unwrap());
        assert_eq!(
            state
                .recent_items(now - chrono::Duration::days(1), 10)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn two_runs_committing_the_same_items_store_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let now: DateTime<Utc> = "2025-03-03T00:00:00Z".parse().unwrap();
        // Both runs read the state before either committed.
        let mut first = State::open(&path).unwrap();
        let mut second = State::open(&path).unwrap();
        let items = vec![item("a", ItemStatus::Reported, None)];
        assert!(second.seen(&items[0].keys).unwrap().is_none());
        first.commit(now, &[], &items).unwrap();
        second
            .commit(
                now,
                &[],
                &[items[0].clone(), item("b", ItemStatus::Reported, None)],
            )
            .unwrap();
        assert_eq!(first.item_count().unwrap(), 2, "`a` once, `b` once");
    }

    #[test]
    fn commits_feeds_and_items_and_finds_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/state.sqlite");
        let now: DateTime<Utc> = "2025-03-03T00:00:00Z".parse().unwrap();
        {
            let mut state = State::open(&path).unwrap();
            assert_eq!(
                state.validators("https://f").unwrap(),
                Validators::default()
            );
            let v = Validators {
                etag: Some("\"abc\"".into()),
                last_modified: None,
            };
            let feeds = vec![FeedRecord {
                key: "https://f".into(),
                title: Some("F".into()),
                validators: Some(v),
                status: "ok".into(),
            }];
            let items = vec![
                // Listed before its leader, and linked by the leader's second key.
                item(
                    "dup",
                    ItemStatus::Duplicate,
                    Some(DuplicateOf::Run {
                        leader_key: "lead-alt".into(),
                    }),
                ),
                item("lead", ItemStatus::Reported, None),
            ];
            state.commit(now, &feeds, &items).unwrap();
            // A failed fetch later keeps the stored validators.
            let failed = vec![FeedRecord {
                key: "https://f".into(),
                title: None,
                validators: None,
                status: "HTTP 500".into(),
            }];
            state.commit(now, &failed, &[]).unwrap();
        }
        let state = State::open(&path).unwrap();
        assert_eq!(
            state.validators("https://f").unwrap().etag.as_deref(),
            Some("\"abc\"")
        );
        let lead = state
            .seen(&["nope".into(), "lead-alt".into()])
            .unwrap()
            .unwrap();
        let dup = state.seen(&["dup".into()]).unwrap().unwrap();
        assert_ne!(lead, dup);
        let dup_of: Option<i64> = state
            .conn
            .query_row("SELECT duplicate_of FROM items WHERE id = ?1", [dup], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(dup_of, Some(lead));
        assert_eq!(state.seen(&["other".into()]).unwrap(), None);
        let recent = state
            .recent_items(now - chrono::Duration::days(1), 10)
            .unwrap();
        assert_eq!(recent.len(), 1, "duplicates are not compared against");
        assert_eq!(recent[0].embedding, vec![0.6, 0.8]);
        assert_eq!(state.item_count().unwrap(), 2);
    }

    #[test]
    fn rejects_files_that_are_not_databases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        std::fs::write(
            &path,
            "this is not sqlite, just text that is long enough to matter......",
        )
        .unwrap();
        let err = State::open(&path).err().expect("not a database");
        assert!(err.to_string().contains("--state"), "{err}");
    }
}
