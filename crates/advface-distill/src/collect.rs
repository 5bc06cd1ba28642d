//! Collecting distillation samples: ask the black box for the descriptor of every crop
//! (and augmented copy) of the distillation pool, keeping the answers in a
//! [`DescriptorStore`] so an interrupted run re-asks nothing.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use advface_core::{Oracle, OracleError, RgbImage, CROP_SIZE};
use advface_data::{LfwIndex, Protocol, ProtocolError};
use thiserror::Error;

use crate::augment::{augment, lfw_source_path, read_lfw_jpeg, sample_key, AugmentConfig};
use crate::split::identity_of_key;
use crate::store::{DescriptorStore, SampleRef, StoreError, StoreSpec};
use crate::AugmentError;

/// Images per black-box call unless told otherwise: each call is followed by one synced
/// append, so a kill loses at most this many answers, and 32 crops keep a local model's
/// batches full.
pub const DEFAULT_BATCH: usize = 32;

/// How to collect.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectConfig {
    /// Augmented copies of each image besides the protocol crop: each image gives
    /// `copies + 1` samples (keys `#0` to `#copies`). Default 0 (the crops only).
    pub copies: u32,
    /// Images per black-box call and per append (at least 1). Each image is one query
    /// however the images are batched. Default [`DEFAULT_BATCH`].
    pub batch: usize,
    /// How copies 1.. are made.
    pub augment: AugmentConfig,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            copies: 0,
            batch: DEFAULT_BATCH,
            augment: AugmentConfig::default(),
        }
    }
}

/// The [`StoreSpec`] of a store that [`collect`] fills: 112 x 112 crops, the black box's
/// identity and descriptor length, and the augmentation recipe.
pub fn collect_store_spec(
    identity: &str,
    descriptor_len: usize,
    augment: &AugmentConfig,
) -> StoreSpec {
    StoreSpec {
        identity: identity.to_string(),
        descriptor_len,
        crop_width: CROP_SIZE,
        crop_height: CROP_SIZE,
        recipe: augment.recipe(),
    }
}

/// An image of the pool that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedImage {
    /// Its crops-relative path (as in the pool list).
    pub rel: String,
    /// The JPEG that was read.
    pub path: PathBuf,
    /// What was wrong (names the file).
    pub reason: String,
}

/// Progress of [`collect`], for a progress bar. Libraries never print.
#[derive(Debug, Clone, Copy)]
pub enum CollectEvent<'a> {
    /// Before the first query.
    Start {
        /// Distinct images in the pool.
        images: usize,
        /// Samples wanted: `images * (copies + 1)`.
        samples: usize,
        /// Of those, already in the store.
        already_stored: usize,
        /// Of those, still to ask (`samples - already_stored`).
        to_ask: usize,
        /// Images with at least one sample still to ask.
        images_to_ask: usize,
    },
    /// A batch was answered and stored.
    Stored {
        /// Samples in the batch.
        samples: usize,
    },
    /// An image was skipped.
    Skipped {
        /// Which and why.
        image: &'a SkippedImage,
        /// Its samples that were to be asked and will not be.
        samples: usize,
    },
    /// One image's pending copies were made and queued (counts images for a rate).
    ImageQueued,
}

/// What [`collect`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectReport {
    /// Distinct images in the pool.
    pub images: usize,
    /// Samples wanted: `images * (copies + 1)`.
    pub samples_wanted: usize,
    /// Samples in the store before the run (of any image).
    pub stored_before: usize,
    /// Samples in the store after the run.
    pub stored_after: usize,
    /// Samples added by this run.
    pub new_samples: usize,
    /// Black-box queries made by this run (from [`Oracle::stats`]).
    pub queries: u64,
    /// Answers that came from an oracle-side cache, not queries (from [`Oracle::stats`]).
    pub cached: u64,
    /// Images that could not be read, with the reason.
    pub skipped: Vec<SkippedImage>,
}

/// Errors that stop [`collect`]. Unreadable images do not: they are skipped and reported.
#[derive(Debug, Error)]
pub enum CollectError {
    /// A setting is out of range.
    #[error("invalid collect setting: {0}")]
    Config(String),
    /// The augmentation settings are out of range.
    #[error(transparent)]
    Augment(#[from] AugmentError),
    /// Pool entries that are not crops-relative LFW paths.
    #[error(
        "the pool holds {count} entr{} that are not crops-relative LFW paths (Name/Name_0001.png), \
         e.g. {first}; use the distill_list.txt written by `advface prepare`",
        if *count == 1 { "y" } else { "ies" }
    )]
    BadPool { count: usize, first: String },
    /// The pool holds images of attack identities.
    #[error(
        "refusing to collect: the pool holds {count} image(s) of {identities_count} attack \
         identit{} ({identities}), e.g. {examples}. No image of an attack identity may ever \
         be used to train a student (PROTOCOL.md); use the distill_list.txt written by \
         `advface prepare` for this LFW folder",
        if *identities_count == 1 { "y" } else { "ies" }
    )]
    AttackIdentity {
        count: usize,
        identities_count: usize,
        identities: String,
        examples: String,
    },
    /// The LFW folder cannot be listed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The store cannot be used or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The black box failed; everything answered before is stored.
    #[error(
        "the black box '{oracle}' failed after {stored} new sample(s) were stored by this run; \
         rerun the same command to go on from there"
    )]
    Oracle {
        oracle: String,
        stored: usize,
        #[source]
        source: OracleError,
    },
    /// The black box answered something that cannot be stored.
    #[error(
        "the black box '{oracle}' answered wrongly: {reason} (nothing of that batch was stored)"
    )]
    Answer { oracle: String, reason: String },
}

/// Asks `oracle` for every sample of `pool` that `store` does not hold yet, and stores
/// the answers.
///
/// `pool`: crops-relative paths (`Name/Name_0001.png`, the lines of `distill_list.txt`);
/// `lfw_root`: the folder holding `images_deepfunneled/`. Each image gives copies
/// `0..=cfg.copies` (see [`augment`](crate::augment())), keyed `"<path>#<copy>"`.
///
/// Before any query it refuses: a pool entry that is not a crops-relative path; a pool
/// that holds an image of an attack identity (computed from `lfw_root` by the protocol);
/// and a store made for another descriptor length, crop size or augmentation recipe.
/// Then it asks in batches of `cfg.batch` images (each image one query) and appends each
/// batch to the store before asking the next, so a kill loses at most one batch and a
/// rerun asks only for what is missing. An image that cannot be read or decoded is
/// skipped and named in the report; the run goes on.
pub fn collect(
    pool: &[String],
    lfw_root: &Path,
    oracle: &dyn Oracle,
    store: &mut DescriptorStore,
    cfg: &CollectConfig,
    observer: &mut dyn FnMut(CollectEvent<'_>),
) -> Result<CollectReport, CollectError> {
    if cfg.batch == 0 {
        return Err(CollectError::Config("batch must be at least 1".into()));
    }
    cfg.augment.validate()?;

    // The pool: distinct entries in the given order, each a plain crops-relative path.
    let mut seen = HashSet::with_capacity(pool.len());
    let mut images: Vec<(&str, PathBuf)> = Vec::with_capacity(pool.len());
    let mut bad_paths = Vec::new();
    for rel in pool {
        if !seen.insert(rel.as_str()) {
            continue;
        }
        match lfw_source_path(lfw_root, rel) {
            Ok(path) => images.push((rel, path)),
            Err(e) => bad_paths.push(e.to_string()),
        }
    }
    if let Some(first) = bad_paths.first() {
        return Err(CollectError::BadPool {
            count: bad_paths.len(),
            first: first.clone(),
        });
    }
    check_no_attack_identity(&images, lfw_root)?;
    check_store(store, oracle, cfg)?;

    // What is still to ask, per image.
    let per_image = cfg.copies as usize + 1;
    let pending: Vec<Vec<u32>> = images
        .iter()
        .map(|(rel, _)| {
            (0..=cfg.copies)
                .filter(|&k| !store.contains(&sample_key(rel, k)))
                .collect()
        })
        .collect();
    let to_ask: usize = pending.iter().map(Vec::len).sum();
    let samples = images.len() * per_image;
    observer(CollectEvent::Start {
        images: images.len(),
        samples,
        already_stored: samples - to_ask,
        to_ask,
        images_to_ask: pending.iter().filter(|p| !p.is_empty()).count(),
    });

    let stored_before = store.len();
    let stats_before = oracle.stats();
    let mut skipped = Vec::new();
    let mut batch = Batch::default();
    let mut new_samples = 0usize;
    for ((rel, path), ks) in images.iter().zip(&pending) {
        if ks.is_empty() {
            continue;
        }
        let copies = read_lfw_jpeg(path)
            .map_err(AugmentError::from)
            .and_then(|full| {
                ks.iter()
                    .map(|&k| {
                        augment(&full, rel, k, &cfg.augment).map(|im| (sample_key(rel, k), im))
                    })
                    .collect::<Result<Vec<_>, _>>()
            });
        match copies {
            Ok(copies) => {
                for (key, im) in copies {
                    batch.keys.push(key);
                    batch.images.push(im);
                    if batch.keys.len() == cfg.batch {
                        new_samples += batch.flush(oracle, store, new_samples, observer)?;
                    }
                }
                observer(CollectEvent::ImageQueued);
            }
            Err(e) => {
                skipped.push(SkippedImage {
                    rel: rel.to_string(),
                    path: path.clone(),
                    reason: e.to_string(),
                });
                observer(CollectEvent::Skipped {
                    image: skipped.last().expect("just pushed"),
                    samples: ks.len(),
                });
            }
        }
    }
    new_samples += batch.flush(oracle, store, new_samples, observer)?;

    let stats_after = oracle.stats();
    Ok(CollectReport {
        images: images.len(),
        samples_wanted: samples,
        stored_before,
        stored_after: store.len(),
        new_samples,
        queries: stats_after.queries.saturating_sub(stats_before.queries),
        cached: stats_after.cached.saturating_sub(stats_before.cached),
        skipped,
    })
}

/// Samples made and waiting to be asked.
#[derive(Default)]
struct Batch {
    keys: Vec<String>,
    images: Vec<RgbImage>,
}

impl Batch {
    /// Asks for and stores the queued samples; returns how many were stored.
    fn flush(
        &mut self,
        oracle: &dyn Oracle,
        store: &mut DescriptorStore,
        stored_so_far: usize,
        observer: &mut dyn FnMut(CollectEvent<'_>),
    ) -> Result<usize, CollectError> {
        if self.keys.is_empty() {
            return Ok(0);
        }
        let answers = oracle
            .describe(&self.images)
            .map_err(|source| CollectError::Oracle {
                oracle: oracle.name(),
                stored: stored_so_far,
                source,
            })?;
        if answers.len() != self.images.len() {
            return Err(CollectError::Answer {
                oracle: oracle.name(),
                reason: format!(
                    "{} descriptors for {} images",
                    answers.len(),
                    self.images.len()
                ),
            });
        }
        let want = store.spec().descriptor_len;
        if let Some(d) = answers.iter().find(|d| d.len() != want) {
            return Err(CollectError::Answer {
                oracle: oracle.name(),
                reason: format!(
                    "descriptor length mismatch: expected {want}, got {}",
                    d.len()
                ),
            });
        }
        let refs: Vec<SampleRef<'_>> = self
            .keys
            .iter()
            .zip(&self.images)
            .zip(&answers)
            .map(|((key, im), d)| SampleRef {
                key,
                crop: im.as_bytes(),
                descriptor: d.as_slice(),
            })
            .collect();
        store.append(&refs)?;
        let n = self.keys.len();
        self.keys.clear();
        self.images.clear();
        observer(CollectEvent::Stored { samples: n });
        Ok(n)
    }
}

/// Refuses a pool that holds an image of an attack identity of the LFW folder.
fn check_no_attack_identity(
    images: &[(&str, PathBuf)],
    lfw_root: &Path,
) -> Result<(), CollectError> {
    let index = LfwIndex::scan(lfw_root)?;
    let protocol = Protocol::from_index(&index);
    let attack: HashSet<&str> = protocol.attack.iter().map(|(n, _)| n.as_str()).collect();
    let bad: Vec<&str> = images
        .iter()
        .map(|(rel, _)| *rel)
        .filter(|rel| attack.contains(identity_of_key(rel)))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let ids: BTreeSet<&str> = bad.iter().map(|rel| identity_of_key(rel)).collect();
    let mut identities = ids.iter().take(10).copied().collect::<Vec<_>>().join(", ");
    if ids.len() > 10 {
        identities.push_str(&format!(", and {} more", ids.len() - 10));
    }
    let mut examples = bad.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if bad.len() > 5 {
        examples.push_str(", ...");
    }
    Err(CollectError::AttackIdentity {
        count: bad.len(),
        identities_count: ids.len(),
        identities,
        examples,
    })
}

/// Refuses a store that cannot hold this run's samples.
fn check_store(
    store: &DescriptorStore,
    oracle: &dyn Oracle,
    cfg: &CollectConfig,
) -> Result<(), CollectError> {
    let spec = store.spec();
    let mismatch = |field: &'static str, stored: String, wanted: String| {
        Err(CollectError::Store(StoreError::Mismatch {
            path: store.path().to_path_buf(),
            field,
            stored,
            wanted,
        }))
    };
    if let Some(len) = oracle.descriptor_len() {
        if len != spec.descriptor_len {
            return mismatch(
                "descriptor length",
                spec.descriptor_len.to_string(),
                format!("{len} (black box '{}')", oracle.name()),
            );
        }
    }
    if (spec.crop_width, spec.crop_height) != (CROP_SIZE, CROP_SIZE) {
        return mismatch(
            "crop size",
            format!("{}x{}", spec.crop_width, spec.crop_height),
            format!("{CROP_SIZE}x{CROP_SIZE}"),
        );
    }
    let recipe = cfg.augment.recipe();
    if spec.recipe != recipe {
        return mismatch(
            "augmentation recipe",
            format!("'{}'", spec.recipe),
            format!("'{recipe}' (same --seed and augmentation settings as the first run?)"),
        );
    }
    Ok(())
}
