//! Encoder probes: a few short articles a bundle embeds and scores when it is trained, so that a
//! different copy of its encoder (the Hub's weights, a re-saved file) is judged by what it
//! computes rather than by its bytes.

use serde::{Deserialize, Serialize};

use crate::encoder::{Document, Encoder, EncoderError, Precision};
use crate::model::classify::Classifier;

/// Probe articles, written for this purpose: one per topic and one about none of them, in six
/// languages and four scripts, each short enough for one window.
pub const PROBE_ARTICLES: &[(&str, &str)] = &[
    (
        "Engineer charged with passing chip designs to foreign agents",
        "Prosecutors say a design engineer met intelligence officers abroad and handed over layouts of an unreleased processor in exchange for cash.",
    ),
    (
        "Krankenhausverbund nach Hackerangriff offline",
        "Eine Ransomware-Gruppe hat die Server mehrerer Kliniken verschlüsselt; Operationen wurden verschoben und Notfälle umgeleitet.",
    ),
    (
        "电商平台数千万用户资料遭窃取",
        "警方表示，内部员工将用户姓名、电话和地址导出并出售给诈骗团伙，涉及数据超过三千万条。",
    ),
    (
        "El Gobierno bloquea la compra de un fabricante de radares",
        "El Consejo de Ministros vetó la adquisición por un fondo extranjero tras un informe que alertaba de riesgos para la defensa nacional.",
    ),
    (
        "半導体製造装置の対中輸出、規制をさらに強化",
        "政府は先端半導体の製造装置について輸出許可の対象を広げ、国内メーカーは中国向けの出荷計画を見直している。",
    ),
    (
        "Le club lyonnais remporte la finale de la coupe",
        "Devant un stade comble, l'équipe a marqué deux buts en seconde période et soulevé le trophée pour la première fois depuis dix ans.",
    ),
];

/// How far another copy of the encoder may stray from the probes recorded at training and still
/// be accepted: the lowest cosine between a probe's recorded and fresh article embeddings, and the
/// largest change of any calibrated topic score.
///
/// Measured (`tests/cli_encoder_copies.rs`, ignored tests): copies of the test encoder whose
/// matrices carry noise as large as 4-bit block quantisation's rounding error (factor 1: how far
/// a quantised copy and the original weights are apart) reproduce the shipped bundle's probes at
/// cosine 0.984-0.986, scores moving by 0.06-0.13, at f32 and int8 alike, and score the test
/// split within 0.004 macro-F1 of the bundle's own copy (paired bootstrap, not significant).
/// Twice that noise gives cosine 0.93 and costs 0.019; eight times, 0.65. Another encoder of the
/// same width lands in an unrelated space, lower still.
pub const TOLERANCE: Tolerance = Tolerance {
    min_cosine: 0.97,
    max_score_change: 0.25,
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub min_cosine: f32,
    pub max_score_change: f32,
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cosine >= {} and score change <= {}",
            self.min_cosine, self.max_score_change
        )
    }
}

/// What a bundle records about its encoder's outputs at training time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Probes {
    /// The precision of the forward pass that embedded them.
    pub precision: String,
    pub articles: Vec<ProbeArticle>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeArticle {
    pub title: String,
    pub text: String,
    /// The article embedding (mean of windows, L2-normalised), stored as base64 of
    /// little-endian f32 so the manifest stays readable and the values exact.
    #[serde(with = "f32_base64")]
    pub embedding: Vec<f32>,
    /// Calibrated score per bundle topic, in the manifest's topic order.
    pub scores: Vec<f32>,
}

/// How closely an encoder reproduced a bundle's probes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeMatch {
    pub min_cosine: f32,
    pub max_score_change: f32,
    pub probes: usize,
}

impl ProbeMatch {
    pub fn within(&self, tolerance: Tolerance) -> bool {
        self.min_cosine >= tolerance.min_cosine
            && self.max_score_change <= tolerance.max_score_change
    }
}

impl std::fmt::Display for ProbeMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lowest cosine {:.6} to the bundle's {} probe embeddings, largest topic-score change {:.4}",
            self.min_cosine, self.probes, self.max_score_change
        )
    }
}

/// Embeds and scores the probe articles. `classifier` must cover exactly the bundle's topics,
/// in its order.
pub fn record(
    encoder: &Encoder,
    classifier: &Classifier,
    precision: Precision,
) -> Result<Probes, Box<EncoderError>> {
    let docs: Vec<Document<'_>> = PROBE_ARTICLES
        .iter()
        .map(|(title, text)| Document {
            title: Some(title),
            text,
        })
        .collect();
    let embeddings = encoder.embed(&docs, docs.len()).map_err(Box::new)?;
    let articles = docs
        .iter()
        .zip(&embeddings)
        .map(|(doc, emb)| ProbeArticle {
            title: doc.title.unwrap_or_default().to_string(),
            text: doc.text.to_string(),
            embedding: emb.embedding.clone(),
            scores: classifier.predict(emb, *doc).probs,
        })
        .collect();
    Ok(Probes {
        precision: precision.as_str().to_string(),
        articles,
    })
}

/// Embeds and scores the recorded probe articles again with `encoder`, and measures how far the
/// results moved.
pub fn compare(
    encoder: &Encoder,
    classifier: &Classifier,
    probes: &Probes,
) -> Result<ProbeMatch, Box<EncoderError>> {
    let docs: Vec<Document<'_>> = probes
        .articles
        .iter()
        .map(|a| Document {
            title: Some(&a.title),
            text: &a.text,
        })
        .collect();
    let embeddings = encoder.embed(&docs, docs.len().max(1)).map_err(Box::new)?;
    Ok(measure(
        probes,
        embeddings
            .iter()
            .zip(&docs)
            .map(|(emb, doc)| (emb.embedding.clone(), classifier.predict(emb, *doc).probs)),
    ))
}

/// The worst cosine and score change between recorded probes and fresh (embedding, scores)
/// pairs. A length mismatch counts as no match at all.
pub fn measure(probes: &Probes, fresh: impl Iterator<Item = (Vec<f32>, Vec<f32>)>) -> ProbeMatch {
    let mut result = ProbeMatch {
        min_cosine: 1.0,
        max_score_change: 0.0,
        probes: probes.articles.len(),
    };
    for (recorded, (embedding, scores)) in probes.articles.iter().zip(fresh) {
        let cosine = cosine(&recorded.embedding, &embedding);
        result.min_cosine = result.min_cosine.min(cosine);
        if recorded.scores.len() != scores.len() {
            result.max_score_change = f32::INFINITY;
            continue;
        }
        for (a, b) in recorded.scores.iter().zip(&scores) {
            // NaN compares false and would hide in max(); treat it as the worst change.
            let change = (a - b).abs();
            result.max_score_change = if change.is_nan() {
                f32::INFINITY
            } else {
                result.max_score_change.max(change)
            };
        }
    }
    result
}

/// Serde for a `Vec<f32>` as base64 of its little-endian bytes.
mod f32_base64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        if bytes.len() % 4 != 0 {
            return Err(serde::de::Error::custom(
                "an embedding's base64 must hold whole f32 values (a multiple of 4 bytes)",
            ));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return -1.0;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let c = dot / (na * nb);
    if c.is_finite() {
        c as f32
    } else {
        -1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes() -> Probes {
        Probes {
            precision: "f32".into(),
            articles: vec![
                ProbeArticle {
                    title: "a".into(),
                    text: "b".into(),
                    embedding: vec![0.6, 0.8],
                    scores: vec![0.1, 0.9],
                },
                ProbeArticle {
                    title: "c".into(),
                    text: "d".into(),
                    embedding: vec![1.0, 0.0],
                    scores: vec![0.5, 0.5],
                },
            ],
        }
    }

    #[test]
    fn measure_reports_the_worst_probe() {
        let p = probes();
        let same = measure(
            &p,
            p.articles
                .iter()
                .map(|a| (a.embedding.clone(), a.scores.clone())),
        );
        assert_eq!(same.probes, 2);
        assert!((same.min_cosine - 1.0).abs() < 1e-6, "{same}");
        assert!(same.max_score_change < 1e-7, "{same}");
        assert!(same.within(TOLERANCE));

        // The second probe turns by 90 degrees and one score moves by 0.3.
        let moved = measure(
            &p,
            vec![
                (vec![0.6, 0.8], vec![0.1, 0.9]),
                (vec![0.0, 1.0], vec![0.8, 0.5]),
            ]
            .into_iter(),
        );
        assert!(moved.min_cosine.abs() < 1e-6, "{moved}");
        assert!((moved.max_score_change - 0.3).abs() < 1e-6, "{moved}");
        assert!(!moved.within(TOLERANCE));
    }

    #[test]
    fn probes_round_trip_exactly_through_json() {
        let mut p = probes();
        p.articles[0].embedding = vec![0.1, -3.5e-8, f32::MIN_POSITIVE, 1.0 / 3.0];
        let text = serde_json::to_string_pretty(&p).unwrap();
        assert!(text.contains("\"embedding\": \""), "{text}");
        let back: Probes = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
        let bad = text.replacen("\"embedding\": \"", "\"embedding\": \"AA", 1);
        assert!(serde_json::from_str::<Probes>(&bad).is_err());
    }

    #[test]
    fn nan_or_missing_scores_never_pass() {
        let p = probes();
        let nan = measure(&p, vec![(vec![0.6, 0.8], vec![f32::NAN, 0.9])].into_iter());
        assert!(!nan.within(TOLERANCE), "{nan}");
        let short = measure(&p, vec![(vec![0.6, 0.8], vec![0.1])].into_iter());
        assert!(!short.within(TOLERANCE), "{short}");
        let nan_embedding = measure(&p, vec![(vec![f32::NAN, 0.8], vec![0.1, 0.9])].into_iter());
        assert!(!nan_embedding.within(TOLERANCE));
    }
}
