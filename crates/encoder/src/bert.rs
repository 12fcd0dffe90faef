//! BERT-family transformer encoder (BERT and XLM-RoBERTa checkpoints) with a fused QKV projection.
//!
//! Mirrors `transformers`' `BertModel` / `XLMRobertaModel` (post-LayerNorm, GELU) in candle's style:
//! `load(vb, &config)` and `forward`. The two architectures differ only in tensor prefixes and in
//! where position ids start (XLM-R counts from `pad_token_id + 1`), so one implementation serves both.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

/// The fields of a checkpoint's `config.json` that the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_hidden_act() -> String {
    "gelu".to_string()
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}

/// Which family a checkpoint belongs to; decides tensor prefixes and position ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    Bert,
    XlmRoberta,
}

impl Config {
    pub fn architecture(&self) -> Architecture {
        match self.model_type.as_deref() {
            Some("xlm-roberta") | Some("roberta") | Some("camembert") => Architecture::XlmRoberta,
            _ => Architecture::Bert,
        }
    }

    /// The longest input (special tokens included) the position table allows.
    pub fn max_input_tokens(&self) -> usize {
        match self.architecture() {
            Architecture::Bert => self.max_position_embeddings,
            Architecture::XlmRoberta => self.max_position_embeddings - self.pad_token_id - 1,
        }
    }

    fn position_offset(&self) -> usize {
        match self.architecture() {
            Architecture::Bert => 0,
            Architecture::XlmRoberta => self.pad_token_id + 1,
        }
    }
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    position_offset: usize,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        Ok(Self {
            word: embedding(
                config.vocab_size,
                config.hidden_size,
                vb.pp("word_embeddings"),
            )?,
            position: embedding(
                config.max_position_embeddings,
                config.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: embedding(
                config.type_vocab_size,
                config.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(
                config.hidden_size,
                config.layer_norm_eps,
                vb.pp("LayerNorm"),
            )?,
            position_offset: config.position_offset(),
        })
    }

    /// `input_ids`: (batch, seq). Token types are all zero for single-segment inputs.
    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, seq_len) = input_ids.dims2()?;
        let start = self.position_offset as u32;
        let positions = Tensor::arange(start, start + seq_len as u32, input_ids.device())?;
        let words = self.word.forward(input_ids)?;
        let positions = self.position.forward(&positions)?;
        let token_type = self.token_type.embeddings().get(0)?;
        let summed = words.broadcast_add(&(positions.broadcast_add(&token_type))?)?;
        self.norm.forward(&summed)
    }
}

/// Self-attention with Q, K and V computed by one matrix product.
struct Attention {
    qkv: Linear,
    output: Linear,
    norm: LayerNorm,
    num_heads: usize,
    head_dim: usize,
}

/// A dense layer whose weight is stored transposed, (in, out) and contiguous, so every product
/// is a plain row-major matrix multiply with no per-call transposition.
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    /// From a `transformers` weight of shape (out, in).
    fn new(weight: Tensor, bias: Tensor) -> Result<Self> {
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

fn load_linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = vb.get(out_dim, "bias")?;
    Linear::new(weight, bias)
}

impl Attention {
    fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let hidden = config.hidden_size;
        let own = vb.pp("self");
        let mut weights = Vec::with_capacity(3);
        let mut biases = Vec::with_capacity(3);
        for name in ["query", "key", "value"] {
            weights.push(own.pp(name).get((hidden, hidden), "weight")?);
            biases.push(own.pp(name).get(hidden, "bias")?);
        }
        let qkv = Linear::new(Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?)?;
        Ok(Self {
            qkv,
            output: load_linear(hidden, hidden, vb.pp("output").pp("dense"))?,
            norm: layer_norm(
                hidden,
                config.layer_norm_eps,
                vb.pp("output").pp("LayerNorm"),
            )?,
            num_heads: config.num_attention_heads,
            head_dim: hidden / config.num_attention_heads,
        })
    }

    /// `hidden`: (batch, seq, hidden); `mask_bias`: (batch, 1, 1, seq) additive, or None when the
    /// batch has no padding.
    fn forward(&self, hidden: &Tensor, mask_bias: Option<&Tensor>) -> Result<Tensor> {
        let (batch, seq_len, width) = hidden.dims3()?;
        let qkv = linear_2d(&self.qkv, hidden)?
            .reshape((batch, seq_len, 3, self.num_heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let query = qkv.get(0)?.contiguous()?;
        let key = qkv.get(1)?.contiguous()?;
        let value = qkv.get(2)?.contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut scores = (query.matmul(&key.t()?)? * scale)?;
        if let Some(bias) = mask_bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&value)?
            .transpose(1, 2)?
            .reshape((batch, seq_len, width))?;
        let projected = linear_2d(&self.output, &context)?;
        self.norm.forward(&(projected + hidden)?)
    }
}

/// Applies a linear layer to (batch, seq, in) as one (batch*seq, in) matrix product.
fn linear_2d(layer: &Linear, xs: &Tensor) -> Result<Tensor> {
    let (batch, seq_len, width) = xs.dims3()?;
    let flat = xs.reshape((batch * seq_len, width))?;
    let out = layer.forward(&flat)?;
    let out_width = out.dim(1)?;
    out.reshape((batch, seq_len, out_width))
}

struct FeedForward {
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
    activation: Activation,
}

#[derive(Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn from_config(name: &str) -> Result<Self> {
        match name {
            "gelu" | "gelu_python" => Ok(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => candle_core::bail!("unsupported hidden_act `{other}` in config.json"),
        }
    }

    fn forward(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::GeluErf => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Relu => xs.relu(),
        }
    }
}

impl FeedForward {
    fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        Ok(Self {
            intermediate: load_linear(hidden, inner, vb.pp("intermediate").pp("dense"))?,
            output: load_linear(inner, hidden, vb.pp("output").pp("dense"))?,
            norm: layer_norm(
                hidden,
                config.layer_norm_eps,
                vb.pp("output").pp("LayerNorm"),
            )?,
            activation: Activation::from_config(&config.hidden_act)?,
        })
    }

    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let inner = self
            .activation
            .forward(&linear_2d(&self.intermediate, hidden)?)?;
        let out = linear_2d(&self.output, &inner)?;
        self.norm.forward(&(out + hidden)?)
    }
}

struct Layer {
    attention: Attention,
    feed_forward: FeedForward,
}

/// A BERT or XLM-RoBERTa encoder without pooler: returns the last hidden states.
pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    device: Device,
}

impl BertEncoder {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        if let Some(kind) = config.position_embedding_type.as_deref() {
            if kind != "absolute" {
                candle_core::bail!("unsupported position_embedding_type `{kind}` in config.json");
            }
        }
        // Checkpoints saved from task heads nest the encoder under `bert.` or `roberta.`.
        let vb = ["bert", "roberta", "xlm-roberta"]
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")))
            .map_or(vb.clone(), |p| vb.pp(p));
        let embeddings = Embeddings::load(vb.pp("embeddings"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let lvb = vb.pp(format!("encoder.layer.{i}"));
                Ok(Layer {
                    attention: Attention::load(lvb.pp("attention"), config)?,
                    feed_forward: FeedForward::load(lvb.clone(), config)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `input_ids`: (batch, seq) u32; `attention_mask`: (batch, seq) of 0/1, or None when no
    /// position is padding (the mask is then skipped entirely). Returns (batch, seq, hidden).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let mask_bias = match attention_mask {
            Some(mask) => {
                let (batch, seq_len) = mask.dims2()?;
                // 0 where attended, a large negative number where padded.
                let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 3.0e38)?;
                Some(bias.reshape((batch, 1, 1, seq_len))?)
            }
            None => None,
        };
        let mut hidden = self.embeddings.forward(input_ids)?;
        for layer in &self.layers {
            hidden = layer.attention.forward(&hidden, mask_bias.as_ref())?;
            hidden = layer.feed_forward.forward(&hidden)?;
        }
        Ok(hidden)
    }
}

/// Masked mean over the sequence: (batch, seq, hidden) and (batch, seq) -> (batch, hidden).
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

/// L2-normalises each row of a (batch, hidden) tensor.
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    let norms = xs.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norms)
}

/// A tiny random encoder in `transformers`' tensor names, shared by the encoder tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;

    use candle_core::{Device, Tensor};

    use super::Config;

    /// Random weights for a tiny encoder, named as `transformers` saves them under `prefix`.
    pub(crate) fn tiny_weights(prefix: &str, positions: usize) -> HashMap<String, Tensor> {
        let dev = Device::Cpu;
        let (hidden, inner, vocab) = (8, 16, 50);
        let mut seed = 1u64;
        let mut rand = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            Tensor::from_vec(values, shape, &dev).unwrap()
        };
        let mut w = HashMap::new();
        let mut put = |name: String, t: Tensor| {
            w.insert(format!("{prefix}{name}"), t);
        };
        put(
            "embeddings.word_embeddings.weight".into(),
            rand(&[vocab, hidden]),
        );
        put(
            "embeddings.position_embeddings.weight".into(),
            rand(&[positions, hidden]),
        );
        put(
            "embeddings.token_type_embeddings.weight".into(),
            rand(&[1, hidden]),
        );
        put("embeddings.LayerNorm.weight".into(), rand(&[hidden]));
        put("embeddings.LayerNorm.bias".into(), rand(&[hidden]));
        let l = "encoder.layer.0.";
        for name in ["query", "key", "value"] {
            put(
                format!("{l}attention.self.{name}.weight"),
                rand(&[hidden, hidden]),
            );
            put(format!("{l}attention.self.{name}.bias"), rand(&[hidden]));
        }
        put(
            format!("{l}attention.output.dense.weight"),
            rand(&[hidden, hidden]),
        );
        put(format!("{l}attention.output.dense.bias"), rand(&[hidden]));
        put(
            format!("{l}attention.output.LayerNorm.weight"),
            rand(&[hidden]),
        );
        put(
            format!("{l}attention.output.LayerNorm.bias"),
            rand(&[hidden]),
        );
        put(
            format!("{l}intermediate.dense.weight"),
            rand(&[inner, hidden]),
        );
        put(format!("{l}intermediate.dense.bias"), rand(&[inner]));
        put(format!("{l}output.dense.weight"), rand(&[hidden, inner]));
        put(format!("{l}output.dense.bias"), rand(&[hidden]));
        put(format!("{l}output.LayerNorm.weight"), rand(&[hidden]));
        put(format!("{l}output.LayerNorm.bias"), rand(&[hidden]));
        w
    }

    pub(crate) fn config(model_type: &str, positions: usize) -> Config {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": positions, "type_vocab_size": 1,
            "layer_norm_eps": 1e-5, "pad_token_id": 1, "model_type": model_type
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{config, tiny_weights};
    use super::*;

    #[test]
    fn xlm_roberta_positions_start_after_padding_index() {
        // An XLM-R checkpoint (nested under `roberta.`) is a BERT whose position table is read
        // from row pad_token_id + 1 = 2 on: drop those two rows and the outputs must agree.
        let xlmr = tiny_weights("roberta.", 12);
        let mut bert = tiny_weights("", 12);
        for (name, tensor) in &xlmr {
            bert.insert(
                name.trim_start_matches("roberta.").to_string(),
                tensor.clone(),
            );
        }
        let table = "embeddings.position_embeddings.weight";
        bert.insert(table.into(), bert[table].narrow(0, 2, 10).unwrap());
        let xlmr_cfg = config("xlm-roberta", 12);
        assert_eq!(xlmr_cfg.architecture(), Architecture::XlmRoberta);
        assert_eq!(xlmr_cfg.max_input_tokens(), 10);
        let dev = Device::Cpu;
        let a =
            BertEncoder::load(VarBuilder::from_tensors(xlmr, DType::F32, &dev), &xlmr_cfg).unwrap();
        let b = BertEncoder::load(
            VarBuilder::from_tensors(bert, DType::F32, &dev),
            &config("bert", 10),
        )
        .unwrap();
        let ids = Tensor::new(&[[0u32, 7, 9, 23, 2], [0, 4, 2, 1, 1]], &dev).unwrap();
        let mask = Tensor::new(&[[1u8, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &dev).unwrap();
        let out_a = a.forward(&ids, Some(&mask)).unwrap();
        let out_b = b.forward(&ids, Some(&mask)).unwrap();
        let diff = (out_a - out_b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "max difference {diff}");
    }

    #[test]
    fn padding_does_not_change_the_unpadded_rows() {
        let dev = Device::Cpu;
        let model = BertEncoder::load(
            VarBuilder::from_tensors(tiny_weights("", 12), DType::F32, &dev),
            &config("bert", 12),
        )
        .unwrap();
        let alone = model
            .forward(&Tensor::new(&[[0u32, 4, 2]], &dev).unwrap(), None)
            .unwrap();
        let padded_ids = Tensor::new(&[[0u32, 4, 2, 1, 1]], &dev).unwrap();
        let mask = Tensor::new(&[[1u8, 1, 1, 0, 0]], &dev).unwrap();
        let padded = model
            .forward(&padded_ids, Some(&mask))
            .unwrap()
            .narrow(1, 0, 3)
            .unwrap();
        let diff = (alone - padded)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "max difference {diff}");
    }
}
