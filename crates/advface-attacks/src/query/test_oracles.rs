//! Fake black boxes for the unit tests: deterministic functions of the pixels, a counting
//! wrapper that records every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use advface_core::{Descriptor, Metric, Objective, Oracle, OracleError, QueryStats, RgbImage};
use advface_image::ssim::SsimReference;
use advface_image::SsimConfig;
use advface_search::Rng;

use super::{run_measured, QueryAttack, QueryContext, QueryOutcome};
use crate::AttackError;

/// Mean L2 distance to the targets (the impersonation loss under face-api.js's metric).
pub fn mean_distance(d: &Descriptor, targets: &[Descriptor]) -> f64 {
    advface_core::mean_distance(d, targets, &Metric::FACE_API)
}

/// Runs `attack` towards `targets` (impersonation, L2) from `start`, asking for the start
/// first ([`run_measured`]).
pub fn measured(
    attack: &dyn QueryAttack,
    original: &RgbImage,
    start: &RgbImage,
    targets: &[Descriptor],
    oracle: &dyn Oracle,
    budget: u64,
) -> Result<QueryOutcome, AttackError> {
    let objective = Objective::impersonate(targets.to_vec());
    let ctx = QueryContext {
        original,
        objective: &objective,
        metric: &Metric::FACE_API,
        oracle,
        ensemble: None,
    };
    run_measured(attack, &ctx, start, budget)
}

/// Runs `attack` towards `targets` from `start` whose loss is known.
pub fn resumed(
    attack: &dyn QueryAttack,
    original: &RgbImage,
    start: &RgbImage,
    start_loss: f64,
    targets: &[Descriptor],
    oracle: &dyn Oracle,
    budget: u64,
) -> Result<QueryOutcome, AttackError> {
    let objective = Objective::impersonate(targets.to_vec());
    let ctx = QueryContext {
        original,
        objective: &objective,
        metric: &Metric::FACE_API,
        oracle,
        ensemble: None,
    };
    attack.run(&ctx, start, start_loss, budget)
}

/// Uniform noise, every value in `0..=255`.
pub fn noise_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut r = Rng::new(seed);
    let data = (0..w * h * 3).map(|_| r.below(256) as u8).collect();
    RgbImage::new(w, h, data).unwrap()
}

/// A smooth gradient with mild noise (`+-24`), values inside `40..=215`: room to move both
/// ways and texture for SSIM to tolerate small changes.
pub fn smooth_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut r = Rng::new(seed);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3u32 {
                let base =
                    80.0 + 50.0 * ((x + c * 7) as f64 / w as f64) + 40.0 * (y as f64 / h as f64);
                let v = base + r.range_i64(-24, 24) as f64;
                data.push(v.clamp(40.0, 215.0) as u8);
            }
        }
    }
    RgbImage::new(w, h, data).unwrap()
}

/// Descriptor: the mean colour of each cell of a `grid x grid` split of the image, on the
/// `[0, 1]` scale (`3 grid^2` values, cell-major, RGB).
pub struct RegionOracle {
    grid: u32,
    queries: AtomicU64,
}

impl RegionOracle {
    pub fn new(grid: u32) -> Self {
        Self {
            grid,
            queries: AtomicU64::new(0),
        }
    }

    /// The descriptor of one image, without counting a query.
    pub fn describe_one(&self, im: &RgbImage) -> Descriptor {
        let (w, h, g) = (im.width(), im.height(), self.grid);
        let mut out = Vec::with_capacity((3 * g * g) as usize);
        for gy in 0..g {
            for gx in 0..g {
                let (x0, x1) = (gx * w / g, (gx + 1) * w / g);
                let (y0, y1) = (gy * h / g, (gy + 1) * h / g);
                let mut sum = [0f64; 3];
                for y in y0..y1 {
                    for x in x0..x1 {
                        for (c, s) in sum.iter_mut().enumerate() {
                            *s += f64::from(im.get(x, y, c));
                        }
                    }
                }
                let n = f64::from((x1 - x0) * (y1 - y0)) * 255.0;
                out.extend(sum.iter().map(|s| (s / n) as f32));
            }
        }
        Descriptor(out)
    }
}

impl Oracle for RegionOracle {
    fn name(&self) -> String {
        "regions".into()
    }
    fn descriptor_len(&self) -> Option<usize> {
        Some((3 * self.grid * self.grid) as usize)
    }
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        self.queries
            .fetch_add(images.len() as u64, Ordering::Relaxed);
        Ok(images.iter().map(|im| self.describe_one(im)).collect())
    }
    fn stats(&self) -> QueryStats {
        QueryStats {
            queries: self.queries.load(Ordering::Relaxed),
            cached: 0,
        }
    }
}

/// Descriptor (3 values): `sum_p g(p) (image_p - original_p) / 255` per channel, `g` a
/// Gaussian bump of height 1 at `center` (row, col). With the original's pixel at the
/// centre set to `(0, 255, 0)`, the single-pixel change that reaches [`BumpOracle::target`]
/// is that pixel set to `(255, 0, 255)`, and no other.
pub struct BumpOracle {
    original: RgbImage,
    weights: Vec<f64>,
    center: (u32, u32),
    queries: AtomicU64,
}

impl BumpOracle {
    /// Also sets `original`'s centre pixel to `(0, 255, 0)` (returned by
    /// [`BumpOracle::original`]).
    pub fn new(original: &RgbImage, center: (u32, u32), sigma: f64) -> Self {
        let mut original = original.clone();
        let w = original.width() as usize;
        let at = (center.0 as usize * w + center.1 as usize) * 3;
        original.as_bytes_mut()[at..at + 3].copy_from_slice(&[0, 255, 0]);
        let weights = (0..original.height())
            .flat_map(|y| (0..original.width()).map(move |x| (y, x)))
            .map(|(y, x)| {
                let d2 = (f64::from(y) - f64::from(center.0)).powi(2)
                    + (f64::from(x) - f64::from(center.1)).powi(2);
                (-d2 / (2.0 * sigma * sigma)).exp()
            })
            .collect();
        Self {
            original,
            weights,
            center,
            queries: AtomicU64::new(0),
        }
    }

    pub fn original(&self) -> &RgbImage {
        &self.original
    }

    /// The descriptor of the original with the centre pixel set to `(255, 0, 255)`.
    pub fn target(&self) -> Descriptor {
        let mut im = self.original.clone();
        let w = im.width() as usize;
        let at = (self.center.0 as usize * w + self.center.1 as usize) * 3;
        im.as_bytes_mut()[at..at + 3].copy_from_slice(&[255, 0, 255]);
        self.describe_one(&im)
    }

    pub fn describe_one(&self, im: &RgbImage) -> Descriptor {
        let mut d = [0f64; 3];
        for (i, (a, b)) in im
            .as_bytes()
            .chunks_exact(3)
            .zip(self.original.as_bytes().chunks_exact(3))
            .enumerate()
        {
            for c in 0..3 {
                d[c] += self.weights[i] * (f64::from(a[c]) - f64::from(b[c])) / 255.0;
            }
        }
        Descriptor(d.iter().map(|v| *v as f32).collect())
    }
}

impl Oracle for BumpOracle {
    fn name(&self) -> String {
        "bump".into()
    }
    fn descriptor_len(&self) -> Option<usize> {
        Some(3)
    }
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        self.queries
            .fetch_add(images.len() as u64, Ordering::Relaxed);
        Ok(images.iter().map(|im| self.describe_one(im)).collect())
    }
    fn stats(&self) -> QueryStats {
        QueryStats {
            queries: self.queries.load(Ordering::Relaxed),
            cached: 0,
        }
    }
}

/// What a [`CountingOracle`] saw.
#[derive(Debug, Clone)]
pub struct CallLog {
    /// Images asked in all.
    pub total: u64,
    /// Images asked per call.
    pub calls: Vec<usize>,
    /// Lowest SSIM of an asked image against the original (`+inf` before any call).
    pub min_ssim: f64,
}

/// Wraps an oracle: records every call, checks SSIM of every image asked, and refuses (as
/// a budget oracle does) a call that would go past `budget`.
pub struct CountingOracle<O> {
    inner: O,
    reference: SsimReference,
    budget: Option<u64>,
    log: Mutex<CallLog>,
}

impl<O: Oracle> CountingOracle<O> {
    pub fn new(inner: O, original: &RgbImage, budget: Option<u64>) -> Self {
        Self {
            inner,
            reference: SsimReference::new(original, SsimConfig::default()).unwrap(),
            budget,
            log: Mutex::new(CallLog {
                total: 0,
                calls: Vec::new(),
                min_ssim: f64::INFINITY,
            }),
        }
    }

    pub fn log(&self) -> CallLog {
        self.log.lock().unwrap().clone()
    }
}

impl<O: Oracle> Oracle for CountingOracle<O> {
    fn name(&self) -> String {
        format!("counting({})", self.inner.name())
    }
    fn descriptor_len(&self) -> Option<usize> {
        self.inner.descriptor_len()
    }
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        let mut log = self.log.lock().unwrap();
        if let Some(b) = self.budget {
            if log.total + images.len() as u64 > b {
                return Err(OracleError::BudgetExhausted {
                    oracle: self.name(),
                    budget: b,
                    used: log.total,
                    requested: images.len() as u64,
                });
            }
        }
        assert!(!images.is_empty(), "an empty call");
        for im in images {
            let s = self.reference.ssim_u8(im).unwrap().mean;
            log.min_ssim = log.min_ssim.min(s);
        }
        log.total += images.len() as u64;
        log.calls.push(images.len());
        drop(log);
        self.inner.describe(images)
    }
    fn stats(&self) -> QueryStats {
        self.inner.stats()
    }
}
