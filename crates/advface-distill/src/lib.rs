//! Student distillation, the data side: the samples a student learns from.
//!
//! The black box gives no gradients, so the MCS2018 recipe trains "student" networks to
//! reproduce its descriptors and attacks the students. This crate makes and keeps their
//! training data:
//!
//! - [`augment`](mod@augment): crops of LFW images, copy 0 exactly the protocol crop,
//!   copies 1.. shifted, scaled, flipped and colour-jittered, deterministically;
//! - [`store`]: [`DescriptorStore`], an append-only, crash-safe file of (crop, descriptor)
//!   samples, so an interrupted collection re-asks nothing;
//! - [`collect`](mod@collect): asks any [`Oracle`](advface_core::Oracle) for every sample of
//!   the distillation pool not yet stored, refusing a pool that holds an attack identity;
//! - [`split`]: the validation split by identity;
//! - [`train`](mod@train): fits a student ([`advface_models::StudentTrainer`]) to a store,
//!   with checkpoints, resume and validation metrics;
//! - [`eval`]: a trained student against the black box on the attack identities' crops;
//! - [`runlog`]: the store's log of collection runs.

pub mod augment;
pub mod collect;
pub mod eval;
pub mod runlog;
pub mod split;
pub mod store;
pub mod train;

pub use augment::{
    apply, augment, lfw_source_path, parse_sample_key, read_lfw_jpeg, sample_key, AugmentConfig,
    AugmentError, AugmentParams, RECIPE_VERSION,
};
pub use collect::{
    collect, collect_store_spec, CollectConfig, CollectError, CollectEvent, CollectReport,
    SkippedImage, DEFAULT_BATCH,
};
pub use eval::{eval_images, evaluate, list_pngs, EvalError, EvalReport, EVAL_BATCH};
pub use runlog::{
    append_run_log, read_run_log, CollectRun, CollectRunRequest, RunLogError, SkippedEntry,
    RUN_LOG_FILE,
};
pub use split::{
    identity_of_key, is_validation_identity, split_by_identity, Split, DEFAULT_VAL_PERCENT,
};
pub use store::{
    DescriptorStore, Sample, SampleIter, SampleRef, Samples, StoreError, StoreSpec, FORMAT_VERSION,
    MAX_KEY_LEN, STORE_FILE_NAME,
};
pub use train::{
    epoch_order, epoch_shuffle_seed, metrics, train, EpochRow, InitWeights, Metrics, TrainConfig,
    TrainError, TrainEvent, TrainReport, TrainState, FINAL_WEIGHTS,
};
