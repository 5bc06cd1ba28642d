//! The student weight file (`ADVFSTU1`) and optimizer file (`ADVFOPT1`): writing them
//! atomically, reading them back with their config checked.
//!
//! `ADVFSTU1` (8 bytes), the length of the JSON config as a little-endian `u32`, the
//! [`StudentConfig`] as JSON, then burn's burnpack record of the module. `ADVFOPT1` (8
//! bytes), the trainer's step count as a little-endian `u64`, then burn's record of Adam's
//! state.

use std::fs;
use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};

use super::config::{StudentConfig, StudentError};
use super::trainer::{adam, StudentTrainer};

pub(super) const FILE_MAGIC: &[u8; 8] = b"ADVFSTU1";
const OPTIM_MAGIC: &[u8; 8] = b"ADVFOPT1";

impl StudentTrainer {
    /// Writes the weights (and batch norm statistics) and the config to `path`, atomically:
    /// a temporary file beside it is written, synced, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), StudentError> {
        let json =
            serde_json::to_vec(&self.config).map_err(|e| StudentError::Burn(e.to_string()))?;
        let record = self
            .model()?
            .valid()
            .into_record()
            .into_bytes()
            .map_err(|e| StudentError::Burn(e.to_string()))?;
        write_atomic(
            path,
            &[
                FILE_MAGIC,
                &(json.len() as u32).to_le_bytes(),
                &json,
                &record,
            ],
        )
    }

    /// Writes Adam's state (first and second moments, step counts per parameter) and the
    /// trainer's step count to `path`, atomically (as [`save`](Self::save)). With the weights
    /// file, this is what a resumed run needs to continue as if never stopped.
    pub fn save_optimizer(&self, path: &Path) -> Result<(), StudentError> {
        let record = self
            .optim
            .into_bytes()
            .map_err(|e| StudentError::Burn(e.to_string()))?;
        write_atomic(path, &[OPTIM_MAGIC, &self.steps.to_le_bytes(), &record])
    }

    /// Loads Adam's state written by [`save_optimizer`](Self::save_optimizer) from a trainer
    /// whose weights were then saved and loaded here (burn keys the state by parameter id,
    /// which the weights file keeps). Restores the step count too.
    pub fn load_optimizer(&mut self, path: &Path) -> Result<(), StudentError> {
        let bytes = read_with_magic(path, OPTIM_MAGIC, 16)?;
        let bad = |reason: String| bad_file(path, reason);
        let mut steps = [0u8; 8];
        steps.copy_from_slice(&bytes[8..16]);
        let record = Bytes::from_bytes_vec(bytes[16..].to_vec());
        let fresh = adam();
        // burn's optimizer loader panics on some malformed records; a damaged file must be
        // an error, not a crash.
        let loaded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fresh.from_bytes(record)))
                .map_err(|_| bad("optimizer record is malformed".into()))?
                .map_err(|e| bad(e.to_string()))?;
        self.optim = loaded;
        self.steps = u64::from_le_bytes(steps);
        Ok(())
    }

    /// Reads the config stored in a weight file.
    pub fn read_config(path: &Path) -> Result<StudentConfig, StudentError> {
        Ok(read_file(path)?.0)
    }

    /// Loads a student saved by [`save`](Self::save), checking that it was saved with
    /// `config`. The optimizer state starts fresh.
    pub fn load(config: StudentConfig, path: &Path) -> Result<Self, StudentError> {
        let bytes = read_with_magic(path, FILE_MAGIC, 12)?;
        Self::load_bytes(config, &bytes, path)
    }

    /// As [`load`](Self::load), from the bytes of a weight file (`origin` names it in errors).
    pub fn load_bytes(
        config: StudentConfig,
        bytes: &[u8],
        origin: &Path,
    ) -> Result<Self, StudentError> {
        let path = origin;
        config.validate()?;
        let (found, record) = parse_weights(bytes, path)?;
        if found != config {
            let json =
                |c: &StudentConfig| serde_json::to_string(c).unwrap_or_else(|_| format!("{c:?}"));
            return Err(StudentError::ConfigMismatch {
                path: path.to_path_buf(),
                expected: json(&config),
                found: json(&found),
            });
        }
        let device = Device::flex().autodiff();
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(record)).map_err(|e| {
            StudentError::BadFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        let model =
            config
                .init(&device)?
                .try_load_record(record)
                .map_err(|e| StudentError::BadFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        Ok(StudentTrainer {
            config,
            model: Some(model),
            optim: adam(),
            device,
            steps: 0,
        })
    }
}

/// Reads `path`, which must start with `magic` and hold at least `min_len` bytes.
pub(super) fn read_with_magic(
    path: &Path,
    magic: &[u8; 8],
    min_len: usize,
) -> Result<Vec<u8>, StudentError> {
    let bytes = fs::read(path).map_err(|source| StudentError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() < min_len || &bytes[..8] != magic {
        return Err(bad_file(
            path,
            format!("missing the {} header", String::from_utf8_lossy(magic)),
        ));
    }
    Ok(bytes)
}

fn bad_file(path: &Path, reason: String) -> StudentError {
    StudentError::BadFile {
        path: path.to_path_buf(),
        reason,
    }
}

fn read_file(path: &Path) -> Result<(StudentConfig, Vec<u8>), StudentError> {
    let bytes = read_with_magic(path, FILE_MAGIC, 12)?;
    parse_weights(&bytes, path)
}

/// Splits the bytes of a weight file into its config and burn record; `path` names it in
/// errors.
pub(super) fn parse_weights(
    bytes: &[u8],
    path: &Path,
) -> Result<(StudentConfig, Vec<u8>), StudentError> {
    if bytes.len() < 12 || &bytes[..8] != FILE_MAGIC {
        return Err(bad_file(
            path,
            format!("missing the {} header", String::from_utf8_lossy(FILE_MAGIC)),
        ));
    }
    let bad = |reason: String| bad_file(path, reason);
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let json = bytes
        .get(12..12 + len)
        .ok_or_else(|| bad(format!("truncated config ({len} bytes announced)")))?;
    let config: StudentConfig =
        serde_json::from_slice(json).map_err(|e| bad(format!("config: {e}")))?;
    Ok((config, bytes[12 + len..].to_vec()))
}

/// Writes `parts` one after the other with advface-image's atomic writer (temp file beside
/// `path`, synced, renamed over it), so `path` holds either its old content or all of the new.
fn write_atomic(path: &Path, parts: &[&[u8]]) -> Result<(), StudentError> {
    advface_image::write_atomic(path, &parts.concat()).map_err(|e| match e {
        advface_image::ImageError::Write { path, source } => StudentError::Io { path, source },
        other => StudentError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}
