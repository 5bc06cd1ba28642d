//! face-api.js `FaceRecognitionNet`: dlib's ResNet-29 face descriptor (128-d), the black box
//! of the LFW-MCS benchmark, reimplemented in burn from the weights face-api.js ships.
//!
//! Three layers:
//! - [`FaceApi`]: what the rest of the project uses. Takes a [`PixelBatch`], returns
//!   [`Descriptor`]s and input gradients; implements [`Embedder`]. No burn type appears in
//!   its signatures, so burn can be upgraded here alone.
//! - [`FaceApiNet`]: the network on burn tensors, differentiable end to end (pixels in,
//!   descriptors out), for code that wants to stay in burn; the reference implementation.
//! - [`FaceApiFast`] ([`fast`]): the same network, forward only, without
//!   burn (implicit GEMM on pre-packed filters); what [`FaceApi`]'s [`Embedder::embed`]
//!   runs. Built from the same folded weights; agrees with [`FaceApiNet`] to f32 summation
//!   order.
//!
//! # Files
//! - [`weights`]: what both paths share: constants, [`FaceApiError`], the tensor list,
//!   the embedded weights, the scale layers folded into the convolutions, the resize.
//! - [`net`]: [`FaceApiNet`], the burn network (imports `weights` only).
//! - [`fast`]: [`FaceApiFast`], the forward-only kernel (imports `weights` only; its
//!   convolution is in `fast/gemm.rs`).
//! - `mod.rs`: [`FaceApi`], the two put together behind one burn-free type.
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
use burn::tensor::{Device, Tensor, TensorData};

pub mod fast;
pub mod net;
pub mod weights;

pub use fast::FaceApiFast;
pub use net::FaceApiNet;
pub use weights::{
    expected_tensors, FaceApiError, BIN_FILE, DESCRIPTOR_LEN, EMBED_CHUNK, FACEAPI_BIN_SHA256,
    INPUT_SIZE, MANIFEST_FILE, MEAN_RGB,
};

use crate::tfjs::{FileDigest, TfjsWeights};
use weights::{embedded_weights, FoldedNet, MODEL_NAME};

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
