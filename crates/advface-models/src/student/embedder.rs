//! [`StudentEmbedder`]: a saved student as an [`Embedder`](advface_core::Embedder) and a
//! [`Differentiable`](advface_core::Differentiable) model (`--model runs/NAME`,
//! `--model FILE.weights`, the shipped `student`).

use std::path::Path;

use super::config::{StudentConfig, StudentError};
use super::format::{parse_weights, read_with_magic, FILE_MAGIC};
use super::trainer::StudentTrainer;

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
        Self::from_file_bytes(&bytes, path)
    }

    /// As [`load`](Self::load), from the bytes already read from `path` (the zoo reads them
    /// once, to hash them too); named `student:PATH` as [`load`](Self::load) names it.
    pub fn from_file_bytes(bytes: &[u8], path: &Path) -> Result<Self, StudentError> {
        Self::from_bytes(bytes, path, format!("student:{}", path.display()))
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
