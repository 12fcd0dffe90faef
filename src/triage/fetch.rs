//! HTTP for triage: blocking clients with timeouts, redirects followed by hand (http and https
//! only), a guard against loopback, private, link-local and multicast addresses on every hop,
//! a user agent, gzip and conditional GET (ETag / Last-Modified); failures become errors that
//! say what to do.

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
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
    #[error("`{url}` redirects to `{location}`, which is not an http or https address; skipped")]
    BadRedirect { url: String, location: String },
    #[error("`{url}` leads to {address}, a loopback, private, link-local or multicast address; refused (pass `--allow-private-addresses` to fetch from such addresses for local testing)")]
    PrivateAddress { url: String, address: String },
}

/// Most redirects followed for one fetch.
pub const MAX_REDIRECTS: usize = 5;

/// Whether an address is one a page from the web must not make spyglass request: loopback,
/// private (RFC 1918, unique local), shared (CGNAT), link-local (cloud metadata lives there),
/// multicast, broadcast, unspecified or reserved.
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                // NAT64 and IPv4-compatible forms that embed a private IPv4 address
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && is_private_address(IpAddr::V4(std::net::Ipv4Addr::from(
                        (u32::from(v6.segments()[6]) << 16) | u32::from(v6.segments()[7]),
                    ))))
        }
    }
}

/// Resolves host names for the HTTP client and refuses private addresses, except for the
/// `trusted` host:port pairs (the feeds the user named) or when private addresses are allowed.
/// It runs on every connection, redirect hops included, and checks the addresses actually
/// connected to, so a name that resolves differently the second time cannot slip past.
struct GuardedResolver {
    trusted: Arc<HashSet<String>>,
    allow_private: bool,
}

impl ureq::Resolver for GuardedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        let addresses: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
        if self.allow_private || self.trusted.contains(&netloc.to_ascii_lowercase()) {
            return Ok(addresses);
        }
        if let Some(bad) = addresses.iter().find(|a| is_private_address(a.ip())) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                PrivateRefusal(bad.ip().to_string()),
            ));
        }
        Ok(addresses)
    }
}

/// The error a refused resolution carries, so the fetch can name the address.
#[derive(Debug)]
struct PrivateRefusal(String);

impl std::fmt::Display for PrivateRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "private address {}", self.0)
    }
}

impl std::error::Error for PrivateRefusal {}

/// `host:port` of a URL, as the resolver is asked for it.
pub fn netloc(url: &url::Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}").to_ascii_lowercase())
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

/// The addresses triage may fetch from.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// `host:port` of the feeds the user named: their own servers, reachable whatever their
    /// address (a feed on 127.0.0.1 is the user's choice). Article pages never get this trust.
    pub trusted_feed_hosts: HashSet<String>,
    /// Fetch from private addresses too (`--allow-private-addresses`, for local testing).
    pub allow_private: bool,
}

pub struct Fetcher {
    /// For feeds: trusts the feed hosts the user named.
    feeds: ureq::Agent,
    /// For article pages named by feed content: trusts no private address.
    pages: ureq::Agent,
    timeout: Duration,
}

/// Which client a fetch goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Feed,
    Page,
}

impl Fetcher {
    /// The `--timeout`: each request's limit, and the deadline for parsing what it brought.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new(timeout: Duration, user_agent: &str, policy: &AddressPolicy) -> Self {
        let agent = |trusted: HashSet<String>| {
            ureq::AgentBuilder::new()
                .timeout_connect(timeout)
                .timeout(timeout)
                // Redirects are followed by `get`, which checks each Location first.
                .redirects(0)
                .resolver(GuardedResolver {
                    trusted: Arc::new(trusted),
                    allow_private: policy.allow_private,
                })
                .user_agent(user_agent)
                .build()
        };
        Self {
            feeds: agent(policy.trusted_feed_hosts.clone()),
            pages: agent(HashSet::new()),
            timeout,
        }
    }

    /// GETs `url`, conditionally when `validators` holds caching headers, following up to
    /// [`MAX_REDIRECTS`] redirects to http and https addresses.
    pub fn get(
        &self,
        url: &str,
        validators: &Validators,
        accept: &str,
        purpose: Purpose,
    ) -> Result<Fetched, FetchError> {
        let agent = match purpose {
            Purpose::Feed => &self.feeds,
            Purpose::Page => &self.pages,
        };
        let mut current = url::Url::parse(url).map_err(|e| FetchError::Transport {
            url: url.to_string(),
            detail: format!("not a valid URL ({e})"),
        })?;
        if !matches!(current.scheme(), "http" | "https") {
            return Err(FetchError::Transport {
                url: url.to_string(),
                detail: "only http and https addresses are fetched".into(),
            });
        }
        let mut hops = 0;
        let response = loop {
            let mut request = agent.request_url("GET", &current).set("Accept", accept);
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
                Err(ureq::Error::Transport(t)) => {
                    return Err(self.transport_error(current.as_str(), &t))
                }
            };
            if !matches!(response.status(), 301 | 302 | 303 | 307 | 308) {
                break response;
            }
            let location = response.header("Location").unwrap_or_default().to_string();
            let next = current
                .join(&location)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| FetchError::BadRedirect {
                    url: current.to_string(),
                    location: location.clone(),
                })?;
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(FetchError::Transport {
                    url: url.to_string(),
                    detail: format!("too many redirects (more than {MAX_REDIRECTS})"),
                });
            }
            current = next;
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
        let final_url = current.to_string();
        // The whole header, parameters included: the page's charset is one of them.
        let content_type = response
            .header("content-type")
            .unwrap_or_else(|| response.content_type())
            .to_string();
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
        let refused = std::error::Error::source(t)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|e| e.get_ref())
            .and_then(|inner| inner.downcast_ref::<PrivateRefusal>());
        if let Some(PrivateRefusal(address)) = refused {
            return FetchError::PrivateAddress {
                url: url.to_string(),
                address: address.clone(),
            };
        }
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

    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private_address(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private_address(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn resolver_refuses_private_addresses_unless_trusted_or_allowed() {
        use ureq::Resolver;
        let guarded = GuardedResolver {
            trusted: Arc::new(HashSet::from(["localhost:8080".to_string()])),
            allow_private: false,
        };
        let err = guarded.resolve("127.0.0.1:9").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
        assert!(guarded.resolve("[::1]:80").is_err());
        assert!(guarded.resolve("LOCALHOST:8080").is_ok());
        let open = GuardedResolver {
            trusted: Arc::new(HashSet::new()),
            allow_private: true,
        };
        assert!(open.resolve("127.0.0.1:9").is_ok());
    }
}
