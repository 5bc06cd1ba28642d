//! Timing of a student network (issue 4): training throughput of a student (by default the
//! ResNet-18 one: width 64, cut after `layer3`, 128-d output) at batch 32, 112 px, on burn's
//! `flex` CPU backend, and one eval-mode input-gradient step (forward + backward to the
//! pixels) at batch 1.
//!
//! Build with the whole workspace's features (building `-p advface-models` alone resolves
//! other dependency features and rebuilds burn), then run:
//! `cargo build --release --workspace --examples && target/release/examples/student_bench
//! [STEPS] [ARCH] [DOWNSAMPLE]` (default 5 timed training steps, after 1 warm-up; ARCH one
//! of `resnet18` (default), `resnet34`, `dlib`, `mobilefacenet`, at its default width
//! (`Arch::default_width`); DOWNSAMPLE the `input_downsample` factor, default 1;
//! `RAYON_NUM_THREADS` sets the threads).
//!
//! Prints images/s of training (median step), ms per input-gradient step (median of 10),
//! and the load average before and after: timings on a shared machine are only as good as
//! its idleness.

use std::time::Instant;

use advface_models::student::{Arch, StudentConfig, StudentTrainer, STUDENT_INPUT_SIZE};

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_else(|_| "?".into())
}

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let arch: Arch = std::env::args()
        .nth(2)
        .map(|s| serde_json::from_str(&format!("\"{s}\"")).expect("ARCH"))
        .unwrap_or(Arch::ResNet18);
    let input_downsample: usize = std::env::args()
        .nth(3)
        .map(|s| s.parse().expect("DOWNSAMPLE"))
        .unwrap_or(1);
    println!("load average before: {}", loadavg().trim());
    let config = StudentConfig {
        arch,
        width: arch.default_width(),
        input_downsample,
        ..StudentConfig::default()
    };
    let mut t = StudentTrainer::new(config.clone(), 1).expect("student");
    println!(
        "student: {config:?}; {} trainable parameters",
        config.trainable_params()
    );

    let n = 32;
    let crop = STUDENT_INPUT_SIZE * STUDENT_INPUT_SIZE * 3;
    let mut s = 12345u32;
    let mut next = || {
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        s
    };
    let crops: Vec<u8> = (0..n * crop).map(|_| (next() >> 24) as u8).collect();
    let targets: Vec<f32> = (0..n * 128)
        .map(|_| ((next() >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.3)
        .collect();

    t.step(&crops, &targets, 1e-3).expect("warm-up step");
    let mut times = Vec::new();
    let mut loss = 0.0;
    for _ in 0..steps {
        let t0 = Instant::now();
        loss = t.step(&crops, &targets, 1e-3).expect("step");
        times.push(t0.elapsed().as_secs_f64());
    }
    let (med, best) = median(times);
    println!(
        "train, batch {n}, 112 px crops (input_downsample {input_downsample}): median {:.3} s/step = {:.1} images/s (best {:.1} images/s) over {steps} steps; last MSE {loss:.5}",
        med,
        n as f64 / med,
        n as f64 / best
    );

    let pixels: Vec<f32> = crops[..crop]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect::<Vec<_>>();
    // NHWC bytes reinterpreted as NCHW values: any pixels in [0, 1] do for timing.
    let cot = &targets[..128];
    let shape = [1, 3, STUDENT_INPUT_SIZE, STUDENT_INPUT_SIZE];
    t.descriptors_and_grad(&pixels, shape, cot)
        .expect("warm-up grad");
    let times: Vec<f64> = (0..10)
        .map(|_| {
            let t0 = Instant::now();
            t.descriptors_and_grad(&pixels, shape, cot).expect("grad");
            t0.elapsed().as_secs_f64()
        })
        .collect();
    let (med, best) = median(times);
    println!(
        "input gradient, batch 1: median {:.1} ms (best {:.1} ms) over 10",
        med * 1e3,
        best * 1e3
    );
    println!("load average after: {}", loadavg().trim());
}
