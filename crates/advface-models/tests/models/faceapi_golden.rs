//! The burn face-api.js network against face-api.js itself.
//!
//! `fixtures/faceapi/golden.json` holds the descriptors face-api.js 1.7.15 (TF.js 4.22,
//! wasm backend) computes for the PNGs in `fixtures/faceapi/inputs/`; it is made by
//! `tools/faceapi/golden.mjs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use advface_core::{Descriptor, Embedder, PixelBatch};
use advface_models::faceapi::{FaceApi, FACEAPI_BIN_SHA256, INPUT_SIZE, MEAN_RGB};
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;

/// Largest difference accepted per descriptor component (descriptor components are about
/// 0.1 in size; same-person threshold on the L2 distance is 0.6).
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Golden {
    model_sha256: String,
    l2_normalised: bool,
    cases: Vec<Case>,
    debug_case: DebugCase,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    width: u32,
    height: u32,
    descriptor: Vec<f32>,
}

#[derive(Deserialize)]
struct DebugCase {
    file: String,
    resized_input: ResizedInput,
}

#[derive(Deserialize)]
struct ResizedInput {
    file: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/faceapi")
}

fn golden() -> Golden {
    let path = fixtures().join("golden.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn model() -> &'static FaceApi {
    static MODEL: OnceLock<FaceApi> = OnceLock::new();
    MODEL.get_or_init(|| FaceApi::embedded().expect("embedded face-api.js weights"))
}

fn batch_of(file: &str) -> PixelBatch {
    let path = fixtures().join(file);
    let image = advface_image::read_image(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    PixelBatch::from_images(&[image]).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn descriptors_match_face_api_js() {
    let golden = golden();
    assert_eq!(golden.model_sha256, FACEAPI_BIN_SHA256);
    assert!(!golden.l2_normalised);
    assert!(golden.cases.len() >= 10, "too few golden cases");
    let mut worst = (0.0f32, String::new());
    let mut failures = Vec::new();
    for case in &golden.cases {
        let batch = batch_of(&case.file);
        assert_eq!(
            batch.shape(),
            [1, 3, case.height as usize, case.width as usize]
        );
        let d = model().embed(&batch).unwrap();
        let err = max_abs_diff(d[0].as_slice(), &case.descriptor);
        eprintln!(
            "{:28} {}x{}  max |diff| {err:.2e}",
            case.file, case.width, case.height
        );
        if err > worst.0 {
            worst = (err, case.file.clone());
        }
        if err.is_nan() || err > TOLERANCE {
            failures.push(format!("{}: max |diff| {err:e}", case.file));
        }
    }
    eprintln!("worst case: {} with {:.2e}", worst.1, worst.0);
    assert!(
        failures.is_empty(),
        "descriptors differ from face-api.js by more than {TOLERANCE}: {failures:?}"
    );
}

#[test]
fn batched_forward_matches_single_images() {
    let golden = golden();
    let cases: Vec<&Case> = golden
        .cases
        .iter()
        .filter(|c| c.width == 112 && c.height == 112)
        .collect();
    let images: Vec<_> = cases
        .iter()
        .map(|c| advface_image::read_image(&fixtures().join(&c.file)).unwrap())
        .collect();
    let batch = PixelBatch::from_images(&images).unwrap();
    let d = model().embed(&batch).unwrap();
    assert_eq!(d.len(), cases.len());
    for (case, d) in cases.iter().zip(&d) {
        let err = max_abs_diff(d.as_slice(), &case.descriptor);
        assert!(
            err <= TOLERANCE,
            "{} in a batch: max |diff| {err:e}",
            case.file
        );
    }
}

/// The 150 x 150 input face-api.js feeds the network (after padToSquare and
/// resizeBilinear, before mean subtraction), compared with ours.
#[test]
fn resize_matches_tfjs_resize_bilinear() {
    let golden = golden();
    let path = fixtures().join(&golden.debug_case.resized_input.file);
    let bytes = std::fs::read(&path).unwrap();
    let want: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(want.len(), INPUT_SIZE * INPUT_SIZE * 3);
    let batch = batch_of(&golden.debug_case.file);
    let net = model().net();
    let [n, c, h, w] = batch.shape();
    let x = Tensor::<4>::from_data(
        TensorData::new(batch.as_slice().to_vec(), [n, c, h, w]),
        net.device(),
    );
    let got: Vec<f32> = net
        .preprocess(x)
        .unwrap()
        .into_data()
        .try_into_vec()
        .unwrap();
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut worst = 0.0f32;
    for p in 0..plane {
        for ch in 0..3 {
            // ours: (v - mean) / 255 in NCHW; theirs: v in 0..255, HWC.
            let ours = got[ch * plane + p] * 255.0 + MEAN_RGB[ch];
            worst = worst.max((ours - want[p * 3 + ch]).abs());
        }
    }
    eprintln!("resize: max |diff| {worst:e} (8-bit units)");
    assert!(
        worst < 1e-3,
        "resized input differs by {worst} (8-bit units)"
    );
}

#[test]
fn descriptor_is_not_normalised_and_has_128_components() {
    let golden = golden();
    let d = model().embed(&batch_of(&golden.cases[0].file)).unwrap();
    assert_eq!(d[0].len(), 128);
    let want = Descriptor(golden.cases[0].descriptor.clone());
    assert!((d[0].norm() - want.norm()).abs() < 1e-4);
    assert!((d[0].norm() - 1.0).abs() > 0.1);
}
