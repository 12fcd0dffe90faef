//! Command-line interface: every flag and subcommand, and their resolution into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::encoder::{EncoderSource, WindowOverrides};

pub const DEFAULT_ENCODER: &str = "intfloat/multilingual-e5-small";

#[derive(Debug, Parser)]
#[command(
    name = "spyglass",
    version,
    about = "Tags news articles in any major language with security topics (espionage, data_theft, national_security_review, tech_decoupling, cyberattack)"
)]
pub struct Cli {
    /// CPU threads for tensor work (default: all cores).
    #[arg(long, global = true, env = "SPYGLASS_THREADS")]
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
    /// Topic taxonomy to validate labels against.
    #[arg(long, default_value = "labels/taxonomy.toml")]
    pub taxonomy: PathBuf,
    /// Tokenizer used to count tokens for the length buckets (an encoder folder or Hub id).
    #[command(flatten)]
    pub encoder: EncoderArgs,
}

/// Which encoder to use and how to cut articles into windows; shared by every embedding command.
#[derive(Debug, Args, Clone)]
pub struct EncoderArgs {
    /// Encoder: a local folder (config.json, tokenizer.json, model.safetensors) or a Hugging Face
    /// Hub id. Overrides the encoder a model bundle names.
    #[arg(long, env = "SPYGLASS_ENCODER", default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Hub revision (branch, tag or commit) of the encoder.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Use only the local Hugging Face cache; never touch the network.
    #[arg(long, env = "HF_HUB_OFFLINE")]
    pub offline: bool,
    /// Longest encoder input per window, in tokens (default: the model's maximum).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Tokens shared by consecutive windows of a long article.
    #[arg(long)]
    pub overlap: Option<usize>,
    /// Windows kept per article; later text is dropped and the record marked truncated (0 = all).
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Windows per encoder batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

impl EncoderArgs {
    pub fn source(&self) -> EncoderSource {
        EncoderSource {
            id_or_dir: self.encoder.clone(),
            revision: self.revision.clone(),
            offline: self.offline,
            cache_dir: EncoderSource::default_cache_dir(),
        }
    }

    pub fn windows(&self) -> WindowOverrides {
        WindowOverrides {
            max_tokens: self.max_tokens,
            overlap: self.overlap,
            max_windows: self.max_windows,
        }
    }
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Articles: a JSONL file (id, text, optional title/lang/url), a folder of .txt/.md files, or
    /// `-` for standard input.
    #[arg(long, short)]
    pub input: String,
    /// Where to write JSONL embeddings (`-` for standard output). Written atomically.
    #[arg(long, short, default_value = "-")]
    pub output: String,
    /// Leave per-window vectors out of the output (spans and token counts stay).
    #[arg(long)]
    pub no_window_embeddings: bool,
    #[command(flatten)]
    pub encoder: EncoderArgs,
}
