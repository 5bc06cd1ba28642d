//! What a student is, before any weight: the input conventions, [`StudentError`], the
//! architecture family ([`Arch`]) and the [`StudentConfig`] stored in every weight file,
//! with its checks and the sizes computed from it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::mobilefacenet::MOBILEFACENET_STAGES;

/// Side of the square crops the student is trained on, in pixels (the 2nd-place team's
/// 112 x 112 input).
pub const STUDENT_INPUT_SIZE: usize = 112;

/// ImageNet per-channel RGB mean for pixels in `[0, 1]` (torchvision's normalisation, which
/// the ImageNet ResNets the teams started from expect).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];

/// ImageNet per-channel RGB standard deviation for pixels in `[0, 1]` (torchvision).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
    /// [`Module::valid`](burn::module::Module::valid) does here).
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

/// Configuration of a [`Student`](super::Student). Serialised into every weight file.
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
}
