//! Fake face models and black boxes. Each is deterministic and counts what it is asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use advface_core::{
    Descriptor, Differentiable, EmbedError, Embedder, Oracle, OracleError, PixelBatch, QueryStats,
    RgbImage,
};
use advface_oracle::LocalOracle;

use crate::images::sha256;

/// Descriptor length of the fake model (that of the real black box).
pub const FAKE_LEN: usize = 128;

/// A deterministic stand-in for a face model: components 0..3 are the per-channel means,
/// the others pixel sums weighted by a hash of (component, position), so that any pixel
/// change moves the descriptor.
pub struct FakeEmbedder {
    /// Its name.
    pub name: String,
    /// Descriptor length.
    pub len: usize,
    /// The only input size it takes, if any.
    pub fixed: Option<(u32, u32)>,
    /// Size of every batch the model was given, in order.
    pub batches: Mutex<Vec<usize>>,
    /// Images the model has described.
    pub images: AtomicU64,
}

impl Default for FakeEmbedder {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeEmbedder {
    /// `fake-embedder`, 128 components, any square size.
    pub fn new() -> Self {
        Self {
            name: "fake-embedder".into(),
            len: FAKE_LEN,
            fixed: None,
            batches: Mutex::new(Vec::new()),
            images: AtomicU64::new(0),
        }
    }

    /// Takes only `w` x `h` images.
    pub fn fixed(mut self, w: u32, h: u32) -> Self {
        self.fixed = Some((w, h));
        self
    }

    /// Gives `len` components.
    pub fn with_len(mut self, len: usize) -> Self {
        self.len = len;
        self
    }

    /// Is called `name`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
}

impl Embedder for FakeEmbedder {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn descriptor_len(&self) -> usize {
        self.len
    }

    fn fixed_input_size(&self) -> Option<(u32, u32)> {
        self.fixed
    }

    /// Like a model that resizes squares only: non-square images are refused.
    fn check_input(&self, width: u32, height: u32) -> Result<(), String> {
        if width != height {
            return Err("the model takes square images (use the protocol's 112x112 crop)".into());
        }
        Ok(())
    }

    fn embed(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError> {
        let [n, c, h, w] = batch.shape();
        self.batches.lock().unwrap().push(n);
        self.images.fetch_add(n as u64, Ordering::Relaxed);
        let item = c * h * w;
        let plane = (h * w) as f32;
        Ok(batch
            .as_slice()
            .chunks_exact(item.max(1))
            .take(n)
            .map(|px| {
                let mut d = vec![0f32; self.len];
                for (k, slot) in d.iter_mut().enumerate() {
                    if k < 3 {
                        *slot = px[k * h * w..(k + 1) * h * w].iter().sum::<f32>() / plane;
                    } else {
                        let mut acc = 0f32;
                        for (i, v) in px.iter().enumerate() {
                            let hsh = (i as u64 + 1)
                                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                                .wrapping_add(k as u64 * 0xBF58_476D_1CE4_E5B9);
                            let weight = ((hsh >> 40) % 2001) as f32 / 1000.0 - 1.0;
                            acc += v * weight;
                        }
                        *slot = acc / plane.sqrt();
                    }
                }
                Descriptor(d)
            })
            .collect())
    }
}

/// A [`FakeEmbedder`] wrapped as a local black box.
pub fn local() -> (Arc<FakeEmbedder>, Arc<LocalOracle>) {
    let fake = Arc::new(FakeEmbedder::new());
    let oracle = Arc::new(LocalOracle::new(fake.clone()));
    (fake, oracle)
}

/// A fixed random linear map of the pixels to `len` components: a differentiable model
/// with exact gradients (its vector-Jacobian product is the transposed map).
pub struct Linear {
    /// Weights, `len` rows of `inputs`.
    pub w: Vec<f32>,
    /// Outputs.
    pub len: usize,
    /// Pixel values per item (3 x height x width).
    pub inputs: usize,
    /// Gradient calls.
    pub calls: AtomicU64,
    /// `linear<seed>`.
    pub name: String,
}

impl Linear {
    /// `len` outputs of `inputs` pixel values, weights from `seed`.
    pub fn new(len: usize, inputs: usize, seed: u64) -> Self {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut w = Vec::with_capacity(len * inputs);
        for _ in 0..len * inputs {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            w.push(((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 * 0.02);
        }
        Self {
            w,
            len,
            inputs,
            calls: AtomicU64::new(0),
            name: format!("linear{seed}"),
        }
    }

    /// The descriptor of one item's `inputs` pixel values.
    pub fn forward(&self, item: &[f32]) -> Descriptor {
        Descriptor(
            (0..self.len)
                .map(|k| {
                    self.w[k * self.inputs..(k + 1) * self.inputs]
                        .iter()
                        .zip(item)
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect(),
        )
    }
}

impl Embedder for Linear {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn descriptor_len(&self) -> usize {
        self.len
    }
    fn embed(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError> {
        let per = self.inputs;
        Ok(batch
            .as_slice()
            .chunks(per)
            .map(|i| self.forward(i))
            .collect())
    }
}

impl Differentiable for Linear {
    fn descriptors_and_vjp(
        &self,
        batch: &PixelBatch,
        cotangent: &mut dyn FnMut(&[Descriptor]) -> Vec<f32>,
    ) -> Result<(Vec<Descriptor>, Vec<f32>), EmbedError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let d = self.embed(batch)?;
        let c = cotangent(&d);
        let mut g = vec![0f32; batch.as_slice().len()];
        for (i, gi) in g.chunks_mut(self.inputs).enumerate() {
            for k in 0..self.len {
                let ck = c[i * self.len + k];
                for (gv, wv) in gi
                    .iter_mut()
                    .zip(&self.w[k * self.inputs..(k + 1) * self.inputs])
                {
                    *gv += ck * wv;
                }
            }
        }
        Ok((d, g))
    }
}

/// A black box whose 4-component descriptor is a fixed function of the pixels (the three
/// channel means in [0, 1] and a hash of the bytes); it can be told to fail once it has
/// answered `fail_after` queries (the answers of that call are lost, as with an HTTP black
/// box that fails part-way through a call). Records the SHA-256 of every image it answers.
pub struct FakeOracle {
    /// Descriptor length (4).
    pub len: usize,
    /// Queries answered.
    pub queries: AtomicU64,
    /// Fail every image once this many queries are answered.
    pub fail_after: Option<u64>,
    /// SHA-256 of each image answered, in order.
    pub asked: Mutex<Vec<[u8; 32]>>,
}

impl FakeOracle {
    /// A fake black box that fails after `fail_after` queries (never with `None`).
    pub fn new(fail_after: Option<u64>) -> Self {
        Self {
            len: 4,
            queries: AtomicU64::new(0),
            fail_after,
            asked: Mutex::new(Vec::new()),
        }
    }

    /// The answer for `im`.
    pub fn descriptor(im: &RgbImage) -> Descriptor {
        let mut d = [0f64; 4];
        for px in im.as_bytes().chunks_exact(3) {
            for c in 0..3 {
                d[c] += f64::from(px[c]);
            }
        }
        let n = f64::from(im.width() * im.height()) * 255.0;
        let h = sha256(im.as_bytes());
        Descriptor(vec![
            (d[0] / n) as f32,
            (d[1] / n) as f32,
            (d[2] / n) as f32,
            f32::from(u16::from_le_bytes([h[0], h[1]])) / 65535.0,
        ])
    }
}

impl Oracle for FakeOracle {
    fn name(&self) -> String {
        "fake".into()
    }
    fn descriptor_len(&self) -> Option<usize> {
        Some(self.len)
    }
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        let mut out = Vec::new();
        for im in images {
            if let Some(k) = self.fail_after {
                if self.queries.load(Ordering::SeqCst) >= k {
                    return Err(OracleError::Transport {
                        url: "fake".into(),
                        reason: format!("told to fail after {k} queries"),
                    });
                }
            }
            self.queries.fetch_add(1, Ordering::SeqCst);
            self.asked.lock().unwrap().push(sha256(im.as_bytes()));
            out.push(Self::descriptor(im));
        }
        Ok(out)
    }
    fn stats(&self) -> QueryStats {
        QueryStats {
            queries: self.queries.load(Ordering::SeqCst),
            cached: 0,
        }
    }
}
