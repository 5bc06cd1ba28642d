//! `advface-bench`: the speed tables of BENCHMARKS.md, beside peers that run under other
//! runtimes (face-api.js under node, dlib and PyTorch under Python). A development tool:
//! it is not published, and the shipped `advface` binary spawns no other program.
//!
//! ```sh
//! cargo run --release -p advface-bench -- ssim
//! cargo run --release -p advface-bench -- blackbox --batches 1,32
//! cargo run --release -p advface-bench -- student --python venv-torch/bin/python
//! ```
//!
//! Numbers are medians over repeated runs after a warm-up; the machine and load are printed
//! with them.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use advface_core::{Embedder, PixelBatch, RgbImage};
use advface_image::ssim::{SsimConfig, SsimReference};
use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "advface-bench",
    version,
    about = "Speed tables: SSIM, black-box throughput, student training (with peers where installed)"
)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// SSIM, and SSIM + gradient, of a 112 x 112 x 3 pair.
    Ssim {
        /// Timed repetitions.
        #[arg(long, default_value_t = 2000)]
        iters: usize,
    },
    /// Black-box descriptor throughput at several batch sizes, beside face-api.js under
    /// TF.js wasm and dlib's C++ when they are installed (tools/faceapi, tools/dlib_bench.py).
    Blackbox {
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,32")]
        batches: Vec<usize>,
        /// Timed runs per batch size (the median is reported).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Skip the peers (face-api.js under node, dlib under Python).
        #[arg(long)]
        no_peers: bool,
        /// Python interpreter that has dlib and face_recognition_models (for the dlib row).
        #[arg(long, default_value = "python3")]
        python: String,
    },
    /// Training throughput of the student (Adam + MSE step) and one input-gradient step,
    /// beside the same network in PyTorch (tools/torch_student_bench.py) when it imports.
    Student {
        /// Training batch size.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Input side in pixels.
        #[arg(long, default_value_t = 112)]
        size: usize,
        /// Channels of the stem and layer1 (64: torchvision's ResNet-18).
        #[arg(long, default_value_t = 64)]
        width: usize,
        /// Average-pool the input by this factor first (the shipped student uses 2).
        #[arg(long, default_value_t = 1)]
        downsample: usize,
        /// Timed training steps (the median is reported), after 2 warm-up steps.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Timed input-gradient steps (the median is reported), after 2 warm-up steps.
        #[arg(long, default_value_t = 10)]
        grad_reps: usize,
        /// Python interpreter that has torch (`pip install torch`).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Skip PyTorch.
        #[arg(long)]
        no_peers: bool,
        /// Threads for both sides (default: rayon's, i.e. RAYON_NUM_THREADS or all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Warm-up steps before timing, on both sides (the first steps allocate).
const STUDENT_WARMUP: usize = 2;

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    match args.what {
        What::Ssim { iters } => bench_ssim(iters),
        What::Blackbox {
            batches,
            runs,
            no_peers,
            python,
        } => bench_blackbox(&batches, runs, !no_peers, &python),
        What::Student {
            batch,
            size,
            width,
            downsample,
            steps,
            grad_reps,
            python,
            no_peers,
            threads,
        } => {
            let s = StudentBench {
                batch,
                size,
                width,
                downsample,
                steps: steps.max(1),
                grad_reps: grad_reps.max(1),
            };
            match threads {
                Some(t) => rayon::ThreadPoolBuilder::new()
                    .num_threads(t.max(1))
                    .build()
                    .context("building the thread pool")?
                    .install(|| bench_student(&s, !no_peers, &python)),
                None => bench_student(&s, !no_peers, &python),
            }
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} cores ({cpu}); load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pseudo_random_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut s = seed;
    let data = (0..w * h * 3)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect();
    RgbImage::new(w, h, data).expect("sizes match")
}

fn bench_ssim(iters: usize) -> Result<ExitCode> {
    let a = pseudo_random_image(112, 112, 1);
    let b: Vec<f64> = a
        .as_bytes()
        .iter()
        .enumerate()
        .map(|(i, &v)| (f64::from(v) + if i % 3 == 0 { 2.0 } else { -1.0 }).clamp(0.0, 255.0))
        .collect();
    let r = SsimReference::new(&a, SsimConfig::default())?;
    let time = |f: &dyn Fn()| -> f64 {
        for _ in 0..iters / 10 + 1 {
            f();
        }
        let mut samples = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..iters / 5 + 1 {
                f();
            }
            samples.push(t.elapsed().as_secs_f64() * 1e6 / (iters / 5 + 1) as f64);
        }
        median(samples)
    };
    let prep = time(&|| {
        std::hint::black_box(SsimReference::new(&a, SsimConfig::default()).unwrap());
    });
    let fwd = time(&|| {
        std::hint::black_box(r.ssim_f64(&b).unwrap());
    });
    let grad_alloc = time(&|| {
        std::hint::black_box(r.ssim_grad_f64(&b).unwrap());
    });
    let out = std::cell::RefCell::new(vec![0f64; b.len()]);
    let grad = time(&|| {
        std::hint::black_box(r.ssim_grad_into(&b, &mut out.borrow_mut()).unwrap());
    });
    println!("SSIM of a 112 x 112 x 3 pair (f64, scikit-image exact), one thread");
    println!("{}", machine());
    println!();
    println!("| operation | us per call |");
    println!("|---|---:|");
    println!("| prepare the original (once per source image) | {prep:.1} |");
    println!("| SSIM of a candidate | {fwd:.1} |");
    println!("| SSIM + gradient of a candidate (`ssim_grad_into`, reused buffer) | {grad:.1} |");
    println!("| SSIM + gradient, returning a new Vec (`ssim_grad_f64`) | {grad_alloc:.1} |");
    Ok(ExitCode::SUCCESS)
}

struct Row {
    system: String,
    batch: usize,
    ms_per_image: f64,
    note: String,
}

fn bench_blackbox(batches: &[usize], runs: usize, peers: bool, python: &str) -> Result<ExitCode> {
    let model = advface_models::FaceApi::embedded().context("loading the embedded model")?;
    let images: Vec<RgbImage> = (0..batches.iter().copied().max().unwrap_or(1))
        .map(|i| pseudo_random_image(112, 112, i as u64 + 7))
        .collect();
    let mut rows = Vec::new();
    let threads = format!("{} threads", rayon::current_num_threads());
    let simd = if model.fast().uses_simd() {
        "AVX2+FMA kernel"
    } else {
        "portable kernel"
    };
    for &b in batches {
        let batch = PixelBatch::from_images(&images[..b])?;
        let targets = vec![advface_core::Descriptor(vec![0.0; 128]); b];
        type Timed<'a> = (&'a str, String, Box<dyn Fn() -> Result<()> + 'a>);
        let paths: [Timed; 3] = [
            (
                "advface fast path (Embedder::embed, what the oracle runs)",
                format!("{threads}, {simd}"),
                Box::new(|| {
                    std::hint::black_box(model.embed(&batch)?);
                    Ok(())
                }),
            ),
            (
                "advface burn flex (reference, differentiable)",
                threads.clone(),
                Box::new(|| {
                    std::hint::black_box(model.embed_reference(&batch)?);
                    Ok(())
                }),
            ),
            (
                "advface burn flex: forward + input gradient",
                format!("{threads}; white-box reference attacks"),
                Box::new(|| {
                    std::hint::black_box(model.descriptors_and_input_grad(&batch, &targets)?);
                    Ok(())
                }),
            ),
        ];
        for (system, note, f) in &paths {
            f()?; // warm-up
            let mut samples = Vec::new();
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                f()?;
                samples.push(t.elapsed().as_secs_f64() * 1e3 / b as f64);
            }
            rows.push(Row {
                system: system.to_string(),
                batch: b,
                ms_per_image: median(samples),
                note: note.clone(),
            });
        }
    }
    let mut notes = Vec::new();
    if peers {
        match faceapi_rows(batches) {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => notes.push(format!("face-api.js: not measured ({e:#})")),
        }
        match dlib_rows(batches, python) {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => notes.push(format!("dlib: not measured ({e:#})")),
        }
    }
    let macs = advface_models::FaceApiNet::multiply_adds_per_image();
    println!("Black-box descriptor throughput, 112 x 112 input (resized to 150 x 150 inside)");
    println!("{}", machine());
    println!();
    println!("| system | batch | ms / image | images / s | note |");
    println!("|---|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {:.1} | {} |",
            r.system,
            r.batch,
            r.ms_per_image,
            1000.0 / r.ms_per_image,
            r.note
        );
    }
    println!();
    let best = rows
        .iter()
        .filter(|r| r.system.starts_with("advface fast"))
        .map(|r| r.ms_per_image)
        .fold(f64::INFINITY, f64::min);
    println!(
        "network: {:.3} G multiply-adds per image; advface fast path best {:.2} ms/image = {:.1} GFLOP/s",
        macs as f64 / 1e9,
        best,
        2.0 * macs as f64 / (best * 1e-3) / 1e9
    );
    if let Some(peak) = peak_gflops() {
        println!(
            "machine peak (f32, {} cores x {:.0} MHz x 32 FLOP/cycle: 2 AVX2 FMA units x 8 lanes x 2): \
             {peak:.0} GFLOP/s; the fast path reaches {:.0}% of it",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            mhz().unwrap_or(0.0),
            100.0 * 2.0 * macs as f64 / (best * 1e-3) / 1e9 / peak
        );
    }
    for n in notes {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}

fn mhz() -> Option<f64> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn peak_gflops() -> Option<f64> {
    let cores = std::thread::available_parallelism().ok()?.get() as f64;
    Some(cores * mhz()? * 1e6 * 32.0 / 1e9)
}

fn repo_root() -> PathBuf {
    // The binary may be run from anywhere; the peers' scripts live in the source tree.
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

fn faceapi_rows(batches: &[usize]) -> Result<Vec<Row>> {
    let root = repo_root();
    let script = root.join("tools/faceapi/bench.mjs");
    if !root.join("tools/faceapi/node_modules").is_dir() {
        anyhow::bail!("run `npm ci --prefix tools/faceapi` first");
    }
    let list = batches
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new("node")
        .arg(&script)
        .args([
            "--backend",
            "wasm",
            "--threads",
            "1",
            "--batches",
            &list,
            "--json",
        ])
        .output()
        .context("running node")?;
    if !out.status.success() {
        anyhow::bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .or_else(|_| {
            // The JSON may follow log lines: take the last line that parses.
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str(l).ok())
                .ok_or(())
        })
        .map_err(|_| anyhow::anyhow!("no JSON in face-api.js bench output"))?;
    let results = if v.is_array() {
        v
    } else {
        serde_json::json!([v])
    };
    let mut rows = Vec::new();
    for res in results.as_array().into_iter().flatten() {
        let backend = res["backend"].as_str().unwrap_or("?").to_string();
        for r in res["rows"].as_array().into_iter().flatten() {
            rows.push(Row {
                system: format!("face-api.js (TF.js {backend})"),
                batch: r["batch"].as_u64().unwrap_or(0) as usize,
                ms_per_image: r["ms_per_image"].as_f64().unwrap_or(f64::NAN),
                note: "1 thread".into(),
            });
        }
    }
    Ok(rows)
}

fn dlib_rows(batches: &[usize], python: &str) -> Result<Vec<Row>> {
    let root = repo_root();
    let script = root.join("tools/dlib_bench.py");
    let list = batches
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(python)
        .arg(&script)
        .args(["--batches", &list, "--json"])
        .output()
        .with_context(|| format!("running {python}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::bail!("{}", err.lines().last().unwrap_or("failed"));
    }
    let v: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| anyhow::anyhow!("no JSON in dlib bench output"))?;
    let mut rows = Vec::new();
    for r in v["rows"].as_array().into_iter().flatten() {
        rows.push(Row {
            system: "dlib C++ (Python binding)".into(),
            batch: r["batch"].as_u64().unwrap_or(0) as usize,
            ms_per_image: r["ms_per_image"].as_f64().unwrap_or(f64::NAN),
            note: r["note"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(rows)
}

/// Settings of `advface-bench student`, shared by both sides.
struct StudentBench {
    batch: usize,
    size: usize,
    width: usize,
    downsample: usize,
    steps: usize,
    grad_reps: usize,
}

/// What tools/torch_student_bench.py prints (its last line of stdout).
#[derive(Debug, serde::Deserialize)]
struct TorchStudent {
    torch_version: String,
    threads: usize,
    #[serde(default)]
    mkldnn: bool,
    batch: usize,
    size: usize,
    width: usize,
    downsample: usize,
    params_trainable: usize,
    params_with_running_stats: usize,
    train_step_s: f64,
    train_images_per_s: f64,
    grad_step_ms: f64,
}

/// Why there is no PyTorch column.
#[derive(Debug)]
enum TorchMissing {
    /// The interpreter runs but `import torch` fails.
    NotInstalled(String),
    /// Anything else (no interpreter, a crash, no JSON).
    Failed(String),
}

/// Reads the script's stdout: the last line that is a JSON object. `{"error": "torch-missing"}`
/// means torch is not importable; any other `error`, or missing fields, is a failure.
fn parse_torch_output(stdout: &str) -> Result<TorchStudent, TorchMissing> {
    let v: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l.trim())
                .ok()
                .filter(|v| v.is_object())
        })
        .ok_or_else(|| TorchMissing::Failed("no JSON object in its output".into()))?;
    if let Some(e) = v.get("error") {
        let detail = v["detail"].as_str().unwrap_or("").to_string();
        return Err(if e == "torch-missing" {
            TorchMissing::NotInstalled(detail)
        } else {
            TorchMissing::Failed(format!("{e} {detail}"))
        });
    }
    let t: TorchStudent = serde_json::from_value(v)
        .map_err(|e| TorchMissing::Failed(format!("unexpected JSON: {e}")))?;
    if !(t.train_step_s > 0.0 && t.grad_step_ms > 0.0 && t.train_images_per_s > 0.0) {
        return Err(TorchMissing::Failed(format!(
            "non-positive timings in its JSON: {t:?}"
        )));
    }
    Ok(t)
}

fn torch_student(
    s: &StudentBench,
    threads: usize,
    python: &str,
) -> Result<TorchStudent, TorchMissing> {
    let script = repo_root().join("tools/torch_student_bench.py");
    let out = Command::new(python)
        .arg(&script)
        .args(["--batch", &s.batch.to_string()])
        .args(["--size", &s.size.to_string()])
        .args(["--width", &s.width.to_string()])
        .args(["--downsample", &s.downsample.to_string()])
        .args(["--steps", &s.steps.to_string()])
        .args(["--grad-reps", &s.grad_reps.to_string()])
        .args(["--warmup", &STUDENT_WARMUP.to_string()])
        .args(["--threads", &threads.to_string()])
        .output()
        .map_err(|e| TorchMissing::Failed(format!("running {python}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match parse_torch_output(&stdout) {
        Ok(t) if out.status.success() => Ok(t),
        Err(TorchMissing::Failed(why)) if !out.status.success() => {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(TorchMissing::Failed(format!(
                "{why}; exit {}: {}",
                out.status,
                err.lines().last().unwrap_or("")
            )))
        }
        Ok(_) => Err(TorchMissing::Failed(format!("exit {}", out.status))),
        Err(e) => Err(e),
    }
}

fn bench_student(s: &StudentBench, peers: bool, python: &str) -> Result<ExitCode> {
    use advface_models::student::{StudentConfig, StudentTrainer};
    let config = StudentConfig {
        width: s.width,
        input_downsample: s.downsample,
        ..StudentConfig::default()
    };
    let mut trainer = StudentTrainer::new(config.clone(), 1)?;
    let threads = rayon::current_num_threads();
    let (n, side, d) = (s.batch, s.size, config.descriptor_len);
    let mut state = 12345u32;
    let mut next = || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32
    };
    let pixels: Vec<f32> = (0..n * 3 * side * side).map(|_| next()).collect();
    let targets: Vec<f32> = (0..n * d).map(|_| (next() - 0.5) * 0.3).collect();
    let shape = [n, 3, side, side];
    let load_before = loadavg();

    let mut step = || trainer.step_pixels(&pixels, shape, &targets, 1e-3);
    for _ in 0..STUDENT_WARMUP {
        step()?;
    }
    let mut samples = Vec::new();
    for _ in 0..s.steps {
        let t = Instant::now();
        step()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    let train_s = median(samples);

    let one = &pixels[..3 * side * side];
    let target = &targets[..d];
    let grad = || {
        trainer.descriptors_and_vjp(one, [1, 3, side, side], |desc| {
            desc.iter()
                .zip(target)
                .map(|(a, b)| 2.0 * (a - b) / d as f32)
                .collect()
        })
    };
    for _ in 0..STUDENT_WARMUP {
        std::hint::black_box(grad()?);
    }
    let mut samples = Vec::new();
    for _ in 0..s.grad_reps {
        let t = Instant::now();
        std::hint::black_box(grad()?);
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let grad_ms = median(samples);
    let load_burn = loadavg();

    let torch = if peers {
        Some(torch_student(s, threads, python))
    } else {
        None
    };
    let torch_ok = match &torch {
        Some(Ok(t)) => Some(t),
        _ => None,
    };

    println!(
        "Student training: ResNet-18 cut after layer3, width {}, {} x {} input{}, 128-d output; \
         Adam (lr 1e-3, eps 1e-8) on the MSE",
        s.width,
        side,
        side,
        if s.downsample > 1 {
            format!(" average-pooled by {} first", s.downsample)
        } else {
            String::new()
        }
    );
    println!("{}", machine());
    println!(
        "threads: advface {threads} (rayon){}; medians of {} training steps and {} gradient steps after {} warm-up",
        torch_ok
            .map(|t| format!(", PyTorch {} (torch.set_num_threads)", t.threads))
            .unwrap_or_default(),
        s.steps,
        s.grad_reps,
        STUDENT_WARMUP
    );
    if let Some(t) = torch_ok {
        println!(
            "PyTorch {} (mkldnn {}); the torch script ran batch {}, {} px, width {}, downsample {}",
            t.torch_version, t.mkldnn, t.batch, t.size, t.width, t.downsample
        );
    }
    println!("load average: {load_before} before, {load_burn} after the burn side");
    let burn_params = config.trainable_params();
    let burn_all = trainer.num_params();
    match torch_ok {
        Some(t) => println!(
            "parameters: burn {burn_params} trainable, {burn_all} with batch norm running stats; \
             PyTorch {} trainable, {} with running stats ({})",
            t.params_trainable,
            t.params_with_running_stats,
            if t.params_trainable == burn_params && t.params_with_running_stats == burn_all {
                "same network size"
            } else {
                "MISMATCH: not the same network"
            }
        ),
        None => println!(
            "parameters: burn {burn_params} trainable, {burn_all} with batch norm running stats"
        ),
    }
    println!();
    let ratio = |burn: f64, torch: f64| format!("{:.2}x", burn / torch);
    match torch_ok {
        Some(t) => {
            println!(
                "| operation | advface burn flex | PyTorch | ratio (burn time / PyTorch time) |"
            );
            println!("|---|---:|---:|---:|");
            println!(
                "| training step, batch {n} (Adam + MSE) | {:.2} s = {:.1} images/s | {:.2} s = {:.1} images/s | {} |",
                train_s,
                n as f64 / train_s,
                t.train_step_s,
                t.train_images_per_s,
                ratio(train_s, t.train_step_s)
            );
            println!(
                "| input gradient, batch 1 (descriptor + d MSE / d pixels) | {grad_ms:.1} ms | {:.1} ms | {} |",
                t.grad_step_ms,
                ratio(grad_ms, t.grad_step_ms)
            );
        }
        None => {
            println!("| operation | advface burn flex |");
            println!("|---|---:|");
            println!(
                "| training step, batch {n} (Adam + MSE) | {:.2} s = {:.1} images/s |",
                train_s,
                n as f64 / train_s
            );
            println!(
                "| input gradient, batch 1 (descriptor + d MSE / d pixels) | {grad_ms:.1} ms |"
            );
        }
    }
    match torch {
        Some(Err(TorchMissing::NotInstalled(detail))) => println!(
            "\nPyTorch: not measured, `import torch` fails under {python} ({detail}); install it \
             with `python3 -m venv venv-torch && venv-torch/bin/pip install torch numpy` and \
             pass `--python venv-torch/bin/python`"
        ),
        Some(Err(TorchMissing::Failed(why))) => {
            println!("\nPyTorch: not measured ({why})")
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"torch_version": "2.5.1+cpu", "python": "3.11.9", "threads": 2, "mkldnn": true, "batch": 32, "size": 112, "width": 64, "downsample": 1, "params_trainable": 2815680, "params_with_running_stats": 2823360, "train_step_s": 1.5, "train_images_per_s": 21.333, "train_samples_s": [1.5, 1.6], "last_loss": 0.01, "grad_step_ms": 30.5, "grad_samples_ms": [30.5]}"#;

    #[test]
    fn parses_the_last_json_line_after_log_lines() {
        let out = format!("some warning from torch\n{{\"not\": \"this\"}}\n{GOOD}\n");
        let t = parse_torch_output(&out).expect("parses");
        assert_eq!(t.torch_version, "2.5.1+cpu");
        assert_eq!(t.threads, 2);
        assert_eq!((t.batch, t.size, t.width, t.downsample), (32, 112, 64, 1));
        assert_eq!(t.params_trainable, 2_815_680);
        assert_eq!(t.params_with_running_stats, 2_823_360);
        assert!((t.train_step_s - 1.5).abs() < 1e-12);
        assert!((t.grad_step_ms - 30.5).abs() < 1e-12);
        assert!(t.mkldnn);
    }

    #[test]
    fn torch_missing_is_told_apart_from_failures() {
        let out = r#"{"error": "torch-missing", "detail": "No module named 'torch'"}"#;
        match parse_torch_output(out) {
            Err(TorchMissing::NotInstalled(d)) => assert!(d.contains("No module named")),
            other => panic!("expected NotInstalled, got {other:?}"),
        }
        assert!(matches!(
            parse_torch_output(r#"{"error": "boom"}"#),
            Err(TorchMissing::Failed(_))
        ));
        assert!(matches!(
            parse_torch_output("Traceback (most recent call last):\n  oops\n"),
            Err(TorchMissing::Failed(_))
        ));
        // A field missing is an error, not a zero.
        let partial = GOOD.replace(r#""grad_step_ms": 30.5, "#, "");
        assert!(matches!(
            parse_torch_output(&partial),
            Err(TorchMissing::Failed(_))
        ));
        let zero = GOOD.replace(r#""train_step_s": 1.5"#, r#""train_step_s": 0.0"#);
        assert!(matches!(
            parse_torch_output(&zero),
            Err(TorchMissing::Failed(_))
        ));
    }

    #[test]
    fn burn_parameter_count_matches_torchvision_resnet18_to_layer3() {
        // torchvision resnet18 has 11,689,512 parameters; up to layer3 (conv1, bn1,
        // layer1..3) 2,782,784 of them; plus the 256 -> 128 linear (32,896).
        let c = advface_models::student::StudentConfig::default();
        assert_eq!(c.trainable_params(), 2_782_784 + 256 * 128 + 128);
    }
}
