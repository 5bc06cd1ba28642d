//! Quick timing of SSIM and SSIM + gradient on a 112 x 112 x 3 pair
//! (the table lives in `advface-bench ssim`).
use advface_core::RgbImage;
use advface_image::ssim::{SsimConfig, SsimReference};
use std::time::Instant;

fn main() {
    let mut s = 1u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u8
    };
    let a = RgbImage::new(112, 112, (0..112 * 112 * 3).map(|_| next()).collect()).unwrap();
    let b: Vec<f64> = a.as_bytes().iter().map(|&v| v as f64 + 1.0).collect();
    let r = SsimReference::new(&a, SsimConfig::default()).unwrap();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(r.ssim_f64(&b).unwrap());
    }
    println!("ssim: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(r.ssim_grad_f64(&b).unwrap());
    }
    println!(
        "ssim+grad: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
