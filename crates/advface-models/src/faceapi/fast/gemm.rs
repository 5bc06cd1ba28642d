//! The fast path's convolution: the NHWC activation layout ([`Map`]), filters packed in
//! panels of 16 output channels ([`PackedConv`]), the tiling of each convolution over
//! rayon's pool ([`Plan`]), and the register-blocked kernel (AVX2 + FMA, or portable Rust).
//! See [`super`] for the scheme.

use std::ops::Range;

use rayon::prelude::*;

use crate::faceapi::weights::FoldedConv;

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

/// `v[..len]`, growing `v` if needed (contents unspecified).
fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// `v` sized for the map `m`, its padding zeroed (the interior is left to the caller).
pub(super) fn map_buffer(v: &mut Vec<f32>, m: Map) -> &mut [f32] {
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
pub(super) struct Map {
    pub(super) n: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c: usize,
    pub(super) pad: usize,
}

impl Map {
    pub(super) fn new(n: usize, h: usize, w: usize, c: usize, pad: usize) -> Self {
        Self { n, h, w, c, pad }
    }

    /// Values stored (padding included).
    pub(super) fn len(self) -> usize {
        self.n * (self.h + 2 * self.pad) * self.row_len()
    }

    /// Values per stored row.
    pub(super) fn row_len(self) -> usize {
        (self.w + 2 * self.pad) * self.c
    }

    /// Pixels (padding excluded) of all images.
    pub(super) fn pixels(self) -> usize {
        self.n * self.h * self.w
    }

    /// Offset of channel 0 of pixel `(y, x)` of image `img`, in stored coordinates
    /// (`(0, 0)` is the top-left padding value).
    pub(super) fn stored_at(self, img: usize, y: usize, x: usize) -> usize {
        (img * (self.h + 2 * self.pad) + y) * self.row_len() + x * self.c
    }

    /// Offset of channel 0 of pixel `(y, x)` of image `img`.
    pub(super) fn at(self, img: usize, y: usize, x: usize) -> usize {
        self.stored_at(img, y + self.pad, x + self.pad)
    }

    /// Image and position of pixel `r` in raster order over all images.
    pub(super) fn pixel(self, r: usize) -> (usize, usize, usize) {
        (r / (self.h * self.w), r / self.w % self.h, r % self.w)
    }

    /// After a `k` x `k` stride 2 `valid` pool, stored with padding `pad`.
    pub(super) fn pooled(self, k: usize, pad: usize) -> Self {
        Self {
            h: (self.h - k) / 2 + 1,
            w: (self.w - k) / 2 + 1,
            pad,
            ..self
        }
    }
}

/// Output channels per filter panel (the kernel's register block width).
pub(super) const PANEL: usize = 16;

/// Output pixels per register block of the kernel.
const ROWS_PER_BLOCK: usize = 6;

/// One convolution, its filters packed for the kernel.
#[derive(Debug, Clone)]
pub(super) struct PackedConv {
    k: usize,
    c_in: usize,
    pub(super) c_out: usize,
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
pub(super) struct PackedBlock {
    pub(super) conv1: PackedConv,
    pub(super) conv2: PackedConv,
    pub(super) down: bool,
}

impl PackedConv {
    pub(super) fn new(f: &FoldedConv) -> Self {
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
    pub(super) fn out_map(&self, g: Map, pad: usize) -> Map {
        let out = |len: usize| (len + 2 * self.padding - self.k) / self.stride + 1;
        Map::new(g.n, out(g.h), out(g.w), self.c_out, pad)
    }
}

/// What is applied to each product value `acc` of output channel `o` before it is stored.
#[derive(Clone, Copy)]
pub(super) enum Epilogue<'a> {
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
pub(super) fn conv(
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

/// Whether this CPU runs the AVX2 + FMA kernel.
pub(super) fn simd_available() -> bool {
    simd::available()
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
