//! Decodes a fetched web page by its declared charset: a byte-order mark, then the HTTP
//! `Content-Type` charset, then a `<meta charset>` (or `http-equiv`) in the page's first 1024
//! bytes, else UTF-8. Malformed bytes become U+FFFD; decoding never fails.

use encoding_rs::{Encoding, UTF_8};

/// How far into a page a `<meta>` charset declaration is looked for (the HTML standard's
/// prescan length).
const PRESCAN_BYTES: usize = 1024;

/// The page's text, decoded as it declares.
pub fn decode_page(bytes: &[u8], content_type: &str) -> String {
    let encoding = Encoding::for_bom(bytes)
        .map(|(encoding, _)| encoding)
        .or_else(|| charset_param(content_type).and_then(|l| Encoding::for_label(l.as_bytes())))
        .or_else(|| meta_charset(&bytes[..bytes.len().min(PRESCAN_BYTES)]))
        .unwrap_or(UTF_8);
    // A page can declare UTF-16 in a meta tag only if it is ASCII-compatible enough to read the
    // tag; the standard treats such a declaration as UTF-8.
    let encoding = if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
        if Encoding::for_bom(bytes).is_some() {
            encoding
        } else {
            UTF_8
        }
    } else {
        encoding
    };
    let (text, _, _) = encoding.decode(bytes);
    text.into_owned()
}

/// The `charset` parameter of a `Content-Type` value.
fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// A charset named in the head of the page (`<meta charset=...>` or a `content` attribute's
/// `charset=`), as far as a byte-level scan can tell.
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let mut from = 0;
    while let Some(at) = find(&lower[from..], b"<meta") {
        let start = from + at;
        let end = find(&lower[start..], b">").map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(c) = find(tag, b"charset=") {
            let value: Vec<u8> = tag[c + 8..]
                .iter()
                .copied()
                .skip_while(|b| *b == b'"' || *b == b'\'' || b.is_ascii_whitespace())
                .take_while(|b| {
                    !(*b == b'"'
                        || *b == b'\''
                        || *b == b';'
                        || *b == b'/'
                        || b.is_ascii_whitespace())
                })
                .collect();
            if let Some(encoding) = Encoding::for_label(&value) {
                return Some(encoding);
            }
        }
        from = end;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_charset_decodes_shift_jis() {
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode("<p>情報漏洩の調査</p>");
        assert_eq!(
            decode_page(&bytes, "text/html; charset=Shift_JIS"),
            "<p>情報漏洩の調査</p>"
        );
    }

    #[test]
    fn a_meta_charset_decodes_latin1_and_windows_1252() {
        let page =
            "<html><head><meta charset=\"iso-8859-1\"></head><body>Café à Zürich</body></html>";
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(page);
        assert!(decode_page(&bytes, "text/html").contains("Café à Zürich"));
        let http_equiv = "<meta http-equiv='Content-Type' content='text/html; charset=windows-1252'><p>Straße</p>";
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(http_equiv);
        assert!(decode_page(&bytes, "").contains("Straße"));
    }

    #[test]
    fn a_byte_order_mark_wins_and_utf8_is_the_default() {
        let mut bytes = vec![0xEF, 0xBB, 0xBF];
        bytes.extend_from_slice("Ünïcödé".as_bytes());
        assert_eq!(
            decode_page(&bytes, "text/html; charset=iso-8859-1"),
            "Ünïcödé"
        );
        assert_eq!(decode_page("plain ü".as_bytes(), "text/html"), "plain ü");
        // Malformed bytes are replaced, not fatal.
        assert_eq!(decode_page(b"a\xFFb", "text/html"), "a\u{FFFD}b");
    }
}
