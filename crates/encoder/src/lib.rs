//! The article encoder: resolves, loads and runs a multilingual transformer, turning articles into
//! per-window and per-article embeddings.

pub mod bert;
pub mod cpu;
pub mod info;
pub mod manifest;
pub mod resolve;
pub mod unigram;
pub mod window;

// The CPU kernels live in `cpu/`, one file per instruction-set family; these are the modules
// benchmarks, `spyglass info` and the kernel tests name directly.
pub use cpu::{bf16, isa, quant, sgemm};

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;
use unigram::EncoderTokenizer;

pub use bert::{Architecture, BertEncoder, Config};
pub use cpu::{CpuEncoder, Precision, WeightStore};
pub use manifest::{EncoderSettings, Pooling};
pub use resolve::{EncoderFiles, EncoderSource, ResolveError};
pub use window::{WindowConfig, WindowError};

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("cannot read encoder config `{path}`: {reason}")]
    Config { path: String, reason: String },
    #[error("cannot load tokenizer `{path}`: {reason}")]
    Tokenizer { path: String, reason: String },
    #[error("cannot load encoder weights {paths}: {source}; the files may be incomplete (re-download, or check the folder)")]
    Weights {
        paths: String,
        source: candle_core::Error,
    },
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    #[error("encoder forward pass failed: {0}")]
    Forward(#[from] candle_core::Error),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("`--precision {0}` runs on the CPU only; drop it to use the GPU in f32")]
    CpuOnlyPrecision(&'static str),
    #[error(transparent)]
    Isa(#[from] isa::UnknownIsa),
    #[error("`--precision bf16` needs AVX-512 BF16: {0}, or use `f32` or `int8`")]
    Bf16Unavailable(String),
    #[error("the encoder produced NaN or infinite values, so its weights are damaged (a tensor holds NaN or infinity); re-download the encoder or pass another copy with `--encoder`")]
    NonFinite,
}

/// One article as the encoder sees it. The title, when present, is put before the text on its own
/// line (`title + "\n" + text`), the way sentence-transformers users commonly join them.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    pub title: Option<&'a str>,
    pub text: &'a str,
}

/// A window's place in the article: character offsets into the record's `text` field
/// (a window over the title alone has `start == end == 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// The encoder input for one window: its token ids and where it lies in the article.
#[derive(Debug, Clone)]
pub struct WindowInput {
    pub ids: Vec<u32>,
    pub span: Span,
}

/// An article tokenized and cut into windows, ready for the encoder.
#[derive(Debug, Clone)]
pub struct TokenizedArticle {
    pub windows: Vec<WindowInput>,
    /// Content tokens in the article (before windowing, prefix and special tokens excluded); with
    /// a window limit, a long article is tokenized only as far as the kept windows need, and
    /// this counts those tokens plus one.
    pub content_tokens: usize,
    /// Whether `max_windows` dropped the end of the article.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowEmbedding {
    #[serde(flatten)]
    pub span: Span,
    /// Encoder input length of this window (special and prefix tokens included).
    pub tokens: usize,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArticleEmbedding {
    /// Mean of the window embeddings, L2-normalised.
    pub embedding: Vec<f32>,
    pub windows: Vec<WindowEmbedding>,
    pub truncated: bool,
}

/// A loaded encoder: model, tokenizer and the settings it embeds with.
pub struct Encoder {
    model: Backend,
    precision: Precision,
    tokenizer: ArticleTokenizer,
    config: Config,
    files: EncoderFiles,
}

/// Which implementation runs the transformer.
enum Backend {
    /// The fused CPU forward pass (`cpu.rs`).
    Cpu(Box<CpuEncoder>),
    /// candle tensor operations: on a GPU, or on the CPU as the portable reference.
    Candle(Box<BertEncoder>),
}

/// Turns articles into encoder windows: the tokenizer plus prefix and window settings. Loads
/// without the weights, so data tools can count tokens cheaply.
pub struct ArticleTokenizer {
    tokenizer: EncoderTokenizer,
    settings: EncoderSettings,
    window: WindowConfig,
    /// Prefix tokens (without special tokens) and the ids of the special tokens around inputs.
    prefix_ids: Vec<u32>,
    cls_id: u32,
    sep_id: u32,
}

/// How `Encoder::load` should configure windows; `None` fields take the model's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowOverrides {
    pub max_tokens: Option<usize>,
    pub overlap: Option<usize>,
    pub max_windows: Option<usize>,
}

/// Default overlap between consecutive windows, in content tokens.
pub const DEFAULT_OVERLAP: usize = 64;
/// Default cap on windows per article (about 16k tokens for 512-token models).
pub const DEFAULT_MAX_WINDOWS: usize = 32;

impl ArticleTokenizer {
    /// Loads the tokenizer of resolved encoder files; `max_input_tokens` is the model's limit.
    pub fn load(
        files: &EncoderFiles,
        windows: WindowOverrides,
        max_input_tokens: usize,
    ) -> Result<Self, EncoderError> {
        let mut tokenizer = unigram::load_tokenizer(&files.tokenizer).map_err(|reason| {
            EncoderError::Tokenizer {
                path: files.tokenizer.display().to_string(),
                reason,
            }
        })?;
        // Windowing replaces the tokenizer's own truncation; padding is done per batch.
        tokenizer
            .with_truncation(None)
            .map_err(|e| EncoderError::Tokenize(e.to_string()))?;
        tokenizer.with_padding(None);
        let settings = EncoderSettings::for_encoder(files)?;
        let (prefix_ids, cls_id, sep_id) = special_ids(&tokenizer, &settings.prefix)?;
        let window = WindowConfig {
            max_tokens: windows
                .max_tokens
                .unwrap_or(max_input_tokens)
                .min(max_input_tokens),
            overlap: windows.overlap.unwrap_or(DEFAULT_OVERLAP),
            max_windows: windows.max_windows.unwrap_or(DEFAULT_MAX_WINDOWS),
        };
        window.budget(prefix_ids.len() + 2)?;
        Ok(Self {
            tokenizer,
            settings,
            window,
            prefix_ids,
            cls_id,
            sep_id,
        })
    }

    /// Loads the tokenizer and reads the model's input limit from `config.json`.
    pub fn for_files(files: &EncoderFiles, windows: WindowOverrides) -> Result<Self, EncoderError> {
        let config = read_config(files)?;
        Self::load(files, windows, config.max_input_tokens())
    }

    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    pub fn window_config(&self) -> WindowConfig {
        self.window
    }

    /// Encoder input tokens of the whole article as one sequence, before windowing (special and
    /// prefix tokens included): what a truncating tokenizer would see.
    pub fn count_tokens(&self, doc: Document<'_>) -> Result<usize, EncoderError> {
        Ok(self.tokenize(doc)?.content_tokens + self.prefix_ids.len() + 2)
    }
    /// Token ids of `prefix + text` exactly as Python `transformers` gives them for one input
    /// truncated to the model's length (the reference check uses this).
    pub fn reference_ids(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        let article = self.tokenize(Document { title: None, text })?;
        Ok(article.windows[0].ids.clone())
    }

    /// Tokenizes an article and cuts it into windows that each fit the encoder.
    pub fn tokenize(&self, doc: Document<'_>) -> Result<TokenizedArticle, EncoderError> {
        let title = doc.title.filter(|t| !t.trim().is_empty());
        let text_offset = title.map_or(0, |t| t.len() + 1);
        // The input is `title + "\n" + text`; `opening(len)` is its first `len` bytes, cut before
        // whitespace, and whether that is all of it. Only that much is ever copied.
        let opening = |len: usize| -> (std::borrow::Cow<'_, str>, bool) {
            let cut = cut_before(doc.text, len.saturating_sub(text_offset));
            let whole = cut == doc.text.len();
            match title {
                Some(title) => (format!("{title}\n{}", &doc.text[..cut]).into(), whole),
                None => (doc.text[..cut].into(), whole),
            }
        };
        let total_len = text_offset + doc.text.len();
        let reserved = self.prefix_ids.len() + 2;
        let budget = self.window.budget(reserved)?;
        // With a window limit only the kept windows' tokens matter: a long article is tokenized
        // in growing slices of its opening, cut at whitespace, until they are covered, so memory
        // follows the limit and not the article's length.
        let needed = (self.window.max_windows > 0)
            .then(|| budget + (self.window.max_windows - 1) * (budget - self.window.overlap) + 1);
        let mut slice_len = match needed {
            Some(needed) => total_len.min((needed * 32).max(SLICE_MIN_BYTES)),
            None => total_len,
        };
        let content = loop {
            let (body, whole) = opening(slice_len);
            let content = self.content_tokens(&body)?;
            drop(body);
            match needed {
                // Tokens next to a cut may differ from the whole text's; a margin keeps them
                // out of the windows.
                Some(needed) if !whole => {
                    if content.len() >= needed + SLICE_MARGIN_TOKENS {
                        let mut content = content;
                        content.truncate(needed);
                        break content;
                    }
                    slice_len = slice_len.saturating_mul(2);
                }
                _ => break content,
            }
        };
        let (ranges, truncated) = self.window.split(content.len(), budget);
        let to_text_chars = |byte: usize| -> usize {
            let byte = byte.saturating_sub(text_offset).min(doc.text.len());
            char_index(doc.text, byte)
        };
        let windows = ranges
            .iter()
            .map(|range| {
                let mut window_ids = Vec::with_capacity(reserved + range.end - range.start);
                window_ids.push(self.cls_id);
                window_ids.extend_from_slice(&self.prefix_ids);
                window_ids.extend(content[range.start..range.end].iter().map(|c| c.0));
                window_ids.push(self.sep_id);
                let span = if range.end > range.start {
                    Span {
                        start: to_text_chars(content[range.start].1),
                        end: to_text_chars(content[range.end - 1].2),
                    }
                } else {
                    Span { start: 0, end: 0 }
                };
                WindowInput {
                    ids: window_ids,
                    span,
                }
            })
            .collect();
        Ok(TokenizedArticle {
            windows,
            content_tokens: content.len(),
            truncated,
        })
    }

    /// Content tokens of `prefix + body` (special and prefix tokens left out), with byte offsets
    /// into `body`, exactly as Python `transformers` tokenizes the stripped input.
    fn content_tokens(&self, body: &str) -> Result<Vec<(u32, usize, usize)>, EncoderError> {
        let prefix = &self.settings.prefix;
        let input = format!("{prefix}{body}");
        // Python callers strip the joined input; token ids only match if we do the same.
        let lead = input.len() - input.trim_start().len();
        let trimmed = input.trim();
        let encoding = self
            .tokenizer
            .encode(trimmed, true)
            .map_err(|e| EncoderError::Tokenize(e.to_string()))?;
        let ids = encoding.get_ids();
        let special = encoding.get_special_tokens_mask();
        let offsets = encoding.get_offsets();
        let prefix_end = prefix.trim_end().len();
        let mut content: Vec<(u32, usize, usize)> = Vec::with_capacity(ids.len());
        for i in 0..ids.len() {
            if special[i] == 1 {
                continue;
            }
            let (start, end) = offsets[i];
            let (start, end) = (start + lead, end + lead);
            if end <= prefix_end && !prefix.is_empty() {
                continue;
            }
            content.push((
                ids[i],
                start.saturating_sub(prefix.len()),
                end.saturating_sub(prefix.len()),
            ));
        }
        Ok(content)
    }
}

/// The first slice of a long article tokenized when only some windows are kept.
const SLICE_MIN_BYTES: usize = 256 << 10;
/// Tokens beyond the kept windows a slice must hold before it is trusted.
const SLICE_MARGIN_TOKENS: usize = 64;

/// The end of `text`'s first `len` bytes, moved back to just after a whitespace character when
/// there is one in the last quarter (else to a character boundary); all of `text` when shorter.
fn cut_before(text: &str, len: usize) -> usize {
    if len >= text.len() {
        return text.len();
    }
    let mut end = len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind(char::is_whitespace) {
        Some(at) if at >= end - end / 4 => at,
        _ => end,
    }
}

impl Encoder {
    /// Loads the encoder for `device`: on the CPU the fused forward pass in `precision`, on a
    /// GPU candle's tensor operations (f32 only).
    pub fn load(
        files: EncoderFiles,
        windows: WindowOverrides,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, EncoderError> {
        let isa = isa::check_override()?;
        Self::load_for_isa(files, windows, device, precision, isa)
    }

    /// [`Encoder::load`] with the CPU kernels of `isa` (one this CPU supports) rather than the
    /// level in use: for tests and benchmarks that compare levels in one process.
    pub fn load_for_isa(
        files: EncoderFiles,
        windows: WindowOverrides,
        device: &Device,
        precision: Precision,
        isa: isa::Isa,
    ) -> Result<Self, EncoderError> {
        if device.is_cpu() && precision == Precision::Bf16 && !bf16::available_at(isa) {
            return Err(EncoderError::Bf16Unavailable(bf16::unavailable_reason(isa)));
        }
        let config = read_config(&files)?;
        let tokenizer = ArticleTokenizer::load(&files, windows, config.max_input_tokens())?;
        let weights_error = |source| EncoderError::Weights {
            paths: describe_paths(&files.weights),
            source,
        };
        let model = if device.is_cpu() {
            // SAFETY: the weight files are memory-mapped read-only; spyglass never writes to them.
            let store =
                unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files.weights) }
                    .map_err(weights_error)?;
            Backend::Cpu(Box::new(
                CpuEncoder::load_for(WeightStore::Mapped(store), &config, precision, isa)
                    .map_err(weights_error)?,
            ))
        } else {
            if precision != Precision::F32 {
                return Err(EncoderError::CpuOnlyPrecision(precision.as_str()));
            }
            Backend::Candle(Box::new(load_candle_model(&files, &config, device)?))
        };
        Ok(Self {
            model,
            precision,
            tokenizer,
            config,
            files,
        })
    }

    /// Loads the encoder on candle's tensor operations on `device` (f32), the CPU included:
    /// the portable reference the fused CPU path is checked against, and the GPU path.
    pub fn load_candle(
        files: EncoderFiles,
        windows: WindowOverrides,
        device: &Device,
    ) -> Result<Self, EncoderError> {
        let config = read_config(&files)?;
        let tokenizer = ArticleTokenizer::load(&files, windows, config.max_input_tokens())?;
        let model = load_candle_model(&files, &config, device)?;
        Ok(Self {
            model: Backend::Candle(Box::new(model)),
            precision: Precision::F32,
            tokenizer,
            config,
            files,
        })
    }

    /// The numeric format the encoder runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The CPU kernels the encoder runs (`None` on a GPU).
    pub fn cpu_kernels(&self) -> Option<cpu::Kernels> {
        match &self.model {
            Backend::Cpu(cpu) => Some(cpu.kernels()),
            Backend::Candle(_) => None,
        }
    }

    /// What computes the embeddings, as a short identifier: `cpu-f32-avx512`,
    /// `cpu-int8-avx2`, `candle-f32` (GPU, or the CPU reference). Vectors from different paths differ in their last
    /// bits, so the embedding cache keeps them apart.
    pub fn compute_path(&self) -> String {
        match self.cpu_kernels() {
            Some(kernels) => format!("cpu-{}", kernels.compute_path()),
            None => format!("candle-{}", self.precision.as_str()),
        }
    }

    pub fn tokenizer(&self) -> &ArticleTokenizer {
        &self.tokenizer
    }

    pub fn tokenize(&self, doc: Document<'_>) -> Result<TokenizedArticle, EncoderError> {
        self.tokenizer.tokenize(doc)
    }

    pub fn reference_ids(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        self.tokenizer.reference_ids(text)
    }

    pub fn files(&self) -> &EncoderFiles {
        &self.files
    }
    pub fn settings(&self) -> &EncoderSettings {
        &self.tokenizer.settings
    }
    pub fn window_config(&self) -> WindowConfig {
        self.tokenizer.window
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// Embeds many windows at once: sorted by length into batches of at most `batch_size` (on
    /// the GPU also cut where padding would exceed 20%); results come back in input order,
    /// L2-normalised.
    pub fn embed_windows(
        &self,
        windows: &[&[u32]],
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>, EncoderError> {
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(windows[i].len()));
        let mut out = vec![Vec::new(); windows.len()];
        let batches: Vec<&[usize]> = match self.model {
            // Packed sequences cost nothing in padding: only the window count bounds a batch.
            Backend::Cpu(_) => order.chunks(batch_size.max(1)).collect(),
            Backend::Candle(_) => {
                let lengths: Vec<usize> = order.iter().map(|&i| windows[i].len()).collect();
                let ends = length_batches(&lengths, batch_size);
                std::iter::once(0)
                    .chain(ends.iter().copied())
                    .zip(ends.iter().copied())
                    .map(|(start, end)| &order[start..end])
                    .collect()
            }
        };
        let run = |batch: &&[usize]| {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| windows[i]).collect();
            self.forward_batch(&seqs)
        };
        // On the CPU each thread takes whole batches (the products inside still split when a
        // thread is idle): no barrier per operation, and each batch's buffers stay in one core's
        // cache. The GPU runs batches one after another.
        let results: Vec<Result<Vec<Vec<f32>>, EncoderError>> = match self.model {
            Backend::Cpu(_) => {
                use rayon::prelude::*;
                batches.par_iter().map(run).collect()
            }
            Backend::Candle(_) => batches.iter().map(run).collect(),
        };
        for (batch, rows) in batches.iter().zip(results) {
            for (&i, row) in batch.iter().zip(rows?) {
                out[i] = row;
            }
        }
        Ok(out)
    }

    fn forward_batch(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let pooling = self.tokenizer.settings.pooling;
        let model = match &self.model {
            Backend::Cpu(model) => model,
            Backend::Candle(model) => {
                return candle_forward_batch(model, seqs, pooling, &self.config)
            }
        };
        Ok(model.embed(seqs, pooling)?)
    }

    /// Embeds short queries (label prompts) with the encoder's query prefix, one window each
    /// (truncated to the model's length), L2-normalised.
    pub fn embed_queries(&self, queries: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let t = &self.tokenizer;
        let max = t.window.max_tokens;
        let mut windows = Vec::with_capacity(queries.len());
        for query in queries {
            let input = format!("{}{query}", t.settings.query_prefix);
            let encoding = t
                .tokenizer
                .encode(input.trim(), true)
                .map_err(|e| EncoderError::Tokenize(e.to_string()))?;
            let mut ids = encoding.get_ids().to_vec();
            if ids.len() > max {
                ids.truncate(max - 1);
                ids.push(t.sep_id);
            }
            windows.push(ids);
        }
        let refs: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
        self.embed_windows(&refs, 16)
    }

    /// Tokenizes and embeds articles; windows of all articles share batches.
    pub fn embed(
        &self,
        docs: &[Document<'_>],
        batch_size: usize,
    ) -> Result<Vec<ArticleEmbedding>, EncoderError> {
        let tokenized = docs
            .iter()
            .map(|d| self.tokenize(*d))
            .collect::<Result<Vec<_>, _>>()?;
        self.embed_tokenized(&tokenized, batch_size)
    }

    /// Embeds already tokenized articles (see [`Encoder::tokenize`]).
    pub fn embed_tokenized(
        &self,
        articles: &[TokenizedArticle],
        batch_size: usize,
    ) -> Result<Vec<ArticleEmbedding>, EncoderError> {
        let flat: Vec<&[u32]> = articles
            .iter()
            .flat_map(|a| a.windows.iter().map(|w| w.ids.as_slice()))
            .collect();
        let vectors = self.embed_windows(&flat, batch_size)?;
        // Damaged weights (a NaN anywhere) poison every vector: refuse rather than emit nulls.
        if vectors.iter().flatten().any(|v| !v.is_finite()) {
            return Err(EncoderError::NonFinite);
        }
        let mut vectors = vectors.into_iter();
        Ok(articles
            .iter()
            .map(|article| {
                let windows: Vec<WindowEmbedding> = article
                    .windows
                    .iter()
                    .map(|w| WindowEmbedding {
                        span: w.span,
                        tokens: w.ids.len(),
                        embedding: vectors.next().unwrap_or_default(),
                    })
                    .collect();
                ArticleEmbedding {
                    embedding: mean_normalized(windows.iter().map(|w| w.embedding.as_slice())),
                    windows,
                    truncated: article.truncated,
                }
            })
            .collect())
    }
}

/// Memory-maps the weights and builds candle's encoder on `device`, in f32.
fn load_candle_model(
    files: &EncoderFiles,
    config: &Config,
    device: &Device,
) -> Result<BertEncoder, EncoderError> {
    let weights_error = |source| EncoderError::Weights {
        paths: describe_paths(&files.weights),
        source,
    };
    // SAFETY: the weight files are memory-mapped read-only; spyglass never writes to them.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, DType::F32, device) }
        .map_err(weights_error)?;
    BertEncoder::load(vb, config).map_err(weights_error)
}

/// Pads a batch and runs candle's encoder (the GPU path, or the CPU reference).
fn candle_forward_batch(
    model: &BertEncoder,
    seqs: &[&[u32]],
    pooling: Pooling,
    config: &Config,
) -> Result<Vec<Vec<f32>>, EncoderError> {
    let device = model.device();
    let max_len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let padded = seqs.iter().any(|s| s.len() != max_len);
    let pad = config.pad_token_id as u32;
    let mut ids = Vec::with_capacity(seqs.len() * max_len);
    let mut mask = Vec::with_capacity(seqs.len() * max_len);
    for seq in seqs {
        ids.extend_from_slice(seq);
        ids.extend(std::iter::repeat_n(pad, max_len - seq.len()));
        mask.extend(std::iter::repeat_n(1u8, seq.len()));
        mask.extend(std::iter::repeat_n(0u8, max_len - seq.len()));
    }
    let ids = Tensor::from_vec(ids, (seqs.len(), max_len), device)?;
    let mask = Tensor::from_vec(mask, (seqs.len(), max_len), device)?;
    let hidden = model.forward(&ids, if padded { Some(&mask) } else { None })?;
    let pooled = match pooling {
        Pooling::Mean => bert::mean_pool(&hidden, &mask)?,
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
    };
    Ok(bert::l2_normalize(&pooled)?.to_vec2::<f32>()?)
}

/// Cuts lengths sorted longest first into batches of at most `batch_size`, starting a new batch
/// when a sequence is shorter than `MIN_FILL` of the batch's longest, so padding stays small.
/// Returns each batch's end index.
pub fn length_batches(sorted_desc: &[usize], batch_size: usize) -> Vec<usize> {
    const MIN_FILL: f64 = 0.8;
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, &len) in sorted_desc.iter().enumerate() {
        let full = i - start >= batch_size.max(1);
        let too_short = (len as f64) < MIN_FILL * sorted_desc[start] as f64;
        if i > start && (full || too_short) {
            ends.push(i);
            start = i;
        }
    }
    if start < sorted_desc.len() {
        ends.push(sorted_desc.len());
    }
    ends
}

fn read_config(files: &EncoderFiles) -> Result<Config, EncoderError> {
    let err = |reason: String| EncoderError::Config {
        path: files.config.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&files.config).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

/// The mean of unit vectors, L2-normalised (the article embedding).
pub fn mean_normalized<'a>(rows: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for row in rows {
        if sum.is_empty() {
            sum = vec![0.0; row.len()];
        }
        for (s, v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
    let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    sum.iter().map(|v| v / norm).collect()
}

/// The character index of a byte offset (rounded down to a character boundary).
fn char_index(text: &str, byte: usize) -> usize {
    let mut byte = byte.min(text.len());
    while !text.is_char_boundary(byte) {
        byte -= 1;
    }
    text[..byte].chars().count()
}

fn describe_paths(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The prefix's token ids and the ids the tokenizer puts before and after an input.
fn special_ids(
    tokenizer: &EncoderTokenizer,
    prefix: &str,
) -> Result<(Vec<u32>, u32, u32), EncoderError> {
    let with = tokenizer
        .encode("x", true)
        .map_err(|e| EncoderError::Tokenize(e.to_string()))?;
    let (ids, mask) = (with.get_ids(), with.get_special_tokens_mask());
    if ids.len() < 3 || mask[0] != 1 || mask[ids.len() - 1] != 1 {
        return Err(EncoderError::Tokenize(
            "the tokenizer does not add a start and an end token around inputs; spyglass needs a BERT or XLM-R style post-processor in tokenizer.json".into(),
        ));
    }
    let prefix_trimmed = prefix.trim();
    let prefix_ids = if prefix_trimmed.is_empty() {
        Vec::new()
    } else {
        tokenizer
            .encode(prefix_trimmed, false)
            .map_err(|e| EncoderError::Tokenize(e.to_string()))?
            .get_ids()
            .to_vec()
    };
    Ok((prefix_ids, ids[0], ids[ids.len() - 1]))
}

/// Picks the compute device: CUDA when built with the `cuda` feature and a GPU is present.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    Device::Cpu
}

/// The SHA-256 of a file, hex-encoded (weights and data fingerprints).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_batches_respect_size_and_padding_band() {
        assert_eq!(length_batches(&[], 4), Vec::<usize>::new());
        assert_eq!(length_batches(&[10, 10, 10, 10, 10], 2), vec![2, 4, 5]);
        // 512 must not share a batch with 25-token windows.
        assert_eq!(length_batches(&[512, 500, 30, 25, 25], 8), vec![2, 5]);
    }

    #[test]
    fn mean_of_unit_vectors_is_unit() {
        let v = mean_normalized([[1.0, 0.0].as_slice(), [0.0, 1.0].as_slice()].into_iter());
        assert!((v[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn char_index_counts_characters_not_bytes() {
        assert_eq!(char_index("データ漏洩 x", 6), 2);
        assert_eq!(char_index("データ", 4), 1); // inside a character: rounds down
        assert_eq!(char_index("abc", 99), 3);
    }
}
