//! HTML escaping, one function for every page spyglass writes (the eval report and the triage
//! digest), so text and attribute values are escaped the same way everywhere.

/// Escapes `&`, `<`, `>`, `"` and `'`: safe in element text and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_character_is_escaped_once() {
        assert_eq!(
            escape(r#"<a href='x' title="y">&amp;</a>"#),
            "&lt;a href=&#39;x&#39; title=&quot;y&quot;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain 中文"), "plain 中文");
    }
}
