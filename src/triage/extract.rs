//! Text from HTML: plain text of feed content, and the main story of an article page with
//! navigation, cookie banners, share bars and "related articles" blocks removed (a boilerplate
//! pre-pass, then readability scoring by `dom_smoothie`, with a fallback of our own).

use dom_query::{Document, NodeRef};
use dom_smoothie::{Config, Readability, TextMode};

/// Extracted text shorter than this (in characters) is taken as a failed extraction.
pub const MIN_ARTICLE_CHARS: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("page `{url}` has no readable story text (only {chars} characters after removing boilerplate)")]
    TooShort { url: String, chars: usize },
}

/// The story of an article page.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub title: Option<String>,
    pub text: String,
}

/// Elements that never hold story text.
const NEVER_CONTENT: &str =
    "script, style, noscript, template, iframe, svg, canvas, form, button, select, \
     textarea, input, nav, footer, aside, dialog, \
     [role=navigation], [role=banner], [role=contentinfo], [role=complementary], [role=dialog], \
     [role=alertdialog], [aria-hidden=true], [hidden]";

/// Class or id fragments of boilerplate blocks.
const BOILERPLATE_MARKERS: &[&str] = &[
    "cookie",
    "consent",
    "gdpr",
    "privacy-banner",
    "related",
    "recommend",
    "read-more",
    "readmore",
    "more-stories",
    "morestories",
    "most-read",
    "mostread",
    "most-popular",
    "popular",
    "trending",
    "newsletter",
    "subscribe",
    "signup",
    "sign-up",
    "share",
    "social",
    "sharing",
    "promo",
    "advert",
    "sponsor",
    "outbrain",
    "taboola",
    "paywall",
    "breadcrumb",
    "sidebar",
    "comments",
    "comment-",
    "disqus",
    "footer",
    "masthead",
    "site-header",
    "navbar",
    "menu",
    "teaser-list",
    "tags",
];

/// Class or id fragments of the story container: never removed by the marker test.
const CONTENT_MARKERS: &[&str] = &[
    "article-body",
    "articlebody",
    "story-body",
    "post-body",
    "entry-content",
    "main-content",
];

/// Headings that open a block of links to other stories.
const RELATED_HEADINGS: &[&str] = &[
    "related",
    "read more",
    "read also",
    "also read",
    "more from",
    "more on",
    "more stories",
    "more news",
    "see also",
    "you may also like",
    "you might also like",
    "recommended",
    "most read",
    "most popular",
    "popular now",
    "trending",
    "further reading",
    "top stories",
    "weitere artikel",
    "mehr zum thema",
    "lesen sie auch",
    "das könnte sie auch interessieren",
    "à lire aussi",
    "a lire aussi",
    "sur le même sujet",
    "lire aussi",
    "leer más",
    "noticias relacionadas",
    "te puede interesar",
    "leggi anche",
    "articoli correlati",
    "leia também",
    "читайте также",
    "похожие",
    "関連記事",
    "相关",
    "相關",
    "관련 기사",
];

/// Plain text of an HTML fragment (feed content): paragraphs kept as blank-line breaks,
/// whitespace collapsed, scripts and styles dropped. Plain text passes through unchanged
/// except for whitespace.
pub fn html_to_text(html: &str) -> String {
    if !html.contains('<') && !html.contains('&') {
        return tidy(html);
    }
    let doc = Document::fragment(html);
    doc.select("script, style, noscript, template, iframe")
        .remove();
    tidy(&doc.formatted_text())
}

/// The main story text of an article page at `url`.
pub fn extract_article(html: &str, url: &str) -> Result<Extracted, ExtractError> {
    let doc = Document::from(html);
    let page_title = doc
        .select("meta[property='og:title']")
        .attr("content")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .or_else(|| {
            let h1 = tidy(&doc.select("h1").first().text());
            (!h1.is_empty()).then_some(h1)
        });
    remove_boilerplate(&doc);
    let config = Config {
        text_mode: TextMode::Formatted,
        ..Config::default()
    };
    let cleaned = doc.html().to_string();
    let readable = Readability::new(cleaned, url_if_absolute(url), Some(config))
        .ok()
        .and_then(|mut r| r.parse().ok())
        .map(|article| tidy(&article.text_content))
        .filter(|text| text.chars().count() >= MIN_ARTICLE_CHARS);
    let text = match readable {
        Some(text) => text,
        None => fallback_text(&doc),
    };
    let chars = text.chars().count();
    if chars < MIN_ARTICLE_CHARS {
        return Err(ExtractError::TooShort {
            url: url.to_string(),
            chars,
        });
    }
    Ok(Extracted {
        title: page_title,
        text,
    })
}

fn url_if_absolute(url: &str) -> Option<&str> {
    url::Url::parse(url)
        .ok()
        .filter(|u| u.has_host())
        .map(|_| url)
}

/// Removes navigation, banners, share bars, comment sections and related-story blocks.
fn remove_boilerplate(doc: &Document) {
    doc.select(NEVER_CONTENT).remove();
    // Blocks marked as boilerplate by class or id (never the page or story containers).
    let marked: Vec<NodeRef> = doc
        .select("div, section, ul, ol, p, span, header, aside, li, table, dl")
        .nodes()
        .iter()
        .filter(|n| is_marked_boilerplate(n))
        .cloned()
        .collect();
    for node in marked {
        node.remove_from_parent();
    }
    // Blocks introduced by a "Related articles" style heading.
    let headings: Vec<NodeRef> = doc
        .select("h2, h3, h4, h5, h6, strong, b, p")
        .nodes()
        .iter()
        .filter(|h| is_related_heading(&h.text()))
        .cloned()
        .collect();
    for heading in headings {
        remove_related_block(&heading);
    }
}

fn is_marked_boilerplate(node: &NodeRef) -> bool {
    let name = node
        .node_name()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default();
    if matches!(name.as_str(), "html" | "body" | "main" | "article") {
        return false;
    }
    let marker = format!(
        "{} {}",
        node.class().map(|c| c.to_string()).unwrap_or_default(),
        node.id_attr().map(|c| c.to_string()).unwrap_or_default()
    )
    .to_ascii_lowercase();
    if marker.trim().is_empty() || CONTENT_MARKERS.iter().any(|m| marker.contains(m)) {
        return false;
    }
    if !BOILERPLATE_MARKERS.iter().any(|m| marker.contains(m)) {
        return false;
    }
    // A container that holds the story itself is not boilerplate, whatever its class says
    // (`content has-sidebar`): it wraps the article element, or several paragraphs of prose.
    let inside = dom_query::Selection::from(*node);
    inside
        .select("article, main, [itemprop=articleBody]")
        .is_empty()
        && prose_paragraphs(node) < 2
}

/// Paragraphs long enough to be story text rather than teasers or link labels.
fn prose_paragraphs(node: &NodeRef) -> usize {
    dom_query::Selection::from(*node)
        .select("p")
        .nodes()
        .iter()
        .filter(|p| p.text().chars().count() > 120)
        .count()
}

fn is_related_heading(text: &str) -> bool {
    let t = text
        .trim()
        .trim_end_matches([':', '…', '.'])
        .trim()
        .to_lowercase();
    !t.is_empty() && t.chars().count() <= 60 && RELATED_HEADINGS.iter().any(|h| t.starts_with(h))
}

/// Removes the block a related-stories heading opens: its own container when the heading leads
/// one (a `section` or `div` that is not the story itself), else the heading and the lists and
/// blocks after it up to the next heading.
fn remove_related_block(heading: &NodeRef) {
    let mut top = *heading;
    // Climb out of inline wrappers (`<p><strong>Related</strong></p>`).
    while let Some(parent) = top.parent() {
        let name = parent
            .node_name()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        if matches!(
            name.as_str(),
            "p" | "span" | "strong" | "b" | "em" | "header"
        ) && parent.text().trim() == top.text().trim()
        {
            top = parent;
        } else {
            break;
        }
    }
    if let Some(parent) = top.parent() {
        let name = parent
            .node_name()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        let leads = parent.first_element_child().is_some_and(|c| c.id == top.id);
        let container = matches!(name.as_str(), "section" | "div" | "aside" | "nav" | "ul");
        if leads && container && prose_paragraphs(&parent) <= 1 {
            parent.remove_from_parent();
            return;
        }
    }
    let mut next = top.next_element_sibling();
    top.remove_from_parent();
    while let Some(node) = next {
        let name = node
            .node_name()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        if matches!(name.as_str(), "h1" | "h2" | "h3" | "h4" | "h5" | "h6") {
            break;
        }
        let links = dom_query::Selection::from(node).select("a").length();
        let is_list = matches!(name.as_str(), "ul" | "ol" | "div" | "section" | "dl");
        if !(is_list || links > 0) {
            break;
        }
        next = node.next_element_sibling();
        node.remove_from_parent();
    }
}

/// Story text without readability: the `article`/`main` element (else the body), paragraphs and
/// headings only.
fn fallback_text(doc: &Document) -> String {
    for selector in ["[itemprop=articleBody]", "article", "main", "body"] {
        let root = doc.select(selector);
        if root.is_empty() {
            continue;
        }
        let text = tidy(&root.first().formatted_text());
        if text.chars().count() >= MIN_ARTICLE_CHARS || selector == "body" {
            return text;
        }
    }
    String::new()
}

/// Collapses runs of spaces within lines and of blank lines between paragraphs.
pub fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0usize;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_fragments_become_paragraphs() {
        let text = html_to_text(
            "<p>First <b>para</b>&amp; more.</p><script>x()</script><p>Second   one.</p>",
        );
        assert_eq!(text, "First para& more.\n\nSecond one.");
        assert_eq!(
            html_to_text("  plain   text\n\n\n\nnext "),
            "plain text\n\nnext"
        );
    }

    const PAGE: &str = r#"<!doctype html><html><head><title>Bakery | Town News</title>
<meta property="og:title" content="Bakery opens a second shop"></head><body>
<div id="cookie-banner"><p>We use cookies to improve your experience. Accept all cookies?</p></div>
<header class="site-header"><nav><a href="/">Home</a> <a href="/world">World</a></nav></header>
<main><article>
<h1>Bakery opens a second shop</h1>
<p>A family bakery known for its rye bread opened a second shop near the station on Monday, hiring six new staff for the early shift and extending its opening hours.</p>
<p>The owners said demand had grown steadily since the first shop opened ten years ago, and that the new oven can bake four hundred loaves a day.</p>
<section><h2>Related articles</h2><ul>
<li><a href="/a">Ransomware attack cripples hospital computer systems</a></li>
<li><a href="/b">Hackers breach ministry servers and steal data</a></li></ul></section>
<div class="share-bar"><a href="/share">Share on social media</a></div>
</article></main>
<footer>Copyright Town News</footer></body></html>"#;

    #[test]
    fn article_keeps_the_story_and_drops_related_blocks_and_banners() {
        let got = extract_article(PAGE, "https://news.example/bakery").unwrap();
        assert_eq!(got.title.as_deref(), Some("Bakery opens a second shop"));
        assert!(got.text.contains("rye bread"), "{}", got.text);
        assert!(got.text.contains("four hundred loaves"), "{}", got.text);
        for boilerplate in [
            "Ransomware",
            "Hackers",
            "cookies",
            "Copyright",
            "Share on",
            "World",
        ] {
            assert!(
                !got.text.contains(boilerplate),
                "{boilerplate} in {}",
                got.text
            );
        }
    }

    #[test]
    fn related_block_without_markers_after_the_story_is_removed() {
        let page = r#"<html><body><div class="content has-sidebar"><article>
<p>The city council approved a new budget for road repairs on Tuesday evening, after a long debate about potholes in the old town and the cost of resurfacing.</p>
<h3>Read more:</h3><ul><li><a href="/x">Cyberattack hits power grid</a></li></ul>
</article></div></body></html>"#;
        let got = extract_article(page, "https://news.example/budget").unwrap();
        assert!(got.text.contains("road repairs"), "{}", got.text);
        assert!(!got.text.contains("Cyberattack"), "{}", got.text);
    }

    #[test]
    fn story_containers_with_boilerplate_like_classes_are_kept() {
        let para = "The harbour authority said the new ferry route would run every hour from May, linking the island villages with the mainland station and cutting the journey by twenty minutes.";
        let page = format!(
            r#"<html><body><div class="layout with-sidebar"><div class="story"><h1>Ferry</h1><p>{para}</p><p>{para}</p></div></div>
<div class="sidebar"><p>Ransomware news</p></div></body></html>"#
        );
        let got = extract_article(&page, "https://news.example/ferry").unwrap();
        assert!(got.text.contains("ferry route"), "{}", got.text);
        assert!(!got.text.contains("Ransomware"), "{}", got.text);
    }

    #[test]
    fn empty_pages_are_an_error() {
        let err = extract_article(
            "<html><body><nav>Home</nav></body></html>",
            "https://x.example/a",
        )
        .unwrap_err();
        assert!(err.to_string().contains("`https://x.example/a`"), "{err}");
    }

    #[test]
    fn related_headings_are_recognised() {
        assert!(is_related_heading("Related articles"));
        assert!(is_related_heading("  Read more: "));
        assert!(is_related_heading("Lesen Sie auch"));
        assert!(!is_related_heading("Ransomware hits the city"));
    }
}
