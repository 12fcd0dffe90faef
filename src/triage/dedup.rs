//! De-duplication of feed items: canonical URLs (tracking parameters and fragments dropped),
//! identity keys per item, and grouping of near-duplicate stories by embedding similarity.

use crate::util::sha256_hex;

/// Query parameters that only track where a click came from; dropped from canonical URLs.
const TRACKING_PARAMS: &[&str] = &[
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "yclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_gl",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "oly_anon_id",
    "oly_enc_id",
    "vero_id",
    "wt_mc",
    "ocid",
    "cmpid",
];

/// Whether a query parameter name is a tracking parameter (`utm_*`, `fbclid`, `gclid`, ...).
pub fn is_tracking_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("utm_")
        || lower.starts_with("__twitter")
        || TRACKING_PARAMS.contains(&lower.as_str())
}

/// The canonical form of an article link: http(s) only, host lower-cased, default port, fragment
/// and tracking parameters removed (other parameters keep their order). `None` when `raw` is not
/// an absolute http(s) URL.
pub fn canonical_url(raw: &str) -> Option<String> {
    let mut url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    let pairs = url.query_pairs().count();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_tracking_param(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if url.query().is_some_and(|q| q.is_empty()) {
        url.set_query(None);
    } else if kept.len() < pairs {
        // Re-encode only when something was dropped, so untouched queries keep their spelling.
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    // `url` already lower-cases the host, drops default ports and normalises an empty path.
    Some(url.to_string())
}

/// Identity keys of an item: its GUID within its feed and its canonical link. An item is "seen"
/// when any of its keys is known. Items with neither get a key from their content.
pub fn item_keys(
    feed_key: &str,
    guid: Option<&str>,
    canonical: Option<&str>,
    title: &str,
    text: &str,
) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(g) = guid.map(str::trim).filter(|g| !g.is_empty()) {
        keys.push(format!("guid:{feed_key}\u{1f}{g}"));
    }
    if let Some(c) = canonical {
        keys.push(format!("url:{c}"));
    }
    if keys.is_empty() {
        let content = [title.as_bytes(), &[0u8], text.as_bytes()].concat();
        keys.push(format!("content:{feed_key}\u{1f}{}", sha256_hex(&content)));
    }
    keys
}

/// A short stable id for an item, from its first key.
pub fn short_id(key: &str) -> String {
    sha256_hex(key.as_bytes())[..16].to_string()
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// Groups near-duplicates. `vectors` must be in rank order (best first): each vector joins the
/// first group whose leader (its best-ranked member) has cosine at least `threshold` with it,
/// else it leads a new group. Comparing with leaders only keeps a chain of small changes from
/// merging different stories. Returns groups of indices, leaders first, in rank order.
pub fn group_near_duplicates(vectors: &[&[f32]], threshold: f32) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| cosine(vectors[g[0]], v) >= threshold)
        {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// The most similar of `known` vectors to `v` at or above `threshold`: `(index, similarity)`.
pub fn best_match<'a>(
    v: &[f32],
    known: impl IntoIterator<Item = &'a [f32]>,
    threshold: f32,
) -> Option<(usize, f32)> {
    known
        .into_iter()
        .enumerate()
        .map(|(i, k)| (i, cosine(v, k)))
        .filter(|(_, s)| *s >= threshold)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_urls_drop_tracking_fragments_and_case() {
        assert_eq!(
            canonical_url(
                "https://News.Example.COM:443/a/story?id=7&utm_source=rss&utm_medium=feed#comments"
            )
            .unwrap(),
            "https://news.example.com/a/story?id=7"
        );
        assert_eq!(
            canonical_url("http://example.com/x?fbclid=abc&gclid=1").unwrap(),
            "http://example.com/x"
        );
        assert_eq!(
            canonical_url("http://EXAMPLE.com").unwrap(),
            "http://example.com/"
        );
        assert_eq!(
            canonical_url(" https://example.com/p?b=2&a=1&UTM_Campaign=x ").unwrap(),
            "https://example.com/p?b=2&a=1"
        );
        assert_eq!(
            canonical_url("https://example.com/p?q=a+b").unwrap(),
            "https://example.com/p?q=a+b"
        );
        assert_eq!(canonical_url("ftp://example.com/file"), None);
        assert_eq!(canonical_url("/relative/path"), None);
        assert_eq!(canonical_url("mailto:a@example.com"), None);
    }

    #[test]
    fn item_keys_use_guid_and_link_else_content() {
        let keys = item_keys(
            "https://f/rss",
            Some("g-1"),
            Some("https://a/x"),
            "T",
            "body",
        );
        assert_eq!(
            keys,
            vec![
                "guid:https://f/rss\u{1f}g-1".to_string(),
                "url:https://a/x".to_string()
            ]
        );
        let keys = item_keys("f", Some("  "), None, "T", "body");
        assert_eq!(keys.len(), 1);
        assert!(keys[0].starts_with("content:f\u{1f}"));
        assert_eq!(keys, item_keys("f", None, None, "T", "body"));
        assert_ne!(keys, item_keys("f", None, None, "T", "other body"));
        assert_eq!(short_id(&keys[0]).len(), 16);
    }

    #[test]
    fn groups_near_duplicates_by_leader() {
        let a = [1.0, 0.0, 0.0];
        let a2 = [0.99, 0.1, 0.0];
        let b = [0.0, 1.0, 0.0];
        let a3 = [0.98, 0.0, 0.15];
        let vectors: Vec<&[f32]> = vec![&a, &b, &a2, &a3];
        assert_eq!(
            group_near_duplicates(&vectors, 0.95),
            vec![vec![0, 2, 3], vec![1]]
        );
        assert_eq!(
            group_near_duplicates(&vectors, 0.999),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
        // A chain of small steps does not pull a distant vector into the group.
        let c1 = [1.0, 0.0];
        let c2 = [0.96, 0.28];
        let c3 = [0.85, 0.53];
        let chain: Vec<&[f32]> = vec![&c1, &c2, &c3];
        assert_eq!(
            group_near_duplicates(&chain, 0.95),
            vec![vec![0, 1], vec![2]]
        );
    }

    #[test]
    fn cosine_and_best_match() {
        assert!((cosine(&[3.0, 4.0], &[6.0, 8.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        let known: Vec<&[f32]> = vec![&[0.0, 1.0], &[1.0, 0.1], &[1.0, 0.0]];
        assert_eq!(
            best_match(&[1.0, 0.0], known.clone(), 0.9).map(|m| m.0),
            Some(2)
        );
        assert_eq!(best_match(&[-1.0, 0.0], known, 0.9), None);
    }
}
