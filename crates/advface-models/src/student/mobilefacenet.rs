//! MobileFaceNet ([`Arch::MobileFaceNet`](super::Arch::MobileFaceNet)): the bottleneck
//! (inverted residual) and the body after the stem, up to the GDConv. The stem and head
//! are [`Student`](super::Student)'s.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, PRelu};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

use super::layers::{conv, depthwise, prelu};

/// MobileFaceNet's bottleneck stages `(t, c, n, s)`: expansion, output channels as a
/// multiple of `width` (the paper's 64 and 128 at width 64), repeats, stride of the first
/// block.
pub(super) const MOBILEFACENET_STAGES: [(usize, usize, usize, usize); 5] = [
    (2, 1, 5, 2),
    (4, 2, 1, 2),
    (2, 2, 6, 1),
    (4, 2, 1, 2),
    (2, 2, 2, 1),
];

/// MobileFaceNet's bottleneck (inverted residual): 1 x 1 expansion, BN, PReLU; 3 x 3
/// depthwise (the block's stride), BN, PReLU; linear 1 x 1 projection, BN; plus the input
/// when `residual`.
#[derive(Module, Debug)]
pub struct Bottleneck {
    expand: Conv2d,
    expand_bn: BatchNorm,
    expand_act: PRelu,
    dw: Conv2d,
    dw_bn: BatchNorm,
    dw_act: PRelu,
    project: Conv2d,
    project_bn: BatchNorm,
    /// Stride 1 and as many channels out as in (a constant, not a parameter).
    residual: bool,
}

impl Bottleneck {
    pub(super) fn new(c_in: usize, c_out: usize, t: usize, stride: usize, device: &Device) -> Self {
        let hidden = c_in * t;
        Bottleneck {
            expand: conv(c_in, hidden, 1, 1, 0, device),
            expand_bn: BatchNormConfig::new(hidden).init(device),
            expand_act: prelu(hidden, device),
            dw: depthwise(hidden, 3, stride, 1, device),
            dw_bn: BatchNormConfig::new(hidden).init(device),
            dw_act: prelu(hidden, device),
            project: conv(hidden, c_out, 1, 1, 0, device),
            project_bn: BatchNormConfig::new(c_out).init(device),
            residual: stride == 1 && c_in == c_out,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self
            .expand_act
            .forward(self.expand_bn.forward(self.expand.forward(x.clone())));
        let out = self
            .dw_act
            .forward(self.dw_bn.forward(self.dw.forward(out)));
        let out = self.project_bn.forward(self.project.forward(out));
        if self.residual {
            out + x
        } else {
            out
        }
    }
}

/// MobileFaceNet after its stem convolution and batch norm (which are [`Student`](super::Student)'s `conv1`
/// and `bn1`), up to the GDConv's batch norm: stem PReLU, depthwise conv, bottlenecks,
/// 1 x 1 conv, GDConv.
#[derive(Module, Debug)]
pub struct MobileBody {
    stem_act: PRelu,
    dw: Conv2d,
    dw_bn: BatchNorm,
    dw_act: PRelu,
    blocks: Vec<Bottleneck>,
    conv_out: Conv2d,
    conv_out_bn: BatchNorm,
    conv_out_act: PRelu,
    gdconv: Conv2d,
    gdconv_bn: BatchNorm,
    /// The GDConv's kernel side (a constant, not a parameter).
    kernel: usize,
}

impl MobileBody {
    /// `w`: [`StudentConfig::width`](super::StudentConfig::width); `f`:
    /// [`feature_channels`](super::StudentConfig::feature_channels); `kernel`:
    /// [`gdconv_kernel`](super::StudentConfig::gdconv_kernel).
    pub(super) fn new(w: usize, f: usize, kernel: usize, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut c_in = w;
        for &(t, c, n, s) in &MOBILEFACENET_STAGES {
            let c_out = c * w;
            for b in 0..n {
                let (cin, stride) = if b == 0 { (c_in, s) } else { (c_out, 1) };
                blocks.push(Bottleneck::new(cin, c_out, t, stride, device));
            }
            c_in = c_out;
        }
        MobileBody {
            stem_act: prelu(w, device),
            dw: depthwise(w, 3, 1, 1, device),
            dw_bn: BatchNormConfig::new(w).init(device),
            dw_act: prelu(w, device),
            blocks,
            conv_out: conv(c_in, f, 1, 1, 0, device),
            conv_out_bn: BatchNormConfig::new(f).init(device),
            conv_out_act: prelu(f, device),
            gdconv: depthwise(f, kernel, 1, 0, device),
            gdconv_bn: BatchNormConfig::new(f).init(device),
            kernel,
        }
    }

    /// `x`: the stem's batch-normed output `[n, width, h, w]`; returns `[n, 8 * width]`.
    pub(super) fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.stem_act.forward(x);
        let mut x = self.dw_act.forward(self.dw_bn.forward(self.dw.forward(x)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let mut x = self
            .conv_out_act
            .forward(self.conv_out_bn.forward(self.conv_out.forward(x)));
        let [_, _, h, w] = x.dims();
        let k = self.kernel;
        if h < k || w < k {
            x = x.pad(
                [(0, k.saturating_sub(h)), (0, k.saturating_sub(w))],
                PadMode::Constant(0.0),
            );
        }
        let x = self.gdconv_bn.forward(self.gdconv.forward(x));
        let [n, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([n, c])
    }
}
