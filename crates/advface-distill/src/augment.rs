//! Deterministic augmentation: more distillation samples from each LFW image.
//!
//! Augmented copies are made from the full 250 x 250 LFW image (not from the 112 x 112
//! crop), so a shifted or zoomed-out window shows real pixels rather than padding. Copy 0
//! of every image is exactly the protocol crop (rows and columns 69..181), pixel for pixel
//! what `advface prepare` writes; copy `k > 0` draws its changes from a PRNG seeded by
//! the seed and the sample key, so the same key always gives the same pixels, on any
//! machine and in any order.
//!
//! # What a copy `k > 0` is
//! 1. Crop window: centre (125, 125) + an integer shift `(dx, dy)`, side `112 * scale`;
//!    resampled to 112 x 112 by bilinear interpolation with pixel centres aligned
//!    (output column `j` reads source column
//!    `124.5 + dx + scale * (j + 0.5 - 56)`; edge pixels repeat past the border). At
//!    `scale = 1` this is exactly the window shifted by `(dx, dy)`.
//! 2. Horizontal flip with probability [`flip_probability`](AugmentConfig::flip_probability).
//! 3. Colour, on the interpolated values before any rounding: brightness `v *= b`;
//!    contrast `v = c * (v - m) + m` with `m` the mean luma (0.299 R + 0.587 G + 0.114 B)
//!    of the image after brightness; per-channel gain `v *= g[ch]`.
//! 4. Round to nearest, clamp to 0..=255.
//!
//! The parameters are drawn in this order from SplitMix64 seeded with the first 8 bytes
//! (little-endian) of SHA-256(`"advface-augment-v1\0"` || seed as u64 LE || key UTF-8):
//! `dx`, `dy`, `scale`, flip, `b`, `c`, `g[0]`, `g[1]`, `g[2]`, each from one 64-bit draw.
//! Changing that order or the formula changes [`RECIPE_VERSION`].

use std::path::{Path, PathBuf};

use advface_core::{RgbImage, CROP_SIZE};
use advface_image::{crop_lfw, decode_jpeg, ImageError, LFW_CROP_START, LFW_SIZE};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Version of the augmentation formula, part of every [`AugmentConfig::recipe`].
pub const RECIPE_VERSION: &str = "augment-v1";

/// Errors of augmentation.
#[derive(Debug, Error)]
pub enum AugmentError {
    /// A setting is out of range.
    #[error("invalid augmentation setting {field} = {value}: {reason}")]
    Config {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// The image could not be read, decoded or cropped (names the file).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A pool entry that is not a crops-relative LFW path.
    #[error(
        "'{rel}' is not a crops-relative LFW path like Name/Name_0001.png: {reason} (use the \
         distill_list.txt written by `advface prepare`)"
    )]
    BadPath { rel: String, reason: String },
}

/// How augmented copies are made. The defaults follow the MCS2018 3rd-place team, who
/// added random crops, shifts and flips to the 2nd-place distillation recipe, kept small
/// enough that a copy is still a plausible aligned face:
///
/// - shifts up to 6 px (5% of the 112 px crop) and window scale 0.9..1.1: the spread of
///   face position and size that alignment leaves between LFW images;
/// - flips with probability 0.5 (faces are near-symmetric; the black box is not, which
///   is information the student should see);
/// - brightness and contrast ±10%, per-channel gain ±5%: the lighting and white-balance
///   spread of LFW's news photos, well inside what keeps a face recognisable.
///
/// ```
/// use advface_distill::AugmentConfig;
/// let cfg = AugmentConfig { seed: 7, ..Default::default() };
/// assert_eq!(cfg.max_shift, 6);
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    /// Largest shift of the crop window in pixels, per axis; each copy draws an integer
    /// uniformly in `-max_shift..=max_shift`. Default 6.
    pub max_shift: u32,
    /// Smallest side of the crop window relative to 112 px. Default 0.9.
    pub scale_min: f64,
    /// Largest side of the crop window relative to 112 px. Default 1.1.
    pub scale_max: f64,
    /// Probability of a horizontal flip, in `[0, 1]`. Default 0.5.
    pub flip_probability: f64,
    /// Brightness factor range: uniform in `[1 - brightness, 1 + brightness]`. Default 0.1.
    pub brightness: f32,
    /// Contrast factor range: uniform in `[1 - contrast, 1 + contrast]`. Default 0.1.
    pub contrast: f32,
    /// Per-channel gain range: uniform in `[1 - channel_gain, 1 + channel_gain]`, drawn
    /// for R, G and B separately. Default 0.05.
    pub channel_gain: f32,
    /// Seed of every copy's PRNG (with the sample key). Default 0.
    pub seed: u64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            max_shift: 6,
            scale_min: 0.9,
            scale_max: 1.1,
            flip_probability: 0.5,
            brightness: 0.1,
            contrast: 0.1,
            channel_gain: 0.05,
            seed: 0,
        }
    }
}

impl AugmentConfig {
    /// Checks the ranges: finite values, `0 < scale_min <= scale_max`, probabilities in
    /// `[0, 1]`, colour ranges in `[0, 1)`, and a window that stays inside the 250 x 250
    /// image (`max_shift + 56 * scale_max <= 125`).
    pub fn validate(&self) -> Result<(), AugmentError> {
        let bad = |field: &'static str, value: String, reason: &str| {
            Err(AugmentError::Config {
                field,
                value,
                reason: reason.into(),
            })
        };
        if !(self.scale_min.is_finite() && self.scale_min > 0.0) {
            return bad("scale_min", self.scale_min.to_string(), "must be above 0");
        }
        if !(self.scale_max.is_finite() && self.scale_max >= self.scale_min) {
            return bad(
                "scale_max",
                self.scale_max.to_string(),
                "must be at least scale_min",
            );
        }
        let half = f64::from(CROP_SIZE) / 2.0;
        if f64::from(self.max_shift) + half * self.scale_max > f64::from(LFW_SIZE) / 2.0 {
            return bad(
                "max_shift",
                self.max_shift.to_string(),
                "with scale_max the crop window would leave the 250x250 image \
                 (need max_shift + 56 * scale_max <= 125)",
            );
        }
        if !(0.0..=1.0).contains(&self.flip_probability) {
            return bad(
                "flip_probability",
                self.flip_probability.to_string(),
                "must be in [0, 1]",
            );
        }
        for (field, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("channel_gain", self.channel_gain),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(field, v.to_string(), "must be in [0, 1)");
            }
        }
        Ok(())
    }

    /// A one-line description of everything that decides the pixels of a copy: stored
    /// in a [`DescriptorStore`](crate::DescriptorStore) header, so a store never mixes
    /// copies made two ways under one key.
    pub fn recipe(&self) -> String {
        format!(
            "{RECIPE_VERSION} seed={} max_shift={} scale={:?}..{:?} flip={:?} \
             brightness={:?} contrast={:?} channel_gain={:?}",
            self.seed,
            self.max_shift,
            self.scale_min,
            self.scale_max,
            self.flip_probability,
            self.brightness,
            self.contrast,
            self.channel_gain
        )
    }
}

/// The changes of one augmented copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    /// Window shift in pixels (right positive).
    pub shift_x: i32,
    /// Window shift in pixels (down positive).
    pub shift_y: i32,
    /// Window side relative to 112 px.
    pub scale: f64,
    /// Mirror left-right.
    pub flip: bool,
    /// Brightness factor.
    pub brightness: f32,
    /// Contrast factor.
    pub contrast: f32,
    /// Gain per channel (R, G, B).
    pub gain: [f32; 3],
}

impl AugmentParams {
    /// No change: the protocol crop.
    pub const IDENTITY: Self = Self {
        shift_x: 0,
        shift_y: 0,
        scale: 1.0,
        flip: false,
        brightness: 1.0,
        contrast: 1.0,
        gain: [1.0; 3],
    };

    /// The parameters of copy `index` of the image `rel` (see the module docs for the
    /// PRNG and the order of draws); [`IDENTITY`](Self::IDENTITY) for `index` 0.
    pub fn draw(cfg: &AugmentConfig, rel: &str, index: u32) -> Self {
        if index == 0 {
            return Self::IDENTITY;
        }
        let mut h = Sha256::new();
        h.update(b"advface-augment-v1\0");
        h.update(cfg.seed.to_le_bytes());
        h.update(sample_key(rel, index).as_bytes());
        let digest = h.finalize();
        let mut rng =
            SplitMix64::from_state(u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")));
        let s = i64::from(cfg.max_shift);
        let mut shift = || {
            let span = (2 * s + 1) as f64;
            ((rng.uniform() * span).floor() as i64).min(2 * s) as i32 - s as i32
        };
        let shift_x = shift();
        let shift_y = shift();
        let scale = cfg.scale_min + (cfg.scale_max - cfg.scale_min) * rng.uniform();
        let flip = rng.uniform() < cfg.flip_probability;
        let mut around_one = |r: f32| 1.0 - r + 2.0 * r * rng.uniform() as f32;
        let brightness = around_one(cfg.brightness);
        let contrast = around_one(cfg.contrast);
        let gain = [
            around_one(cfg.channel_gain),
            around_one(cfg.channel_gain),
            around_one(cfg.channel_gain),
        ];
        Self {
            shift_x,
            shift_y,
            scale,
            flip,
            brightness,
            contrast,
            gain,
        }
    }
}

/// The key of copy `index` of image `rel` in a store: `"<rel>#<index>"`.
pub fn sample_key(rel: &str, index: u32) -> String {
    format!("{rel}#{index}")
}

/// Splits a sample key into the crops-relative path and the copy index.
pub fn parse_sample_key(key: &str) -> Option<(&str, u32)> {
    let (rel, idx) = key.rsplit_once('#')?;
    Some((rel, idx.parse().ok()?))
}

/// Copy `index` of a 250 x 250 LFW image, as a 112 x 112 crop. Copy 0 is exactly the
/// protocol crop; see the module docs for the others.
///
/// `rel` is the image's crops-relative path (`Name/Name_0001.png`): with the seed it
/// decides the copy's parameters.
pub fn augment(
    full: &RgbImage,
    rel: &str,
    index: u32,
    cfg: &AugmentConfig,
) -> Result<RgbImage, AugmentError> {
    if full.width() != LFW_SIZE || full.height() != LFW_SIZE {
        // crop_lfw says what is wrong, naming the image.
        crop_lfw(full, Path::new(rel))?;
    }
    if index == 0 {
        return Ok(crop_lfw(full, Path::new(rel))?);
    }
    cfg.validate()?;
    Ok(apply(full, &AugmentParams::draw(cfg, rel, index)))
}

/// Applies `params` to a full LFW image (any size; the window is centred on the
/// protocol crop's centre) and returns the 112 x 112 crop.
pub fn apply(full: &RgbImage, params: &AugmentParams) -> RgbImage {
    let n = CROP_SIZE as usize;
    let (w, h) = (full.width() as usize, full.height() as usize);
    let src = full.as_bytes();
    let centre = f64::from(LFW_CROP_START) + f64::from(CROP_SIZE) / 2.0 - 0.5; // 124.5
                                                                               // Source coordinate of output index i on one axis, and its two neighbours and weight.
    let taps = |i: usize, shift: i32, len: usize| -> (usize, usize, f32) {
        let x = centre + f64::from(shift) + params.scale * (i as f64 + 0.5 - n as f64 / 2.0);
        let x = x.clamp(0.0, (len - 1) as f64);
        let x0 = x.floor();
        let i0 = x0 as usize;
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, (x - x0) as f32)
    };
    let cols: Vec<_> = (0..n).map(|j| taps(j, params.shift_x, w)).collect();
    let rows: Vec<_> = (0..n).map(|i| taps(i, params.shift_y, h)).collect();
    let mut vals = vec![0f32; n * n * 3];
    for (i, &(y0, y1, fy)) in rows.iter().enumerate() {
        for j in 0..n {
            let (x0, x1, fx) = cols[if params.flip { n - 1 - j } else { j }];
            for c in 0..3 {
                let p = |y: usize, x: usize| f32::from(src[(y * w + x) * 3 + c]);
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                vals[(i * n + j) * 3 + c] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    let b = params.brightness;
    let mut luma_sum = 0f64;
    for px in vals.chunks_exact_mut(3) {
        for v in px.iter_mut() {
            *v *= b;
        }
        luma_sum += f64::from(0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]);
    }
    let m = (luma_sum / (n * n) as f64) as f32;
    let out: Vec<u8> = vals
        .chunks_exact(3)
        .flat_map(|px| {
            let mut o = [0u8; 3];
            for c in 0..3 {
                let v = (params.contrast * (px[c] - m) + m) * params.gain[c];
                o[c] = v.round().clamp(0.0, 255.0) as u8;
            }
            o
        })
        .collect();
    RgbImage::new(CROP_SIZE, CROP_SIZE, out).expect("112x112x3 bytes")
}

/// The LFW JPEG behind a crops-relative path: `Name/Name_0001.png` ->
/// `<lfw_root>/images_deepfunneled/Name/Name_0001.jpg`.
///
/// Refuses anything that is not exactly `<name>/<stem>.png` with plain names (no `..`,
/// no `#`, no backslash), so a list file cannot point outside the LFW folder.
pub fn lfw_source_path(lfw_root: &Path, rel: &str) -> Result<PathBuf, AugmentError> {
    let bad = |reason: &str| {
        Err(AugmentError::BadPath {
            rel: rel.chars().take(200).collect(),
            reason: reason.into(),
        })
    };
    if rel.contains('#') || rel.contains('\\') || rel.contains('\0') {
        return bad("it holds '#', '\\' or a NUL character");
    }
    let Some((name, file)) = rel.split_once('/') else {
        return bad("no '/' between the identity and the file");
    };
    if file.contains('/') {
        return bad("more than one '/'");
    }
    let Some(stem) = file.strip_suffix(".png") else {
        return bad("it does not end in .png");
    };
    for part in [name, stem] {
        if part.is_empty() || part == "." || part == ".." {
            return bad("an empty, '.' or '..' part");
        }
    }
    Ok(lfw_root
        .join("images_deepfunneled")
        .join(name)
        .join(format!("{stem}.jpg")))
}

/// Reads and decodes an LFW JPEG exactly as `advface prepare` does (libjpeg-turbo
/// defaults; a truncated or corrupt file is an error naming it).
pub fn read_lfw_jpeg(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_jpeg(&bytes, path)
}

/// The one SplitMix64 of the workspace (`advface_core::rng`), seeded with its state as the
/// reference code does: tiny, fast, and fixed forever, unlike a library PRNG whose stream
/// may change between versions.
pub(crate) use advface_core::rng::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient_image() -> RgbImage {
        let mut data = Vec::with_capacity(250 * 250 * 3);
        for y in 0..250u32 {
            for x in 0..250u32 {
                data.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, ((x + y) / 2) as u8]);
            }
        }
        RgbImage::new(250, 250, data).unwrap()
    }

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // Reference values of SplitMix64 seeded with 1234567 (from the C reference code).
        let mut r = SplitMix64::from_state(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        // The shared generator's `uniform` draws what this module's own `next_f64` drew
        // before the RNGs became one (`(x >> 11) * 2^-53`), bit for bit.
        let (mut a, mut b) = (SplitMix64::from_state(99), SplitMix64::from_state(99));
        for _ in 0..1000 {
            let old = (a.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            assert_eq!(b.uniform().to_bits(), old.to_bits());
        }
    }

    #[test]
    fn a_pure_shift_is_the_shifted_window() {
        let im = gradient_image();
        let p = AugmentParams {
            shift_x: 3,
            shift_y: -5,
            ..AugmentParams::IDENTITY
        };
        let out = apply(&im, &p);
        assert_eq!(out, im.crop(72, 64, 112, 112).unwrap());
        assert_eq!(
            apply(&im, &AugmentParams::IDENTITY),
            im.crop(69, 69, 112, 112).unwrap()
        );
    }

    #[test]
    fn a_flip_mirrors_the_window() {
        let im = gradient_image();
        let p = AugmentParams {
            flip: true,
            ..AugmentParams::IDENTITY
        };
        let out = apply(&im, &p);
        let plain = im.crop(69, 69, 112, 112).unwrap();
        for y in [0, 50, 111] {
            for x in [0, 7, 111] {
                for c in 0..3 {
                    assert_eq!(out.get(x, y, c), plain.get(111 - x, y, c));
                }
            }
        }
    }

    #[test]
    fn a_zoom_out_sees_more_of_the_image() {
        let im = gradient_image();
        let p = AugmentParams {
            scale: 1.1,
            ..AugmentParams::IDENTITY
        };
        let out = apply(&im, &p);
        // Red is the column index: the window now spans about 61.6 px each side of 124.5.
        let first = out.get(0, 0, 0);
        let last = out.get(111, 0, 0);
        assert!((63..=64).contains(&first), "{first}");
        assert!((185..=186).contains(&last), "{last}");
    }

    #[test]
    fn draws_stay_in_their_ranges_and_flip_about_half_the_time() {
        let cfg = AugmentConfig::default();
        let mut flips = 0;
        for k in 1..=400 {
            let p = AugmentParams::draw(&cfg, "A/A_0001.png", k);
            assert!(p.shift_x.abs() <= 6 && p.shift_y.abs() <= 6);
            assert!((0.9..=1.1).contains(&p.scale));
            assert!((0.9..=1.1).contains(&p.brightness) && (0.9..=1.1).contains(&p.contrast));
            assert!(p.gain.iter().all(|g| (0.95..=1.05).contains(g)));
            flips += usize::from(p.flip);
        }
        assert!((150..=250).contains(&flips), "{flips}");
    }

    #[test]
    fn bad_settings_and_paths_are_refused() {
        let cfg = AugmentConfig {
            max_shift: 70,
            ..Default::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_shift"));
        let cfg = AugmentConfig {
            scale_min: 1.2,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
        let root = Path::new("/lfw");
        for rel in [
            "../x.png",
            "A/../B.png",
            "A/B.jpg",
            "AB.png",
            "A/B/C.png",
            "A/#.png",
            "A/.png",
        ] {
            assert!(lfw_source_path(root, rel).is_err(), "{rel}");
        }
        assert_eq!(
            lfw_source_path(root, "A_B/A_B_0001.png").unwrap(),
            Path::new("/lfw/images_deepfunneled/A_B/A_B_0001.jpg")
        );
        assert_eq!(
            parse_sample_key("A/A_0001.png#12"),
            Some(("A/A_0001.png", 12))
        );
        assert_eq!(parse_sample_key("A/A_0001.png"), None);
    }
}
