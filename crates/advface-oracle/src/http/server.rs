//! The black box as an HTTP service (`advface serve`), on `tiny_http`.
//!
//! Routes (see [`wire`](super::wire) for the JSON shapes):
//!
//! | request          | answer                                                             |
//! |------------------|--------------------------------------------------------------------|
//! | `POST /describe` | body: one PNG image (any or no Content-Type); 200 `{"descriptor": [..], "queries": n}` |
//! | `GET /health`    | 200 `{"status":"ok","model":..,"queries":n,"budget":..,"remaining":..,"descriptor_len":..}` |
//!
//! Errors answer JSON `{"error": code, "message": ..}`: 400 unreadable body, 401 missing or
//! wrong bearer token, 404 other paths, 405 other methods, 413 body over the size limit,
//! 422 not a PNG / undecodable / over the dimension limit / a size the model does not take,
//! 429 query budget spent, 500 model failure, 502 when the served oracle is itself remote
//! and failed.

use std::io::{Cursor, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use advface_core::{Oracle, OracleError};
use advface_image::{decode_png, Limits};
use sha2::{Digest, Sha256};
use tiny_http::{Header, Method, Request, Response, Server};

use super::wire::{DescribeAnswer, ErrorAnswer, Health, DESCRIBE_PATH, HEALTH_PATH};
use crate::budget::BudgetCounter;

/// Port of the black box unless told otherwise.
pub const DEFAULT_PORT: u16 = 8080;

/// Largest request body accepted unless told otherwise: 8 MiB, about 60 times an
/// uncompressed 112 x 112 x 3 crop and still small enough to buffer per worker.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// Largest unread request body left for `tiny_http` to discard.
///
/// `tiny_http` 0.12 discards an unread body by allocating one buffer of the declared
/// `Content-Length` (upstream PR tiny-http#290), so a request declaring, say, 10^15 bytes
/// would abort the whole server on any answer that did not read the body. Above this size
/// the answer's status line and headers are written and the connection is abandoned
/// (its socket and one `tiny_http` connection thread stay open until the process ends).
const MAX_DRAIN_BYTES: usize = 64 << 20;

/// PNG signature.
const PNG_MAGIC: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// How the black-box server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on. Default `127.0.0.1:8080` (loopback: only this machine).
    /// Port 0 picks a free port; read it back with [`ServerHandle::local_addr`].
    pub addr: SocketAddr,
    /// Allow a non-loopback `addr` (anyone who can reach the machine can then query the
    /// black box; set a `token`). Default `false`; the CLI flag is `--allow-remote`.
    pub allow_remote: bool,
    /// Queries (images) this server answers in its lifetime; past it, HTTP 429.
    /// Default `None`: unlimited.
    pub budget: Option<u64>,
    /// Largest request body in bytes; larger bodies get HTTP 413.
    /// Default [`DEFAULT_MAX_BODY_BYTES`] (8 MiB).
    pub max_body_bytes: usize,
    /// Largest image side accepted, checked from the PNG header before decoding; larger
    /// images get HTTP 422. Default `Limits::default()` (4096 pixels a side).
    pub limits: Limits,
    /// When set, every request must carry `Authorization: Bearer <token>` (else HTTP 401);
    /// compared in constant time. Default `None`.
    pub token: Option<String>,
    /// Worker threads answering requests concurrently. Default 0: one per available core.
    pub workers: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            allow_remote: false,
            budget: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            limits: Limits::default(),
            token: None,
            workers: 0,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without `allow_remote`.
    #[error(
        "refusing to serve the black box on {addr}: it is not a loopback address, so anyone who \
         can reach this machine could query it; listen on 127.0.0.1, or pass --allow-remote \
         (and set a --token)"
    )]
    NotLoopback { addr: SocketAddr },
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {reason} (is another server using the port? pick another \
         port, or port 0 for any free one)"
    )]
    Bind { addr: SocketAddr, reason: String },
    /// A setting that cannot work.
    #[error("invalid server setting: {reason}")]
    Config { reason: String },
    /// A worker thread could not be started.
    #[error("cannot start a server worker thread: {reason}")]
    Spawn { reason: String },
}

/// What the workers share.
struct State {
    oracle: Arc<dyn Oracle>,
    model: String,
    descriptor_len: Option<usize>,
    budget: Option<BudgetCounter>,
    /// Images answered (HTTP 200 on /describe).
    answered: AtomicU64,
    max_body_bytes: usize,
    limits: Limits,
    token_hash: Option<[u8; 32]>,
}

impl State {
    fn health(&self) -> Health {
        Health {
            status: "ok".into(),
            model: self.model.clone(),
            queries: self.answered.load(Ordering::Acquire),
            budget: self.budget.as_ref().map(BudgetCounter::budget),
            remaining: self.budget.as_ref().map(BudgetCounter::remaining),
            descriptor_len: self.descriptor_len,
        }
    }
}

/// A running server. Dropping it shuts the server down (see [`shutdown`](Self::shutdown)).
pub struct ServerHandle {
    server: Arc<Server>,
    local_addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// Starts serving `oracle` over HTTP; returns once the socket is bound and the workers run.
///
/// Every image answered on `/describe` is one query of this server (its `/health`
/// counter), whatever `oracle` does inside (a cache, say).
pub fn serve(oracle: Arc<dyn Oracle>, config: ServeConfig) -> Result<ServerHandle, ServeError> {
    if !config.allow_remote && !config.addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback { addr: config.addr });
    }
    if config.max_body_bytes == 0 {
        return Err(ServeError::Config {
            reason: "max_body_bytes is 0, so no image could be posted".into(),
        });
    }
    let token_hash = match &config.token {
        None => None,
        Some(t) if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(ServeError::Config {
                reason: "the token must be non-empty, without spaces or control characters".into(),
            })
        }
        Some(t) => Some(sha256(t.as_bytes())),
    };
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };

    let server = Server::http(config.addr).map_err(|e| ServeError::Bind {
        addr: config.addr,
        reason: e.to_string(),
    })?;
    let local_addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| ServeError::Bind {
            addr: config.addr,
            reason: "the listener has no IP address".into(),
        })?;
    let server = Arc::new(server);
    let state = Arc::new(State {
        model: oracle.name(),
        descriptor_len: oracle.descriptor_len(),
        oracle,
        budget: config.budget.map(BudgetCounter::new),
        answered: AtomicU64::new(0),
        max_body_bytes: config.max_body_bytes,
        limits: config.limits,
        token_hash,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut handle = ServerHandle {
        server,
        local_addr,
        state,
        stop,
        workers: Vec::with_capacity(workers),
    };
    for i in 0..workers {
        let (server, state, stop) = (
            handle.server.clone(),
            handle.state.clone(),
            handle.stop.clone(),
        );
        let worker = std::thread::Builder::new()
            .name(format!("advface-serve-{i}"))
            .spawn(move || work(&server, &state, &stop))
            .map_err(|e| ServeError::Spawn {
                reason: e.to_string(),
            })?;
        handle.workers.push(worker);
    }
    Ok(handle)
}

impl ServerHandle {
    /// The address the server listens on (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's base URL, `http://<local_addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.state.answered.load(Ordering::Acquire)
    }

    /// What `GET /health` answers now.
    pub fn health(&self) -> Health {
        self.state.health()
    }

    /// Blocks until the workers stop (they stop only on [`shutdown`](Self::shutdown), so
    /// for a foreground server this runs until the process is ended).
    pub fn join(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Stops the server: requests already received are answered, the workers are joined,
    /// and the socket is closed.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// A worker: answers requests until the server stops.
fn work(server: &Server, state: &State, stop: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => answer(state, request),
            Err(_) if stop.load(Ordering::Acquire) => return,
            // An accept error (out of file descriptors, say): pause, then serve on.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// What to send back.
struct Reply {
    status: u16,
    body: Vec<u8>,
    headers: Vec<Header>,
    /// The request body was read to its end (nothing left for `tiny_http` to discard).
    consumed_body: bool,
}

impl Reply {
    fn json<T: serde::Serialize>(status: u16, body: &T) -> Self {
        let body = serde_json::to_vec(body).unwrap_or_else(|_| {
            br#"{"error":"internal","message":"cannot encode the answer"}"#.to_vec()
        });
        Self {
            status,
            body,
            headers: vec![header("Content-Type", "application/json")],
            consumed_body: false,
        }
    }

    /// An error answer; the code also goes in an `X-Advface-Error` header, which survives
    /// when the body cannot be sent (see [`MAX_DRAIN_BYTES`]).
    fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, &ErrorAnswer::new(code, message)).with_header("X-Advface-Error", code)
    }

    fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(header(name, value));
        self
    }

    fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        let mut r = Response::from_data(self.body).with_status_code(self.status);
        for h in self.headers {
            r.add_header(h);
        }
        r
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equality of two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Answers one request; a panic in the model becomes HTTP 500 and the worker serves on.
fn answer(state: &State, mut request: Request) {
    let declared = request.body_length();
    let reply =
        catch_unwind(AssertUnwindSafe(|| route(state, &mut request))).unwrap_or_else(|_| {
            Reply::error(
                500,
                "internal",
                "the server failed on this request (a bug); it keeps serving",
            )
        });
    if !reply.consumed_body && declared.is_some_and(|n| n > MAX_DRAIN_BYTES) {
        // Write the status line and headers (an upgrade answer carries no body), then keep
        // the request's body reader from being dropped: see MAX_DRAIN_BYTES.
        let stream = request.upgrade("advface-abandoned", reply.into_response());
        std::mem::forget(stream);
        return;
    }
    // The client may have gone away; nothing to do about it.
    let _ = request.respond(reply.into_response());
}

fn route(state: &State, request: &mut Request) -> Reply {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let method = request.method().clone();
    let is_describe = match path.as_str() {
        DESCRIBE_PATH => true,
        HEALTH_PATH => false,
        _ => {
            return Reply::error(
                404,
                "not_found",
                format!("no route {path}; try POST {DESCRIBE_PATH} or GET {HEALTH_PATH}"),
            )
        }
    };
    match (is_describe, &method) {
        (true, Method::Post) | (false, Method::Get) | (false, Method::Head) => {}
        (true, _) => {
            return Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: use POST with a PNG body"),
            )
            .with_header("Allow", "POST")
        }
        (false, _) => {
            return Reply::error(
                405,
                "method_not_allowed",
                format!("{method} {path}: use GET"),
            )
            .with_header("Allow", "GET, HEAD")
        }
    }
    if let Some(expected) = &state.token_hash {
        let given = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().trim().to_string());
        let token = given.as_deref().and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        let ok = token.is_some_and(|t| constant_time_eq(&sha256(t.as_bytes()), expected));
        if !ok {
            let what = if given.is_none() { "missing" } else { "wrong" };
            return Reply::error(
                401,
                "unauthorized",
                format!(
                    "{what} bearer token: send `Authorization: Bearer <token>` with the \
                     server's token (advface: --token)"
                ),
            )
            .with_header("WWW-Authenticate", "Bearer");
        }
    }
    if is_describe {
        describe(state, request)
    } else {
        Reply::json(200, &state.health())
    }
}

fn too_large(state: &State, got: &str) -> Reply {
    Reply::error(
        413,
        "payload_too_large",
        format!(
            "the body is {got} bytes, over this server's limit of {} bytes; post one PNG image",
            state.max_body_bytes
        ),
    )
}

fn describe(state: &State, request: &mut Request) -> Reply {
    let max = state.max_body_bytes;
    if let Some(n) = request.body_length() {
        if n > max {
            return too_large(state, &n.to_string());
        }
    }
    let mut body = Vec::new();
    if let Err(e) = request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
    {
        return Reply::error(
            400,
            "bad_request",
            format!("cannot read the request body: {e}"),
        );
    }
    if body.len() > max {
        return too_large(state, "more than the limit of");
    }
    let mut reply = describe_body(state, &body);
    reply.consumed_body = true;
    reply
}

/// Answers a whole request body.
fn describe_body(state: &State, body: &[u8]) -> Reply {
    if body.is_empty() {
        return Reply::error(422, "bad_image", "empty body: POST one PNG image");
    }
    if !body.starts_with(PNG_MAGIC) {
        return Reply::error(
            422,
            "bad_image",
            format!(
                "the body ({} bytes) is not a PNG image; the black box takes lossless PNG",
                body.len()
            ),
        );
    }
    let image = match decode_png(body, Path::new("request body"), state.limits) {
        Ok(image) => image,
        Err(e) => return Reply::error(422, "bad_image", e.to_string()),
    };
    if let Some(budget) = &state.budget {
        if let Err(o) = budget.try_reserve(1) {
            return budget_reply(o.budget, o.used, o.requested);
        }
    }
    let release = || {
        if let Some(budget) = &state.budget {
            budget.release(1);
        }
    };
    let descriptor = match state.oracle.describe(std::slice::from_ref(&image)) {
        Ok(mut ds) if ds.len() == 1 => ds.remove(0),
        Ok(ds) => {
            release();
            return Reply::error(
                500,
                "model_error",
                format!("the model answered {} descriptors for one image", ds.len()),
            );
        }
        Err(e) => {
            release();
            return oracle_error_reply(&e);
        }
    };
    if descriptor.as_slice().iter().any(|v| !v.is_finite()) {
        release();
        return Reply::error(
            500,
            "model_error",
            "the model returned a non-finite descriptor value",
        );
    }
    let queries = state.answered.fetch_add(1, Ordering::AcqRel) + 1;
    Reply::json(
        200,
        &DescribeAnswer {
            descriptor: descriptor.0,
            queries,
        },
    )
}

fn budget_reply(budget: u64, used: u64, requested: u64) -> Reply {
    Reply::json(
        429,
        &ErrorAnswer {
            error: "budget_exhausted".into(),
            message: format!(
                "this black box's query budget of {budget} is spent ({used} used); restart the \
                 server with a larger --budget"
            ),
            budget: Some(budget),
            used: Some(used),
            requested: Some(requested),
        },
    )
}

fn oracle_error_reply(e: &OracleError) -> Reply {
    match e {
        OracleError::BadInput { .. } => Reply::error(422, "bad_image", e.to_string()),
        OracleError::BudgetExhausted {
            budget,
            used,
            requested,
            ..
        } => budget_reply(*budget, *used, *requested),
        OracleError::Model { .. } | OracleError::Cache { .. } => {
            Reply::error(500, "model_error", e.to_string())
        }
        OracleError::Transport { .. }
        | OracleError::Status { .. }
        | OracleError::Malformed { .. } => Reply::error(502, "upstream_error", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        let a = sha256(b"secret");
        assert!(constant_time_eq(&a, &sha256(b"secret")));
        assert!(!constant_time_eq(&a, &sha256(b"secreT")));
    }

    #[test]
    fn non_loopback_is_refused_without_allow_remote() {
        #[derive(Debug)]
        struct Never;
        impl Oracle for Never {
            fn name(&self) -> String {
                "never".into()
            }
            fn descriptor_len(&self) -> Option<usize> {
                None
            }
            fn describe(
                &self,
                _: &[advface_core::RgbImage],
            ) -> Result<Vec<advface_core::Descriptor>, OracleError> {
                Ok(Vec::new())
            }
            fn stats(&self) -> advface_core::QueryStats {
                Default::default()
            }
        }
        let config = ServeConfig {
            addr: "0.0.0.0:0".parse().unwrap(),
            ..Default::default()
        };
        let err = serve(Arc::new(Never), config).unwrap_err();
        assert!(matches!(err, ServeError::NotLoopback { .. }), "{err}");
        assert!(err.to_string().contains("--allow-remote"), "{err}");
    }
}
