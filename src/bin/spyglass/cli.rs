//! Command-line interface: every flag and subcommand, and their resolution into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use spyglass::encoder::{EncoderSource, WindowOverrides};
use spyglass::model::load::{BundleChoice, CacheChoice, EncoderChoice, ModelChoice};

/// A count from `low` to `high`, or an error naming the accepted range.
fn count_between(text: &str, low: usize, high: usize) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from {low} to {high}, got `{text}`"
        )),
    }
}

fn parse_threads(text: &str) -> Result<usize, String> {
    count_between(text, 1, 1024)
}

fn parse_max_items(text: &str) -> Result<usize, String> {
    count_between(text, 1, 1_000_000)
}

fn parse_record_bytes(text: &str) -> Result<usize, String> {
    count_between(text, 1, 1 << 40)
}

fn parse_batch_size(text: &str) -> Result<usize, String> {
    count_between(text, 1, 4096)
}

#[derive(Debug, Parser)]
#[command(
    name = "spyglass",
    version,
    about = "Tags news articles in any major language with security topics (espionage, data_theft, national_security_review, tech_decoupling, cyberattack)"
)]
pub struct Cli {
    /// CPU threads for tensor work, 1 to 1024 (default: all cores).
    #[arg(long, global = true, env = "SPYGLASS_THREADS", value_parser = parse_threads)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embed articles: one article embedding plus per-window embeddings with their text spans.
    Embed(EmbedArgs),
    /// Check labelled data files.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a classification head on labelled data and write a model bundle.
    Train(TrainArgs),
    /// Label articles with topics, calibrated scores and evidence.
    Label(LabelArgs),
    /// Score a model (or a predictions file) against hand labels; reports, comparisons, gates.
    Eval(EvalArgs),
    /// Poll RSS/Atom/JSON feeds and rank the new articles that matter.
    Triage(TriageArgs),
    /// Show this machine's CPU, its instruction-set level (and `SPYGLASS_CPU_ISA`), the kernels
    /// each precision runs, threads and CUDA.
    Info(InfoArgs),
    /// Serve classification, embeddings, metrics and per-topic Atom feeds over HTTP.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Hand-labelled JSONL files to score against.
    #[arg(long, num_args = 1.., required_unless_present = "compare")]
    pub data: Vec<PathBuf>,
    /// Score this predictions file (JSONL: `id` plus `scores` {topic: probability} and/or
    /// `labels` [topics], e.g. `spyglass label` output) instead of running a model.
    #[arg(long, conflicts_with = "zero_shot")]
    pub predictions: Option<PathBuf>,
    /// Write the machine-readable report (schema `spyglass.eval/1`) to this file (`-` = stdout).
    #[arg(long)]
    pub json: Option<String>,
    /// Write a self-contained HTML report with charts and a Markdown summary into this folder.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Compare two `--json` reports of the same data: deltas with paired-bootstrap significance.
    #[arg(long, num_args = 2, value_names = ["A_JSON", "B_JSON"])]
    pub compare: Vec<PathBuf>,
    /// Quality gate: `macro_f1=0.80`, `micro_f1=…` or `<topic>=…` (per-topic F1); comma-separated
    /// or repeated. Exits 1 when any is not met.
    #[arg(long, value_delimiter = ',')]
    pub fail_under: Vec<String>,
    /// Bootstrap resamples for confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap (same seed, same intervals).
    #[arg(long, default_value_t = 20261122)]
    pub seed: u64,
    /// False positives and negatives listed in the terminal summary.
    #[arg(long, default_value_t = 10)]
    pub show_errors: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// The embedding cache shared by commands that embed labelled or repeated text.
#[derive(Debug, Args, Clone)]
pub struct CacheArgs {
    /// Embedding cache file [default: $XDG_CACHE_HOME/spyglass/embeddings.sqlite].
    #[arg(long, env = "SPYGLASS_CACHE")]
    pub cache: Option<PathBuf>,
    /// Embed everything afresh and store nothing.
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    pub fn choice(&self) -> CacheChoice {
        if self.no_cache {
            CacheChoice::off()
        } else {
            CacheChoice::at(self.cache.clone())
        }
    }
}

/// Which classifier scores the articles.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Model bundle folder made by `spyglass train` [default: `models/default` in the working
    /// directory, else the model built into spyglass].
    #[arg(long, conflicts_with = "zero_shot")]
    pub model: Option<PathBuf>,
    /// Score with the zero-shot head built from the taxonomy's descriptions (no bundle).
    #[arg(long)]
    pub zero_shot: bool,
    /// Topic taxonomy [default: `labels/taxonomy.toml` in the working directory, else the
    /// taxonomy built into spyglass].
    #[arg(long)]
    pub taxonomy: Option<PathBuf>,
    /// Use the bundle even with an encoder it refuses: another model, or a copy that does not
    /// reproduce the bundle's probe embeddings and scores within its tolerance.
    #[arg(long)]
    pub allow_encoder_mismatch: bool,
}

impl ModelArgs {
    pub fn choice(&self) -> ModelChoice {
        ModelChoice {
            bundle: match (&self.model, self.zero_shot) {
                (_, true) => BundleChoice::ZeroShot,
                (Some(dir), false) => BundleChoice::At(dir.clone()),
                (None, false) => BundleChoice::Default,
            },
            taxonomy: self.taxonomy.clone(),
            allow_encoder_mismatch: self.allow_encoder_mismatch,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadKind {
    /// Logistic regression per topic on the embedding, averaged with a logistic regression on
    /// character 2-5-gram TF-IDF of the text (the shipped model).
    Ensemble,
    /// Logistic regression per topic on the embedding alone.
    Logistic,
    /// The first head: AdamW with early stopping on dev loss over mean+max features.
    Linear,
    /// Zero-shot head from the taxonomy's descriptions, calibrated on the dev split.
    ZeroShot,
}

/// Where a head's calibration and thresholds come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibrationArg {
    /// Pool `--train` and `--dev`, fit on all of it, and calibrate on out-of-fold scores of the
    /// pool (`logistic` and `ensemble` heads; their default).
    CrossValidation,
    /// Fit on `--train`, calibrate on `--dev` (the only choice for `linear` and `zero-shot`).
    Dev,
}

/// Which embedding features a trained head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeatureArg {
    /// The article embedding (mean over windows).
    Mean,
    /// The article embedding and the per-dimension maximum over windows.
    MeanMax,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training articles (labelled JSONL).
    #[arg(long, default_value = "eval/data/train.jsonl")]
    pub train: PathBuf,
    /// Dev articles: calibration and thresholds (`--calibration dev`), or pooled with `--train`
    /// (`--calibration cross-validation`); early stopping of the `linear` head.
    #[arg(long, default_value = "eval/data/dev.jsonl")]
    pub dev: PathBuf,
    /// Where calibration and thresholds come from [default: cross-validation for `logistic` and
    /// `ensemble`, dev for `linear` and `zero-shot`].
    #[arg(long, value_enum)]
    pub calibration: Option<CalibrationArg>,
    /// Bundle folder to write.
    #[arg(long, short, default_value = "models/default")]
    pub output: PathBuf,
    /// Bundle name recorded in the manifest [default: the output folder's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Bundle version recorded in the manifest and in every label record.
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// Which head to train.
    #[arg(long, value_enum, default_value_t = HeadKind::Ensemble)]
    pub head: HeadKind,
    /// Embedding features of the `logistic` and `ensemble` heads.
    #[arg(long, value_enum, default_value_t = FeatureArg::Mean)]
    pub features: FeatureArg,
    /// Candidate inverse penalties C of the logistic heads (comma-separated); each topic takes
    /// the one with the best cross-validated average precision on `--train`. One value fixes C.
    #[arg(long, value_delimiter = ',', default_values_t = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])]
    pub penalties: Vec<f64>,
    /// Candidate C of the lexical channel (`ensemble` head), chosen the same way.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0])]
    pub lexical_penalties: Vec<f64>,
    /// Cross-validation folds for choosing C.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Character n-grams the lexical channel keeps (the most frequent in `--train`).
    #[arg(long, default_value_t = 50_000)]
    pub max_features: usize,
    /// A lexical n-gram must occur in at least this many training articles.
    #[arg(long, default_value_t = 2)]
    pub min_df: usize,
    /// Topic taxonomy [default: `labels/taxonomy.toml` in the working directory, else the
    /// taxonomy built into spyglass].
    #[arg(long)]
    pub taxonomy: Option<PathBuf>,
    /// AdamW learning rate (`linear` head only).
    #[arg(long, default_value_t = 3e-3)]
    pub learning_rate: f64,
    /// AdamW decoupled weight decay (`linear` head only).
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    /// Most epochs (`linear` head only).
    #[arg(long, default_value_t = 600)]
    pub max_epochs: usize,
    /// Epochs without a lower dev loss before stopping (`linear` head only).
    #[arg(long, default_value_t = 50)]
    pub patience: usize,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Where articles come from; shared by `label` and `embed`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Articles: a JSONL file (id, text, optional title/lang/url), a .txt/.md file (one
    /// article), a folder of them (its `.jsonl` files read as JSONL), or `-` for standard input.
    #[arg(long, short)]
    pub input: String,
    /// Longest record read, in bytes (16777216 = 16 MiB): a longer JSONL line or text file
    /// becomes an error record without being held in memory.
    #[arg(long, default_value_t = 16 << 20, value_parser = parse_record_bytes)]
    pub max_record_bytes: usize,
}

impl InputArgs {
    /// Opens the input with its record cap, warning about what a folder walk passed over.
    pub fn open(&self) -> anyhow::Result<spyglass::io::input::ArticleReader> {
        let mut reader = spyglass::io::input::ArticleReader::open(&self.input)?;
        reader.max_record_bytes = self.max_record_bytes as u64;
        for skipped in &reader.skipped {
            eprintln!("warning: skipped {skipped}");
        }
        Ok(reader)
    }
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Where to write JSONL results (`-` for standard output). Written atomically.
    #[arg(long, short, default_value = "-")]
    pub output: String,
    /// Assign only topics whose probability is at least this, on top of each topic's threshold.
    #[arg(long, default_value_t = 0.0)]
    pub min_score: f32,
    /// Report only these topics (comma-separated ids) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Validate labelled JSONL files against the taxonomy, find duplicates, print counts.
    Check(DataCheckArgs),
}

#[derive(Debug, Args)]
pub struct DataCheckArgs {
    /// Labelled JSONL files (fields id, lang, title, text, labels, source; optional note, tags).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Topic taxonomy to validate labels against [default: `labels/taxonomy.toml` in the working
    /// directory, else the taxonomy built into spyglass].
    #[arg(long)]
    pub taxonomy: Option<PathBuf>,
    /// Whose tokenizer counts tokens for the length buckets.
    #[command(flatten)]
    pub tokenizer: EncoderSourceArgs,
}

/// Which encoder: `--encoder`, `--revision`, `--offline`. Shared by every command that loads an
/// encoder or only its tokenizer.
#[derive(Debug, Args, Clone)]
pub struct EncoderSourceArgs {
    /// Encoder: a local folder (config.json, tokenizer.json, model.safetensors) or a Hugging Face
    /// Hub id. For commands that use a model bundle, it overrides the encoder the bundle names.
    /// [default: the model bundle's encoder where there is one, else
    /// intfloat/multilingual-e5-small]
    #[arg(long, env = "SPYGLASS_ENCODER")]
    pub encoder: Option<String>,
    /// Hub revision (branch, tag or commit) of the encoder [default: main].
    #[arg(long)]
    pub revision: Option<String>,
    /// Use only the local Hugging Face cache; never touch the network (HF_HUB_OFFLINE=1 too).
    #[arg(long, env = "HF_HUB_OFFLINE", value_parser = clap::builder::BoolishValueParser::new())]
    pub offline: bool,
}

impl EncoderSourceArgs {
    /// The encoder named by `--encoder`, else the default one.
    pub fn source(&self) -> EncoderSource {
        EncoderChoice {
            explicit: self.encoder.clone(),
            revision: self.revision.clone(),
            offline: self.offline,
            windows: WindowOverrides::default(),
            batch_size: 1,
            precision: spyglass::encoder::Precision::F32,
        }
        .source()
    }
}

/// Which encoder to use and how to cut articles into windows; shared by every embedding command.
#[derive(Debug, Args, Clone)]
pub struct EncoderArgs {
    #[command(flatten)]
    pub which: EncoderSourceArgs,
    /// Longest encoder input per window, in tokens (default: the model's maximum).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Tokens shared by consecutive windows of a long article [default: a model bundle's
    /// setting, else 64].
    #[arg(long)]
    pub overlap: Option<usize>,
    /// Windows kept per article; later text is dropped and the record marked truncated (0 = all)
    /// [default: a model bundle's setting, else 32].
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Windows per encoder batch, 1 to 4096.
    #[arg(long, default_value_t = 8, value_parser = parse_batch_size)]
    pub batch_size: usize,
    /// Numeric format of the encoder's dense layers on the CPU: `f32` matches the PyTorch
    /// reference; `int8` is faster and approximate (cosine >= 0.999 to f32 on the reference
    /// fixture); `bf16` (CPUs with AVX-512 BF16) likewise. Each is cached apart.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    F32,
    Int8,
    Bf16,
}

impl EncoderArgs {
    pub fn precision(&self) -> spyglass::encoder::Precision {
        match self.precision {
            PrecisionArg::F32 => spyglass::encoder::Precision::F32,
            PrecisionArg::Int8 => spyglass::encoder::Precision::Int8,
            PrecisionArg::Bf16 => spyglass::encoder::Precision::Bf16,
        }
    }

    /// The library's view of these flags.
    pub fn choice(&self) -> EncoderChoice {
        EncoderChoice {
            explicit: self.which.encoder.clone(),
            revision: self.which.revision.clone(),
            offline: self.which.offline,
            windows: WindowOverrides {
                max_tokens: self.max_tokens,
                overlap: self.overlap,
                max_windows: self.max_windows,
            },
            batch_size: self.batch_size,
            precision: self.precision(),
        }
    }
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Where to write JSONL embeddings (`-` for standard output). Written atomically.
    #[arg(long, short, default_value = "-")]
    pub output: String,
    /// Leave per-window vectors out of the output (spans and token counts stay).
    #[arg(long)]
    pub no_window_embeddings: bool,
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

fn parse_positive(text: &str) -> Result<usize, String> {
    count_between(text, 1, usize::MAX >> 1)
}

fn parse_wait_ms(text: &str) -> Result<u64, String> {
    count_between(text, 0, 10_000).map(|n| n as u64)
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default; `0.0.0.0:8080` opens it to the network (set
    /// `SPYGLASS_API_KEY` then).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Estimated tokens per encoder batch, gathered across concurrent requests.
    #[arg(long, default_value_t = 8192, value_parser = parse_positive)]
    pub max_batch_tokens: usize,
    /// Milliseconds a request waits for others to join its batch, 0 to 10000.
    #[arg(long, default_value_t = 5, value_parser = parse_wait_ms)]
    pub max_wait_ms: u64,
    /// Articles waiting for the encoder at most; past it requests get 503 with `Retry-After`.
    #[arg(long, default_value_t = 1024, value_parser = parse_positive)]
    pub max_queue: usize,
    /// Largest request body, in bytes (413 past it).
    #[arg(long, default_value_t = 8 << 20, value_parser = parse_positive)]
    pub max_body_bytes: usize,
    /// Most inputs in one request (413 past it).
    #[arg(long, default_value_t = 256, value_parser = parse_positive)]
    pub max_inputs: usize,
    /// Longest input, title plus text, in characters (413 past it).
    #[arg(long, default_value_t = 200_000, value_parser = parse_positive)]
    pub max_input_chars: usize,
    /// Triage state (SQLite, from `spyglass triage --state`) to publish as
    /// `/feeds/<topic>.atom` and `/feeds/all.atom` [default: no feeds].
    #[arg(long)]
    pub triage_state: Option<PathBuf>,
    /// Newest stories per feed.
    #[arg(long, default_value_t = 100, value_parser = parse_positive)]
    pub feed_entries: usize,
    /// Longest a request may take, upload included, in milliseconds (503 past it).
    #[arg(long, default_value_t = 120_000, value_parser = parse_positive)]
    pub request_timeout_ms: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// `spyglass triage` flags (owned by the feed-triage module; see src/triage/).
#[derive(Debug, Args)]
pub struct TriageArgs {
    /// A feed URL or a local feed file; repeatable.
    #[arg(long = "feed")]
    pub feeds: Vec<String>,
    /// New items taken per feed per cycle, newest first (1 to 1000000); the rest wait for a
    /// later cycle, so one huge feed cannot stall a run.
    #[arg(long, default_value_t = 500, value_parser = parse_max_items)]
    pub max_items_per_feed: usize,
    /// A file listing feeds, one URL or path per line (`#` starts a comment).
    #[arg(long)]
    pub feeds_file: Option<PathBuf>,
    /// Where to write the ranked items (`-` for standard output). Written atomically.
    #[arg(long, short, default_value = "-")]
    pub output: String,
    /// Output format: JSONL records, or a Markdown or HTML digest.
    #[arg(long, value_enum, default_value_t = DigestFormat::Jsonl)]
    pub format: DigestFormat,
    /// Download each new item's page and extract the story text (else the feed's own content).
    #[arg(long)]
    pub fetch_articles: bool,
    /// Also fetch from loopback, private, link-local and multicast addresses (refused by
    /// default for article pages and for redirects away from the feeds you named; for local
    /// testing only).
    #[arg(long)]
    pub allow_private_addresses: bool,
    /// State database: items seen and feed caching headers
    /// [default: $XDG_DATA_HOME/spyglass/triage.sqlite, else ~/.local/share/spyglass/triage.sqlite].
    #[arg(long, env = "SPYGLASS_TRIAGE_STATE")]
    pub state: Option<PathBuf>,
    /// List only stories whose top topic probability is at least this.
    #[arg(long, default_value_t = 0.0)]
    pub min_score: f32,
    /// Rank by these topics only (comma-separated ids) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Leave out items published before this: a duration back from now (`48h`, `7d`) or an
    /// RFC 3339 date (`2025-03-01T00:00:00Z`, `2025-03-01`).
    #[arg(long, value_parser = spyglass::triage::parse_since)]
    pub since: Option<spyglass::triage::Since>,
    /// Poll again every interval (`15m`) until stopped with Ctrl-C.
    #[arg(long, value_parser = spyglass::triage::parse_duration)]
    pub watch: Option<std::time::Duration>,
    /// Time limit per HTTP request (connect and download).
    #[arg(long, default_value = "20s", value_parser = spyglass::triage::parse_duration)]
    pub timeout: std::time::Duration,
    /// User-Agent header sent with every request.
    #[arg(long, default_value = spyglass::triage::fetch::DEFAULT_USER_AGENT)]
    pub user_agent: String,
    /// Stories whose embeddings have at least this cosine similarity are one story.
    #[arg(long, default_value_t = 0.93)]
    pub duplicate_similarity: f32,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// How `triage` writes its ranked stories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestFormat {
    /// One JSON object per ranked story.
    Jsonl,
    /// A Markdown digest.
    Markdown,
    /// A self-contained HTML page.
    Html,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn bundle_pins_from_local_folders_resolve_to_the_hub_default_branch() {
        let cli = Cli::try_parse_from(["spyglass", "label", "--input", "x.jsonl"]).unwrap();
        let Command::Label(args) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        let id = "intfloat/multilingual-e5-small";
        assert_eq!(
            args.encoder.choice().source_or(id, "local").revision,
            "main"
        );
        assert_eq!(
            args.encoder.choice().source_or(id, "abc123").revision,
            "abc123"
        );
        assert_eq!(args.encoder.choice().source_or(id, "local").id_or_dir, id);
    }
}
