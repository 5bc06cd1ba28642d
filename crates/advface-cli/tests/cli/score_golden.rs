//! `advface score` against the independent scorer (scikit-image SSIM, face-api.js under
//! TF.js): fixtures/score, made by tools/make_score_fixture.sh.

use crate::{bin, repo};

#[test]
fn score_agrees_with_scikit_image_and_face_api_js() {
    let fx = repo().join("fixtures/score");
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("score.json");
    let o = bin()
        .arg("score")
        .arg("--pairs")
        .arg(fx.join("pairs_list.csv"))
        .arg("--crops")
        .arg(repo().join("fixtures/demo/crops"))
        .arg("--adv")
        .arg(fx.join("adv"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rust: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.join("reference.json")).unwrap()).unwrap();
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let close = |a: f64, b: f64, tol: f64, what: &str| {
        assert!((a - b).abs() <= tol, "{what}: advface {a} vs reference {b}");
    };
    close(
        f(&rust["attacked"]["score"]),
        f(&reference["score"]),
        1e-4,
        "score",
    );
    close(
        f(&rust["clean"]["score"]),
        f(&reference["clean_score"]),
        1e-4,
        "clean score",
    );
    close(
        f(&rust["ssim_min"]),
        f(&reference["ssim_min"]),
        1e-6,
        "SSIM min",
    );
    close(
        f(&rust["ssim_mean"]),
        f(&reference["ssim_mean"]),
        1e-6,
        "SSIM mean",
    );
    close(
        f(&rust["attacked"]["match_rate"]),
        f(&reference["match_rate"]),
        1e-12,
        "match rate",
    );
    assert_eq!(
        rust["violations"].as_array().unwrap().len() as u64,
        reference["violations"].as_u64().unwrap()
    );
}
