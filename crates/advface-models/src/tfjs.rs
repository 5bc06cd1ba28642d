//! Loader for TensorFlow.js weights manifests (`*-weights_manifest.json` + `.bin` shards).
//!
//! The format, as TF.js `io.decodeWeights` reads it: the manifest is a JSON array of
//! *groups*; each group names its shard files (`paths`, relative to the manifest) and lists
//! its tensors (`weights`) in storage order. The shards of a group are concatenated and the
//! tensors are laid out back to back in that byte stream, little-endian, row-major in the
//! order of `shape` (for convolution filters TF's `[kh, kw, in, out]`).
//!
//! Supported encodings (everything TF.js itself decodes for float and int tensors):
//! - `dtype` `float32` (4 bytes), `int32` (4 bytes), `float16` (2 bytes, decoded to f32);
//! - `quantization.dtype` `uint8` / `uint16` with `min` and `scale`: value = `q * scale +
//!   min`, computed in f64 and rounded to f32 as TF.js does (JavaScript numbers are f64;
//!   the result is stored in a `Float32Array`); for `int32` tensors the result is rounded to
//!   the nearest integer (`Math.round`);
//! - `quantization.dtype` `float16` for `float32` tensors.
//!
//! The loader is strict: the byte count of each group must equal the sum of its shard
//! lengths exactly, names must be unique, and [`TfjsWeights::check`] compares the tensors
//! against the names and shapes a network expects (missing, wrong shape, unexpected). The
//! SHA-256 of every file read is recorded in [`TfjsWeights::files`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Error of the TF.js weights loader. Every variant names the manifest (`source`) it came
/// from, and where it applies the file, the tensor, and what was expected against what was
/// found.
#[derive(Debug, thiserror::Error)]
pub enum TfjsError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// The manifest is not valid JSON of the TF.js manifest format.
    #[error("{source_name}: not a TF.js weights manifest: {reason}")]
    Manifest { source_name: String, reason: String },
    /// A shard named in the manifest was not supplied (embedded weights).
    #[error("{source_name}: shard '{shard}' is named in the manifest but was not supplied")]
    MissingShard { source_name: String, shard: String },
    /// The tensors of a group need a different number of bytes than its shards hold.
    #[error(
        "{source_name}: the tensors of group {group} need {expected} bytes but {files} hold \
         {got} bytes (truncated or wrong .bin file?)"
    )]
    ByteCount {
        source_name: String,
        group: usize,
        files: String,
        expected: u64,
        got: u64,
    },
    /// A tensor uses an encoding this loader (and TF.js) cannot decode.
    #[error("{source_name}: tensor '{tensor}': unsupported encoding: {reason}")]
    Unsupported {
        source_name: String,
        tensor: String,
        reason: String,
    },
    /// Two tensors share a name.
    #[error("{source_name}: tensor '{tensor}' appears more than once in the manifest")]
    DuplicateTensor { source_name: String, tensor: String },
    /// A tensor the network needs is not in the manifest.
    #[error(
        "{source_name}: tensor '{tensor}' (shape {expected:?}) is missing from the manifest \
         ({missing_total} expected tensor(s) missing in all)"
    )]
    MissingTensor {
        source_name: String,
        tensor: String,
        expected: Vec<usize>,
        missing_total: usize,
    },
    /// A tensor has another shape than the network needs.
    #[error("{source_name}: tensor '{tensor}': expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        source_name: String,
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// The manifest holds tensors the network does not use.
    #[error("{source_name}: unexpected tensor(s) not used by the network: {tensors:?}")]
    UnexpectedTensors {
        source_name: String,
        tensors: Vec<String>,
    },
    /// A tensor was asked for with the wrong element type.
    #[error("{source_name}: tensor '{tensor}': expected {expected} values, got {got}")]
    WrongDtype {
        source_name: String,
        tensor: String,
        expected: &'static str,
        got: &'static str,
    },
}

/// One group of the manifest, as written by TF.js.
#[derive(Debug, Clone, Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<WeightSpec>,
}

/// One tensor entry of the manifest.
#[derive(Debug, Clone, Deserialize)]
struct WeightSpec {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<QuantizationSpec>,
}

/// The `quantization` object of a manifest entry.
#[derive(Debug, Clone, Deserialize)]
struct QuantizationSpec {
    dtype: String,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
}

/// The decoded values of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorValues {
    /// `float32` tensors (also `float16` and every quantised float tensor, decoded).
    F32(Vec<f32>),
    /// `int32` tensors (plain or quantised).
    I32(Vec<i32>),
}

impl TensorValues {
    fn kind(&self) -> &'static str {
        match self {
            TensorValues::F32(_) => "float32",
            TensorValues::I32(_) => "int32",
        }
    }
}

/// A decoded tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TfjsTensor {
    /// Shape as in the manifest (TF layout, e.g. `[kh, kw, in, out]` for conv filters).
    pub shape: Vec<usize>,
    /// Values, row-major in the order of `shape`.
    pub values: TensorValues,
}

/// Size and SHA-256 of one file the weights were read from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileDigest {
    /// File name as the manifest names it (the manifest itself: its file name).
    pub name: String,
    /// Length in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the contents.
    pub sha256: String,
}

/// All tensors of a TF.js weights manifest, decoded to f32 / i32.
#[derive(Debug, Clone)]
pub struct TfjsWeights {
    source_name: String,
    tensors: BTreeMap<String, TfjsTensor>,
    files: Vec<FileDigest>,
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl TfjsWeights {
    /// Reads a manifest and its shards from disk; shard paths are relative to the
    /// manifest's folder.
    pub fn read(manifest_path: &Path) -> Result<Self, TfjsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TfjsError::Io {
                path: p.to_path_buf(),
                reason: e.to_string(),
            })
        };
        let manifest = read(manifest_path)?;
        let source_name = manifest_path.display().to_string();
        let groups = parse_manifest(&source_name, &manifest)?;
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<(String, Vec<u8>)> = Vec::new();
        for g in &groups {
            for p in &g.paths {
                if !shards.iter().any(|(name, _)| name == p) {
                    shards.push((p.clone(), read(&dir.join(p))?));
                }
            }
        }
        let shard_refs: Vec<(&str, &[u8])> = shards
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let manifest_name = file_name(manifest_path);
        Self::decode(source_name, &manifest_name, &manifest, groups, &shard_refs)
    }

    /// Decodes a manifest and its shards held in memory (for weights built into the binary
    /// with `include_bytes!`).
    ///
    /// `source_name` is used in messages; `shards` maps each path named in the manifest to
    /// its bytes.
    pub fn from_memory(
        source_name: &str,
        manifest: &[u8],
        shards: &[(&str, &[u8])],
    ) -> Result<Self, TfjsError> {
        let groups = parse_manifest(source_name, manifest)?;
        let manifest_name = source_name
            .rsplit('/')
            .next()
            .unwrap_or(source_name)
            .to_string();
        Self::decode(
            source_name.to_string(),
            &manifest_name,
            manifest,
            groups,
            shards,
        )
    }

    fn decode(
        source_name: String,
        manifest_name: &str,
        manifest: &[u8],
        groups: Vec<ManifestGroup>,
        shards: &[(&str, &[u8])],
    ) -> Result<Self, TfjsError> {
        let mut files = vec![FileDigest {
            name: manifest_name.to_string(),
            bytes: manifest.len() as u64,
            sha256: sha256_hex(manifest),
        }];
        let mut tensors = BTreeMap::new();
        for (gi, group) in groups.into_iter().enumerate() {
            // Concatenate the group's shards, as TF.js does.
            let mut bytes = Vec::new();
            for p in &group.paths {
                let data = shards
                    .iter()
                    .find(|(name, _)| name == p)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| TfjsError::MissingShard {
                        source_name: source_name.clone(),
                        shard: p.clone(),
                    })?;
                if !files.iter().any(|f| &f.name == p) {
                    files.push(FileDigest {
                        name: p.clone(),
                        bytes: data.len() as u64,
                        sha256: sha256_hex(data),
                    });
                }
                bytes.extend_from_slice(data);
            }
            let mut expected: u64 = 0;
            let mut sizes = Vec::with_capacity(group.weights.len());
            for spec in &group.weights {
                let n = byte_len(&source_name, spec)?;
                sizes.push(n);
                expected += n as u64;
            }
            if expected != bytes.len() as u64 {
                return Err(TfjsError::ByteCount {
                    source_name,
                    group: gi,
                    files: group.paths.join(" + "),
                    expected,
                    got: bytes.len() as u64,
                });
            }
            let mut offset = 0usize;
            for (spec, n) in group.weights.into_iter().zip(sizes) {
                let values = decode_values(&source_name, &spec, &bytes[offset..offset + n])?;
                offset += n;
                if tensors.contains_key(&spec.name) {
                    return Err(TfjsError::DuplicateTensor {
                        source_name,
                        tensor: spec.name,
                    });
                }
                tensors.insert(
                    spec.name,
                    TfjsTensor {
                        shape: spec.shape,
                        values,
                    },
                );
            }
        }
        Ok(Self {
            source_name,
            tensors,
            files,
        })
    }

    /// Where the weights came from (the manifest path, or the name given to
    /// [`from_memory`](Self::from_memory)).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Size and SHA-256 of the manifest (first) and of every shard, in manifest order.
    pub fn files(&self) -> &[FileDigest] {
        &self.files
    }

    /// The decoded tensors by name.
    pub fn tensors(&self) -> &BTreeMap<String, TfjsTensor> {
        &self.tensors
    }

    /// Checks the tensors against what a network expects: every expected name present with
    /// exactly the expected shape, and no other tensor in the manifest.
    ///
    /// Reports the first missing tensor (and how many are missing), else the first shape
    /// mismatch, else all unexpected names.
    pub fn check(&self, expected: &[(&str, Vec<usize>)]) -> Result<(), TfjsError> {
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, _)| !self.tensors.contains_key(*name))
            .collect();
        if let Some((name, shape)) = missing.first() {
            return Err(TfjsError::MissingTensor {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
                expected: shape.clone(),
                missing_total: missing.len(),
            });
        }
        for (name, shape) in expected {
            let got = &self.tensors[*name].shape;
            if got != shape {
                return Err(TfjsError::ShapeMismatch {
                    source_name: self.source_name.clone(),
                    tensor: name.to_string(),
                    expected: shape.clone(),
                    got: got.clone(),
                });
            }
        }
        let unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !expected.iter().any(|(name, _)| name == k))
            .cloned()
            .collect();
        if !unexpected.is_empty() {
            return Err(TfjsError::UnexpectedTensors {
                source_name: self.source_name.clone(),
                tensors: unexpected,
            });
        }
        Ok(())
    }

    /// The values of a float tensor with the given shape.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<&[f32], TfjsError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| TfjsError::MissingTensor {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                missing_total: 1,
            })?;
        if t.shape != shape {
            return Err(TfjsError::ShapeMismatch {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                got: t.shape.clone(),
            });
        }
        match &t.values {
            TensorValues::F32(v) => Ok(v),
            other => Err(TfjsError::WrongDtype {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
                expected: "float32",
                got: other.kind(),
            }),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn parse_manifest(source_name: &str, bytes: &[u8]) -> Result<Vec<ManifestGroup>, TfjsError> {
    serde_json::from_slice(bytes).map_err(|e| TfjsError::Manifest {
        source_name: source_name.to_string(),
        reason: e.to_string(),
    })
}

/// Bytes one manifest entry occupies in its group's byte stream.
fn byte_len(source_name: &str, spec: &WeightSpec) -> Result<usize, TfjsError> {
    let unsupported = |reason: String| TfjsError::Unsupported {
        source_name: source_name.to_string(),
        tensor: spec.name.clone(),
        reason,
    };
    let count = spec
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| unsupported(format!("shape {:?} overflows", spec.shape)))?;
    let per_value = match &spec.quantization {
        Some(q) => match q.dtype.as_str() {
            "uint8" => 1,
            "uint16" | "float16" => 2,
            other => {
                return Err(unsupported(format!(
                    "quantization dtype '{other}' (TF.js knows uint8, uint16, float16)"
                )))
            }
        },
        None => match spec.dtype.as_str() {
            "float32" | "int32" => 4,
            "float16" => 2,
            other => {
                return Err(unsupported(format!(
                    "dtype '{other}' (this loader reads float32, float16, int32)"
                )))
            }
        },
    };
    count
        .checked_mul(per_value)
        .ok_or_else(|| unsupported(format!("shape {:?} overflows", spec.shape)))
}

/// Decodes one tensor from exactly its bytes (length checked by the caller).
fn decode_values(
    source_name: &str,
    spec: &WeightSpec,
    bytes: &[u8],
) -> Result<TensorValues, TfjsError> {
    let unsupported = |reason: String| TfjsError::Unsupported {
        source_name: source_name.to_string(),
        tensor: spec.name.clone(),
        reason,
    };
    let u16s = || {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    let Some(q) = &spec.quantization else {
        return Ok(match spec.dtype.as_str() {
            "float32" => TensorValues::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            "int32" => TensorValues::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            "float16" => {
                TensorValues::F32(u16s().map(|h| half::f16::from_bits(h).to_f32()).collect())
            }
            other => return Err(unsupported(format!("dtype '{other}'"))),
        });
    };
    if q.dtype == "float16" {
        if spec.dtype != "float32" {
            return Err(unsupported(format!(
                "float16 quantization of a '{}' tensor (TF.js allows it for float32 only)",
                spec.dtype
            )));
        }
        return Ok(TensorValues::F32(
            u16s().map(|h| half::f16::from_bits(h).to_f32()).collect(),
        ));
    }
    let (Some(scale), Some(min)) = (q.scale, q.min) else {
        return Err(unsupported(format!(
            "{} quantization without 'min' and 'scale'",
            q.dtype
        )));
    };
    let raw: Vec<f64> = match q.dtype.as_str() {
        "uint8" => bytes.iter().map(|&b| f64::from(b)).collect(),
        "uint16" => u16s().map(f64::from).collect(),
        other => return Err(unsupported(format!("quantization dtype '{other}'"))),
    };
    match spec.dtype.as_str() {
        // TF.js: `values[i] = v * scale + min` in f64, stored into a Float32Array.
        "float32" => Ok(TensorValues::F32(
            raw.into_iter().map(|v| (v * scale + min) as f32).collect(),
        )),
        // TF.js: `Math.round(v * scale + min)` (round half up).
        "int32" => Ok(TensorValues::I32(
            raw.into_iter()
                .map(|v| (v * scale + min + 0.5).floor() as i32)
                .collect(),
        )),
        other => Err(unsupported(format!(
            "{} quantization of a '{other}' tensor",
            q.dtype
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(weights: &str, path: &str) -> String {
        format!(r#"[{{"paths": ["{path}"], "weights": [{weights}]}}]"#)
    }

    #[test]
    fn decodes_every_supported_encoding() {
        let w = r#"
            {"name": "f", "shape": [2], "dtype": "float32"},
            {"name": "i", "shape": [1], "dtype": "int32"},
            {"name": "h", "shape": [1], "dtype": "float16"},
            {"name": "q8", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
            {"name": "q16", "shape": [1], "dtype": "float32",
             "quantization": {"dtype": "uint16", "scale": 0.25, "min": 1.0}},
            {"name": "qh", "shape": [1], "dtype": "float32", "quantization": {"dtype": "float16"}},
            {"name": "qi", "shape": [1], "dtype": "int32",
             "quantization": {"dtype": "uint8", "scale": 0.5, "min": 0.0}}"#;
        let m = manifest(w, "w.bin");
        let mut bin = Vec::new();
        bin.extend(1.5f32.to_le_bytes());
        bin.extend((-2.0f32).to_le_bytes());
        bin.extend((-7i32).to_le_bytes());
        bin.extend(half::f16::from_f32(0.5).to_bits().to_le_bytes());
        bin.extend([0u8, 3]);
        bin.extend(8u16.to_le_bytes());
        bin.extend(half::f16::from_f32(-3.0).to_bits().to_le_bytes());
        bin.push(5); // 2.5 rounds half up to 3, as Math.round
        let w = TfjsWeights::from_memory("mem/m.json", m.as_bytes(), &[("w.bin", &bin)]).unwrap();
        let t = w.tensors();
        assert_eq!(t["f"].values, TensorValues::F32(vec![1.5, -2.0]));
        assert_eq!(t["i"].values, TensorValues::I32(vec![-7]));
        assert_eq!(t["h"].values, TensorValues::F32(vec![0.5]));
        assert_eq!(t["q8"].values, TensorValues::F32(vec![-1.0, 0.5]));
        assert_eq!(t["q16"].values, TensorValues::F32(vec![3.0]));
        assert_eq!(t["qh"].values, TensorValues::F32(vec![-3.0]));
        assert_eq!(t["qi"].values, TensorValues::I32(vec![3]));
        assert_eq!(w.files().len(), 2);
        assert_eq!(w.files()[1].bytes, bin.len() as u64);
        assert_eq!(w.files()[1].sha256, sha256_hex(&bin));
    }

    #[test]
    fn shards_are_concatenated_and_tensors_may_span_them() {
        let m = r#"[{"paths": ["a.bin", "b.bin"],
                     "weights": [{"name": "x", "shape": [2], "dtype": "float32"}]}]"#;
        let bytes: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (a, b) = bytes.split_at(6);
        let w = TfjsWeights::from_memory("m", m.as_bytes(), &[("a.bin", a), ("b.bin", b)]).unwrap();
        assert_eq!(w.f32("x", &[2]).unwrap(), &[1.0, 2.0]);
    }

    #[test]
    fn wrong_byte_count_names_the_file_and_both_sizes() {
        let m = manifest(
            r#"{"name": "x", "shape": [3], "dtype": "float32"}"#,
            "w.bin",
        );
        let err =
            TfjsWeights::from_memory("m.json", m.as_bytes(), &[("w.bin", &[0u8; 11])]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                TfjsError::ByteCount {
                    expected: 12,
                    got: 11,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("w.bin") && msg.contains("12") && msg.contains("11"),
            "{msg}"
        );
    }

    #[test]
    fn strict_check_reports_missing_shape_and_unexpected() {
        let m = manifest(
            r#"{"name": "a", "shape": [2], "dtype": "float32"},
               {"name": "b", "shape": [1], "dtype": "float32"}"#,
            "w.bin",
        );
        let w = TfjsWeights::from_memory("m.json", m.as_bytes(), &[("w.bin", &[0u8; 12])]).unwrap();
        let err = w.check(&[("a", vec![2]), ("c", vec![4])]).unwrap_err();
        assert!(err.to_string().contains("'c'"), "{err}");
        let err = w.check(&[("a", vec![3]), ("b", vec![1])]).unwrap_err();
        assert!(
            matches!(&err, TfjsError::ShapeMismatch { tensor, expected, got, .. }
                if tensor == "a" && expected == &[3] && got == &[2]),
            "{err}"
        );
        let err = w.check(&[("a", vec![2])]).unwrap_err();
        assert!(
            matches!(&err, TfjsError::UnexpectedTensors { tensors, .. } if tensors == &["b"]),
            "{err}"
        );
        w.check(&[("a", vec![2]), ("b", vec![1])]).unwrap();
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let bad = TfjsWeights::from_memory("m.json", b"{not json", &[]).unwrap_err();
        assert!(matches!(bad, TfjsError::Manifest { .. }), "{bad}");
        let m = manifest(r#"{"name": "s", "shape": [1], "dtype": "string"}"#, "w.bin");
        let err = TfjsWeights::from_memory("m.json", m.as_bytes(), &[("w.bin", &[])]).unwrap_err();
        assert!(matches!(err, TfjsError::Unsupported { .. }), "{err}");
        let m = manifest(
            r#"{"name": "q", "shape": [1], "dtype": "float32", "quantization": {"dtype": "uint8"}}"#,
            "w.bin",
        );
        let err = TfjsWeights::from_memory("m.json", m.as_bytes(), &[("w.bin", &[0])]).unwrap_err();
        assert!(err.to_string().contains("min"), "{err}");
        let m = manifest(
            r#"{"name": "x", "shape": [1], "dtype": "float32"}"#,
            "w.bin",
        );
        let err = TfjsWeights::from_memory("m.json", m.as_bytes(), &[]).unwrap_err();
        assert!(matches!(err, TfjsError::MissingShard { .. }), "{err}");
        let m = r#"[{"paths": ["w.bin"], "weights": [
            {"name": "x", "shape": [1], "dtype": "float32"},
            {"name": "x", "shape": [1], "dtype": "float32"}]}]"#;
        let err =
            TfjsWeights::from_memory("m.json", m.as_bytes(), &[("w.bin", &[0; 8])]).unwrap_err();
        assert!(matches!(err, TfjsError::DuplicateTensor { .. }), "{err}");
    }

    #[test]
    fn missing_file_on_disk_names_the_path() {
        let err = TfjsWeights::read(Path::new("/nonexistent/m.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/m.json"), "{err}");
    }
}
