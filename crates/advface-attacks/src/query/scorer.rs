//! What every query attack shares: the loss (the objective on the black box's answers), the
//! SSIM limit on every image asked, and the exact query budget.

use advface_core::{Descriptor, Metric, Objective, Oracle, RgbImage};
use advface_image::ssim::SsimReference;
use advface_image::SsimConfig;

use super::QueryContext;
use crate::AttackError;

/// The black box with a query budget, the objective and the SSIM limit of one source image.
pub struct Scorer<'a> {
    oracle: &'a dyn Oracle,
    objective: &'a Objective,
    metric: &'a Metric,
    len: usize,
    reference: SsimReference,
    limit: f64,
    budget: u64,
    used: u64,
    /// Reused HWC f64 copy of a candidate (a fresh 300 KB buffer per SSIM costs ~20%).
    buf: std::cell::RefCell<Vec<f64>>,
}

impl<'a> Scorer<'a> {
    /// Checks the inputs: the objective's descriptors present and of one length (the
    /// oracle's, when it says), `start` the size of the original and not below `limit`.
    pub fn new(
        ctx: &QueryContext<'a>,
        start: &RgbImage,
        limit: f64,
        budget: u64,
    ) -> Result<Self, AttackError> {
        if !(limit > 0.0 && limit <= 1.0) {
            return Err(AttackError::BadInput(format!(
                "invalid search settings: SSIM limit must be in (0, 1], got {limit}"
            )));
        }
        let len = ctx
            .objective
            .descriptor_len()
            .map_err(AttackError::BadInput)?;
        let oracle = ctx.oracle;
        if let Some(n) = oracle.descriptor_len() {
            if n != len {
                return Err(AttackError::BadInput(format!(
                    "oracle '{}' answers {n} values but the targets have {len}",
                    oracle.name(),
                )));
            }
        }
        let original = ctx.original;
        if (start.width(), start.height()) != (original.width(), original.height()) {
            return Err(AttackError::BadInput(format!(
                "start image is {}x{} but the original is {}x{}",
                start.width(),
                start.height(),
                original.width(),
                original.height()
            )));
        }
        let reference = SsimReference::new(original, SsimConfig::default())?;
        let s = reference.ssim_u8(start)?.mean;
        if s < limit {
            return Err(AttackError::BadInput(format!(
                "start image has SSIM {s:.5} against the original, below the limit {limit}"
            )));
        }
        Ok(Self {
            oracle,
            objective: ctx.objective,
            metric: ctx.metric,
            len,
            reference,
            limit,
            budget,
            used: 0,
            buf: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// Queries left.
    pub fn remaining(&self) -> u64 {
        self.budget.saturating_sub(self.used)
    }

    /// Queries made.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The SSIM limit held.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// SSIM of an 8-bit candidate against the original.
    pub fn ssim(&self, image: &RgbImage) -> Result<f64, AttackError> {
        let (w, h) = self.reference.size();
        if (image.width(), image.height()) != (w, h) {
            // the size error, as the reference words it
            return Ok(self.reference.ssim_u8(image)?.mean);
        }
        let mut buf = self.buf.borrow_mut();
        buf.clear();
        buf.extend(image.as_bytes().iter().map(|&v| f64::from(v)));
        Ok(self.reference.ssim_f64(&buf)?.mean)
    }

    /// The objective's losses of the first `min(images.len(), remaining)` images, asked in
    /// one call (none when that is 0). The caller has checked their SSIM (the attacks' tests
    /// check every image an attack asks, through a counting oracle).
    pub fn losses(&mut self, images: &[RgbImage]) -> Result<Vec<f64>, AttackError> {
        let n = (images.len() as u64).min(self.remaining()) as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        let answers = self.oracle.describe(&images[..n])?;
        self.used += n as u64;
        if answers.len() != n {
            return Err(AttackError::BadInput(format!(
                "oracle '{}' answered {} descriptors for {n} images",
                self.oracle.name(),
                answers.len()
            )));
        }
        answers.iter().map(|d| self.loss(d)).collect()
    }

    /// The objective's loss of one answer, its length checked.
    fn loss(&self, d: &Descriptor) -> Result<f64, AttackError> {
        if d.len() != self.len {
            return Err(AttackError::BadInput(format!(
                "oracle '{}' answered a descriptor of {} values, the targets have {}",
                self.oracle.name(),
                d.len(),
                self.len
            )));
        }
        Ok(self.objective.loss(d, self.metric))
    }
}
