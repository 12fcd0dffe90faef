//! A compact Unigram (SentencePiece) tokenizer model with the `tokenizers` crate's results.
//!
//! `tokenizers` keeps a Unigram vocabulary in a trie with a hash map in every node: for the
//! 250k-piece XLM-R vocabulary of the multilingual E5 models that is about 270 MB, more than the
//! encoder's dense weights. This model keeps the same vocabulary in flat arrays (about 15 MB) and
//! runs the same Viterbi search (`Unigram::encode_optimized`, after SentencePiece), so the
//! pieces, ids and offsets are identical; `tests` checks that against `tokenizers` itself.
//! Other model types (WordPiece, BPE) load as `tokenizers` builds them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokenizers::models::unigram::UnigramTrainer;
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::{
    DecoderWrapper, Model, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Token,
    TokenizerImpl,
};

/// The tokenizer spyglass loads from `tokenizer.json`.
pub type EncoderTokenizer = TokenizerImpl<
    EncoderModel,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Reads `tokenizer.json` with the compact model for Unigram vocabularies.
pub fn load_tokenizer(path: &Path) -> Result<EncoderTokenizer, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| e.to_string())
}

/// A tokenizer model: the compact Unigram, or whatever else `tokenizers` reads.
pub enum EncoderModel {
    Unigram(CompactUnigram),
    Other(ModelWrapper),
}

/// Penalty SentencePiece gives an unknown character below the lowest piece score.
const UNK_PENALTY: f64 = 10.0;
const NO_PIECE: u32 = u32::MAX;

/// A Unigram vocabulary in flat arrays: the pieces' text, scores and a byte trie for the
/// common-prefix search of the Viterbi pass.
pub struct CompactUnigram {
    /// All pieces, concatenated; piece `i` is `text[starts[i]..starts[i + 1]]`.
    text: String,
    starts: Vec<u32>,
    scores: Vec<f64>,
    unk_id: Option<u32>,
    byte_fallback: bool,
    min_score: f64,
    trie: ByteTrie,
}

/// A byte trie in flat arrays. Node `n`'s children are the edges
/// `edge_start[n]..edge_start[n] + edge_count[n]`, sorted by label; `piece[n]` is the id of the
/// piece that ends at `n` (`NO_PIECE` if none).
struct ByteTrie {
    edge_start: Vec<u32>,
    edge_count: Vec<u16>,
    piece: Vec<u32>,
    labels: Vec<u8>,
    targets: Vec<u32>,
}

impl ByteTrie {
    /// Builds the trie of `entries` (bytes, id), sorted by bytes with no repeats.
    fn build(entries: &[(&[u8], u32)]) -> Self {
        let mut trie = ByteTrie {
            edge_start: Vec::new(),
            edge_count: Vec::new(),
            piece: Vec::new(),
            labels: Vec::new(),
            targets: Vec::new(),
        };
        trie.node(entries, 0);
        trie
    }

    /// Adds the node for `entries` (all sharing their first `depth` bytes) and its subtree.
    fn node(&mut self, mut entries: &[(&[u8], u32)], depth: usize) -> u32 {
        let index = self.piece.len() as u32;
        self.piece.push(NO_PIECE);
        self.edge_start.push(0);
        self.edge_count.push(0);
        if let Some(&(bytes, id)) = entries.first() {
            if bytes.len() == depth {
                self.piece[index as usize] = id;
                entries = &entries[1..];
            }
        }
        let mut groups: Vec<(u8, usize, usize)> = Vec::new();
        let mut from = 0;
        while from < entries.len() {
            let label = entries[from].0[depth];
            let to = from + entries[from..].partition_point(|(b, _)| b[depth] == label);
            groups.push((label, from, to));
            from = to;
        }
        let first_edge = self.labels.len();
        self.edge_start[index as usize] = first_edge as u32;
        self.edge_count[index as usize] = groups.len() as u16;
        for &(label, _, _) in &groups {
            self.labels.push(label);
            self.targets.push(0);
        }
        for (k, &(_, from, to)) in groups.iter().enumerate() {
            let child = self.node(&entries[from..to], depth + 1);
            self.targets[first_edge + k] = child;
        }
        index
    }

    fn child(&self, node: u32, label: u8) -> Option<u32> {
        let start = self.edge_start[node as usize] as usize;
        let end = start + self.edge_count[node as usize] as usize;
        let labels = &self.labels[start..end];
        labels
            .binary_search(&label)
            .ok()
            .map(|k| self.targets[start + k])
    }

    /// The id of the piece spelled exactly by `bytes`.
    fn get(&self, bytes: &[u8]) -> Option<u32> {
        let mut node = 0;
        for &b in bytes {
            node = self.child(node, b)?;
        }
        Some(self.piece[node as usize]).filter(|&p| p != NO_PIECE)
    }
}

#[derive(Deserialize)]
struct UnigramFile {
    #[serde(default)]
    unk_id: Option<usize>,
    vocab: Vec<(String, f64)>,
    #[serde(default)]
    byte_fallback: bool,
}

impl CompactUnigram {
    /// Builds the model as `tokenizers::models::unigram::Unigram::from` would: a piece listed
    /// twice keeps its last id.
    pub fn new(
        vocab: Vec<(String, f64)>,
        unk_id: Option<usize>,
        byte_fallback: bool,
    ) -> Result<Self, String> {
        if let Some(unk) = unk_id {
            if vocab.is_empty() {
                return Err("the Unigram vocabulary is empty but needs at least <unk>".into());
            }
            if unk >= vocab.len() {
                return Err(format!(
                    "the Unigram unk_id {unk} is outside the vocabulary of {}",
                    vocab.len()
                ));
            }
        }
        if vocab.len() >= NO_PIECE as usize {
            return Err("the Unigram vocabulary is too large".into());
        }
        let mut text = String::with_capacity(vocab.iter().map(|(p, _)| p.len()).sum());
        let mut starts = Vec::with_capacity(vocab.len() + 1);
        let mut scores = Vec::with_capacity(vocab.len());
        let mut min_score = f64::INFINITY;
        for (piece, score) in &vocab {
            starts.push(text.len() as u32);
            text.push_str(piece);
            scores.push(*score);
            min_score = min_score.min(*score);
        }
        starts.push(text.len() as u32);
        drop(vocab);
        let mut model = CompactUnigram {
            text,
            starts,
            scores,
            unk_id: unk_id.map(|u| u as u32),
            byte_fallback,
            min_score,
            trie: ByteTrie {
                edge_start: vec![],
                edge_count: vec![],
                piece: vec![],
                labels: vec![],
                targets: vec![],
            },
        };
        let mut entries: Vec<(&[u8], u32)> = (0..model.scores.len() as u32)
            .map(|id| (model.piece(id).as_bytes(), id))
            .collect();
        // Stable sort keeps the ids of a repeated piece in order; the last one wins.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut unique: Vec<(&[u8], u32)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match unique.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => unique.push(entry),
            }
        }
        let trie = ByteTrie::build(&unique);
        drop(unique);
        model.trie = trie;
        Ok(model)
    }

    fn piece(&self, id: u32) -> &str {
        &self.text[self.starts[id as usize] as usize..self.starts[id as usize + 1] as usize]
    }

    /// The best segmentation of `sentence` into pieces (`Unigram::encode_optimized`): byte ranges
    /// with the id of each, unknown characters fused into one `unk` range.
    fn segment(&self, sentence: &str) -> tokenizers::Result<Vec<(usize, usize)>> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f64,
            starts_at: Option<usize>,
        }
        let size = sentence.len();
        let bytes = sentence.as_bytes();
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![
            Best {
                id: 0,
                score: 0.0,
                starts_at: None,
            };
            size + 1
        ];
        let mut starts_at = 0;
        while starts_at < size {
            let score_here = best[starts_at].score;
            let char_len = sentence[starts_at..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
            let mut has_single_char = false;
            let mut node = 0u32;
            for (offset, &b) in bytes[starts_at..].iter().enumerate() {
                let Some(next) = self.trie.child(node, b) else {
                    break;
                };
                node = next;
                let id = self.trie.piece[node as usize];
                if id == NO_PIECE {
                    continue;
                }
                let end = starts_at + offset + 1;
                let candidate = self.scores[id as usize] + score_here;
                let target = &mut best[end];
                if target.starts_at.is_none() || candidate > target.score {
                    *target = Best {
                        id,
                        score: candidate,
                        starts_at: Some(starts_at),
                    };
                }
                if end - starts_at == char_len {
                    has_single_char = true;
                }
            }
            if !has_single_char {
                let unk = self.unk_id.ok_or_else(|| {
                    Box::<dyn std::error::Error + Send + Sync>::from(
                        "Encountered an unknown token but `unk_id` is missing",
                    )
                })?;
                let candidate = unk_score + score_here;
                let target = &mut best[starts_at + char_len];
                if target.starts_at.is_none() || candidate > target.score {
                    *target = Best {
                        id: unk,
                        score: candidate,
                        starts_at: Some(starts_at),
                    };
                }
            }
            starts_at += char_len;
        }
        // Back from the end; runs of unknown pieces fuse into one (`fuse_unk`).
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut unk_run_end: Option<usize> = None;
        let mut end = size;
        while end > 0 {
            let node = best[end];
            let start = node
                .starts_at
                .expect("every character boundary is reached by a piece or <unk>");
            if self.unk_id == Some(node.id) {
                unk_run_end.get_or_insert(end);
            } else {
                if let Some(run_end) = unk_run_end.take() {
                    ranges.push((end, run_end));
                }
                ranges.push((start, end));
            }
            end = start;
        }
        if let Some(run_end) = unk_run_end {
            ranges.push((0, run_end));
        }
        ranges.reverse();
        Ok(ranges)
    }
}

impl Model for CompactUnigram {
    type Trainer = UnigramTrainer;

    fn tokenize(&self, sentence: &str) -> tokenizers::Result<Vec<Token>> {
        if sentence.is_empty() {
            return Ok(Vec::new());
        }
        let mut tokens = Vec::new();
        for (start, end) in self.segment(sentence)? {
            let piece = &sentence[start..end];
            let id = match self.trie.get(piece.as_bytes()) {
                Some(id) => id,
                None => {
                    if self.byte_fallback {
                        let byte_ids: Option<Vec<(u32, String)>> = piece
                            .bytes()
                            .map(|byte| {
                                let name = format!("<0x{byte:02X}>");
                                self.trie.get(name.as_bytes()).map(|id| (id, name))
                            })
                            .collect();
                        if let Some(byte_ids) = byte_ids {
                            for (id, name) in byte_ids {
                                tokens.push(Token::new(id, name, (start, end)));
                            }
                            continue;
                        }
                    }
                    self.unk_id.ok_or_else(|| {
                        Box::<dyn std::error::Error + Send + Sync>::from(
                            "Encountered an unknown token but `unk_id` is missing",
                        )
                    })?
                }
            };
            tokens.push(Token::new(id, piece.to_string(), (start, end)));
        }
        Ok(tokens)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.trie.get(token.as_bytes())
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.scores.len()).then(|| self.piece(id).to_string())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        (0..self.scores.len() as u32)
            .filter_map(|id| {
                let piece = self.piece(id);
                // A repeated piece maps to its last id, as in `tokenizers`.
                (self.trie.get(piece.as_bytes()) == Some(id)).then(|| (piece.to_string(), id))
            })
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.scores.len()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        Err(
            "spyglass's compact Unigram model is read-only; save the original tokenizer.json"
                .into(),
        )
    }

    fn get_trainer(&self) -> UnigramTrainer {
        UnigramTrainer::default()
    }
}

impl Model for EncoderModel {
    type Trainer = TrainerWrapper;

    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<Token>> {
        match self {
            Self::Unigram(m) => m.tokenize(sequence),
            Self::Other(m) => m.tokenize(sequence),
        }
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Self::Unigram(m) => m.token_to_id(token),
            Self::Other(m) => m.token_to_id(token),
        }
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        match self {
            Self::Unigram(m) => m.id_to_token(id),
            Self::Other(m) => m.id_to_token(id),
        }
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        match self {
            Self::Unigram(m) => m.get_vocab(),
            Self::Other(m) => m.get_vocab(),
        }
    }

    fn get_vocab_size(&self) -> usize {
        match self {
            Self::Unigram(m) => m.get_vocab_size(),
            Self::Other(m) => m.get_vocab_size(),
        }
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        match self {
            Self::Unigram(m) => m.save(folder, prefix),
            Self::Other(m) => m.save(folder, prefix),
        }
    }

    fn get_trainer(&self) -> TrainerWrapper {
        match self {
            Self::Unigram(m) => TrainerWrapper::UnigramTrainer(m.get_trainer()),
            Self::Other(m) => m.get_trainer(),
        }
    }
}

impl<'de> Deserialize<'de> for EncoderModel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // The model's JSON text, kept raw so it is parsed once, by the model that owns it.
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        #[derive(Deserialize)]
        struct Kind {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let kind: Kind = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        if kind.kind.as_deref() == Some("Unigram") {
            let file: UnigramFile = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
            drop(raw);
            CompactUnigram::new(file.vocab, file.unk_id, file.byte_fallback)
                .map(Self::Unigram)
                .map_err(D::Error::custom)
        } else {
            serde_json::from_str(raw.get())
                .map(Self::Other)
                .map_err(D::Error::custom)
        }
    }
}

impl Serialize for EncoderModel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Other(m) => m.serialize(serializer),
            Self::Unigram(_) => Err(serde::ser::Error::custom(
                "spyglass's compact Unigram model is read-only; save the original tokenizer.json",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(pieces: &[(&str, f64)], unk: Option<usize>) -> CompactUnigram {
        CompactUnigram::new(
            pieces.iter().map(|(p, s)| (p.to_string(), *s)).collect(),
            unk,
            false,
        )
        .unwrap()
    }

    fn reference(
        pieces: &[(&str, f64)],
        unk: Option<usize>,
    ) -> tokenizers::models::unigram::Unigram {
        tokenizers::models::unigram::Unigram::from(
            pieces.iter().map(|(p, s)| (p.to_string(), *s)).collect(),
            unk,
            false,
        )
        .unwrap()
    }

    fn same(pieces: &[(&str, f64)], unk: Option<usize>, inputs: &[&str]) {
        let ours = model(pieces, unk);
        let theirs = reference(pieces, unk);
        for input in inputs {
            let a: Vec<(u32, String, (usize, usize))> = ours
                .tokenize(input)
                .unwrap()
                .into_iter()
                .map(|t| (t.id, t.value, t.offsets))
                .collect();
            let b: Vec<(u32, String, (usize, usize))> = theirs
                .tokenize(input)
                .unwrap()
                .into_iter()
                .map(|t| (t.id, t.value, t.offsets))
                .collect();
            assert_eq!(a, b, "input {input:?}");
        }
    }

    #[test]
    fn segments_as_tokenizers_does_with_unknowns_fused_and_repeats_last() {
        let pieces = [
            ("<unk>", 0.0),
            ("a", -1.0),
            ("ab", -1.5),
            ("abc", -4.0),
            ("b", -1.2),
            ("c", -1.1),
            ("bc", -1.9),
            ("é", -2.0),
            ("日本", -2.5),
            ("日", -3.0),
            ("a", -0.5), // repeated: the last id wins
        ];
        same(
            &pieces,
            Some(0),
            &[
                "abc",
                "abcabc",
                "xyz",
                "axbyc",
                "éa日本日x本",
                "",
                "ab€€c",
                "日本語",
            ],
        );
        let ours = model(&pieces, Some(0));
        assert_eq!(ours.token_to_id("a"), Some(10));
        assert_eq!(ours.token_to_id("abcd"), None);
        assert_eq!(ours.id_to_token(2).as_deref(), Some("ab"));
        assert_eq!(ours.id_to_token(11), None);
        assert_eq!(ours.get_vocab().len(), 10);
    }

    #[test]
    fn an_unknown_character_without_unk_is_an_error() {
        let ours = model(&[("a", -1.0)], None);
        assert!(ours.tokenize("ab").is_err());
        assert_eq!(ours.tokenize("aa").unwrap().len(), 2);
    }
}
