//! `advface bench`: speed tables (BENCHMARKS.md). Numbers are medians over repeated runs
//! after a warm-up; the machine and load are printed with them.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use advface_core::{Embedder, PixelBatch, RgbImage};
use advface_image::ssim::{SsimConfig, SsimReference};
use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand)]
pub enum What {
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
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.what {
        What::Ssim { iters } => bench_ssim(iters),
        What::Blackbox {
            batches,
            runs,
            no_peers,
            python,
        } => bench_blackbox(&batches, runs, !no_peers, &python),
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
