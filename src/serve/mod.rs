//! `spyglass serve`: multi-label classification, embeddings (TEI and OpenAI shapes), health,
//! info, Prometheus metrics and per-topic Atom feeds over HTTP, with one model shared by
//! every request and encoder batches gathered across requests.

pub mod atom;
pub mod batcher;
pub mod metrics;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::encoder::{ArticleEmbedding, Document};
use crate::io::cache::CachedEncoder;
use crate::io::records::{Article, LabelLine, RecordError};
use crate::label::{label_record, LabelOptions};
use crate::model::classify::Classifier;
use crate::model::load::LoadedModel;
use batcher::{BatchSettings, Batcher, Embedder, QueueError, Text};
use metrics::Metrics;

/// What the server accepts and how it batches.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub batch: BatchSettings,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most inputs in one request.
    pub max_inputs: usize,
    /// Longest input (title plus text), in characters.
    pub max_input_chars: usize,
    /// Bearer token every endpoint but `/health` requires, when set.
    pub api_key: Option<String>,
    /// Triage state whose reported stories `/feeds/<topic>.atom` publishes.
    pub triage_state: Option<PathBuf>,
    /// Entries per feed.
    pub feed_entries: usize,
    /// Longest a request may take, from its first byte to its answer (a slow upload included);
    /// past it the client gets 503 and its queued articles are dropped.
    pub request_timeout: std::time::Duration,
}

/// The cached encoder as the batch worker's embedder.
struct ModelEmbedder {
    encoder: CachedEncoder,
    /// Tokens an article can reach at most (its kept windows).
    max_article_tokens: usize,
}

impl Embedder for ModelEmbedder {
    fn embed(&mut self, docs: &[Document<'_>]) -> Result<Vec<ArticleEmbedding>, String> {
        self.encoder.embed(docs).map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            message
        })
    }

    fn estimate_tokens(&self, doc: Document<'_>) -> usize {
        // About 3-4 bytes per token in the languages the models read; cheap and never zero.
        let bytes = doc.title.map_or(0, str::len) + doc.text.len();
        (bytes / 3 + 2).min(self.max_article_tokens)
    }
}

/// Shared by every request.
pub struct App {
    batcher: Batcher,
    classifier: Classifier,
    /// Each topic's threshold, in classifier order.
    thresholds: Vec<f32>,
    model_name: String,
    encoder_id: String,
    hidden_size: usize,
    info: Value,
    metrics: Arc<Metrics>,
    settings: ServeSettings,
    /// Makes feed entry ids unique to the state file.
    state_id: String,
}

/// The running server's parts: the router to serve, and the encoder thread to join once the
/// router (and with it every handle to the batcher) is dropped.
pub struct Server {
    pub router: Router,
    pub worker: std::thread::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("triage state `{0}` does not exist; run `spyglass triage --state {0}` first, or leave out `--triage-state`")]
    NoState(String),
}

/// Builds the server around a loaded model: starts the encoder thread and returns the routes.
pub fn build(model: LoadedModel, settings: ServeSettings) -> Result<Server, ServeError> {
    let state_id = match &settings.triage_state {
        Some(path) => {
            if !path.is_file() {
                return Err(ServeError::NoState(path.display().to_string()));
            }
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            crate::util::sha256_hex(canonical.to_string_lossy().as_bytes())[..16].to_string()
        }
        None => String::new(),
    };
    let LoadedModel {
        encoder,
        classifier,
        taxonomy,
        model_name,
        manifest,
        ..
    } = model;
    let mut thresholds = vec![0.5; classifier.topics.len()];
    for head in &classifier.heads {
        for (k, &topic) in head.topic_indices.iter().enumerate() {
            thresholds[topic] = head.thresholds[k];
        }
    }
    let inner = &encoder.encoder;
    let window = inner.window_config();
    let files = inner.files();
    let space = encoder.space();
    let info = json!({
        "model": model_name,
        "spyglass_version": env!("CARGO_PKG_VERSION"),
        "encoder": {
            "id": crate::encoder::EncoderSettings::known_id(files).unwrap_or_else(|| files.id.clone()),
            "source": files.id,
            "revision": files.revision,
            "weights_sha256": space.weights_sha256,
            "hidden_size": inner.hidden_size(),
            "prefix": inner.settings().prefix,
            "window": window,
        },
        "compute": {
            "precision": inner.precision().as_str(),
            "path": inner.compute_path(),
        },
        "taxonomy": {"version": taxonomy.version, "sha256": taxonomy.hash},
        "bundle": manifest.as_ref().map(|m| json!({"name": m.name, "version": m.version, "head": m.head})),
        "topics": classifier.topics.iter().zip(&thresholds)
            .map(|(t, th)| json!({"id": t, "threshold": f32_json(*th)})).collect::<Vec<_>>(),
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_inputs": settings.max_inputs,
            "max_input_chars": settings.max_input_chars,
            "max_queue_articles": settings.batch.max_queue,
        },
        "batching": {
            "max_batch_tokens": settings.batch.max_batch_tokens,
            "max_wait_ms": settings.batch.max_wait.as_millis() as u64,
        },
        "feeds": settings.triage_state.is_some(),
    });
    // The model's Hub id where the files are a known model, so clients see which model it is
    // rather than a local path.
    let encoder_id =
        crate::encoder::EncoderSettings::known_id(files).unwrap_or_else(|| files.id.clone());
    let hidden_size = inner.hidden_size();
    let max_article_tokens = window.max_tokens * window.max_windows.max(1);
    let metrics = Arc::new(Metrics::default());
    let (batcher, worker) = Batcher::start(
        ModelEmbedder {
            encoder,
            max_article_tokens,
        },
        settings.batch,
        metrics.clone(),
    );
    let app = Arc::new(App {
        batcher,
        classifier,
        thresholds,
        model_name,
        encoder_id,
        hidden_size,
        info,
        metrics,
        state_id,
        settings,
    });
    Ok(Server {
        router: router(app),
        worker,
    })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/classify", post(classify))
        .route("/embed", post(embed_tei))
        .route("/v1/embeddings", post(embed_openai))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics_text))
        .route("/feeds/{file}", get(feed))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), authorize))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            time_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(app.clone(), measure))
        .layer(DefaultBodyLimit::max(app.settings.max_body_bytes))
        .with_state(app)
}

/// A JSON error: `{"error", "error_type"}` with its status (and `Retry-After` when busy).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.message, "error_type": self.kind})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::BAD_REQUEST => "invalid_json",
            _ => "validation",
        };
        let mut message = rejection.body_text();
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            message.push_str("; send `Content-Type: application/json`");
        }
        ApiError::new(status, kind, message)
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", e.to_string())
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see `GET /info` and the README for the API",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "wrong method for this endpoint: POST /classify, /embed, /v1/embeddings; GET /health, /info, /metrics, /feeds/<topic>.atom",
    )
}

/// Counts every request by endpoint and status, with its latency.
async fn measure(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics.request(
        &endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Bounds every request's time, so a client that sends its body slowly (or a request stuck behind
/// a long queue) holds nothing past `--request-timeout-ms`.
async fn time_limit(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let limit = app.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} ms (`--request-timeout-ms`); retry, or send fewer articles",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// The bearer token, when one is set, compared in constant time (over SHA-256 digests, so not
/// even its length shows).
async fn authorize(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(key) = &app.settings.api_key else {
        return Ok(next.run(request).await);
    };
    if request.uri().path() == "/health" {
        return Ok(next.run(request).await);
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let ok: bool = Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(key.as_bytes()))
        .into();
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key; send `Authorization: Bearer <SPYGLASS_API_KEY>`",
        ));
    }
    Ok(next.run(request).await)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn info(State(app): State<Arc<App>>) -> Json<Value> {
    let mut info = app.info.clone();
    info["queue_depth"] = json!(app.batcher.queued());
    Json(info)
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(app.batcher.queued()),
    )
        .into_response()
}

/// The body's top-level object, refusing fields the endpoint does not know (a misspelt
/// `input` for `inputs` would otherwise be silently ignored).
fn object(body: Value, known: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::validation(
            "the body must be a JSON object, e.g. {\"inputs\": \"text\"}",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::validation(format!(
            "unknown field `{unknown}`; this endpoint takes {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(map)
}

/// Strings from a field that holds one string or an array of them.
fn texts_field(map: &Map<String, Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match map.get(field) {
        None => Err(ApiError::validation(format!("missing field `{field}`"))),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::validation(format!(
                    "`{field}[{i}]` must be a string"
                ))),
            })
            .collect(),
        Some(_) => Err(ApiError::validation(format!(
            "`{field}` must be a string or an array of strings"
        ))),
    }
}

impl App {
    /// Refuses requests past the input limits, naming the input.
    fn check_sizes(&self, field: &str, sizes: &[usize]) -> Result<(), ApiError> {
        if sizes.is_empty() {
            return Err(ApiError::validation(format!("`{field}` is empty")));
        }
        if sizes.len() > self.settings.max_inputs {
            return Err(ApiError::too_large(format!(
                "{} inputs in one request; at most {} (`--max-inputs`); split the request",
                sizes.len(),
                self.settings.max_inputs
            )));
        }
        if let Some((i, chars)) = sizes
            .iter()
            .enumerate()
            .find(|(_, &c)| c > self.settings.max_input_chars)
        {
            return Err(ApiError::too_large(format!(
                "`{field}[{i}]` has {chars} characters; at most {} (`--max-input-chars`)",
                self.settings.max_input_chars
            )));
        }
        Ok(())
    }

    async fn embed(&self, texts: Vec<Text>) -> Result<Vec<ArticleEmbedding>, ApiError> {
        let receiver = self.batcher.submit(texts)?;
        match receiver.await {
            Ok(Ok(embeddings)) => Ok(embeddings),
            Ok(Err(e)) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoder",
                format!("the encoder failed: {e}"),
            )),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is shutting down",
            )),
        }
    }
}

async fn classify(
    State(app): State<Arc<App>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Vec<Box<serde_json::value::RawValue>>>, ApiError> {
    let Json(body) = body?;
    let map = object(body, &["inputs", "topics", "min_score", "evidence"])?;
    let inputs: Vec<Value> = match map.get("inputs") {
        None => return Err(ApiError::validation("missing field `inputs`")),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(ApiError::validation(
                "`inputs` must be a string, an array of strings, or an array of {\"id\",\"title\",\"text\",\"lang\"} objects",
            ))
        }
    };
    let sizes: Vec<usize> = inputs
        .iter()
        .map(|v| match v {
            Value::String(s) => s.chars().count(),
            Value::Object(m) => ["title", "text"]
                .iter()
                .filter_map(|k| m.get(*k).and_then(Value::as_str))
                .map(|s| s.chars().count())
                .sum(),
            _ => 0,
        })
        .collect();
    app.check_sizes("inputs", &sizes)?;
    let topics = &app.classifier.topics;
    let shown = match map.get("topics") {
        None | Some(Value::Null) => vec![true; topics.len()],
        Some(Value::Array(asked)) => {
            let mut shown = vec![asked.is_empty(); topics.len()];
            for (i, t) in asked.iter().enumerate() {
                let Some(t) = t.as_str() else {
                    return Err(ApiError::validation(format!(
                        "`topics[{i}]` must be a string"
                    )));
                };
                let Some(k) = topics.iter().position(|known| known == t) else {
                    return Err(ApiError::validation(format!(
                        "`topics` names `{t}`, which is not a topic; known: {}",
                        topics.join(", ")
                    )));
                };
                shown[k] = true;
            }
            shown
        }
        Some(_) => {
            return Err(ApiError::validation(
                "`topics` must be an array of topic ids",
            ))
        }
    };
    let min_score = match map.get("min_score") {
        None | Some(Value::Null) => 0.0,
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => p as f32,
            _ => {
                return Err(ApiError::validation(
                    "`min_score` must be a probability between 0 and 1",
                ))
            }
        },
    };
    let evidence = match map.get("evidence") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::validation("`evidence` must be true or false")),
    };
    let parsed: Vec<Result<Article, RecordError>> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| crate::io::input::article_from_value("inputs", i, v))
        .collect();
    drop(inputs);
    let good: Vec<&Article> = parsed.iter().filter_map(|r| r.as_ref().ok()).collect();
    let embeddings = if good.is_empty() {
        Vec::new()
    } else {
        app.embed(
            good.iter()
                .map(|a| Text {
                    title: a.title.clone(),
                    text: a.text.clone(),
                })
                .collect(),
        )
        .await?
    };
    let app2 = app.clone();
    let results = tokio::task::spawn_blocking(move || {
        let options = LabelOptions { shown, min_score };
        let mut embeddings = embeddings.into_iter();
        parsed
            .into_iter()
            .map(|item| {
                let text = match item {
                    Ok(article) => {
                        let embedding = embeddings.next().expect("one embedding per article");
                        let mut record = label_record(
                            &app2.classifier,
                            &app2.model_name,
                            &article,
                            &embedding,
                            &options,
                        );
                        if !evidence {
                            record.evidence.clear();
                        }
                        // The record exactly as `spyglass label` writes it (field order, f32
                        // digits), with the shown topics' thresholds added at the end.
                        let mut text = serde_json::to_string(&LabelLine::Labelled(record))
                            .expect("records serialise");
                        if !evidence {
                            // `,"` cannot occur inside a JSON string (quotes there are escaped).
                            text = text.replacen(",\"evidence\":{}", "", 1);
                        }
                        let thresholds: std::collections::BTreeMap<&str, f32> = app2
                            .classifier
                            .topics
                            .iter()
                            .zip(&app2.thresholds)
                            .zip(&options.shown)
                            .filter(|(_, shown)| **shown)
                            .map(|((t, th), _)| (t.as_str(), *th))
                            .collect();
                        text.pop(); // the closing brace
                        text.push_str(",\"thresholds\":");
                        text.push_str(
                            &serde_json::to_string(&thresholds).expect("thresholds serialise"),
                        );
                        text.push('}');
                        text
                    }
                    Err(error) => {
                        // As `spyglass label`'s error lines, less the file line number.
                        #[derive(serde::Serialize)]
                        struct ErrorRow {
                            #[serde(skip_serializing_if = "Option::is_none")]
                            id: Option<String>,
                            source: String,
                            error: String,
                        }
                        serde_json::to_string(&ErrorRow {
                            id: error.id,
                            source: error.source,
                            error: error.error,
                        })
                        .expect("errors serialise")
                    }
                };
                serde_json::value::RawValue::from_string(text).expect("serialised JSON is JSON")
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("scoring failed: {e}"),
        )
    })?;
    Ok(Json(results))
}

/// An f32 as JSON with its shortest decimal form (as `spyglass label` writes it).
fn f32_json(x: f32) -> Value {
    serde_json::from_str(&serde_json::to_string(&x).expect("a float serialises"))
        .unwrap_or(Value::Null)
}

/// Text inputs of the embedding endpoints, checked against the limits.
async fn embed_texts(
    app: &App,
    texts: Vec<String>,
    field: &str,
) -> Result<Vec<ArticleEmbedding>, ApiError> {
    let sizes: Vec<usize> = texts.iter().map(|t| t.chars().count()).collect();
    app.check_sizes(field, &sizes)?;
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::validation(format!(
            "`{field}[{i}]` is empty; there is nothing to embed"
        )));
    }
    app.embed(
        texts
            .into_iter()
            .map(|text| Text { title: None, text })
            .collect(),
    )
    .await
}

/// TEI's `/embed`: `{"inputs": "text" | ["text", ...], "normalize": true}` -> `[[f32]]`.
async fn embed_tei(
    State(app): State<Arc<App>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    let Json(body) = body?;
    let map = object(
        body,
        &[
            "inputs",
            "normalize",
            "truncate",
            "truncation_direction",
            "prompt_name",
        ],
    )?;
    if map.get("normalize") == Some(&Value::Bool(false)) {
        return Err(ApiError::validation(
            "`normalize: false` is not offered: an article embedding is the L2-normalised mean of its window embeddings",
        ));
    }
    if map.get("prompt_name").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::validation(
            "`prompt_name` is not offered: inputs are embedded as passages with the encoder's passage prefix",
        ));
    }
    let texts = texts_field(&map, "inputs")?;
    let embeddings = embed_texts(&app, texts, "inputs").await?;
    Ok(Json(embeddings.into_iter().map(|e| e.embedding).collect()))
}

/// OpenAI's `/v1/embeddings`: `{"input": "text" | ["text", ...], "model": "..."}`.
async fn embed_openai(
    State(app): State<Arc<App>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let map = object(
        body,
        &["input", "model", "encoding_format", "dimensions", "user"],
    )?;
    match map.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" => {}
        Some(_) => {
            return Err(ApiError::validation(
                "`encoding_format` must be \"float\" (base64 is not offered)",
            ))
        }
    }
    match map.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(d) if d.as_u64() == Some(app.hidden_size as u64) => {}
        Some(_) => {
            return Err(ApiError::validation(format!(
                "`dimensions` must be {} (the encoder's width) or left out",
                app.hidden_size
            )))
        }
    }
    if let Some(Value::Array(items)) = map.get("input") {
        if items.iter().any(|v| v.is_number() || v.is_array()) {
            return Err(ApiError::validation(
                "`input` as token ids is not offered; send text",
            ));
        }
    }
    let texts = texts_field(&map, "input")?;
    let embeddings = embed_texts(&app, texts, "input").await?;
    let tokens: usize = embeddings
        .iter()
        .flat_map(|e| e.windows.iter().map(|w| w.tokens))
        .sum();
    // Typed, so the f32 values are written in their shortest form, as `/embed` writes them.
    #[derive(serde::Serialize)]
    struct Embedding {
        object: &'static str,
        index: usize,
        embedding: Vec<f32>,
    }
    Ok(Json(json!({
        "object": "list",
        "data": serde_json::value::to_raw_value(
            &embeddings
                .into_iter()
                .enumerate()
                .map(|(index, e)| Embedding {
                    object: "embedding",
                    index,
                    embedding: e.embedding,
                })
                .collect::<Vec<_>>()
        )
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?,
        "model": app.encoder_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// `/feeds/<topic>.atom` and `/feeds/all.atom`: the triage state's reported stories.
async fn feed(State(app): State<Arc<App>>, Path(file): Path<String>) -> Result<Response, ApiError> {
    let Some(state_path) = app.settings.triage_state.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no feeds: start `spyglass serve` with `--triage-state FILE`",
        ));
    };
    let Some(topic) = file.strip_suffix(".atom") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "feeds are `/feeds/<topic>.atom` or `/feeds/all.atom`",
        ));
    };
    if topic != "all" && !app.classifier.topics.iter().any(|t| t == topic) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no feed `{topic}`; topics: all, {}",
                app.classifier.topics.join(", ")
            ),
        ));
    }
    let topic = topic.to_string();
    let limit = app.settings.feed_entries;
    let state_id = app.state_id.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<String, String> {
        // Never create the state: a file removed since start-up is an error, not a new database.
        if !state_path.is_file() {
            return Err(format!(
                "`{}` is gone; restart `spyglass serve` with an existing `--triage-state`",
                state_path.display()
            ));
        }
        let state = crate::triage::state::State::open(&state_path).map_err(|e| e.to_string())?;
        let stories = state
            .reported_stories((topic != "all").then_some(topic.as_str()), limit)
            .map_err(|e| e.to_string())?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(atom::render(&topic, &state_id, &stories, &now))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "triage_state",
            format!("cannot read the triage state: {e}"),
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        body,
    )
        .into_response())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
