//! `advface distill eval` end to end: a tiny student against the embedded black box on
//! crops prepared from the fixture LFW tree.

use advface_testkit::fixture_lfw;

use crate::{bin, run, stderr, stdout, tiny_student};

#[test]
fn distill_eval_prints_one_json_line_and_writes_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prepared");
    let o = run(bin()
        .args(["prepare", "--attack-only", "--lfw"])
        .arg(fixture_lfw())
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let student = tiny_student(tmp.path(), 128);
    let json = tmp.path().join("eval.json");
    let o = run(bin()
        .args(["distill", "eval", "--limit", "2", "--student"])
        .arg(&student)
        .arg("--crops")
        .arg(out.join("crops"))
        .arg("--exclude")
        .arg(out.join("distill_list.txt"))
        .arg("--json")
        .arg(&json));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut sorted = vec![
        "black_box",
        "cos",
        "images",
        "mse",
        "r2",
        "seconds",
        "student",
        "weights_sha256",
    ];
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(line["images"], 2);
    assert_eq!(line["weights_sha256"].as_str().unwrap().len(), 64);
    assert!(
        text.starts_with("{\"student\":"),
        "field order kept: {text}"
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(written, line);
}
