//! Forward-only fast path of face-api.js `FaceRecognitionNet` on the CPU: the same network
//! as [`FaceApiNet`](crate::FaceApiNet) (same folded weights, same preprocessing), without
//! burn, for descriptor throughput. [`FaceApi`](crate::FaceApi)'s
//! [`Embedder::embed`] runs it.
//!
//! - Activations are NHWC `f32`, each image stored with one zero row and column around it
//!   where a 3x3 `same` convolution reads it, so no convolution needs bounds checks.
//! - Every convolution is an implicit GEMM: `[pixels, k * k * c_in]` (each output pixel's
//!   input window, read in place from the activations as `k` runs of `k * c_in`
//!   contiguous values; no im2col copy) times the folded filters, a
//!   `[k * k * c_in, c_out]` matrix stored once, at load, in panels of 16 output channels
//!   (`[c_out / 16, k * k * c_in, 16]`) so that the kernel reads them contiguously.
//! - The kernel computes 6 pixels x 16 channels in registers (AVX2 + FMA where the CPU has
//!   them, checked at run time; portable Rust otherwise) and applies the bias, the
//!   residual add and the ReLU before it stores.
//! - Each convolution's output is cut into tiles, run on rayon's pool: blocks of output
//!   pixels across the whole batch, or, where there are few pixels (the 8 x 8 and smaller
//!   maps at batch 1), blocks of output channels, so that each thread reads only its share
//!   of the filters.
//! - Activation buffers are kept between calls (a small pool of workspaces), so a call does
//!   not page-fault fresh allocations.
//!
//! Inference only: gradients go through the burn network
//! ([`FaceApi::descriptors_and_vjp`](crate::FaceApi::descriptors_and_vjp)). The two agree to
//! f32 summation order (below 1e-6 per descriptor component on the golden inputs).

use std::fmt;
use std::sync::{Mutex, PoisonError};

use advface_core::{Descriptor, EmbedError, Embedder, PixelBatch};
use rayon::prelude::*;

use super::weights::{
    embedded_weights, resize_matrix, FaceApiError, FoldedNet, DESCRIPTOR_LEN, EMBED_CHUNK,
    INPUT_SIZE, MEAN_RGB, MODEL_NAME,
};
use crate::tfjs::TfjsWeights;

mod gemm;

use gemm::{conv, map_buffer, simd_available, Epilogue, Map, PackedBlock, PackedConv, PANEL};

/// Workspaces kept for reuse between calls (one is in use per concurrent call).
const MAX_POOLED_WORKSPACES: usize = 4;

/// face-api.js `FaceRecognitionNet`, forward only: pixels in, descriptors out.
///
/// Built from the same checked and folded weights as the burn network
/// ([`FaceApi`](crate::FaceApi) holds both and uses this one for
/// [`Embedder::embed`]).
///
/// ```
/// use advface_core::{Embedder, PixelBatch, RgbImage};
/// use advface_models::FaceApiFast;
///
/// let model = FaceApiFast::embedded()?;
/// let grey = PixelBatch::from_images(&[RgbImage::filled(112, 112, [128, 128, 128])])?;
/// let d = model.embed(&grey)?;
/// assert_eq!(d[0].len(), 128);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FaceApiFast {
    /// `conv32_down`: 7x7 stride 2 `valid`, then ReLU and the 3x3 stride 2 max pool.
    stem: PackedConv,
    blocks: Vec<PackedBlock>,
    /// `[256, 128]`, row-major.
    fc: Vec<f32>,
    /// Whether the AVX2 + FMA kernel runs (else the portable one).
    simd: bool,
    /// Buffers of finished calls, for the next ones.
    pool: Mutex<Vec<Workspace>>,
}

impl fmt::Debug for FaceApiFast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaceApiFast")
            .field("conv_layers", &(1 + 2 * self.blocks.len()))
            .field("simd", &self.simd)
            .finish_non_exhaustive()
    }
}

impl FaceApiFast {
    /// The face-api.js 1.7.15 weights built into this binary (SHA-256 checked).
    pub fn embedded() -> Result<Self, FaceApiError> {
        Self::from_weights(&embedded_weights()?)
    }

    /// The network from decoded TF.js weights (strictly checked against
    /// [`expected_tensors`](crate::faceapi::expected_tensors)).
    pub fn from_weights(weights: &TfjsWeights) -> Result<Self, FaceApiError> {
        Ok(Self::from_folded(&FoldedNet::from_weights(weights)?))
    }

    pub(crate) fn from_folded(folded: &FoldedNet) -> Self {
        let stem = PackedConv::new(&folded.stem);
        let blocks: Vec<PackedBlock> = folded
            .blocks
            .iter()
            .map(|b| PackedBlock {
                conv1: PackedConv::new(&b.conv1),
                conv2: PackedConv::new(&b.conv2),
                down: b.down,
            })
            .collect();
        let whole_panels = std::iter::once(&stem)
            .chain(blocks.iter().flat_map(|b| [&b.conv1, &b.conv2]))
            .all(|c| c.c_out % PANEL == 0);
        Self {
            stem,
            blocks,
            fc: folded.fc.clone(),
            simd: whole_panels && simd_available(),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Whether the AVX2 + FMA kernel is in use (the portable one otherwise).
    pub fn uses_simd(&self) -> bool {
        self.simd
    }

    /// The same network with the portable kernel, whatever the CPU (for tests).
    #[doc(hidden)]
    pub fn portable(mut self) -> Self {
        self.simd = false;
        self
    }

    /// Descriptors of a batch of pixels, run in chunks of [`EMBED_CHUNK`] images.
    ///
    /// # Shapes
    /// `pixels`: `[n, 3, h, w]` (NCHW, row-major), values in `[0, 1]`, `h, w >= 1` (non-square
    /// images are zero-padded to a square as face-api.js does). `shape` is
    /// `[n, 3, h, w]`. Returns `[n, 128]`, row-major.
    pub fn forward(&self, pixels: &[f32], shape: [usize; 4]) -> Result<Vec<f32>, FaceApiError> {
        let [n, c, h, w] = shape;
        if c != 3 || h == 0 || w == 0 {
            return Err(FaceApiError::BadInput(format!(
                "expected pixels of shape [n, 3, h >= 1, w >= 1], got [{n}, {c}, {h}, {w}]"
            )));
        }
        let per_image = h
            .checked_mul(w)
            .and_then(|hw| hw.checked_mul(3))
            .filter(|&len| Some(pixels.len()) == len.checked_mul(n))
            .ok_or_else(|| {
                FaceApiError::BadInput(format!(
                    "{} values do not make pixels of shape [{n}, 3, {h}, {w}]",
                    pixels.len()
                ))
            })?;
        let mut out = vec![0f32; n * DESCRIPTOR_LEN];
        if n == 0 {
            return Ok(out);
        }
        let mut ws = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        let taps = Resize::new(h, w);
        // Run on a rayon worker: the many parallel loops of a pass then start from inside
        // the pool instead of each waking it from outside.
        rayon::scope(|_| {
            for (pixels, out) in pixels
                .chunks(EMBED_CHUNK * per_image)
                .zip(out.chunks_mut(EMBED_CHUNK * DESCRIPTOR_LEN))
            {
                self.forward_chunk(pixels, pixels.len() / per_image, &taps, &mut ws, out);
            }
        });
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < MAX_POOLED_WORKSPACES {
            pool.push(ws);
        }
        Ok(out)
    }

    /// The network on `n` images.
    ///
    /// # Shapes
    /// `pixels`: `[n, 3, h, w]` as `taps` describes; `out`: `[n, 128]`.
    fn forward_chunk(
        &self,
        pixels: &[f32],
        n: usize,
        taps: &Resize,
        ws: &mut Workspace,
        out: &mut [f32],
    ) {
        let simd = self.simd;
        // Block inputs and outputs are stored with one zero row/column around each image,
        // the padding of the 3x3 `same` convolutions that read them.
        let g_in = Map::new(n, INPUT_SIZE, INPUT_SIZE, 3, 0);
        preprocess(pixels, taps, map_buffer(&mut ws.input, g_in), g_in);
        let g_stem = self.stem.out_map(g_in, 0);
        let stem_out = map_buffer(&mut ws.t, g_stem);
        conv(
            simd,
            &self.stem,
            &ws.input,
            g_in,
            stem_out,
            g_stem,
            Epilogue::Relu,
        );
        let mut g = g_stem.pooled(3, 1);
        max_pool_3x3_s2(&ws.t, g_stem, map_buffer(&mut ws.x, g), g);

        for block in &self.blocks {
            let g1 = block.conv1.out_map(g, 1);
            let t = map_buffer(&mut ws.t, g1);
            conv(simd, &block.conv1, &ws.x, g, t, g1, Epilogue::Relu);
            let g2 = block.conv2.out_map(g1, 1);
            let y = map_buffer(&mut ws.y, g2);
            if block.down {
                conv(simd, &block.conv2, &ws.t, g1, y, g2, Epilogue::Bias);
                let g_out = Map {
                    c: g2.c,
                    ..g.pooled(2, 1)
                };
                let z = map_buffer(&mut ws.z, g_out);
                down_merge(&ws.x, g, &ws.y, g2, z, g_out);
                std::mem::swap(&mut ws.x, &mut ws.z);
                g = g_out;
            } else {
                let residual = &ws.x[..g.len()];
                conv(
                    simd,
                    &block.conv2,
                    &ws.t,
                    g1,
                    y,
                    g2,
                    Epilogue::AddRelu(residual),
                );
                std::mem::swap(&mut ws.x, &mut ws.y);
                g = g2;
            }
        }

        // Mean over H and W, then the fully connected layer.
        let hw = (g.h * g.w) as f32;
        let mut mean = vec![0f32; g.c];
        for (img, out) in out.chunks_exact_mut(DESCRIPTOR_LEN).enumerate() {
            mean.fill(0.0);
            for y in 0..g.h {
                for x in 0..g.w {
                    let at = g.at(img, y, x);
                    for (m, v) in mean.iter_mut().zip(&ws.x[at..at + g.c]) {
                        *m += v;
                    }
                }
            }
            out.fill(0.0);
            for (m, fc_row) in mean.iter().zip(self.fc.chunks_exact(DESCRIPTOR_LEN)) {
                let m = m / hw;
                for (o, f) in out.iter_mut().zip(fc_row) {
                    *o += m * f;
                }
            }
        }
    }
}

impl Embedder for FaceApiFast {
    fn name(&self) -> String {
        MODEL_NAME.into()
    }

    fn descriptor_len(&self) -> usize {
        DESCRIPTOR_LEN
    }

    /// Descriptors of a batch, run in chunks of [`EMBED_CHUNK`] images.
    ///
    /// # Shapes
    /// `batch`: `[n, 3, h, w]` in `[0, 1]`, any `h, w >= 1`; returns `n` descriptors of 128
    /// components.
    fn embed(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError> {
        let [n, c, h, w] = batch.shape();
        if h == 0 || w == 0 {
            return Err(FaceApiError::BadInput(format!(
                "images of {h} x {w} pixels (height x width) have no pixels"
            ))
            .into_embed());
        }
        let d = self
            .forward(batch.as_slice(), [n, c, h, w])
            .map_err(FaceApiError::into_embed)?;
        Ok(d.chunks_exact(DESCRIPTOR_LEN)
            .map(|d| Descriptor(d.to_vec()))
            .collect())
    }
}

/// Reusable buffers of one forward pass.
#[derive(Default)]
struct Workspace {
    /// Preprocessed input, `[n, 150, 150, 3]`.
    input: Vec<f32>,
    /// Block input / output.
    x: Vec<f32>,
    /// Stem output; then each block's conv1 output.
    t: Vec<f32>,
    /// Each block's conv2 output.
    y: Vec<f32>,
    /// Output of a down-sampling block.
    z: Vec<f32>,
}

/// Runs `f(image, output row, stored row)` in parallel for every interior row of the map
/// `go` stored in `out`; the zero rows between images are left alone.
fn for_each_stored_row(out: &mut [f32], go: Map, f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let row_len = go.row_len();
    let rows_per_image = go.h + 2 * go.pad;
    out[go.pad * row_len..]
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(stored_row, row)| {
            let (img, oy) = (stored_row / rows_per_image, stored_row % rows_per_image);
            if oy < go.h {
                f(img, oy, row);
            }
        });
}

/// Max pool 3x3 stride 2 `valid` (TF.js `maxPool(x, 3, 2, 'valid')`).
///
/// # Shapes
/// `x`: the map `g`; `out`: the map `go` (`g.pooled(3, go.pad)`), whose interior is
/// written.
fn max_pool_3x3_s2(x: &[f32], g: Map, out: &mut [f32], go: Map) {
    debug_assert_eq!(go, g.pooled(3, go.pad));
    let c = g.c;
    for_each_stored_row(out, go, |img, oy, out| {
        let out = &mut out[go.pad * c..(go.pad + go.w) * c];
        for (ox, out) in out.chunks_exact_mut(c).enumerate() {
            out.fill(f32::NEG_INFINITY);
            for ky in 0..3 {
                let start = g.at(img, 2 * oy + ky, 2 * ox);
                for v in x[start..start + 3 * c].chunks_exact(c) {
                    for (o, v) in out.iter_mut().zip(v) {
                        *o = o.max(*v);
                    }
                }
            }
        }
    });
}

/// The end of TF.js `residualDown`: `relu(shortcut + main)`, where the shortcut is the
/// block input average-pooled 2x2 stride 2 `valid`, with zero channels appended up to the
/// output's, and `main` (conv2's output) gets zero rows at the bottom and zero columns at
/// the right up to the pooled size.
///
/// # Shapes
/// `x`: block input, the map `g`; `main`: the map `gm`; `out`: the map `go`
/// (`g.pooled(2, go.pad)` with `gm.c` channels), whose interior is written.
fn down_merge(x: &[f32], g: Map, main: &[f32], gm: Map, out: &mut [f32], go: Map) {
    debug_assert_eq!(
        go,
        Map {
            c: gm.c,
            ..g.pooled(2, go.pad)
        }
    );
    let c_in = g.c;
    for_each_stored_row(out, go, |img, oy, out| {
        let out = &mut out[go.pad * go.c..(go.pad + go.w) * go.c];
        for (ox, out) in out.chunks_exact_mut(go.c).enumerate() {
            let at = |dy: usize, dx: usize| g.at(img, 2 * oy + dy, 2 * ox + dx);
            let (a, b, c, d) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
            for (i, o) in out[..c_in].iter_mut().enumerate() {
                *o = (x[a + i] + x[b + i] + x[c + i] + x[d + i]) / 4.0;
            }
            out[c_in..].fill(0.0);
            if oy < gm.h && ox < gm.w {
                let m = gm.at(img, oy, ox);
                for (o, v) in out.iter_mut().zip(&main[m..m + gm.c]) {
                    *o += v;
                }
            }
            for o in out.iter_mut() {
                *o = o.max(0.0);
            }
        }
    });
}

/// face-api.js padToSquare + resizeBilinear as two-tap filters per output row and column:
/// the non-zero entries of the burn path's interpolation matrices.
#[derive(Debug, Clone)]
struct Resize {
    h: usize,
    w: usize,
    /// Whether the input is used as is (already 150 x 150).
    identity: bool,
    /// Per output row: (input row, weight) x 2 (weight 0 where unused).
    rows: Vec<[(usize, f32); 2]>,
    /// Per output column: (input column, weight) x 2.
    cols: Vec<[(usize, f32); 2]>,
}

impl Resize {
    fn new(h: usize, w: usize) -> Self {
        let side = h.max(w);
        let identity = side == INPUT_SIZE && h == w;
        let taps = |len: usize| -> Vec<[(usize, f32); 2]> {
            if identity {
                return Vec::new();
            }
            resize_matrix(len, side)
                .chunks_exact(len)
                .map(|row| {
                    let mut t = [(0, 0.0); 2];
                    let nonzero = row.iter().enumerate().filter(|(_, v)| **v != 0.0);
                    for (slot, (i, v)) in t.iter_mut().zip(nonzero) {
                        *slot = (i, *v);
                    }
                    t
                })
                .collect()
        };
        Self {
            h,
            w,
            identity,
            rows: taps(h),
            cols: taps(w),
        }
    }
}

/// face-api.js preprocessing: pad to a square, resize to 150 x 150, subtract the means
/// (in `[0, 1]` units), to NHWC.
///
/// # Shapes
/// `pixels`: `[n, 3, h, w]` (NCHW) as `r` describes; `out`: the map `g`
/// (`[n, 150, 150, 3]`, no padding).
fn preprocess(pixels: &[f32], r: &Resize, out: &mut [f32], g: Map) {
    let s = INPUT_SIZE;
    debug_assert!(g == Map::new(g.n, s, s, 3, 0) && out.len() == g.len());
    let (h, w) = (r.h, r.w);
    let mean = MEAN_RGB.map(|m| m / 255.0);
    out.par_chunks_mut(s * 3)
        .enumerate()
        .for_each(|(row, out)| {
            let (img, oy) = (row / s, row % s);
            let img = &pixels[img * 3 * h * w..(img + 1) * 3 * h * w];
            for (ch, plane) in img.chunks_exact(h * w).enumerate() {
                if r.identity {
                    for (o, v) in out.chunks_exact_mut(3).zip(&plane[oy * w..(oy + 1) * w]) {
                        o[ch] = v - mean[ch];
                    }
                    continue;
                }
                // Along W (the two input rows this output row reads), then along H: the
                // burn path's order of operations.
                let [(i0, w0), (i1, w1)] = r.rows[oy];
                let (row0, row1) = (&plane[i0 * w..(i0 + 1) * w], &plane[i1 * w..(i1 + 1) * w]);
                for (o, &[(j0, v0), (j1, v1)]) in out.chunks_exact_mut(3).zip(&r.cols) {
                    let a = row0[j0] * v0 + row0[j1] * v1;
                    let b = row1[j0] * v0 + row1[j1] * v1;
                    o[ch] = (a * w0 + b * w1) - mean[ch];
                }
            }
        });
}
