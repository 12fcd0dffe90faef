//! HTTP for triage: one blocking client with timeouts, redirects, a user agent, gzip and
//! conditional GET (ETag / Last-Modified); failures become errors that say what to do.

use std::io::Read;
use std::time::Duration;

use super::timespec::format_duration;

/// Largest response body read, in bytes.
pub const MAX_BODY_BYTES: u64 = 16 << 20;

pub const DEFAULT_USER_AGENT: &str =
    concat!("spyglass/", env!("CARGO_PKG_VERSION"), " (feed triage)");

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP {status} {reason} from `{url}`; {hint}")]
    Status {
        url: String,
        status: u16,
        reason: String,
        hint: &'static str,
    },
    #[error("no answer from `{url}` within {after} (`--timeout`); the server is slow or down: try again later or raise `--timeout`")]
    Timeout { url: String, after: String },
    #[error("cannot connect to `{url}`: {detail}; check the address")]
    Connect { url: String, detail: String },
    #[error("`{url}` answered with more than {} MiB; skipped", MAX_BODY_BYTES >> 20)]
    TooLarge { url: String },
    #[error("cannot fetch `{url}`: {detail}")]
    Transport { url: String, detail: String },
}

/// Caching headers from a previous fetch, sent back as `If-None-Match` / `If-Modified-Since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Debug)]
pub enum Fetched {
    /// 304: nothing changed since the validators were issued.
    NotModified,
    Body {
        bytes: Vec<u8>,
        /// The URL after redirects.
        final_url: String,
        content_type: String,
        validators: Validators,
    },
}

pub struct Fetcher {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(timeout: Duration, user_agent: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .redirects(5)
            .user_agent(user_agent)
            .build();
        Self { agent, timeout }
    }

    /// GETs `url`, conditionally when `validators` holds caching headers.
    pub fn get(
        &self,
        url: &str,
        validators: &Validators,
        accept: &str,
    ) -> Result<Fetched, FetchError> {
        let mut request = self.agent.get(url).set("Accept", accept);
        if let Some(etag) = &validators.etag {
            request = request.set("If-None-Match", etag);
        }
        if let Some(since) = &validators.last_modified {
            request = request.set("If-Modified-Since", since);
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(status, r)) => {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status,
                    reason: r.status_text().to_string(),
                    hint: status_hint(status),
                })
            }
            Err(ureq::Error::Transport(t)) => return Err(self.transport_error(url, &t)),
        };
        if response.status() == 304 {
            return Ok(Fetched::NotModified);
        }
        if !(200..300).contains(&response.status()) {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status(),
                reason: response.status_text().to_string(),
                hint: status_hint(response.status()),
            });
        }
        let final_url = response.get_url().to_string();
        let content_type = response.content_type().to_string();
        let validators = Validators {
            etag: response.header("ETag").map(str::to_string),
            last_modified: response.header("Last-Modified").map(str::to_string),
        };
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(MAX_BODY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error(url, &e))?;
        if bytes.len() as u64 > MAX_BODY_BYTES {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
            });
        }
        Ok(Fetched::Body {
            bytes,
            final_url,
            content_type,
            validators,
        })
    }

    fn timeout_error(&self, url: &str) -> FetchError {
        FetchError::Timeout {
            url: url.to_string(),
            after: format_duration(self.timeout),
        }
    }

    fn io_error(&self, url: &str, e: &std::io::Error) -> FetchError {
        if is_timeout(e.kind(), &e.to_string()) {
            return self.timeout_error(url);
        }
        FetchError::Transport {
            url: url.to_string(),
            detail: e.to_string(),
        }
    }

    fn transport_error(&self, url: &str, t: &ureq::Transport) -> FetchError {
        let detail = t
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| t.to_string());
        let io_kind = std::error::Error::source(t)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map(|e| e.kind());
        if is_timeout(io_kind.unwrap_or(std::io::ErrorKind::Other), &t.to_string()) {
            return self.timeout_error(url);
        }
        match t.kind() {
            ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => FetchError::Connect {
                url: url.to_string(),
                detail: t.to_string(),
            },
            ureq::ErrorKind::TooManyRedirects => FetchError::Transport {
                url: url.to_string(),
                detail: "too many redirects (more than 5)".into(),
            },
            _ => FetchError::Transport {
                url: url.to_string(),
                detail,
            },
        }
    }
}

fn is_timeout(kind: std::io::ErrorKind, message: &str) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || message.contains("timed out")
        || message.contains("timeout")
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "the server refuses access: check the URL or whether the feed needs a login",
        404 | 410 => "it is gone or has moved: check the URL on the publisher's site",
        429 => "the server is rate-limiting: poll less often (`--watch`) and try again later",
        500..=599 => "the server failed: try again later",
        _ => "check the URL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_recognised_by_kind_or_message() {
        assert!(is_timeout(std::io::ErrorKind::TimedOut, ""));
        assert!(is_timeout(std::io::ErrorKind::Other, "read timed out"));
        assert!(!is_timeout(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused"
        ));
        assert!(status_hint(404).contains("gone"));
        assert!(status_hint(503).contains("later"));
    }
}
