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
//! # Files
//! - [`config`]: input conventions, [`StudentError`], [`Arch`], [`StudentConfig`] (checks,
//!   parameter counts). Imports no other file here but `mobilefacenet`'s stage table.
//! - one file per architecture, each a set of burn modules built with `layers`'
//!   constructors: [`resnet`] (ResNet-18/34), [`dlib`], [`mobilefacenet`].
//! - [`network`]: [`Student`], the whole network (stem, one architecture's blocks, head),
//!   and [`StudentConfig::init`].
//! - [`trainer`]: [`StudentTrainer`] (Adam, predictions, input gradients).
//! - [`format`]: the weight and optimizer files ([`StudentTrainer::save`],
//!   [`StudentTrainer::load`], ...).
//! - [`embedder`]: [`StudentEmbedder`], a saved student as an embedder and a
//!   differentiable model.
//!
//! # Weight file format
//! `ADVFSTU1` (8 bytes), the length of the JSON config as a little-endian `u32`, the
//! [`StudentConfig`] as JSON, then burn's burnpack record of the module (parameters and batch
//! norm running statistics). Loading checks the config against the one asked for before
//! touching the weights. Files written before `dlib` and `mobilefacenet` existed load
//! unchanged: their config has no new field (a missing `arch` is ResNet-18), and the
//! ResNet record keeps its keys (the new architectures' parts are fields that are empty
//! for the ResNets).

pub mod config;
pub mod dlib;
pub mod embedder;
pub mod format;
mod layers;
pub mod mobilefacenet;
pub mod network;
pub mod resnet;
pub mod trainer;

pub use config::{
    Arch, StudentConfig, StudentError, IMAGENET_MEAN, IMAGENET_STD, STUDENT_INPUT_SIZE,
};
pub use dlib::DlibBlock;
pub use embedder::StudentEmbedder;
pub use mobilefacenet::{Bottleneck, MobileBody};
pub use network::Student;
pub use resnet::{BasicBlock, Downsample};
pub use trainer::StudentTrainer;
