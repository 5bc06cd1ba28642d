//! What both attacks share: the loss (the black box's mean L2 distance to the targets),
//! the SSIM limit on every image asked, and the exact query budget.

use advface_core::{Descriptor, Oracle, RgbImage};
use advface_image::ssim::SsimReference;
use advface_image::SsimConfig;

use crate::SearchError;

/// Mean Euclidean distance of `d` to the `targets` (the MCS2018 loss of one image).
///
/// # Panics
/// When `targets` is empty or a length differs (the attacks check both first).
pub fn mean_distance(d: &Descriptor, targets: &[Descriptor]) -> f64 {
    assert!(!targets.is_empty(), "mean distance to no targets");
    targets.iter().map(|t| d.l2(t)).sum::<f64>() / targets.len() as f64
}

/// The black box's distance of `start` to the `targets`, the one query an attack spends
/// before it searches (the inputs checked as [`Scorer::new`] does).
///
/// # Errors
/// [`SearchError::Config`] for a budget of 0 (nothing can be measured), and as
/// [`Scorer::new`] and the oracle.
pub(crate) fn start_distance(
    original: &RgbImage,
    start: &RgbImage,
    targets: &[Descriptor],
    oracle: &dyn Oracle,
    limit: f64,
    budget: u64,
) -> Result<f64, SearchError> {
    if budget == 0 {
        return Err(SearchError::Config(
            "a query budget of 0 cannot even measure the start image".into(),
        ));
    }
    let mut scorer = Scorer::new(original, start, targets, oracle, limit, 1)?;
    Ok(scorer.distances(std::slice::from_ref(start))?[0])
}

/// The black box with a query budget, the targets and the SSIM limit of one source image.
pub struct Scorer<'a> {
    oracle: &'a dyn Oracle,
    targets: &'a [Descriptor],
    reference: SsimReference,
    limit: f64,
    budget: u64,
    used: u64,
    /// Reused HWC f64 copy of a candidate (a fresh 300 KB buffer per SSIM costs ~20%).
    buf: std::cell::RefCell<Vec<f64>>,
}

impl<'a> Scorer<'a> {
    /// Checks the inputs: targets present and of one length (the oracle's, when it says),
    /// `start` the size of `original` and not below `limit`.
    pub fn new(
        original: &RgbImage,
        start: &RgbImage,
        targets: &'a [Descriptor],
        oracle: &'a dyn Oracle,
        limit: f64,
        budget: u64,
    ) -> Result<Self, SearchError> {
        if !(limit > 0.0 && limit <= 1.0) {
            return Err(SearchError::Config(format!(
                "SSIM limit must be in (0, 1], got {limit}"
            )));
        }
        let Some(first) = targets.first() else {
            return Err(SearchError::BadInput("no target descriptors".into()));
        };
        if first.is_empty() {
            return Err(SearchError::BadInput("empty target descriptor".into()));
        }
        if let Some(t) = targets.iter().find(|t| t.len() != first.len()) {
            return Err(SearchError::BadInput(format!(
                "target descriptors of different lengths: {} and {}",
                first.len(),
                t.len()
            )));
        }
        if let Some(n) = oracle.descriptor_len() {
            if n != first.len() {
                return Err(SearchError::BadInput(format!(
                    "oracle '{}' answers {n} values but the targets have {}",
                    oracle.name(),
                    first.len()
                )));
            }
        }
        if (start.width(), start.height()) != (original.width(), original.height()) {
            return Err(SearchError::BadInput(format!(
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
            return Err(SearchError::BadInput(format!(
                "start image has SSIM {s:.5} against the original, below the limit {limit}"
            )));
        }
        Ok(Self {
            oracle,
            targets,
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
    pub fn ssim(&self, image: &RgbImage) -> Result<f64, SearchError> {
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

    /// Mean distances to the targets of the first `min(images.len(), remaining)` images,
    /// asked in one call (none when that is 0). The caller has checked their SSIM.
    pub fn distances(&mut self, images: &[RgbImage]) -> Result<Vec<f64>, SearchError> {
        let n = (images.len() as u64).min(self.remaining()) as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        debug_assert!(images[..n]
            .iter()
            .all(|im| self.ssim(im).map(|s| s >= self.limit).unwrap_or(false)));
        let answers = self.oracle.describe(&images[..n])?;
        self.used += n as u64;
        if answers.len() != n {
            return Err(SearchError::BadInput(format!(
                "oracle '{}' answered {} descriptors for {n} images",
                self.oracle.name(),
                answers.len()
            )));
        }
        let len = self.targets[0].len();
        answers
            .iter()
            .map(|d| {
                if d.len() != len {
                    Err(SearchError::BadInput(format!(
                        "oracle '{}' answered a descriptor of {} values, the targets have {len}",
                        self.oracle.name(),
                        d.len()
                    )))
                } else {
                    Ok(mean_distance(d, self.targets))
                }
            })
            .collect()
    }
}
