//! Student networks: CNNs trained to reproduce the black box's descriptors from its answers
//! (distillation, issue 4), so that attacks can take gradients through them.
//!
//! Four architectures ([`Arch`]), all on 112 x 112 crops with the ImageNet normalisation,
//! all randomly initialised (He-normal convolutions, as torchvision does; no pretrained
//! weights are used):
//! - `resnet18`, `resnet34` (the default): the MCS2018 2nd-place team's ImageNet
//!   ResNet-18/34 cut after `layer3` (256 channels at width 64), global average pool, and a
//!   linear layer to the descriptor; the 3rd-place team's batch norm on the output is an
//!   option.
//! - `dlib`: a small network shaped like dlib's face-recognition ResNet
//!   (`dlib_face_recognition_resnet_model_v1`, which face-api.js ported): dlib's stem and its
//!   `res` / `res_down` blocks (parameter-free average-pool shortcut), fewer blocks; see
//!   [`Arch::Dlib`].
//! - `mobilefacenet`: MobileFaceNet (Chen et al. 2018) with PReLU and a global depthwise
//!   convolution; see [`Arch::MobileFaceNet`].
//!
//! Two layers:
//! - [`StudentTrainer`]: what the rest of the project uses. Takes crops as bytes, trains with
//!   Adam on the MSE to target descriptors, predicts, gives input gradients, and saves and
//!   loads its weights. No burn type appears in its signatures.
//! - [`Student`]: the burn module (pixels in `[0, 1]` in, descriptors out), differentiable
//!   end to end, for code that wants to stay in burn.
//!
//! # Weight file format
//! `ADVFSTU1` (8 bytes), the length of the JSON config as a little-endian `u32`, the
//! [`StudentConfig`] as JSON, then burn's burnpack record of the module (parameters and batch
//! norm running statistics). Loading checks the config against the one asked for before
//! touching the weights. Files written before `dlib` and `mobilefacenet` existed load
//! unchanged: their config has no new field (a missing `arch` is ResNet-18), and the
//! ResNet record keeps its keys (the new architectures' parts are fields that are empty
//! for the ResNets).

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PRelu, PReluConfig,
    PaddingConfig2d,
};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Side of the square crops the student is trained on, in pixels (the 2nd-place team's
/// 112 x 112 input).
pub const STUDENT_INPUT_SIZE: usize = 112;

/// ImageNet per-channel RGB mean for pixels in `[0, 1]` (torchvision's normalisation, which
/// the ImageNet ResNets the teams started from expect).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];

/// ImageNet per-channel RGB standard deviation for pixels in `[0, 1]` (torchvision).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

const FILE_MAGIC: &[u8; 8] = b"ADVFSTU1";
const OPTIM_MAGIC: &[u8; 8] = b"ADVFOPT1";

/// Error of a student network.
#[derive(Debug, thiserror::Error)]
pub enum StudentError {
    /// The configuration cannot describe a network.
    #[error("bad student config: {0}")]
    BadConfig(String),
    /// The input cannot be fed to the network.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A weight file was written for another configuration.
    #[error(
        "{path}: weights are for student config {found}, but {expected} was asked for",
        path = path.display()
    )]
    ConfigMismatch {
        /// The weight file.
        path: PathBuf,
        /// The config asked for, as JSON.
        expected: String,
        /// The config stored in the file, as JSON.
        found: String,
    },
    /// A weight file is not a student weight file, or is damaged.
    #[error("{path}: not a student weight file: {reason}", path = path.display())]
    BadFile {
        /// The weight file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// burn failed (record encoding, autodiff).
    #[error("burn: {0}")]
    Burn(String),
}

/// Student architecture family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ResNet-18: BasicBlocks `[2, 2, 2, 2]` (He et al. 2016, torchvision `resnet18`).
    ResNet18,
    /// ResNet-34: BasicBlocks `[3, 4, 6, 3]` (He et al. 2016, torchvision `resnet34`).
    ResNet34,
    /// A small dlib-like ResNet (serde name `dlib`), after dlib's face-recognition metric
    /// network `dlib_face_recognition_resnet_model_v1`: 7 x 7 / 2 convolution with `width`
    /// filters (dlib: 32), batch norm, ReLU, 3 x 3 / 2 max pool, then four stages of dlib's
    /// two-convolution blocks (3 x 3 conv, BN, ReLU, 3 x 3 conv, BN, add, ReLU) with
    /// `width * 2^(k-1)` filters (dlib: 32, 64, 128, 256). Stages 2 to 4 begin with dlib's
    /// `res_down` block: its first convolution has stride 2 and its shortcut is a 2 x 2 / 2
    /// average pool of the input, zero-padded to the block's channels (no parameters).
    /// Global average pool, then a linear layer **without bias** (dlib's `fc_no_bias`).
    ///
    /// "Small": two blocks per stage (`[2, 2, 2, 2]`, ResNet-18's counts) where dlib has
    /// `[3, 4, 3, 3]` plus one more 256-filter `res_down`, and [`StudentConfig::stop_after_layer`]
    /// cuts it as it cuts the ResNets (default 3: stages of 32, 64 and 128 filters at width
    /// 32, a 7 x 7 map at 112 px; 4 keeps dlib's 256-filter stage). Convolutions are padded
    /// as torchvision's ResNets (dlib's stride-2 layers are unpadded, on 150 px input), so the
    /// maps are 56, 28, 14, 7, 4 px at 112 px input; where a `res_down` block's pooled
    /// shortcut comes out one pixel smaller than its convolutions (odd maps), it is
    /// zero-padded at the bottom and right, as dlib's `add_prev` does. Batch norm trains
    /// with batch statistics (dlib: `bn_con`, run as `affine` at inference, as
    /// [`Module::valid`] does here).
    Dlib,
    /// MobileFaceNet (Chen et al. 2018, "MobileFaceNets: Efficient CNNs for Accurate
    /// Real-Time Face Verification on Mobile Devices", table 1; serde name `mobilefacenet`).
    /// With `w = width` (64: the paper's): 3 x 3 / 2 conv `w`, 3 x 3 depthwise conv `w`,
    /// bottleneck stages `(t, c, n, s)` = `(2, w, 5, 2)`, `(4, 2w, 1, 2)`, `(2, 2w, 6, 1)`,
    /// `(4, 2w, 1, 2)`, `(2, 2w, 2, 1)` (inverted residuals: 1 x 1 expansion by `t`, 3 x 3
    /// depthwise with stride `s` on the first of the `n` blocks, linear 1 x 1 projection;
    /// shortcut when the stride is 1 and the channels match), 1 x 1 conv `8w` (512),
    /// linear global depthwise conv (GDConv), linear layer without bias to the descriptor,
    /// batch norm. Every convolution is followed by batch norm; the non-linear ones by a
    /// per-channel PReLU (initial slope 0.25), as in the paper.
    ///
    /// The GDConv's kernel is the side of the final map at the size the student is built
    /// for ([`StudentConfig::gdconv_kernel`]): 7 x 7 at 112 px (the paper's), 4 x 4 with
    /// `input_downsample` 2. Fed another size (input gradients accept any size from 32 px),
    /// a smaller map is zero-padded at the bottom and right to the kernel, and a larger one
    /// gives a map of GDConv outputs that is averaged.
    ///
    /// The final batch norm is part of the architecture, so `output_batch_norm` must be
    /// false, and training needs batches of at least 2 (the GDConv's batch norm sees one
    /// value per channel and image). `stop_after_layer` is not used (the whole network is
    /// always built).
    ///
    /// Speed: fewer multiply-adds than the ResNet-18 student, but on burn's `flex` CPU
    /// backend it trains about half as fast (2.5 images/s at 112 px, 9.7 with
    /// `input_downsample` 2, batch 32, on this project's loaded 2-core machine): the batch
    /// norms and PReLUs over the expanded maps are memory-bound and dominate.
    MobileFaceNet,
}

/// MobileFaceNet's bottleneck stages `(t, c, n, s)`: expansion, output channels as a
/// multiple of `width` (the paper's 64 and 128 at width 64), repeats, stride of the first
/// block.
const MOBILEFACENET_STAGES: [(usize, usize, usize, usize); 5] = [
    (2, 1, 5, 2),
    (4, 2, 1, 2),
    (2, 2, 6, 1),
    (4, 2, 1, 2),
    (2, 2, 2, 1),
];

impl Arch {
    /// Blocks per stage of the full network: BasicBlocks of `layer1` .. `layer4` for the
    /// ResNets, dlib blocks of the four stages for [`Arch::Dlib`], bottlenecks of the five
    /// stages for [`Arch::MobileFaceNet`].
    pub fn blocks_per_layer(self) -> &'static [usize] {
        match self {
            Arch::ResNet18 => &[2, 2, 2, 2],
            Arch::ResNet34 => &[3, 4, 6, 3],
            Arch::Dlib => &[2, 2, 2, 2],
            Arch::MobileFaceNet => &[5, 1, 6, 1, 2],
        }
    }

    /// The width each architecture is described with: 64 for the ResNets (torchvision) and
    /// MobileFaceNet (the paper), 32 for [`Arch::Dlib`] (dlib's). What the CLI uses when no
    /// width is given.
    pub fn default_width(self) -> usize {
        match self {
            Arch::ResNet18 | Arch::ResNet34 | Arch::MobileFaceNet => 64,
            Arch::Dlib => 32,
        }
    }

    /// The serde name (`resnet18`, `resnet34`, `dlib`, `mobilefacenet`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::Dlib => "dlib",
            Arch::MobileFaceNet => "mobilefacenet",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of a [`Student`]. Serialised into every weight file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentConfig {
    /// Architecture. Default [`Arch::ResNet18`] (the 2nd-place team trained ResNet-18 and -34);
    /// weight files and configs written before there was a choice load as ResNet-18.
    #[serde(default = "default_arch")]
    pub arch: Arch,
    /// Channels of the stem and of the first stage. ResNets and [`Arch::Dlib`]: stage `k` has
    /// `width * 2^(k-1)`; [`Arch::MobileFaceNet`]: see there (64 is the paper's). Default 64
    /// (torchvision's ResNets; dlib's own network is width 32, [`Arch::default_width`]).
    #[serde(default = "default_width")]
    pub width: usize,
    /// Last stage kept, 1 to 4 (ResNets and [`Arch::Dlib`]). Default 3: the 2nd-place team cut
    /// the ResNets after `layer3` (256 channels at width 64, a 7 x 7 map at 112 px input).
    /// Not used by [`Arch::MobileFaceNet`].
    #[serde(default = "default_stop_after_layer")]
    pub stop_after_layer: usize,
    /// Descriptor length. Default 128 (face-api.js / dlib descriptors).
    #[serde(default = "default_descriptor_len")]
    pub descriptor_len: usize,
    /// Batch norm on the output descriptor (the 3rd-place team's addition). Default `false`
    /// (the 2nd-place team's plain linear output). Must be `false` for
    /// [`Arch::MobileFaceNet`], whose output batch norm is always there.
    #[serde(default)]
    pub output_batch_norm: bool,
    /// Average-pool the input by this factor before the stem (1: none). A factor of 2 runs
    /// the network on 56 x 56 pixels: a quarter of the work, for CPUs where training at full
    /// size is too slow (this project's 2-core machine: ~12 images/s at 112 px). Default 1.
    #[serde(default = "default_input_downsample")]
    pub input_downsample: usize,
}

fn default_input_downsample() -> usize {
    1
}

fn default_arch() -> Arch {
    Arch::ResNet18
}
fn default_width() -> usize {
    64
}
fn default_stop_after_layer() -> usize {
    3
}
fn default_descriptor_len() -> usize {
    128
}

impl Default for StudentConfig {
    fn default() -> Self {
        StudentConfig {
            arch: default_arch(),
            width: default_width(),
            stop_after_layer: default_stop_after_layer(),
            descriptor_len: default_descriptor_len(),
            output_batch_norm: false,
            input_downsample: default_input_downsample(),
        }
    }
}

/// Side of the map a 3 x 3 / 2 convolution with padding 1 (or a 3 x 3 / 2 max pool with
/// padding 1) makes of a map of side `n`.
fn halve(n: usize) -> usize {
    n.div_ceil(2)
}

impl StudentConfig {
    /// Checks that the config describes a network.
    pub fn validate(&self) -> Result<(), StudentError> {
        if self.width == 0 || self.width > 4096 {
            return Err(StudentError::BadConfig(format!(
                "width must be 1 to 4096, got {}",
                self.width
            )));
        }
        if !(1..=4).contains(&self.stop_after_layer) {
            return Err(StudentError::BadConfig(format!(
                "stop_after_layer must be 1 to 4, got {}",
                self.stop_after_layer
            )));
        }
        if !(1..=8).contains(&self.input_downsample) {
            return Err(StudentError::BadConfig(format!(
                "input_downsample must be 1 to 8, got {}",
                self.input_downsample
            )));
        }
        if self.descriptor_len == 0 || self.descriptor_len > 1 << 16 {
            return Err(StudentError::BadConfig(format!(
                "descriptor_len must be 1 to 65536, got {}",
                self.descriptor_len
            )));
        }
        if self.arch == Arch::MobileFaceNet && self.output_batch_norm {
            return Err(StudentError::BadConfig(
                "mobilefacenet always ends in batch norm (the paper's); output_batch_norm must be false"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Channels of the feature map fed to the global pool: `width * 2^(stop_after_layer-1)`
    /// for the ResNets and [`Arch::Dlib`]; `8 * width` (the 1 x 1 convolution before the
    /// GDConv) for [`Arch::MobileFaceNet`].
    pub fn feature_channels(&self) -> usize {
        match self.arch {
            Arch::MobileFaceNet => 8 * self.width,
            _ => self.width << (self.stop_after_layer.clamp(1, 4) - 1),
        }
    }

    /// Side of the input the network itself sees: the 112 px crop after `input_downsample`.
    pub fn network_input_size(&self) -> usize {
        STUDENT_INPUT_SIZE / self.input_downsample.max(1)
    }

    /// [`Arch::MobileFaceNet`]'s global depthwise kernel side: the side of its final map at
    /// [`network_input_size`](Self::network_input_size) (four stride-2 layers: 7 at 112 px,
    /// 4 at 56 px).
    pub fn gdconv_kernel(&self) -> usize {
        (0..4).fold(self.network_input_size(), |n, _| halve(n))
    }

    /// Whether training needs at least 2 images a batch: with an output batch norm, and for
    /// [`Arch::MobileFaceNet`] (batch norms over 1 x 1 maps), a batch of one has zero batch
    /// variance.
    pub fn needs_batch_of_two(&self) -> bool {
        self.output_batch_norm || self.arch == Arch::MobileFaceNet
    }

    /// Trainable parameters (convolution weights, batch norm scales and shifts, PReLU slopes,
    /// linear weight and bias; not the batch norm running statistics), computed from the
    /// config alone.
    pub fn trainable_params(&self) -> usize {
        let w = self.width;
        let d = self.descriptor_len;
        let bn = |c: usize| 2 * c;
        let mut total = 0;
        let c_in = match self.arch {
            Arch::ResNet18 | Arch::ResNet34 | Arch::Dlib => {
                // dlib's down blocks have a parameter-free average-pool shortcut and its
                // output layer no bias; the ResNets project with a 1 x 1 conv and have one
                let resnet = !matches!(self.arch, Arch::Dlib);
                total += 3 * w * 49 + bn(w);
                let mut c_in = w;
                let blocks = self.arch.blocks_per_layer();
                for (stage, &count) in blocks.iter().enumerate().take(self.stop_after_layer) {
                    let c_out = w << stage;
                    for b in 0..count {
                        let cin = if b == 0 { c_in } else { c_out };
                        total += cin * c_out * 9 + bn(c_out) + c_out * c_out * 9 + bn(c_out);
                        if resnet && b == 0 && (stage > 0 || cin != c_out) {
                            total += cin * c_out + bn(c_out);
                        }
                    }
                    c_in = c_out;
                }
                if resnet {
                    total += d; // linear bias
                }
                c_in
            }
            Arch::MobileFaceNet => {
                let prelu = |c: usize| c;
                total += 3 * w * 9 + bn(w) + prelu(w); // stem
                total += w * 9 + bn(w) + prelu(w); // depthwise
                let mut c_in = w;
                for &(t, c, n, _) in &MOBILEFACENET_STAGES {
                    let c_out = c * w;
                    for b in 0..n {
                        let cin = if b == 0 { c_in } else { c_out };
                        let hidden = cin * t;
                        total += cin * hidden + bn(hidden) + prelu(hidden);
                        total += hidden * 9 + bn(hidden) + prelu(hidden);
                        total += hidden * c_out + bn(c_out);
                    }
                    c_in = c_out;
                }
                let f = self.feature_channels();
                total += c_in * f + bn(f) + prelu(f); // 1 x 1 to 8w
                let k = self.gdconv_kernel();
                total += f * k * k + bn(f); // GDConv
                total += bn(d); // the output batch norm
                f
            }
        };
        total += c_in * d;
        if self.output_batch_norm {
            total += bn(d);
        }
        total
    }

    /// Builds a randomly initialised student on `device` (He-normal, fan-out convolutions
    /// as in torchvision; batch norm scale 1, shift 0; PReLU slope 0.25; burn's default
    /// linear init). Seed the device first (`device.seed(..)`) for reproducible weights.
    pub fn init(&self, device: &Device) -> Result<Student, StudentError> {
        self.validate()?;
        let w = self.width;
        let d = self.descriptor_len;
        let mut blocks = Vec::new();
        let mut dlib_blocks = Vec::new();
        let mut mobile = None;
        let (conv1, c_in) = match self.arch {
            Arch::ResNet18 | Arch::ResNet34 | Arch::Dlib => {
                let mut c_in = w;
                let counts = self.arch.blocks_per_layer();
                for (stage, &count) in counts.iter().enumerate().take(self.stop_after_layer) {
                    let c_out = w << stage;
                    for b in 0..count {
                        let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                        let cin = if b == 0 { c_in } else { c_out };
                        if self.arch == Arch::Dlib {
                            dlib_blocks.push(DlibBlock::new(cin, c_out, stride, device));
                        } else {
                            blocks.push(BasicBlock::new(cin, c_out, stride, device));
                        }
                    }
                    c_in = c_out;
                }
                (conv(3, w, 7, 2, 3, device), c_in)
            }
            Arch::MobileFaceNet => {
                let body = MobileBody::new(self, device);
                let f = self.feature_channels();
                mobile = Some(body);
                (conv(3, w, 3, 2, 1, device), f)
            }
        };
        let bn1 = BatchNormConfig::new(w).init(device);
        let fc = LinearConfig::new(c_in, d)
            .with_bias(matches!(self.arch, Arch::ResNet18 | Arch::ResNet34))
            .init(device);
        let out_bn = (self.output_batch_norm || self.arch == Arch::MobileFaceNet)
            .then(|| BatchNormConfig::new(d).init(device));
        Ok(Student {
            conv1,
            bn1,
            blocks,
            fc,
            out_bn,
            input_downsample: self.input_downsample,
            dlib_blocks,
            mobile,
        })
    }
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
    grouped_conv(c_in, c_out, k, stride, pad, 1, device)
}

/// Depthwise convolution: one `k x k` filter per channel.
fn depthwise(c: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
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

fn prelu(c: usize, device: &Device) -> PRelu {
    PReluConfig::new()
        .with_num_parameters(c)
        .with_alpha(0.25)
        .init(device)
}

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
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
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

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let shortcut = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x)),
            None => x,
        };
        relu(out + shortcut)
    }
}

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
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        DlibBlock {
            conv1: conv(c_in, c_out, 3, stride, 1, device),
            bn1: BatchNormConfig::new(c_out).init(device),
            conv2: conv(c_out, c_out, 3, 1, 1, device),
            bn2: BatchNormConfig::new(c_out).init(device),
            down: stride != 1,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
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
    fn new(c_in: usize, c_out: usize, t: usize, stride: usize, device: &Device) -> Self {
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

/// MobileFaceNet after its stem convolution and batch norm (which are [`Student`]'s `conv1`
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
    fn new(config: &StudentConfig, device: &Device) -> Self {
        let w = config.width;
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
        let f = config.feature_channels();
        let kernel = config.gdconv_kernel();
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
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
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

/// The student network, built with [`StudentConfig::init`]: for the ResNets and
/// [`Arch::Dlib`], the stem, the blocks, global average pool, linear, optional output batch
/// norm; for [`Arch::MobileFaceNet`], the stem, the [`MobileBody`], linear, batch norm.
///
/// Batch norm layers use batch statistics (and update their running statistics) when the
/// input is on an autodiff device and the module is in training mode; use
/// [`Module::valid`] for inference with the running statistics.
///
/// The record keeps the field names of the ResNet-only student (`conv1`, `bn1`, `blocks`,
/// `fc`, `out_bn`); the other architectures' parts are in fields that are empty for the
/// ResNets (`dlib_blocks`, `mobile`), so weight files written before them still load.
#[derive(Module, Debug)]
pub struct Student {
    conv1: Conv2d,
    bn1: BatchNorm,
    /// ResNet BasicBlocks (empty for the other architectures).
    blocks: Vec<BasicBlock>,
    fc: Linear,
    out_bn: Option<BatchNorm>,
    /// Average-pool factor of the input (a constant, not a parameter).
    input_downsample: usize,
    /// [`Arch::Dlib`]'s blocks (empty for the other architectures).
    dlib_blocks: Vec<DlibBlock>,
    /// [`Arch::MobileFaceNet`] after the stem (`None` for the other architectures).
    mobile: Option<MobileBody>,
}

impl Student {
    /// Descriptors of a batch of images.
    ///
    /// The ImageNet normalisation (`(x - IMAGENET_MEAN) / IMAGENET_STD`) is done here: the
    /// preprocessing belongs to the model.
    ///
    /// # Shapes
    /// - `pixels`: `[n, 3, h, w]`, RGB in `[0, 1]`; trained at `h = w = 112`.
    /// - output: `[n, descriptor_len]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<2> {
        let device = pixels.device();
        let mean = Tensor::<4>::from_data(
            TensorData::new(IMAGENET_MEAN.to_vec(), [1, 3, 1, 1]),
            &device,
        );
        let inv_std: Vec<f32> = IMAGENET_STD.iter().map(|s| 1.0 / s).collect();
        let inv_std = Tensor::<4>::from_data(TensorData::new(inv_std, [1, 3, 1, 1]), &device);
        let mut x = (pixels - mean) * inv_std;
        if self.input_downsample > 1 {
            let f = self.input_downsample;
            x = avg_pool2d(x, AvgPoolOptions::new([f, f]).with_stride([f, f]));
        }
        let x = self.bn1.forward(self.conv1.forward(x));
        let x = match &self.mobile {
            Some(body) => body.forward(x),
            None => {
                let mut x = max_pool2d(
                    relu(x),
                    MaxPoolOptions::new([3, 3])
                        .with_stride([2, 2])
                        .with_padding([1, 1]),
                );
                for block in &self.blocks {
                    x = block.forward(x);
                }
                for block in &self.dlib_blocks {
                    x = block.forward(x);
                }
                let [n, c, _, _] = x.dims();
                x.mean_dim(3).mean_dim(2).reshape([n, c])
            }
        };
        let d = self.fc.forward(x);
        match &self.out_bn {
            Some(bn) => bn.forward(d),
            None => d,
        }
    }
}

impl Student {
    /// Parameters the optimizer trains: every float parameter but the batch norm running
    /// means and variances (which [`Module::num_params`] counts too). Equals
    /// [`StudentConfig::trainable_params`] of the config it was built with.
    pub fn num_trainable_params(&self) -> usize {
        struct Count {
            path: Vec<String>,
            total: usize,
        }
        impl ModuleVisitor for Count {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if !self.path.last().is_some_and(|n| n.starts_with("running_")) {
                    self.total += param.lazy_shape().num_elements();
                }
            }
        }
        let mut count = Count {
            path: Vec::new(),
            total: 0,
        };
        self.visit(&mut count);
        count.total
    }
}

/// Trains and runs a [`Student`] on the CPU (burn's `flex` backend) with Adam and MSE loss.
///
/// Inputs are crops as bytes: `n` images of 112 x 112 x 3 `u8`, row-major HWC (RGB), one
/// after the other (NHWC). Descriptors are `n x descriptor_len` `f32`, row-major.
pub struct StudentTrainer {
    config: StudentConfig,
    /// Always `Some` outside [`StudentTrainer::step`] (the optimizer takes the module by value).
    model: Option<Student>,
    optim: ModuleOptimizer,
    device: Device,
    steps: u64,
}

impl std::fmt::Debug for StudentTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudentTrainer")
            .field("config", &self.config)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// Adam as PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay), which
/// the teams used; burn's own default epsilon is 1e-5.
fn adam() -> ModuleOptimizer {
    AdamConfig::new().with_epsilon(1e-8).init()
}

impl StudentTrainer {
    /// A randomly initialised student, weights drawn from `seed` (the same seed gives the
    /// same weights).
    pub fn new(config: StudentConfig, seed: u64) -> Result<Self, StudentError> {
        config.validate()?;
        let device = Device::flex().autodiff();
        let model = {
            // burn draws parameters lazily (at first use) from one process-wide generator:
            // seed it and draw every parameter now, under a lock, so the weights depend on
            // `seed` alone and not on what other threads draw meanwhile.
            static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
            device.seed(seed);
            let record = config.init(&device)?.into_record();
            config
                .init(&device)?
                .try_load_record(record)
                .map_err(|e| StudentError::Burn(e.to_string()))?
        };
        Ok(StudentTrainer {
            config,
            model: Some(model),
            optim: adam(),
            device,
            steps: 0,
        })
    }

    /// The student's configuration.
    pub fn config(&self) -> &StudentConfig {
        &self.config
    }

    /// Training steps taken since this trainer was built or loaded.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Parameters of the module as burn counts them: trainable parameters plus the batch norm
    /// running means and variances.
    pub fn num_params(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.num_params())
    }

    /// Parameters the optimizer trains ([`Student::num_trainable_params`]).
    pub fn num_trainable_params(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.num_trainable_params())
    }

    fn model(&self) -> Result<&Student, StudentError> {
        self.model
            .as_ref()
            .ok_or_else(|| StudentError::Burn("the module was lost in a failed step".into()))
    }

    /// Number of crops in `crops_u8`, or an error if its length is not a whole number of
    /// 112 x 112 x 3 crops.
    fn count(crops_u8: &[u8]) -> Result<usize, StudentError> {
        let per = STUDENT_INPUT_SIZE * STUDENT_INPUT_SIZE * 3;
        if crops_u8.is_empty() || !crops_u8.len().is_multiple_of(per) {
            return Err(StudentError::BadInput(format!(
                "crops: {} bytes is not a positive multiple of {per} (112 x 112 x 3)",
                crops_u8.len()
            )));
        }
        Ok(crops_u8.len() / per)
    }

    /// NHWC u8 -> NCHW f32 in [0, 1].
    fn pixels(crops_u8: &[u8], n: usize, device: &Device) -> Tensor<4> {
        let s = STUDENT_INPUT_SIZE;
        let hw = s * s;
        let mut v = vec![0f32; n * 3 * hw];
        for i in 0..n {
            let src = &crops_u8[i * hw * 3..(i + 1) * hw * 3];
            let dst = &mut v[i * 3 * hw..(i + 1) * 3 * hw];
            for p in 0..hw {
                for c in 0..3 {
                    dst[c * hw + p] = src[p * 3 + c] as f32 / 255.0;
                }
            }
        }
        Tensor::<4>::from_data(TensorData::new(v, [n, 3, s, s]), device)
    }

    fn to_vec(data: TensorData) -> Result<Vec<f32>, StudentError> {
        data.try_into_vec::<f32>()
            .map_err(|e| StudentError::Burn(format!("reading a tensor back: {e:?}")))
    }

    /// One Adam step on the mean squared error between the student's descriptors of
    /// `crops_u8` and `targets`, with batch statistics in the batch norms.
    ///
    /// `lr` is Adam's learning rate for this step (the schedule belongs to the caller).
    /// Returns the MSE per element (mean over `n x descriptor_len`) before the step.
    ///
    /// # Shapes
    /// - `crops_u8`: `n x 112 x 112 x 3` bytes (NHWC, RGB), `n >= 2` when
    ///   [`StudentConfig::needs_batch_of_two`].
    /// - `targets`: `n x descriptor_len` values.
    pub fn step(&mut self, crops_u8: &[u8], targets: &[f32], lr: f64) -> Result<f32, StudentError> {
        let n = Self::count(crops_u8)?;
        self.check_step(n, targets, lr)?;
        let x = Self::pixels(crops_u8, n, &self.device);
        self.step_tensor(x, targets, lr)
    }

    /// As [`step`](Self::step), on pixels already in `[0, 1]` of any size the network takes
    /// (`advface bench student` times other input sizes with it).
    ///
    /// # Shapes
    /// - `pixels`: `n x 3 x h x w` values (NCHW), `h, w >= 32`.
    /// - `targets`: `n x descriptor_len` values.
    pub fn step_pixels(
        &mut self,
        pixels: &[f32],
        shape: [usize; 4],
        targets: &[f32],
        lr: f64,
    ) -> Result<f32, StudentError> {
        let [n, c, h, w] = shape;
        if n == 0 || c != 3 || h < 32 || w < 32 || pixels.len() != n * c * h * w {
            return Err(StudentError::BadInput(format!(
                "pixels: shape {shape:?} (need n >= 1, 3 channels, at least 32 x 32) with {} values",
                pixels.len()
            )));
        }
        self.check_step(n, targets, lr)?;
        let x = Tensor::<4>::from_data(TensorData::new(pixels.to_vec(), shape), &self.device);
        self.step_tensor(x, targets, lr)
    }

    fn check_step(&self, n: usize, targets: &[f32], lr: f64) -> Result<(), StudentError> {
        let d = self.config.descriptor_len;
        if targets.len() != n * d {
            return Err(StudentError::BadInput(format!(
                "targets: expected {} values ({n} crops x {d}), got {}",
                n * d,
                targets.len()
            )));
        }
        if let Some(i) = targets.iter().position(|t| !t.is_finite()) {
            return Err(StudentError::BadInput(format!(
                "targets: value {i} is not finite"
            )));
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(StudentError::BadInput(format!(
                "learning rate must be positive and finite, got {lr}"
            )));
        }
        if n < 2 && self.config.needs_batch_of_two() {
            return Err(StudentError::BadInput(
                "a batch of one cannot train an output batch norm or mobilefacenet's batch norms \
                 over 1 x 1 maps (their batch variance is zero)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn step_tensor(&mut self, x: Tensor<4>, targets: &[f32], lr: f64) -> Result<f32, StudentError> {
        let n = x.dims()[0];
        let d = self.config.descriptor_len;
        let t = Tensor::<2>::from_data(TensorData::new(targets.to_vec(), [n, d]), &self.device);
        let diff = self.model()?.forward(x) - t;
        let loss = (diff.clone() * diff).mean();
        let value = Self::to_vec(loss.to_data())?;
        let value = value
            .first()
            .copied()
            .ok_or_else(|| StudentError::Burn("empty loss".into()))?;
        let grads = GradientsParams::from_grads(loss.backward(), self.model()?);
        let model = self
            .model
            .take()
            .ok_or_else(|| StudentError::Burn("no module".into()))?;
        self.model = Some(self.optim.step(lr, model, grads));
        self.steps += 1;
        Ok(value)
    }

    /// Descriptors of `crops_u8` in eval mode (batch norm running statistics), as
    /// `n x descriptor_len` values, row-major.
    ///
    /// # Shapes
    /// - `crops_u8`: `n x 112 x 112 x 3` bytes (NHWC, RGB).
    pub fn predict(&self, crops_u8: &[u8], n: usize) -> Result<Vec<f32>, StudentError> {
        let got = Self::count(crops_u8)?;
        if got != n {
            return Err(StudentError::BadInput(format!(
                "crops: expected {n} crops, got {got}"
            )));
        }
        let model = self.model()?.valid();
        let device = self.device.clone().without_autodiff();
        let x = Self::pixels(crops_u8, n, &device);
        Self::to_vec(model.forward(x).into_data())
    }

    /// Descriptors of `pixels` in eval mode and the gradient with respect to the pixels of
    /// `sum(descriptors * cotangent)`.
    ///
    /// # Shapes
    /// - `pixels`: `n x 3 x h x w` values in `[0, 1]` (NCHW, the project's `PixelBatch`).
    /// - `cotangent`: `n x descriptor_len` values.
    /// - returns (`n x descriptor_len` descriptors, `n x 3 x h x w` gradient).
    pub fn descriptors_and_grad(
        &self,
        pixels: &[f32],
        shape: [usize; 4],
        cotangent: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>), StudentError> {
        self.descriptors_and_vjp(pixels, shape, |_| cotangent.to_vec())
    }

    /// As [`descriptors_and_grad`](Self::descriptors_and_grad), with the cotangent computed
    /// from the descriptors of the same forward pass (`cotangent` receives the
    /// `n x descriptor_len` descriptors and returns `dL/dD`): one forward and one backward
    /// pass for the gradient of any loss of the descriptors.
    pub fn descriptors_and_vjp(
        &self,
        pixels: &[f32],
        shape: [usize; 4],
        cotangent: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<(Vec<f32>, Vec<f32>), StudentError> {
        let [n, c, h, w] = shape;
        let d = self.config.descriptor_len;
        if n == 0 || c != 3 || h < 32 || w < 32 || pixels.len() != n * c * h * w {
            return Err(StudentError::BadInput(format!(
                "pixels: shape {shape:?} (need n >= 1, 3 channels, at least 32 x 32) with {} values",
                pixels.len()
            )));
        }
        let model = self.model()?.valid();
        let x = Tensor::<4>::from_data(TensorData::new(pixels.to_vec(), shape), &self.device)
            .require_grad();
        let out = model.forward(x.clone());
        let descriptors = Self::to_vec(out.to_data())?;
        let cot = cotangent(&descriptors);
        if cot.len() != n * d {
            return Err(StudentError::BadInput(format!(
                "cotangent: expected {} values ({n} x {d}), got {}",
                n * d,
                cot.len()
            )));
        }
        let g = Tensor::<2>::from_data(
            TensorData::new(cot, [n, d]),
            &self.device.clone().without_autodiff(),
        );
        let grads = (out * g).sum().backward();
        let grad = x.grad(&grads).ok_or_else(|| {
            StudentError::Burn("autodiff returned no gradient for the input".into())
        })?;
        Ok((descriptors, Self::to_vec(grad.into_data())?))
    }

    /// Writes the weights (and batch norm statistics) and the config to `path`, atomically:
    /// a temporary file beside it is written, synced, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), StudentError> {
        let json =
            serde_json::to_vec(&self.config).map_err(|e| StudentError::Burn(e.to_string()))?;
        let record = self
            .model()?
            .valid()
            .into_record()
            .into_bytes()
            .map_err(|e| StudentError::Burn(e.to_string()))?;
        write_atomic(
            path,
            &[
                FILE_MAGIC,
                &(json.len() as u32).to_le_bytes(),
                &json,
                &record,
            ],
        )
    }

    /// Writes Adam's state (first and second moments, step counts per parameter) and the
    /// trainer's step count to `path`, atomically (as [`save`](Self::save)). With the weights
    /// file, this is what a resumed run needs to continue as if never stopped.
    pub fn save_optimizer(&self, path: &Path) -> Result<(), StudentError> {
        let record = self
            .optim
            .into_bytes()
            .map_err(|e| StudentError::Burn(e.to_string()))?;
        write_atomic(path, &[OPTIM_MAGIC, &self.steps.to_le_bytes(), &record])
    }

    /// Loads Adam's state written by [`save_optimizer`](Self::save_optimizer) from a trainer
    /// whose weights were then saved and loaded here (burn keys the state by parameter id,
    /// which the weights file keeps). Restores the step count too.
    pub fn load_optimizer(&mut self, path: &Path) -> Result<(), StudentError> {
        let bytes = read_with_magic(path, OPTIM_MAGIC, 16)?;
        let bad = |reason: String| bad_file(path, reason);
        let mut steps = [0u8; 8];
        steps.copy_from_slice(&bytes[8..16]);
        let record = Bytes::from_bytes_vec(bytes[16..].to_vec());
        let fresh = adam();
        // burn's optimizer loader panics on some malformed records; a damaged file must be
        // an error, not a crash.
        let loaded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fresh.from_bytes(record)))
                .map_err(|_| bad("optimizer record is malformed".into()))?
                .map_err(|e| bad(e.to_string()))?;
        self.optim = loaded;
        self.steps = u64::from_le_bytes(steps);
        Ok(())
    }

    /// Reads the config stored in a weight file.
    pub fn read_config(path: &Path) -> Result<StudentConfig, StudentError> {
        Ok(read_file(path)?.0)
    }

    /// Loads a student saved by [`save`](Self::save), checking that it was saved with
    /// `config`. The optimizer state starts fresh.
    pub fn load(config: StudentConfig, path: &Path) -> Result<Self, StudentError> {
        let bytes = read_with_magic(path, FILE_MAGIC, 12)?;
        Self::load_bytes(config, &bytes, path)
    }

    /// As [`load`](Self::load), from the bytes of a weight file (`origin` names it in errors).
    pub fn load_bytes(
        config: StudentConfig,
        bytes: &[u8],
        origin: &Path,
    ) -> Result<Self, StudentError> {
        let path = origin;
        config.validate()?;
        let (found, record) = parse_weights(bytes, path)?;
        if found != config {
            let json =
                |c: &StudentConfig| serde_json::to_string(c).unwrap_or_else(|_| format!("{c:?}"));
            return Err(StudentError::ConfigMismatch {
                path: path.to_path_buf(),
                expected: json(&config),
                found: json(&found),
            });
        }
        let device = Device::flex().autodiff();
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(record)).map_err(|e| {
            StudentError::BadFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        let model =
            config
                .init(&device)?
                .try_load_record(record)
                .map_err(|e| StudentError::BadFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        Ok(StudentTrainer {
            config,
            model: Some(model),
            optim: adam(),
            device,
            steps: 0,
        })
    }
}

/// Reads `path`, which must start with `magic` and hold at least `min_len` bytes.
fn read_with_magic(path: &Path, magic: &[u8; 8], min_len: usize) -> Result<Vec<u8>, StudentError> {
    let bytes = fs::read(path).map_err(|source| StudentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() < min_len || &bytes[..8] != magic {
        return Err(bad_file(
            path,
            format!("missing the {} header", String::from_utf8_lossy(magic)),
        ));
    }
    Ok(bytes)
}

fn bad_file(path: &Path, reason: String) -> StudentError {
    StudentError::BadFile {
        path: path.to_path_buf(),
        reason,
    }
}

fn read_file(path: &Path) -> Result<(StudentConfig, Vec<u8>), StudentError> {
    let bytes = read_with_magic(path, FILE_MAGIC, 12)?;
    parse_weights(&bytes, path)
}

/// Splits the bytes of a weight file into its config and burn record; `path` names it in
/// errors.
fn parse_weights(bytes: &[u8], path: &Path) -> Result<(StudentConfig, Vec<u8>), StudentError> {
    if bytes.len() < 12 || &bytes[..8] != FILE_MAGIC {
        return Err(bad_file(
            path,
            format!("missing the {} header", String::from_utf8_lossy(FILE_MAGIC)),
        ));
    }
    let bad = |reason: String| bad_file(path, reason);
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let json = bytes
        .get(12..12 + len)
        .ok_or_else(|| bad(format!("truncated config ({len} bytes announced)")))?;
    let config: StudentConfig =
        serde_json::from_slice(json).map_err(|e| bad(format!("config: {e}")))?;
    Ok((config, bytes[12 + len..].to_vec()))
}

/// Writes `parts` one after the other with advface-image's atomic writer (temp file beside
/// `path`, synced, renamed over it), so `path` holds either its old content or all of the new.
fn write_atomic(path: &Path, parts: &[&[u8]]) -> Result<(), StudentError> {
    advface_image::write_atomic(path, &parts.concat()).map_err(|e| match e {
        advface_image::ImageError::Write { path, source } => StudentError::Io { path, source },
        other => StudentError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// A trained student seen as a model that maps images to descriptors (`--model runs/NAME`
/// or `--model FILE.weights`), for `describe`, scoring and transfer attacks.
///
/// Inputs are taken as 8-bit images (`round(v * 255)` of the `[0, 1]` pixels), which is
/// exact for every image that came from a file or an oracle query.
pub struct StudentEmbedder {
    name: String,
    config: StudentConfig,
    trainer: std::sync::Mutex<StudentTrainer>,
}

impl StudentEmbedder {
    /// Loads the weights file written by training (`student.weights`), with the config
    /// stored in it.
    pub fn load(path: &Path) -> Result<Self, StudentError> {
        let bytes = read_with_magic(path, FILE_MAGIC, 12)?;
        Self::from_bytes(&bytes, path, format!("student:{}", path.display()))
    }

    /// A student from the bytes of a weight file (a student built into the binary);
    /// `origin` names it in errors, `name` in messages and records.
    pub fn from_bytes(bytes: &[u8], origin: &Path, name: String) -> Result<Self, StudentError> {
        let (config, _) = parse_weights(bytes, origin)?;
        let trainer = StudentTrainer::load_bytes(config.clone(), bytes, origin)?;
        Ok(Self {
            name,
            config,
            trainer: std::sync::Mutex::new(trainer),
        })
    }

    /// The architecture and descriptor length it was trained with.
    pub fn config(&self) -> &StudentConfig {
        &self.config
    }
}

impl advface_core::Embedder for StudentEmbedder {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn descriptor_len(&self) -> usize {
        self.config.descriptor_len
    }

    /// Students are trained on the protocol's 112 x 112 crops.
    fn fixed_input_size(&self) -> Option<(u32, u32)> {
        Some((112, 112))
    }

    fn embed(
        &self,
        batch: &advface_core::PixelBatch,
    ) -> Result<Vec<advface_core::Descriptor>, advface_core::EmbedError> {
        let n = batch.len();
        let crops: Vec<u8> = (0..n)
            .flat_map(|i| batch.to_image(i).into_bytes())
            .collect();
        let err = |e: StudentError| advface_core::EmbedError::Failed {
            model: self.name.clone(),
            reason: e.to_string(),
        };
        let out = self
            .trainer
            .lock()
            .map_err(|_| advface_core::EmbedError::Failed {
                model: self.name.clone(),
                reason: "a previous call panicked".into(),
            })?
            .predict(&crops, n)
            .map_err(err)?;
        let len = self.config.descriptor_len;
        Ok(out
            .chunks_exact(len)
            .map(|d| advface_core::Descriptor(d.to_vec()))
            .collect())
    }
}

impl advface_core::Differentiable for StudentEmbedder {
    fn descriptors_and_vjp(
        &self,
        batch: &advface_core::PixelBatch,
        cotangent: &mut dyn FnMut(&[advface_core::Descriptor]) -> Vec<f32>,
    ) -> Result<(Vec<advface_core::Descriptor>, Vec<f32>), advface_core::EmbedError> {
        let len = self.config.descriptor_len;
        let trainer = self
            .trainer
            .lock()
            .map_err(|_| advface_core::EmbedError::Failed {
                model: self.name.clone(),
                reason: "a previous call panicked".into(),
            })?;
        let (d, g) = trainer
            .descriptors_and_vjp(batch.as_slice(), batch.shape(), |flat| {
                let ds: Vec<advface_core::Descriptor> = flat
                    .chunks_exact(len)
                    .map(|d| advface_core::Descriptor(d.to_vec()))
                    .collect();
                cotangent(&ds)
            })
            .map_err(|e| advface_core::EmbedError::Failed {
                model: self.name.clone(),
                reason: e.to_string(),
            })?;
        Ok((
            d.chunks_exact(len)
                .map(|d| advface_core::Descriptor(d.to_vec()))
                .collect(),
            g,
        ))
    }
}
