//! `eval`: a student against the black box on the attack identities' crops, on crops
//! prepared from the fixture LFW tree; the student and the black box are fakes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use advface_core::{Descriptor, Embedder, Oracle, PixelBatch};
use advface_data::{prepare, PrepareConfig};
use advface_distill::{eval_images, evaluate, metrics, EvalError, EVAL_BATCH};
use advface_oracle::LocalOracle;
use advface_testkit::{fixture_lfw, FakeEmbedder, FakeOracle};

/// Prepares the fixture LFW tree into `dir`; returns the crops folder and the
/// distillation list.
fn prepared(dir: &Path) -> (PathBuf, PathBuf) {
    let cfg = PrepareConfig {
        lfw: fixture_lfw(),
        out: dir.to_path_buf(),
        n: None,
        attack_only: false,
    };
    prepare(&cfg, &|_| {}).unwrap();
    (dir.join("crops"), dir.join("distill_list.txt"))
}

#[test]
fn eval_measures_the_attack_identities_only_sorted_and_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let (crops, exclude) = prepared(tmp.path());
    let images = eval_images(&crops, &exclude, None).unwrap();
    // The fixture's attack identities: Al_Sharpton and Jose_Maria_Aznar, 5 crops each.
    assert_eq!(images.len(), 10, "{images:?}");
    assert!(images.windows(2).all(|w| w[0] < w[1]), "sorted: {images:?}");
    assert!(images
        .iter()
        .all(|p| p.starts_with("Al_Sharpton/") || p.starts_with("Jose_Maria_Aznar/")));
    assert_eq!(images[0], "Al_Sharpton/Al_Sharpton_0001.png");
    assert_eq!(eval_images(&crops, &exclude, Some(3)).unwrap(), images[..3]);
}

#[test]
fn eval_with_nothing_left_or_a_missing_list_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (crops, _) = prepared(tmp.path());
    let all = tmp.path().join("all.txt");
    let every: Vec<String> = advface_distill::list_pngs(&crops).unwrap();
    std::fs::write(&all, every.join("\n")).unwrap();
    let err = eval_images(&crops, &all, None).unwrap_err();
    assert!(matches!(err, EvalError::NoImages { .. }), "{err}");
    assert!(err.to_string().contains("advface prepare"), "{err}");

    let missing = tmp.path().join("missing.txt");
    let err = eval_images(&crops, &missing, None).unwrap_err();
    assert!(matches!(err, EvalError::Read { .. }), "{err}");
    assert!(err.to_string().contains("missing.txt"), "{err}");
}

#[test]
fn eval_scores_the_students_descriptors_against_the_black_boxs() {
    let tmp = tempfile::tempdir().unwrap();
    let (crops, exclude) = prepared(tmp.path());
    let images = eval_images(&crops, &exclude, None).unwrap();
    let student = FakeEmbedder::new().with_len(4).named("fake-student");
    let oracle = FakeOracle::new(None);
    let mut seen = Vec::new();
    let report = evaluate(&student, "abc", &oracle, &crops, &images, |n| seen.push(n)).unwrap();
    assert_eq!(
        seen,
        vec![images.len()],
        "one batch of {EVAL_BATCH} at most"
    );
    assert_eq!(oracle.queries.load(std::sync::atomic::Ordering::SeqCst), 10);
    assert_eq!(
        (report.student.as_str(), report.weights_sha256.as_str()),
        ("fake-student", "abc")
    );
    assert_eq!((report.images, report.black_box.as_str()), (10, "fake"));

    // The same numbers as `metrics` of the two models' descriptors.
    let ims: Vec<_> = images
        .iter()
        .map(|p| advface_image::read_image(&crops.join(p)).unwrap())
        .collect();
    let flat = |ds: Vec<Descriptor>| -> Vec<f32> { ds.into_iter().flat_map(|d| d.0).collect() };
    let pred = flat(
        student
            .embed(&PixelBatch::from_images(&ims).unwrap())
            .unwrap(),
    );
    let truth = flat(FakeOracle::new(None).describe(&ims).unwrap());
    let m = metrics(&pred, &truth, 10, 4);
    assert_eq!(
        [report.r2, report.mse, report.cos].map(f64::to_bits),
        [m.r2, m.mse, m.cos].map(f64::to_bits)
    );

    // The report's JSON keys, in the order `advface distill eval` prints them.
    let json = serde_json::to_string(&report).unwrap();
    let mut at = 0;
    for k in [
        "student",
        "weights_sha256",
        "images",
        "r2",
        "mse",
        "cos",
        "black_box",
        "seconds",
    ] {
        at += json[at..].find(&format!("\"{k}\":")).expect(k);
    }
}

#[test]
fn a_student_that_is_the_black_box_scores_perfectly() {
    let tmp = tempfile::tempdir().unwrap();
    let (crops, exclude) = prepared(tmp.path());
    let images = eval_images(&crops, &exclude, Some(4)).unwrap();
    let model = Arc::new(FakeEmbedder::new().with_len(8));
    let oracle = LocalOracle::new(model.clone());
    let report = evaluate(model.as_ref(), "", &oracle, &crops, &images, |_| {}).unwrap();
    assert_eq!(report.mse, 0.0);
    assert_eq!(report.r2, 1.0);
    assert!((report.cos - 1.0).abs() < 1e-12, "{report:?}");
    assert_eq!(oracle.stats().queries, 4);
}

#[test]
fn a_descriptor_length_mismatch_is_refused_before_any_query() {
    let tmp = tempfile::tempdir().unwrap();
    let (crops, exclude) = prepared(tmp.path());
    let images = eval_images(&crops, &exclude, None).unwrap();
    let student = FakeEmbedder::new();
    let oracle = FakeOracle::new(None);
    let err = evaluate(&student, "", &oracle, &crops, &images, |_| {}).unwrap_err();
    assert!(matches!(err, EvalError::LengthMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("'fake' gives 4") && msg.contains("fake-embedder gives 128"),
        "{msg}"
    );
    assert_eq!(oracle.queries.load(std::sync::atomic::Ordering::SeqCst), 0);
}
