//! face-api.js `FaceRecognitionNet`: dlib's ResNet-29 face descriptor (128-d), the black box
//! of the LFW-MCS benchmark, reimplemented in burn from the weights face-api.js ships.
//!
//! Three layers:
//! - [`FaceApi`]: what the rest of the project uses. Takes a [`PixelBatch`], returns
//!   [`Descriptor`]s and input gradients; implements [`Embedder`]. No burn type appears in
//!   its signatures, so burn can be upgraded here alone.
//! - [`FaceApiNet`]: the network on burn tensors, differentiable end to end (pixels in,
//!   descriptors out), for code that wants to stay in burn; the reference implementation.
//! - [`FaceApiFast`] ([`crate::faceapi_fast`]): the same network, forward only, without
//!   burn (implicit GEMM on pre-packed filters); what [`FaceApi`]'s [`Embedder::embed`]
//!   runs. Built from the same folded weights; agrees with [`FaceApiNet`] to f32 summation
//!   order.
//!
//! # What face-api.js does (`@vladmandic/face-api` 1.7.15, `src/faceRecognitionNet/`,
//! `src/dom/NetInput.ts`, `src/ops/padToSquare.ts`), reproduced here
//! 1. The input is an `[h, w, 3]` tensor of 8-bit values (as float).
//! 2. `padToSquare(img, isCenterImage = true)`: the short side is zero-padded (pixel value
//!    0, before mean subtraction) to a square; `round(diff / 2)` zeros go after the image and
//!    the rest before it. A no-op for square inputs.
//! 3. If the square's side is not 150: `tf.image.resizeBilinear(img, [150, 150],
//!    alignCorners = false, halfPixelCenters = false)`, TF1's legacy sampling: output index
//!    `o` reads source position `o * side / 150`, interpolating between `floor` and
//!    `min(ceil, side - 1)`.
//! 4. Subtract the RGB means `(122.782, 117.001, 104.298)`, divide by 255.
//! 5. `conv32_down`: conv 7x7 stride 2 `valid` + bias, then the scale layer
//!    (`x * weights + biases`, per channel), ReLU; `maxPool` 3x3 stride 2 `valid`.
//! 6. Residual blocks `conv32_1..3`, `conv64_1..3`, `conv128_1..2`, `conv256_1..2`:
//!    conv 3x3 `same` (+bias, scale, ReLU), conv 3x3 `same` (+bias, scale), add the input,
//!    ReLU.
//! 7. Down blocks `conv64_down`, `conv128_down`, `conv256_down`, `conv256_down_out`: conv 3x3
//!    stride 2 `valid` (+bias, scale, ReLU), conv 3x3 `same` (+bias, scale); the input
//!    average-pooled 2x2 stride 2 `valid`; where the pooled map is larger, the conv output
//!    gets one zero row at the bottom and one zero column at the right; where the channel
//!    counts differ, the pooled map gets zero channels appended; add, ReLU.
//! 8. Mean over H and W, then `matMul` with `fc` `[256, 128]`. The descriptor is **not**
//!    L2-normalised (its norm is about 1.3 to 1.5 on faces).
//!
//! Spatial sizes: 150 -> 72 (conv32_down) -> 35 (max pool) -> 17 -> 8 -> 4 -> 2.
//! Multiply-adds per image: 270.9 M (see [`FaceApiNet::multiply_adds_per_image`]).
//!
//! Here the input is pixels in `[0, 1]` (the project's [`PixelBatch`] convention); the
//! padding and resize are one fixed interpolation matrix per axis applied by matmul, so
//! gradients flow to the pixels, and `(255 x - mean) / 255` is computed as
//! `x - mean / 255`. Each scale layer is folded into its convolution (weights and bias
//! multiplied by the scale), which changes results only at f32 rounding level.

use std::path::Path;
use std::sync::Arc;

use advface_core::{Descriptor, EmbedError, Embedder, PixelBatch};
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData};

use crate::faceapi_fast::FaceApiFast;
use crate::tfjs::{FileDigest, TfjsError, TfjsWeights};

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

/// A convolution with its bias and scale layer folded in.
#[derive(Debug, Clone)]
struct ConvLayer {
    /// `[out, in, k, k]`: TF filters transposed, times the scale weights.
    weight: Tensor<4>,
    /// `[out]`: `bias * scale_weights + scale_biases`.
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
}

impl ConvLayer {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1),
        )
    }
}

/// One residual block (`residual` or `residualDown` in face-api.js).
#[derive(Debug, Clone)]
struct ResidualBlock {
    conv1: ConvLayer,
    conv2: ConvLayer,
    down: bool,
}

impl ResidualBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.conv1.forward(x.clone()));
        let mut out = self.conv2.forward(out);
        if !self.down {
            return relu(out + x);
        }
        let mut pooled = avg_pool2d(x, AvgPoolOptions::new([2, 2]));
        let [_, c_out, h_out, w_out] = out.dims();
        let [n, c_in, h_pool, w_pool] = pooled.dims();
        if h_pool != h_out || w_pool != w_out {
            // face-api.js concatenates one zero row (bottom) and one zero column (right).
            out = out.pad(
                [
                    (0, h_pool.saturating_sub(h_out)),
                    (0, w_pool.saturating_sub(w_out)),
                ],
                PadMode::Constant(0.0),
            );
        }
        if c_in != c_out {
            let zeros = Tensor::<4>::zeros([n, c_out - c_in, h_pool, w_pool], &pooled.device());
            pooled = Tensor::cat(vec![pooled, zeros], 1);
        }
        relu(pooled + out)
    }
}

/// The blocks after the stem: (name, input channels, output channels, down-sampling).
const BLOCKS: [(&str, usize, usize, bool); 14] = [
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

/// face-api.js `FaceRecognitionNet` on burn tensors.
///
/// The weights are constants (they never require gradients), held on a device without
/// autodiff; an input on an autodiff device (`Device::flex().autodiff()`) makes the whole
/// forward pass differentiable with respect to the input.
#[derive(Debug, Clone)]
pub struct FaceApiNet {
    device: Device,
    stem: ConvLayer,
    blocks: Vec<ResidualBlock>,
    /// `[256, 128]`.
    fc: Tensor<2>,
    files: Vec<FileDigest>,
    source_name: String,
}

impl FaceApiNet {
    /// The network with the face-api.js 1.7.15 weights built into this binary
    /// (`models/faceapi/` of the repository); checks their SHA-256.
    pub fn embedded(device: &Device) -> Result<Self, FaceApiError> {
        Self::from_weights(&embedded_weights()?, device)
    }

    /// The network from a TF.js weights manifest on disk (its shards next to it).
    ///
    /// Any weights with the right tensor names and shapes are accepted; compare
    /// [`files`](Self::files) with [`FACEAPI_BIN_SHA256`] to know whether they are the
    /// benchmark's black box.
    pub fn from_manifest(path: &Path, device: &Device) -> Result<Self, FaceApiError> {
        Self::from_weights(&TfjsWeights::read(path)?, device)
    }

    /// The network from decoded TF.js weights (strictly checked against
    /// [`expected_tensors`]).
    pub fn from_weights(weights: &TfjsWeights, device: &Device) -> Result<Self, FaceApiError> {
        Ok(Self::from_folded(
            &FoldedNet::from_weights(weights)?,
            weights,
            device,
        ))
    }

    /// The network from weights already checked and folded by [`FoldedNet::from_weights`].
    pub(crate) fn from_folded(folded: &FoldedNet, weights: &TfjsWeights, device: &Device) -> Self {
        // Weights never need gradients: keep them off the autodiff graph.
        let device = device.clone().without_autodiff();
        let blocks = folded
            .blocks
            .iter()
            .map(|b| ResidualBlock {
                conv1: ConvLayer::from_folded(&b.conv1, &device),
                conv2: ConvLayer::from_folded(&b.conv2, &device),
                down: b.down,
            })
            .collect();
        let fc = TensorData::new(folded.fc.clone(), [256, DESCRIPTOR_LEN]);
        Self {
            stem: ConvLayer::from_folded(&folded.stem, &device),
            blocks,
            fc: Tensor::<2>::from_data(fc, &device),
            device,
            files: weights.files().to_vec(),
            source_name: weights.source_name().to_string(),
        }
    }

    /// The device the weights live on (without autodiff).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Size and SHA-256 of the manifest and of the `.bin` the weights came from.
    pub fn files(&self) -> &[FileDigest] {
        &self.files
    }

    /// Where the weights came from (manifest path or `embedded:...`).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Multiply-adds of one forward pass per image, counted over the convolutions and the
    /// fully connected layer: 270,854,144 (0.27 G).
    pub fn multiply_adds_per_image() -> u64 {
        let conv = |h: u64, c_out: u64, k: u64, c_in: u64| h * h * c_out * k * k * c_in;
        let mut total = conv(72, 32, 7, 3);
        let mut side = 35;
        for (_, c_in, c_out, down) in BLOCKS {
            let (c_in, c_out) = (c_in as u64, c_out as u64);
            if down {
                let conv_side = (side - 3) / 2 + 1;
                total += conv(conv_side, c_out, 3, c_in) + conv(conv_side, c_out, 3, c_out);
                side /= 2;
            } else {
                total += conv(side, c_out, 3, c_in) + conv(side, c_out, 3, c_out);
            }
        }
        total + 256 * DESCRIPTOR_LEN as u64
    }

    /// face-api.js preprocessing: zero-pad to a square (centred), bilinear resize to
    /// 150 x 150 as TF.js `resizeBilinear(alignCorners = false, halfPixelCenters = false)`,
    /// subtract the RGB means. Differentiable (two matmuls with fixed matrices).
    ///
    /// `pixels` must be on [`device`](Self::device), with or without autodiff.
    ///
    /// # Shapes
    /// `pixels`: `[n, 3, h, w]`, values in `[0, 1]` (8-bit value / 255), `h, w >= 1`.
    /// Returns `[n, 3, 150, 150]`: `(resized_8bit - mean_rgb) / 255`.
    pub fn preprocess(&self, pixels: Tensor<4>) -> Result<Tensor<4>, FaceApiError> {
        let [n, c, h, w] = pixels.dims();
        if c != 3 || h == 0 || w == 0 || n == 0 {
            return Err(FaceApiError::BadInput(format!(
                "expected pixels of shape [n >= 1, 3, h >= 1, w >= 1], got [{n}, {c}, {h}, {w}]"
            )));
        }
        if pixels.device() != self.device {
            return Err(FaceApiError::BadInput(format!(
                "pixels are on {:?} but the weights on {:?}",
                pixels.device(),
                self.device
            )));
        }
        let side = h.max(w);
        let resized = if side == INPUT_SIZE && h == w {
            // face-api.js skips the resize when the (padded) input is already 150 x 150.
            pixels
        } else {
            // Along W: [n * 3 * h, w] @ [w, 150]; along H: [1, 150, h] @ [n * 3, h, 150].
            let cols_t = transpose(&resize_matrix(w, side), INPUT_SIZE, w);
            let cols_t =
                Tensor::<2>::from_data(TensorData::new(cols_t, [w, INPUT_SIZE]), &self.device);
            let rows = resize_matrix(h, side);
            let rows =
                Tensor::<3>::from_data(TensorData::new(rows, [1, INPUT_SIZE, h]), &self.device);
            let x = pixels.reshape([n * 3 * h, w]).matmul(cols_t);
            rows.matmul(x.reshape([n * 3, h, INPUT_SIZE]))
                .reshape([n, 3, INPUT_SIZE, INPUT_SIZE])
        };
        let mean: Vec<f32> = MEAN_RGB.iter().map(|m| m / 255.0).collect();
        let mean = Tensor::<4>::from_data(TensorData::new(mean, [1, 3, 1, 1]), &self.device);
        Ok(resized - mean)
    }

    /// Descriptors of a batch of pixels: preprocessing and network, differentiable with
    /// respect to `pixels` when they are on an autodiff device.
    ///
    /// # Shapes
    /// `pixels`: `[n, 3, h, w]`, values in `[0, 1]`, any size (non-square inputs are padded
    /// to a square as face-api.js does). Returns `[n, 128]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<Tensor<2>, FaceApiError> {
        Ok(self.forward_normalized(self.preprocess(pixels)?))
    }

    /// The network after preprocessing.
    ///
    /// # Shapes
    /// `x`: `[n, 3, 150, 150]` as returned by [`preprocess`](Self::preprocess). Returns
    /// `[n, 128]`.
    pub fn forward_normalized(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.stem.forward(x));
        let mut x = max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2]));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let [n, c, _, _] = x.dims();
        let pooled = x.mean_dims(&[2, 3]).reshape([n, c]);
        pooled.matmul(self.fc.clone())
    }
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
/// the form both the burn network and the fast path ([`crate::faceapi_fast`]) start from.
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

impl ConvLayer {
    /// The folded layer as burn tensors: HWIO -> `[out, in, kh, kw]`.
    fn from_folded(f: &FoldedConv, device: &Device) -> Self {
        let (kk, c_in, c_out) = (f.k * f.k, f.c_in, f.c_out);
        let mut w = vec![0f32; f.weight.len()];
        for t in 0..kk {
            for i in 0..c_in {
                for o in 0..c_out {
                    w[(o * c_in + i) * kk + t] = f.weight[(t * c_in + i) * c_out + o];
                }
            }
        }
        ConvLayer {
            weight: Tensor::from_data(TensorData::new(w, [c_out, c_in, f.k, f.k]), device),
            bias: Tensor::from_data(TensorData::new(f.bias.clone(), [c_out]), device),
            stride: f.stride,
            padding: f.padding,
        }
    }
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

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Descriptors of a batch together with the gradient of an objective with respect to the
/// input pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct DescriptorsAndGrad {
    /// One descriptor per item (128 components each).
    pub descriptors: Vec<Descriptor>,
    /// Gradient of the objective with respect to the pixels in `[0, 1]` units.
    ///
    /// # Shapes
    /// `[n, 3, h, w]` (NCHW), the shape of the input batch.
    pub grad: Vec<f32>,
}

/// face-api.js `FaceRecognitionNet`, the benchmark's black box, behind a burn-free API.
///
/// Forward-only calls ([`Embedder::embed`]) run the fast path ([`FaceApiFast`], 3x to 5x
/// faster than burn on the CPU); gradients, and [`embed_reference`](Self::embed_reference),
/// run the burn network on burn's pure-Rust CPU backend (flex).
///
/// ```
/// use advface_core::{Embedder, PixelBatch, RgbImage};
/// use advface_models::FaceApi;
///
/// let model = FaceApi::embedded()?;
/// let grey = PixelBatch::from_images(&[RgbImage::filled(112, 112, [128, 128, 128])])?;
/// let d = model.embed(&grey)?;
/// assert_eq!(d[0].len(), 128);
/// // Gradient of the distance to a target descriptor, with respect to the pixels.
/// let target = d[0].clone();
/// let step = model.descriptors_and_input_grad(&grey, &[target])?;
/// assert_eq!(step.grad.len(), 3 * 112 * 112);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FaceApi {
    net: FaceApiNet,
    /// The same weights for the forward-only fast path (shared: clones are cheap).
    fast: Arc<FaceApiFast>,
}

impl FaceApi {
    /// The face-api.js 1.7.15 weights built into this binary (no files needed at run time).
    pub fn embedded() -> Result<Self, FaceApiError> {
        Self::from_weights(&embedded_weights()?)
    }

    /// Weights from a TF.js manifest on disk (`face_recognition_model-weights_manifest.json`
    /// with `face_recognition_model.bin` next to it).
    pub fn from_manifest(path: &Path) -> Result<Self, FaceApiError> {
        Self::from_weights(&TfjsWeights::read(path)?)
    }

    /// Decoded TF.js weights (strictly checked against [`expected_tensors`]): the burn
    /// network on burn's CPU backend, and the fast forward path, from one folding.
    pub fn from_weights(weights: &TfjsWeights) -> Result<Self, FaceApiError> {
        let folded = FoldedNet::from_weights(weights)?;
        Ok(Self {
            net: FaceApiNet::from_folded(&folded, weights, &Device::flex()),
            fast: Arc::new(FaceApiFast::from_folded(&folded)),
        })
    }

    /// The burn network underneath (differentiable; the reference for the fast path).
    pub fn net(&self) -> &FaceApiNet {
        &self.net
    }

    /// The forward-only fast path [`Embedder::embed`] runs.
    pub fn fast(&self) -> &FaceApiFast {
        &self.fast
    }

    /// Descriptors computed by the burn network (the reference implementation) instead of
    /// the fast path; same results up to f32 summation order. Runs in chunks of
    /// [`EMBED_CHUNK`] images.
    ///
    /// # Shapes
    /// `batch`: `[n, 3, h, w]` in `[0, 1]`, any `h, w >= 1`; returns `n` descriptors of 128
    /// components.
    pub fn embed_reference(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError> {
        let [n, c, h, w] = batch.shape();
        let x = self
            .input_tensor(batch, self.net.device())
            .map_err(FaceApiError::into_embed)?;
        let mut out = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let len = EMBED_CHUNK.min(n - start);
            let chunk = x.clone().narrow(0, start, len);
            debug_assert_eq!(chunk.dims(), [len, c, h, w]);
            let d = self.net.forward(chunk).map_err(FaceApiError::into_embed)?;
            out.extend(to_descriptors(&d, len)?);
            start += len;
        }
        Ok(out)
    }

    /// Size and SHA-256 of the manifest and of the `.bin` the weights came from (for run
    /// manifests).
    pub fn files(&self) -> &[FileDigest] {
        self.net.files()
    }

    fn input_tensor(&self, batch: &PixelBatch, device: &Device) -> Result<Tensor<4>, FaceApiError> {
        let [n, c, h, w] = batch.shape();
        if h == 0 || w == 0 {
            return Err(FaceApiError::BadInput(format!(
                "images of {h} x {w} pixels (height x width) have no pixels"
            )));
        }
        let data = TensorData::new(batch.as_slice().to_vec(), [n, c, h, w]);
        Ok(Tensor::<4>::from_data(data, device))
    }

    /// Descriptors, together with the input gradient of the objective whose gradient with
    /// respect to the descriptors `cotangent` returns.
    ///
    /// One forward and one backward pass over the whole batch (memory grows with the batch,
    /// about 5 MB per image: split very large batches). `cotangent` receives the
    /// descriptors and must return `dL/dD`, `n * 128` values (item-major). The objective is taken as the sum over
    /// items, so each item's gradient is that of its own term.
    ///
    /// # Shapes
    /// `batch`: `[n, 3, h, w]` in `[0, 1]`. `grad`: `[n, 3, h, w]`.
    pub fn descriptors_and_vjp(
        &self,
        batch: &PixelBatch,
        cotangent: impl FnOnce(&[Descriptor]) -> Vec<f32>,
    ) -> Result<DescriptorsAndGrad, EmbedError> {
        let n = batch.len();
        if n == 0 {
            return Ok(DescriptorsAndGrad {
                descriptors: Vec::new(),
                grad: Vec::new(),
            });
        }
        let device = self.net.device().clone().autodiff();
        let x = self
            .input_tensor(batch, &device)
            .map_err(FaceApiError::into_embed)?
            .require_grad();
        let d = self
            .net
            .forward(x.clone())
            .map_err(FaceApiError::into_embed)?;
        let descriptors = to_descriptors(&d, n)?;
        let g = cotangent(&descriptors);
        if g.len() != n * DESCRIPTOR_LEN {
            return Err(EmbedError::BadInput {
                model: MODEL_NAME.into(),
                reason: format!(
                    "cotangent: expected {} values ({n} items x {DESCRIPTOR_LEN}), got {}",
                    n * DESCRIPTOR_LEN,
                    g.len()
                ),
            });
        }
        let g = Tensor::<2>::from_data(TensorData::new(g, [n, DESCRIPTOR_LEN]), self.net.device());
        let grads = (d * g).sum().backward();
        let grad = x.grad(&grads).ok_or_else(|| EmbedError::Failed {
            model: MODEL_NAME.into(),
            reason: "autodiff returned no gradient for the input".into(),
        })?;
        let grad = tensor_to_vec(grad.into_data())?;
        Ok(DescriptorsAndGrad { descriptors, grad })
    }

    /// Descriptors, and the input gradient of `sum_i ||D(x_i) - t_i||_2` (Euclidean
    /// distance of each item's descriptor to its target), so item `i`'s gradient is the
    /// gradient of its own distance. Where a descriptor equals its target exactly the
    /// distance has no gradient; zero is used.
    ///
    /// # Shapes
    /// `batch`: `[n, 3, h, w]` in `[0, 1]`; `targets`: `n` descriptors of 128 components.
    /// `grad`: `[n, 3, h, w]`.
    pub fn descriptors_and_input_grad(
        &self,
        batch: &PixelBatch,
        targets: &[Descriptor],
    ) -> Result<DescriptorsAndGrad, EmbedError> {
        if targets.len() != batch.len() {
            return Err(EmbedError::BadInput {
                model: MODEL_NAME.into(),
                reason: format!(
                    "expected one target descriptor per image ({}), got {}",
                    batch.len(),
                    targets.len()
                ),
            });
        }
        if let Some((i, t)) = targets
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() != DESCRIPTOR_LEN)
        {
            return Err(EmbedError::BadInput {
                model: MODEL_NAME.into(),
                reason: format!(
                    "target descriptor {i}: expected {DESCRIPTOR_LEN} components, got {}",
                    t.len()
                ),
            });
        }
        self.descriptors_and_vjp(batch, |descriptors| {
            let mut g = Vec::with_capacity(descriptors.len() * DESCRIPTOR_LEN);
            for (d, t) in descriptors.iter().zip(targets) {
                let dist = d.l2(t) as f32;
                g.extend(d.as_slice().iter().zip(t.as_slice()).map(|(a, b)| {
                    if dist > 0.0 {
                        (a - b) / dist
                    } else {
                        0.0
                    }
                }));
            }
            g
        })
    }
}

fn tensor_to_vec(data: TensorData) -> Result<Vec<f32>, EmbedError> {
    data.try_into_vec::<f32>().map_err(|e| EmbedError::Failed {
        model: MODEL_NAME.into(),
        reason: format!("reading a tensor back: {e:?}"),
    })
}

fn to_descriptors(d: &Tensor<2>, n: usize) -> Result<Vec<Descriptor>, EmbedError> {
    let v = tensor_to_vec(d.to_data())?;
    Ok((0..n)
        .map(|i| Descriptor(v[i * DESCRIPTOR_LEN..(i + 1) * DESCRIPTOR_LEN].to_vec()))
        .collect())
}

/// Gradients through the black box's own network: for the white-box reference run only
/// (PROTOCOL.md), never for an attack that claims to be black-box.
impl advface_core::Differentiable for FaceApi {
    fn descriptors_and_vjp(
        &self,
        batch: &PixelBatch,
        cotangent: &mut dyn FnMut(&[Descriptor]) -> Vec<f32>,
    ) -> Result<(Vec<Descriptor>, Vec<f32>), EmbedError> {
        let r = FaceApi::descriptors_and_vjp(self, batch, |d| cotangent(d))?;
        Ok((r.descriptors, r.grad))
    }
}

impl Embedder for FaceApi {
    fn name(&self) -> String {
        MODEL_NAME.into()
    }

    fn descriptor_len(&self) -> usize {
        DESCRIPTOR_LEN
    }

    /// Descriptors of a batch by the forward-only fast path ([`FaceApiFast`]), run in
    /// chunks of [`EMBED_CHUNK`] images. [`embed_reference`](FaceApi::embed_reference) runs
    /// the burn network instead.
    ///
    /// # Shapes
    /// `batch`: `[n, 3, h, w]` in `[0, 1]`, any `h, w >= 1` (non-square images are padded to
    /// a square as face-api.js does); returns `n` descriptors of 128 components.
    fn embed(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError> {
        self.fast.embed(batch)
    }
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
        assert_eq!(FaceApiNet::multiply_adds_per_image(), 270_854_144);
    }
}
