//! Golden tests against the reference implementations: crops against Pillow
//! (tools/make_crop_fixture.py) and SSIM against scikit-image (tools/make_ssim_fixture.py).

use advface_image::{crop_lfw, read_image, ssim, ssim_with_grad};
use advface_testkit::{fixtures, pillow_crops};
use sha2::{Digest, Sha256};

#[test]
fn lfw_crops_equal_pillow_pixel_for_pixel() {
    let dir = fixtures().join("lfw");
    let crops = pillow_crops();
    assert!(crops.len() >= 30, "fixture too small");
    let mut bad = Vec::new();
    for case in &crops {
        let p = dir.join("images_deepfunneled").join(&case.path);
        let full = read_image(&p).unwrap();
        let crop = crop_lfw(&full, &p).unwrap();
        let full_hash = hex::encode(Sha256::digest(full.as_bytes()));
        let crop_hash = hex::encode(Sha256::digest(crop.as_bytes()));
        if full_hash != case.sha256_full_rgb || crop_hash != case.sha256_rgb {
            bad.push(case.path.clone());
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ from Pillow: {bad:?}",
        bad.len(),
        crops.len()
    );
}

#[derive(serde::Deserialize)]
struct SsimFixture {
    cases: Vec<SsimCase>,
}

#[derive(serde::Deserialize)]
struct SsimCase {
    name: String,
    a: String,
    b: String,
    ssim: f64,
    ssim_per_channel: [f64; 3],
}

#[test]
fn ssim_agrees_with_scikit_image_to_1e_6() {
    let dir = fixtures().join("ssim");
    let fx: SsimFixture =
        serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    assert!(fx.cases.len() >= 30);
    let mut worst = (0f64, String::new());
    for case in &fx.cases {
        let a = read_image(&dir.join(&case.a)).unwrap();
        let b = read_image(&dir.join(&case.b)).unwrap();
        let s = ssim(&a, &b).unwrap();
        let mut err = (s.mean - case.ssim).abs();
        for c in 0..3 {
            err = err.max((s.per_channel[c] - case.ssim_per_channel[c]).abs());
        }
        if err > worst.0 {
            worst = (err, case.name.clone());
        }
        // The gradient path computes the same value.
        if a.width() >= 7 && a.height() >= 7 {
            let (v, _) = ssim_with_grad(&a, &b).unwrap();
            assert!((v - s.mean).abs() < 1e-12, "{}", case.name);
        }
    }
    // Agreement is ~1e-14 in practice; the requirement is 1e-6.
    assert!(
        worst.0 < 1e-9,
        "worst case {} differs by {}",
        worst.1,
        worst.0
    );
}
