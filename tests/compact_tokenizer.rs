//! The compact Unigram tokenizer model (`spyglass_encoder::unigram`) against `tokenizers`
//! itself: the same ids and offsets for every article of the labelled data and for hostile text.

mod common;

use common::model_dir;

#[test]
fn compact_unigram_tokenizes_exactly_as_tokenizers_does() {
    let path = std::path::Path::new(model_dir()).join("tokenizer.json");
    let reference = tokenizers::Tokenizer::from_file(&path).unwrap();
    let ours = spyglass::encoder::unigram::load_tokenizer(&path).unwrap();
    assert!(matches!(
        ours.get_model(),
        spyglass::encoder::unigram::EncoderModel::Unigram(_)
    ));
    assert_eq!(
        ours.get_vocab_size(true),
        reference.get_vocab_size(true),
        "vocabulary size"
    );

    let mut texts: Vec<String> = Vec::new();
    for split in ["train", "dev", "test"] {
        let data = std::fs::read_to_string(format!("eval/data/{split}.jsonl")).unwrap();
        for line in data.lines().filter(|l| !l.trim().is_empty()) {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let title = record["title"].as_str().unwrap_or_default();
            let text = record["text"].as_str().unwrap_or_default();
            texts.push(format!("passage: {title}\n{text}"));
        }
    }
    assert!(texts.len() > 1000, "the labelled data: {}", texts.len());
    for hostile in [
        "",
        " ",
        "\u{0}\u{1}\u{7f}",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👩‍👩‍👧‍👦 🏳️‍🌈 e\u{301}\u{302}\u{303}",
        "ꙮꙮꙮ 𓀀𓀁𓀂 \u{200b}\u{200d}\u{feff}",
        "مرحبا بالعالم עברית हिन्दी ภาษาไทย ქართული Ελληνικά",
        "<unk> <s> </s> <mask> <pad> passage: query:",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "\u{10ffff}\u{e000}\u{fffd}",
    ] {
        texts.push(hostile.to_string());
    }
    for text in &texts {
        let a = reference.encode(text.as_str(), true).unwrap();
        let b = ours.encode(text.as_str(), true).unwrap();
        assert_eq!(a.get_ids(), b.get_ids(), "ids of {text:?}");
        assert_eq!(a.get_offsets(), b.get_offsets(), "offsets of {text:?}");
        assert_eq!(
            a.get_special_tokens_mask(),
            b.get_special_tokens_mask(),
            "special tokens of {text:?}"
        );
    }
}
