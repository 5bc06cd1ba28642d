//! Test doubles shared by the integration tests: a fake face model and test images.
//! Fakes live here only, never in the library.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use advface_core::{Descriptor, EmbedError, Embedder, PixelBatch, RgbImage};
use advface_oracle::LocalOracle;

/// Descriptor length of the fake model (that of the real black box).
pub const LEN: usize = 128;

/// A deterministic stand-in for a face model: components 0..3 are the per-channel means,
/// the others pixel sums weighted by a hash of (component, position), so that any pixel
/// change moves the descriptor.
pub struct FakeEmbedder {
    pub name: String,
    pub len: usize,
    pub fixed: Option<(u32, u32)>,
    /// Size of every batch the model was given, in order.
    pub batches: Mutex<Vec<usize>>,
    /// Images the model has described.
    pub images: AtomicU64,
}

impl FakeEmbedder {
    pub fn new() -> Self {
        Self {
            name: "fake-embedder".into(),
            len: LEN,
            fixed: None,
            batches: Mutex::new(Vec::new()),
            images: AtomicU64::new(0),
        }
    }

    pub fn fixed(mut self, w: u32, h: u32) -> Self {
        self.fixed = Some((w, h));
        self
    }

    pub fn with_len(mut self, len: usize) -> Self {
        self.len = len;
        self
    }

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

/// A fake model wrapped as a local black box.
pub fn local() -> (Arc<FakeEmbedder>, Arc<LocalOracle>) {
    let fake = Arc::new(FakeEmbedder::new());
    let oracle = Arc::new(LocalOracle::new(fake.clone()));
    (fake, oracle)
}

/// A pseudo-random `size` x `size` image, different for each seed.
pub fn face(seed: u64, size: u32) -> RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..size as usize * size as usize * 3)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 56) as u8
        })
        .collect();
    RgbImage::new(size, size, data).unwrap()
}

/// `n` different 112 x 112 faces.
pub fn faces(n: usize) -> Vec<RgbImage> {
    (0..n as u64).map(|i| face(i + 1, 112)).collect()
}

/// Bits of descriptors, for exact comparison.
pub fn bits(ds: &[Descriptor]) -> Vec<Vec<u32>> {
    ds.iter()
        .map(|d| d.as_slice().iter().map(|v| v.to_bits()).collect())
        .collect()
}
