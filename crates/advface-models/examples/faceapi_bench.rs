//! Timing of the face-api.js network on burn's flex backend.
//!
//! `cargo run --release -p advface-models --example faceapi_bench [-- ITERS]`
//!
//! Prints ms per image for the forward pass at batch 1 and 32, and for forward + input
//! gradient at batch 1 and 32.

use std::time::Instant;

use advface_core::{Descriptor, Embedder, PixelBatch};
use advface_models::faceapi::{FaceApi, FaceApiNet};

fn batch(n: usize, seed: u32) -> PixelBatch {
    let mut s = seed;
    let data = (0..n * 3 * 112 * 112)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect();
    PixelBatch::new(n, 112, 112, data).unwrap()
}

fn time(label: &str, n: usize, iters: usize, mut f: impl FnMut()) {
    f(); // warm-up
    let mut best = f64::INFINITY;
    let mut total = 0.0;
    for _ in 0..iters {
        let t = Instant::now();
        f();
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        total += s;
    }
    let mean = total / iters as f64;
    println!(
        "{label:28} batch {n:3}: {:8.2} ms/image (mean), {:8.2} ms/image (best), {iters} runs",
        mean * 1e3 / n as f64,
        best * 1e3 / n as f64
    );
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let t = Instant::now();
    let model = FaceApi::embedded().expect("embedded weights");
    println!(
        "load (decode + sha256 + fold): {:.1} ms; {} multiply-adds per image",
        t.elapsed().as_secs_f64() * 1e3,
        FaceApiNet::multiply_adds_per_image()
    );
    for n in [1usize, 32] {
        let b = batch(n, 7);
        time("forward", n, iters, || {
            model.embed(&b).unwrap();
        });
    }
    for n in [1usize, 32] {
        let b = batch(n, 7);
        let targets: Vec<Descriptor> = model.embed(&batch(n, 9)).unwrap();
        time("forward + input gradient", n, iters.div_ceil(2), || {
            model.descriptors_and_input_grad(&b, &targets).unwrap();
        });
    }
}
