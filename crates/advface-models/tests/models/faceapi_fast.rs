//! The fast forward path ([`FaceApiFast`], what `FaceApi::embed` runs) against the burn
//! network (`FaceApi::embed_reference`) and against face-api.js's golden descriptors.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use advface_core::{EmbedError, Embedder, PixelBatch};
use advface_models::faceapi::{FaceApi, EMBED_CHUNK};
use advface_models::{FaceApiError, FaceApiFast};
use serde::Deserialize;

/// Fast path vs burn path, per descriptor component (both f32; they differ in summation
/// order only).
const VS_BURN: f32 = 2e-5;

/// Fast path vs face-api.js (as in `faceapi_golden.rs`).
const VS_GOLDEN: f32 = 1e-4;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    descriptor: Vec<f32>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/faceapi")
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(fixtures().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn model() -> &'static FaceApi {
    static MODEL: OnceLock<FaceApi> = OnceLock::new();
    MODEL.get_or_init(|| FaceApi::embedded().expect("embedded face-api.js weights"))
}

fn batch_of(file: &str) -> PixelBatch {
    let image = advface_image::read_image(&fixtures().join(file)).unwrap();
    PixelBatch::from_images(&[image]).unwrap()
}

/// Deterministic pseudo-random pixels in `[0, 1)` (SplitMix64).
fn random_batch(n: usize, h: usize, w: usize, seed: u64) -> PixelBatch {
    let mut s = seed;
    let data = (0..n * 3 * h * w)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    PixelBatch::new(n, h, w, data).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) })
}

/// Max abs difference between fast and burn descriptors of `batch`.
fn fast_vs_burn(batch: &PixelBatch) -> f32 {
    let fast = model().embed(batch).unwrap();
    let burn = model().embed_reference(batch).unwrap();
    assert_eq!(fast.len(), batch.len());
    assert_eq!(burn.len(), batch.len());
    fast.iter()
        .zip(&burn)
        .map(|(f, b)| max_abs_diff(f.as_slice(), b.as_slice()))
        .fold(0.0, f32::max)
}

#[test]
fn fast_path_matches_burn_and_face_api_js_on_the_golden_inputs() {
    let golden = golden();
    assert!(golden.cases.len() >= 10);
    let (mut worst_burn, mut worst_golden) = (0.0f32, 0.0f32);
    for case in &golden.cases {
        let batch = batch_of(&case.file);
        let fast = model().embed(&batch).unwrap();
        let burn = model().embed_reference(&batch).unwrap();
        let vs_burn = max_abs_diff(fast[0].as_slice(), burn[0].as_slice());
        let vs_golden = max_abs_diff(fast[0].as_slice(), &case.descriptor);
        let burn_vs_golden = max_abs_diff(burn[0].as_slice(), &case.descriptor);
        eprintln!(
            "{:24} fast vs burn {vs_burn:.2e}, fast vs face-api.js {vs_golden:.2e} \
             (burn vs face-api.js {burn_vs_golden:.2e})",
            case.file
        );
        assert!(
            vs_burn <= VS_BURN,
            "{}: fast vs burn {vs_burn:e}",
            case.file
        );
        assert!(
            vs_golden <= VS_GOLDEN,
            "{}: fast vs face-api.js {vs_golden:e}",
            case.file
        );
        worst_burn = worst_burn.max(vs_burn);
        worst_golden = worst_golden.max(vs_golden);
    }
    eprintln!("worst: fast vs burn {worst_burn:.2e}, fast vs face-api.js {worst_golden:.2e}");
}

#[test]
fn fast_path_matches_burn_on_random_batches() {
    // 112 x 112 (the benchmark's crops) in a batch of more than one chunk, and sizes that
    // take every preprocessing path: identity (150), down- and up-sampling, padding of
    // rows or of columns, and a single pixel.
    let cases = [
        (EMBED_CHUNK + 3, 112, 112),
        (2, 150, 150),
        (3, 200, 180),
        (2, 90, 130),
        (1, 150, 149),
        (1, 1, 1),
    ];
    for (i, &(n, h, w)) in cases.iter().enumerate() {
        let batch = random_batch(n, h, w, 100 + i as u64);
        let err = fast_vs_burn(&batch);
        eprintln!("{n:2} x {h:3} x {w:3}: fast vs burn {err:.2e}");
        assert!(err <= VS_BURN, "{n} x {h} x {w}: fast vs burn {err:e}");
    }
}

#[test]
fn fast_batches_agree_with_single_images() {
    let batch = random_batch(5, 112, 112, 7);
    let joint = model().embed(&batch).unwrap();
    for (i, d) in joint.iter().enumerate() {
        let data = batch.as_slice()[i * 3 * 112 * 112..(i + 1) * 3 * 112 * 112].to_vec();
        let single = model()
            .embed(&PixelBatch::new(1, 112, 112, data).unwrap())
            .unwrap();
        let err = max_abs_diff(d.as_slice(), single[0].as_slice());
        eprintln!("image {i}: batch of 5 vs alone {err:.2e}");
        assert!(err <= 1e-6, "image {i}: batch vs alone {err:e}");
    }
}

#[test]
fn the_standalone_fast_net_is_the_one_face_api_uses() {
    let fast = FaceApiFast::embedded().unwrap();
    let batch = batch_of("inputs/lfw_3.png");
    assert_eq!(
        fast.embed(&batch).unwrap(),
        model().embed(&batch).unwrap(),
        "same weights, same code"
    );
    assert_eq!(fast.name(), model().name());
    assert_eq!(fast.descriptor_len(), 128);
    // Repeated calls reuse buffers and must not be affected by earlier calls.
    let other = random_batch(3, 60, 80, 1);
    fast.embed(&other).unwrap();
    assert_eq!(fast.embed(&batch).unwrap(), model().embed(&batch).unwrap());
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let fast = model().fast();
    let err = fast.forward(&[0.5; 12], [1, 3, 2, 3]).unwrap_err();
    assert!(matches!(err, FaceApiError::BadInput(_)), "{err}");
    let err = fast.forward(&[0.5; 8], [1, 2, 2, 2]).unwrap_err();
    assert!(matches!(err, FaceApiError::BadInput(_)), "{err}");
    let err = fast.forward(&[], [2, 3, 0, 4]).unwrap_err();
    assert!(matches!(err, FaceApiError::BadInput(_)), "{err}");
    let err = fast
        .forward(&[0.5; 3], [usize::MAX, 3, usize::MAX, 2])
        .unwrap_err();
    assert!(matches!(err, FaceApiError::BadInput(_)), "{err}");
    assert!(fast.forward(&[], [0, 3, 5, 5]).unwrap().is_empty());

    let empty_images = PixelBatch::new(2, 0, 5, Vec::new()).unwrap();
    let err = model().embed(&empty_images).unwrap_err();
    assert!(matches!(err, EmbedError::BadInput { .. }), "{err}");
    let none = PixelBatch::new(0, 112, 112, Vec::new()).unwrap();
    assert!(model().embed(&none).unwrap().is_empty());
}

#[test]
fn the_portable_kernel_matches_burn_too() {
    let portable = FaceApiFast::embedded().unwrap().portable();
    assert!(!portable.uses_simd());
    let batch = random_batch(3, 112, 112, 11);
    let burn = model().embed_reference(&batch).unwrap();
    let got = portable.embed(&batch).unwrap();
    let err = got
        .iter()
        .zip(&burn)
        .map(|(f, b)| max_abs_diff(f.as_slice(), b.as_slice()))
        .fold(0.0, f32::max);
    eprintln!(
        "portable kernel vs burn {err:.2e} (simd in use: {})",
        model().fast().uses_simd()
    );
    assert!(err <= VS_BURN, "portable kernel vs burn {err:e}");
}
