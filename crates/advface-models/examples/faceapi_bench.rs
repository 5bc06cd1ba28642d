//! Timing of the face-api.js network: the fast forward path (`FaceApi::embed`, the implicit
//! GEMM of `advface_models::faceapi::fast`), the burn network (`FaceApi::embed_reference`),
//! and burn's forward + input gradient.
//!
//! Build with the whole workspace's features (building `-p advface-models` alone resolves
//! other dependency features and rebuilds burn), then run:
//! `cargo build --release --workspace --examples && target/release/examples/faceapi_bench
//! [RUNS]` (default 15 runs per number; `RAYON_NUM_THREADS` sets the threads).
//!
//! Prints the median (and fastest) ms per image over the runs, after one warm-up run, at
//! batch 1 and 32; the GFLOP/s the median is (2 FLOP per multiply-add of
//! [`FaceApiNet::multiply_adds_per_image`]); and its share of the machine's f32 peak when
//! the clock can be read from `/proc/cpuinfo` (x86 with AVX2 + FMA assumed: per core and
//! cycle, 2 FMA units x 8 lanes x 2 FLOP; `cpu MHz` is the nominal clock, boost makes the
//! real peak higher). The load average before and after is printed too: timings on a
//! shared machine are only as good as its idleness.

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

/// Median and fastest seconds per image of `f` on `n` images over `runs` runs, after one
/// warm-up.
fn per_image(n: usize, runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() / n as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

/// Peak f32 GFLOP/s of this machine, assuming AVX2 + FMA (32 FLOP per core and cycle),
/// from the clock in `/proc/cpuinfo`; with the clock and the core count.
fn peak_gflops() -> Option<(f64, f64, usize)> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let cores = rayon::current_num_threads();
    Some((cores as f64 * 32.0 * mhz / 1e3, mhz, cores))
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
        .max(1);
    let t = Instant::now();
    let model = FaceApi::embedded().expect("embedded weights");
    let macs = FaceApiNet::multiply_adds_per_image();
    println!(
        "load (decode + sha256 + fold + burn tensors): {:.1} ms; {macs} multiply-adds per image",
        t.elapsed().as_secs_f64() * 1e3,
    );
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    };
    println!(
        "load average (1, 5, 15 min): {}; {} rayon threads; fast path SIMD kernel: {}",
        load(),
        rayon::current_num_threads(),
        model.fast().uses_simd()
    );
    let peak = peak_gflops();
    if let Some((peak, mhz, cores)) = peak {
        println!(
            "peak: {cores} threads x 32 FLOP/cycle x {mhz:.0} MHz = {peak:.1} GFLOP/s (f32, AVX2 FMA)"
        );
    }
    let report = |label: &str, n: usize, (s, best): (f64, f64), flops: bool| {
        let mut line = format!(
            "{label:29} batch {n:2}: {:6.2} ms/image (best {:6.2})",
            s * 1e3,
            best * 1e3
        );
        if flops {
            let gflops = 2.0 * macs as f64 / s / 1e9;
            line += &format!(", {gflops:6.1} GFLOP/s");
            if let Some((peak, _, _)) = peak {
                line += &format!(" ({:4.1}% of peak)", 100.0 * gflops / peak);
            }
        }
        println!("{line}");
    };
    for n in [1usize, 32] {
        let b = batch(n, 7);
        let s = per_image(n, runs, || {
            model.embed(&b).unwrap();
        });
        report("fast forward (embed)", n, s, true);
        let s = per_image(n, runs, || {
            model.embed_reference(&b).unwrap();
        });
        report("burn forward", n, s, true);
    }
    for n in [1usize, 32] {
        let b = batch(n, 7);
        let targets: Vec<Descriptor> = model.embed(&batch(n, 9)).unwrap();
        let s = per_image(n, runs.div_ceil(2), || {
            model.descriptors_and_input_grad(&b, &targets).unwrap();
        });
        report("burn forward + input gradient", n, s, false);
    }
    println!("load average (1, 5, 15 min): {}", load());
}
