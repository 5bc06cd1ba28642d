//! The layer constructors every architecture uses, with torchvision's initialisation.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PRelu, PReluConfig, PaddingConfig2d};
use burn::tensor::Device;

pub(super) fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    device: &Device,
) -> Conv2d {
    grouped_conv(c_in, c_out, k, stride, pad, 1, device)
}

/// Depthwise convolution: one `k x k` filter per channel.
pub(super) fn depthwise(c: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
    grouped_conv(c, c, k, stride, pad, c, device)
}

fn grouped_conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

pub(super) fn prelu(c: usize, device: &Device) -> PRelu {
    PReluConfig::new()
        .with_num_parameters(c)
        .with_alpha(0.25)
        .init(device)
}
