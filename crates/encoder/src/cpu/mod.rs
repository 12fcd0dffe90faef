//! The fused CPU forward pass of BERT-family encoders: sequences packed without padding, each
//! dense layer one matrix product against packed weights that also applies its bias, residual
//! and activation (`sgemm.rs`, `quant.rs`), attention per sequence and head in cache-sized query
//! blocks, and in-place vectorised element-wise kernels. Same model and results as `bert::BertEncoder` (the candle reference,
//! used on GPUs), with a handful of large buffers per batch instead of a tensor per operation.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod bf16;
pub mod isa;
mod kernels;
pub mod quant;
#[doc(hidden)]
pub mod sgemm;

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use self::bf16::Bf16Matrix;
use self::isa::Isa;
use self::kernels::Activation;
use self::quant::{Int8Kernel, QuantizedMatrix};
use self::sgemm::{Affine, F32Kernel, PackedMatrix};
use super::bert::{Architecture, Config};
use super::manifest::Pooling;
use super::mean_normalized;

/// Numeric format of the dense-layer weights on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere: matches the PyTorch reference to cosine 0.9999.
    #[default]
    F32,
    /// Dense layers in int8 (weights per output channel, activations per row; see `quant.rs`);
    /// attention, softmax, GELU and LayerNorm stay f32.
    Int8,
    /// Dense layers in bf16 with f32 sums (`bf16.rs`), on CPUs with AVX-512 BF16; the rest f32.
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
            Self::Bf16 => "bf16",
        }
    }
}

/// Where the weights come from: memory-mapped safetensors files or (in tests) named tensors.
pub enum WeightStore {
    Mapped(MmapedSafetensors),
    Tensors(HashMap<String, Tensor>),
}

impl WeightStore {
    fn contains(&self, name: &str) -> bool {
        match self {
            Self::Mapped(st) => st.get(name).is_ok(),
            Self::Tensors(map) => map.contains_key(name),
        }
    }

    fn tensor(&self, name: &str) -> candle_core::Result<Tensor> {
        match self {
            Self::Mapped(st) => st.load(name, &Device::Cpu),
            Self::Tensors(map) => map
                .get(name)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor `{name}`"))),
        }
    }

    /// A tensor as an f32 vector of `len` values (its shape checked by element count).
    fn values(&self, name: &str, len: usize) -> candle_core::Result<Vec<f32>> {
        let values = self
            .tensor(name)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if values.len() != len {
            candle_core::bail!(
                "tensor `{name}` has {} values, config.json implies {len}",
                values.len()
            );
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            candle_core::bail!("tensor `{name}` holds a NaN or infinite value (at index {i})");
        }
        Ok(values)
    }
}

/// The word-embedding table. It is the largest tensor (250k x 384 for multilingual-e5-small),
/// so from a mapped file its rows stay in the file in their stored format and are converted
/// when looked up; the table keeps the mapping (no other weight needs it after loading).
enum WordTable {
    Mapped {
        store: MmapedSafetensors,
        name: String,
    },
    /// Rows of a tensor store (tests), as f32.
    Owned(Vec<f32>),
}

/// The table's rows as one batch reads them: the mapped tensor is found once, not per token.
enum WordRows<'a> {
    Owned(&'a [f32]),
    Stored {
        bytes: &'a [u8],
        dtype: safetensors::Dtype,
    },
}

impl WordTable {
    fn load(store: WeightStore, name: String, config: &Config) -> candle_core::Result<Self> {
        let (rows, width) = (config.vocab_size, config.hidden_size);
        match store {
            WeightStore::Mapped(st) => {
                let view = st.get(&name)?;
                if view.shape() != [rows, width] {
                    candle_core::bail!(
                        "tensor `{name}` has shape {:?}, config.json implies [{rows}, {width}]",
                        view.shape()
                    );
                }
                use safetensors::Dtype;
                if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                    candle_core::bail!("tensor `{name}` has unsupported type {:?}", view.dtype());
                }
                Ok(Self::Mapped { store: st, name })
            }
            tensors => Ok(Self::Owned(tensors.values(&name, rows * width)?)),
        }
    }

    fn rows(&self) -> candle_core::Result<WordRows<'_>> {
        Ok(match self {
            Self::Mapped { store, name } => {
                let view = store.get(name)?;
                WordRows::Stored {
                    bytes: view.data(),
                    dtype: view.dtype(),
                }
            }
            Self::Owned(values) => WordRows::Owned(values),
        })
    }
}

impl WordRows<'_> {
    /// Writes the embedding of `id` into `out` (one row; `id` checked by the caller).
    fn row(&self, id: usize, out: &mut [f32]) {
        let width = out.len();
        let (bytes, dtype) = match self {
            Self::Owned(values) => {
                out.copy_from_slice(&values[id * width..(id + 1) * width]);
                return;
            }
            Self::Stored { bytes, dtype } => (bytes, *dtype),
        };
        let size = dtype.bitsize() / 8; // F32, F16 or BF16, checked at load
        let raw = &bytes[id * width * size..(id + 1) * width * size];
        use safetensors::Dtype;
        for (value, chunk) in out.iter_mut().zip(raw.chunks_exact(size)) {
            *value = match dtype {
                Dtype::F16 => half::f16::from_le_bytes([chunk[0], chunk[1]]).to_f32(),
                Dtype::BF16 => half::bf16::from_le_bytes([chunk[0], chunk[1]]).to_f32(),
                _ => f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            };
        }
    }
}

/// A dense layer's weight in the form its matrix product wants.
enum DenseWeight {
    /// f32 panels for the AVX2 kernel (`sgemm.rs`).
    Packed(PackedMatrix),
    /// f32 transposed to (in, out) row-major, for the `gemm` crate on other CPUs.
    Transposed(Vec<f32>),
    /// int8 panels (`quant.rs`).
    Int8(QuantizedMatrix),
    /// bf16 panels (`bf16.rs`).
    Bf16(Bf16Matrix),
}

struct Dense {
    inputs: usize,
    outputs: usize,
    weight: DenseWeight,
    bias: Vec<f32>,
}

impl Dense {
    /// From `transformers` weights of shape (out, in), possibly several stacked along `out`.
    fn load(
        store: &WeightStore,
        prefixes: &[String],
        inputs: usize,
        outputs_each: usize,
        kernels: Kernels,
        int8: Int8Kernel,
    ) -> candle_core::Result<Self> {
        let outputs = outputs_each * prefixes.len();
        let mut weight = Vec::with_capacity(outputs * inputs);
        let mut bias = Vec::with_capacity(outputs);
        for prefix in prefixes {
            weight.extend(store.values(&format!("{prefix}.weight"), outputs_each * inputs)?);
            bias.extend(store.values(&format!("{prefix}.bias"), outputs_each)?);
        }
        let weight = match (kernels.precision, kernels.f32) {
            (Precision::Int8, _) => {
                DenseWeight::Int8(QuantizedMatrix::from_rows(&weight, outputs, inputs, int8))
            }
            (Precision::Bf16, _) => {
                DenseWeight::Bf16(Bf16Matrix::from_rows(&weight, outputs, inputs))
            }
            (Precision::F32, Some(kernel)) => DenseWeight::Packed(PackedMatrix::from_transposed(
                &weight, outputs, inputs, kernel,
            )),
            (Precision::F32, None) => {
                let mut weight_t = vec![0f32; inputs * outputs];
                for o in 0..outputs {
                    for i in 0..inputs {
                        weight_t[i * outputs + o] = weight[o * inputs + i];
                    }
                }
                DenseWeight::Transposed(weight_t)
            }
        };
        Ok(Self {
            inputs,
            outputs,
            weight,
            bias,
        })
    }

    /// `out = act(x @ W^T + bias [+ out])` for `rows` rows of `x` (rows x inputs) into `out`
    /// (rows x outputs): `residual` keeps what `out` holds and adds to it.
    fn apply(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        residual: bool,
        activation: Option<Activation>,
    ) {
        assert_eq!(x.len(), rows * self.inputs);
        assert_eq!(out.len(), rows * self.outputs);
        let affine = Affine {
            bias: &self.bias,
            residual,
            activation,
        };
        let weight_t = match &self.weight {
            DenseWeight::Packed(packed) => return packed.affine(x, rows, out, affine),
            DenseWeight::Int8(quantized) => return quantized.affine(x, rows, out, affine),
            DenseWeight::Bf16(rounded) => return rounded.affine(x, rows, out, affine),
            DenseWeight::Transposed(weight_t) => weight_t,
        };
        // The `gemm` crate only accumulates: start from the bias (and residual), then activate.
        let bias = &self.bias;
        out.par_chunks_mut(self.outputs * ROWS_PER_TASK)
            .for_each(|chunk| match residual {
                true => kernels::add_rows(chunk, bias),
                false => kernels::fill_rows(chunk, bias),
            });
        // SAFETY: the three buffers are distinct, row-major and sized as asserted above.
        unsafe {
            matmul(
                rows,
                self.outputs,
                self.inputs,
                MatrixMut::row_major(out.as_mut_ptr(), self.outputs),
                Matrix::row_major(x.as_ptr(), self.inputs),
                Matrix::row_major(weight_t.as_ptr(), self.outputs),
                1.0,
                true,
                gemm_parallelism(rows),
            );
        }
        if let Some(activation) = activation {
            out.par_chunks_mut(self.outputs * ROWS_PER_TASK)
                .for_each(|chunk| activation.apply(chunk));
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(store: &WeightStore, prefix: &str, width: usize) -> candle_core::Result<Self> {
        Ok(Self {
            gamma: store.values(&format!("{prefix}.weight"), width)?,
            beta: store.values(&format!("{prefix}.bias"), width)?,
        })
    }

    fn apply(&self, rows: &mut [f32], eps: f32) {
        let width = self.gamma.len();
        rows.par_chunks_mut(width * ROWS_PER_TASK)
            .for_each(|chunk| kernels::layer_norm_rows(chunk, &self.gamma, &self.beta, eps));
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

/// Rows per parallel task in element-wise passes: enough work to amortise scheduling.
const ROWS_PER_TASK: usize = 64;
/// Query rows per attention task: a 128 x 512 score block is 256 KiB, inside L2.
const QUERY_BLOCK: usize = 128;

/// Buffers of one forward pass, kept between batches: fresh multi-megabyte allocations would
/// cost a page fault per 4 KiB each time (measured: 3-6% of the run).
#[derive(Default)]
struct Workspace {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    inner: Vec<f32>,
}

/// Per-thread scratch of attention: a block of queries, its scores and their row sums, and
/// the packed keys and values of one head.
struct AttentionScratch {
    queries: Vec<f32>,
    scores: Vec<f32>,
    sums: Vec<f32>,
    keys: PackedMatrix,
    values: PackedMatrix,
}

/// A BERT or XLM-RoBERTa encoder for the CPU.
pub struct CpuEncoder {
    /// Free workspaces: one per batch in flight, reused by the next.
    workspaces: Mutex<Vec<Workspace>>,
    words: WordTable,
    vocab: usize,
    positions: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    inner: usize,
    heads: usize,
    head_dim: usize,
    eps: f32,
    position_offset: usize,
    max_positions: usize,
    activation: Activation,
    kernels: Kernels,
}

/// The matrix kernels one encoder runs: chosen once at load from the precision and the
/// instruction-set level, and recorded in every packed weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    pub precision: Precision,
    pub isa: Isa,
    /// The packed f32 kernel (dense layers in f32, and attention in every precision); `None`
    /// runs those products on the `gemm` crate.
    pub f32: Option<F32Kernel>,
    /// The int8 kernel of the QKV product (15-bit activations).
    pub int8: Int8Kernel,
    /// The int8 kernel of the other dense layers: 8-bit activations where the level has
    /// `vpdpbusd` (see `Int8Kernel::narrow_for_isa`), else the same as `int8`.
    pub int8_narrow: Int8Kernel,
}

impl Kernels {
    pub fn new(precision: Precision, isa: Isa) -> Self {
        Self {
            precision,
            isa,
            f32: F32Kernel::for_isa(isa),
            int8: Int8Kernel::for_isa(isa),
            int8_narrow: Int8Kernel::narrow_for_isa(isa),
        }
    }

    /// What runs the dense layers, e.g. `avx512 12x32` or `avx512-vnni vpdpwssd 12x32`.
    pub fn dense_name(&self) -> String {
        match (self.precision, self.f32) {
            (Precision::Int8, _) if self.int8_narrow != self.int8 => {
                format!("{} (QKV: {})", self.int8_narrow.name(), self.int8.name())
            }
            (Precision::Int8, _) => self.int8.name().into(),
            (Precision::Bf16, _) if bf16::on_tiles_at(self.isa) => "amx tdpbf16ps 32x32".into(),
            (Precision::Bf16, _) if bf16::available_at(self.isa) => {
                "avx512-bf16 vdpbf16ps 12x32".into()
            }
            (Precision::Bf16, _) => "unavailable (needs AVX-512 BF16)".into(),
            (Precision::F32, Some(kernel)) => kernel.name().into(),
            (Precision::F32, None) => "gemm crate".into(),
        }
    }

    /// What runs attention's products.
    pub fn attention_name(&self) -> &'static str {
        self.f32.map_or("gemm crate", F32Kernel::name)
    }

    /// A short identifier of the numerics, for cache keys: `f32-avx512`, `int8-avx2`...
    pub fn compute_path(&self) -> String {
        format!("{}-{}", self.precision.as_str(), self.isa.name())
    }
}

impl CpuEncoder {
    /// Loads the encoder for the instruction-set level in use (`isa::active`).
    pub fn load(
        store: WeightStore,
        config: &Config,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        Self::load_for(store, config, precision, isa::active())
    }

    /// Loads the encoder with the kernels of `isa`, which must be one this CPU supports.
    pub fn load_for(
        store: WeightStore,
        config: &Config,
        precision: Precision,
        isa: Isa,
    ) -> candle_core::Result<Self> {
        if !isa.supported() {
            candle_core::bail!("this CPU does not support the `{isa}` kernels");
        }
        if precision == Precision::Bf16 && !bf16::available_at(isa) {
            let why = bf16::unavailable_reason(isa);
            candle_core::bail!(
                "`--precision bf16` needs AVX-512 BF16: {why}, or use `f32` or `int8`"
            );
        }
        let kernels = Kernels::new(precision, isa);
        if let Some(kind) = config.position_embedding_type.as_deref() {
            if kind != "absolute" {
                candle_core::bail!("unsupported position_embedding_type `{kind}` in config.json");
            }
        }
        let Some(activation) = Activation::from_config(&config.hidden_act) else {
            candle_core::bail!(
                "unsupported hidden_act `{}` in config.json",
                config.hidden_act
            );
        };
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        if config.num_attention_heads == 0 || hidden % config.num_attention_heads != 0 {
            candle_core::bail!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            );
        }
        // Checkpoints saved from task heads nest the encoder under `bert.` or `roberta.`.
        let root = ["bert.", "roberta.", "xlm-roberta."]
            .into_iter()
            .find(|p| store.contains(&format!("{p}embeddings.word_embeddings.weight")))
            .unwrap_or("");
        let emb = format!("{root}embeddings");
        let positions = store.values(
            &format!("{emb}.position_embeddings.weight"),
            config.max_position_embeddings * hidden,
        )?;
        let token_types = store.values(
            &format!("{emb}.token_type_embeddings.weight"),
            config.type_vocab_size * hidden,
        )?;
        let embedding_norm = Norm::load(&store, &format!("{emb}.LayerNorm"), hidden)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = format!("{root}encoder.layer.{i}");
            let qkv_names: Vec<String> = ["query", "key", "value"]
                .iter()
                .map(|n| format!("{l}.attention.self.{n}"))
                .collect();
            layers.push(Layer {
                qkv: Dense::load(&store, &qkv_names, hidden, hidden, kernels, kernels.int8)?,
                attention_out: Dense::load(
                    &store,
                    &[format!("{l}.attention.output.dense")],
                    hidden,
                    hidden,
                    kernels,
                    kernels.int8_narrow,
                )?,
                attention_norm: Norm::load(
                    &store,
                    &format!("{l}.attention.output.LayerNorm"),
                    hidden,
                )?,
                intermediate: Dense::load(
                    &store,
                    &[format!("{l}.intermediate.dense")],
                    hidden,
                    inner,
                    kernels,
                    kernels.int8_narrow,
                )?,
                output: Dense::load(
                    &store,
                    &[format!("{l}.output.dense")],
                    inner,
                    hidden,
                    kernels,
                    kernels.int8_narrow,
                )?,
                output_norm: Norm::load(&store, &format!("{l}.output.LayerNorm"), hidden)?,
            });
        }
        // Last: the word table takes the store (and with it the file mapping) over.
        let words = WordTable::load(store, format!("{emb}.word_embeddings.weight"), config)?;
        let position_offset = match config.architecture() {
            Architecture::Bert => 0,
            Architecture::XlmRoberta => config.pad_token_id + 1,
        };
        Ok(Self {
            workspaces: Mutex::new(Vec::new()),
            words,
            vocab: config.vocab_size,
            positions,
            token_type: token_types[..hidden].to_vec(),
            embedding_norm,
            layers,
            hidden,
            inner,
            heads: config.num_attention_heads,
            head_dim: hidden / config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            position_offset,
            max_positions: config.max_position_embeddings,
            activation,
            kernels,
        })
    }

    /// The kernels this encoder runs.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Embeds each of `seqs`: the encoder runs over all of them packed one after another (no
    /// padding), then each sequence's rows are pooled and L2-normalised.
    pub fn embed(&self, seqs: &[&[u32]], pooling: Pooling) -> candle_core::Result<Vec<Vec<f32>>> {
        let free = || self.workspaces.lock().unwrap_or_else(|e| e.into_inner());
        let mut workspace = free().pop().unwrap_or_default();
        let offsets: Vec<usize> = std::iter::once(0)
            .chain(seqs.iter().scan(0, |acc, s| {
                *acc += s.len();
                Some(*acc)
            }))
            .collect();
        let result = self.forward(seqs, &offsets, &mut workspace);
        let pooled = result.map(|()| self.pool(&workspace.hidden, &offsets, pooling));
        free().push(workspace);
        pooled
    }

    /// Pools each sequence's rows of `hidden` (mean or first token) and L2-normalises.
    fn pool(&self, hidden: &[f32], offsets: &[usize], pooling: Pooling) -> Vec<Vec<f32>> {
        let width = self.hidden;
        offsets
            .windows(2)
            .map(|pair| {
                let rows = hidden[pair[0] * width..pair[1] * width].chunks_exact(width);
                // The normalised sum is the normalised mean.
                match pooling {
                    Pooling::Mean => mean_normalized(rows),
                    Pooling::Cls => mean_normalized(rows.take(1)),
                }
            })
            .collect()
    }

    /// Last hidden states of the packed sequences into `workspace.hidden` (tokens x hidden).
    fn forward(
        &self,
        seqs: &[&[u32]],
        offsets: &[usize],
        workspace: &mut Workspace,
    ) -> candle_core::Result<()> {
        let h = self.hidden;
        let total = offsets[seqs.len()];
        let Workspace {
            hidden: x,
            qkv,
            context,
            inner,
        } = workspace;
        // Every buffer is fully overwritten below, so stale contents from the last batch are fine.
        x.resize(total * h, 0.0);
        qkv.resize(total * 3 * h, 0.0);
        context.resize(total * h, 0.0);
        inner.resize(total * self.inner, 0.0);
        let words = self.words.rows()?;
        for (seq, &start) in seqs.iter().zip(offsets) {
            if self.position_offset + seq.len() > self.max_positions {
                candle_core::bail!(
                    "a window of {} tokens exceeds the {} positions of the model; lower `--max-tokens`",
                    seq.len(),
                    self.max_positions - self.position_offset
                );
            }
            for (i, &id) in seq.iter().enumerate() {
                if id as usize >= self.vocab {
                    candle_core::bail!(
                        "token id {id} is outside the model's vocabulary of {}: tokenizer.json does not belong to these weights",
                        self.vocab
                    );
                }
                let row = &mut x[(start + i) * h..(start + i + 1) * h];
                words.row(id as usize, row);
                let position = self.position_offset + i;
                let pos = &self.positions[position * h..(position + 1) * h];
                for ((v, p), t) in row.iter_mut().zip(pos).zip(&self.token_type) {
                    *v += p + t;
                }
            }
        }
        self.embedding_norm.apply(x, self.eps);

        for layer in &self.layers {
            // Q, K and V in one product, starting from the bias.
            layer.qkv.apply(x, total, qkv, false, None);
            self.attention(qkv, offsets, context);
            // x <- LayerNorm(x + b + context @ Wo^T): the residual is the product's start value.
            layer.attention_out.apply(context, total, x, true, None);
            layer.attention_norm.apply(x, self.eps);
            // The activation is applied to each tile of the product as it is stored.
            let activation = Some(self.activation);
            layer.intermediate.apply(x, total, inner, false, activation);
            layer.output.apply(inner, total, x, true, None);
            layer.output_norm.apply(x, self.eps);
        }
        Ok(())
    }

    /// Scaled dot-product attention of every sequence and head, writing each head's context
    /// into its columns of `context` (total x hidden). One task per (sequence, head): it packs
    /// that head's keys and values once, then walks query blocks.
    fn attention(&self, qkv: &[f32], offsets: &[usize], context: &mut [f32]) {
        let (h, d) = (self.hidden, self.head_dim);
        let stride = 3 * h;
        let scale = 1.0 / (d as f32).sqrt();
        let tasks: Vec<(usize, usize)> = (0..offsets.len() - 1)
            .flat_map(|seq| (0..self.heads).map(move |head| (seq, head)))
            .collect();
        let out = SharedMut(context.as_mut_ptr());
        let out_len = context.len();
        let packed = self.kernels.f32;
        tasks.into_par_iter().for_each(|(seq, head)| {
            let start = offsets[seq];
            let len = offsets[seq + 1] - start;
            if len == 0 {
                return;
            }
            let q = &qkv[start * stride + head * d..];
            let k = &qkv[start * stride + h + head * d..];
            let v = &qkv[start * stride + 2 * h + head * d..];
            ATTENTION_SCRATCH.with_borrow_mut(|scratch| {
                if let Some(kernel) = packed {
                    // Scratch left by an encoder with other kernels (tests load several).
                    if scratch.keys.kernel() != kernel {
                        scratch.keys = PackedMatrix::empty(kernel);
                        scratch.values = PackedMatrix::empty(kernel);
                    }
                    scratch.keys.repack_transposed(k, len, d, stride);
                    scratch.values.repack_rows(v, len, d, stride);
                }
                for q0 in (0..len).step_by(QUERY_BLOCK) {
                    let rows = QUERY_BLOCK.min(len - q0);
                    let AttentionScratch {
                        queries,
                        scores,
                        sums,
                        keys,
                        values,
                    } = scratch;
                    scores.resize(rows * len, 0.0);
                    sums.resize(rows, 0.0);
                    let q = &q[q0 * stride..];
                    // SAFETY: each task writes only its own head's columns of its own
                    // sequence's rows of `context`: disjoint blocks of one live buffer.
                    let ctx = unsafe {
                        let first = (start + q0) * h + head * d;
                        std::slice::from_raw_parts_mut(
                            out.get().add(first),
                            ((rows - 1) * h + d).min(out_len - first),
                        )
                    };
                    // scores = q @ k^T; weights = exp(scale * (scores - max)); ctx = weights @ v
                    // divided row by row by the weights' sums.
                    if packed.is_some() {
                        // The block's queries, copied together: rows 3 x hidden apart map to a
                        // few L1 sets (4,608 bytes apart at hidden 384) and were evicted
                        // before each next 16 keys came round.
                        queries.clear();
                        for row in q.chunks(stride).take(rows) {
                            queries.extend_from_slice(&row[..d]);
                        }
                        keys.overwrite_strided(queries, d, rows, scores, len);
                        kernels::exp_rows(scores, len, scale, sums);
                        values.overwrite_strided(scores, len, rows, ctx, h);
                    } else {
                        // SAFETY: views lie inside `qkv`, `scores` and `ctx` (shapes and
                        // strides from the packed layout above).
                        unsafe {
                            matmul(
                                rows,
                                len,
                                d,
                                MatrixMut::row_major(scores.as_mut_ptr(), len),
                                Matrix::row_major(q.as_ptr(), stride),
                                Matrix::transposed(k.as_ptr(), stride),
                                1.0,
                                false,
                                Parallelism::None,
                            );
                            kernels::exp_rows(scores, len, scale, sums);
                            matmul(
                                rows,
                                d,
                                len,
                                MatrixMut::row_major(ctx.as_mut_ptr(), h),
                                Matrix::row_major(scores.as_ptr(), len),
                                Matrix::row_major(v.as_ptr(), stride),
                                1.0,
                                false,
                                Parallelism::None,
                            );
                        }
                    }
                    for (r, &sum) in sums.iter().enumerate() {
                        let inv = 1.0 / sum;
                        ctx[r * h..r * h + d].iter_mut().for_each(|x| *x *= inv);
                    }
                }
            });
        });
    }
}

thread_local! {
    /// Attention scratch per worker thread, reused across heads, layers and batches.
    static ATTENTION_SCRATCH: std::cell::RefCell<AttentionScratch> =
        std::cell::RefCell::new(AttentionScratch {
            queries: Vec::new(),
            scores: Vec::new(),
            sums: Vec::new(),
            keys: PackedMatrix::empty(F32Kernel::Avx2),
            values: PackedMatrix::empty(F32Kernel::Avx2),
        });
}

/// A raw pointer that attention tasks share to write disjoint blocks of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: tasks write disjoint regions only (see `CpuEncoder::attention`).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    // A method, not field access, so closures capture the whole (Send) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[derive(Clone, Copy)]
struct Matrix {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl Matrix {
    fn row_major(ptr: *const f32, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: row_stride as isize,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with the given row stride.
    fn transposed(ptr: *const f32, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: 1,
            col_stride: row_stride as isize,
        }
    }
}

struct MatrixMut {
    ptr: *mut f32,
    row_stride: isize,
}

impl MatrixMut {
    fn row_major(ptr: *mut f32, row_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: row_stride as isize,
        }
    }
}

/// `dst (m x n) = [dst +] scale * lhs (m x k) @ rhs (k x n)`.
///
/// # Safety
/// Every view must be valid for its shape and strides, and `dst` must not overlap the inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: MatrixMut,
    lhs: Matrix,
    rhs: Matrix,
    scale: f32,
    accumulate: bool,
    parallelism: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr,
        1,
        dst.row_stride,
        accumulate,
        lhs.ptr,
        lhs.col_stride,
        lhs.row_stride,
        rhs.ptr,
        rhs.col_stride,
        rhs.row_stride,
        1.0,
        scale,
        false,
        false,
        false,
        parallelism,
    );
}

/// Splits large products across the rayon pool; small ones run on the calling thread.
fn gemm_parallelism(rows: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && rows >= 32 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;

    use super::*;
    use crate::bert::test_support::{config, tiny_weights};
    use crate::bert::{l2_normalize, mean_pool, BertEncoder};

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// The candle encoder (padded batch, mask, mean pooling): the reference for the CPU path.
    fn candle_embeddings(prefix: &str, model_type: &str, seqs: &[&[u32]]) -> Vec<Vec<f32>> {
        let dev = Device::Cpu;
        let vb = VarBuilder::from_tensors(tiny_weights(prefix, 12), DType::F32, &dev);
        let model = BertEncoder::load(vb, &config(model_type, 12)).unwrap();
        let width = seqs.iter().map(|s| s.len()).max().unwrap();
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        for seq in seqs {
            ids.extend(
                seq.iter()
                    .copied()
                    .chain(std::iter::repeat_n(1, width - seq.len())),
            );
            mask.extend((0..width).map(|i| u8::from(i < seq.len())));
        }
        let ids = Tensor::from_vec(ids, (seqs.len(), width), &dev).unwrap();
        let mask = Tensor::from_vec(mask, (seqs.len(), width), &dev).unwrap();
        let hidden = model.forward(&ids, Some(&mask)).unwrap();
        l2_normalize(&mean_pool(&hidden, &mask).unwrap())
            .unwrap()
            .to_vec2()
            .unwrap()
    }

    #[test]
    fn a_nan_in_a_weight_is_refused_with_the_tensor_name() {
        let cfg = config("bert", 12);
        let mut weights = tiny_weights("", 12);
        let name = weights
            .keys()
            .find(|k| k.ends_with("attention.output.LayerNorm.weight"))
            .expect("a LayerNorm weight")
            .clone();
        let shape = weights[&name].dims().to_vec();
        let mut values = weights[&name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        values[1] = f32::NAN;
        weights.insert(
            name.clone(),
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap(),
        );
        let err = CpuEncoder::load(WeightStore::Tensors(weights), &cfg, Precision::F32)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(&name) && err.contains("NaN"), "{err}");
    }

    #[test]
    fn packed_cpu_forward_matches_the_candle_encoder() {
        // Unequal lengths: the CPU path packs them without padding, candle pads and masks.
        let seqs: [&[u32]; 3] = [
            &[0, 7, 9, 23, 2],
            &[0, 4, 2],
            &[0, 11, 12, 13, 14, 15, 16, 2],
        ];
        for (prefix, model_type) in [("", "bert"), ("roberta.", "xlm-roberta")] {
            let want = candle_embeddings(prefix, model_type, &seqs);
            let cfg = config(model_type, 12);
            // Every instruction-set level this CPU has, each with its own kernels.
            for isa in isa::supported_levels() {
                let load = |precision| {
                    let store = WeightStore::Tensors(tiny_weights(prefix, 12));
                    CpuEncoder::load_for(store, &cfg, precision, isa).unwrap()
                };
                let cpu = load(Precision::F32);
                assert_eq!(cpu.kernels().isa, isa);
                let got = cpu.embed(&seqs, Pooling::Mean).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    let max_diff = g
                        .iter()
                        .zip(w)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        max_diff < 1e-5,
                        "{model_type} {isa}: max difference {max_diff}"
                    );
                }
                let int8 = load(Precision::Int8).embed(&seqs, Pooling::Mean).unwrap();
                for (q, w) in int8.iter().zip(&want) {
                    assert!(
                        cosine(q, w) > 0.99,
                        "{model_type} {isa} int8 cosine {}",
                        cosine(q, w)
                    );
                }
                // bf16 where the level has it; elsewhere a clear refusal.
                let store = WeightStore::Tensors(tiny_weights(prefix, 12));
                match CpuEncoder::load_for(store, &cfg, Precision::Bf16, isa) {
                    Ok(bf16) => {
                        assert!(super::bf16::available_at(isa));
                        let got = bf16.embed(&seqs, Pooling::Mean).unwrap();
                        for (q, w) in got.iter().zip(&want) {
                            assert!(cosine(q, w) > 0.999, "{model_type} {isa} bf16");
                        }
                    }
                    Err(err) => {
                        assert!(!super::bf16::available_at(isa));
                        assert!(err.to_string().contains("`--precision bf16`"), "{err}");
                    }
                }
            }
        }
    }

    #[test]
    fn too_long_sequences_and_unknown_ids_are_errors() {
        let cfg = config("bert", 12);
        let cpu = CpuEncoder::load(
            WeightStore::Tensors(tiny_weights("", 12)),
            &cfg,
            Precision::F32,
        )
        .unwrap();
        let long: Vec<u32> = vec![3; 13];
        assert!(cpu.embed(&[&long], Pooling::Mean).is_err());
        assert!(cpu.embed(&[&[0, 50, 2]], Pooling::Mean).is_err());
        // A failed batch leaves the encoder usable.
        assert_eq!(cpu.embed(&[&[0, 4, 2]], Pooling::Cls).unwrap()[0].len(), 8);
    }
}
