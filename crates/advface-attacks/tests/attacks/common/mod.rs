//! A fake differentiable model for the attack tests: a fixed random linear map of the
//! pixels to 128 components (exact gradients), served as a black box by `LocalOracle`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use advface_core::{Descriptor, Differentiable, EmbedError, Embedder, PixelBatch, RgbImage};

pub struct Linear {
    pub w: Vec<f32>,
    pub len: usize,
    pub inputs: usize,
    pub calls: AtomicU64,
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

    fn forward(&self, item: &[f32]) -> Descriptor {
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

/// A textured test face of `size x size` pixels from `seed`.
pub fn face(size: u32, seed: u64) -> RgbImage {
    let mut s = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
    let mut data = Vec::new();
    for y in 0..size {
        for x in 0..size {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let n = (s % 60) as f64 - 30.0;
            let base = 110.0 + 50.0 * ((x as f64 / 9.0).sin() * (y as f64 / 13.0).cos());
            for c in 0..3 {
                data.push((base + n + 15.0 * c as f64).clamp(0.0, 255.0) as u8);
            }
        }
    }
    RgbImage::new(size, size, data).unwrap()
}

pub fn arc(l: Linear) -> Arc<Linear> {
    Arc::new(l)
}

/// A one-model ensemble of `model`, weight 1.
pub fn ensemble(model: &Arc<Linear>) -> advface_attacks::Ensemble {
    let m: Arc<dyn Differentiable> = model.clone();
    advface_attacks::Ensemble::new(vec![advface_attacks::Member {
        model: m,
        weight: 1.0,
    }])
    .unwrap()
}
