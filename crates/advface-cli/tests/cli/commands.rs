//! The `advface` binary end to end: real files, the real embedded black box, a real HTTP
//! server on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::{bin, repo, run, stderr, stdout};

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<GoldenCase>,
}

#[derive(serde::Deserialize)]
struct GoldenCase {
    file: String,
    descriptor: Vec<f32>,
}

fn golden() -> Golden {
    let p = repo().join("fixtures/faceapi/golden.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[derive(serde::Deserialize)]
struct Line {
    path: String,
    descriptor: Vec<f32>,
}

fn parse_lines(text: &str) -> Vec<Line> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

#[test]
fn describe_faceapi_equals_real_face_api_js() {
    let g = golden();
    let files: Vec<PathBuf> = g
        .cases
        .iter()
        .map(|c| repo().join("fixtures/faceapi").join(&c.file))
        .collect();
    let o = run(bin().args(["describe", "--model", "faceapi"]).args(&files));
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = parse_lines(&stdout(&o));
    assert_eq!(lines.len(), g.cases.len());
    for ((line, case), f) in lines.iter().zip(&g.cases).zip(&files) {
        assert_eq!(line.path, f.to_string_lossy(), "path is echoed as given");
        assert_eq!(line.descriptor.len(), 128);
        let worst = line
            .descriptor
            .iter()
            .zip(&case.descriptor)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{}: max abs diff {worst}", case.file);
    }
}

#[test]
fn describe_reports_a_bad_image_by_name_and_still_answers_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("not-an-image.png");
    std::fs::write(&bad, b"hello").unwrap();
    let good = repo().join("fixtures/faceapi/inputs/lfw_0.png");
    let o = run(bin()
        .args(["describe", "--model", "faceapi"])
        .arg(&bad)
        .arg(&good));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not-an-image.png"), "{}", stderr(&o));
    assert_eq!(parse_lines(&stdout(&o)).len(), 1);
}

#[test]
fn unknown_model_is_a_clear_error() {
    let o = run(bin()
        .args(["describe", "--model", "nosuch"])
        .arg(repo().join("fixtures/faceapi/inputs/lfw_0.png")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown model 'nosuch'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ssim_prints_the_scikit_image_value_on_the_last_line() {
    let dir = repo().join("fixtures/ssim");
    let fx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    for case in fx["cases"].as_array().unwrap().iter().take(12) {
        let o = run(bin()
            .arg("ssim")
            .arg(dir.join(case["a"].as_str().unwrap()))
            .arg(dir.join(case["b"].as_str().unwrap())));
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let last: f64 = out.lines().last().unwrap().trim().parse().unwrap();
        let want = case["ssim"].as_f64().unwrap();
        assert!(
            (last - want).abs() < 1e-6,
            "{}: {last} vs {want}",
            case["name"]
        );
    }
}

#[test]
fn ssim_of_a_missing_file_names_it() {
    let o = run(bin().args(["ssim", "/nonexistent/a.png", "/nonexistent/b.png"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/a.png"), "{}", stderr(&o));
}

#[test]
fn prepare_on_the_fixture_lfw_and_a_missing_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = run(bin()
        .args(["prepare", "--lfw"])
        .arg(repo().join("fixtures/lfw"))
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 of 2 pairs"), "{}", stdout(&o));
    assert!(out.join("crops/Al_Sharpton/Al_Sharpton_0001.png").is_file());

    let o = run(bin()
        .args(["prepare", "--lfw"])
        .arg(tmp.path().join("missing"))
        .arg("--out")
        .arg(&out));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("missing") && stderr(&o).contains("--lfw"),
        "{}",
        stderr(&o)
    );
}

/// A served black box, killed on drop.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(extra: &[&str]) -> Served {
    let mut child = bin()
        .args(["serve", "--model", "faceapi", "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    Served { child, url }
}

fn health(url: &str) -> serde_json::Value {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

#[test]
fn served_black_box_answers_like_the_local_model_and_honours_its_budget() {
    let server = start_server(&["--budget", "3"]);
    let inputs: Vec<PathBuf> = (0..5)
        .map(|k| repo().join(format!("fixtures/faceapi/inputs/lfw_{k}.png")))
        .collect();
    let local = run(bin()
        .args(["describe", "--model", "faceapi"])
        .args(&inputs[..2]));
    let remote = run(bin()
        .args(["describe", "--oracle", &server.url])
        .args(&inputs[..2]));
    assert!(remote.status.success(), "{}", stderr(&remote));
    let (l, r) = (parse_lines(&stdout(&local)), parse_lines(&stdout(&remote)));
    for (a, b) in l.iter().zip(&r) {
        assert_eq!(a.path, b.path);
        for (x, y) in a.descriptor.iter().zip(&b.descriptor) {
            assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
        }
    }
    // Budget 3: two used, three more asked -> exactly one answered.
    let o = run(bin()
        .args(["describe", "--oracle", &server.url])
        .args(&inputs[2..]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(parse_lines(&stdout(&o)).len(), 1);
    assert!(stderr(&o).contains("budget"), "{}", stderr(&o));
    let h = health(&server.url);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["queries"], 3);
}

#[test]
fn server_down_is_a_clear_error() {
    // Bind and drop a listener to get a port that nobody serves.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(bin()
        .args(["describe", "--oracle", &format!("http://127.0.0.1:{port}")])
        .arg(repo().join("fixtures/faceapi/inputs/lfw_0.png")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the black box"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn describe_budget_is_hard_and_the_cache_answers_without_queries() {
    let inputs: Vec<PathBuf> = (0..2)
        .map(|k| repo().join(format!("fixtures/faceapi/inputs/lfw_{k}.png")))
        .collect();
    let o = run(bin().args(["describe", "--budget", "1"]).args(&inputs));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("budget"), "{}", stderr(&o));

    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let first = run(bin()
        .arg("describe")
        .arg("--cache")
        .arg(&cache)
        .args(&inputs));
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("(2 queries)"), "{}", stderr(&first));
    // Second run: answered from disk, no query, and a budget of 0 is no obstacle.
    let second = run(bin()
        .args(["describe", "--budget", "0", "--cache"])
        .arg(&cache)
        .args(&inputs));
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("(0 queries, 2 cached)"),
        "{}",
        stderr(&second)
    );
    assert_eq!(stdout(&first), stdout(&second));
}

/// Issue 6: over HTTP the per-image budget is exact by the server's own counter, for the
/// query attacks and for black-box acceptance.
#[test]
fn attack_over_http_stays_within_budget_by_the_servers_count() {
    let server = start_server(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let demo = repo().join("fixtures/demo");
    let mut total = 0u64;
    for (k, (method, budget)) in [("nes", 12u64), ("square", 9), ("fgvm", 7)]
        .into_iter()
        .enumerate()
    {
        let out = tmp.path().join(method);
        let o = run(bin()
            .args(["attack", "--pairs"])
            .arg(demo.join("pairs_list.csv"))
            .arg("--crops")
            .arg(demo.join("crops"))
            .arg("--out")
            .arg(&out)
            .args(["--n", "1", "--method", method, "--oracle", &server.url])
            .args(["--budget", &budget.to_string()])
            .args(if method == "fgvm" {
                &["--steps", "20"][..]
            } else {
                &[]
            }));
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("records/pair_0000.json")).unwrap())
                .unwrap();
        let per: Vec<u64> = rec["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["queries"].as_u64().unwrap())
            .collect();
        assert_eq!(per.len(), 5);
        assert!(per.iter().all(|&q| q <= budget), "{method}: {per:?}");
        // Each query attack spends (nearly) all of it.
        assert!(per.iter().all(|&q| q + 2 >= budget), "{method}: {per:?}");
        total += per.iter().sum::<u64>();
        let h = health(&server.url);
        assert_eq!(
            h["queries"].as_u64().unwrap(),
            total,
            "after run {k} ({method}): the server counted another number of queries"
        );
    }
}
