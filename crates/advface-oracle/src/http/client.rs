//! A remote black box (an `advface serve` server, or anything speaking its API) as an
//! [`Oracle`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use advface_core::{Descriptor, Oracle, OracleError, QueryStats, RgbImage};
use advface_image::encode_png;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::retry::RetryPolicy;
use super::wire::{ErrorAnswer, Health, DESCRIBE_PATH, HEALTH_PATH};

/// Descriptor length expected unless told otherwise: face-api.js / dlib give 128.
pub const DEFAULT_DESCRIPTOR_LEN: usize = 128;

/// Requests in flight at once for one multi-image call unless told otherwise.
pub const DEFAULT_PARALLELISM: usize = 4;

/// Longest error body quoted in an error message, in characters.
const QUOTE_CHARS: usize = 300;

/// How to reach a remote black box.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL, `http://host:port` or `https://host:port`, optionally with a path prefix
    /// (routes are appended: `<url>/describe`, `<url>/health`).
    pub url: String,
    /// Bearer token sent with every request. Default `None`.
    pub token: Option<String>,
    /// Longest wait for a TCP connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Longest wait for an answer to arrive (per read). Default 60 s: a CPU model behind a
    /// busy server may queue requests.
    pub read_timeout: Duration,
    /// Retries on connection errors and HTTP 5xx. Default [`RetryPolicy::default`]
    /// (5 tries, 100 ms doubling, at most 5 s).
    pub retry: RetryPolicy,
    /// Requests in flight at once for one multi-image call (0 is taken as 1).
    /// Default [`DEFAULT_PARALLELISM`] (4).
    pub parallelism: usize,
    /// Length every descriptor must have. Default [`DEFAULT_DESCRIPTOR_LEN`] (128).
    pub descriptor_len: usize,
}

impl HttpConfig {
    /// The defaults, for the black box at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            parallelism: DEFAULT_PARALLELISM,
            descriptor_len: DEFAULT_DESCRIPTOR_LEN,
        }
    }
}

/// A setting of [`HttpConfig`] that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    /// The URL is not an http(s) base URL.
    #[error("invalid black-box URL '{url}': {reason} (expected like http://127.0.0.1:8080)")]
    BadUrl { url: String, reason: String },
    /// The token cannot be sent in a header.
    #[error("invalid bearer token: {reason}")]
    BadToken { reason: String },
    /// The descriptor length is 0.
    #[error("invalid descriptor length 0: the black box's descriptors have 128 components")]
    ZeroDescriptorLen,
}

/// A remote black box over HTTP.
///
/// Each image is one `POST /describe` and, when answered, one query of this client
/// ([`stats`](Oracle::stats)). A call with several images sends up to
/// [`HttpConfig::parallelism`] requests at once and keeps the order; after the first
/// failure it sends no new requests, and the call fails. Images answered before a call
/// fails were still answered by the server and are counted.
///
/// Failures: HTTP 429 `budget_exhausted` is [`OracleError::BudgetExhausted`]; 413 and 422
/// are [`OracleError::BadInput`]; other 4xx are [`OracleError::Status`] at once; 5xx and
/// connection errors are retried, then reported as [`OracleError::Status`] or
/// [`OracleError::Transport`]; an answer that is not a descriptor of the expected length
/// with finite values is [`OracleError::Malformed`].
///
/// A request retried after the server had answered it (a read timeout on a slow answer,
/// say) counts on the server but once here: the server's `/health` counter is the
/// authority.
pub struct HttpOracle {
    base: String,
    config: HttpConfig,
    auth: Option<String>,
    agent: ureq::Agent,
    queries: AtomicU64,
}

impl std::fmt::Debug for HttpOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOracle")
            .field("url", &self.base)
            .field("token", &self.auth.as_ref().map(|_| "<set>"))
            .field("queries", &self.queries.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Outcome of one try that did not succeed.
enum Failure {
    /// May pass: try again (the error is reported if no try is left).
    Retry(OracleError),
    /// Final.
    Fatal(OracleError),
}

impl HttpOracle {
    /// A client for the black box at `url`, with the default settings.
    pub fn connect(url: &str) -> Result<Self, HttpConfigError> {
        Self::new(HttpConfig::new(url))
    }

    /// A client with `config`. Checks the settings; does not contact the server (see
    /// [`health`](Self::health)).
    pub fn new(config: HttpConfig) -> Result<Self, HttpConfigError> {
        let base = validate_url(&config.url)?;
        let auth = match &config.token {
            None => None,
            Some(t) if t.is_empty() || t.chars().any(|c| !c.is_ascii_graphic()) => {
                return Err(HttpConfigError::BadToken {
                    reason: "it must be non-empty printable ASCII without spaces".into(),
                })
            }
            Some(t) => Some(format!("Bearer {t}")),
        };
        if config.descriptor_len == 0 {
            return Err(HttpConfigError::ZeroDescriptorLen);
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .timeout_read(config.read_timeout)
            .timeout_write(config.read_timeout)
            .redirects(0)
            // No kept-alive connections: tiny_http (the server) gives each open connection
            // a thread, and a new connection can wait in its task queue until one closes;
            // idle pooled connections held that queue up until a 60 s read timeout under
            // load. A loopback connect costs far less than one descriptor.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent(concat!("advface-oracle/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            base,
            config,
            auth,
            agent,
            queries: AtomicU64::new(0),
        })
    }

    /// The base URL (without a trailing slash).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The settings.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The server's `GET /health` answer (model, its own query counter, budget left).
    /// Not a query.
    pub fn health(&self) -> Result<Health, OracleError> {
        let url = format!("{}{HEALTH_PATH}", self.base);
        let body = self.with_retries(&url, 0, || {
            self.with_auth(self.agent.get(&url))
                .call()
                .map_err(Box::new)
        })?;
        serde_json::from_str(&body).map_err(|e| OracleError::Malformed {
            url: url.clone(),
            reason: format!("not a health answer: {e} (answer: {})", quote(&body)),
        })
    }

    /// The identity of the served model, `http:<model>` from [`HttpOracle::health`]: what a
    /// descriptor cache or store is tied to, so it survives the server moving to another
    /// host or port. Not a query.
    pub fn identity(&self) -> Result<String, OracleError> {
        Ok(format!("http:{}", self.health()?.model))
    }

    fn with_auth(&self, request: ureq::Request) -> ureq::Request {
        match &self.auth {
            Some(a) => request.set("Authorization", a),
            None => request,
        }
    }

    /// One image, one request (with retries). `requested`: images in the whole call.
    fn describe_one(&self, image: &RgbImage, requested: u64) -> Result<Descriptor, OracleError> {
        let png = encode_png(image).map_err(|e| OracleError::BadInput {
            oracle: self.base.clone(),
            reason: e.to_string(),
        })?;
        let url = format!("{}{DESCRIBE_PATH}", self.base);
        let body = self.with_retries(&url, requested, || {
            self.with_auth(self.agent.post(&url))
                .set("Content-Type", "image/png")
                .send_bytes(&png)
                .map_err(Box::new)
        })?;
        let d = parse_descriptor(&body, &url, self.config.descriptor_len)?;
        self.queries.fetch_add(1, Ordering::Relaxed);
        Ok(d)
    }

    /// Sends with retries; returns the body of a 2xx answer.
    fn with_retries(
        &self,
        url: &str,
        requested: u64,
        send: impl Fn() -> Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<String, OracleError> {
        let tries = self.config.retry.total_tries();
        let mut last = None;
        for attempt in 0..tries {
            if attempt > 0 {
                std::thread::sleep(self.config.retry.delay(attempt - 1));
            }
            match self.try_once(url, requested, &send) {
                Ok(body) => return Ok(body),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => last = Some(e),
            }
        }
        Err(match last {
            Some(OracleError::Transport { url, reason }) => OracleError::Transport {
                url,
                reason: format!("{reason} (after {tries} tries)"),
            },
            Some(OracleError::Status { url, status, body }) => OracleError::Status {
                url,
                status,
                body: format!("{body} (after {tries} tries)"),
            },
            Some(other) => other,
            None => OracleError::Transport {
                url: url.to_string(),
                reason: "no try was made".into(),
            },
        })
    }

    fn try_once(
        &self,
        url: &str,
        requested: u64,
        send: &impl Fn() -> Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<String, Failure> {
        let transport = |reason: String| OracleError::Transport {
            url: url.to_string(),
            reason,
        };
        match send().map_err(|e| *e) {
            Ok(response) => response
                .into_string()
                .map_err(|e| Failure::Retry(transport(format!("reading the answer failed: {e}")))),
            Err(ureq::Error::Status(status, response)) => {
                let body = response.into_string().unwrap_or_default();
                let e = self.status_error(url, status, &body, requested);
                if status >= 500 {
                    Err(Failure::Retry(e))
                } else {
                    Err(Failure::Fatal(e))
                }
            }
            Err(ureq::Error::Transport(t)) => match t.kind() {
                ureq::ErrorKind::ConnectionFailed
                | ureq::ErrorKind::Io
                | ureq::ErrorKind::Dns
                | ureq::ErrorKind::ProxyConnect => Err(Failure::Retry(transport(t.to_string()))),
                ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => {
                    Err(Failure::Fatal(OracleError::Malformed {
                        url: url.to_string(),
                        reason: format!("not an HTTP answer: {t}"),
                    }))
                }
                _ => Err(Failure::Fatal(transport(t.to_string()))),
            },
        }
    }

    fn status_error(&self, url: &str, status: u16, body: &str, requested: u64) -> OracleError {
        let parsed: Option<ErrorAnswer> = serde_json::from_str(body).ok();
        let message = parsed
            .as_ref()
            .map_or_else(|| quote(body), |p| p.message.clone());
        match (status, &parsed) {
            (429, Some(p)) if p.error == "budget_exhausted" => OracleError::BudgetExhausted {
                oracle: self.base.clone(),
                budget: p.budget.unwrap_or(0),
                used: p.used.unwrap_or(0),
                requested,
            },
            (413 | 422, _) => OracleError::BadInput {
                oracle: self.base.clone(),
                reason: message,
            },
            (401 | 403, _) if self.auth.is_none() => OracleError::Status {
                url: url.to_string(),
                status,
                body: format!("{message} (this client sent no token)"),
            },
            _ => OracleError::Status {
                url: url.to_string(),
                status,
                body: message,
            },
        }
    }
}

impl Oracle for HttpOracle {
    fn name(&self) -> String {
        self.base.clone()
    }

    fn descriptor_len(&self) -> Option<usize> {
        Some(self.config.descriptor_len)
    }

    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        let n = images.len();
        let requested = n as u64;
        let threads = self.config.parallelism.clamp(1, n.max(1));
        if threads == 1 {
            return images
                .iter()
                .map(|im| self.describe_one(im, requested))
                .collect();
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let slots: Vec<Mutex<Option<Result<Descriptor, OracleError>>>> =
            (0..n).map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while !failed.load(Ordering::Acquire) {
                        let i = next.fetch_add(1, Ordering::AcqRel);
                        if i >= n {
                            break;
                        }
                        let r = self.describe_one(&images[i], requested);
                        if r.is_err() {
                            failed.store(true, Ordering::Release);
                        }
                        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(n);
        let mut first_error = None;
        for slot in slots {
            match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(Ok(d)) => out.push(d),
                Some(Err(e)) => {
                    first_error = Some(e);
                    break;
                }
                // Not sent because an earlier image failed: that failure is reported.
                None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if out.len() == n => Ok(out),
            None => Err(OracleError::Transport {
                url: self.base.clone(),
                reason: "a request was not sent (internal error)".into(),
            }),
        }
    }

    fn stats(&self) -> QueryStats {
        QueryStats {
            queries: self.queries.load(Ordering::Relaxed),
            cached: 0,
        }
    }
}

/// The start of `body`, for messages.
fn quote(body: &str) -> String {
    let mut q: String = body.chars().take(QUOTE_CHARS).collect();
    if q.len() < body.len() {
        q.push_str("...");
    }
    format!("{q:?}")
}

/// Reads `{"descriptor": [...], ...}`, each component parsed from its JSON text as f32
/// (correctly rounded, so a server's shortest f32 text comes back bit for bit).
fn parse_descriptor(body: &str, url: &str, expected: usize) -> Result<Descriptor, OracleError> {
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(borrow, default)]
        descriptor: Option<&'a RawValue>,
    }
    let malformed = |reason: String| OracleError::Malformed {
        url: url.to_string(),
        reason,
    };
    let wire: Wire = serde_json::from_str(body)
        .map_err(|e| malformed(format!("not a JSON object: {e} (answer: {})", quote(body))))?;
    let raw = wire
        .descriptor
        .ok_or_else(|| malformed(format!("no \"descriptor\" field (answer: {})", quote(body))))?
        .get()
        .trim();
    let items = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| malformed(format!("\"descriptor\" is not an array: {}", quote(raw))))?;
    let values = if items.trim().is_empty() {
        Vec::new()
    } else {
        items
            .split(',')
            .enumerate()
            .map(|(i, s)| {
                let s = s.trim();
                match s.parse::<f32>() {
                    Ok(v) if v.is_finite() => Ok(v),
                    Ok(_) => Err(malformed(format!(
                        "descriptor component {i} is out of f32 range: {s}"
                    ))),
                    Err(_) => Err(malformed(format!(
                        "descriptor component {i} is not a number: {}",
                        quote(s)
                    ))),
                }
            })
            .collect::<Result<Vec<f32>, _>>()?
    };
    if values.len() != expected {
        return Err(malformed(format!(
            "descriptor length mismatch: expected {expected}, got {}",
            values.len()
        )));
    }
    Ok(Descriptor(values))
}

/// Checks an http(s) base URL; returns it without a trailing slash.
fn validate_url(url: &str) -> Result<String, HttpConfigError> {
    let bad = |reason: &str| HttpConfigError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = url.trim();
    let lower = trimmed.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &trimmed[7..]
    } else if lower.starts_with("https://") {
        &trimmed[8..]
    } else if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(bad(&format!(
            "scheme '{scheme}' is not supported; use http or https"
        )));
    } else {
        return Err(bad("no scheme; write http://HOST:PORT"));
    };
    if trimmed.contains(['?', '#']) {
        return Err(bad("a base URL has no query or fragment"));
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not supported; use the token option",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(bad(&format!("port '{p}' is not a number from 0 to 65535")));
        }
    }
    Ok(trimmed.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            validate_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            validate_url("HTTPS://box.example:443/api").unwrap(),
            "HTTPS://box.example:443/api"
        );
        assert!(validate_url("http://[::1]:9000").is_ok());
        for bad in [
            "127.0.0.1:8080",
            "ftp://host",
            "http://",
            "http://:80",
            "http://host:99999",
            "http://user:pw@host",
            "http://host/?q=1",
            "http://ho st",
        ] {
            let err = validate_url(bad).unwrap_err();
            assert!(err.to_string().contains(bad.trim()), "{err}");
        }
        let err = validate_url("127.0.0.1:8080").unwrap_err().to_string();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn descriptors_read_back_bit_for_bit() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let values: Vec<f32> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let v = f32::from_bits((state >> 32) as u32);
                if v.is_finite() {
                    v
                } else {
                    1.0
                }
            })
            .collect();
        let body = serde_json::to_string(&super::super::wire::DescribeAnswer {
            descriptor: values.clone(),
            queries: 1,
        })
        .unwrap();
        let d = parse_descriptor(&body, "u", values.len()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(d.as_slice()), bits(&values));
    }

    #[test]
    fn malformed_descriptors_are_named() {
        let cases = [
            ("not json", "not a JSON object"),
            (r#"{"queries":1}"#, "no \"descriptor\""),
            (r#"{"descriptor":"x"}"#, "not an array"),
            (r#"{"descriptor":[1,2]}"#, "expected 3, got 2"),
            (
                r#"{"descriptor":[1,null,2]}"#,
                "component 1 is not a number",
            ),
            (r#"{"descriptor":[1,[2],3]}"#, "component 1 is not a number"),
            (r#"{"descriptor":[1,1e40,2]}"#, "out of f32 range"),
        ];
        for (body, want) in cases {
            let err = parse_descriptor(body, "http://x", 3).unwrap_err();
            assert!(matches!(err, OracleError::Malformed { .. }), "{err}");
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
        assert_eq!(
            parse_descriptor(r#"{"descriptor":[ 1 , -2.5e-3 ,3]}"#, "u", 3)
                .unwrap()
                .0,
            vec![1.0, -2.5e-3, 3.0]
        );
    }
}
