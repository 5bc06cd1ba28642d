//! Training a student on a descriptor store: the loop, its run folder, checkpoints and
//! resume.
//!
//! # Run folder
//! - `config.json`: the resolved [`TrainConfig`]; a rerun must give the same config (or it
//!   is refused with both configs in the error);
//! - `log.csv`: one row per epoch, appended: `epoch, step, images_seen, lr, train_mse,
//!   val_mse, val_r2, val_cos, elapsed_s`. An epoch's row is written before the checkpoint
//!   that marks the epoch done, and a resume first drops rows past that checkpoint, so
//!   every finished epoch has exactly one row whenever the run is killed;
//! - `checkpoint/`: `student-<step>.weights`, `optimizer-<step>.bin` and `state.json`
//!   naming them. Weights and optimizer are written first (each atomically: temp file,
//!   sync, rename), `state.json` last, so a kill at any moment leaves the previous complete
//!   checkpoint in force; older files are removed after the new state is in place.
//!   Written every [`TrainConfig::checkpoint_minutes`] and at each epoch end;
//! - `student.weights` (final) and `weights.sha256` (`<hex>  student.weights`).
//!
//! Rerunning the same command resumes from `checkpoint/`: same weights, Adam state, epoch,
//! position in that epoch's shuffle (the shuffle of epoch `e` depends on `(seed, e)` only),
//! so an interrupted and resumed run ends with the same weights as an uninterrupted one.
//!
//! A run starts from the seeded random weights, or from a trained student's
//! ([`TrainConfig::init`]: fine-tuning, e.g. on a store with more augmented copies); the
//! init file's SHA-256 is part of the config, so a resume with other weights is refused.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use advface_models::{Arch, StudentConfig, StudentError, StudentTrainer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::augment::SplitMix64;
use crate::split::split_by_identity;
use crate::store::{DescriptorStore, StoreError};

fn one() -> usize {
    1
}

/// Name of the final weights in a run folder.
pub const FINAL_WEIGHTS: &str = "student.weights";

/// Training configuration. Defaults are the MCS2018 2nd-place team's recipe: Adam with
/// lr 1e-3, multiplied by 0.1 at epochs 5 and 15, 25 epochs, batch 32, MSE loss, a
/// ResNet-18 cut after `layer3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Student architecture. Default `resnet18` (2nd place trained ResNet-18 and -34);
    /// `dlib` and `mobilefacenet` are the other choices ([`Arch`]).
    pub arch: Arch,
    /// Student width (channels of the stem). Default 64 (torchvision); the CLI takes
    /// [`Arch::default_width`] when none is given (32 for `dlib`).
    pub width: usize,
    /// Batch norm on the output descriptor (3rd place). Default off (2nd place).
    pub output_batch_norm: bool,
    /// Average-pool factor of the input before the stem (1: the full 112 px). Default 1.
    #[serde(default = "one")]
    pub input_downsample: usize,
    /// Epochs. Default 25 (2nd place).
    pub epochs: u32,
    /// Batch size. Default 32 (2nd place).
    pub batch: usize,
    /// Adam learning rate. Default 1e-3 (2nd place, ResNets).
    pub lr: f64,
    /// Epochs (0-based, as PyTorch's `MultiStepLR` milestones) at which the learning rate is
    /// multiplied by `lr_gamma`. Default `[5, 15]` (2nd place).
    pub lr_steps: Vec<u32>,
    /// Learning rate factor at each of `lr_steps`. Default 0.1 (2nd place).
    pub lr_gamma: f64,
    /// Percent of identities held out for validation ([`split_by_identity`]). Default 5.
    pub val_percent: u32,
    /// Seed of the initial weights and of the per-epoch shuffles. Default 0.
    pub seed: u64,
    /// Descriptor length, taken from the store (resolved by [`train`]).
    pub descriptor_len: usize,
    /// Weights the student starts from instead of the seeded random ones (fine-tuning a
    /// trained student, e.g. on a larger store). Default none. Its SHA-256 is resolved by
    /// [`train`] and kept in config.json, so a resume with another file is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitWeights>,
    /// Minutes between checkpoints within an epoch (run control, not stored or compared).
    /// Default 5.
    #[serde(skip, default = "default_checkpoint_minutes")]
    pub checkpoint_minutes: f64,
    /// Stop cleanly (after a checkpoint) once this many minutes have passed in this
    /// invocation (run control, not stored). Default none.
    #[serde(skip)]
    pub max_minutes: Option<f64>,
    /// Stop cleanly (after a checkpoint) after this many steps in this invocation (for
    /// tests; run control, not stored). Default none.
    #[doc(hidden)]
    #[serde(skip)]
    pub max_steps: Option<u64>,
}

/// The weights a run starts from ([`TrainConfig::init`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitWeights {
    /// The weight file (a `student.weights` saved by a run or a checkpoint), as given.
    pub path: PathBuf,
    /// Its SHA-256 as hex (resolved by [`train`]; what a resume compares).
    #[serde(default)]
    pub sha256: String,
}

fn default_checkpoint_minutes() -> f64 {
    5.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            arch: Arch::ResNet18,
            width: 64,
            output_batch_norm: false,
            input_downsample: 1,
            epochs: 25,
            batch: 32,
            lr: 1e-3,
            lr_steps: vec![5, 15],
            lr_gamma: 0.1,
            val_percent: crate::split::DEFAULT_VAL_PERCENT,
            seed: 0,
            descriptor_len: 128,
            init: None,
            checkpoint_minutes: default_checkpoint_minutes(),
            max_minutes: None,
            max_steps: None,
        }
    }
}

impl TrainConfig {
    /// The student this config trains.
    pub fn student(&self) -> StudentConfig {
        StudentConfig {
            arch: self.arch,
            width: self.width,
            descriptor_len: self.descriptor_len,
            output_batch_norm: self.output_batch_norm,
            input_downsample: self.input_downsample,
            ..StudentConfig::default()
        }
    }

    /// Learning rate during `epoch` (0-based).
    pub fn lr_at(&self, epoch: u32) -> f64 {
        let k = self.lr_steps.iter().filter(|&&m| m <= epoch).count();
        self.lr * self.lr_gamma.powi(k as i32)
    }

    fn validate(&self) -> Result<(), TrainError> {
        let bad = |s: String| Err(TrainError::BadConfig(s));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch == 0 || (self.batch < 2 && self.student().needs_batch_of_two()) {
            return bad(format!(
                "batch must be at least 1 (2 with an output batch norm or mobilefacenet), got {}",
                self.batch
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(self.lr_gamma.is_finite() && self.lr_gamma > 0.0) {
            return bad(format!("lr_gamma must be positive, got {}", self.lr_gamma));
        }
        if self.val_percent >= 100 {
            return bad(format!(
                "val_percent must be below 100, got {}",
                self.val_percent
            ));
        }
        if !(self.checkpoint_minutes.is_finite() && self.checkpoint_minutes > 0.0) {
            return bad(format!(
                "checkpoint_minutes must be positive, got {}",
                self.checkpoint_minutes
            ));
        }
        if let Some(m) = self.max_minutes {
            if !(m.is_finite() && m >= 0.0) {
                return bad(format!("max_minutes must be non-negative, got {m}"));
            }
        }
        self.student()
            .validate()
            .map_err(|e| TrainError::BadConfig(e.to_string()))
    }
}

/// Error of [`train`].
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration cannot be trained.
    #[error("bad training config: {0}")]
    BadConfig(String),
    /// The run folder was made with another config.
    #[error(
        "{path} holds a run made with another config; use a new --run folder or the same \
         options.\n  stored: {stored}\n  asked:  {asked}",
        path = path.display()
    )]
    ConfigMismatch {
        /// The run folder's config.json.
        path: PathBuf,
        /// The stored config, as JSON.
        stored: String,
        /// The config asked for, as JSON.
        asked: String,
    },
    /// The store cannot be trained on.
    #[error("descriptor store {}: {reason}", path.display())]
    BadStore {
        /// The store folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The student failed.
    #[error(transparent)]
    Student(#[from] StudentError),
    /// A run-folder file is damaged.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing the run folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Validation metrics of predicted against true descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean squared error per element.
    pub mse: f64,
    /// R^2 = 1 - sum((y - y')^2) / sum((y - mean(y))^2) over all elements, `mean(y)` per
    /// component over the samples. NaN when the true descriptors do not vary.
    pub r2: f64,
    /// Mean cosine similarity between predicted and true descriptors (a zero vector counts
    /// as cosine 0).
    pub cos: f64,
}

/// [`Metrics`] of `n` predicted descriptors against `n` true ones, `len` components each,
/// row-major. Panics when the slices are not `n * len` long; NaNs when `n == 0`.
pub fn metrics(pred: &[f32], truth: &[f32], n: usize, len: usize) -> Metrics {
    assert_eq!(pred.len(), n * len, "pred must be n x len");
    assert_eq!(truth.len(), n * len, "truth must be n x len");
    if n == 0 || len == 0 {
        return Metrics {
            mse: f64::NAN,
            r2: f64::NAN,
            cos: f64::NAN,
        };
    }
    let mut mean = vec![0f64; len];
    for row in truth.chunks_exact(len) {
        for (m, &y) in mean.iter_mut().zip(row) {
            *m += y as f64;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    let (mut sse, mut sst, mut cos) = (0f64, 0f64, 0f64);
    for (p, t) in pred.chunks_exact(len).zip(truth.chunks_exact(len)) {
        let (mut dot, mut pp, mut tt) = (0f64, 0f64, 0f64);
        for j in 0..len {
            let (a, b) = (p[j] as f64, t[j] as f64);
            sse += (a - b) * (a - b);
            sst += (b - mean[j]) * (b - mean[j]);
            dot += a * b;
            pp += a * a;
            tt += b * b;
        }
        let denom = (pp * tt).sqrt();
        cos += if denom > 0.0 { dot / denom } else { 0.0 };
    }
    Metrics {
        mse: sse / (n * len) as f64,
        r2: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
        cos: cos / n as f64,
    }
}

/// Where a run stands: the contents of `checkpoint/state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Current epoch, 0-based (`epochs` when finished).
    pub epoch: u32,
    /// Position in the current epoch's shuffled order of the next training sample.
    pub position: usize,
    /// Training images seen since the start of the run.
    pub images_seen: u64,
    /// Optimizer steps since the start of the run.
    pub step: u64,
    /// Seed of the shuffles (the shuffle of epoch `e` is drawn from SplitMix64 seeded with
    /// [`epoch_shuffle_seed`]`(shuffle_seed, e)`).
    pub shuffle_seed: u64,
    /// Training seconds since the start of the run (all invocations).
    pub elapsed_s: f64,
    /// Sum of the batch MSEs of the current epoch so far.
    pub epoch_mse_sum: f64,
    /// Batches of the current epoch so far.
    pub epoch_batches: u64,
    /// Weights file in `checkpoint/`.
    pub weights: String,
    /// Optimizer file in `checkpoint/`.
    pub optimizer: String,
}

/// Seed of the shuffle of epoch `epoch`.
pub fn epoch_shuffle_seed(seed: u64, epoch: u32) -> u64 {
    let mut r =
        SplitMix64::from_state(seed ^ (u64::from(epoch)).wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64()
}

/// The training indices in epoch `epoch`'s order (Fisher-Yates with SplitMix64).
pub fn epoch_order(train: &[usize], seed: u64, epoch: u32) -> Vec<usize> {
    let mut v = train.to_vec();
    let mut r = SplitMix64::from_state(epoch_shuffle_seed(seed, epoch));
    for i in (1..v.len()).rev() {
        let j = (r.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// One row of `log.csv` (per epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    /// Epoch, 1-based (the number of epochs done).
    pub epoch: u32,
    /// Optimizer steps since the start of the run.
    pub step: u64,
    /// Training images seen since the start of the run.
    pub images_seen: u64,
    /// Learning rate of the epoch.
    pub lr: f64,
    /// Mean of the epoch's batch MSEs.
    pub train_mse: f64,
    /// Validation metrics (`None` without validation samples).
    pub val: Option<Metrics>,
    /// Training seconds since the start of the run.
    pub elapsed_s: f64,
}

/// What [`train`] tells its observer.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// Training starts (or resumes).
    Start {
        /// Training samples.
        train: usize,
        /// Validation samples.
        val: usize,
        /// Steps in one epoch.
        steps_per_epoch: u64,
        /// Total epochs.
        epochs: u32,
        /// The state resumed from, if any.
        resumed: Option<TrainState>,
    },
    /// One optimizer step done.
    Step {
        /// Epoch, 0-based.
        epoch: u32,
        /// Steps done in this epoch.
        step_in_epoch: u64,
        /// Steps since the start of the run.
        step: u64,
        /// Images seen since the start of the run.
        images_seen: u64,
        /// Training images per second in this invocation.
        images_per_sec: f64,
        /// The batch's MSE.
        mse: f32,
    },
    /// An epoch ended (after validation; the row is in log.csv).
    Epoch(EpochRow),
    /// A checkpoint was written.
    Checkpoint {
        /// Steps since the start of the run.
        step: u64,
    },
}

/// What [`train`] did.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// True when all epochs are done and the final weights are written.
    pub finished: bool,
    /// Where the run stands.
    pub state: TrainState,
    /// The final weights (when finished).
    pub weights: Option<PathBuf>,
    /// Their SHA-256 as hex (when finished).
    pub sha256: Option<String>,
    /// Rows of log.csv written by this invocation.
    pub epochs: Vec<EpochRow>,
}

const LOG_HEADER: &str = "epoch,step,images_seen,lr,train_mse,val_mse,val_r2,val_cos,elapsed_s\n";

/// Writes `bytes` atomically with advface-image's writer (temp file beside `path`, synced,
/// renamed over it).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    advface_image::write_atomic(path, bytes).map_err(|e| match e {
        advface_image::ImageError::Write { path, source } => TrainError::Io { path, source },
        other => TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    Ok(sha256_hex(&bytes))
}

/// Trains (or resumes) a student on the store in `store_dir`, keeping everything in
/// `run_dir` (see the module docs). `cfg.descriptor_len` is replaced by the store's.
///
/// Returns when all epochs are done, or earlier (after a checkpoint) when
/// `cfg.max_minutes` or `cfg.max_steps` is reached; rerun to go on.
pub fn train(
    store_dir: &Path,
    run_dir: &Path,
    cfg: &TrainConfig,
    mut observer: impl FnMut(TrainEvent),
) -> Result<TrainReport, TrainError> {
    let started = Instant::now();
    let store = DescriptorStore::open_existing(store_dir)?;
    let spec = store.spec().clone();
    if spec.crop_width != 112 || spec.crop_height != 112 {
        return Err(TrainError::BadStore {
            path: store_dir.to_path_buf(),
            reason: format!(
                "crops are {}x{}, students take 112x112",
                spec.crop_width, spec.crop_height
            ),
        });
    }
    let mut cfg = cfg.clone();
    cfg.descriptor_len = spec.descriptor_len;
    cfg.validate()?;
    // The init weights are read (and checked against the config) before anything is
    // written, so a wrong file leaves no run folder to be refused on the corrected rerun.
    // The file is read once, for its hash and for the weights.
    let student = cfg.student();
    let mut init_trainer = match &mut cfg.init {
        Some(init) => {
            let bytes = fs::read(&init.path).map_err(io_err(&init.path))?;
            init.sha256 = sha256_hex(&bytes);
            Some(StudentTrainer::load_bytes(student, &bytes, &init.path)?)
        }
        None => None,
    };

    // The run folder and its config.
    fs::create_dir_all(run_dir.join("checkpoint")).map_err(io_err(run_dir))?;
    let config_path = run_dir.join("config.json");
    let asked = serde_json::to_string_pretty(&cfg).expect("config serialises");
    if config_path.exists() {
        let text = fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let stored: TrainConfig = serde_json::from_str(&text).map_err(|e| TrainError::BadFile {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
        let mut comparable = TrainConfig {
            checkpoint_minutes: cfg.checkpoint_minutes,
            max_minutes: cfg.max_minutes,
            max_steps: cfg.max_steps,
            ..stored
        };
        // The same init file named by another path (another working folder) is the same
        // run: only its content counts.
        if let (Some(stored), Some(asked)) = (&mut comparable.init, &cfg.init) {
            if stored.sha256 == asked.sha256 {
                stored.path = asked.path.clone();
            }
        }
        if comparable != cfg {
            return Err(TrainError::ConfigMismatch {
                path: config_path,
                stored: serde_json::to_string(&comparable).expect("serialises"),
                asked: serde_json::to_string(&cfg).expect("serialises"),
            });
        }
    } else {
        write_atomic(&config_path, format!("{asked}\n").as_bytes())?;
    }

    // The data.
    let samples = store.load_all()?;
    let split = split_by_identity(&samples.keys, cfg.val_percent);
    if split.train.is_empty() {
        return Err(TrainError::BadStore {
            path: store_dir.to_path_buf(),
            reason: "no training sample (empty store, or every identity held out)".into(),
        });
    }
    let d = cfg.descriptor_len;
    let crop_bytes = spec.crop_bytes();
    let needs_two = cfg.student().needs_batch_of_two();
    let batches_of = |len: usize| -> Vec<(usize, usize)> {
        (0..len)
            .step_by(cfg.batch)
            .map(|s| (s, (s + cfg.batch).min(len)))
            // A batch of one cannot train an output batch norm (or mobilefacenet's batch
            // norms over 1 x 1 maps): drop it.
            .filter(|(s, e)| !(needs_two && e - s < 2))
            .collect()
    };
    let steps_per_epoch = batches_of(split.train.len()).len() as u64;

    // The trainer: fresh or from the checkpoint.
    let ckpt_dir = run_dir.join("checkpoint");
    let state_path = ckpt_dir.join("state.json");
    let (mut trainer, mut state, resumed) = if state_path.exists() {
        let text = fs::read_to_string(&state_path).map_err(io_err(&state_path))?;
        let state: TrainState = serde_json::from_str(&text).map_err(|e| TrainError::BadFile {
            path: state_path.clone(),
            reason: e.to_string(),
        })?;
        let mut t = StudentTrainer::load(cfg.student(), &ckpt_dir.join(&state.weights))?;
        t.load_optimizer(&ckpt_dir.join(&state.optimizer))?;
        (t, state.clone(), Some(state))
    } else {
        let t = match init_trainer.take() {
            Some(t) => t,
            None => StudentTrainer::new(cfg.student(), cfg.seed)?,
        };
        let state = TrainState {
            epoch: 0,
            position: 0,
            images_seen: 0,
            step: 0,
            shuffle_seed: cfg.seed,
            elapsed_s: 0.0,
            epoch_mse_sum: 0.0,
            epoch_batches: 0,
            weights: String::new(),
            optimizer: String::new(),
        };
        (t, state, None)
    };
    observer(TrainEvent::Start {
        train: split.train.len(),
        val: split.val.len(),
        steps_per_epoch,
        epochs: cfg.epochs,
        resumed,
    });

    let log_path = run_dir.join("log.csv");
    trim_log(&log_path, state.epoch)?;
    let elapsed_base = state.elapsed_s;
    let elapsed = |started: &Instant| elapsed_base + started.elapsed().as_secs_f64();
    let checkpoint_every = cfg.checkpoint_minutes * 60.0;
    let mut last_checkpoint = Instant::now();
    // images/s counts from here, after loading the store.
    let loop_started = Instant::now();
    let mut images_this_run = 0u64;
    let mut steps_this_run = 0u64;
    let mut rows = Vec::new();
    let mut crops = Vec::with_capacity(cfg.batch * crop_bytes);
    let mut targets = Vec::with_capacity(cfg.batch * d);

    let checkpoint = |trainer: &StudentTrainer,
                      state: &mut TrainState,
                      started: &Instant|
     -> Result<(), TrainError> {
        let old = (state.weights.clone(), state.optimizer.clone());
        state.elapsed_s = elapsed(started);
        state.weights = format!("student-{}.weights", state.step);
        state.optimizer = format!("optimizer-{}.bin", state.step);
        trainer.save(&ckpt_dir.join(&state.weights))?;
        trainer.save_optimizer(&ckpt_dir.join(&state.optimizer))?;
        let json = serde_json::to_string_pretty(&*state).expect("state serialises");
        write_atomic(&state_path, format!("{json}\n").as_bytes())?;
        for f in [old.0, old.1] {
            if !f.is_empty() && f != state.weights && f != state.optimizer {
                let _ = fs::remove_file(ckpt_dir.join(f));
            }
        }
        Ok(())
    };

    let mut stopped = false;
    'epochs: while state.epoch < cfg.epochs {
        let epoch = state.epoch;
        let lr = cfg.lr_at(epoch);
        let order = epoch_order(&split.train, state.shuffle_seed, epoch);
        let batches = batches_of(order.len());
        let last_batch = batches.len().saturating_sub(1);
        for (b, &(s, e)) in batches.iter().enumerate() {
            if s < state.position {
                continue;
            }
            crops.clear();
            targets.clear();
            for &i in &order[s..e] {
                crops.extend_from_slice(samples.crop(i));
                targets.extend_from_slice(samples.descriptor(i));
            }
            let mse = trainer.step(&crops, &targets, lr)?;
            let n = (e - s) as u64;
            state.position = e;
            state.images_seen += n;
            state.step += 1;
            state.epoch_mse_sum += f64::from(mse);
            state.epoch_batches += 1;
            images_this_run += n;
            steps_this_run += 1;
            observer(TrainEvent::Step {
                epoch,
                step_in_epoch: state.epoch_batches,
                step: state.step,
                images_seen: state.images_seen,
                images_per_sec: images_this_run as f64
                    / loop_started.elapsed().as_secs_f64().max(1e-9),
                mse,
            });
            let out_of_time = cfg
                .max_minutes
                .is_some_and(|m| started.elapsed().as_secs_f64() >= m * 60.0);
            let out_of_steps = cfg.max_steps.is_some_and(|m| steps_this_run >= m);
            let last_of_epoch = b == last_batch;
            if (out_of_time || out_of_steps) && !last_of_epoch {
                checkpoint(&trainer, &mut state, &started)?;
                observer(TrainEvent::Checkpoint { step: state.step });
                break 'epochs;
            }
            if last_checkpoint.elapsed().as_secs_f64() >= checkpoint_every && !last_of_epoch {
                checkpoint(&trainer, &mut state, &started)?;
                last_checkpoint = Instant::now();
                observer(TrainEvent::Checkpoint { step: state.step });
            }
            if out_of_time || out_of_steps {
                // Stop after this epoch's end-of-epoch checkpoint.
                stopped = true;
            }
        }

        // Epoch end: validate, checkpoint, log.
        let val = if split.val.is_empty() {
            None
        } else {
            let mut pred = Vec::with_capacity(split.val.len() * d);
            let mut truth = Vec::with_capacity(split.val.len() * d);
            let chunk = cfg.batch.max(16);
            for idx in split.val.chunks(chunk) {
                crops.clear();
                for &i in idx {
                    crops.extend_from_slice(samples.crop(i));
                    truth.extend_from_slice(samples.descriptor(i));
                }
                pred.extend(trainer.predict(&crops, idx.len())?);
            }
            Some(metrics(&pred, &truth, split.val.len(), d))
        };
        let row = EpochRow {
            epoch: epoch + 1,
            step: state.step,
            images_seen: state.images_seen,
            lr,
            train_mse: if state.epoch_batches > 0 {
                state.epoch_mse_sum / state.epoch_batches as f64
            } else {
                f64::NAN
            },
            val,
            elapsed_s: elapsed(&started),
        };
        state.epoch += 1;
        state.position = 0;
        state.epoch_mse_sum = 0.0;
        state.epoch_batches = 0;
        // The row first, then the checkpoint that marks the epoch done: a kill between the
        // two leaves a row the checkpoint does not know, which the resumed run drops
        // (`trim_log`) and writes again when it redoes the epoch's end. The other order
        // lost the row for good.
        append_log(&log_path, &row)?;
        checkpoint(&trainer, &mut state, &started)?;
        last_checkpoint = Instant::now();
        observer(TrainEvent::Checkpoint { step: state.step });
        observer(TrainEvent::Epoch(row.clone()));
        rows.push(row);
        if stopped {
            break;
        }
    }

    if state.epoch < cfg.epochs {
        return Ok(TrainReport {
            finished: false,
            state,
            weights: None,
            sha256: None,
            epochs: rows,
        });
    }
    let weights = run_dir.join(FINAL_WEIGHTS);
    let sha_path = run_dir.join("weights.sha256");
    if !(weights.exists() && sha_path.exists()) {
        trainer.save(&weights)?;
        let sha = sha256_file(&weights)?;
        write_atomic(&sha_path, format!("{sha}  {FINAL_WEIGHTS}\n").as_bytes())?;
    }
    let sha = sha256_file(&weights)?;
    Ok(TrainReport {
        finished: true,
        state,
        weights: Some(weights),
        sha256: Some(sha),
        epochs: rows,
    })
}

/// Cuts `log.csv` after the rows of the first `done` epochs (the epochs the checkpoint in
/// force has finished): a row written just before a kill, whose epoch the checkpoint does
/// not count as done, or a torn last line. The resumed run redoes that epoch's end and
/// writes its row again, so the log holds each finished epoch once.
fn trim_log(path: &Path, done: u32) -> Result<(), TrainError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut keep = 0;
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if !line.ends_with(b"\n") {
            break; // torn
        }
        if i == 0 {
            if line != LOG_HEADER.as_bytes() {
                return Ok(()); // not a log this code wrote: leave it alone
            }
            keep += line.len();
            continue;
        }
        let epoch = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split(',').next())
            .and_then(|e| e.parse::<u32>().ok());
        match epoch {
            Some(e) if e <= done => keep += line.len(),
            _ => break,
        }
    }
    if keep == bytes.len() {
        return Ok(());
    }
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(keep as u64).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn append_log(path: &Path, row: &EpochRow) -> Result<(), TrainError> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    // Empty also after `trim_log` cut a torn header.
    let new = f.metadata().map_err(io_err(path))?.len() == 0;
    let (vm, vr, vc) = match row.val {
        Some(m) => (
            format!("{:.6e}", m.mse),
            format!("{:.6}", m.r2),
            format!("{:.6}", m.cos),
        ),
        None => Default::default(),
    };
    let mut line = String::new();
    if new {
        line.push_str(LOG_HEADER);
    }
    line.push_str(&format!(
        "{},{},{},{:e},{:.6e},{vm},{vr},{vc},{:.1}\n",
        row.epoch, row.step, row.images_seen, row.lr, row.train_mse, row.elapsed_s
    ));
    f.write_all(line.as_bytes()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_hand_made_numbers() {
        // Two samples, two components. truth = [[1, 0], [3, 2]], mean = [2, 1];
        // sst = 1 + 1 + 1 + 1 = 4.
        let truth = [1.0, 0.0, 3.0, 2.0];
        // pred = [[1, 1], [3, 2]]: one error of 1; sse = 1.
        let pred = [1.0, 1.0, 3.0, 2.0];
        let m = metrics(&pred, &truth, 2, 2);
        assert!((m.mse - 0.25).abs() < 1e-12, "{m:?}");
        assert!((m.r2 - 0.75).abs() < 1e-12, "{m:?}");
        // cos([1,1],[1,0]) = 1/sqrt(2); cos([3,2],[3,2]) = 1.
        let want = (1.0 / 2f64.sqrt() + 1.0) / 2.0;
        assert!((m.cos - want).abs() < 1e-9, "{m:?}");

        // A perfect prediction: mse 0, R^2 1, cos 1.
        let m = metrics(&truth, &truth, 2, 2);
        assert_eq!(m.mse, 0.0);
        assert_eq!(m.r2, 1.0);
        assert!((m.cos - 1.0).abs() < 1e-12);

        // Predicting the mean: R^2 = 0.
        let m = metrics(&[2.0, 1.0, 2.0, 1.0], &truth, 2, 2);
        assert!(m.r2.abs() < 1e-12, "{m:?}");
        // Opposite vectors: cos -1.
        let m = metrics(&[-1.0, 0.0], &[1.0, 0.0], 1, 2);
        assert!((m.cos + 1.0).abs() < 1e-12);
        assert!(m.r2.is_nan(), "one sample has no variance");
    }

    #[test]
    fn lr_schedule_is_multistep() {
        let c = TrainConfig::default();
        assert_eq!(c.lr_at(0), 1e-3);
        assert_eq!(c.lr_at(4), 1e-3);
        assert!((c.lr_at(5) - 1e-4).abs() < 1e-15);
        assert!((c.lr_at(14) - 1e-4).abs() < 1e-15);
        assert!((c.lr_at(15) - 1e-5).abs() < 1e-15);
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let train: Vec<usize> = (0..50).collect();
        let a = epoch_order(&train, 7, 0);
        assert_eq!(a, epoch_order(&train, 7, 0));
        assert_ne!(a, epoch_order(&train, 7, 1));
        assert_ne!(a, epoch_order(&train, 8, 0));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, train);
    }
}
