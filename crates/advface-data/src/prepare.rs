//! `advface prepare`: LFW deep-funneled JPEGs -> the protocol's 112 x 112 PNG crops, the
//! pairs file, the distillation list and a manifest. Deterministic byte for byte.

use std::path::PathBuf;

use advface_core::CROP_SIZE;
use advface_image::{crop_lfw, decode_jpeg, encode_png, write_atomic, ImageError, LFW_CROP_START};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::pairs::{format_pairs, Pair};
use crate::protocol::{crop_rel_path, LfwIndex, Protocol, ProtocolError};

/// What to prepare.
#[derive(Debug, Clone)]
pub struct PrepareConfig {
    /// The folder holding `images_deepfunneled/` (e.g. `../shared/data/lfw`).
    pub lfw: PathBuf,
    /// Output folder (created).
    pub out: PathBuf,
    /// Keep only the first `n` pairs in `pairs_list.csv` (all 227 when `None`).
    pub n: Option<usize>,
    /// Write crops of the attack identities only, not of the distillation pool.
    pub attack_only: bool,
}

/// Progress of [`prepare`], for a progress bar. Libraries never print.
#[derive(Debug, Clone, Copy)]
pub enum PrepareEvent {
    /// `total` images will be cropped.
    Start { total: usize },
    /// One more image done (written or skipped).
    Image,
}

/// An input image that could not be used, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    /// Path of the input file.
    pub path: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareReport {
    pub identities: usize,
    pub images: usize,
    pub attack_identities: usize,
    pub attack_images: usize,
    pub pool_images: usize,
    pub pairs_total: usize,
    pub pairs_written: usize,
    pub crops_written: usize,
    pub skipped: Vec<Skipped>,
    /// Where the manifest was written (not part of the manifest: it is the same for any --out).
    #[serde(skip)]
    pub manifest: PathBuf,
}

/// Errors that stop [`prepare`] (unreadable input images do not: they are skipped).
#[derive(Debug, Error)]
pub enum PrepareError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Write(#[from] ImageError),
    #[error("cannot create output folder {path}: {source} (choose a writable --out)")]
    CreateOut {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--out {out} is inside the LFW images folder {lfw}; choose another folder so originals are never touched")]
    OutInsideInput { out: PathBuf, lfw: PathBuf },
}

#[derive(Serialize)]
struct Manifest<'a> {
    protocol: &'static str,
    tool: String,
    crop: [u32; 2],
    counts: &'a PrepareReport,
    n: Option<usize>,
    attack_only: bool,
    /// SHA-256 of `inputs.sha256` (sha256sum lines of every input JPEG read).
    inputs_sha256: String,
    /// SHA-256 of `crops.sha256` (sha256sum lines of every crop written).
    crops_sha256: String,
    pairs_list_sha256: String,
    distill_list_sha256: String,
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Runs the preparation. `observer` receives progress events from worker threads.
pub fn prepare(
    cfg: &PrepareConfig,
    observer: &(dyn Fn(PrepareEvent) + Sync),
) -> Result<PrepareReport, PrepareError> {
    let index = LfwIndex::scan(&cfg.lfw)?;
    let images_dir = cfg.lfw.join("images_deepfunneled");
    if let (Ok(out), Ok(img)) = (
        std::fs::canonicalize(&cfg.out).or_else(|_| Ok::<_, std::io::Error>(cfg.out.clone())),
        std::fs::canonicalize(&images_dir),
    ) {
        if out.starts_with(&img) {
            return Err(PrepareError::OutInsideInput {
                out: cfg.out.clone(),
                lfw: images_dir,
            });
        }
    }
    std::fs::create_dir_all(&cfg.out).map_err(|source| PrepareError::CreateOut {
        path: cfg.out.clone(),
        source,
    })?;
    let protocol = Protocol::from_index(&index);

    let mut jobs: Vec<(String, String)> = protocol
        .attack
        .iter()
        .flat_map(|(n, files)| files.iter().map(move |f| (n.clone(), f.clone())))
        .collect();
    if !cfg.attack_only {
        jobs.extend(protocol.pool.iter().cloned());
    }
    jobs.sort();
    observer(PrepareEvent::Start { total: jobs.len() });

    let crops_dir = cfg.out.join("crops");
    enum Outcome {
        Done {
            rel: String,
            input: String,
            output: String,
            src: String,
        },
        Skip(Skipped),
    }
    let outcomes: Vec<Outcome> = jobs
        .par_iter()
        .map(|(name, file)| -> Result<Outcome, PrepareError> {
            let path = index.image_path(name, file);
            let rel = crop_rel_path(name, file);
            let src = format!("images_deepfunneled/{name}/{file}");
            let result = (|| -> Result<(String, Vec<u8>), String> {
                let bytes = std::fs::read(&path).map_err(|e| format!("cannot read: {e}"))?;
                let im = decode_jpeg(&bytes, &path).map_err(|e| e.to_string())?;
                let crop = crop_lfw(&im, &path).map_err(|e| e.to_string())?;
                let png = encode_png(&crop).map_err(|e| e.to_string())?;
                Ok((sha_hex(&bytes), png))
            })();
            let outcome = match result {
                Ok((input, png)) => {
                    write_atomic(&crops_dir.join(&rel), &png)?;
                    Outcome::Done {
                        rel,
                        input,
                        output: sha_hex(&png),
                        src,
                    }
                }
                Err(reason) => Outcome::Skip(Skipped { path, reason }),
            };
            observer(PrepareEvent::Image);
            Ok(outcome)
        })
        .collect::<Result<_, _>>()?;

    let mut inputs_txt = String::new();
    let mut crops_txt = String::new();
    let mut skipped = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for o in outcomes {
        match o {
            Outcome::Done {
                rel,
                input,
                output,
                src,
            } => {
                inputs_txt.push_str(&format!("{input}  {src}\n"));
                crops_txt.push_str(&format!("{output}  crops/{rel}\n"));
                written.insert(rel);
            }
            Outcome::Skip(s) => skipped.push(s),
        }
    }

    let pairs: Vec<Pair> = match cfg.n {
        Some(n) => protocol.pairs.iter().take(n).cloned().collect(),
        None => protocol.pairs.clone(),
    };
    let pairs_txt = format_pairs(&pairs);
    let mut distill_txt = String::new();
    for (name, file) in &protocol.pool {
        let rel = crop_rel_path(name, file);
        if cfg.attack_only || written.contains(&rel) {
            distill_txt.push_str(&rel);
            distill_txt.push('\n');
        }
    }

    write_atomic(&cfg.out.join("pairs_list.csv"), pairs_txt.as_bytes())?;
    write_atomic(&cfg.out.join("distill_list.txt"), distill_txt.as_bytes())?;
    write_atomic(&cfg.out.join("inputs.sha256"), inputs_txt.as_bytes())?;
    write_atomic(&cfg.out.join("crops.sha256"), crops_txt.as_bytes())?;

    let manifest_path = cfg.out.join("manifest.json");
    let report = PrepareReport {
        identities: index.identities.len(),
        images: index.image_count(),
        attack_identities: protocol.attack.len(),
        attack_images: protocol.attack_image_count(),
        pool_images: protocol.pool.len(),
        pairs_total: protocol.pairs.len(),
        pairs_written: pairs.len(),
        crops_written: written.len(),
        skipped,
        manifest: manifest_path.clone(),
    };
    let manifest = Manifest {
        protocol: "LFW-MCS (PROTOCOL.md)",
        tool: format!("advface {}", env!("CARGO_PKG_VERSION")),
        crop: [LFW_CROP_START, LFW_CROP_START + CROP_SIZE],
        counts: &report,
        n: cfg.n,
        attack_only: cfg.attack_only,
        inputs_sha256: sha_hex(inputs_txt.as_bytes()),
        crops_sha256: sha_hex(crops_txt.as_bytes()),
        pairs_list_sha256: sha_hex(pairs_txt.as_bytes()),
        distill_list_sha256: sha_hex(distill_txt.as_bytes()),
    };
    let mut json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    json.push('\n');
    write_atomic(&manifest_path, json.as_bytes())?;
    Ok(report)
}
