//! Language identification for articles that do not say their language.

/// Bytes of an article's opening that language identification reads.
const DETECT_BYTES: usize = 64 << 10;

/// The ISO 639-1 code of the text's language (ISO 639-3 where no two-letter code exists), or
/// `und` when the text gives too little to tell.
pub fn detect(text: &str) -> String {
    // The opening tells the language; reading more costs time in proportion to the article.
    let mut end = text.len().min(DETECT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    let Some(info) = whatlang::detect(text) else {
        return "und".into();
    };
    // Short texts in closely related languages are guesses: say so rather than mislabel.
    if !info.is_reliable() && text.chars().count() < 40 {
        return "und".into();
    }
    use whatlang::Lang::*;
    let code = match info.lang() {
        Eng => "en",
        Deu => "de",
        Jpn => "ja",
        Cmn => "zh",
        Fra => "fr",
        Spa => "es",
        Rus => "ru",
        Kor => "ko",
        Ita => "it",
        Por => "pt",
        Nld => "nl",
        Pol => "pl",
        Ukr => "uk",
        Tur => "tr",
        Ara => "ar",
        Heb => "he",
        Hin => "hi",
        Vie => "vi",
        Tha => "th",
        Ind => "id",
        Swe => "sv",
        Dan => "da",
        Fin => "fi",
        Ces => "cs",
        Ell => "el",
        Ron => "ro",
        Hun => "hu",
        Pes => "fa",
        other => return other.code().to_string(),
    };
    code.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_major_languages() {
        assert_eq!(detect("Der Verfassungsschutz warnt vor chinesischer Industriespionage in mittelständischen Firmen."), "de");
        assert_eq!(detect("米商務省は、中国系クラウド事業者が米国の安全保障上のリスクとなるかどうか調査を開始した。"), "ja");
        assert_eq!(
            detect("两名男子利用爬虫软件非法获取电商平台用户数据约12亿条，被判处有期徒刑。"),
            "zh"
        );
        assert_eq!(
            detect("Российские банки переходят с серверов IBM на отечественное оборудование."),
            "ru"
        );
        assert_eq!(detect("ok"), "und");
    }
}
