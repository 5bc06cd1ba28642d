//! `advface attack`, `score` and `demo` end to end: the committed demo crops, the real
//! embedded black box, a real (small, randomly initialised) student written to disk.

use std::path::{Path, PathBuf};

use advface_testkit::copy_dir;

use crate::{bin, repo, stderr, tiny_student};

fn demo() -> (PathBuf, PathBuf) {
    let d = repo().join("fixtures/demo");
    (d.join("pairs_list.csv"), d.join("crops"))
}

#[test]
fn attack_then_score_with_a_budget_resume_and_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    let student = tiny_student(tmp.path(), 128);
    let (pairs, crops) = demo();
    let out = tmp.path().join("adv");
    let attack = |extra: &[&str]| {
        let mut c = bin();
        c.args(["attack", "--pairs"])
            .arg(&pairs)
            .arg("--crops")
            .arg(&crops);
        c.arg("--out").arg(&out).arg("--students").arg(&student);
        c.args(["--n", "1", "--steps", "8", "--budget", "6"])
            .args(extra);
        c.output().unwrap()
    };
    let o = attack(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("records/pair_0000.json")).unwrap())
            .unwrap();
    for o in rec["outcomes"].as_array().unwrap() {
        assert!(o["queries"].as_u64().unwrap() <= 6, "{o}");
        assert!(o["ssim"].as_f64().unwrap() >= 0.95);
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["budget_per_image"], 6);
    assert_eq!(cfg["models"][0]["sha256"].as_str().unwrap().len(), 64);
    // Resume: nothing left to do.
    let again = attack(&[]);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("already done"),
        "{}",
        stderr(&again)
    );
    // Another configuration into the same folder is refused.
    let other = attack(&["--seed", "9"]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("another configuration"),
        "{}",
        stderr(&other)
    );
    // Score: valid, the JSON has what the protocol asks.
    let json = tmp.path().join("score.json");
    let score = |json: &Path| {
        bin()
            .args(["score", "--n", "1", "--pairs"])
            .arg(&pairs)
            .arg("--crops")
            .arg(&crops)
            .arg("--adv")
            .arg(&out)
            .arg("--json")
            .arg(json)
            .output()
            .unwrap()
    };
    let s = score(&json);
    assert!(s.status.success(), "{}", stderr(&s));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(r["ssim_min"].as_f64().unwrap() >= 0.95);
    assert_eq!(r["violations"].as_array().unwrap().len(), 0);
    assert_eq!(r["images"], 5);
    assert!(r["clean"]["score"].as_f64().unwrap() > 0.5);
    assert!(r["attack"]["queries_max"].as_u64().unwrap() <= 6);
    // An image below the limit makes the run invalid: exit status 3, the image named.
    let victim = out.join("Al_Sharpton/Al_Sharpton_0002.png");
    let orig = advface_image::read_image(&crops.join("Al_Sharpton/Al_Sharpton_0002.png")).unwrap();
    let mut bytes = orig.as_bytes().to_vec();
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = b.wrapping_add(if i % 2 == 0 { 40 } else { 200 });
    }
    let bad = advface_core::RgbImage::new(112, 112, bytes).unwrap();
    advface_image::write_png_atomic(&victim, &bad).unwrap();
    let s = score(&tmp.path().join("bad.json"));
    assert_eq!(s.status.code(), Some(3), "{}", stderr(&s));
    assert!(
        stderr(&s).contains("Al_Sharpton_0002.png"),
        "{}",
        stderr(&s)
    );
}

#[test]
fn a_student_of_the_wrong_length_and_missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let student = tiny_student(tmp.path(), 64);
    let (pairs, crops) = demo();
    let o = bin()
        .args(["attack", "--no-oracle", "--n", "1", "--pairs"])
        .arg(&pairs)
        .arg("--crops")
        .arg(&crops)
        .arg("--out")
        .arg(tmp.path().join("adv"))
        .arg("--students")
        .arg(&student)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("descriptor length") && e.contains("64"), "{e}");
    // A pairs file naming a missing crop: that pair fails by name, the other runs.
    let bad_pairs = tmp.path().join("pairs.csv");
    let text = std::fs::read_to_string(&pairs).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replacen("Al_Sharpton_0003.png", "Al_Sharpton_0099.png", 1);
    std::fs::write(&bad_pairs, lines.join("\n") + "\n").unwrap();
    let good = tiny_student(tmp.path(), 128);
    let o = bin()
        .args(["attack", "--no-oracle", "--steps", "2", "--pairs"])
        .arg(&bad_pairs)
        .arg("--crops")
        .arg(&crops)
        .arg("--out")
        .arg(tmp.path().join("adv2"))
        .arg("--students")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("pair 0") && e.contains("Al_Sharpton_0099.png"),
        "{e}"
    );
    assert!(
        tmp.path().join("adv2/records/pair_0001.json").is_file(),
        "{e}"
    );
}

#[test]
fn output_into_the_crops_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let student = tiny_student(tmp.path(), 128);
    let crops = tmp.path().join("crops");
    let (pairs, demo_crops) = demo();
    std::fs::create_dir_all(&crops).unwrap();
    for p in ["Al_Sharpton", "Jose_Maria_Aznar"] {
        let d = crops.join(p);
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(demo_crops.join(p)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
    }
    let before = std::fs::read(crops.join("Al_Sharpton/Al_Sharpton_0001.png")).unwrap();
    let o = bin()
        .args(["attack", "--no-oracle", "--n", "1", "--pairs"])
        .arg(&pairs)
        .arg("--crops")
        .arg(&crops)
        .arg("--out")
        .arg(&crops)
        .arg("--students")
        .arg(&student)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("inside the crops folder"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        before,
        std::fs::read(crops.join("Al_Sharpton/Al_Sharpton_0001.png")).unwrap()
    );
}

#[test]
fn demo_attacks_scores_and_draws_side_by_side_pictures() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = bin()
        .args(["demo", "--steps", "4", "--budget", "8", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("clean score") && table.contains("images below 0.95 | 0"),
        "{table}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("score.json")).unwrap()).unwrap();
    assert_eq!(r["images"], 10);
    assert!(r["attack"]["queries_max"].as_u64().unwrap() <= 8);
    let pic = advface_image::read_image(&out.join("compare/Al_Sharpton_0001.png")).unwrap();
    assert_eq!((pic.width(), pic.height()), (3 * 112 + 8, 112));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["models"][0]["name"], "student (shipped)");
}

#[test]
fn shards_scored_apart_and_merged_equal_the_whole_run_scored_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (pairs, crops) = demo();
    // The originals as "adversarial" images: a valid folder to score (SSIM 1).
    let adv = tmp.path().join("adv");
    copy_dir(&crops, &adv);
    let score = |extra: &[&str], json: &Path| {
        let mut c = bin();
        c.args(["score", "--n", "2", "--pairs"])
            .arg(&pairs)
            .arg("--crops")
            .arg(&crops)
            .arg("--adv")
            .arg(&adv)
            .args(extra)
            .arg("--json")
            .arg(json);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let full = tmp.path().join("full.json");
    let s0 = tmp.path().join("s0.json");
    let s1 = tmp.path().join("s1.json");
    score(&[], &full);
    score(&["--shard", "0/2"], &s0);
    score(&["--shard", "1/2"], &s1);
    assert_eq!(read(&s0)["attacked"]["pairs"], 1);
    assert_eq!(read(&s1)["per_pair"][0][0], 1);
    let merge = |files: &[&Path], extra: &[&str]| {
        let mut c = bin();
        c.arg("score").arg("--merge").args(files).args(extra);
        c.output().unwrap()
    };
    let merged = tmp.path().join("merged.json");
    let o = merge(
        &[&s1, &s0],
        &["--n", "2", "--json", merged.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (f, m) = (read(&full), read(&merged));
    for key in [
        ["attacked", "score"],
        ["clean", "score"],
        ["attacked", "match_rate"],
        ["clean", "match_rate"],
    ] {
        let (a, b) = (
            f[key[0]][key[1]].as_f64().unwrap(),
            m[key[0]][key[1]].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-12, "{key:?}: whole {a}, merged {b}");
    }
    assert!((f["floor"].as_f64().unwrap() - m["floor"].as_f64().unwrap()).abs() < 1e-12);
    assert_eq!(f["per_pair"], m["per_pair"]);
    assert_eq!(f["images"], m["images"]);
    assert_eq!(f["attacked"]["pairs"], m["attacked"]["pairs"]);
    assert_eq!(m["scoring_queries"], 30);
    // The same shard twice, a shard missing, or a file that is not a report: refused, named.
    let o = merge(&[&s0, &s0], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("pair 0 is in report 0 and in report 1"),
        "{}",
        stderr(&o)
    );
    let o = merge(&[&s0], &["--n", "2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing [1]"), "{}", stderr(&o));
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, b"{\"score\": 1}").unwrap();
    let o = merge(&[&s0, &junk], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("junk.json"), "{}", stderr(&o));
    // --merge does not mix with a folder to score.
    let o = merge(&[&s0], &["--adv", adv.to_str().unwrap()]);
    assert!(!o.status.success());
}
