use crate::{Descriptor, PixelBatch};

/// Error of an [`Embedder`].
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The batch does not fit the model (wrong size, not square, ...).
    #[error("model '{model}' cannot take this input: {reason}")]
    BadInput { model: String, reason: String },
    /// Anything else that went wrong inside the model.
    #[error("model '{model}' failed: {reason}")]
    Failed { model: String, reason: String },
}

/// A model that maps pixels to descriptors, with its own preprocessing inside.
///
/// This is the forward-only view used by local oracles and scorers; differentiable access
/// (gradients with respect to the pixels) is offered by the model types themselves.
pub trait Embedder: Send + Sync {
    /// A short name for messages.
    fn name(&self) -> String;

    /// Descriptor length (128 for face-api.js).
    fn descriptor_len(&self) -> usize;

    /// The input size the model requires, if it requires one; `None` when any square
    /// input is resized by the model itself.
    fn fixed_input_size(&self) -> Option<(u32, u32)> {
        None
    }

    /// Whether the model takes an image of `width x height` pixels; `Err` says why not (and
    /// how to fix it). Called before any query is counted. Default: any non-empty size.
    fn check_input(&self, width: u32, height: u32) -> Result<(), String> {
        if width == 0 || height == 0 {
            return Err(format!("an empty image ({width}x{height})"));
        }
        Ok(())
    }

    /// Descriptors of a batch.
    ///
    /// # Shapes
    /// `batch`: `[n, 3, h, w]` in `[0, 1]`; returns `n` descriptors.
    fn embed(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError>;
}

/// A model whose descriptors can be differentiated with respect to its input pixels: what a
/// gradient attack needs of a student (or, in the white-box reference run only, of the
/// black box's own network).
pub trait Differentiable: Embedder {
    /// Descriptors of `batch` in eval mode, and the gradient with respect to the pixels of
    /// `sum_i <D_i, c_i>`, where `cotangent` receives the descriptors and returns the `c_i`
    /// (`n * descriptor_len` values, item-major; for a loss `L(D)` it returns `dL/dD`).
    ///
    /// # Shapes
    /// `batch`: `[n, 3, h, w]` in `[0, 1]`; returns `n` descriptors and `[n, 3, h, w]`
    /// gradient values (per unit of the `[0, 1]` pixel scale).
    fn descriptors_and_vjp(
        &self,
        batch: &PixelBatch,
        cotangent: &mut dyn FnMut(&[Descriptor]) -> Vec<f32>,
    ) -> Result<(Vec<Descriptor>, Vec<f32>), EmbedError>;
}
