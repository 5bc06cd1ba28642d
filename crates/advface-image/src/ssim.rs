//! SSIM exactly as scikit-image's `structural_similarity` computes it with the MCS2018
//! settings (`compare_ssim(a, b, multichannel=True)` on uint8 RGB), and its gradient.
//!
//! Per channel: local means, variances and covariance over a 7 x 7 uniform window
//! (scipy `uniform_filter`, mode `reflect`, which never reaches the kept windows), sample covariance
//! (`N / (N - 1)`), `C1 = (0.01 R)^2`, `C2 = (0.03 R)^2` with `R = 255`; the SSIM map is
//! cropped by `(7 - 1) / 2 = 3` pixels on each side before the mean; the result is the mean
//! over the 3 channels. Everything is computed in f64, like scikit-image.

use advface_core::RgbImage;
use thiserror::Error;

/// Errors of SSIM.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SsimError {
    #[error("SSIM needs two images of the same size, got {a_w}x{a_h} and {b_w}x{b_h}")]
    SizeMismatch {
        a_w: u32,
        a_h: u32,
        b_w: u32,
        b_h: u32,
    },
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
        if cfg.win_size < 3 || cfg.win_size.is_multiple_of(2) {
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

    /// How much change SSIM tolerates at each value of the original, HWC: `sqrt(2 var + C2)`
    /// of the window centred there (clamped to the windows wholly inside the image), on
    /// the 0..255 scale. A zero-mean change of local spread `s` costs the window's SSIM
    /// about `s^2 / (2 var + C2)`, so a change scaled by this is spread evenly over SSIM
    /// (textured regions take more, smooth ones less).
    pub fn tolerance(&self) -> Vec<f64> {
        let (w, h, r) = (self.w, self.h, self.cfg.win_size / 2);
        let np = (self.cfg.win_size * self.cfg.win_size) as f64;
        let cov_norm = np / (np - 1.0);
        let c2 = (self.cfg.k2 * self.cfg.data_range).powi(2);
        // the local statistics are kept for the windows wholly inside: (w - 2r) x (h - 2r)
        let ow = w - 2 * r;
        let mut out = vec![0f64; w * h * 3];
        for y in 0..h {
            let yc = y.clamp(r, h - 1 - r) - r;
            for x in 0..w {
                let xc = x.clamp(r, w - 1 - r) - r;
                for c in 0..3 {
                    let i = yc * ow + xc;
                    let var =
                        (cov_norm * (self.uxx[c][i] - self.ux[c][i] * self.ux[c][i])).max(0.0);
                    out[(y * w + x) * 3 + c] = (2.0 * var + c2).sqrt();
                }
            }
        }
        out
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
        WORK.with(|work| {
            let mut work = work.borrow_mut();
            let work = &mut *work;
            let plane = self.w * self.h;
            fill_planes(b, plane, &mut work.y);
            let mut per_channel = [0f64; 3];
            for (c, slot) in per_channel.iter_mut().enumerate() {
                *slot = self.channel(c, &work.y[c * plane..(c + 1) * plane], None);
            }
            Ssim {
                mean: per_channel.iter().sum::<f64>() / 3.0,
                per_channel,
            }
        })
    }

    fn ssim_and_grad(&self, b: &[f64]) -> (f64, Vec<f64>) {
        let mut grad = vec![0f64; b.len()];
        let v = self.ssim_and_grad_into(b, &mut grad);
        (v, grad)
    }

    /// SSIM of a candidate (HWC, 0..255 scale) and its gradient written into `grad`
    /// (same layout), without allocating: what an attack loop calls per step.
    pub fn ssim_grad_into(&self, b: &[f64], grad: &mut [f64]) -> Result<f64, SsimError> {
        self.check_len(b)?;
        self.check_len(grad)?;
        Ok(self.ssim_and_grad_into(b, grad))
    }

    fn ssim_and_grad_into(&self, b: &[f64], grad: &mut [f64]) -> f64 {
        WORK.with(|work| {
            let mut work = work.borrow_mut();
            let Work { y, g, grid, t } = &mut *work;
            let plane = self.w * self.h;
            let r = self.cfg.win_size / 2;
            let (ow, oh) = (self.w - 2 * r, self.h - 2 * r);
            fill_planes(b, plane, y);
            g.resize(plane, 0.0);
            grid.resize(3 * oh * ow, 0.0);
            t.resize(3 * oh * self.w, 0.0);
            let mut total = 0f64;
            for c in 0..3 {
                let yc = &y[c * plane..(c + 1) * plane];
                total += self.channel(c, yc, Some((&mut g[..], &mut grid[..], &mut t[..])));
                for (i, v) in g.iter().enumerate() {
                    grad[i * 3 + c] = *v;
                }
            }
            total / 3.0
        })
    }

    /// Mean SSIM of channel `c` for the candidate plane `y`; when `grad` is given, writes
    /// d(mean over the 3 channels)/dy into it (an `h x w` plane).
    ///
    /// Dispatches to a copy compiled for AVX2 + FMA when the CPU has them (same code, 4
    /// f64 lanes instead of 2; results differ only in the last bits from fused rounding).
    fn channel(&self, c: usize, y: &[f64], grad: Option<GradBufs<'_>>) -> f64 {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the features the function is compiled for.
                return unsafe { self.channel_avx2(c, y, grad) };
            }
        }
        self.channel_impl(c, y, grad)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn channel_avx2(&self, c: usize, y: &[f64], grad: Option<GradBufs<'_>>) -> f64 {
        self.channel_impl(c, y, grad)
    }

    /// Only windows wholly inside the image are kept (scikit-image crops the map by `r`),
    /// so every sum is a plain box sum: running sums down the columns and along the rows,
    /// with the per-pixel arithmetic in separate straight loops so that they vectorise.
    #[inline(always)]
    fn channel_impl(&self, c: usize, y: &[f64], grad: Option<GradBufs<'_>>) -> f64 {
        let (cov_norm, c1, c2) = self.constants();
        let (w, h) = (self.w, self.h);
        let win = self.cfg.win_size;
        let r = win / 2;
        let (ow, oh) = (w - 2 * r, h - 2 * r);
        let norm = 1.0 / (win * win) as f64;
        let x = &self.x[c][..w * h];
        let y = &y[..w * h];
        let (ux_all, uxx_all) = (&self.ux[c], &self.uxx[c]);
        let want_grad = grad.is_some();
        let (grad, grid, t) = match grad {
            Some((g, grid, t)) => (Some(g), grid, t),
            None => (None, &mut [][..], &mut [][..]),
        };
        // d(mean SSIM over 3 channels)/dS for each kept pixel.
        let ds = 1.0 / (3.0 * (oh * ow) as f64);

        // Running column sums of y, y*y and x*y over `win` rows.
        let mut cy = vec![0f64; w];
        let mut cyy = vec![0f64; w];
        let mut cxy = vec![0f64; w];
        let mut hy = vec![0f64; ow];
        let mut hyy = vec![0f64; ow];
        let mut hxy = vec![0f64; ow];
        let mut srow = vec![0f64; ow];
        // Gradients with respect to the window means, on the kept grid.
        // (Fully overwritten below; taken from the caller's reusable buffers.)
        let (g_uy, rest) = grid.split_at_mut(if want_grad { oh * ow } else { 0 });
        let (g_uyy, g_uxy) = rest.split_at_mut(if want_grad { oh * ow } else { 0 });
        // The four factors of SSIM at one pixel, `S = a1 a2 / (b1 b2)`, from the window
        // means of x, x*x, y, y*y and x*y.
        let terms = |ux: f64, uxx: f64, uy: f64, uyy: f64, uxy: f64| -> [f64; 4] {
            let vx = cov_norm * (uxx - ux * ux);
            let vy = cov_norm * (uyy - uy * uy);
            let vxy = cov_norm * (uxy - ux * uy);
            [
                2.0 * ux * uy + c1,
                2.0 * vxy + c2,
                ux * ux + uy * uy + c1,
                vx + vy + c2,
            ]
        };
        /// Adds (`ADD`) or removes one image row from the running column sums.
        #[inline(always)]
        fn update_row<const ADD: bool>(
            cy: &mut [f64],
            cyy: &mut [f64],
            cxy: &mut [f64],
            yr: &[f64],
            xr: &[f64],
        ) {
            for ((((a, b), c), &v), &u) in cy
                .iter_mut()
                .zip(cyy.iter_mut())
                .zip(cxy.iter_mut())
                .zip(yr)
                .zip(xr)
            {
                if ADD {
                    *a += v;
                    *b += v * v;
                    *c += v * u;
                } else {
                    *a -= v;
                    *b -= v * v;
                    *c -= v * u;
                }
            }
        }
        for row in 0..win {
            let span = row * w..(row + 1) * w;
            update_row::<true>(&mut cy, &mut cyy, &mut cxy, &y[span.clone()], &x[span]);
        }
        let mut sum = 0f64;
        for i in 0..oh {
            if i > 0 {
                let add = (i + 2 * r) * w..(i + 2 * r + 1) * w;
                update_row::<true>(&mut cy, &mut cyy, &mut cxy, &y[add.clone()], &x[add]);
                let sub = (i - 1) * w..i * w;
                update_row::<false>(&mut cy, &mut cyy, &mut cxy, &y[sub.clone()], &x[sub]);
            }
            // Window sums along the row: running sums, three independent chains.
            let (mut sy, mut syy, mut sxy) = (0f64, 0f64, 0f64);
            for k in 0..win {
                sy += cy[k];
                syy += cyy[k];
                sxy += cxy[k];
            }
            hy[0] = sy;
            hyy[0] = syy;
            hxy[0] = sxy;
            for j in 1..ow {
                sy += cy[j + 2 * r] - cy[j - 1];
                syy += cyy[j + 2 * r] - cyy[j - 1];
                sxy += cxy[j + 2 * r] - cxy[j - 1];
                hy[j] = sy;
                hyy[j] = syy;
                hxy[j] = sxy;
            }
            let ux = &ux_all[i * ow..(i + 1) * ow];
            let uxx = &uxx_all[i * ow..(i + 1) * ow];
            let (hy, hyy, hxy, srow) = (&hy[..ow], &hyy[..ow], &hxy[..ow], &mut srow[..ow]);
            if want_grad {
                let span = i * ow..(i + 1) * ow;
                let gy = &mut g_uy[span.clone()];
                let gyy = &mut g_uyy[span.clone()];
                let gxy = &mut g_uxy[span];
                for j in 0..ow {
                    let (ux, uy) = (ux[j], hy[j] * norm);
                    let [a1, a2, b1, b2] = terms(ux, uxx[j], uy, hyy[j] * norm, hxy[j] * norm);
                    let inv = 1.0 / (b1 * b2);
                    let s = a1 * a2 * inv;
                    srow[j] = s;
                    let d_a1 = a2 * inv;
                    let d_a2 = a1 * inv;
                    let d_b1 = -s * b2 * inv;
                    let d_b2 = -s * b1 * inv;
                    gy[j] = ds
                        * (2.0 * d_a1 * ux + 2.0 * d_b1 * uy
                            - 2.0 * cov_norm * (d_a2 * ux + d_b2 * uy));
                    gyy[j] = ds * d_b2 * cov_norm;
                    gxy[j] = ds * 2.0 * d_a2 * cov_norm;
                }
            } else {
                for j in 0..ow {
                    let [a1, a2, b1, b2] =
                        terms(ux[j], uxx[j], hy[j] * norm, hyy[j] * norm, hxy[j] * norm);
                    srow[j] = (a1 * a2) / (b1 * b2);
                }
            }
            sum += srow.iter().sum::<f64>();
        }
        if let Some(grad) = grad {
            // Transpose of the box means: each kept pixel's gradient spreads over its
            // window. Along the rows: t[i][x] = sum of g[i][x - 2r ..= x] (running sums);
            // down the columns: a[y] = sum of t[y - 2r ..= y] (running sums over rows).
            let (t_uy, rest) = t.split_at_mut(oh * w);
            let (t_uyy, t_uxy) = rest.split_at_mut(oh * w);
            for i in 0..oh {
                let (gy, gyy, gxy) = (
                    &g_uy[i * ow..(i + 1) * ow],
                    &g_uyy[i * ow..(i + 1) * ow],
                    &g_uxy[i * ow..(i + 1) * ow],
                );
                let (ty, tyy, txy) = (
                    &mut t_uy[i * w..(i + 1) * w],
                    &mut t_uyy[i * w..(i + 1) * w],
                    &mut t_uxy[i * w..(i + 1) * w],
                );
                let (mut sy, mut syy, mut sxy) = (0f64, 0f64, 0f64);
                for xx in 0..w {
                    if xx < ow {
                        sy += gy[xx];
                        syy += gyy[xx];
                        sxy += gxy[xx];
                    }
                    if xx >= win {
                        sy -= gy[xx - win];
                        syy -= gyy[xx - win];
                        sxy -= gxy[xx - win];
                    }
                    ty[xx] = sy;
                    tyy[xx] = syy;
                    txy[xx] = sxy;
                }
            }
            let mut ay = vec![0f64; w];
            let mut ayy = vec![0f64; w];
            let mut axy = vec![0f64; w];
            for yy in 0..h {
                if yy < oh {
                    let row = yy * w..(yy + 1) * w;
                    let (ty, tyy, txy) = (&t_uy[row.clone()], &t_uyy[row.clone()], &t_uxy[row]);
                    for k in 0..w {
                        ay[k] += ty[k];
                        ayy[k] += tyy[k];
                        axy[k] += txy[k];
                    }
                }
                if yy >= win {
                    let row = (yy - win) * w..(yy - win + 1) * w;
                    let (ty, tyy, txy) = (&t_uy[row.clone()], &t_uyy[row.clone()], &t_uxy[row]);
                    for k in 0..w {
                        ay[k] -= ty[k];
                        ayy[k] -= tyy[k];
                        axy[k] -= txy[k];
                    }
                }
                let base = yy * w;
                let (yr, xr) = (&y[base..base + w], &x[base..base + w]);
                let out = &mut grad[base..base + w];
                for k in 0..w {
                    out[k] = norm * (ay[k] + 2.0 * yr[k] * ayy[k] + xr[k] * axy[k]);
                }
            }
        }
        sum / (oh * ow) as f64
    }
}

/// Reusable buffers of the gradient: `(gradient plane h x w, 3 window-gradient grids
/// (h - 2r) x (w - 2r), 3 row-transposed grids (h - 2r) x w)`.
type GradBufs<'a> = (&'a mut [f64], &'a mut [f64], &'a mut [f64]);

/// Per-thread work buffers, so that repeated calls allocate nothing (fresh large buffers
/// cost more in page faults than the arithmetic).
#[derive(Default)]
struct Work {
    y: Vec<f64>,
    g: Vec<f64>,
    grid: Vec<f64>,
    t: Vec<f64>,
}

thread_local! {
    static WORK: std::cell::RefCell<Work> = std::cell::RefCell::new(Work::default());
}

/// HWC -> three planes, one after the other in `out` (resized to `3 * plane`).
fn fill_planes(hwc: &[f64], plane: usize, out: &mut Vec<f64>) {
    out.resize(3 * plane, 0.0);
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
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

/// Uniform filter restricted to the windows that lie wholly inside the image.
///
/// scikit-image crops the SSIM map by `r = (win - 1) / 2` on each side, and every window
/// centred in the kept region lies inside the image, so scipy's `reflect` border never
/// reaches the result: the "valid" box mean is the same number (sums of integers are exact
/// in f64; only the final division rounds, once here and twice in scipy, a difference of
/// about 1e-16).
///
/// `filter` maps an `h x w` plane to the `(h - 2r) x (w - 2r)` grid of window means;
/// `adjoint` is its transpose.
struct Scratch {
    w: usize,
    h: usize,
    r: usize,
    /// Column sums over `2r + 1` rows: `(h - 2r) x w`.
    tmp: Vec<f64>,
}

impl Scratch {
    fn new(w: usize, h: usize, r: usize) -> Self {
        Self {
            w,
            h,
            r,
            tmp: vec![0.0; (h - 2 * r) * w],
        }
    }

    fn out_dims(&self) -> (usize, usize) {
        (self.w - 2 * self.r, self.h - 2 * self.r)
    }

    fn filter(&mut self, src: &[f64]) -> Vec<f64> {
        let (w, r) = (self.w, self.r);
        let (ow, oh) = self.out_dims();
        let win = 2 * r + 1;
        let norm = 1.0 / (win * win) as f64;
        // Vertical running sums, row-major (vectorises).
        let (first, _) = self.tmp.split_at_mut(w);
        first.copy_from_slice(&src[..w]);
        for k in 1..win {
            for (t, s) in first.iter_mut().zip(&src[k * w..(k + 1) * w]) {
                *t += s;
            }
        }
        for i in 1..oh {
            let (prev, cur) = self.tmp.split_at_mut(i * w);
            let prev = &prev[(i - 1) * w..];
            let cur = &mut cur[..w];
            let add = &src[(i + 2 * r) * w..(i + 2 * r + 1) * w];
            let sub = &src[(i - 1) * w..i * w];
            for x in 0..w {
                cur[x] = prev[x] + add[x] - sub[x];
            }
        }
        // Horizontal running sums.
        let mut out = vec![0.0; ow * oh];
        for i in 0..oh {
            let row = &self.tmp[i * w..(i + 1) * w];
            let o = &mut out[i * ow..(i + 1) * ow];
            let mut acc: f64 = row[..win].iter().sum();
            o[0] = acc * norm;
            for j in 1..ow {
                acc += row[j + 2 * r] - row[j - 1];
                o[j] = acc * norm;
            }
        }
        out
    }

    /// Transpose of [`Scratch::filter`]: `g` on the `(h - 2r) x (w - 2r)` grid, result on
    /// the `h x w` plane. (The gradient fuses this into its own loop; this plain version
    /// checks the algebra in tests.)
    #[cfg(test)]
    fn adjoint(&mut self, g: &[f64]) -> Vec<f64> {
        let (w, h, r) = (self.w, self.h, self.r);
        let (ow, oh) = self.out_dims();
        let win = 2 * r + 1;
        let norm = 1.0 / (win * win) as f64;
        // Horizontal: t[i][x] = sum of g[i][j] for j in [x - 2r, x] ∩ [0, ow).
        for i in 0..oh {
            let gi = &g[i * ow..(i + 1) * ow];
            let t = &mut self.tmp[i * w..(i + 1) * w];
            let mut acc = 0.0;
            for x in 0..w {
                if x < ow {
                    acc += gi[x];
                }
                if x >= win {
                    acc -= gi[x - win];
                }
                t[x] = acc;
            }
        }
        // Vertical: out[y] = sum of t[i] for i in [y - 2r, y] ∩ [0, oh), row-major.
        let mut out = vec![0.0; w * h];
        let mut acc = vec![0.0; w];
        for y in 0..h {
            if y < oh {
                for (a, t) in acc.iter_mut().zip(&self.tmp[y * w..(y + 1) * w]) {
                    *a += t;
                }
            }
            if y >= win {
                for (a, t) in acc
                    .iter_mut()
                    .zip(&self.tmp[(y - win) * w..(y - win + 1) * w])
                {
                    *a -= t;
                }
            }
            for (o, a) in out[y * w..(y + 1) * w].iter_mut().zip(&acc) {
                *o = a * norm;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    fn random_image(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut s = seed;
        let data = (0..w * h * 3).map(|_| (lcg(&mut s) % 256) as u8).collect();
        RgbImage::new(w, h, data).unwrap()
    }

    #[test]
    fn tolerance_is_the_local_spread_of_the_original() {
        let c2 = (0.03f64 * 255.0).powi(2);
        let flat = RgbImage::new(12, 10, vec![90; 12 * 10 * 3]).unwrap();
        let t = SsimReference::new(&flat, SsimConfig::default())
            .unwrap()
            .tolerance();
        assert_eq!(t.len(), 12 * 10 * 3);
        assert!(
            t.iter().all(|v| (v - c2.sqrt()).abs() < 1e-9),
            "{:?}",
            &t[..3]
        );
        // an interior value against the 7 x 7 window's sample variance, computed directly
        let a = random_image(15, 13, 5);
        let t = SsimReference::new(&a, SsimConfig::default())
            .unwrap()
            .tolerance();
        let (x0, y0, c) = (6usize, 5usize, 1usize);
        let vals: Vec<f64> = (y0 - 3..=y0 + 3)
            .flat_map(|y| (x0 - 3..=x0 + 3).map(move |x| (x, y)))
            .map(|(x, y)| f64::from(a.as_bytes()[(y * 15 + x) * 3 + c]))
            .collect();
        let mean = vals.iter().sum::<f64>() / 49.0;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 48.0;
        let want = (2.0 * var + c2).sqrt();
        let got = t[(y0 * 15 + x0) * 3 + c];
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        // border values take the nearest window wholly inside
        assert_eq!(t[c], t[(3 * 15 + 3) * 3 + c]);
    }

    #[test]
    fn identical_images_have_ssim_one() {
        let a = random_image(20, 13, 1);
        let s = ssim(&a, &a).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn adjoint_is_the_transpose_of_the_filter() {
        let (w, h) = (9, 8);
        let mut s = 7;
        let a: Vec<f64> = (0..w * h)
            .map(|_| (lcg(&mut s) % 1000) as f64 / 7.0)
            .collect();
        let g: Vec<f64> = (0..(w - 6) * (h - 6))
            .map(|_| (lcg(&mut s) % 1000) as f64 / 13.0)
            .collect();
        let mut sc = Scratch::new(w, h, 3);
        let fa = sc.filter(&a);
        assert_eq!(fa.len(), g.len());
        let atg = sc.adjoint(&g);
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
        assert!(matches!(
            ssim(&tiny, &tiny),
            Err(SsimError::TooSmall { .. })
        ));
    }
}
