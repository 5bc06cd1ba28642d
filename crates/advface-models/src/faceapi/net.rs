//! face-api.js `FaceRecognitionNet` on burn tensors ([`FaceApiNet`]): differentiable end to
//! end, pixels in, descriptors out; the reference the fast path is checked against. Built
//! from the folded weights of [`super::weights`].

use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData};

use super::weights::{
    embedded_weights, resize_matrix, FaceApiError, FoldedConv, FoldedNet, BLOCKS, DESCRIPTOR_LEN,
    INPUT_SIZE, MEAN_RGB,
};
use crate::tfjs::{FileDigest, TfjsWeights};

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

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_multiply_adds() {
        assert_eq!(FaceApiNet::multiply_adds_per_image(), 270_854_144);
    }
}
