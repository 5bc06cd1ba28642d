//! The black box over HTTP: a real server on 127.0.0.1:0 and the client, plus fake servers
//! that answer garbage.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use advface_core::{Oracle, OracleError, RgbImage};
use advface_image::{encode_png, Limits};
use advface_oracle::{
    serve, Budgeted, HttpConfig, HttpConfigError, HttpOracle, RetryPolicy, ServeConfig, ServeError,
    ServerHandle,
};
use advface_testkit::{bits, face, faces, local};
use serde_json::Value;

fn start(config: ServeConfig) -> (Arc<advface_oracle::LocalOracle>, ServerHandle) {
    let (_, oracle) = local();
    let config = ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let handle = serve(oracle.clone(), config).unwrap();
    (oracle, handle)
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        tries: 3,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn client(url: &str) -> HttpOracle {
    let mut config = HttpConfig::new(url);
    config.retry = quick_retry();
    HttpOracle::new(config).unwrap()
}

fn client_with_token(url: &str, token: &str) -> HttpOracle {
    let mut config = HttpConfig::new(url);
    config.retry = quick_retry();
    config.token = Some(token.into());
    HttpOracle::new(config).unwrap()
}

/// One raw request; returns the status and the JSON body.
fn raw(method: &str, url: &str, body: Option<&[u8]>) -> (u16, Value) {
    let request = ureq::request(method, url).set("Content-Type", "application/octet-stream");
    let result = match body {
        Some(b) => request.send_bytes(b),
        None => request.call(),
    };
    match result {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn png(image: &RgbImage) -> Vec<u8> {
    encode_png(image).unwrap()
}

#[test]
fn descriptors_over_http_equal_local_ones() {
    let (local_oracle, server) = start(ServeConfig::default());
    let remote = client(&server.url());
    let images = faces(9);
    let over_http = remote.describe(&images).unwrap();
    let here = local_oracle.describe(&images).unwrap();
    assert_eq!(bits(&over_http), bits(&here), "order kept, bit for bit");
    assert_eq!(remote.stats().queries, 9);
    assert_eq!(server.queries(), 9);
    let health = remote.health().unwrap();
    assert_eq!(health.queries, 9);
    assert_eq!(health.model, "fake-embedder");
    assert_eq!(health.descriptor_len, Some(128));
    assert_eq!((health.budget, health.remaining), (None, None));
    // health is not a query
    assert_eq!(remote.stats().queries, 9);
    assert_eq!(remote.descriptor_len(), Some(128));
    assert_eq!(remote.name(), server.url());

    // The wire format, exactly.
    let (status, body) = raw("GET", &format!("{}/health", server.url()), None);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "model": "fake-embedder", "queries": 9,
                           "budget": null, "remaining": null, "descriptor_len": 128})
    );
    let (status, body) = raw(
        "POST",
        &format!("{}/describe", server.url()),
        Some(&png(&images[0])),
    );
    assert_eq!(status, 200);
    assert_eq!(body["queries"], 10);
    assert_eq!(body["descriptor"].as_array().unwrap().len(), 128);
    server.shutdown();
}

#[test]
fn a_server_budget_of_n_answers_exactly_n_then_429() {
    let (_, server) = start(ServeConfig {
        budget: Some(5),
        ..Default::default()
    });
    let remote = client(&server.url());
    let images = faces(3);
    remote.describe(&images).unwrap();
    remote.describe(&images[..2]).unwrap();
    let err = remote.describe(&images[..1]).unwrap_err();
    match &err {
        OracleError::BudgetExhausted {
            oracle,
            budget,
            used,
            ..
        } => {
            assert_eq!((*budget, *used), (5, 5));
            assert_eq!(oracle, &server.url());
        }
        other => panic!("expected BudgetExhausted, got {other}"),
    }
    let health = remote.health().unwrap();
    assert_eq!(
        (health.queries, health.budget, health.remaining),
        (5, Some(5), Some(0))
    );
    assert_eq!(remote.stats().queries, 5);
    let (status, body) = raw(
        "POST",
        &format!("{}/describe", server.url()),
        Some(&png(&images[0])),
    );
    assert_eq!(status, 429);
    assert_eq!(body["error"], "budget_exhausted");
    assert_eq!(body["budget"], 5);
}

#[test]
fn a_client_side_budget_over_http_stops_before_asking() {
    let (_, server) = start(ServeConfig::default());
    let remote = Budgeted::new(client(&server.url()), 3);
    let images = faces(4);
    remote.describe(&images[..2]).unwrap();
    let err = remote.describe(&images[2..4]).unwrap_err();
    assert!(matches!(err, OracleError::BudgetExhausted { .. }), "{err}");
    remote.describe(&images[2..3]).unwrap();
    assert_eq!(remote.remaining(), 0);
    assert_eq!(server.queries(), 3);
    assert_eq!(remote.inner().health().unwrap().queries, 3);
}

#[test]
fn the_token_is_required_when_set() {
    let (_, server) = start(ServeConfig {
        token: Some("s3cret-token".into()),
        ..Default::default()
    });
    let image = faces(1);
    let err = client(&server.url()).describe(&image).unwrap_err();
    match &err {
        OracleError::Status { status, .. } => assert_eq!(*status, 401),
        other => panic!("expected HTTP 401, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("missing bearer token") && msg.contains("--token"),
        "{msg}"
    );
    assert!(msg.contains("this client sent no token"), "{msg}");
    let err = client_with_token(&server.url(), "s3cret-tokem")
        .describe(&image)
        .unwrap_err();
    assert!(err.to_string().contains("wrong bearer token"), "{err}");
    assert!(client(&server.url()).health().is_err());
    let good = client_with_token(&server.url(), "s3cret-token");
    assert_eq!(good.describe(&image).unwrap().len(), 1);
    assert_eq!(good.health().unwrap().queries, 1);
    assert_eq!(server.queries(), 1);
    let (status, body) = raw("GET", &format!("{}/health", server.url()), None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
}

#[test]
fn a_body_over_the_limit_is_413_and_the_server_serves_on() {
    let (_, server) = start(ServeConfig {
        max_body_bytes: 20_000,
        ..Default::default()
    });
    let noisy = face(1, 112); // random pixels: about 38 kB of PNG
    assert!(png(&noisy).len() > 20_000);
    let (status, body) = raw(
        "POST",
        &format!("{}/describe", server.url()),
        Some(&png(&noisy)),
    );
    assert_eq!(status, 413);
    assert_eq!(body["error"], "payload_too_large");
    let err = client(&server.url()).describe(&[noisy]).unwrap_err();
    assert!(matches!(err, OracleError::BadInput { .. }), "{err}");
    assert!(err.to_string().contains("limit of 20000 bytes"), "{err}");
    let flat = RgbImage::filled(112, 112, [90, 80, 70]);
    assert_eq!(client(&server.url()).describe(&[flat]).unwrap().len(), 1);
    assert_eq!(server.queries(), 1);
}

#[test]
fn an_absurd_content_length_does_not_abort_the_server() {
    let (_, server) = start(ServeConfig::default());
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"POST /describe HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\
              Content-Length: 1000000000000000\r\n\r\n\x89PNG",
        )
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // tiny_http cannot send a body here (see MAX_DRAIN_BYTES): status line and headers.
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("X-Advface-Error: payload_too_large"),
        "{answer}"
    );
    drop(stream);
    // The same on a route that never reads the body.
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    drop(stream);
    // Still alive and serving.
    assert_eq!(client(&server.url()).describe(&faces(1)).unwrap().len(), 1);
}

/// A PNG whose header claims `width` x `height` (valid CRC), with no pixel data.
fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut bytes = png(&RgbImage::filled(4, 4, [1, 2, 3]));
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, 5 more bytes, CRC.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

#[test]
fn bad_images_are_422_with_a_message_and_the_server_serves_on() {
    let (_, server) = start(ServeConfig {
        limits: Limits { max_side: 1000 },
        ..Default::default()
    });
    let url = format!("{}/describe", server.url());
    let good = png(&face(1, 112));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text", b"hello, black box".to_vec(), "not a PNG"),
        ("empty", Vec::new(), "empty body"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "not a readable PNG",
        ),
        (
            "huge",
            png_header_claiming(100_000, 100_000),
            "over the limit of 1000",
        ),
        (
            "wide",
            png(&RgbImage::filled(2000, 1, [0; 3])),
            "over the limit of 1000",
        ),
        (
            "not square",
            png(&RgbImage::filled(100, 50, [0; 3])),
            "square",
        ),
    ];
    for (what, body, want) in &cases {
        let (status, answer) = raw("POST", &url, Some(body));
        assert_eq!(status, 422, "{what}: {answer}");
        assert_eq!(answer["error"], "bad_image", "{what}");
        let msg = answer["message"].as_str().unwrap();
        assert!(msg.contains(want), "{what}: {msg}");
    }
    let err = client(&server.url())
        .describe(&[RgbImage::filled(30, 20, [1, 1, 1])])
        .unwrap_err();
    assert!(matches!(err, OracleError::BadInput { .. }), "{err}");
    assert_eq!(server.queries(), 0);
    assert_eq!(client(&server.url()).describe(&faces(2)).unwrap().len(), 2);
    assert_eq!(server.queries(), 2);
}

#[test]
fn other_paths_and_methods_are_404_and_405() {
    let (_, server) = start(ServeConfig::default());
    let base = server.url();
    assert_eq!(raw("GET", &format!("{base}/nope"), None).0, 404);
    assert_eq!(raw("GET", &format!("{base}/"), None).0, 404);
    let (status, body) = raw("GET", &format!("{base}/describe"), None);
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(raw("POST", &format!("{base}/health"), Some(b"x")).0, 405);
    assert_eq!(raw("GET", &format!("{base}/health?x=1"), None).0, 200);
}

#[test]
fn a_server_that_is_down_is_a_transport_error_after_retries() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let remote = client(&url);
    let t0 = Instant::now();
    let err = remote.describe(&faces(1)).unwrap_err();
    assert!(
        t0.elapsed() >= Duration::from_millis(60),
        "waited 20 + 40 ms"
    );
    match &err {
        OracleError::Transport { url: u, reason } => {
            assert_eq!(u, &format!("{url}/describe"));
            assert!(reason.contains("after 3 tries"), "{reason}");
        }
        other => panic!("expected Transport, got {other}"),
    }
    assert!(err.to_string().contains("advface serve"), "{err}");
    assert!(matches!(
        remote.health().unwrap_err(),
        OracleError::Transport { .. }
    ));
    assert_eq!(remote.stats().queries, 0);
}

#[test]
fn shutdown_stops_the_server() {
    let (_, server) = start(ServeConfig {
        workers: 3,
        ..Default::default()
    });
    let url = server.url();
    assert!(client(&url).health().is_ok());
    let t0 = Instant::now();
    server.shutdown();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let mut config = HttpConfig::new(&url);
    config.retry = RetryPolicy::none();
    let err = HttpOracle::new(config).unwrap().health().unwrap_err();
    assert!(matches!(err, OracleError::Transport { .. }), "{err}");
}

#[test]
fn non_loopback_addresses_need_allow_remote() {
    let (_, oracle) = local();
    let err = serve(
        oracle.clone(),
        ServeConfig {
            addr: "0.0.0.0:0".parse().unwrap(),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ServeError::NotLoopback { .. }), "{err}");
    let handle = serve(
        oracle,
        ServeConfig {
            addr: "0.0.0.0:0".parse().unwrap(),
            allow_remote: true,
            ..Default::default()
        },
    )
    .unwrap();
    let port = handle.local_addr().port();
    assert!(client(&format!("http://127.0.0.1:{port}")).health().is_ok());
}

#[test]
fn concurrent_clients_add_up_exactly() {
    let (local_oracle, server) = start(ServeConfig {
        workers: 2,
        ..Default::default()
    });
    let images = faces(10);
    let reference = bits(&local_oracle.describe(&images).unwrap());
    let shared = client(&server.url());
    let total = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (imgs, refs, total, url) = (&images, &reference, &total, server.url());
            s.spawn(move || {
                let own = client(&url);
                let (images, reference) = (imgs, refs);
                assert_eq!(&bits(&own.describe(images).unwrap()), reference);
                total.fetch_add(own.stats().queries, Ordering::Relaxed);
            });
            let (shared, images, reference) = (&shared, &images, &reference);
            s.spawn(move || {
                for (i, im) in images.iter().enumerate() {
                    let d = shared.describe(std::slice::from_ref(im)).unwrap();
                    assert_eq!(bits(&d)[0], reference[i]);
                }
            });
        }
    });
    assert_eq!(total.load(Ordering::Relaxed), 40);
    assert_eq!(shared.stats().queries, 40);
    assert_eq!(server.queries(), 80);
    assert_eq!(shared.health().unwrap().queries, 80);
}

#[test]
fn concurrent_clients_never_exceed_the_server_budget() {
    let (_, server) = start(ServeConfig {
        budget: Some(25),
        workers: 2,
        ..Default::default()
    });
    let images = faces(10);
    let answered = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (images, answered, refused, url) = (&images, &answered, &refused, server.url());
            s.spawn(move || {
                let remote = client(&url);
                for im in images {
                    match remote.describe(std::slice::from_ref(im)) {
                        Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                        Err(OracleError::BudgetExhausted { .. }) => {
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => panic!("{e}"),
                    };
                }
            });
        }
    });
    assert_eq!(answered.load(Ordering::Relaxed), 25);
    assert_eq!(refused.load(Ordering::Relaxed), 15);
    let health = client(&server.url()).health().unwrap();
    assert_eq!((health.queries, health.remaining), (25, Some(0)));
}

#[test]
fn bad_client_settings_are_clear_errors() {
    for url in ["localhost:8080", "ftp://x", "http://x:port"] {
        let err = HttpOracle::connect(url).unwrap_err();
        assert!(matches!(err, HttpConfigError::BadUrl { .. }), "{err}");
        assert!(err.to_string().contains(url), "{err}");
    }
    let mut config = HttpConfig::new("http://127.0.0.1:1");
    config.token = Some("has space".into());
    assert!(matches!(
        HttpOracle::new(config).unwrap_err(),
        HttpConfigError::BadToken { .. }
    ));
}

/// A fake black box that answers canned responses in turn (the last one forever).
struct Fake {
    server: Arc<tiny_http::Server>,
    hits: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
    url: String,
}

impl Fake {
    fn new(answers: Vec<(u16, String)>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (server.clone(), hits.clone());
        let thread = std::thread::spawn(move || {
            while let Ok(mut rq) = s.recv() {
                let i = h.fetch_add(1, Ordering::SeqCst);
                let (code, body) = answers[i.min(answers.len() - 1)].clone();
                let mut sink = Vec::new();
                let _ = rq.as_reader().read_to_end(&mut sink);
                let _ = rq.respond(tiny_http::Response::from_string(body).with_status_code(code));
            }
        });
        Self {
            server,
            hits,
            thread: Some(thread),
            url,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn good_answer() -> String {
    serde_json::json!({"descriptor": vec![0.25f32; 128], "queries": 1}).to_string()
}

#[test]
fn malformed_answers_are_malformed_errors() {
    let nan_like = format!(
        r#"{{"descriptor":[1e39{}],"queries":1}}"#,
        ",0.5".repeat(127)
    );
    let cases = [
        ("<html>oops</html>".to_string(), "not a JSON object"),
        (r#"{"queries": 3}"#.to_string(), "no \"descriptor\""),
        (
            serde_json::json!({"descriptor": vec![0.5f32; 64]}).to_string(),
            "expected 128, got 64",
        ),
        (nan_like, "out of f32 range"),
        (r#"{"descriptor":"abc"}"#.to_string(), "not an array"),
    ];
    for (body, want) in cases {
        let fake = Fake::new(vec![(200, body.clone())]);
        let err = client(&fake.url).describe(&faces(1)).unwrap_err();
        assert!(
            matches!(err, OracleError::Malformed { .. }),
            "{body}: {err}"
        );
        assert!(err.to_string().contains(want), "{body}: {err}");
        assert!(err.to_string().contains(&fake.url), "{err}");
        assert_eq!(fake.hits(), 1, "a malformed answer is not retried");
    }
}

#[test]
fn an_answer_that_is_not_http_is_an_error_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        for _ in 0..3 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        }
    });
    let err = client(&url).describe(&faces(1)).unwrap_err();
    assert!(
        matches!(
            err,
            OracleError::Malformed { .. } | OracleError::Transport { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    // Unblock the listener thread if the client did not use all three connections.
    for _ in 0..3 {
        let _ = TcpStream::connect(url.trim_start_matches("http://"));
    }
    thread.join().unwrap();
}

#[test]
fn server_errors_are_retried_and_refusals_are_not() {
    let flaky = Fake::new(vec![
        (503, "busy".into()),
        (500, r#"{"error":"model_error","message":"hiccup"}"#.into()),
        (200, good_answer()),
    ]);
    let d = client(&flaky.url).describe(&faces(1)).unwrap();
    assert_eq!(d[0].as_slice(), &[0.25f32; 128][..]);
    assert_eq!(flaky.hits(), 3);

    let down = Fake::new(vec![(503, "busy".into())]);
    let err = client(&down.url).describe(&faces(1)).unwrap_err();
    match &err {
        OracleError::Status { status, body, .. } => {
            assert_eq!(*status, 503);
            assert!(body.contains("after 3 tries"), "{body}");
        }
        other => panic!("expected Status, got {other}"),
    }
    assert_eq!(down.hits(), 3);

    let refusing = Fake::new(vec![(
        400,
        r#"{"error":"bad_request","message":"no"}"#.into(),
    )]);
    let err = client(&refusing.url).describe(&faces(1)).unwrap_err();
    assert!(
        matches!(err, OracleError::Status { status: 400, .. }),
        "{err}"
    );
    assert_eq!(refusing.hits(), 1);
}

#[test]
fn a_failure_in_a_multi_image_call_fails_the_call() {
    // Answers 3 images, then refuses with 429: the call fails as BudgetExhausted.
    let mut answers = vec![(200, good_answer()); 3];
    answers.push((
        429,
        r#"{"error":"budget_exhausted","message":"spent","budget":3,"used":3,"requested":1}"#
            .into(),
    ));
    let fake = Fake::new(answers);
    let mut config = HttpConfig::new(&fake.url);
    config.parallelism = 1;
    let remote = HttpOracle::new(config).unwrap();
    let err = remote.describe(&faces(6)).unwrap_err();
    match err {
        OracleError::BudgetExhausted {
            budget, requested, ..
        } => assert_eq!((budget, requested), (3, 6)),
        other => panic!("expected BudgetExhausted, got {other}"),
    }
    assert_eq!(fake.hits(), 4, "stops at the first failure");
    assert_eq!(remote.stats().queries, 3, "answered images still count");
}
