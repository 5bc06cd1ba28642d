//! The student network as a burn module ([`Student`]): the stem, one architecture's
//! blocks, the pool and the head; and [`StudentConfig::init`], which builds it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{Arch, StudentConfig, StudentError, IMAGENET_MEAN, IMAGENET_STD};
use super::dlib::DlibBlock;
use super::layers::conv;
use super::mobilefacenet::MobileBody;
use super::resnet::BasicBlock;

impl StudentConfig {
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
                let body = MobileBody::new(
                    self.width,
                    self.feature_channels(),
                    self.gdconv_kernel(),
                    device,
                );
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

/// The student network, built with [`StudentConfig::init`]: for the ResNets and
/// [`Arch::Dlib`], the stem, the blocks, global average pool, linear, optional output batch
/// norm; for [`Arch::MobileFaceNet`], the stem, the [`MobileBody`](super::MobileBody), linear, batch norm.
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
