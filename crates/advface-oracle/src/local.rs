//! A local model used as a black box: every image it describes counts as one query.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use advface_core::{
    Descriptor, EmbedError, Embedder, Oracle, OracleError, PixelBatch, QueryStats, RgbImage,
};

/// Images per forward pass of a [`LocalOracle`] unless told otherwise: large enough to keep
/// a CPU busy, small enough that a 112 x 112 batch stays a few megabytes.
pub const DEFAULT_CHUNK: usize = 16;

/// An [`Embedder`] (a model in this process) seen through the [`Oracle`] interface.
///
/// Each image is checked before anything is asked of the model (not empty; the model's
/// [`fixed_input_size`](Embedder::fixed_input_size) when it has one, then the model's own
/// [`check_input`](Embedder::check_input)), so a call
/// with a bad image answers nothing and costs nothing. Images then go through the model in
/// batches of at most [`chunk`](Self::chunk) images of one size, and each image answered
/// counts as one query, exactly as a remote black box would count it. The model's answers
/// are checked: one descriptor per image, each of the model's descriptor length, all values
/// finite.
pub struct LocalOracle {
    embedder: Arc<dyn Embedder>,
    chunk: usize,
    queries: AtomicU64,
}

impl std::fmt::Debug for LocalOracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOracle")
            .field("model", &self.embedder.name())
            .field("chunk", &self.chunk)
            .field("queries", &self.queries.load(Ordering::Relaxed))
            .finish()
    }
}

impl LocalOracle {
    /// Wraps `embedder`, with batches of [`DEFAULT_CHUNK`] images.
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        Self {
            embedder,
            chunk: DEFAULT_CHUNK,
            queries: AtomicU64::new(0),
        }
    }

    /// Sets the largest number of images per forward pass (0 is taken as 1). Changes speed
    /// and memory only, never the answers or the query count.
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// Largest number of images per forward pass.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// The wrapped model.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    fn bad_input(&self, reason: String) -> OracleError {
        OracleError::BadInput {
            oracle: self.embedder.name(),
            reason,
        }
    }

    fn model_error(&self, reason: String) -> OracleError {
        OracleError::Model {
            oracle: self.embedder.name(),
            reason,
        }
    }

    /// Checks that image `index` can be given to the model.
    fn validate(&self, index: usize, image: &RgbImage) -> Result<(), OracleError> {
        let (w, h) = (image.width(), image.height());
        if w == 0 || h == 0 {
            return Err(self.bad_input(format!("image {index} is empty ({w}x{h})")));
        }
        match self.embedder.fixed_input_size() {
            Some((fw, fh)) if (fw, fh) != (w, h) => Err(self.bad_input(format!(
                "image {index} is {w}x{h}, the model takes {fw}x{fh} (crop or resize faces to \
                 {fw}x{fh} first)"
            ))),
            _ => self
                .embedder
                .check_input(w, h)
                .map_err(|reason| self.bad_input(format!("image {index} is {w}x{h}: {reason}"))),
        }
    }

    /// Runs one batch of same-size images (`first` is the index of `images[0]` in the call).
    fn embed_run(&self, first: usize, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        let batch = PixelBatch::from_images(images).map_err(|e| self.model_error(e.to_string()))?;
        let descriptors = self.embedder.embed(&batch).map_err(|e| match e {
            EmbedError::BadInput { reason, .. } => self.bad_input(reason),
            EmbedError::Failed { reason, .. } => self.model_error(reason),
        })?;
        if descriptors.len() != images.len() {
            return Err(self.model_error(format!(
                "returned {} descriptors for a batch of {} images",
                descriptors.len(),
                images.len()
            )));
        }
        // The model did the work: these images are queries whatever the checks below say.
        self.queries
            .fetch_add(images.len() as u64, Ordering::Relaxed);
        let expected = self.embedder.descriptor_len();
        for (i, d) in descriptors.iter().enumerate() {
            if d.len() != expected {
                return Err(self.model_error(format!(
                    "descriptor length mismatch for image {}: expected {expected}, got {}",
                    first + i,
                    d.len()
                )));
            }
            if let Some(j) = d.as_slice().iter().position(|v| !v.is_finite()) {
                return Err(self.model_error(format!(
                    "descriptor of image {} has a non-finite value at component {j}",
                    first + i
                )));
            }
        }
        Ok(descriptors)
    }
}

impl Oracle for LocalOracle {
    fn name(&self) -> String {
        self.embedder.name()
    }

    fn descriptor_len(&self) -> Option<usize> {
        Some(self.embedder.descriptor_len())
    }

    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        for (i, image) in images.iter().enumerate() {
            self.validate(i, image)?;
        }
        let mut out = Vec::with_capacity(images.len());
        let mut start = 0;
        while start < images.len() {
            let size = (images[start].width(), images[start].height());
            let mut end = start + 1;
            while end < images.len()
                && end - start < self.chunk
                && (images[end].width(), images[end].height()) == size
            {
                end += 1;
            }
            out.extend(self.embed_run(start, &images[start..end])?);
            start = end;
        }
        Ok(out)
    }

    fn stats(&self) -> QueryStats {
        QueryStats {
            queries: self.queries.load(Ordering::Relaxed),
            cached: 0,
        }
    }
}
