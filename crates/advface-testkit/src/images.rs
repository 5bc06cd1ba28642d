//! Deterministic test images and exact comparison of descriptors.

use advface_core::{Descriptor, RgbImage};
use sha2::{Digest, Sha256};

/// A pseudo-random (noise) `size` x `size` image, different for each seed (xorshift).
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

/// `n` different 112 x 112 [`face`]s (seeds 1..=n).
pub fn faces(n: usize) -> Vec<RgbImage> {
    (0..n as u64).map(|i| face(i + 1, 112)).collect()
}

/// A smooth, textured `size` x `size` image with mild noise from `seed` (where SSIM
/// behaves as on a photo, unlike on pure noise).
pub fn textured_face(size: u32, seed: u64) -> RgbImage {
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

/// Bits of descriptors, for exact comparison.
pub fn bits(ds: &[Descriptor]) -> Vec<Vec<u32>> {
    ds.iter()
        .map(|d| d.as_slice().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
