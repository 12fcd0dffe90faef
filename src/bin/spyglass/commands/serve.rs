//! `spyglass serve`: load the model once, then answer HTTP until Ctrl-C or SIGTERM.

use std::time::Duration;

use anyhow::Context;

use super::model::load_model;
use super::Outcome;
use crate::cli::ServeArgs;
use spyglass::serve::batcher::BatchSettings;
use spyglass::serve::{build, shutdown_signal, ServeSettings};

pub fn run(args: &ServeArgs) -> anyhow::Result<Outcome> {
    let api_key = std::env::var("SPYGLASS_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    let model = load_model(&args.model, &args.encoder, &args.cache)?;
    let model_name = model.model_name.clone();
    let server = build(
        model,
        ServeSettings {
            batch: BatchSettings {
                max_batch_tokens: args.max_batch_tokens,
                max_wait: Duration::from_millis(args.max_wait_ms),
                max_queue: args.max_queue,
            },
            max_body_bytes: args.max_body_bytes,
            max_inputs: args.max_inputs,
            max_input_chars: args.max_input_chars,
            api_key: api_key.clone(),
            triage_state: args.triage_state.clone(),
            feed_entries: args.feed_entries,
            request_timeout: Duration::from_millis(args.request_timeout_ms as u64),
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on `{}` (`--bind`); is another server using the port?",
                    args.bind
                )
            })?;
        let address = listener.local_addr().context("cannot read the bound address")?;
        if !address.ip().is_loopback() && api_key.is_none() {
            eprintln!("warning: listening on {address}, beyond this machine, with no API key; set `SPYGLASS_API_KEY` to require one");
        }
        // Tests and scripts read this line to find the port (`--bind 127.0.0.1:0`).
        eprintln!(
            "serving {model_name} on http://{address} (POST /classify, /embed, /v1/embeddings; GET /health, /info, /metrics{}){}",
            if args.triage_state.is_some() { ", /feeds/<topic>.atom" } else { "" },
            if api_key.is_some() { "; API key required" } else { "" }
        );
        axum::serve(listener, server.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("the server stopped")?;
        anyhow::Ok(())
    })?;
    // Every handle to the encoder thread is gone with the router: it ends once idle.
    let _ = server.worker.join();
    eprintln!("stopped: answered every request in flight");
    Ok(Outcome::Ok)
}
