//! A descriptor cache in front of an oracle, in memory and optionally on disk.
//!
//! # File format
//! `<dir>/descriptors.bin`, append-only, all integers little-endian:
//!
//! ```text
//! header:  b"ADVFDSC1"  u32 descriptor_len  u32 id_len  id (UTF-8, id_len bytes)
//! record:  key [32 bytes]  u32 len (= descriptor_len)  len x f32
//! ```
//!
//! `key` is [`cache_key`]: SHA-256 of the image's width and height (u32 LE each) and its
//! pixel bytes (HWC). Each call appends its new records with one write, so a crash can only
//! leave a torn final record; opening the cache drops it (and says how many bytes it dropped
//! in [`Cached::recovered_bytes`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use advface_core::{Descriptor, Oracle, OracleError, QueryStats, RgbImage};
use sha2::{Digest, Sha256};

/// Name of the cache file inside the cache folder.
pub const CACHE_FILE_NAME: &str = "descriptors.bin";

/// First bytes of a cache file (format version 1).
const MAGIC: &[u8; 8] = b"ADVFDSC1";

/// Longest oracle identity stored in a header, in bytes.
const MAX_ID_LEN: usize = 4096;

/// Cache key of an image: SHA-256 of width (u32 LE), height (u32 LE) and the HWC bytes.
pub fn cache_key(image: &RgbImage) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(image.width().to_le_bytes());
    h.update(image.height().to_le_bytes());
    h.update(image.as_bytes());
    h.finalize().into()
}

/// An oracle whose answers are remembered, so that asking again for an image costs nothing.
///
/// Cached answers are not queries: [`stats`](Oracle::stats) reports them as `cached`, and
/// its `queries` are the inner oracle's. A call with some cached images asks the inner
/// oracle only for the others, and asks once for an image that appears several times in
/// the call. Two threads that miss the same image at the same moment may both ask for it.
///
/// With a folder ([`open`](Self::open)) answers persist on disk; see the module docs for
/// the format. Only one process should use a cache folder at a time.
pub struct Cached<O> {
    inner: O,
    identity: String,
    descriptor_len: Option<usize>,
    map: Mutex<HashMap<[u8; 32], Descriptor>>,
    file: Option<Mutex<File>>,
    path: Option<PathBuf>,
    hits: AtomicU64,
    recovered_bytes: u64,
}

impl<O> std::fmt::Debug for Cached<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("identity", &self.identity)
            .field("path", &self.path)
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<O: Oracle> Cached<O> {
    /// A cache kept in memory only, lost when dropped.
    pub fn in_memory(inner: O) -> Self {
        Self {
            identity: inner.name(),
            descriptor_len: inner.descriptor_len(),
            inner,
            map: Mutex::new(HashMap::new()),
            file: None,
            path: None,
            hits: AtomicU64::new(0),
            recovered_bytes: 0,
        }
    }

    /// Opens (or creates) the cache in folder `dir` for `inner`, identified by its
    /// [`name`](Oracle::name).
    ///
    /// Refuses a cache made by another oracle or with another descriptor length, and an
    /// oracle that does not state its descriptor length.
    pub fn open(inner: O, dir: &Path) -> Result<Self, OracleError> {
        let identity = inner.name();
        Self::open_as(inner, dir, &identity)
    }

    /// Like [`open`](Self::open) with an explicit oracle identity, for an oracle whose name
    /// changes between runs while its answers do not (an HTTP black box on another port).
    pub fn open_as(inner: O, dir: &Path, identity: &str) -> Result<Self, OracleError> {
        let path = dir.join(CACHE_FILE_NAME);
        let err = |reason: String| OracleError::Cache {
            path: path.display().to_string(),
            reason,
        };
        let Some(descriptor_len) = inner.descriptor_len() else {
            return Err(err(format!(
                "oracle '{}' does not state its descriptor length, so its cache cannot be \
                 checked; use an oracle that does",
                inner.name()
            )));
        };
        if identity.len() > MAX_ID_LEN {
            return Err(err(format!(
                "oracle identity is {} bytes, the most is {MAX_ID_LEN}",
                identity.len()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create the folder: {e}")))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| err(format!("cannot open: {e}")))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| err(format!("cannot read: {e}")))?;

        let header = header_bytes(identity, descriptor_len);
        let mut map = HashMap::new();
        let mut recovered_bytes = 0;
        if bytes.len() < header.len() && header.starts_with(&bytes) {
            // New, or a crash while the header was being written: (re)write it.
            recovered_bytes = bytes.len() as u64;
            truncate(&file, 0).map_err(|e| err(format!("cannot truncate: {e}")))?;
            file.write_all(&header)
                .map_err(|e| err(format!("cannot write the header: {e}")))?;
        } else {
            let records = parse(&bytes, identity, descriptor_len).map_err(err)?;
            for (key, d) in records.entries {
                map.insert(key, d);
            }
            if records.valid_len < bytes.len() {
                recovered_bytes = (bytes.len() - records.valid_len) as u64;
                truncate(&file, records.valid_len as u64).map_err(|e| {
                    err(format!(
                        "cannot drop the torn final record (at byte {}): {e}",
                        records.valid_len
                    ))
                })?;
            }
        }
        Ok(Self {
            inner,
            identity: identity.to_string(),
            descriptor_len: Some(descriptor_len),
            map: Mutex::new(map),
            file: Some(Mutex::new(file)),
            path: Some(path),
            hits: AtomicU64::new(0),
            recovered_bytes,
        })
    }

    /// The cache file, when the cache lives on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of images with a cached answer.
    pub fn len(&self) -> usize {
        self.lock_map().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of a torn final record (or header) dropped when the file was opened; 0 when
    /// the file was whole.
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    /// The identity the cache file was opened for.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The wrapped oracle.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    fn lock_map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Descriptor>> {
        // A panic elsewhere while holding the lock leaves the map consistent (inserts are
        // single operations), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_error(&self, reason: String) -> OracleError {
        OracleError::Cache {
            path: self
                .path
                .as_ref()
                .map_or_else(|| "<memory>".to_string(), |p| p.display().to_string()),
            reason,
        }
    }

    /// Appends records for `new` (already in the map) with one write.
    fn append(&self, new: &[([u8; 32], Descriptor)]) -> Result<(), OracleError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if new.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for (key, d) in new {
            buf.extend_from_slice(key);
            buf.extend_from_slice(&(d.len() as u32).to_le_bytes());
            for v in d.as_slice() {
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&buf)
            .and_then(|()| file.flush())
            .map_err(|e| {
                self.cache_error(format!(
                    "cannot append {} record(s): {e} (the answers are kept in memory for this \
                     run; check the disk)",
                    new.len()
                ))
            })
    }
}

impl<O: Oracle> Oracle for Cached<O> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn descriptor_len(&self) -> Option<usize> {
        self.descriptor_len.or_else(|| self.inner.descriptor_len())
    }

    /// Answers cached images from the cache and asks the inner oracle for the others.
    ///
    /// New answers are added to memory first and then appended to the file; if the append
    /// fails the call fails with [`OracleError::Cache`], but asking again is answered from
    /// memory without a query.
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        let keys: Vec<[u8; 32]> = images.iter().map(cache_key).collect();
        let mut out: Vec<Option<Descriptor>> = {
            let map = self.lock_map();
            keys.iter().map(|k| map.get(k).cloned()).collect()
        };
        // Distinct missing images, in order of first appearance.
        let mut miss_slot: HashMap<[u8; 32], usize> = HashMap::new();
        let mut miss_images: Vec<RgbImage> = Vec::new();
        let mut miss_keys: Vec<[u8; 32]> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if out[i].is_none() && !miss_slot.contains_key(key) {
                miss_slot.insert(*key, miss_images.len());
                miss_images.push(images[i].clone());
                miss_keys.push(*key);
            }
        }
        if !miss_images.is_empty() {
            let answers = self.inner.describe(&miss_images)?;
            if answers.len() != miss_images.len() {
                return Err(OracleError::Model {
                    oracle: self.inner.name(),
                    reason: format!(
                        "answered {} descriptors for {} images",
                        answers.len(),
                        miss_images.len()
                    ),
                });
            }
            if let Some(expected) = self.descriptor_len {
                if let Some(bad) = answers.iter().find(|d| d.len() != expected) {
                    return Err(OracleError::Model {
                        oracle: self.inner.name(),
                        reason: format!(
                            "descriptor length mismatch: expected {expected}, got {} (not cached)",
                            bad.len()
                        ),
                    });
                }
            }
            for (i, key) in keys.iter().enumerate() {
                if out[i].is_none() {
                    out[i] = Some(answers[miss_slot[key]].clone());
                }
            }
            let mut new = Vec::with_capacity(answers.len());
            {
                let mut map = self.lock_map();
                for (key, d) in miss_keys.into_iter().zip(answers) {
                    if let std::collections::hash_map::Entry::Vacant(v) = map.entry(key) {
                        v.insert(d.clone());
                        new.push((key, d));
                    }
                }
            }
            self.append(&new)?;
        }
        self.hits
            .fetch_add((images.len() - miss_images.len()) as u64, Ordering::Relaxed);
        Ok(out
            .into_iter()
            .map(|d| d.expect("every slot filled"))
            .collect())
    }

    fn stats(&self) -> QueryStats {
        let inner = self.inner.stats();
        QueryStats {
            queries: inner.queries,
            cached: inner.cached + self.hits.load(Ordering::Relaxed),
        }
    }
}

fn header_bytes(identity: &str, descriptor_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + identity.len());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&(descriptor_len as u32).to_le_bytes());
    h.extend_from_slice(&(identity.len() as u32).to_le_bytes());
    h.extend_from_slice(identity.as_bytes());
    h
}

fn truncate(file: &File, len: u64) -> std::io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

struct Parsed {
    entries: Vec<([u8; 32], Descriptor)>,
    /// Bytes up to the end of the last whole record.
    valid_len: usize,
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a whole cache file; a torn final record is left out of `valid_len`.
fn parse(bytes: &[u8], identity: &str, descriptor_len: usize) -> Result<Parsed, String> {
    let fix = "use another cache folder, or delete the file to start a fresh cache";
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(format!(
            "not an advface descriptor cache (the file does not start with {:?}); {fix}",
            String::from_utf8_lossy(MAGIC)
        ));
    }
    let file_len = read_u32(bytes, 8) as usize;
    let id_len = read_u32(bytes, 12) as usize;
    if id_len > MAX_ID_LEN || bytes.len() < 16 + id_len {
        return Err(format!(
            "corrupt header (oracle identity of {id_len} bytes in a file of {} bytes); {fix}",
            bytes.len()
        ));
    }
    let file_id = String::from_utf8_lossy(&bytes[16..16 + id_len]);
    if file_id != identity {
        return Err(format!(
            "made by oracle '{file_id}', refusing to use it for oracle '{identity}'; {fix}"
        ));
    }
    if file_len != descriptor_len {
        return Err(format!(
            "holds descriptors of length {file_len}, this oracle gives {descriptor_len}; {fix}"
        ));
    }
    let record_len = 32 + 4 + 4 * descriptor_len;
    let mut pos = 16 + id_len;
    let mut entries = Vec::new();
    while bytes.len() - pos >= record_len {
        let len = read_u32(bytes, pos + 32) as usize;
        if len != descriptor_len {
            return Err(format!(
                "corrupt record at byte {pos}: length {len}, expected {descriptor_len} (truncate \
                 the file to {pos} bytes to keep the records before it, or delete it)"
            ));
        }
        let key: [u8; 32] = bytes[pos..pos + 32].try_into().expect("32 bytes");
        let values = bytes[pos + 36..pos + record_len]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        entries.push((key, Descriptor(values)));
        pos += record_len;
    }
    Ok(Parsed {
        entries,
        valid_len: pos,
    })
}
