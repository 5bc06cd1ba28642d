//! SSIM exactly as scikit-image's `structural_similarity` computes it with the MCS2018
//! settings (`compare_ssim(a, b, multichannel=True)` on uint8 RGB), and its gradient.
//!
//! Per channel: local means, variances and covariance over a 7 x 7 uniform window
//! (scipy `uniform_filter`, mode `reflect`: `d c b a | a b c d`), sample covariance
//! (`N / (N - 1)`), `C1 = (0.01 R)^2`, `C2 = (0.03 R)^2` with `R = 255`; the SSIM map is
//! cropped by `(7 - 1) / 2 = 3` pixels on each side before the mean; the result is the mean
//! over the 3 channels. Everything is computed in f64, like scikit-image.

use advface_core::RgbImage;
use thiserror::Error;

/// Errors of SSIM.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SsimError {
    #[error("SSIM needs two images of the same size, got {a_w}x{a_h} and {b_w}x{b_h}")]
    SizeMismatch { a_w: u32, a_h: u32, b_w: u32, b_h: u32 },
    #[error("SSIM window of {win} pixels does not fit an image of {w}x{h} (both sides must be at least {win})")]
    TooSmall { w: u32, h: u32, win: usize },
    #[error("SSIM window size must be odd and at least 3, got {0}")]
    BadWindow(usize),
    #[error("SSIM input has {got} values, expected {expected} (height x width x 3)")]
    BufferSize { expected: usize, got: usize },
}

/// Settings of SSIM. The default is scikit-image's default for uint8 input, which is what
/// MCS2018 used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SsimConfig {
    /// Side of the uniform window (scikit-image: 7).
    pub win_size: usize,
    /// `K1` (scikit-image / Wang et al. 2004: 0.01).
    pub k1: f64,
    /// `K2` (scikit-image / Wang et al. 2004: 0.03).
    pub k2: f64,
    /// Dynamic range of the values (uint8: 255).
    pub data_range: f64,
}

impl Default for SsimConfig {
    fn default() -> Self {
        Self {
            win_size: 7,
            k1: 0.01,
            k2: 0.03,
            data_range: 255.0,
        }
    }
}

/// SSIM of a pair: the mean over channels and the value of each channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ssim {
    /// Mean over the three channels: the number MCS2018 compared with 0.95.
    pub mean: f64,
    /// SSIM of the R, G and B channels.
    pub per_channel: [f64; 3],
}

/// SSIM of `a` (the original) and `b` (the changed image), scikit-image exact.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Result<Ssim, SsimError> {
    let r = SsimReference::new(a, SsimConfig::default())?;
    r.check_size(b.width(), b.height())?;
    Ok(r.ssim_values(&to_f64(b.as_bytes())))
}

/// SSIM of `a` and `b` and its gradient with respect to `b`'s values (HWC, per unit of
/// the 0..255 scale).
pub fn ssim_with_grad(a: &RgbImage, b: &RgbImage) -> Result<(f64, Vec<f64>), SsimError> {
    let r = SsimReference::new(a, SsimConfig::default())?;
    r.check_size(b.width(), b.height())?;
    Ok(r.ssim_and_grad(&to_f64(b.as_bytes())))
}

fn to_f64(bytes: &[u8]) -> Vec<f64> {
    bytes.iter().map(|&v| f64::from(v)).collect()
}

/// The original image of a pair, with its local statistics computed once, so that many
/// candidates can be measured against it cheaply (what an attack loop does).
#[derive(Debug, Clone)]
pub struct SsimReference {
    cfg: SsimConfig,
    w: usize,
    h: usize,
    /// Per channel planes of the original (f64).
    x: [Vec<f64>; 3],
    /// Local mean of x per channel.
    ux: [Vec<f64>; 3],
    /// Local mean of x*x per channel.
    uxx: [Vec<f64>; 3],
}

impl SsimReference {
    /// Prepares the original `a`.
    pub fn new(a: &RgbImage, cfg: SsimConfig) -> Result<Self, SsimError> {
        if cfg.win_size < 3 || cfg.win_size % 2 == 0 {
            return Err(SsimError::BadWindow(cfg.win_size));
        }
        let (w, h) = (a.width() as usize, a.height() as usize);
        if w < cfg.win_size || h < cfg.win_size {
            return Err(SsimError::TooSmall {
                w: a.width(),
                h: a.height(),
                win: cfg.win_size,
            });
        }
        let x = planes(&to_f64(a.as_bytes()), w, h);
        let mut ux: [Vec<f64>; 3] = Default::default();
        let mut uxx: [Vec<f64>; 3] = Default::default();
        let mut scratch = Scratch::new(w, h, cfg.win_size / 2);
        for c in 0..3 {
            ux[c] = scratch.filter(&x[c]);
            let sq: Vec<f64> = x[c].iter().map(|v| v * v).collect();
            uxx[c] = scratch.filter(&sq);
        }
        Ok(Self {
            cfg,
            w,
            h,
            x,
            ux,
            uxx,
        })
    }

    /// Width and height of the original.
    pub fn size(&self) -> (u32, u32) {
        (self.w as u32, self.h as u32)
    }

    fn check_size(&self, w: u32, h: u32) -> Result<(), SsimError> {
        if w as usize != self.w || h as usize != self.h {
            return Err(SsimError::SizeMismatch {
                a_w: self.w as u32,
                a_h: self.h as u32,
                b_w: w,
                b_h: h,
            });
        }
        Ok(())
    }

    fn check_len(&self, b: &[f64]) -> Result<(), SsimError> {
        let expected = self.w * self.h * 3;
        if b.len() != expected {
            return Err(SsimError::BufferSize {
                expected,
                got: b.len(),
            });
        }
        Ok(())
    }

    /// SSIM of an 8-bit candidate.
    pub fn ssim_u8(&self, b: &RgbImage) -> Result<Ssim, SsimError> {
        self.check_size(b.width(), b.height())?;
        Ok(self.ssim_values(&to_f64(b.as_bytes())))
    }

    /// SSIM of a candidate given as values on the 0..255 scale, HWC (need not be integers).
    pub fn ssim_f64(&self, b: &[f64]) -> Result<Ssim, SsimError> {
        self.check_len(b)?;
        Ok(self.ssim_values(b))
    }

    /// SSIM and its gradient with respect to the candidate's values (HWC, 0..255 scale).
    pub fn ssim_grad_f64(&self, b: &[f64]) -> Result<(f64, Vec<f64>), SsimError> {
        self.check_len(b)?;
        Ok(self.ssim_and_grad(b))
    }

    fn constants(&self) -> (f64, f64, f64) {
        let np = (self.cfg.win_size * self.cfg.win_size) as f64;
        let cov_norm = np / (np - 1.0);
        let c1 = (self.cfg.k1 * self.cfg.data_range).powi(2);
        let c2 = (self.cfg.k2 * self.cfg.data_range).powi(2);
        (cov_norm, c1, c2)
    }

    fn ssim_values(&self, b: &[f64]) -> Ssim {
        let (cov_norm, c1, c2) = self.constants();
        let y = planes(b, self.w, self.h);
        let pad = self.cfg.win_size / 2;
        let mut scratch = Scratch::new(self.w, self.h, pad);
        let mut per_channel = [0f64; 3];
        for c in 0..3 {
            let uy = scratch.filter(&y[c]);
            let yy: Vec<f64> = y[c].iter().map(|v| v * v).collect();
            let uyy = scratch.filter(&yy);
            let xy: Vec<f64> = y[c].iter().zip(&self.x[c]).map(|(a, b)| a * b).collect();
            let uxy = scratch.filter(&xy);
            let (ux, uxx) = (&self.ux[c], &self.uxx[c]);
            let mut sum = 0f64;
            for r in pad..self.h - pad {
                for col in pad..self.w - pad {
                    let i = r * self.w + col;
                    let vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
                    let vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
                    let vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
                    let a1 = 2.0 * ux[i] * uy[i] + c1;
                    let a2 = 2.0 * vxy + c2;
                    let b1 = ux[i] * ux[i] + uy[i] * uy[i] + c1;
                    let b2 = vx + vy + c2;
                    sum += (a1 * a2) / (b1 * b2);
                }
            }
            let count = ((self.h - 2 * pad) * (self.w - 2 * pad)) as f64;
            per_channel[c] = sum / count;
        }
        Ssim {
            mean: per_channel.iter().sum::<f64>() / 3.0,
            per_channel,
        }
    }

    fn ssim_and_grad(&self, b: &[f64]) -> (f64, Vec<f64>) {
        let (cov_norm, c1, c2) = self.constants();
        let y = planes(b, self.w, self.h);
        let pad = self.cfg.win_size / 2;
        let plane = self.w * self.h;
        let count = ((self.h - 2 * pad) * (self.w - 2 * pad)) as f64;
        // d(mean SSIM)/dS(p) for each pixel of the cropped map: 1 / (3 * count).
        let ds = 1.0 / (3.0 * count);
        let mut scratch = Scratch::new(self.w, self.h, pad);
        let mut grad = vec![0f64; plane * 3];
        let mut total = 0f64;
        for c in 0..3 {
            let uy = scratch.filter(&y[c]);
            let yy: Vec<f64> = y[c].iter().map(|v| v * v).collect();
            let uyy = scratch.filter(&yy);
            let xy: Vec<f64> = y[c].iter().zip(&self.x[c]).map(|(a, b)| a * b).collect();
            let uxy = scratch.filter(&xy);
            let (ux, uxx) = (&self.ux[c], &self.uxx[c]);
            let mut g_uy = vec![0f64; plane];
            let mut g_uyy = vec![0f64; plane];
            let mut g_uxy = vec![0f64; plane];
            let mut sum = 0f64;
            for r in pad..self.h - pad {
                for col in pad..self.w - pad {
                    let i = r * self.w + col;
                    let vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
                    let vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
                    let vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
                    let a1 = 2.0 * ux[i] * uy[i] + c1;
                    let a2 = 2.0 * vxy + c2;
                    let b1 = ux[i] * ux[i] + uy[i] * uy[i] + c1;
                    let b2 = vx + vy + c2;
                    let den = b1 * b2;
                    let s = (a1 * a2) / den;
                    sum += s;
                    let d_a1 = a2 / den;
                    let d_a2 = a1 / den;
                    let d_b1 = -s / b1;
                    let d_b2 = -s / b2;
                    g_uy[i] = ds
                        * (d_a1 * 2.0 * ux[i] + d_b1 * 2.0 * uy[i]
                            - d_a2 * 2.0 * cov_norm * ux[i]
                            - d_b2 * 2.0 * cov_norm * uy[i]);
                    g_uyy[i] = ds * d_b2 * cov_norm;
                    g_uxy[i] = ds * d_a2 * 2.0 * cov_norm;
                }
            }
            total += sum / count;
            let t_uy = scratch.filter_adjoint(&g_uy);
            let t_uyy = scratch.filter_adjoint(&g_uyy);
            let t_uxy = scratch.filter_adjoint(&g_uxy);
            for i in 0..plane {
                grad[i * 3 + c] = t_uy[i] + 2.0 * y[c][i] * t_uyy[i] + self.x[c][i] * t_uxy[i];
            }
        }
        (total / 3.0, grad)
    }
}

/// HWC -> three planes.
fn planes(hwc: &[f64], w: usize, h: usize) -> [Vec<f64>; 3] {
    let mut p: [Vec<f64>; 3] = [vec![0.0; w * h], vec![0.0; w * h], vec![0.0; w * h]];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        p[0][i] = px[0];
        p[1][i] = px[1];
        p[2][i] = px[2];
    }
    p
}

/// scipy `reflect` index: `d c b a | a b c d | d c b a`.
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - 1 - j;
    }
    j as usize
}

/// Buffers for the separable uniform filter of radius `r` (window `2r + 1`).
struct Scratch {
    w: usize,
    h: usize,
    r: usize,
    line: Vec<f64>,
    tmp: Vec<f64>,
}

impl Scratch {
    fn new(w: usize, h: usize, r: usize) -> Self {
        Self {
            w,
            h,
            r,
            line: vec![0.0; w.max(h) + 2 * r],
            tmp: vec![0.0; w * h],
        }
    }

    /// scipy.ndimage.uniform_filter(src, 2r+1, mode='reflect') on a `h x w` plane:
    /// a 1-D box mean along rows (axis 1)... scipy filters axis 0 first, then axis 1; the
    /// sums of integers are exact in f64, so the order changes nothing beyond rounding of
    /// the two divisions.
    fn filter(&mut self, src: &[f64]) -> Vec<f64> {
        let (w, h, r) = (self.w, self.h, self.r);
        let size = (2 * r + 1) as f64;
        // Axis 0 (down the columns) into tmp.
        for col in 0..w {
            for k in 0..h + 2 * r {
                self.line[k] = src[reflect(k as isize - r as isize, h) * w + col];
            }
            let mut acc: f64 = self.line[..2 * r + 1].iter().sum();
            self.tmp[col] = acc / size;
            for row in 1..h {
                acc += self.line[row + 2 * r] - self.line[row - 1];
                self.tmp[row * w + col] = acc / size;
            }
        }
        // Axis 1 (along the rows) into out.
        let mut out = vec![0.0; w * h];
        for row in 0..h {
            for k in 0..w + 2 * r {
                self.line[k] = self.tmp[row * w + reflect(k as isize - r as isize, w)];
            }
            let mut acc: f64 = self.line[..2 * r + 1].iter().sum();
            out[row * w] = acc / size;
            for col in 1..w {
                acc += self.line[col + 2 * r] - self.line[col - 1];
                out[row * w + col] = acc / size;
            }
        }
        out
    }

    /// The adjoint (transpose) of [`Scratch::filter`]: `<filter(a), g> = <a, adjoint(g)>`.
    fn filter_adjoint(&mut self, g: &[f64]) -> Vec<f64> {
        let (w, h, r) = (self.w, self.h, self.r);
        let size = (2 * r + 1) as f64;
        // Transpose of axis 1: scatter each output's weight to its reflected inputs.
        let mut t = vec![0.0; w * h];
        for row in 0..h {
            let gi = &g[row * w..(row + 1) * w];
            let ti = &mut t[row * w..(row + 1) * w];
            adjoint_1d(gi, ti, r, size, &mut self.line);
        }
        // Transpose of axis 0.
        let mut out = vec![0.0; w * h];
        let mut col_in = vec![0.0; h];
        let mut col_out = vec![0.0; h];
        for col in 0..w {
            for row in 0..h {
                col_in[row] = t[row * w + col];
            }
            col_out.iter_mut().for_each(|v| *v = 0.0);
            adjoint_1d(&col_in, &mut col_out, r, size, &mut self.line);
            for row in 0..h {
                out[row * w + col] = col_out[row];
            }
        }
        out
    }
}

/// `out[reflect(i + k)] += g[i] / size` for every `i` and `k` in `-r..=r`.
fn adjoint_1d(g: &[f64], out: &mut [f64], r: usize, size: f64, ext: &mut [f64]) {
    let n = g.len();
    // Scatter into an extended line of n + 2r (index e = i + k + r), with running sums.
    let ext = &mut ext[..n + 2 * r];
    ext.iter_mut().for_each(|v| *v = 0.0);
    // ext[e] = sum over i with |e - r - i| <= r of g[i], i.e. i in [e - 2r, e].
    let mut acc = 0.0;
    for (e, slot) in ext.iter_mut().enumerate() {
        if e < n {
            acc += g[e];
        }
        if e >= 2 * r + 1 && e - 2 * r - 1 < n {
            acc -= g[e - 2 * r - 1];
        }
        *slot = acc / size;
    }
    for (e, v) in ext.iter().enumerate() {
        out[reflect(e as isize - r as isize, n)] += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    fn random_image(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut s = seed;
        let data = (0..w * h * 3).map(|_| (lcg(&mut s) % 256) as u8).collect();
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn identical_images_have_ssim_one() {
        let a = random_image(20, 13, 1);
        let s = ssim(&a, &a).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn reflect_matches_scipy() {
        // d c b a | a b c d | d c b a for n = 4
        let got: Vec<usize> = (-4..8).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]);
    }

    #[test]
    fn adjoint_is_the_transpose_of_the_filter() {
        let (w, h) = (9, 8);
        let mut s = 7;
        let a: Vec<f64> = (0..w * h).map(|_| (lcg(&mut s) % 1000) as f64 / 7.0).collect();
        let g: Vec<f64> = (0..w * h).map(|_| (lcg(&mut s) % 1000) as f64 / 13.0).collect();
        let mut sc = Scratch::new(w, h, 3);
        let fa = sc.filter(&a);
        let atg = sc.filter_adjoint(&g);
        let lhs: f64 = fa.iter().zip(&g).map(|(x, y)| x * y).sum();
        let rhs: f64 = a.iter().zip(&atg).map(|(x, y)| x * y).sum();
        assert!((lhs - rhs).abs() < 1e-9 * lhs.abs(), "{lhs} vs {rhs}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let a = random_image(16, 12, 3);
        let mut b = a.clone();
        let mut s = 11;
        for v in b.as_bytes_mut() {
            let d = (lcg(&mut s) % 21) as i32 - 10;
            *v = (*v as i32 + d).clamp(0, 255) as u8;
        }
        let r = SsimReference::new(&a, SsimConfig::default()).unwrap();
        let bf = to_f64(b.as_bytes());
        let (val, grad) = r.ssim_grad_f64(&bf).unwrap();
        assert!((val - r.ssim_f64(&bf).unwrap().mean).abs() < 1e-14);
        let h = 1e-4;
        let mut worst = 0f64;
        for i in (0..bf.len()).step_by(7) {
            let mut p = bf.clone();
            p[i] += h;
            let mut m = bf.clone();
            m[i] -= h;
            let fd = (r.ssim_f64(&p).unwrap().mean - r.ssim_f64(&m).unwrap().mean) / (2.0 * h);
            worst = worst.max((fd - grad[i]).abs() / (grad[i].abs().max(1e-6)));
        }
        assert!(worst < 1e-4, "worst relative error {worst}");
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let a = random_image(10, 10, 1);
        let b = random_image(11, 10, 1);
        assert!(matches!(ssim(&a, &b), Err(SsimError::SizeMismatch { .. })));
        let tiny = random_image(6, 10, 1);
        assert!(matches!(ssim(&tiny, &tiny), Err(SsimError::TooSmall { .. })));
    }
}
