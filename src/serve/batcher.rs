//! Batching across requests: one worker thread owns the encoder; requests queue their articles,
//! and each encoder batch takes articles round-robin from the waiting requests up to a token
//! budget, so a large request shares the encoder with small ones instead of starving them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::encoder::{ArticleEmbedding, Document};

/// How requests are gathered into encoder batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Estimated tokens per encoder batch (at least one article always goes).
    pub max_batch_tokens: usize,
    /// How long the first waiting article may wait for others to join its batch.
    pub max_wait: Duration,
    /// Articles waiting at most; past it requests are turned away (503).
    pub max_queue: usize,
}

/// One article to embed: title and text.
#[derive(Debug, Clone)]
pub struct Text {
    pub title: Option<String>,
    pub text: String,
}

impl Text {
    fn document(&self) -> Document<'_> {
        Document {
            title: self.title.as_deref(),
            text: &self.text,
        }
    }
}

/// Embeds batches of documents: the model behind the worker (the cached encoder in `serve`, a
/// fake in tests).
pub trait Embedder: Send + 'static {
    fn embed(&mut self, docs: &[Document<'_>]) -> Result<Vec<ArticleEmbedding>, String>;
    /// A rough token count of an article, for the batch budget.
    fn estimate_tokens(&self, doc: Document<'_>) -> usize;
}

/// What the worker reports, for metrics.
pub trait BatchObserver: Send + Sync + 'static {
    fn batch(&self, articles: usize, tokens: usize, seconds: f64);
}

type Reply = oneshot::Sender<Result<Vec<ArticleEmbedding>, String>>;

struct Job {
    texts: Vec<Text>,
    reply: Reply,
    results: Vec<Option<ArticleEmbedding>>,
    /// Next article to put in a batch.
    next: usize,
    /// Articles embedded so far.
    done: usize,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the server is busy: {queued} articles are waiting (at most {max}); retry shortly")]
    Full { queued: usize, max: usize },
    #[error("the server is shutting down")]
    Closed,
}

/// The handle requests use; dropping every handle stops the worker once it has answered what
/// is queued.
#[derive(Clone)]
pub struct Batcher {
    sender: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl Batcher {
    /// Starts the worker thread that owns `embedder`.
    pub fn start(
        mut embedder: impl Embedder,
        settings: BatchSettings,
        observer: Arc<dyn BatchObserver>,
    ) -> (Self, std::thread::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel::<Job>();
        let queued = Arc::new(AtomicUsize::new(0));
        let worker_queued = queued.clone();
        let worker = std::thread::Builder::new()
            .name("spyglass-encoder".into())
            .spawn(move || {
                run_worker(
                    &mut embedder,
                    &receiver,
                    settings,
                    &worker_queued,
                    &*observer,
                )
            })
            .expect("the encoder thread starts");
        (
            Batcher {
                sender,
                queued,
                max_queue: settings.max_queue,
            },
            worker,
        )
    }

    /// Articles queued or being embedded.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Embeds `texts` in the next batches; the answer is in input order. Refused at once when
    /// the queue is full.
    pub fn submit(
        &self,
        texts: Vec<Text>,
    ) -> Result<oneshot::Receiver<Result<Vec<ArticleEmbedding>, String>>, QueueError> {
        let n = texts.len();
        let mut current = self.queued.load(Ordering::Relaxed);
        loop {
            // A request larger than the whole queue still goes when the queue is empty.
            if current > 0 && current + n > self.max_queue {
                return Err(QueueError::Full {
                    queued: current,
                    max: self.max_queue,
                });
            }
            match self.queued.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            results: vec![None; n],
            texts,
            reply,
            next: 0,
            done: 0,
        };
        if self.sender.send(job).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(QueueError::Closed);
        }
        Ok(receiver)
    }
}

fn run_worker(
    embedder: &mut dyn Embedder,
    receiver: &mpsc::Receiver<Job>,
    settings: BatchSettings,
    queued: &AtomicUsize,
    observer: &dyn BatchObserver,
) {
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match receiver.recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => return, // every handle dropped and nothing left
            }
            // Requests that already arrived share the batch whatever the budget says.
            while let Ok(job) = receiver.try_recv() {
                pending.push_back(job);
            }
            // Give other requests a moment to join this batch.
            let deadline = Instant::now() + settings.max_wait;
            while pending_tokens(embedder, &pending) < settings.max_batch_tokens {
                let left = deadline.saturating_duration_since(Instant::now());
                match receiver.recv_timeout(left) {
                    Ok(job) => pending.push_back(job),
                    Err(_) => break,
                }
            }
        } else {
            while let Ok(job) = receiver.try_recv() {
                pending.push_back(job);
            }
        }
        // A client that went away costs nothing more.
        pending.retain(|job| {
            let gone = job.reply.is_closed();
            if gone {
                queued.fetch_sub(job.texts.len() - job.done, Ordering::AcqRel);
            }
            !gone
        });
        let batch = take_batch(embedder, &mut pending, settings.max_batch_tokens);
        if batch.is_empty() {
            continue;
        }
        let docs: Vec<Document<'_>> = batch
            .iter()
            .map(|&(j, a)| pending[j].texts[a].document())
            .collect();
        let tokens: usize = docs.iter().map(|d| embedder.estimate_tokens(*d)).sum();
        let started = Instant::now();
        let result = embedder.embed(&docs);
        drop(docs);
        observer.batch(batch.len(), tokens, started.elapsed().as_secs_f64());
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        match result {
            Ok(embeddings) if embeddings.len() == batch.len() => {
                for (&(j, a), embedding) in batch.iter().zip(embeddings) {
                    pending[j].results[a] = Some(embedding);
                    pending[j].done += 1;
                }
            }
            outcome => {
                let error = match outcome {
                    Err(e) => e,
                    Ok(got) => format!(
                        "the encoder returned {} embeddings for {} articles",
                        got.len(),
                        batch.len()
                    ),
                };
                // Every request in the failed batch gets the error; the rest go on.
                let mut failed: Vec<usize> = batch.iter().map(|&(j, _)| j).collect();
                failed.sort_unstable();
                failed.dedup();
                for &j in failed.iter().rev() {
                    let job = pending.remove(j).expect("index of a pending job");
                    queued.fetch_sub(job.texts.len() - job.next, Ordering::AcqRel);
                    let _ = job.reply.send(Err(error.clone()));
                }
                continue;
            }
        }
        // Answer finished requests.
        let mut j = 0;
        while j < pending.len() {
            if pending[j].done == pending[j].texts.len() {
                let job = pending.remove(j).expect("index of a pending job");
                let embeddings = job
                    .results
                    .into_iter()
                    .map(|e| e.expect("every article of a finished job is embedded"))
                    .collect();
                let _ = job.reply.send(Ok(embeddings));
            } else {
                j += 1;
            }
        }
    }
}

fn pending_tokens(embedder: &dyn Embedder, pending: &VecDeque<Job>) -> usize {
    pending
        .iter()
        .flat_map(|job| job.texts[job.next..].iter())
        .map(|t| embedder.estimate_tokens(t.document()))
        .sum()
}

/// Picks the next batch: (job, article) pairs taken one article per waiting job in turn, until
/// the token budget is spent (the first article always goes).
fn take_batch(
    embedder: &dyn Embedder,
    pending: &mut VecDeque<Job>,
    budget: usize,
) -> Vec<(usize, usize)> {
    let mut batch = Vec::new();
    let mut tokens = 0;
    loop {
        let mut took_any = false;
        for (j, job) in pending.iter_mut().enumerate() {
            if job.next >= job.texts.len() {
                continue;
            }
            let cost = embedder.estimate_tokens(job.texts[job.next].document());
            if !batch.is_empty() && tokens + cost > budget {
                return batch;
            }
            tokens += cost;
            batch.push((j, job.next));
            job.next += 1;
            took_any = true;
        }
        if !took_any {
            return batch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Embeds each text as [its length], remembering the batches it saw.
    struct Fake {
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        fail_on: Option<String>,
    }

    impl Embedder for Fake {
        fn embed(&mut self, docs: &[Document<'_>]) -> Result<Vec<ArticleEmbedding>, String> {
            self.batches
                .lock()
                .unwrap()
                .push(docs.iter().map(|d| d.text.to_string()).collect());
            if docs.iter().any(|d| d.text == "slow") {
                std::thread::sleep(Duration::from_millis(300));
            }
            if docs.iter().any(|d| Some(d.text) == self.fail_on.as_deref()) {
                return Err("boom".into());
            }
            Ok(docs
                .iter()
                .map(|d| ArticleEmbedding {
                    embedding: vec![d.text.len() as f32],
                    windows: vec![],
                    truncated: false,
                })
                .collect())
        }
        fn estimate_tokens(&self, doc: Document<'_>) -> usize {
            doc.text.len()
        }
    }

    struct Quiet;
    impl BatchObserver for Quiet {
        fn batch(&self, _: usize, _: usize, _: f64) {}
    }

    fn texts(items: &[&str]) -> Vec<Text> {
        items
            .iter()
            .map(|t| Text {
                title: None,
                text: t.to_string(),
            })
            .collect()
    }

    fn start(fail_on: Option<&str>, max_queue: usize) -> (Batcher, Arc<Mutex<Vec<Vec<String>>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (batcher, _worker) = Batcher::start(
            Fake {
                batches: batches.clone(),
                fail_on: fail_on.map(str::to_string),
            },
            BatchSettings {
                max_batch_tokens: 10,
                max_wait: Duration::from_millis(50),
                max_queue,
            },
            Arc::new(Quiet),
        );
        (batcher, batches)
    }

    #[test]
    fn requests_share_batches_round_robin_and_get_their_own_answers_in_order() {
        let (batcher, batches) = start(None, 100);
        // While the encoder is busy, a large request and then a small one arrive: the small one
        // rides in the next batch beside the large one's first articles, not after all of them.
        let slow = batcher.submit(texts(&["slow"])).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let large = batcher
            .submit(texts(&["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff"]))
            .unwrap();
        let small = batcher.submit(texts(&["xy"])).unwrap();
        let small = small.blocking_recv().unwrap().unwrap();
        assert_eq!(small[0].embedding, vec![2.0]);
        let large = large.blocking_recv().unwrap().unwrap();
        assert_eq!(
            large.iter().map(|e| e.embedding[0]).collect::<Vec<_>>(),
            vec![4.0; 6]
        );
        slow.blocking_recv().unwrap().unwrap();
        let batches = batches.lock().unwrap();
        assert_eq!(batches[0], ["slow"], "{batches:?}");
        assert!(batches[1].contains(&"xy".to_string()), "{batches:?}");
        // Every batch keeps to the budget of 10 estimated tokens.
        for batch in batches.iter() {
            assert!(
                batch.iter().map(String::len).sum::<usize>() <= 10,
                "{batches:?}"
            );
        }
        assert_eq!(batcher.queued(), 0);
    }

    #[test]
    fn a_full_queue_turns_requests_away_and_a_failed_batch_fails_only_its_requests() {
        let (batcher, _) = start(Some("bad"), 3);
        let first = batcher.submit(texts(&["a", "b"])).unwrap();
        match batcher.submit(texts(&["c", "d"])) {
            Err(QueueError::Full { queued: 2, max: 3 }) => {}
            other => panic!("expected a full queue, got {:?}", other.map(|_| ())),
        }
        assert_eq!(first.blocking_recv().unwrap().unwrap().len(), 2);
        let bad = batcher.submit(texts(&["bad"])).unwrap();
        assert_eq!(bad.blocking_recv().unwrap().unwrap_err(), "boom");
        let good = batcher.submit(texts(&["fine"])).unwrap();
        assert!(good.blocking_recv().unwrap().is_ok());
        assert_eq!(batcher.queued(), 0);
    }

    #[test]
    fn a_request_whose_client_left_is_dropped_unembedded() {
        let (batcher, batches) = start(None, 100);
        let gone = batcher.submit(texts(&["never"; 1])).unwrap();
        drop(gone);
        let kept = batcher.submit(texts(&["kept"])).unwrap();
        kept.blocking_recv().unwrap().unwrap();
        let seen: Vec<String> = batches.lock().unwrap().concat();
        assert!(!seen.contains(&"never".to_string()), "{seen:?}");
        assert_eq!(batcher.queued(), 0);
    }
}
