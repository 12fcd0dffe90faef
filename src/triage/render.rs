//! Triage output: one ranked record per story (JSONL), or a Markdown or HTML digest of them.

pub use crate::io::records::{Source, TriageRecord};
use crate::util::html::escape as html_escape;

/// Facts about a run shown at the top of a digest.
pub struct DigestHeader<'a> {
    pub generated: String,
    pub model: &'a str,
    pub feeds: usize,
}

fn sources_line(record: &TriageRecord) -> Vec<(String, Option<String>)> {
    record
        .sources
        .iter()
        .map(|s| {
            (
                s.feed_title.clone().unwrap_or_else(|| s.feed.clone()),
                s.link.clone(),
            )
        })
        .collect()
}

fn topics_label(record: &TriageRecord) -> String {
    if record.topics.is_empty() {
        format!("no topic (top: {} {:.2})", record.top_topic, record.score)
    } else {
        record
            .topics
            .iter()
            .map(|t| format!("{t} {:.2}", record.scores.get(t).copied().unwrap_or(0.0)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `2025-03-11T08:20:00Z` as `2025-03-11 08:20 UTC` (other text unchanged).
fn pretty_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// Escapes text for Markdown inline content.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\`*_[]<>#|".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn markdown(header: &DigestHeader, records: &[TriageRecord]) -> String {
    let mut out = format!(
        "# spyglass triage — {}\n\n{} new {} from {} {}, ranked by topic score (model {}).\n",
        header.generated,
        records.len(),
        if records.len() == 1 {
            "story"
        } else {
            "stories"
        },
        header.feeds,
        if header.feeds == 1 { "feed" } else { "feeds" },
        md_escape(header.model)
    );
    for r in records {
        let title = md_escape(&r.title);
        let heading = match r.link.as_deref().filter(|l| is_http(l)) {
            Some(link) => format!("[{title}](<{link}>)"),
            None => title,
        };
        out.push_str(&format!("\n## {}. {}\n\n", r.rank, heading));
        out.push_str(&format!(
            "**{}** · {} · {}\n",
            md_escape(&topics_label(r)),
            pretty_time(&r.time),
            r.lang
        ));
        if !r.excerpt.is_empty() {
            out.push_str(&format!("\n> {}\n", md_escape(&r.excerpt)));
        }
        let sources: Vec<String> = sources_line(r)
            .into_iter()
            .map(|(name, link)| match link.filter(|l| is_http(l)) {
                Some(l) => format!("[{}](<{l}>)", md_escape(&name)),
                None => md_escape(&name),
            })
            .collect();
        out.push_str(&format!("\nSources: {}\n", sources.join(", ")));
    }
    out
}

/// Only http(s) links become links (a feed could carry `javascript:` links).
pub(crate) fn is_http(link: &str) -> bool {
    let lower = link.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && !link.contains(['<', '>', ' '])
}

fn safe_href(link: &str) -> Option<String> {
    is_http(link).then(|| html_escape(link))
}

pub fn html(header: &DigestHeader, records: &[TriageRecord]) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    );
    out.push_str(&format!(
        "<title>spyglass triage — {}</title>\n",
        html_escape(&header.generated)
    ));
    out.push_str(
        "<style>body{font-family:system-ui,-apple-system,\"Segoe UI\",\"Noto Sans\",\"Noto Sans CJK SC\",\"Noto Sans CJK JP\",\"PingFang SC\",\"Hiragino Sans\",\"Microsoft YaHei\",\"Yu Gothic\",sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
         li{margin-bottom:1.4rem}.meta{color:#555;font-size:.9rem}blockquote{margin:.4rem 0;padding-left:.8rem;border-left:3px solid #ccc;color:#333}\
         .score{font-weight:600}.none{color:#777}</style>\n</head><body>\n",
    );
    out.push_str(&format!(
        "<h1>spyglass triage — {}</h1>\n<p class=\"meta\">{} new {} from {} {}, ranked by topic score (model {}).</p>\n<ol>\n",
        html_escape(&header.generated),
        records.len(),
        if records.len() == 1 { "story" } else { "stories" },
        header.feeds,
        if header.feeds == 1 { "feed" } else { "feeds" },
        html_escape(header.model)
    ));
    for r in records {
        let title = html_escape(&r.title);
        let heading = match r.link.as_deref().and_then(safe_href) {
            Some(href) => format!("<a href=\"{href}\">{title}</a>"),
            None => title,
        };
        let class = if r.topics.is_empty() {
            "score none"
        } else {
            "score"
        };
        out.push_str(&format!(
            "<li><strong>{heading}</strong><div class=\"meta\"><span class=\"{class}\">{}</span> · {} · {}</div>\n",
            html_escape(&topics_label(r)),
            html_escape(&pretty_time(&r.time)),
            html_escape(&r.lang)
        ));
        if !r.excerpt.is_empty() {
            out.push_str(&format!(
                "<blockquote>{}</blockquote>\n",
                html_escape(&r.excerpt)
            ));
        }
        let sources: Vec<String> = sources_line(r)
            .into_iter()
            .map(|(name, link)| match link.as_deref().and_then(safe_href) {
                Some(href) => format!("<a href=\"{href}\">{}</a>", html_escape(&name)),
                None => html_escape(&name),
            })
            .collect();
        out.push_str(&format!(
            "<div class=\"meta\">Sources: {}</div></li>\n",
            sources.join(", ")
        ));
    }
    out.push_str("</ol>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record() -> TriageRecord {
        TriageRecord {
            rank: 1,
            id: "abc".into(),
            title: "Hackers <hit> *bank*".into(),
            link: Some("https://n.example/a?x=1&y=2".into()),
            time: "2025-03-03T08:00:00Z".into(),
            score: 0.91,
            top_topic: "cyberattack".into(),
            topics: vec!["cyberattack".into()],
            scores: [("cyberattack".to_string(), 0.91)].into_iter().collect(),
            excerpt: "Attackers encrypted the servers.".into(),
            evidence: BTreeMap::new(),
            lang: "en".into(),
            content: "feed",
            sources: vec![
                Source {
                    feed: "https://a.example/rss".into(),
                    feed_title: Some("Wire A".into()),
                    title: "t".into(),
                    link: Some("https://n.example/a?x=1&y=2".into()),
                    published: None,
                },
                Source {
                    feed: "b.xml".into(),
                    feed_title: None,
                    title: "t".into(),
                    link: Some("javascript:alert(1)".into()),
                    published: None,
                },
            ],
            model: "m@1".into(),
            truncated: false,
        }
    }

    fn header() -> DigestHeader<'static> {
        DigestHeader {
            generated: "2025-03-03 09:00 UTC".into(),
            model: "m@1",
            feeds: 2,
        }
    }

    #[test]
    fn markdown_lists_ranked_stories_with_sources() {
        let md = markdown(&header(), &[record()]);
        assert!(md.contains("1 new story from 2 feeds"), "{md}");
        assert!(
            md.contains("## 1. [Hackers \\<hit\\> \\*bank\\*](<https://n.example/a?x=1&y=2>)"),
            "{md}"
        );
        assert!(
            md.contains("**cyberattack 0.91** · 2025-03-03 08:00 UTC · en"),
            "{md}"
        );
        assert!(md.contains("> Attackers encrypted the servers."), "{md}");
        assert!(
            md.contains("Sources: [Wire A](<https://n.example/a?x=1&y=2>), b.xml"),
            "{md}"
        );
    }

    #[test]
    fn html_escapes_text_and_refuses_non_http_links() {
        let page = html(&header(), &[record()]);
        assert!(page.contains("Hackers &lt;hit&gt; *bank*"), "{page}");
        assert!(
            page.contains("href=\"https://n.example/a?x=1&amp;y=2\""),
            "{page}"
        );
        assert!(!page.contains("javascript:"), "{page}");
        assert!(page.trim_end().ends_with("</html>"));
        // Chinese and Japanese titles need a font that has their glyphs.
        assert!(page.contains("Noto Sans CJK SC") && page.contains("Hiragino Sans"));
    }
}
