//! Feed sources (`--feed` values and feeds files, resolved to URLs or local files) and parsing a
//! feed document (RSS, Atom, JSON Feed via `feed-rs`) into plain-text items.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::extract::{html_to_text, tidy};

#[derive(Debug, thiserror::Error)]
pub enum FeedsFileError {
    #[error("cannot read feeds file `{path}`: {source}; check the path given to `--feeds-file`")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("feeds file `{path}` line {line}: `{text}` holds more than one entry; write one feed URL or path per line (`#` starts a comment)")]
    Line {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`{0}` uses an unsupported scheme; give an http(s) URL or a local file path")]
    Scheme(String),
    #[error(
        "`{0}` is not a valid URL ({1}); write it in full, e.g. `https://example.com/feed.xml`"
    )]
    Url(String, url::ParseError),
    #[error("`{0}` is neither an http(s) URL nor an existing file; write the full URL (`https://...`) or fix the path")]
    Missing(String),
}

#[derive(Debug, thiserror::Error)]
pub enum FeedParseError {
    #[error("not an RSS, Atom or JSON feed (no feed element found; is this a web page? use the feed's own URL)")]
    NoFeed,
    #[error("malformed feed: {0}")]
    Malformed(String),
}

/// Where a feed comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    Url(url::Url),
    File(PathBuf),
}

impl FeedSource {
    /// The name shown in reports.
    pub fn name(&self) -> String {
        match self {
            FeedSource::Url(u) => u.to_string(),
            FeedSource::File(p) => p.display().to_string(),
        }
    }

    /// The key that identifies the feed in the state database.
    pub fn key(&self) -> String {
        match self {
            FeedSource::Url(u) => u.to_string(),
            FeedSource::File(p) => {
                let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                format!("file:{}", abs.display())
            }
        }
    }
}

/// One entry of a feeds list, with where it was written (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub text: String,
    /// `file:line` for entries from a feeds file, `--feed` for flags.
    pub origin: String,
    /// Folder that relative paths are resolved against.
    pub base: PathBuf,
}

/// Parses a feeds file: one URL or path per line; blank lines and `#` comments (whole-line, or
/// after whitespace) are skipped.
pub fn parse_feeds_list(text: &str, path: &Path) -> Result<Vec<FeedEntry>, FeedsFileError> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if line.split_whitespace().count() > 1 {
            return Err(FeedsFileError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            });
        }
        entries.push(FeedEntry {
            text: line.to_string(),
            origin: format!("{}:{}", path.display(), i + 1),
            base: base.clone(),
        });
    }
    Ok(entries)
}

/// Reads and parses a feeds file.
pub fn read_feeds_file(path: &Path) -> Result<Vec<FeedEntry>, FeedsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FeedsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_feeds_list(crate::io::input::strip_bom_str(&text), path)
}

/// A line without its comment: `#` at the start, or after whitespace (URL fragments keep theirs).
fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

/// Resolves a feed entry into a URL or a local file (relative paths against `base`).
pub fn resolve_source(text: &str, base: &Path) -> Result<FeedSource, SourceError> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let url = url::Url::parse(text).map_err(|e| SourceError::Url(text.to_string(), e))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(SourceError::Url(
                text.to_string(),
                url::ParseError::EmptyHost,
            ));
        }
        return Ok(FeedSource::Url(url));
    }
    if lower.starts_with("file://") {
        let url = url::Url::parse(text).map_err(|e| SourceError::Url(text.to_string(), e))?;
        let path = url
            .to_file_path()
            .map_err(|_| SourceError::Missing(text.to_string()))?;
        return if path.is_file() {
            Ok(FeedSource::File(path))
        } else {
            Err(SourceError::Missing(text.to_string()))
        };
    }
    if let Some((scheme, _)) = text.split_once("://") {
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(SourceError::Scheme(text.to_string()));
        }
    }
    let path = Path::new(text);
    let path = if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    };
    if path.is_file() {
        Ok(FeedSource::File(path))
    } else {
        Err(SourceError::Missing(text.to_string()))
    }
}

/// One item of a feed, as text.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// The feed's own identifier for the item (RSS `guid`, Atom `id`), if it gave one.
    pub guid: Option<String>,
    pub title: String,
    /// The item's link, made absolute against the feed's URL.
    pub link: Option<String>,
    /// Plain text of the item's content, else its summary.
    pub text: String,
    pub published: Option<DateTime<Utc>>,
}

/// A parsed feed.
#[derive(Debug, Clone)]
pub struct ParsedFeed {
    pub title: Option<String>,
    pub language: Option<String>,
    pub items: Vec<FeedItem>,
}

/// Parses a feed document; `base` (the feed's URL) makes relative item links absolute.
pub fn parse_feed(bytes: &[u8], base: Option<&url::Url>) -> Result<ParsedFeed, FeedParseError> {
    // An empty id tells us the feed gave none (feed-rs would otherwise invent a random one).
    let parser = feed_rs::parser::Builder::new()
        .id_generator(|_, _, _| String::new())
        .build();
    let feed = parser.parse(bytes).map_err(|e| match e {
        feed_rs::parser::ParseFeedError::ParseError(
            feed_rs::parser::ParseErrorKind::NoFeedRoot,
        ) => FeedParseError::NoFeed,
        other => FeedParseError::Malformed(other.to_string()),
    })?;
    let items = feed
        .entries
        .into_iter()
        .map(|entry| {
            let title = entry
                .title
                .map(|t| html_to_text(&t.content))
                .map(|t| tidy(&t.replace('\n', " ")))
                .unwrap_or_default();
            let link = entry
                .links
                .iter()
                .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
                .or(entry.links.first())
                .map(|l| absolute(&l.href, base));
            let body = entry
                .content
                .and_then(|c| c.body)
                .filter(|b| !b.trim().is_empty());
            let summary = entry
                .summary
                .map(|s| s.content)
                .filter(|s| !s.trim().is_empty());
            let text = body
                .or(summary)
                .map(|h| html_to_text(&h))
                .unwrap_or_default();
            FeedItem {
                guid: Some(entry.id).filter(|id| !id.trim().is_empty()),
                title,
                link,
                text,
                published: entry.published.or(entry.updated),
            }
        })
        .collect();
    Ok(ParsedFeed {
        title: feed
            .title
            .map(|t| tidy(&html_to_text(&t.content)))
            .filter(|t| !t.is_empty()),
        language: feed.language,
        items,
    })
}

fn absolute(href: &str, base: Option<&url::Url>) -> String {
    let href = href.trim();
    match base {
        Some(b) => b
            .join(href)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| href.to_string()),
        None => href.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feeds_file_with_a_byte_order_mark_reads_its_first_feed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feeds.txt");
        std::fs::write(&path, "\u{feff}https://a.example/rss.xml\n").unwrap();
        let entries = read_feeds_file(&path).unwrap();
        assert_eq!(entries[0].text, "https://a.example/rss.xml");
    }

    #[test]
    fn feeds_files_skip_comments_and_blank_lines() {
        let text = "# my feeds\n\nhttps://a.example/rss.xml\n  https://b.example/atom#top   # trailing note\nlocal/feed.xml\n";
        let entries = parse_feeds_list(text, Path::new("conf/feeds.txt")).unwrap();
        let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "https://a.example/rss.xml",
                "https://b.example/atom#top",
                "local/feed.xml"
            ]
        );
        assert_eq!(entries[2].origin, "conf/feeds.txt:5");
        assert_eq!(entries[2].base, PathBuf::from("conf"));
        let err = parse_feeds_list(
            "https://a.example/x https://b.example/y\n",
            Path::new("f.txt"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`f.txt` line 1"), "{err}");
    }

    #[test]
    fn sources_resolve_to_urls_or_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.xml"), "<rss/>").unwrap();
        assert!(
            matches!(resolve_source("HTTPS://Example.com/rss", dir.path()), Ok(FeedSource::Url(u)) if u.as_str() == "https://example.com/rss")
        );
        assert_eq!(
            resolve_source("f.xml", dir.path()).unwrap(),
            FeedSource::File(dir.path().join("f.xml"))
        );
        assert!(matches!(
            resolve_source("ftp://example.com/rss", dir.path()),
            Err(SourceError::Scheme(_))
        ));
        let err = resolve_source("example.com/rss", dir.path()).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        let file_url = url::Url::from_file_path(dir.path().join("f.xml")).unwrap();
        assert!(matches!(
            resolve_source(file_url.as_str(), dir.path()),
            Ok(FeedSource::File(_))
        ));
    }

    #[test]
    fn parses_rss_and_atom_items_as_text() {
        let rss = br#"<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title><language>en</language>
<item><title>Hackers &amp; a &lt;b&gt;bank&lt;/b&gt;</title><link>/story/1?utm_source=rss</link><guid>w-1</guid>
<description>&lt;p&gt;Attackers encrypted&lt;/p&gt;&lt;p&gt;the servers.&lt;/p&gt;</description>
<pubDate>Mon, 03 Mar 2025 08:00:00 GMT</pubDate></item>
<item><title>No guid</title><link>https://x.example/2</link><description>Plain.</description></item>
</channel></rss>"#;
        let base = url::Url::parse("https://wire.example/feeds/rss.xml").unwrap();
        let feed = parse_feed(rss, Some(&base)).unwrap();
        assert_eq!(feed.title.as_deref(), Some("Wire"));
        assert_eq!(feed.items.len(), 2);
        let a = &feed.items[0];
        assert_eq!(a.title, "Hackers & a bank");
        assert_eq!(
            a.link.as_deref(),
            Some("https://wire.example/story/1?utm_source=rss")
        );
        assert_eq!(a.guid.as_deref(), Some("w-1"));
        assert_eq!(a.text, "Attackers encrypted\n\nthe servers.");
        assert_eq!(
            a.published.unwrap().to_rfc3339(),
            "2025-03-03T08:00:00+00:00"
        );
        assert_eq!(feed.items[1].guid, None);

        let atom = br#"<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom news</title><id>urn:f</id>
<entry><id>urn:e1</id><title>Budget passed</title><link rel="alternate" href="https://n.example/budget"/>
<updated>2025-03-02T10:00:00Z</updated><content type="html">&lt;p&gt;The council agreed.&lt;/p&gt;</content></entry></feed>"#;
        let feed = parse_feed(atom, None).unwrap();
        assert_eq!(feed.items[0].text, "The council agreed.");
        assert_eq!(
            feed.items[0].link.as_deref(),
            Some("https://n.example/budget")
        );
    }

    #[test]
    fn malformed_and_non_feeds_are_errors() {
        assert!(matches!(
            parse_feed(b"<html><body>hi</body></html>", None),
            Err(FeedParseError::NoFeed)
        ));
        assert!(matches!(
            parse_feed(b"plain words", None),
            Err(FeedParseError::NoFeed)
        ));
        let broken = b"<rss version=\"2.0\"><channel><item><title>x</title></chan";
        assert!(parse_feed(broken, None).is_err());
    }
}
