//! Atom feeds (RFC 4287) of the stories triage reported, one per topic and one for all, so any
//! feed reader can subscribe to a topic.

use std::fmt::Write;

use crate::triage::render::is_http;
use crate::triage::state::ReportedStory;

/// XML text: markup escaped, and characters XML 1.0 forbids (most controls) dropped.
fn xml(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r')
                || ('\u{20}'..='\u{D7FF}').contains(&c)
                || ('\u{E000}'..='\u{FFFD}').contains(&c)
                || c >= '\u{10000}'
        })
        .collect();
    crate::util::html::escape(&clean)
}

/// An RFC 3339 time from the state, or `fallback` when it is missing or not one.
fn atom_time(value: Option<&str>, fallback: &str) -> String {
    value
        .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok())
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|| fallback.to_string())
}

/// The feed of `stories` (newest first) for `topic` (`all` for every topic). `state_id` makes
/// entry ids unique to the state they come from, and stable across requests.
pub fn render(topic: &str, state_id: &str, stories: &[ReportedStory], now: &str) -> String {
    let mut out = String::new();
    let updated = stories
        .iter()
        .map(|s| atom_time(Some(&s.first_seen), now))
        .max()
        .unwrap_or_else(|| now.to_string());
    let title = if topic == "all" {
        "spyglass: all topics".to_string()
    } else {
        format!("spyglass: {topic}")
    };
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n  <id>urn:spyglass:{}:{}</id>\n  <title>{}</title>\n  <updated>{updated}</updated>\n  <author><name>spyglass</name></author>\n  <generator>spyglass</generator>\n",
        xml(state_id),
        xml(topic),
        xml(&title)
    );
    for story in stories {
        let first_seen = atom_time(Some(&story.first_seen), now);
        let published = atom_time(story.published.as_deref(), &first_seen);
        let _ = write!(
            out,
            "  <entry>\n    <id>urn:spyglass:{}:story:{}</id>\n    <title>{}</title>\n    <published>{published}</published>\n    <updated>{first_seen}</updated>\n",
            xml(state_id),
            story.id,
            xml(if story.title.trim().is_empty() { "(untitled)" } else { &story.title })
        );
        if let Some(url) = story.url.as_deref().filter(|u| is_http(u)) {
            let _ = writeln!(out, "    <link rel=\"alternate\" href=\"{}\"/>", xml(url));
        }
        for other in story.other_sources.iter().filter(|u| is_http(u)) {
            let _ = writeln!(out, "    <link rel=\"related\" href=\"{}\"/>", xml(other));
        }
        let source = story.feed_title.as_deref().unwrap_or(&story.feed);
        let _ = writeln!(out, "    <author><name>{}</name></author>", xml(source));
        for t in &story.topics {
            let _ = writeln!(out, "    <category term=\"{}\"/>", xml(t));
        }
        let scores: Vec<(String, f64)> = story
            .scores
            .as_deref()
            .and_then(|s| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).ok()
            })
            .map(|m| {
                m.into_iter()
                    .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
                    .filter(|(k, _)| story.topics.contains(k))
                    .collect()
            })
            .unwrap_or_default();
        let mut summary = String::new();
        if !scores.is_empty() {
            let listed: Vec<String> = scores.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            let _ = write!(summary, "[{}] ", listed.join(", "));
        }
        if let Some(excerpt) = &story.excerpt {
            summary.push_str(excerpt);
        }
        let _ = writeln!(out, "    <summary>{}</summary>", xml(&summary));
        let mut html = String::new();
        let _ = write!(
            html,
            "<p><b>Topics:</b> {}</p>",
            xml(&story.topics.join(", "))
        );
        if !scores.is_empty() {
            html.push_str("<ul>");
            for (topic, score) in &scores {
                let _ = write!(html, "<li>{} {score:.4}</li>", xml(topic));
            }
            html.push_str("</ul>");
        }
        if let Some(excerpt) = &story.excerpt {
            let _ = write!(html, "<blockquote>{}</blockquote>", xml(excerpt));
        }
        let links: Vec<&String> = story
            .url
            .iter()
            .chain(&story.other_sources)
            .filter(|u| is_http(u))
            .collect();
        if !links.is_empty() {
            html.push_str("<p><b>Sources:</b></p><ul>");
            for link in links {
                let _ = write!(html, "<li><a href=\"{0}\">{0}</a></li>", xml(link));
            }
            html.push_str("</ul>");
        }
        let _ = writeln!(out, "    <content type=\"html\">{}</content>", xml(&html));
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story(id: i64, title: &str) -> ReportedStory {
        ReportedStory {
            id,
            feed: "https://example.org/feed.xml".into(),
            feed_title: Some("Example <News>".into()),
            url: Some(format!("https://example.org/{id}")),
            title: title.into(),
            published: Some("2026-12-01T10:00:00Z".into()),
            first_seen: "2026-12-01T11:00:00Z".into(),
            score: Some(0.9),
            topics: vec!["espionage".into()],
            scores: Some(r#"{"espionage":0.9123,"cyberattack":0.01}"#.into()),
            excerpt: Some("Agents copied \u{1}files & plans.".into()),
            model: Some("default@2.0.0".into()),
            other_sources: vec![
                "javascript:alert(1)".into(),
                "https://other.example/x".into(),
            ],
        }
    }

    #[test]
    fn feeds_parse_with_feed_rs_and_keep_hostile_text_inert() {
        let text = render(
            "espionage",
            "abc",
            &[
                story(7, "Spy <script>alert(1)</script> caught"),
                story(3, ""),
            ],
            "2026-12-02T00:00:00Z",
        );
        let feed = feed_rs::parser::parse(text.as_bytes()).expect("valid Atom");
        assert_eq!(feed.entries.len(), 2);
        let entry = &feed.entries[0];
        assert_eq!(entry.id, "urn:spyglass:abc:story:7");
        assert_eq!(
            entry.title.as_ref().unwrap().content,
            "Spy <script>alert(1)</script> caught"
        );
        assert_eq!(entry.links[0].href, "https://example.org/7");
        assert_eq!(entry.links.len(), 2, "the javascript: link is left out");
        assert_eq!(entry.categories[0].term, "espionage");
        let summary = &entry.summary.as_ref().unwrap().content;
        assert!(summary.contains("espionage 0.91"), "{summary}");
        assert!(
            !summary.contains("cyberattack"),
            "only assigned topics: {summary}"
        );
        assert!(!text.contains('\u{1}'));
        assert!(!text.contains("<script>"));
        assert_eq!(
            feed.entries[1].title.as_ref().unwrap().content,
            "(untitled)"
        );
    }
}
