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
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use advface_core::{Descriptor, EmbedError, Embedder, PixelBatch};
use rayon::prelude::*;

use crate::faceapi::{
    embedded_weights, resize_matrix, FaceApiError, FoldedConv, FoldedNet, DESCRIPTOR_LEN,
    EMBED_CHUNK, INPUT_SIZE, MEAN_RGB, MODEL_NAME,
};
use crate::tfjs::TfjsWeights;

/// Filters up to this size are expected to stay in L2 through a tile.
const FILTERS_IN_L2_BYTES: usize = 192 * 1024;

/// Below this many output pixels per thread, a convolution's output channels are split
/// between threads instead of its pixels.
const MIN_ROWS_PER_THREAD: usize = 64;

/// Most output pixels in a row tile (the input windows of a tile stay in L2 while the
/// tile's filter panels go by).
const MAX_TILE_ROWS: usize = 240;

/// Convolutions with fewer multiply-adds than this run as one tile on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

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
            simd: whole_panels && simd::available(),
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

/// `v[..len]`, growing `v` if needed (contents unspecified).
fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// `v` sized for the map `m`, its padding zeroed (the interior is left to the caller).
fn map_buffer(v: &mut Vec<f32>, m: Map) -> &mut [f32] {
    let buf = sized(v, m.len());
    if m.pad > 0 {
        let (rows, row_len, edge) = (m.h + 2 * m.pad, m.row_len(), m.pad * m.c);
        for img in buf.chunks_exact_mut(rows * row_len) {
            let (top, rest) = img.split_at_mut(m.pad * row_len);
            let (middle, bottom) = rest.split_at_mut(m.h * row_len);
            top.fill(0.0);
            bottom.fill(0.0);
            for row in middle.chunks_exact_mut(row_len) {
                row[..edge].fill(0.0);
                row[row_len - edge..].fill(0.0);
            }
        }
    }
    buf
}

/// Shape of an NHWC feature map of `n` images, each stored with `pad` zero rows and columns
/// on every side: `[n, h + 2 pad, w + 2 pad, c]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Map {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    pad: usize,
}

impl Map {
    fn new(n: usize, h: usize, w: usize, c: usize, pad: usize) -> Self {
        Self { n, h, w, c, pad }
    }

    /// Values stored (padding included).
    fn len(self) -> usize {
        self.n * (self.h + 2 * self.pad) * self.row_len()
    }

    /// Values per stored row.
    fn row_len(self) -> usize {
        (self.w + 2 * self.pad) * self.c
    }

    /// Pixels (padding excluded) of all images.
    fn pixels(self) -> usize {
        self.n * self.h * self.w
    }

    /// Offset of channel 0 of pixel `(y, x)` of image `img`, in stored coordinates
    /// (`(0, 0)` is the top-left padding value).
    fn stored_at(self, img: usize, y: usize, x: usize) -> usize {
        (img * (self.h + 2 * self.pad) + y) * self.row_len() + x * self.c
    }

    /// Offset of channel 0 of pixel `(y, x)` of image `img`.
    fn at(self, img: usize, y: usize, x: usize) -> usize {
        self.stored_at(img, y + self.pad, x + self.pad)
    }

    /// Image and position of pixel `r` in raster order over all images.
    fn pixel(self, r: usize) -> (usize, usize, usize) {
        (r / (self.h * self.w), r / self.w % self.h, r % self.w)
    }

    /// After a `k` x `k` stride 2 `valid` pool, stored with padding `pad`.
    fn pooled(self, k: usize, pad: usize) -> Self {
        Self {
            h: (self.h - k) / 2 + 1,
            w: (self.w - k) / 2 + 1,
            pad,
            ..self
        }
    }
}

/// Output channels per filter panel (the kernel's register block width).
const PANEL: usize = 16;

/// Output pixels per register block of the kernel.
const ROWS_PER_BLOCK: usize = 6;

/// One convolution, its filters packed for the kernel.
#[derive(Debug, Clone)]
struct PackedConv {
    k: usize,
    c_in: usize,
    c_out: usize,
    stride: usize,
    padding: usize,
    /// `[c_out.div_ceil(16), k * k * c_in, 16]`: panel `p` holds output channels
    /// `16 p .. 16 p + 16` (zeros past `c_out`) of every row of the `[k * k * c_in, c_out]`
    /// filter matrix, whose rows are in `(ky, kx, c_in)` order.
    panels: Vec<f32>,
    /// `[c_out]`.
    bias: Vec<f32>,
}

/// One residual block.
#[derive(Debug, Clone)]
struct PackedBlock {
    conv1: PackedConv,
    conv2: PackedConv,
    down: bool,
}

impl PackedConv {
    fn new(f: &FoldedConv) -> Self {
        let k_len = f.k * f.k * f.c_in;
        let n_panels = f.c_out.div_ceil(PANEL);
        let mut panels = vec![0f32; n_panels * k_len * PANEL];
        for (p, panel) in panels.chunks_exact_mut(k_len * PANEL).enumerate() {
            let cols = p * PANEL..((p + 1) * PANEL).min(f.c_out);
            for (row, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                let src = &f.weight[row * f.c_out..(row + 1) * f.c_out];
                dst[..cols.len()].copy_from_slice(&src[cols.clone()]);
            }
        }
        Self {
            k: f.k,
            c_in: f.c_in,
            c_out: f.c_out,
            stride: f.stride,
            padding: f.padding,
            panels,
            bias: f.bias.clone(),
        }
    }

    /// Shape of this convolution's output for an input of shape `g`, stored with padding
    /// `pad`.
    fn out_map(&self, g: Map, pad: usize) -> Map {
        let out = |len: usize| (len + 2 * self.padding - self.k) / self.stride + 1;
        Map::new(g.n, out(g.h), out(g.w), self.c_out, pad)
    }
}

/// What is applied to each product value `acc` of output channel `o` before it is stored.
#[derive(Clone, Copy)]
enum Epilogue<'a> {
    /// `acc + bias[o]`.
    Bias,
    /// `relu(acc + bias[o])`.
    Relu,
    /// `relu(acc + bias[o] + residual)`, `residual` stored like the output.
    AddRelu(&'a [f32]),
}

/// How one convolution's `[m, n]` output (pixels x channels) is cut into tiles.
#[derive(Debug, Clone, Copy)]
struct Plan {
    m: usize,
    n: usize,
    row_block: usize,
    /// A multiple of [`PANEL`], or all of `n`.
    col_block: usize,
    row_tiles: usize,
    col_tiles: usize,
}

impl Plan {
    /// Tiles for an `[m, k] x [k, n]` product on `threads` threads. Many rows: row blocks
    /// of whole register blocks, a whole number of tiles per thread. Few rows (the filters
    /// dominate the memory traffic): column blocks of whole panels, so that each thread
    /// reads only its share of the filters.
    fn new(m: usize, n: usize, k: usize, threads: usize) -> Self {
        let parallel = threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS;
        let split_cols = parallel && m < threads * MIN_ROWS_PER_THREAD && n >= 2 * PANEL;
        let (row_tiles, col_tiles) = if split_cols {
            let col_tiles = threads.min(n / PANEL);
            let row_tiles = threads.div_ceil(col_tiles).min(m / MIN_ROWS_PER_THREAD);
            (row_tiles.max(1), col_tiles)
        } else if parallel {
            (m.div_ceil(MAX_TILE_ROWS).next_multiple_of(threads), 1)
        } else {
            (m.div_ceil(MAX_TILE_ROWS), 1)
        };
        let row_block = m
            .div_ceil(row_tiles.max(1))
            .next_multiple_of(ROWS_PER_BLOCK)
            .clamp(1, m.max(1));
        let col_block = n
            .div_ceil(col_tiles)
            .next_multiple_of(PANEL)
            .clamp(1, n.max(1));
        Self {
            m,
            n,
            row_block,
            col_block,
            row_tiles: m.div_ceil(row_block).max(1),
            col_tiles: n.div_ceil(col_block).max(1),
        }
    }

    fn tiles(&self) -> usize {
        self.row_tiles * self.col_tiles
    }

    /// Output rows and columns of tile `t`.
    fn tile(&self, t: usize) -> (Range<usize>, Range<usize>) {
        let (r, c) = (t / self.col_tiles, t % self.col_tiles);
        let rows = r * self.row_block..((r + 1) * self.row_block).min(self.m);
        let cols = c * self.col_block..((c + 1) * self.col_block).min(self.n);
        (rows, cols)
    }
}

/// A raw output pointer shared by the tiles of one convolution, which write disjoint
/// parts of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: `conv` hands each tile a disjoint set of output values, in a buffer that
// outlives the parallel loop; nothing else touches the buffer meanwhile.
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One convolution (folded bias, then `epilogue`) over a whole batch, as an implicit GEMM:
/// the kernel reads each output pixel's input window straight from `x` (row by row of
/// the window: `k` runs of `k * c_in` contiguous values), with the AVX2 + FMA kernel if
/// `simd` (the caller checked the CPU) or the portable one.
///
/// # Shapes
/// `x`: the map `gx` (`gx.c == layer.c_in`, stored with at least the convolution's
/// padding, zeros); `out`: the map `go` = `layer.out_map(gx, go.pad)`, whose interior is
/// written (its padding is left alone); an [`Epilogue::AddRelu`] residual is stored like
/// `out`.
fn conv(
    simd: bool,
    layer: &PackedConv,
    x: &[f32],
    gx: Map,
    out: &mut [f32],
    go: Map,
    epilogue: Epilogue<'_>,
) {
    assert!(
        gx.c == layer.c_in && gx.pad >= layer.padding && x.len() >= gx.len(),
        "conv input: {gx:?}"
    );
    assert!(
        go == layer.out_map(gx, go.pad) && out.len() >= go.len(),
        "conv output: {go:?}"
    );
    if let Epilogue::AddRelu(res) = epilogue {
        assert!(res.len() >= go.len(), "residual shape");
    }
    let (k, c) = (layer.k, layer.c_in);
    let plan = Plan::new(go.pixels(), go.c, k * k * c, rayon::current_num_threads());
    // Window of output pixel (img, oy, ox): stored rows oy * s + skip .. + k, columns alike.
    let skip = gx.pad - layer.padding;
    let dst = OutPtr(out.as_mut_ptr());
    let run = |t: usize| {
        let (rows, cols) = plan.tile(t);
        let (relu, residual) = match epilogue {
            Epilogue::Bias => (false, None),
            Epilogue::Relu => (true, None),
            Epilogue::AddRelu(res) => (true, Some(res)),
        };
        let k_len = k * k * c;
        let n_panels = cols.len().div_ceil(PANEL);
        let n_blocks = rows.len().div_ceil(ROWS_PER_BLOCK);
        // Small filters (that stay in L2): all panels of a pixel block in a row, so its
        // input windows are read from memory once. Large ones: all blocks of the tile for
        // one panel, so each panel is read from memory once per tile.
        let blocks_outer = k_len * cols.len() * 4 <= FILTERS_IN_L2_BYTES;
        for i in 0..n_panels * n_blocks {
            let (b, p) = if blocks_outer {
                (i / n_panels, i % n_panels)
            } else {
                (i % n_blocks, i / n_blocks)
            };
            let (r0, p0) = (rows.start + b * ROWS_PER_BLOCK, cols.start + p * PANEL);
            let mr = ROWS_PER_BLOCK.min(rows.end - r0);
            let mut a_off = [0; ROWS_PER_BLOCK];
            let mut out_off = [0; ROWS_PER_BLOCK];
            for (j, r) in (r0..r0 + mr).enumerate() {
                let (img, oy, ox) = go.pixel(r);
                let s = layer.stride;
                a_off[j] = gx.stored_at(img, oy * s + skip, ox * s + skip);
                out_off[j] = go.at(img, oy, ox) + p0;
            }
            let block = Block {
                rows: mr,
                x,
                a_off,
                segments: k,
                segment_len: k * c,
                segment_stride: gx.row_len(),
                panel: &layer.panels[p0 * k_len..(p0 + PANEL) * k_len],
                bias: &layer.bias[p0..(p0 + PANEL).min(cols.end)],
                out: dst.get(),
                out_len: go.len(),
                out_off,
                residual,
                relu,
            };
            // SAFETY: with `conv`'s asserts, every window lies inside `x` (the last one
            // ends at stored row `(go.h - 1) * s + skip + k - 1 < gx.h + 2 gx.pad`, columns
            // alike) and every output offset inside the output's interior, which the
            // residual shares (`Block::check` re-checks in debug builds); the tiles of
            // `plan` cover disjoint pixels x channels, each tile run once, and nothing else
            // touches `out` meanwhile; `simd` only where the CPU has AVX2 and FMA and every
            // panel is whole (`FaceApiFast::from_folded`).
            unsafe {
                if simd {
                    simd::block(&block);
                } else {
                    portable_block(&block);
                }
            }
        }
    };
    if plan.tiles() == 1 {
        run(0);
    } else {
        (0..plan.tiles()).into_par_iter().for_each(run);
    }
}

/// Up to 6 output pixels x one panel of up to 16 output channels of a convolution.
struct Block<'a> {
    /// Output pixels (1 to 6).
    rows: usize,
    /// The input map.
    x: &'a [f32],
    /// Per pixel: offset in `x` of its window's first value.
    a_off: [usize; ROWS_PER_BLOCK],
    /// Rows of a window (`k`); each is one run of `segment_len` values in `x`.
    segments: usize,
    /// `k * c_in`.
    segment_len: usize,
    /// Distance in `x` between two rows of a window.
    segment_stride: usize,
    /// `[segments * segment_len, 16]`: the filter panel.
    panel: &'a [f32],
    /// Bias of the panel's channels (1 to 16 of them: the block's width).
    bias: &'a [f32],
    /// The output map (`out_len` values).
    out: *mut f32,
    out_len: usize,
    /// Per pixel: offset in the output (and the residual) of the panel's first channel.
    out_off: [usize; ROWS_PER_BLOCK],
    /// Stored like the output.
    residual: Option<&'a [f32]>,
    relu: bool,
}

impl Block<'_> {
    /// Whether every access of the kernel stays in bounds (for debug assertions).
    fn check(&self) -> bool {
        let k_len = self.segments * self.segment_len;
        let window = (self.segments - 1) * self.segment_stride + self.segment_len;
        let width = self.bias.len();
        (1..=ROWS_PER_BLOCK).contains(&self.rows)
            && (1..=PANEL).contains(&width)
            && self.panel.len() == k_len * PANEL
            && (0..self.rows).all(|r| {
                self.a_off[r] + window <= self.x.len()
                    && self.out_off[r] + width <= self.out_len
                    && self
                        .residual
                        .is_none_or(|res| self.out_off[r] + width <= res.len())
            })
    }
}

/// The kernel in plain Rust (any CPU; also handles panels narrower than 16).
///
/// # Safety
/// [`Block::check`] holds, `b.out` is valid for writes of `b.out_len` values, and no
/// other thread accesses the values this block writes.
unsafe fn portable_block(b: &Block<'_>) {
    debug_assert!(b.check());
    let mut acc = [[0f32; PANEL]; ROWS_PER_BLOCK];
    let mut w = b.panel.chunks_exact(PANEL);
    for seg in 0..b.segments {
        for (kk, w) in (0..b.segment_len).zip(w.by_ref()) {
            for (r, acc) in acc.iter_mut().enumerate().take(b.rows) {
                let av = b.x[b.a_off[r] + seg * b.segment_stride + kk];
                for (acc, w) in acc.iter_mut().zip(w) {
                    *acc += av * w;
                }
            }
        }
    }
    let width = b.bias.len();
    for (r, acc) in acc.iter().enumerate().take(b.rows) {
        let at = b.out_off[r];
        let out = std::slice::from_raw_parts_mut(b.out.add(at), width);
        for (j, (o, (v, bias))) in out.iter_mut().zip(acc.iter().zip(b.bias)).enumerate() {
            let mut v = v + bias;
            if let Some(res) = b.residual {
                v += res[at + j];
            }
            *o = if b.relu { v.max(0.0) } else { v };
        }
    }
}

/// The AVX2 + FMA kernel.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_max_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    use super::{Block, PANEL};

    /// Whether this CPU runs the kernel.
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// [`portable_block`](super::portable_block) with AVX2 + FMA.
    ///
    /// # Safety
    /// As for `portable_block`; also the CPU has AVX2 and FMA and the block is 16
    /// channels wide.
    pub(super) unsafe fn block(b: &Block<'_>) {
        debug_assert!(b.check() && b.bias.len() == PANEL);
        match b.rows {
            6 => rows::<6>(b),
            5 => rows::<5>(b),
            4 => rows::<4>(b),
            3 => rows::<3>(b),
            2 => rows::<2>(b),
            _ => rows::<1>(b),
        }
    }

    /// `MR` pixels x 16 channels, in 2 `MR` accumulators.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const MR: usize>(b: &Block<'_>) {
        let mut lo = [_mm256_setzero_ps(); MR];
        let mut hi = [_mm256_setzero_ps(); MR];
        let mut w = b.panel.as_ptr();
        for seg in 0..b.segments {
            let a: [*const f32; MR] =
                std::array::from_fn(|r| b.x.as_ptr().add(b.a_off[r] + seg * b.segment_stride));
            for kk in 0..b.segment_len {
                let w_lo = _mm256_loadu_ps(w);
                let w_hi = _mm256_loadu_ps(w.add(8));
                w = w.add(PANEL);
                for r in 0..MR {
                    let av = _mm256_broadcast_ss(&*a[r].add(kk));
                    lo[r] = _mm256_fmadd_ps(av, w_lo, lo[r]);
                    hi[r] = _mm256_fmadd_ps(av, w_hi, hi[r]);
                }
            }
        }
        let bias = [
            _mm256_loadu_ps(b.bias.as_ptr()),
            _mm256_loadu_ps(b.bias.as_ptr().add(8)),
        ];
        let zero = _mm256_setzero_ps();
        for r in 0..MR {
            for (half, acc) in [lo[r], hi[r]].into_iter().enumerate() {
                let at = b.out_off[r] + half * 8;
                let mut v: __m256 = _mm256_add_ps(acc, bias[half]);
                if let Some(res) = b.residual {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(res.as_ptr().add(at)));
                }
                if b.relu {
                    v = _mm256_max_ps(v, zero);
                }
                _mm256_storeu_ps(b.out.add(at), v);
            }
        }
    }
}

/// No SIMD kernel on other architectures.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::Block;

    pub(super) fn available() -> bool {
        false
    }

    /// Never called (`available` is false).
    pub(super) unsafe fn block(b: &Block<'_>) {
        super::portable_block(b)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in `[-1, 1)`.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn plans_cover_every_output_value_once() {
        for (m, n, k) in [
            (1, 256, 2304),
            (9, 256, 2304),
            (16, 256, 2304),
            (64, 128, 1152),
            (289, 64, 576),
            (1225, 32, 288),
            (5184, 32, 147),
            (39200, 32, 288),
            (7, 48, 9),
            (100, 16, 1),
        ] {
            for threads in [1, 2, 3, 16] {
                let plan = Plan::new(m, n, k, threads);
                let mut seen = vec![0u8; m * n];
                for t in 0..plan.tiles() {
                    let (rows, cols) = plan.tile(t);
                    assert!(cols.start % PANEL == 0, "{plan:?}");
                    for r in rows {
                        for c in cols.clone() {
                            seen[r * n + c] += 1;
                        }
                    }
                }
                assert!(seen.iter().all(|&v| v == 1), "{plan:?}");
            }
        }
    }

    #[test]
    fn map_buffers_have_zero_padding() {
        let m = Map::new(2, 3, 4, 5, 1);
        let mut v = vec![7.0; 1000];
        let buf = map_buffer(&mut v, m);
        assert_eq!(buf.len(), 2 * 5 * 6 * 5);
        for img in 0..2 {
            for y in 0..5 {
                for x in 0..6 {
                    let inside = (1..4).contains(&y) && (1..5).contains(&x);
                    let at = m.stored_at(img, y, x);
                    let want = if inside { 7.0 } else { 0.0 };
                    assert!(buf[at..at + 5].iter().all(|&v| v == want), "{img} {y} {x}");
                }
            }
        }
    }

    /// `conv` against a direct f64 convolution, with both kernels, for layer shapes of the
    /// network and a few others (narrow panels for the portable kernel, padding wider than
    /// the convolution's).
    #[test]
    fn conv_matches_a_direct_convolution() {
        let cases = [
            // (n, h, w, c_in, c_out, k, stride, padding, input pad)
            (1, 15, 15, 3, 32, 7, 2, 0, 0),
            (2, 9, 7, 32, 32, 3, 1, 1, 1),
            (1, 9, 9, 16, 64, 3, 2, 0, 1),
            (3, 1, 1, 32, 32, 1, 1, 0, 1),
            (2, 5, 6, 8, 24, 3, 1, 1, 2),
        ];
        for (i, &(n, h, w, c_in, c_out, k, stride, padding, pad)) in cases.iter().enumerate() {
            let folded = FoldedConv {
                k,
                c_in,
                c_out,
                stride,
                padding,
                weight: values(k * k * c_in * c_out, 1 + i as u64),
                bias: values(c_out, 100 + i as u64),
            };
            let layer = PackedConv::new(&folded);
            let gx = Map::new(n, h, w, c_in, pad);
            let mut x = Vec::new();
            map_buffer(&mut x, gx);
            let interior = values(n * h * w * c_in, 200 + i as u64);
            for (r, v) in interior.chunks_exact(c_in).enumerate() {
                let (img, y, xx) = gx.pixel(r);
                let at = gx.at(img, y, xx);
                x[at..at + c_in].copy_from_slice(v);
            }
            let go = layer.out_map(gx, 1);
            let mut residual = Vec::new();
            map_buffer(&mut residual, go);
            let res_values = values(go.pixels() * c_out, 300 + i as u64);
            for (r, v) in res_values.chunks_exact(c_out).enumerate() {
                let (img, y, xx) = go.pixel(r);
                let at = go.at(img, y, xx);
                residual[at..at + c_out].copy_from_slice(v);
            }
            for simd in [false, simd::available() && c_out % PANEL == 0] {
                let mut out = Vec::new();
                map_buffer(&mut out, go);
                let epilogue = Epilogue::AddRelu(&residual);
                conv(simd, &layer, &x, gx, &mut out, go, epilogue);
                for r in 0..go.pixels() {
                    let (img, oy, ox) = go.pixel(r);
                    for o in 0..c_out {
                        let mut want = f64::from(folded.bias[o]);
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - padding as isize;
                                let ix = (ox * stride + kx) as isize - padding as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let at = gx.at(img, iy as usize, ix as usize);
                                for c in 0..c_in {
                                    let wv = folded.weight[((ky * k + kx) * c_in + c) * c_out + o];
                                    want += f64::from(x[at + c]) * f64::from(wv);
                                }
                            }
                        }
                        let at = go.at(img, oy, ox) + o;
                        let want = (want + f64::from(residual[at])).max(0.0);
                        let got = f64::from(out[at]);
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "case {i} simd {simd}: pixel {r} channel {o}: {got} vs {want}"
                        );
                    }
                }
                // The padding is left alone.
                for r in 0..go.n * (go.h + 2) * (go.w + 2) {
                    let (img, y, xx) = (
                        r / ((go.h + 2) * (go.w + 2)),
                        r / (go.w + 2) % (go.h + 2),
                        r % (go.w + 2),
                    );
                    if y == 0 || xx == 0 || y == go.h + 1 || xx == go.w + 1 {
                        let at = go.stored_at(img, y, xx);
                        assert!(out[at..at + c_out].iter().all(|&v| v == 0.0));
                    }
                }
            }
        }
    }
}
