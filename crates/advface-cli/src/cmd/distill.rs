//! `advface distill`: student distillation. `collect` asks the black box for the
//! descriptors of the distillation pool (crops and augmented copies) and keeps them in a
//! resumable store; `train` fits a student to the store, in a resumable run folder.

use std::path::PathBuf;
use std::process::ExitCode;

use advface_core::Oracle;
use advface_distill::{
    append_run_log, collect, collect_store_spec, eval_images, evaluate, train, AugmentConfig,
    CollectConfig, CollectEvent, CollectRun, CollectRunRequest, DescriptorStore, InitWeights,
    TrainConfig, TrainEvent, DEFAULT_BATCH,
};
use advface_models::Arch;
use advface_oracle::{HttpConfig, HttpOracle};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::blackbox::{open_oracle, OracleArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Ask the black box for the descriptor of every distillation-pool crop (and augmented
    /// copies) and keep them in a store; rerun the same command to resume.
    Collect(CollectArgs),
    /// Train a student to reproduce the stored descriptors (MSE, Adam, multi-step LR),
    /// checkpointing to a run folder; rerun the same command to resume.
    Train(TrainArgs),
    /// How well a student reproduces the black box on crops no student ever sees (the
    /// attack identities): R^2, MSE per element, mean cosine.
    Eval(EvalArgs),
}

/// `distill eval`: a student against the black box on the attack identities' crops.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The student: `student` (shipped), a run folder or a .weights file.
    #[arg(long, default_value = "student")]
    pub student: String,
    /// The prepared crops folder (`advface prepare --out DIR` wrote DIR/crops).
    #[arg(long, value_name = "DIR")]
    pub crops: PathBuf,
    /// The distillation list: crops listed there are left out, so what is measured is the
    /// attack identities (never used for training).
    #[arg(long, value_name = "FILE")]
    pub exclude: PathBuf,
    /// Evaluate at most N crops (the first by path).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also write the metrics as JSON here.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub oracle: OracleArgs,
}

/// Student architecture.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ArchArg {
    /// ResNet-18 cut after layer3.
    Resnet18,
    /// ResNet-34 cut after layer3.
    Resnet34,
    /// Small dlib-like ResNet (dlib's face-recognition network's blocks, two per stage,
    /// cut after the third stage; default width 32, dlib's).
    Dlib,
    /// MobileFaceNet (Chen et al. 2018; default width 64, the paper's).
    Mobilefacenet,
}

impl ArchArg {
    fn arch(self) -> Arch {
        match self {
            ArchArg::Resnet18 => Arch::ResNet18,
            ArchArg::Resnet34 => Arch::ResNet34,
            ArchArg::Dlib => Arch::Dlib,
            ArchArg::Mobilefacenet => Arch::MobileFaceNet,
        }
    }
}

/// Defaults: the MCS2018 2nd-place recipe (Adam lr 1e-3, x0.1 at epochs 5 and 15, 25
/// epochs, batch 32, MSE loss).
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Descriptor store folder written by `advface distill collect`.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Run folder (created): config.json, log.csv, checkpoint/, student.weights,
    /// weights.sha256. Rerunning with the same folder and options resumes.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Student architecture.
    #[arg(long, value_enum, default_value = "resnet18")]
    pub arch: ArchArg,
    /// Channels of the stem and layer1 (layer k has width * 2^(k-1); mobilefacenet: 64 is
    /// the paper's). Default: 64, or 32 for dlib (dlib's).
    #[arg(long)]
    pub width: Option<usize>,
    /// Batch norm on the output descriptor (3rd-place team).
    #[arg(long)]
    pub output_bn: bool,
    /// Average-pool the input by this factor before the stem (2: train at 56 x 56, a
    /// quarter of the work).
    #[arg(long, default_value_t = 1)]
    pub downsample: usize,
    /// Epochs.
    #[arg(long, default_value_t = 25)]
    pub epochs: u32,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Epochs (0-based) at which the learning rate is multiplied by --lr-gamma.
    #[arg(long, value_delimiter = ',', default_value = "5,15")]
    pub lr_steps: Vec<u32>,
    /// Learning rate factor at each --lr-steps epoch.
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// Percent of identities held out for validation.
    #[arg(long, default_value_t = advface_distill::DEFAULT_VAL_PERCENT)]
    pub val_percent: u32,
    /// Seed of the initial weights and of the shuffles.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start from these trained weights instead of random ones (fine-tuning, e.g. on a
    /// larger store): a student.weights file or a run folder holding one. The architecture
    /// options must match the file's. Its SHA-256 goes into the run's config.json.
    #[arg(long, value_name = "WEIGHTS|RUN")]
    pub init: Option<PathBuf>,
    /// Minutes between checkpoints within an epoch (also one at each epoch end).
    #[arg(long, value_name = "M", default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// Stop cleanly after a checkpoint once M minutes have passed; rerun to go on.
    #[arg(long, value_name = "M")]
    pub max_minutes: Option<f64>,
    /// Stop cleanly after a checkpoint after N steps (for tests).
    #[arg(long, value_name = "N", hide = true)]
    pub max_steps: Option<u64>,
}

#[derive(clap::Args)]
pub struct CollectArgs {
    /// LFW folder holding images_deepfunneled/ (e.g. ../shared/data/lfw).
    #[arg(long)]
    pub lfw: PathBuf,
    /// The distillation pool: crops-relative paths, one a line (the distill_list.txt
    /// written by `advface prepare`). A pool that holds an attack identity is refused.
    #[arg(long, value_name = "FILE")]
    pub list: PathBuf,
    /// Store folder (created). Rerunning with the same folder asks only for what it lacks.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Augmented copies of each image besides the protocol crop (shifted, scaled, flipped,
    /// colour-jittered; made from the full 250x250 image).
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub copies: u32,
    /// Seed of the augmented copies; a store keeps the seed it was made with.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per black-box call and per synced append: a kill loses at most one batch.
    /// With --oracle, a call that fails part-way loses the answers it already had (up to
    /// B-1 queries); --batch 1 loses none but sends one request at a time.
    #[arg(long, value_name = "B", default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    #[command(flatten)]
    pub oracle: OracleArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Collect(a) => run_collect(a),
        Command::Train(a) => run_train(a),
        Command::Eval(a) => run_eval(a),
    }
}

fn run_train(args: TrainArgs) -> Result<ExitCode> {
    let cfg = TrainConfig {
        arch: args.arch.arch(),
        width: args
            .width
            .unwrap_or_else(|| args.arch.arch().default_width()),
        output_batch_norm: args.output_bn,
        input_downsample: args.downsample,
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        lr_steps: args.lr_steps.clone(),
        lr_gamma: args.lr_gamma,
        val_percent: args.val_percent,
        seed: args.seed,
        init: args.init.as_deref().map(|p| InitWeights {
            path: if p.is_dir() {
                p.join(advface_distill::FINAL_WEIGHTS)
            } else {
                p.to_path_buf()
            },
            sha256: String::new(),
        }),
        checkpoint_minutes: args.checkpoint_minutes,
        max_minutes: args.max_minutes,
        max_steps: args.max_steps,
        ..TrainConfig::default()
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} {bar:40} {pos}/{len} steps  {msg}")
            .expect("valid template"),
    );
    let observer = |e: TrainEvent| match e {
        TrainEvent::Start {
            train,
            val,
            steps_per_epoch,
            epochs,
            resumed,
        } => {
            bar.set_length(steps_per_epoch);
            bar.suspend(|| {
                eprintln!(
                    "{train} training / {val} validation samples; {steps_per_epoch} steps per \
                     epoch, {epochs} epochs"
                );
                if let Some(s) = resumed {
                    eprintln!(
                        "resuming at epoch {} step {} ({} images seen)",
                        s.epoch + 1,
                        s.step,
                        s.images_seen
                    );
                }
            });
        }
        TrainEvent::Step {
            epoch,
            step_in_epoch,
            images_per_sec,
            mse,
            ..
        } => {
            bar.set_prefix(format!("{}", epoch + 1));
            bar.set_position(step_in_epoch);
            bar.set_message(format!("{images_per_sec:.1} img/s  mse {mse:.3e}"));
        }
        TrainEvent::Epoch(row) => {
            let val = match row.val {
                Some(m) => format!("val mse {:.3e}  R^2 {:.4}  cos {:.4}", m.mse, m.r2, m.cos),
                None => "no validation samples".into(),
            };
            bar.suspend(|| {
                println!(
                    "epoch {:>3}  step {}  images {}  lr {:.1e}  train mse {:.3e}  {val}  {:.0} s",
                    row.epoch, row.step, row.images_seen, row.lr, row.train_mse, row.elapsed_s
                )
            });
            bar.set_position(0);
        }
        TrainEvent::Checkpoint { .. } => {}
    };
    let report = train(&args.store, &args.run, &cfg, observer)
        .with_context(|| format!("training in {}", args.run.display()))?;
    bar.finish_and_clear();
    if report.finished {
        println!(
            "done: {} ({} steps, {} images seen)\nsha256 {}",
            report
                .weights
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            report.state.step,
            report.state.images_seen,
            report.sha256.unwrap_or_default()
        );
    } else {
        println!(
            "stopped at epoch {} step {} after a checkpoint; rerun the same command to go on",
            report.state.epoch + 1,
            report.state.step
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_collect(args: CollectArgs) -> Result<ExitCode> {
    let list_bytes = std::fs::read(&args.list)
        .with_context(|| format!("reading the pool list {}", args.list.display()))?;
    let list_text = String::from_utf8(list_bytes.clone())
        .with_context(|| format!("{} is not UTF-8 text", args.list.display()))?;
    let pool: Vec<String> = list_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if pool.is_empty() {
        bail!(
            "{} lists no image; give the distill_list.txt written by `advface prepare`",
            args.list.display()
        );
    }

    let oracle = open_oracle(&args.oracle)?;
    let identity = oracle_identity(&args.oracle, oracle.as_ref())?;
    let Some(descriptor_len) = oracle.descriptor_len() else {
        bail!(
            "the black box '{}' does not state its descriptor length, so its answers cannot \
             be stored and checked",
            oracle.name()
        );
    };
    let cfg = CollectConfig {
        copies: args.copies,
        batch: args.batch,
        augment: AugmentConfig {
            seed: args.seed,
            ..Default::default()
        },
    };
    let spec = collect_store_spec(&identity, descriptor_len, &cfg.augment);
    let mut store = DescriptorStore::open(&args.store, spec)
        .with_context(|| format!("opening the descriptor store in {}", args.store.display()))?;
    if store.recovered_bytes() > 0 {
        eprintln!(
            "note: dropped a torn final record ({} bytes) left by an interrupted run in {}",
            store.recovered_bytes(),
            store.path().display()
        );
    }

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let mut skipped = 0usize;
    let mut observer = |e: CollectEvent<'_>| match e {
        CollectEvent::Start {
            images,
            samples,
            already_stored,
            to_ask,
            ..
        } => {
            bar.set_length(to_ask as u64);
            bar.suspend(|| {
                eprintln!(
                    "pool: {images} images x {} = {samples} samples; {already_stored} already \
                     stored, {to_ask} to ask of {}",
                    cfg.copies + 1,
                    oracle.name()
                )
            });
        }
        CollectEvent::Stored { samples } => bar.inc(samples as u64),
        CollectEvent::Skipped { image, samples } => {
            skipped += 1;
            bar.inc(samples as u64);
            bar.set_message(format!("{skipped} skipped"));
            bar.suspend(|| eprintln!("skipped {}: {}", image.rel, image.reason));
        }
        CollectEvent::ImageQueued => {}
    };
    let queries_before = oracle.stats().queries;
    let result = collect(
        &pool,
        &args.lfw,
        oracle.as_ref(),
        &mut store,
        &cfg,
        &mut observer,
    );
    bar.finish_and_clear();
    // Every run, finished or not, leaves a line in the store's run log; a failure to write
    // it is reported after the run's own error, if any.
    let request = CollectRunRequest {
        tool: format!("advface {}", env!("CARGO_PKG_VERSION")),
        lfw: &args.lfw,
        list: &args.list,
        list_bytes: &list_bytes,
        oracle: &identity,
        budget: args.oracle.budget,
        config: &cfg,
    };
    let run = CollectRun::new(
        &request,
        oracle.stats().queries.saturating_sub(queries_before),
        store.len(),
        result.as_ref(),
    );
    let log = append_run_log(&args.store, &run);
    let report = result?;
    log?;

    println!(
        "store {}: {} -> {} samples (+{})",
        store.path().display(),
        report.stored_before,
        report.stored_after,
        report.new_samples
    );
    println!(
        "{} queries to {} ({}){}",
        report.queries,
        oracle.name(),
        identity,
        if report.cached > 0 {
            format!(", {} answered from the cache", report.cached)
        } else {
            String::new()
        }
    );
    if !report.skipped.is_empty() {
        eprintln!("skipped {} unreadable image(s):", report.skipped.len());
        for s in &report.skipped {
            eprintln!("  {}: {}", s.rel, s.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The identity a store is tied to: the local model's name, or `http:<model>` for a
/// remote black box (as its `--cache` uses), so a store survives the server moving to
/// another host or port.
fn oracle_identity(args: &OracleArgs, oracle: &dyn Oracle) -> Result<String> {
    match &args.oracle {
        Some(url) => {
            let mut cfg = HttpConfig::new(url.clone());
            cfg.token = args.token.clone();
            Ok(HttpOracle::new(cfg)?
                .identity()
                .context("asking the black box for its model name")?)
        }
        None => Ok(oracle.name()),
    }
}

fn run_eval(args: EvalArgs) -> Result<ExitCode> {
    let images = eval_images(&args.crops, &args.exclude, args.limit)?;
    let (student, weights_sha256) = super::blackbox::load_differentiable(&args.student)?;
    let oracle = open_oracle(&args.oracle)?;
    let bar = ProgressBar::new(images.len() as u64);
    let report = evaluate(
        student.as_ref(),
        &weights_sha256,
        oracle.as_ref(),
        &args.crops,
        &images,
        |n| bar.inc(n as u64),
    );
    bar.finish_and_clear();
    let report = report?;
    println!("{}", serde_json::to_string(&report)?);
    if let Some(p) = &args.json {
        advface_image::write_atomic(p, &serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
