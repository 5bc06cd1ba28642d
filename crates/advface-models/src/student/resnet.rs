//! ResNet-18 / ResNet-34 ([`Arch::ResNet18`](super::Arch::ResNet18),
//! [`Arch::ResNet34`](super::Arch::ResNet34)): torchvision's BasicBlock with its projection
//! shortcut. The stem, pool and head are [`Student`](super::Student)'s.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::layers::conv;

/// Projection shortcut: 1 x 1 convolution (with the block's stride) and batch norm.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// ResNet BasicBlock: 3 x 3 conv, BN, ReLU, 3 x 3 conv, BN, add the shortcut, ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    pub(super) fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: conv(c_in, c_out, 1, stride, 0, device),
            bn: BatchNormConfig::new(c_out).init(device),
        });
        BasicBlock {
            conv1: conv(c_in, c_out, 3, stride, 1, device),
            bn1: BatchNormConfig::new(c_out).init(device),
            conv2: conv(c_out, c_out, 3, 1, 1, device),
            bn2: BatchNormConfig::new(c_out).init(device),
            downsample,
        }
    }

    pub(super) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let shortcut = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x)),
            None => x,
        };
        relu(out + shortcut)
    }
}
