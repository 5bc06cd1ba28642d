//! The SSIM limit, enforced on every candidate (never checked after the fact).
//!
//! A candidate is always measured on its 8-bit rounding, the image that would be written.
//! When a step would take it below the limit, the guard first repairs it along the SSIM
//! gradient (a Newton step on the constraint: the pixels SSIM is most sensitive to, the
//! smooth regions, move back towards the original; the perturbation in textured regions,
//! which SSIM tolerates, stays), and if that is not enough, shrinks the step by bisection
//! towards the last accepted image, which is known to satisfy the limit.

use advface_core::RgbImage;
use advface_image::{SsimConfig, SsimReference};

use crate::AttackError;

/// The original image of one source with its SSIM statistics and the limit to hold.
#[derive(Debug, Clone)]
pub struct SsimGuard {
    reference: SsimReference,
    original: RgbImage,
    limit: f64,
}

/// A candidate after the guard: feasible by construction.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// The continuous state (CHW, `[0, 1]`) the loop continues from.
    pub x: Vec<f32>,
    /// Its 8-bit rounding: the image that may be queried and written.
    pub image: RgbImage,
    /// SSIM of `image` against the original (at least the limit).
    pub ssim: f64,
    /// Share of the proposed step that was kept (1 when nothing was cut).
    pub kept: f64,
    /// Whether the SSIM-gradient repair was used.
    pub repaired: bool,
}

/// Newton repairs tried before bisection.
const REPAIRS: usize = 3;
/// Bisection steps on the share of the step kept.
const BISECTIONS: usize = 10;

impl SsimGuard {
    /// A guard holding `SSIM(original, candidate) >= limit` (give the protocol's 0.95 plus
    /// the safety margin).
    pub fn new(original: &RgbImage, limit: f64) -> Result<Self, AttackError> {
        if !(limit > 0.0 && limit <= 1.0) {
            return Err(AttackError::BadInput(format!(
                "SSIM limit must be in (0, 1], got {limit}"
            )));
        }
        Ok(Self {
            reference: SsimReference::new(original, SsimConfig::default())?,
            original: original.clone(),
            limit,
        })
    }

    /// The limit held.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The original image.
    pub fn original(&self) -> &RgbImage {
        &self.original
    }

    /// How much change SSIM tolerates at each value, CHW, scaled to a root mean square of
    /// 1: large in textured regions, small in smooth ones (see
    /// [`SsimReference::tolerance`]).
    pub fn tolerance_chw(&self) -> Vec<f32> {
        let (w, h) = self.reference.size();
        let plane = (w * h) as usize;
        let t = self.reference.tolerance();
        let rms = (t.iter().map(|v| v * v).sum::<f64>() / t.len() as f64).sqrt();
        let mut out = vec![0f32; t.len()];
        for (i, v) in t.iter().enumerate() {
            out[(i % 3) * plane + i / 3] = (v / rms) as f32;
        }
        out
    }

    /// SSIM of an 8-bit image against the original.
    pub fn ssim(&self, image: &RgbImage) -> Result<f64, AttackError> {
        Ok(self.reference.ssim_u8(image)?.mean)
    }

    /// SSIM of a continuous state (HWC, 0..255 values) and its gradient (same layout).
    pub fn ssim_and_grad(&self, x_chw: &[f32]) -> Result<(f64, Vec<f64>), AttackError> {
        let (w, h) = self.reference.size();
        let hwc = chw_to_hwc255(x_chw, w as usize, h as usize);
        Ok(self.reference.ssim_grad_f64(&hwc)?)
    }

    /// Makes `candidate` feasible. `accepted` is the state of the last accepted image, whose
    /// rounding satisfies the limit (the original at the start).
    ///
    /// # Shapes
    /// Both `[3, h, w]` in `[0, 1]` (one item of a `PixelBatch`).
    pub fn enforce(&self, accepted: &[f32], candidate: Vec<f32>) -> Result<Guarded, AttackError> {
        let (w, h) = self.reference.size();
        let (w, h) = (w as usize, h as usize);
        let mut cand: Vec<f32> = candidate.into_iter().map(|v| v.clamp(0.0, 1.0)).collect();
        let image = quantize(&cand, w, h);
        let s = self.ssim(&image)?;
        if s >= self.limit {
            return Ok(Guarded {
                x: cand,
                image,
                ssim: s,
                kept: 1.0,
                repaired: false,
            });
        }
        // Repair along the SSIM gradient, aiming a little above the limit so that the
        // rounding to 8 bits does not undo it.
        let aim = (self.limit + 0.25 * (1.0 - self.limit).min(0.01)).min(1.0);
        for _ in 0..REPAIRS {
            let hwc = chw_to_hwc255(&cand, w, h);
            let (s, g) = self.reference.ssim_grad_f64(&hwc)?;
            let norm2: f64 = g.iter().map(|v| v * v).sum();
            if norm2 <= 0.0 || !norm2.is_finite() {
                break;
            }
            let k = (aim - s) / norm2;
            let plane = w * h;
            for (i, gv) in g.iter().enumerate() {
                let (p, c) = (i / 3, i % 3);
                let idx = c * plane + p;
                cand[idx] = (cand[idx] + (k * gv / 255.0) as f32).clamp(0.0, 1.0);
            }
            let image = quantize(&cand, w, h);
            let s = self.ssim(&image)?;
            if s >= self.limit {
                return Ok(Guarded {
                    x: cand,
                    image,
                    ssim: s,
                    kept: 1.0,
                    repaired: true,
                });
            }
        }
        // Bisection on the share of the (repaired) step kept.
        let at = |t: f32| -> Vec<f32> {
            accepted
                .iter()
                .zip(&cand)
                .map(|(a, c)| a + t * (c - a))
                .collect()
        };
        let (mut lo, mut hi) = (0f32, 1f32);
        let mut best: Option<(Vec<f32>, RgbImage, f64)> = None;
        for _ in 0..BISECTIONS {
            let mid = 0.5 * (lo + hi);
            let x = at(mid);
            let image = quantize(&x, w, h);
            let s = self.ssim(&image)?;
            if s >= self.limit {
                lo = mid;
                best = Some((x, image, s));
            } else {
                hi = mid;
            }
        }
        match best {
            Some((x, image, s)) => Ok(Guarded {
                x,
                image,
                ssim: s,
                kept: f64::from(lo),
                repaired: true,
            }),
            None => {
                let image = quantize(accepted, w, h);
                let s = self.ssim(&image)?;
                if s >= self.limit {
                    Ok(Guarded {
                        x: accepted.to_vec(),
                        image,
                        ssim: s,
                        kept: 0.0,
                        repaired: false,
                    })
                } else {
                    // Only reachable if the caller's accepted state was not feasible: fall
                    // back to the original itself, which always is.
                    Ok(Guarded {
                        x: self.original.to_chw_f32(),
                        image: self.original.clone(),
                        ssim: 1.0,
                        kept: 0.0,
                        repaired: false,
                    })
                }
            }
        }
    }
}

/// The 8-bit rounding of a CHW state in `[0, 1]` (`round(clamp(v) * 255)`, as
/// `PixelBatch::to_image`).
pub fn quantize(x_chw: &[f32], w: usize, h: usize) -> RgbImage {
    let plane = w * h;
    let mut out = Vec::with_capacity(plane * 3);
    for p in 0..plane {
        for c in 0..3 {
            out.push((x_chw[c * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    RgbImage::new(w as u32, h as u32, out).expect("sizes agree by construction")
}

fn chw_to_hwc255(x: &[f32], w: usize, h: usize) -> Vec<f64> {
    let plane = w * h;
    let mut out = vec![0f64; plane * 3];
    for p in 0..plane {
        for c in 0..3 {
            out[p * 3 + c] = f64::from(x[c * plane + p].clamp(0.0, 1.0)) * 255.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn textured(seed: u64) -> RgbImage {
        let mut r = Rng::new(seed);
        let (w, h) = (40u32, 36u32);
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                // Smooth left half, noisy right half.
                let base = 60.0 + 2.0 * y as f64;
                let noise = if x >= w / 2 {
                    80.0 * (r.uniform() - 0.5)
                } else {
                    0.0
                };
                for c in 0..3 {
                    data.push((base + noise + 10.0 * c as f64).clamp(0.0, 255.0) as u8);
                }
            }
        }
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn a_big_step_is_cut_to_the_limit_and_never_below() {
        let im = textured(1);
        let guard = SsimGuard::new(&im, 0.955).unwrap();
        let x0 = im.to_chw_f32();
        let mut r = Rng::new(2);
        for trial in 0..5 {
            let cand: Vec<f32> = x0
                .iter()
                .map(|v| v + 0.2 * (r.uniform() as f32 - 0.5) * (trial + 1) as f32)
                .collect();
            let g = guard.enforce(&x0, cand).unwrap();
            let measured = advface_image::ssim(&im, &g.image).unwrap().mean;
            assert!(measured >= 0.955, "trial {trial}: {measured}");
            assert_eq!(measured, g.ssim);
            assert!(g.kept < 1.0 || g.repaired);
            // Something of the step survives.
            assert!(g.image != im, "trial {trial}: the whole step was refused");
        }
    }

    #[test]
    fn repair_keeps_more_change_in_the_textured_half() {
        let im = textured(3);
        let guard = SsimGuard::new(&im, 0.95).unwrap();
        let x0 = im.to_chw_f32();
        let mut r = Rng::new(4);
        let cand: Vec<f32> = x0
            .iter()
            .map(|v| v + 0.15 * (r.uniform() as f32 - 0.5))
            .collect();
        let g = guard.enforce(&x0, cand).unwrap();
        assert!(g.ssim >= 0.95);
        let (w, h) = (im.width() as usize, im.height() as usize);
        let (mut left, mut right) = (0f64, 0f64);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let d = (f64::from(g.image.get(x as u32, y as u32, c))
                        - f64::from(im.get(x as u32, y as u32, c)))
                    .abs();
                    if x < w / 2 {
                        left += d;
                    } else {
                        right += d;
                    }
                }
            }
        }
        assert!(right > 2.0 * left, "textured {right} vs smooth {left}");
    }

    #[test]
    fn a_feasible_candidate_passes_untouched() {
        let im = textured(5);
        let guard = SsimGuard::new(&im, 0.95).unwrap();
        let x0 = im.to_chw_f32();
        let cand: Vec<f32> = x0.iter().map(|v| v + 0.5 / 255.0).collect();
        let g = guard.enforce(&x0, cand.clone()).unwrap();
        assert_eq!(g.kept, 1.0);
        assert!(!g.repaired);
        assert_eq!(
            g.x,
            cand.iter().map(|v| v.clamp(0.0, 1.0)).collect::<Vec<_>>()
        );
    }
}
