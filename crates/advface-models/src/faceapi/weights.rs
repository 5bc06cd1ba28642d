//! What the face-api.js network is, shared by the burn network ([`super::net`]) and the
//! fast path ([`super::fast`]), which import this module and never each other: the
//! constants and the error, the tensors the network reads ([`expected_tensors`]), the
//! weights built into the binary, each scale layer folded into its convolution
//! (`FoldedNet`, the form both paths start from), and face-api.js's pad-and-resize as one
//! interpolation matrix per axis.

use advface_core::EmbedError;

use crate::tfjs::{TfjsError, TfjsWeights};

/// SHA-256 of `face_recognition_model.bin` in `@vladmandic/face-api@1.7.15` (PROTOCOL.md).
pub const FACEAPI_BIN_SHA256: &str =
    "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589";

/// Side of the square the network runs on, in pixels (face-api.js `toBatchTensor(150)`).
pub const INPUT_SIZE: usize = 150;

/// Descriptor length.
pub const DESCRIPTOR_LEN: usize = 128;

/// Per-channel RGB means face-api.js subtracts, in 8-bit pixel units.
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// File name of the weights manifest (as in the npm package).
pub const MANIFEST_FILE: &str = "face_recognition_model-weights_manifest.json";

/// File name of the weights shard (as in the npm package).
pub const BIN_FILE: &str = "face_recognition_model.bin";

const EMBEDDED_MANIFEST: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/faceapi/face_recognition_model-weights_manifest.json"
));
const EMBEDDED_BIN: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/faceapi/face_recognition_model.bin"
));

/// Largest batch [`FaceApi::embed`] runs at once (bigger batches are split; memory of the
/// forward pass grows linearly with it).
pub const EMBED_CHUNK: usize = 32;

/// Error of the face-api.js network.
#[derive(Debug, thiserror::Error)]
pub enum FaceApiError {
    /// The weights could not be loaded or do not fit the network.
    #[error(transparent)]
    Weights(#[from] TfjsError),
    /// The weights are not the ones of face-api.js 1.7.15.
    #[error("{source_name}: {file} has sha256 {got}, expected {expected} (face-api.js 1.7.15)")]
    WrongWeights {
        source_name: String,
        file: String,
        expected: String,
        got: String,
    },
    /// The input cannot be fed to the network.
    #[error("bad input: {0}")]
    BadInput(String),
}

impl FaceApiError {
    pub(crate) fn into_embed(self) -> EmbedError {
        match self {
            FaceApiError::BadInput(reason) => EmbedError::BadInput {
                model: MODEL_NAME.into(),
                reason,
            },
            other => EmbedError::Failed {
                model: MODEL_NAME.into(),
                reason: other.to_string(),
            },
        }
    }
}

pub(crate) const MODEL_NAME: &str = "faceapi";

/// The blocks after the stem: (name, input channels, output channels, down-sampling).
pub(crate) const BLOCKS: [(&str, usize, usize, bool); 14] = [
    ("conv32_1", 32, 32, false),
    ("conv32_2", 32, 32, false),
    ("conv32_3", 32, 32, false),
    ("conv64_down", 32, 64, true),
    ("conv64_1", 64, 64, false),
    ("conv64_2", 64, 64, false),
    ("conv64_3", 64, 64, false),
    ("conv128_down", 64, 128, true),
    ("conv128_1", 128, 128, false),
    ("conv128_2", 128, 128, false),
    ("conv256_down", 128, 256, true),
    ("conv256_1", 256, 256, false),
    ("conv256_2", 256, 256, false),
    ("conv256_down_out", 256, 256, true),
];

/// The tensors of one conv layer (`prefix/conv/filters`, ...) and their TF shapes.
fn conv_layer_specs(
    prefix: &str,
    k: usize,
    c_in: usize,
    c_out: usize,
) -> Vec<(String, Vec<usize>)> {
    vec![
        (format!("{prefix}/conv/filters"), vec![k, k, c_in, c_out]),
        (format!("{prefix}/conv/bias"), vec![c_out]),
        (format!("{prefix}/scale/weights"), vec![c_out]),
        (format!("{prefix}/scale/biases"), vec![c_out]),
    ]
}

/// Every tensor FaceRecognitionNet reads, with its TF shape (117 tensors).
pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
    let mut specs = conv_layer_specs("conv32_down", 7, 3, 32);
    for (name, c_in, c_out, _) in BLOCKS {
        specs.extend(conv_layer_specs(&format!("{name}/conv1"), 3, c_in, c_out));
        specs.extend(conv_layer_specs(&format!("{name}/conv2"), 3, c_out, c_out));
    }
    specs.push(("fc".into(), vec![256, DESCRIPTOR_LEN]));
    specs
}

/// Geometry of one TF conv layer and how it is run here.
#[derive(Debug, Clone, Copy)]
struct ConvSpec {
    k: usize,
    c_in: usize,
    c_out: usize,
    stride: usize,
    padding: usize,
    /// The layer only ever sees 1 x 1 maps with `same` padding, so only the centre tap of
    /// its kernel meets the input (every other tap multiplies padding): run it as the
    /// equivalent 1 x 1 convolution. Exact up to f32 summation order.
    centre_only: bool,
}

/// The face-api.js weights built into this binary, with their SHA-256 checked.
pub(crate) fn embedded_weights() -> Result<TfjsWeights, FaceApiError> {
    let weights = TfjsWeights::from_memory(
        "embedded:models/faceapi/face_recognition_model-weights_manifest.json",
        EMBEDDED_MANIFEST,
        &[(BIN_FILE, EMBEDDED_BIN)],
    )?;
    let bin = weights.files().iter().find(|f| f.name == BIN_FILE);
    if let Some(f) = bin.filter(|f| f.sha256 != FACEAPI_BIN_SHA256) {
        return Err(FaceApiError::WrongWeights {
            source_name: weights.source_name().into(),
            file: f.name.clone(),
            expected: FACEAPI_BIN_SHA256.into(),
            got: f.sha256.clone(),
        });
    }
    Ok(weights)
}

/// One conv layer with its bias and scale layer folded in, as plain vectors in TF layout:
/// the form both the burn network and the fast path ([`super::fast`]) start from.
#[derive(Debug, Clone)]
pub(crate) struct FoldedConv {
    /// Kernel side as run: `k` of the TF filter, or 1 for a centre-only layer.
    pub(crate) k: usize,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) stride: usize,
    /// Zero rows/columns added on every side.
    pub(crate) padding: usize,
    /// `[k, k, c_in, c_out]` (HWIO, row-major; equivalently a `[k * k * c_in, c_out]`
    /// matrix): TF filters times the scale weights of the output channel.
    pub(crate) weight: Vec<f32>,
    /// `[c_out]`: `bias * scale_weights + scale_biases`.
    pub(crate) bias: Vec<f32>,
}

/// One residual block of [`FoldedNet`].
#[derive(Debug, Clone)]
pub(crate) struct FoldedBlock {
    pub(crate) conv1: FoldedConv,
    pub(crate) conv2: FoldedConv,
    /// `residualDown` (conv1 stride 2 `valid`, average-pooled shortcut).
    pub(crate) down: bool,
}

/// The whole network's weights, checked and folded, before they go to burn tensors.
#[derive(Debug, Clone)]
pub(crate) struct FoldedNet {
    /// `conv32_down`: 7x7 stride 2 `valid`.
    pub(crate) stem: FoldedConv,
    /// The 14 blocks of [`BLOCKS`], in order.
    pub(crate) blocks: Vec<FoldedBlock>,
    /// `[256, 128]` (in, out), row-major.
    pub(crate) fc: Vec<f32>,
}

impl FoldedNet {
    /// Checks `weights` strictly against [`expected_tensors`] and folds every scale layer
    /// into its convolution.
    pub(crate) fn from_weights(weights: &TfjsWeights) -> Result<Self, FaceApiError> {
        let expected = expected_tensors();
        let refs: Vec<(&str, Vec<usize>)> = expected
            .iter()
            .map(|(n, s)| (n.as_str(), s.clone()))
            .collect();
        weights.check(&refs)?;
        let stem = ConvSpec {
            k: 7,
            c_in: 3,
            c_out: 32,
            stride: 2,
            padding: 0,
            centre_only: false,
        };
        let stem = fold_conv(weights, "conv32_down", stem)?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        // Side of the feature map entering each block (fixed: the input is always 150).
        let mut side = 35;
        for (name, c_in, c_out, down) in BLOCKS {
            let conv1 = ConvSpec {
                k: 3,
                c_in,
                c_out,
                stride: if down { 2 } else { 1 },
                padding: if down { 0 } else { 1 },
                centre_only: false,
            };
            let conv2_side = if down { (side - 3) / 2 + 1 } else { side };
            let conv2 = ConvSpec {
                k: 3,
                c_in: c_out,
                c_out,
                stride: 1,
                padding: 1,
                centre_only: conv2_side == 1,
            };
            blocks.push(FoldedBlock {
                conv1: fold_conv(weights, &format!("{name}/conv1"), conv1)?,
                conv2: fold_conv(weights, &format!("{name}/conv2"), conv2)?,
                down,
            });
            if down {
                side /= 2;
            }
        }
        let fc = weights.f32("fc", &[256, DESCRIPTOR_LEN])?.to_vec();
        Ok(Self { stem, blocks, fc })
    }
}

fn fold_conv(
    weights: &TfjsWeights,
    prefix: &str,
    spec: ConvSpec,
) -> Result<FoldedConv, FaceApiError> {
    let ConvSpec {
        k,
        c_in,
        c_out,
        stride,
        padding,
        centre_only,
    } = spec;
    let filters = weights.f32(&format!("{prefix}/conv/filters"), &[k, k, c_in, c_out])?;
    let bias = weights.f32(&format!("{prefix}/conv/bias"), &[c_out])?;
    let scale = weights.f32(&format!("{prefix}/scale/weights"), &[c_out])?;
    let shift = weights.f32(&format!("{prefix}/scale/biases"), &[c_out])?;
    let taps: Vec<(usize, usize)> = if centre_only {
        vec![(k / 2, k / 2)]
    } else {
        (0..k).flat_map(|y| (0..k).map(move |x| (y, x))).collect()
    };
    // TF [kh, kw, in, out] (only the taps kept), times the scale of the output channel.
    let mut w = vec![0f32; taps.len() * c_in * c_out];
    for (t, &(ky, kx)) in taps.iter().enumerate() {
        for i in 0..c_in {
            for o in 0..c_out {
                let v = filters[((ky * k + kx) * c_in + i) * c_out + o];
                w[(t * c_in + i) * c_out + o] = v * scale[o];
            }
        }
    }
    let b: Vec<f32> = (0..c_out).map(|o| bias[o] * scale[o] + shift[o]).collect();
    Ok(FoldedConv {
        k: if centre_only { 1 } else { k },
        c_in,
        c_out,
        stride,
        padding: if centre_only { 0 } else { padding },
        weight: w,
        bias: b,
    })
}

/// Interpolation matrix `[150, len]` (row-major) of face-api.js along one axis: pad the
/// axis of length `len` with zeros to `side` (centred as `padToSquare`), then TF.js legacy
/// bilinear resize from `side` to 150.
pub(crate) fn resize_matrix(len: usize, side: usize) -> Vec<f32> {
    let diff = side - len;
    // padToSquare: `Math.round(diff * 0.5)` zeros appended, the rest prepended.
    let after = diff.div_ceil(2);
    let before = diff - after;
    let mut m = vec![0f32; INPUT_SIZE * len];
    let scale = side as f64 / INPUT_SIZE as f64;
    for o in 0..INPUT_SIZE {
        let src = o as f64 * scale;
        let lo = src.floor().max(0.0);
        let frac = src - lo;
        let lo = lo as usize;
        let hi = (src.ceil() as usize).min(side - 1);
        let mut add = |padded: usize, wgt: f64| {
            // Padded positions hold zeros: they contribute nothing.
            if padded >= before && padded < before + len {
                m[o * len + padded - before] += wgt as f32;
            }
        };
        add(lo, 1.0 - frac);
        add(hi, frac);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_of_150_is_the_identity() {
        let m = resize_matrix(INPUT_SIZE, INPUT_SIZE);
        for r in 0..INPUT_SIZE {
            for c in 0..INPUT_SIZE {
                assert_eq!(m[r * INPUT_SIZE + c], f32::from(u8::from(r == c)));
            }
        }
    }

    #[test]
    fn legacy_resize_samples_at_o_times_in_over_out() {
        // 112 -> 150: output 75 reads source 56 exactly; output 1 reads 0.74666.. between
        // 0 and 1; the last output reads 149 * 112 / 150 = 111.25, clamped to [111, 111].
        let m = resize_matrix(112, 112);
        let row = |o: usize| &m[o * 112..(o + 1) * 112];
        assert_eq!(row(0)[0], 1.0);
        assert_eq!(row(75)[56], 1.0);
        assert!((row(1)[0] - (1.0 - 112.0 / 150.0)).abs() < 1e-6);
        assert!((row(1)[1] - 112.0 / 150.0).abs() < 1e-6);
        assert!((row(149)[111] - 1.0).abs() < 1e-6);
        for o in 0..INPUT_SIZE {
            assert!((row(o).iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn pad_to_square_puts_the_larger_half_after_the_image() {
        // A 5-column image padded to 10: round(5 / 2) = 3 zero columns after, 2 before.
        let m = resize_matrix(5, 10);
        // Output 0 reads padded column 0 (a zero before the image): nothing.
        assert!(m[..5].iter().all(|v| *v == 0.0));
        // Output 30 reads padded column 2 = image column 0.
        assert_eq!(m[30 * 5], 1.0);
        // Output 105 reads padded column 7 = the first zero after the image.
        assert!(m[105 * 5..106 * 5].iter().all(|v| *v == 0.0));
    }

    #[test]
    fn network_size() {
        let specs = expected_tensors();
        assert_eq!(specs.len(), 117);
        let values: usize = specs.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(values, 5_614_592);
    }
}
