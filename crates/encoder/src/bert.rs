//! BERT-family encoders (BERT and XLM-RoBERTa checkpoints): the `config.json` fields both forward
//! passes read, the candle path as a thin wrapper over candle-transformers' `BertModel` and
//! `XLMRobertaModel`, and the pooling that turns its hidden states into embeddings.
//!
//! The two architectures differ only in tensor prefixes and in where position ids start (XLM-R
//! counts from `pad_token_id + 1`); candle-transformers implements each, so spyglass keeps only
//! the choice between them and the mapping from one `config.json` to their configs.

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::{Activation, VarBuilder};
use candle_transformers::models::bert::{self, BertModel, HiddenAct};
use candle_transformers::models::xlm_roberta::{self, XLMRobertaModel};
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

    /// candle-transformers' BERT config. Dropout and initialisation fields do not affect
    /// inference, so they keep its defaults.
    fn bert_config(&self) -> Result<bert::Config> {
        let hidden_act = match self.activation()? {
            Activation::Gelu => HiddenAct::Gelu,
            Activation::NewGelu => HiddenAct::GeluApproximate,
            Activation::Relu => HiddenAct::Relu,
            other => candle_core::bail!("no BERT activation for {other:?}"),
        };
        Ok(bert::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            layer_norm_eps: self.layer_norm_eps,
            pad_token_id: self.pad_token_id,
            model_type: self.model_type.clone(),
            ..bert::Config::default()
        })
    }

    /// candle-transformers' XLM-R config (it has no defaults; dropout is unused at inference).
    fn xlm_roberta_config(&self) -> Result<xlm_roberta::Config> {
        Ok(xlm_roberta::Config {
            hidden_size: self.hidden_size,
            layer_norm_eps: self.layer_norm_eps,
            attention_probs_dropout_prob: 0.0,
            hidden_dropout_prob: 0.0,
            num_attention_heads: self.num_attention_heads,
            position_embedding_type: "absolute".into(),
            intermediate_size: self.intermediate_size,
            hidden_act: self.activation()?,
            num_hidden_layers: self.num_hidden_layers,
            vocab_size: self.vocab_size,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            pad_token_id: self.pad_token_id as u32,
        })
    }

    /// `hidden_act` as one of the three activations BERT-family checkpoints use. Both
    /// candle-transformers configs would deserialize the name themselves, but with different
    /// spellings (BERT's has no `gelu_new`), so the names `transformers` writes are read here.
    fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "gelu" | "gelu_python" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::NewGelu),
            "relu" => Ok(Activation::Relu),
            other => candle_core::bail!("unsupported hidden_act `{other}` in config.json"),
        }
    }
}

/// candle-transformers' model for the checkpoint's architecture.
enum Model {
    Bert(BertModel),
    XlmRoberta(XLMRobertaModel),
}

/// A BERT or XLM-RoBERTa encoder without pooler on candle-transformers: returns the last hidden
/// states. The candle path (GPU, and the portable CPU reference the fused CPU path is tested
/// against).
pub struct BertEncoder {
    model: Model,
    device: Device,
}

impl BertEncoder {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        if let Some(kind) = config.position_embedding_type.as_deref() {
            if kind != "absolute" {
                candle_core::bail!("unsupported position_embedding_type `{kind}` in config.json");
            }
        }
        // Checkpoints saved from task heads nest the encoder under `bert.` or `roberta.`; the
        // shared multilingual-e5-small has no prefix. `BertModel::load` only falls back to a
        // `model_type` prefix and `XLMRobertaModel::new` to none, so find it here for both.
        let vb = ["bert", "roberta", "xlm-roberta"]
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.word_embeddings.weight")))
            .map_or(vb.clone(), |p| vb.pp(p));
        let model = match config.architecture() {
            Architecture::Bert => Model::Bert(BertModel::load(vb.clone(), &config.bert_config()?)?),
            Architecture::XlmRoberta => Model::XlmRoberta(XLMRobertaModel::new(
                &config.xlm_roberta_config()?,
                vb.clone(),
            )?),
        };
        Ok(Self {
            model,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `input_ids`: (batch, seq) u32; `attention_mask`: (batch, seq) of 0/1, or None when no
    /// position is padding. Returns (batch, seq, hidden).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        // Single-segment inputs: every token type is 0, as `transformers` fills them.
        let token_type_ids = input_ids.zeros_like()?;
        match &self.model {
            // Takes 1 to attend and 0 to mask, and turns it into the additive bias itself.
            Model::Bert(model) => model.forward(input_ids, &token_type_ids, attention_mask),
            // Same mask convention, but required. Its position ids count non-padding tokens from
            // `pad_token_id + 1`, as `transformers` does, so padding must use `pad_token_id`.
            Model::XlmRoberta(model) => {
                let ones;
                let mask = match attention_mask {
                    Some(mask) => mask,
                    None => {
                        ones = input_ids.ones_like()?;
                        &ones
                    }
                };
                model.forward(input_ids, mask, &token_type_ids, None, None, None)
            }
        }
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
        // Only real tokens: padding takes position pad_token_id in XLM-R (as in
        // `transformers`) but the next position in BERT, and pooling ignores it anyway.
        let real = mask
            .to_dtype(DType::F32)
            .unwrap()
            .unsqueeze(D::Minus1)
            .unwrap();
        let diff = (out_a - out_b)
            .unwrap()
            .broadcast_mul(&real)
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
    fn hidden_act_names_of_transformers_load_for_both_architectures() {
        // candle-transformers' BERT config spells the tanh GELU `geluapproximate`; config.json
        // says `gelu_new`. Both architectures must load it, and a nested `bert.` prefix too.
        let dev = Device::Cpu;
        for (prefix, model_type) in [("", "bert"), ("bert.", "bert"), ("roberta.", "xlm-roberta")] {
            for act in ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"] {
                let mut cfg = config(model_type, 12);
                cfg.hidden_act = act.into();
                let vb = VarBuilder::from_tensors(tiny_weights(prefix, 12), DType::F32, &dev);
                let model = BertEncoder::load(vb, &cfg).unwrap();
                let ids = Tensor::new(&[[0u32, 4, 2]], &dev).unwrap();
                assert_eq!(model.forward(&ids, None).unwrap().dims(), &[1, 3, 8]);
            }
        }
        let mut cfg = config("bert", 12);
        cfg.hidden_act = "swish".into();
        let vb = VarBuilder::from_tensors(tiny_weights("", 12), DType::F32, &dev);
        let err = BertEncoder::load(vb, &cfg)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("unsupported hidden_act `swish`"), "{err}");
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
