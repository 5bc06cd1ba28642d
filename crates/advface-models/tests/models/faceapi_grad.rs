//! Input gradients of the face-api.js network, and its errors on bad input or weights.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use advface_core::{Descriptor, EmbedError, Embedder, PixelBatch};
use advface_models::faceapi::{FaceApi, FaceApiError, BIN_FILE, MANIFEST_FILE};
use advface_models::tfjs::TfjsError;

fn model() -> &'static FaceApi {
    static MODEL: OnceLock<FaceApi> = OnceLock::new();
    MODEL.get_or_init(|| FaceApi::embedded().expect("embedded face-api.js weights"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lfw(i: usize) -> PixelBatch {
    let path = repo().join(format!("fixtures/faceapi/inputs/lfw_{i}.png"));
    PixelBatch::from_images(&[advface_image::read_image(&path).unwrap()]).unwrap()
}

/// Deterministic pseudo-random numbers (SplitMix64), so the test needs no rng crate.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn distance(batch: &PixelBatch, target: &Descriptor) -> f64 {
    model().embed(batch).unwrap()[0].l2(target)
}

/// The autodiff gradient of `||D(x) - t||` against central finite differences of the
/// (f32) forward pass.
///
/// Tolerances, from what f32 allows: the distance (about 0.8) carries rounding noise of
/// order 1e-7, so a central difference with step `h` has noise of about `1e-7 / h`; ReLU
/// kinks crossed within the step add truncation error, which grows with `h`. Measured on
/// this input: single pixels with `h = 1e-3` (a quarter of an 8-bit level) agree to 0.2-2.3%
/// (gradients 4e-3..3e-2 per unit of pixel value), and the derivative along the gradient
/// itself (the direction an attack steps in) to 0.02%. The asserts (5% + 2e-4 per pixel,
/// 0.5% along the gradient) leave a margin of about 2x and 25x.
#[test]
fn input_gradient_agrees_with_finite_differences() {
    let x = lfw(0);
    let target = model().embed(&lfw(1)).unwrap().remove(0);
    let res = model()
        .descriptors_and_input_grad(&x, std::slice::from_ref(&target))
        .unwrap();
    assert_eq!(res.grad.len(), x.as_slice().len());
    assert_eq!(res.descriptors.len(), 1);
    assert!(res.grad.iter().all(|g| g.is_finite()));
    let [_, _, h, w] = x.shape();
    let f = |v: Vec<f32>| distance(&PixelBatch::new(1, h, w, v).unwrap(), &target);
    let step = 1e-3f32;

    // Single pixels: the 4 with the largest gradients and 4 random ones among the top 5000
    // (random pixels anywhere mostly have gradients too small for f32 differences).
    let mut idx: Vec<usize> = (0..res.grad.len()).collect();
    idx.sort_by(|&a, &b| res.grad[b].abs().total_cmp(&res.grad[a].abs()));
    let mut rng = SplitMix(20180101);
    let mut picks: Vec<usize> = idx[..4].to_vec();
    picks.extend((0..4).map(|_| idx[rng.below(5000)]));
    let mut report = Vec::new();
    for &i in &picks {
        let mut plus = x.as_slice().to_vec();
        let mut minus = plus.clone();
        plus[i] += step;
        minus[i] -= step;
        let fd = (f(plus) - f(minus)) / (2.0 * f64::from(step));
        let ad = f64::from(res.grad[i]);
        report.push(format!(
            "pixel {i:5}: autodiff {ad:+.5e} finite difference {fd:+.5e}"
        ));
        assert!(
            (ad - fd).abs() <= 2e-4 + 0.05 * fd.abs(),
            "pixel {i}: autodiff {ad:e} vs finite difference {fd:e}"
        );
    }

    // Along the gradient: d/dh f(x + h g) at 0 is |g|^2.
    let g = &res.grad;
    let norm2: f64 = g.iter().map(|v| f64::from(*v).powi(2)).sum();
    let along = |s: f32| {
        x.as_slice()
            .iter()
            .zip(g)
            .map(|(a, b)| a + s * b)
            .collect::<Vec<_>>()
    };
    let fd = (f(along(step)) - f(along(-step))) / (2.0 * f64::from(step));
    let rel = (fd - norm2).abs() / norm2;
    eprintln!(
        "{}
along the gradient: |g|^2 {norm2:.6e}, finite difference {fd:.6e}, relative error {rel:.2e}",
        report.join("\n")
    );
    assert!(
        rel < 5e-3,
        "directional derivative: |g|^2 {norm2} vs finite difference {fd}"
    );
}

#[test]
fn batched_gradients_equal_single_item_gradients() {
    let a = lfw(2);
    let b = lfw(3);
    let ta = model().embed(&lfw(4)).unwrap().remove(0);
    let tb = model().embed(&lfw(5)).unwrap().remove(0);
    let mut both = a.as_slice().to_vec();
    both.extend_from_slice(b.as_slice());
    let [_, _, h, w] = a.shape();
    let both = PixelBatch::new(2, h, w, both).unwrap();
    let joint = model()
        .descriptors_and_input_grad(&both, &[ta.clone(), tb.clone()])
        .unwrap();
    let ga = model().descriptors_and_input_grad(&a, &[ta]).unwrap();
    let gb = model().descriptors_and_input_grad(&b, &[tb]).unwrap();
    let single: Vec<f32> = ga.grad.iter().chain(&gb.grad).copied().collect();
    let scale = single.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = joint
        .grad
        .iter()
        .zip(&single)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= 1e-5 * scale.max(1e-3),
        "batched vs single gradient: {err} (scale {scale})"
    );
    assert_eq!(joint.descriptors[0], ga.descriptors[0]);
}

#[test]
fn gradient_of_zero_distance_is_zero_not_nan() {
    let x = lfw(0);
    // Targets from the same (autodiff) code path, so the distance is exactly zero.
    let first = model()
        .descriptors_and_input_grad(&x, &[Descriptor(vec![0.0; 128])])
        .unwrap();
    let res = model()
        .descriptors_and_input_grad(&x, &first.descriptors)
        .unwrap();
    assert_eq!(res.descriptors, first.descriptors);
    assert!(res.grad.iter().all(|g| *g == 0.0));
}

#[test]
fn wrong_target_count_is_an_error() {
    let err = model()
        .descriptors_and_input_grad(&lfw(0), &[])
        .unwrap_err();
    assert!(matches!(err, EmbedError::BadInput { .. }), "{err}");
    let short = Descriptor(vec![0.0; 3]);
    let err = model()
        .descriptors_and_input_grad(&lfw(0), &[short])
        .unwrap_err();
    assert!(err.to_string().contains("128"), "{err}");
    let err = model()
        .descriptors_and_vjp(&lfw(0), |_| vec![0.0; 5])
        .unwrap_err();
    assert!(err.to_string().contains("cotangent"), "{err}");
}

#[test]
fn empty_images_are_an_error_and_an_empty_batch_is_empty() {
    let empty_images = PixelBatch::new(2, 0, 5, Vec::new()).unwrap();
    let err = model().embed(&empty_images).unwrap_err();
    assert!(matches!(err, EmbedError::BadInput { .. }), "{err}");
    let none = PixelBatch::new(0, 112, 112, Vec::new()).unwrap();
    assert!(model().embed(&none).unwrap().is_empty());
}

/// A copy of the shipped manifest and .bin in a temporary folder, edited by `edit`.
fn broken_copy(
    tag: &str,
    edit_manifest: impl FnOnce(&mut serde_json::Value),
    edit_bin: impl FnOnce(&mut Vec<u8>),
) -> PathBuf {
    let src = repo().join("models/faceapi");
    let dir = std::env::temp_dir().join(format!("advface-faceapi-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join(MANIFEST_FILE)).unwrap()).unwrap();
    edit_manifest(&mut manifest);
    let mut bin = std::fs::read(src.join(BIN_FILE)).unwrap();
    edit_bin(&mut bin);
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(BIN_FILE), bin).unwrap();
    dir.join(MANIFEST_FILE)
}

#[test]
fn the_shipped_manifest_loads_from_disk_with_its_hash() {
    let m = FaceApi::from_manifest(&repo().join("models/faceapi").join(MANIFEST_FILE)).unwrap();
    let bin = m.files().iter().find(|f| f.name == BIN_FILE).unwrap();
    assert_eq!(bin.sha256, advface_models::faceapi::FACEAPI_BIN_SHA256);
    assert_eq!(bin.bytes, 6_444_032);
}

#[test]
fn a_missing_tensor_is_named() {
    // Drop the last entry (fc) and its bytes, so only the name check can fail.
    let path = broken_copy(
        "missing",
        |m| {
            let w = m[0]["weights"].as_array_mut().unwrap();
            let last = w.pop().unwrap();
            assert_eq!(last["name"], "fc");
        },
        |bin| bin.truncate(bin.len() - 256 * 128),
    );
    let err = FaceApi::from_manifest(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, FaceApiError::Weights(TfjsError::MissingTensor { tensor, .. }) if tensor == "fc"),
        "{msg}"
    );
    assert!(msg.contains("'fc'") && msg.contains("[256, 128]"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[test]
fn a_wrong_byte_count_names_the_file_and_sizes() {
    let path = broken_copy("bytes", |_| {}, |bin| bin.truncate(bin.len() - 1));
    let err = FaceApi::from_manifest(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            &err,
            FaceApiError::Weights(TfjsError::ByteCount {
                expected: 6_444_032,
                got: 6_444_031,
                ..
            })
        ),
        "{msg}"
    );
    assert!(msg.contains(BIN_FILE), "{msg}");
}

#[test]
fn a_wrong_shape_is_named() {
    let path = broken_copy(
        "shape",
        |m| {
            m[0]["weights"][0]["shape"] = serde_json::json!([7, 7, 32, 3]);
        },
        |_| {},
    );
    let err = FaceApi::from_manifest(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("conv32_down/conv/filters"), "{msg}");
    assert!(
        msg.contains("[7, 7, 3, 32]") && msg.contains("[7, 7, 32, 3]"),
        "{msg}"
    );
}
