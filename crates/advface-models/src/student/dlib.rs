//! The small dlib-like ResNet ([`Arch::Dlib`](super::Arch::Dlib)): dlib's two-convolution
//! block with its parameter-free `res_down` shortcut. The stem, pool and head are
//! [`Student`](super::Student)'s.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::{AvgPoolOptions, PadMode};
use burn::tensor::{Device, Tensor};

use super::layers::conv;

/// dlib's `ares` / `ares_down` block: 3 x 3 conv (stride 2 when `down`), BN, ReLU, 3 x 3
/// conv, BN, add the shortcut, ReLU. The shortcut is the input itself, or for `down` its
/// 2 x 2 / 2 average pool zero-padded to the block's channels and map (dlib's `add_prev`
/// adds tensors of different shapes as if the smaller were zero-padded).
#[derive(Module, Debug)]
pub struct DlibBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    /// `res_down` (a constant, not a parameter).
    down: bool,
}

impl DlibBlock {
    pub(super) fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        DlibBlock {
            conv1: conv(c_in, c_out, 3, stride, 1, device),
            bn1: BatchNormConfig::new(c_out).init(device),
            conv2: conv(c_out, c_out, 3, 1, 1, device),
            bn2: BatchNormConfig::new(c_out).init(device),
            down: stride != 1,
        }
    }

    pub(super) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let [_, c_out, h_out, w_out] = out.dims();
        let mut shortcut = if self.down {
            avg_pool2d(x, AvgPoolOptions::new([2, 2]))
        } else {
            x
        };
        let [n, c_in, h, w] = shortcut.dims();
        if h < h_out || w < w_out {
            shortcut = shortcut.pad(
                [(0, h_out.saturating_sub(h)), (0, w_out.saturating_sub(w))],
                PadMode::Constant(0.0),
            );
        }
        if c_in < c_out {
            let zeros = Tensor::<4>::zeros([n, c_out - c_in, h_out, w_out], &shortcut.device());
            shortcut = Tensor::cat(vec![shortcut, zeros], 1);
        }
        relu(out + shortcut)
    }
}
