//! The descriptor store: distillation samples (a crop and the black box's descriptor of it)
//! kept on disk, append-only, so that an interrupted collection re-asks nothing it has.
//!
//! # File format
//! `<dir>/samples.bin` ([`STORE_FILE_NAME`]), all integers little-endian:
//!
//! ```text
//! header:  b"ADVFDIST"  u32 version (= 1)
//!          u32 descriptor_len  u32 crop_width  u32 crop_height
//!          u32 identity_len  identity (UTF-8)      the black box that answered
//!          u32 recipe_len    recipe (UTF-8)        how the crops were made (augmentation)
//! record:  u32 key_len  key (UTF-8, key_len bytes)
//!          crop   (crop_height x crop_width x 3 bytes, RGB, row-major HWC)
//!          descriptor (descriptor_len x f32)
//!          checksum (8 bytes: the first 8 bytes of SHA-256 of everything before it in
//!                    the record)
//! ```
//!
//! A record of a 112 x 112 crop with a 128-d descriptor and a 40-byte key takes 38,196
//! bytes, so 50,000 samples are about 1.9 GB.
//!
//! # Crash safety
//! Records are only ever appended. Each [`append`](DescriptorStore::append) writes its
//! records with one write at the end of the file and then syncs the data
//! (`sync_data`), so what an append returned `Ok` for survives a crash or a power cut.
//! A crash during an append can leave a torn final record (too short, or of the right
//! length but with zeros or garbage, which the checksum catches); [`open`](DescriptorStore::open)
//! drops it and says how many bytes it dropped ([`recovered_bytes`](DescriptorStore::recovered_bytes)).
//! An append that fails (disk full, I/O error) cuts the file back to where it was, so the
//! records already there are never touched. A damaged record *followed by* good ones is
//! not a crash (appends are synced one by one) but a damaged disk: opening refuses it,
//! naming the byte where the damage starts.
//!
//! Only one process may append to a store at a time (nothing enforces it yet).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Name of the store file inside the store folder.
pub const STORE_FILE_NAME: &str = "samples.bin";

/// First bytes of a store file.
const MAGIC: &[u8; 8] = b"ADVFDIST";

/// Version of the file format written and read by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Longest sample key, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// Longest oracle identity stored in a header, in bytes.
const MAX_ID_LEN: usize = 4096;
/// Longest recipe stored in a header, in bytes.
const MAX_RECIPE_LEN: usize = 65536;
/// Longest descriptor a store accepts (components).
const MAX_DESCRIPTOR_LEN: usize = 1 << 16;
/// Largest crop side a store accepts (pixels).
const MAX_SIDE: u32 = 4096;
/// Bytes of the per-record checksum.
const CHECKSUM_LEN: usize = 8;
/// Read buffer for sequential scans: large enough that reading is one syscall per few
/// dozen records.
const READ_BUFFER: usize = 4 << 20;

/// Errors of the descriptor store. Each names the file and the fix.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Reading, writing, syncing or creating failed.
    #[error(
        "cannot {action} {}: {source} (check that the folder exists and is writable and that \
         the disk has room)",
        path.display()
    )]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The file is something else.
    #[error(
        "{} is not an advface descriptor store (it does not start with \"ADVFDIST\"); \
         choose a new or empty --store folder",
        path.display()
    )]
    NotAStore { path: PathBuf },
    /// A store of another format version.
    #[error(
        "{} is store format version {found}, this build reads version {supported}; use the \
         advface that made it, or another --store folder",
        path.display()
    )]
    Version {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The header cannot be read.
    #[error("{}: damaged header: {reason}; move the file away to start a fresh store", path.display())]
    CorruptHeader { path: PathBuf, reason: String },
    /// The store was made for another black box, crop size, descriptor length or recipe.
    #[error(
        "{} holds samples for {field} {stored}, but this run has {wanted}; run with the \
         settings it was made with, or use another --store folder (one store holds the \
         answers of one black box, for one crop size and one augmentation recipe)",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        field: &'static str,
        stored: String,
        wanted: String,
    },
    /// A damaged record with good records after it: a damaged disk, not a crash.
    #[error(
        "{}: record {record} at byte {offset} is damaged ({reason}) and more data follows it; \
         truncate the file to {offset} bytes to keep the {record} records before it \
         (`truncate -s {offset} {}`; the samples after it will be asked again), or move it \
         away to start afresh",
        path.display(), path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        record: usize,
        reason: String,
    },
    /// A sample given to [`DescriptorStore::append`] does not fit the store; nothing of
    /// that call was written.
    #[error("cannot store sample '{key}' in {}: {reason} (nothing of this batch was written)", path.display())]
    BadSample {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// Appending to a store opened with [`DescriptorStore::open_existing`].
    #[error(
        "{} was opened read-only; open it with DescriptorStore::open to append",
        path.display()
    )]
    ReadOnly { path: PathBuf },
    /// An earlier append failed and the file could not be cut back.
    #[error(
        "{}: an earlier append failed and could not be undone ({reason}); reopen the store \
         (opening drops a torn final record)",
        path.display()
    )]
    Poisoned { path: PathBuf, reason: String },
    /// No store in the folder.
    #[error(
        "no descriptor store at {} (make one with `advface distill collect --store DIR`)",
        path.display()
    )]
    Missing { path: PathBuf },
    /// The description of a new store is out of range.
    #[error("cannot make a descriptor store at {}: {reason}", path.display())]
    BadSpec { path: PathBuf, reason: String },
}

/// What a store holds: fixed when the store is made, written in its header and checked
/// on every open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// The black box that answered (its [`Oracle::name`](advface_core::Oracle::name), or
    /// `http:<model>` for a remote one).
    pub identity: String,
    /// Components of each descriptor (128 for face-api.js).
    pub descriptor_len: usize,
    /// Crop width in pixels (112 for LFW-MCS).
    pub crop_width: u32,
    /// Crop height in pixels (112 for LFW-MCS).
    pub crop_height: u32,
    /// How the crops were made, e.g. [`AugmentConfig::recipe`](crate::AugmentConfig::recipe):
    /// the same key must always mean the same pixels, so a store refuses another recipe.
    pub recipe: String,
}

impl StoreSpec {
    /// Bytes of one crop: `crop_height * crop_width * 3`.
    pub fn crop_bytes(&self) -> usize {
        self.crop_width as usize * self.crop_height as usize * 3
    }

    /// Bytes of one record with a key of `key_len` bytes.
    pub fn record_len(&self, key_len: usize) -> usize {
        4 + key_len + self.crop_bytes() + 4 * self.descriptor_len + CHECKSUM_LEN
    }

    fn check(&self, path: &Path) -> Result<(), StoreError> {
        let bad = |reason: String| {
            Err(StoreError::BadSpec {
                path: path.to_path_buf(),
                reason,
            })
        };
        if self.identity.len() > MAX_ID_LEN {
            return bad(format!(
                "oracle identity is {} bytes, the most is {MAX_ID_LEN}",
                self.identity.len()
            ));
        }
        if self.recipe.len() > MAX_RECIPE_LEN {
            return bad(format!(
                "recipe is {} bytes, the most is {MAX_RECIPE_LEN}",
                self.recipe.len()
            ));
        }
        if self.descriptor_len == 0 || self.descriptor_len > MAX_DESCRIPTOR_LEN {
            return bad(format!(
                "descriptor length {} is outside 1..={MAX_DESCRIPTOR_LEN}",
                self.descriptor_len
            ));
        }
        if self.crop_width == 0
            || self.crop_height == 0
            || self.crop_width > MAX_SIDE
            || self.crop_height > MAX_SIDE
        {
            return bad(format!(
                "crop size {}x{} is outside 1..={MAX_SIDE} a side",
                self.crop_width, self.crop_height
            ));
        }
        Ok(())
    }

    fn header_bytes(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(32 + self.identity.len() + self.recipe.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&(self.descriptor_len as u32).to_le_bytes());
        h.extend_from_slice(&self.crop_width.to_le_bytes());
        h.extend_from_slice(&self.crop_height.to_le_bytes());
        h.extend_from_slice(&(self.identity.len() as u32).to_le_bytes());
        h.extend_from_slice(self.identity.as_bytes());
        h.extend_from_slice(&(self.recipe.len() as u32).to_le_bytes());
        h.extend_from_slice(self.recipe.as_bytes());
        h
    }
}

/// A sample to append: borrowed key, crop and descriptor.
#[derive(Debug, Clone, Copy)]
pub struct SampleRef<'a> {
    /// Unique key, e.g. `"Aaron_Eckhart/Aaron_Eckhart_0001.png#0"` (see
    /// [`sample_key`](crate::sample_key)); 1 to [`MAX_KEY_LEN`] bytes.
    pub key: &'a str,
    /// The crop that was queried: `crop_height * crop_width * 3` bytes, RGB, HWC.
    pub crop: &'a [u8],
    /// The black box's descriptor of it: `descriptor_len` finite values.
    pub descriptor: &'a [f32],
}

/// A sample read back from a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its key.
    pub key: String,
    /// The crop: `crop_height * crop_width * 3` bytes, RGB, HWC.
    pub crop: Vec<u8>,
    /// The black box's descriptor of the crop.
    pub descriptor: Vec<f32>,
}

/// Every sample of a store in memory, in file order, for training.
///
/// # Shapes
/// `crops`: `[n, crop_height, crop_width, 3]` u8 (HWC per sample);
/// `descriptors`: `[n, descriptor_len]` f32; `keys`: `n`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// Keys, one per sample.
    pub keys: Vec<String>,
    /// Crops, concatenated.
    pub crops: Vec<u8>,
    /// Descriptors, concatenated.
    pub descriptors: Vec<f32>,
    /// Crop width in pixels.
    pub crop_width: u32,
    /// Crop height in pixels.
    pub crop_height: u32,
    /// Components of each descriptor.
    pub descriptor_len: usize,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The crop of sample `i` (HWC bytes). Panics when `i >= len()`.
    pub fn crop(&self, i: usize) -> &[u8] {
        let n = self.crop_width as usize * self.crop_height as usize * 3;
        &self.crops[i * n..(i + 1) * n]
    }

    /// The descriptor of sample `i`. Panics when `i >= len()`.
    pub fn descriptor(&self, i: usize) -> &[f32] {
        &self.descriptors[i * self.descriptor_len..(i + 1) * self.descriptor_len]
    }
}

/// The on-disk, append-only store of distillation samples. See the module docs for the
/// format and crash behaviour.
///
/// ```
/// use advface_distill::{DescriptorStore, SampleRef, StoreSpec};
///
/// let dir = tempfile::tempdir()?;
/// let spec = StoreSpec {
///     identity: "faceapi".into(),
///     descriptor_len: 2,
///     crop_width: 1,
///     crop_height: 1,
///     recipe: "none".into(),
/// };
/// let mut store = DescriptorStore::open(dir.path(), spec.clone())?;
/// store.append(&[SampleRef { key: "A/A_0001.png#0", crop: &[1, 2, 3], descriptor: &[0.5, -1.0] }])?;
/// drop(store);
///
/// let store = DescriptorStore::open(dir.path(), spec)?;
/// assert!(store.contains("A/A_0001.png#0"));
/// let all = store.load_all()?;
/// assert_eq!((all.len(), all.descriptor(0)), (1, &[0.5f32, -1.0][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DescriptorStore {
    path: PathBuf,
    spec: StoreSpec,
    file: File,
    /// Key -> byte offset of its record (the first record of that key).
    index: HashMap<String, u64>,
    /// Bytes of the header.
    header_len: u64,
    /// End of the last whole record: where the next append goes.
    end: u64,
    writable: bool,
    poisoned: Option<String>,
    recovered_bytes: u64,
    #[cfg(test)]
    fail_write_after: Option<usize>,
}

impl DescriptorStore {
    /// Opens the store in folder `dir` (created when missing), or makes a new one for
    /// `spec`.
    ///
    /// An existing store must have been made for the same `spec` (black box, descriptor
    /// length, crop size, recipe), else [`StoreError::Mismatch`] names the field. Reads the
    /// whole file once, sequentially, checking every record's checksum (seconds for the
    /// ~2 GB of 50,000 samples); a torn final record left by a crash is cut off.
    pub fn open(dir: &Path, spec: StoreSpec) -> Result<Self, StoreError> {
        let path = dir.join(STORE_FILE_NAME);
        spec.check(&path)?;
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| StoreError::Io {
                path,
                action,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            action: "create the store folder",
            source,
        })?;
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open"))?;
        let meta = file.metadata().map_err(io("read the size of"))?;
        if !meta.is_file() {
            return Err(StoreError::NotAStore { path });
        }
        let file_len = meta.len();
        let header = spec.header_bytes();
        if file_len < header.len() as u64 {
            let mut bytes = Vec::with_capacity(file_len as usize);
            (&file)
                .take(file_len)
                .read_to_end(&mut bytes)
                .map_err(io("read"))?;
            if header.starts_with(&bytes) {
                // New, or a crash while the header was being written: (re)write it.
                file.set_len(0).map_err(io("truncate"))?;
                file.seek(SeekFrom::Start(0)).map_err(io("seek in"))?;
                file.write_all(&header).map_err(io("write the header of"))?;
                file.sync_data().map_err(io("sync"))?;
                if !existed {
                    sync_dir(dir).map_err(|source| StoreError::Io {
                        path: dir.to_path_buf(),
                        action: "sync the store folder",
                        source,
                    })?;
                }
                return Ok(Self {
                    path,
                    spec,
                    file,
                    index: HashMap::new(),
                    header_len: header.len() as u64,
                    end: header.len() as u64,
                    writable: true,
                    poisoned: None,
                    recovered_bytes: file_len,
                    #[cfg(test)]
                    fail_write_after: None,
                });
            }
        }
        let (stored, header_len) = read_header(&file, &path, file_len)?;
        compare_specs(&path, &stored, &spec)?;
        let scan = scan_records(&file, &path, &spec, header_len, file_len)?;
        let mut recovered_bytes = 0;
        if scan.valid_end < file_len {
            recovered_bytes = file_len - scan.valid_end;
            file.set_len(scan.valid_end)
                .map_err(io("cut the torn final record off"))?;
            file.sync_data().map_err(io("sync"))?;
        }
        Ok(Self {
            path,
            spec,
            file,
            index: scan.index,
            header_len,
            end: scan.valid_end,
            writable: true,
            poisoned: None,
            recovered_bytes,
            #[cfg(test)]
            fail_write_after: None,
        })
    }

    /// Opens an existing store read-only, whatever it was made for (its [`spec`](Self::spec)
    /// says), e.g. for training while a collection may still be appending to it.
    ///
    /// Nothing is written: a torn final record is left in place and ignored (counted in
    /// [`recovered_bytes`](Self::recovered_bytes)); [`append`](Self::append) is refused.
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(STORE_FILE_NAME);
        if !path.is_file() {
            return Err(StoreError::Missing { path });
        }
        let file = File::open(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            action: "open",
            source,
        })?;
        let meta = file.metadata().map_err(|source| StoreError::Io {
            path: path.clone(),
            action: "read the size of",
            source,
        })?;
        if !meta.is_file() {
            return Err(StoreError::NotAStore { path });
        }
        let file_len = meta.len();
        let (spec, header_len) = read_header(&file, &path, file_len)?;
        let scan = scan_records(&file, &path, &spec, header_len, file_len)?;
        Ok(Self {
            path,
            spec,
            file,
            index: scan.index,
            header_len,
            end: scan.valid_end,
            writable: false,
            poisoned: None,
            recovered_bytes: file_len - scan.valid_end,
            #[cfg(test)]
            fail_write_after: None,
        })
    }

    /// The store file (`<dir>/samples.bin`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the store holds.
    pub fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the store holds no sample.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether a sample with this key is stored.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The stored keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.index.keys().map(String::as_str)
    }

    /// Bytes of a torn final record dropped by [`open`](Self::open) (or ignored by
    /// [`open_existing`](Self::open_existing)); 0 when the file was whole.
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    /// Size of the file up to the end of the last whole record, in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.end
    }

    /// Appends `samples` with one write, then syncs the data to disk: when this returns
    /// `Ok`, the samples survive a crash.
    ///
    /// Every sample is checked first (key of 1 to [`MAX_KEY_LEN`] bytes, not already
    /// stored and not twice in the call; crop and descriptor sizes of the store; finite
    /// values); one bad sample refuses the whole call and writes nothing. A failed write
    /// or sync cuts the file back to its length before the call, so the samples already
    /// stored are never damaged.
    pub fn append(&mut self, samples: &[SampleRef<'_>]) -> Result<(), StoreError> {
        if !self.writable {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        if let Some(reason) = &self.poisoned {
            return Err(StoreError::Poisoned {
                path: self.path.clone(),
                reason: reason.clone(),
            });
        }
        let mut seen = HashSet::with_capacity(samples.len());
        for s in samples {
            let bad = |reason: String| StoreError::BadSample {
                path: self.path.clone(),
                key: s.key.chars().take(200).collect(),
                reason,
            };
            if s.key.is_empty() || s.key.len() > MAX_KEY_LEN {
                return Err(bad(format!(
                    "the key is {} bytes, it must be 1 to {MAX_KEY_LEN}",
                    s.key.len()
                )));
            }
            if self.index.contains_key(s.key) || !seen.insert(s.key) {
                return Err(bad("a sample with this key is already stored".into()));
            }
            if s.crop.len() != self.spec.crop_bytes() {
                return Err(bad(format!(
                    "the crop has {} bytes, this store holds {}x{} RGB crops ({} bytes)",
                    s.crop.len(),
                    self.spec.crop_width,
                    self.spec.crop_height,
                    self.spec.crop_bytes()
                )));
            }
            if s.descriptor.len() != self.spec.descriptor_len {
                return Err(bad(format!(
                    "descriptor length mismatch: expected {}, got {}",
                    self.spec.descriptor_len,
                    s.descriptor.len()
                )));
            }
            if let Some(i) = s.descriptor.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "descriptor component {i} is {} (not finite)",
                    s.descriptor[i]
                )));
            }
        }
        if samples.is_empty() {
            return Ok(());
        }
        let total: usize = samples
            .iter()
            .map(|s| self.spec.record_len(s.key.len()))
            .sum();
        let mut buf = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(samples.len());
        for s in samples {
            offsets.push(self.end + buf.len() as u64);
            let start = buf.len();
            buf.extend_from_slice(&(s.key.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.key.as_bytes());
            buf.extend_from_slice(s.crop);
            for v in s.descriptor {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            let sum = checksum(&buf[start..]);
            buf.extend_from_slice(&sum);
        }
        if let Err((action, source)) = self.write_at_end(&buf) {
            // Cut back to the last whole record so nothing already stored is damaged and
            // the next append does not follow a torn record.
            let rollback = self
                .file
                .set_len(self.end)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = rollback {
                self.poisoned = Some(format!(
                    "{action} failed ({source}), then cutting the file back to {} bytes \
                     failed ({e})",
                    self.end
                ));
            }
            return Err(StoreError::Io {
                path: self.path.clone(),
                action,
                source,
            });
        }
        for (s, off) in samples.iter().zip(offsets) {
            self.index.insert(s.key.to_string(), off);
        }
        self.end += buf.len() as u64;
        Ok(())
    }

    fn write_at_end(&mut self, buf: &[u8]) -> Result<(), (&'static str, std::io::Error)> {
        self.file
            .seek(SeekFrom::Start(self.end))
            .map_err(|e| ("seek to the end of", e))?;
        #[cfg(test)]
        if let Some(n) = self.fail_write_after {
            let n = n.min(buf.len());
            self.file
                .write_all(&buf[..n])
                .map_err(|e| ("append samples to", e))?;
            return Err((
                "append samples to",
                std::io::Error::other("injected failure (test)"),
            ));
        }
        self.file
            .write_all(buf)
            .map_err(|e| ("append samples to", e))?;
        self.file
            .sync_data()
            .map_err(|e| ("sync the samples appended to", e))
    }

    /// Reads every sample back, in file order, streaming (one record in memory at a time),
    /// checking each record's checksum.
    pub fn iter(&self) -> Result<SampleIter<'_>, StoreError> {
        Ok(SampleIter {
            reader: self.reader()?,
        })
    }

    /// Reads every sample into memory, in file order, for training: one sequential,
    /// buffered pass over the file (about 1.9 GB of crops for 50,000 samples of
    /// 112 x 112), checking each record's checksum.
    pub fn load_all(&self) -> Result<Samples, StoreError> {
        let n = self.len();
        let mut out = Samples {
            keys: Vec::with_capacity(n),
            crops: Vec::with_capacity(n * self.spec.crop_bytes()),
            descriptors: Vec::with_capacity(n * self.spec.descriptor_len),
            crop_width: self.spec.crop_width,
            crop_height: self.spec.crop_height,
            descriptor_len: self.spec.descriptor_len,
        };
        let mut reader = self.reader()?;
        while let Some((key, crop, desc)) = reader.next_record()? {
            out.keys.push(key.to_string());
            out.crops.extend_from_slice(crop);
            out.descriptors.extend(
                desc.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
            );
        }
        Ok(out)
    }

    fn reader(&self) -> Result<RecordReader<'_>, StoreError> {
        let file = File::open(&self.path).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            action: "open for reading",
            source,
        })?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        reader
            .seek(SeekFrom::Start(self.header_len))
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                action: "seek in",
                source,
            })?;
        Ok(RecordReader {
            store: self,
            reader,
            pos: self.header_len,
            record: 0,
            buf: Vec::new(),
        })
    }
}

/// Streams the samples of a [`DescriptorStore`]; see [`DescriptorStore::iter`].
pub struct SampleIter<'a> {
    reader: RecordReader<'a>,
}

impl Iterator for SampleIter<'_> {
    type Item = Result<Sample, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.next_record() {
            Ok(Some((key, crop, desc))) => Some(Ok(Sample {
                key: key.to_string(),
                crop: crop.to_vec(),
                descriptor: desc
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            })),
            Ok(None) => None,
            Err(e) => {
                // Stop after an error.
                self.reader.pos = self.reader.store.end;
                Some(Err(e))
            }
        }
    }
}

struct RecordReader<'a> {
    store: &'a DescriptorStore,
    reader: BufReader<File>,
    pos: u64,
    record: usize,
    buf: Vec<u8>,
}

impl RecordReader<'_> {
    /// The next indexed record as (key, crop bytes, descriptor bytes); records of a key
    /// already seen earlier in the file are skipped.
    #[allow(clippy::type_complexity)]
    fn next_record(&mut self) -> Result<Option<(&str, &[u8], &[u8])>, StoreError> {
        let spec = &self.store.spec;
        loop {
            if self.pos >= self.store.end {
                return Ok(None);
            }
            let io = |source| StoreError::Io {
                path: self.store.path.clone(),
                action: "read",
                source,
            };
            let mut len4 = [0u8; 4];
            self.reader.read_exact(&mut len4).map_err(io)?;
            let key_len = u32::from_le_bytes(len4) as usize;
            let record_len = spec.record_len(key_len);
            if key_len == 0
                || key_len > MAX_KEY_LEN
                || self.pos + record_len as u64 > self.store.end
            {
                return Err(StoreError::Corrupt {
                    path: self.store.path.clone(),
                    offset: self.pos,
                    record: self.record,
                    reason: format!("key length {key_len}; the file changed since it was opened"),
                });
            }
            self.buf.resize(record_len, 0);
            self.buf[..4].copy_from_slice(&len4);
            self.reader.read_exact(&mut self.buf[4..]).map_err(io)?;
            let offset = self.pos;
            self.pos += record_len as u64;
            self.record += 1;
            let body = record_len - CHECKSUM_LEN;
            if checksum(&self.buf[..body]) != self.buf[body..] {
                return Err(StoreError::Corrupt {
                    path: self.store.path.clone(),
                    offset,
                    record: self.record - 1,
                    reason: "checksum mismatch; the file changed since it was opened".into(),
                });
            }
            let key = std::str::from_utf8(&self.buf[4..4 + key_len]).map_err(|_| {
                StoreError::Corrupt {
                    path: self.store.path.clone(),
                    offset,
                    record: self.record - 1,
                    reason: "key is not UTF-8".into(),
                }
            })?;
            if self.store.index.get(key) != Some(&offset) {
                // A later duplicate of a key (two writers at once) or a record appended by
                // another process after this store was opened: not part of this view.
                continue;
            }
            let crop_end = 4 + key_len + spec.crop_bytes();
            let buf = &self.buf;
            return Ok(Some((
                std::str::from_utf8(&buf[4..4 + key_len]).expect("checked above"),
                &buf[4 + key_len..crop_end],
                &buf[crop_end..body],
            )));
        }
    }
}

/// The first [`CHECKSUM_LEN`] bytes of SHA-256 of `bytes`.
fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let d = Sha256::digest(bytes);
    d[..CHECKSUM_LEN].try_into().expect("8 bytes")
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Reads and checks the header; returns the spec it describes and its length in bytes.
fn read_header(file: &File, path: &Path, file_len: u64) -> Result<(StoreSpec, u64), StoreError> {
    let corrupt = |reason: String| StoreError::CorruptHeader {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        action: "read the header of",
        source,
    };
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut fixed = [0u8; 28];
    if file_len < 8 {
        let mut head = vec![0u8; file_len as usize];
        r.read_exact(&mut head).map_err(io)?;
        if !MAGIC.starts_with(&head) {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        return Err(corrupt(format!("the file is only {file_len} bytes long")));
    }
    if file_len < fixed.len() as u64 {
        let mut head = [0u8; 8];
        r.read_exact(&mut head).map_err(io)?;
        if &head != MAGIC {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        return Err(corrupt(format!("the file is only {file_len} bytes long")));
    }
    r.read_exact(&mut fixed).map_err(io)?;
    if &fixed[..8] != MAGIC {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
        });
    }
    let u = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
    let version = u(8);
    if version != FORMAT_VERSION {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let (descriptor_len, crop_width, crop_height, id_len) = (u(12) as usize, u(16), u(20), u(24));
    let mut pos = fixed.len() as u64;
    // A string of `len` bytes, or (when `len` is `None`) one preceded by its u32 length.
    let mut read_string = |len: Option<usize>, max: usize, what: &str| {
        let len = match len {
            Some(len) => len,
            None => {
                if pos + 4 > file_len {
                    return Err(corrupt(format!("the {what} length is missing")));
                }
                let mut len4 = [0u8; 4];
                r.read_exact(&mut len4).map_err(io)?;
                pos += 4;
                u32::from_le_bytes(len4) as usize
            }
        };
        if len > max || pos + len as u64 > file_len {
            return Err(corrupt(format!(
                "{what} of {len} bytes in a file of {file_len} bytes"
            )));
        }
        let mut bytes = vec![0u8; len];
        r.read_exact(&mut bytes).map_err(io)?;
        pos += len as u64;
        String::from_utf8(bytes).map_err(|_| corrupt(format!("{what} is not UTF-8")))
    };
    let identity = read_string(Some(id_len as usize), MAX_ID_LEN, "oracle identity")?;
    let recipe = read_string(None, MAX_RECIPE_LEN, "recipe")?;
    let spec = StoreSpec {
        identity,
        descriptor_len,
        crop_width,
        crop_height,
        recipe,
    };
    spec.check(path)
        .map_err(|e| corrupt(format!("out-of-range values ({e})")))?;
    Ok((spec, pos))
}

fn compare_specs(path: &Path, stored: &StoreSpec, wanted: &StoreSpec) -> Result<(), StoreError> {
    let mismatch = |field: &'static str, stored: String, wanted: String| {
        Err(StoreError::Mismatch {
            path: path.to_path_buf(),
            field,
            stored,
            wanted,
        })
    };
    if stored.identity != wanted.identity {
        return mismatch(
            "black box",
            format!("'{}'", stored.identity),
            format!("'{}'", wanted.identity),
        );
    }
    if stored.descriptor_len != wanted.descriptor_len {
        return mismatch(
            "descriptor length",
            stored.descriptor_len.to_string(),
            wanted.descriptor_len.to_string(),
        );
    }
    if (stored.crop_width, stored.crop_height) != (wanted.crop_width, wanted.crop_height) {
        return mismatch(
            "crop size",
            format!("{}x{}", stored.crop_width, stored.crop_height),
            format!("{}x{}", wanted.crop_width, wanted.crop_height),
        );
    }
    if stored.recipe != wanted.recipe {
        return mismatch(
            "augmentation recipe",
            format!("'{}'", stored.recipe),
            format!("'{}'", wanted.recipe),
        );
    }
    Ok(())
}

struct Scan {
    index: HashMap<String, u64>,
    /// End of the last whole, checked record.
    valid_end: u64,
}

/// Reads every record after the header, checking lengths and checksums.
///
/// A bad record is a torn tail (and ends the scan) when it runs past the end of the file,
/// is the last record, or only zeros follow from its start; anything else is
/// [`StoreError::Corrupt`].
fn scan_records(
    file: &File,
    path: &Path,
    spec: &StoreSpec,
    header_len: u64,
    file_len: u64,
) -> Result<Scan, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    };
    let mut r = BufReader::with_capacity(READ_BUFFER, file);
    r.seek(SeekFrom::Start(header_len)).map_err(io)?;
    let mut index = HashMap::new();
    let mut pos = header_len;
    let mut record = 0usize;
    let mut buf = Vec::new();
    loop {
        let remaining = file_len - pos;
        if remaining == 0 {
            break;
        }
        if remaining < 4 {
            // Torn inside the length field.
            break;
        }
        let mut len4 = [0u8; 4];
        r.read_exact(&mut len4).map_err(io)?;
        let key_len = u32::from_le_bytes(len4) as usize;
        let bad_reason = if key_len == 0 || key_len > MAX_KEY_LEN {
            Some(format!("key length {key_len}"))
        } else {
            None
        };
        let record_len = spec.record_len(key_len) as u64;
        if bad_reason.is_none() && pos + record_len > file_len {
            // Torn: the record runs past the end of the file.
            break;
        }
        let reason = match bad_reason {
            Some(r) => Some(r),
            None => {
                buf.resize(record_len as usize, 0);
                buf[..4].copy_from_slice(&len4);
                r.read_exact(&mut buf[4..]).map_err(io)?;
                let body = buf.len() - CHECKSUM_LEN;
                if checksum(&buf[..body]) != buf[body..] {
                    Some("checksum mismatch".to_string())
                } else if std::str::from_utf8(&buf[4..4 + key_len]).is_err() {
                    Some("key is not UTF-8".to_string())
                } else {
                    None
                }
            }
        };
        if let Some(reason) = reason {
            let is_last = key_len > 0 && key_len <= MAX_KEY_LEN && pos + record_len == file_len;
            if is_last || zeros_from(file, pos, file_len).map_err(io)? {
                break;
            }
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                offset: pos,
                record,
                reason,
            });
        }
        let key = std::str::from_utf8(&buf[4..4 + key_len]).expect("checked above");
        index.entry(key.to_string()).or_insert(pos);
        pos += record_len;
        record += 1;
    }
    Ok(Scan {
        index,
        valid_end: pos,
    })
}

/// Whether every byte of `file` from `from` to `end` is zero (a crash after the file grew
/// but before its data reached the disk leaves zeros).
fn zeros_from(file: &File, from: u64, end: u64) -> std::io::Result<bool> {
    let mut r = BufReader::with_capacity(READ_BUFFER, file);
    r.seek(SeekFrom::Start(from))?;
    let mut left = end - from;
    let mut chunk = vec![0u8; 1 << 16];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        r.read_exact(&mut chunk[..n])?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StoreSpec {
        StoreSpec {
            identity: "fake".into(),
            descriptor_len: 3,
            crop_width: 2,
            crop_height: 2,
            recipe: "r1".into(),
        }
    }

    fn sample(i: u8) -> (String, Vec<u8>, Vec<f32>) {
        (
            format!("A/A_{i:04}.png#0"),
            vec![i; 12],
            vec![f32::from(i), -1.0, 0.25],
        )
    }

    fn refs(v: &[(String, Vec<u8>, Vec<f32>)]) -> Vec<SampleRef<'_>> {
        v.iter()
            .map(|(k, c, d)| SampleRef {
                key: k,
                crop: c,
                descriptor: d,
            })
            .collect()
    }

    #[test]
    fn a_failed_append_is_cut_back_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DescriptorStore::open(dir.path(), spec()).unwrap();
        let first: Vec<_> = (1..=3).map(sample).collect();
        store.append(&refs(&first)).unwrap();
        let size = std::fs::metadata(store.path()).unwrap().len();

        store.fail_write_after = Some(30);
        let second: Vec<_> = (4..=5).map(sample).collect();
        let err = store.append(&refs(&second)).unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(std::fs::metadata(store.path()).unwrap().len(), size);
        assert_eq!(store.len(), 3);
        assert!(!store.contains(&second[0].0));

        store.fail_write_after = None;
        store.append(&refs(&second)).unwrap();
        drop(store);
        let store = DescriptorStore::open(dir.path(), spec()).unwrap();
        assert_eq!(store.recovered_bytes(), 0);
        assert_eq!(store.len(), 5);
        let all = store.load_all().unwrap();
        assert_eq!(all.keys.len(), 5);
        assert_eq!(all.descriptor(4), &[5.0, -1.0, 0.25]);
    }

    #[test]
    fn bad_samples_refuse_the_whole_call() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DescriptorStore::open(dir.path(), spec()).unwrap();
        let good = sample(1);
        let cases: Vec<(SampleRef<'_>, &str)> = vec![
            (
                SampleRef {
                    key: "",
                    crop: &good.1,
                    descriptor: &good.2,
                },
                "key is 0 bytes",
            ),
            (
                SampleRef {
                    key: "x",
                    crop: &[0; 5],
                    descriptor: &good.2,
                },
                "crop has 5 bytes",
            ),
            (
                SampleRef {
                    key: "x",
                    crop: &good.1,
                    descriptor: &[1.0],
                },
                "expected 3, got 1",
            ),
            (
                SampleRef {
                    key: "x",
                    crop: &good.1,
                    descriptor: &[1.0, f32::NAN, 0.0],
                },
                "not finite",
            ),
        ];
        for (bad, expect) in cases {
            let both = [
                SampleRef {
                    key: &good.0,
                    crop: &good.1,
                    descriptor: &good.2,
                },
                bad,
            ];
            let err = store.append(&both).unwrap_err();
            assert!(err.to_string().contains(expect), "{err}");
            assert!(store.is_empty());
        }
        let dup = [SampleRef {
            key: &good.0,
            crop: &good.1,
            descriptor: &good.2,
        }; 2];
        let err = store.append(&dup).unwrap_err();
        assert!(err.to_string().contains("already stored"), "{err}");
        assert!(store.is_empty());
    }

    #[test]
    fn a_damaged_record_in_the_middle_is_refused_with_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DescriptorStore::open(dir.path(), spec()).unwrap();
        let v: Vec<_> = (1..=3).map(sample).collect();
        store.append(&refs(&v)).unwrap();
        let path = store.path().to_path_buf();
        let header = store.header_len as usize;
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        let rec = spec().record_len(v[0].0.len());
        bytes[header + rec + 20] ^= 0xFF; // inside the crop of record 1
        std::fs::write(&path, &bytes).unwrap();
        let err = DescriptorStore::open(dir.path(), spec()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("byte {}", header + rec)) && msg.contains("record 1"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn a_zero_filled_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DescriptorStore::open(dir.path(), spec()).unwrap();
        let v: Vec<_> = (1..=2).map(sample).collect();
        store.append(&refs(&v)).unwrap();
        let path = store.path().to_path_buf();
        let good_len = std::fs::metadata(&path).unwrap().len();
        drop(store);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&vec![0u8; 3 * spec().record_len(14) + 7])
            .unwrap();
        drop(f);
        let store = DescriptorStore::open(dir.path(), spec()).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        assert!(store.recovered_bytes() > 0);
    }

    #[test]
    fn read_only_view_ignores_a_torn_tail_without_cutting_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DescriptorStore::open(dir.path(), spec()).unwrap();
        let v: Vec<_> = (1..=2).map(sample).collect();
        store.append(&refs(&v)).unwrap();
        let path = store.path().to_path_buf();
        drop(store);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[14, 0, 0, 0, b'A', b'/']).unwrap();
        drop(f);
        let len = std::fs::metadata(&path).unwrap().len();
        let mut ro = DescriptorStore::open_existing(dir.path()).unwrap();
        assert_eq!(ro.spec(), &spec());
        assert_eq!((ro.len(), ro.recovered_bytes()), (2, 6));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert!(matches!(
            ro.append(&refs(&v[..1])),
            Err(StoreError::ReadOnly { .. })
        ));
        let keys: Vec<_> = ro.iter().unwrap().map(|s| s.unwrap().key).collect();
        assert_eq!(keys, vec![v[0].0.clone(), v[1].0.clone()]);
    }
}
