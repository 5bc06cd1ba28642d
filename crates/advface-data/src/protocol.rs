//! Who is attacked, who trains students, and the pairs (PROTOCOL.md, "Data").

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::pairs::Pair;

/// An identity is attacked when it has at least this many images (and its name hashes low).
pub const MIN_ATTACK_IMAGES: usize = 5;

/// Number of source (and target) images of a pair.
pub const IMAGES_PER_SIDE: usize = 5;

/// Errors reading an LFW folder.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error(
        "LFW folder {path} not found or has no images_deepfunneled/ inside \
         (pass --lfw pointing at the folder that holds images_deepfunneled, e.g. ../shared/data/lfw)"
    )]
    MissingLfw { path: PathBuf },
    #[error("cannot list {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: a name that is not UTF-8; LFW names are ASCII (is this the right folder?)")]
    BadName { path: PathBuf },
}

/// True when `name` is an attack identity by its hash: the first byte of SHA-256 of the
/// UTF-8 name is below 0x80 (the image-count condition is checked by [`Protocol`]).
pub fn is_attack_identity(name: &str) -> bool {
    Sha256::digest(name.as_bytes())[0] < 0x80
}

/// The images of LFW deep-funneled, by identity.
#[derive(Debug, Clone)]
pub struct LfwIndex {
    /// The folder that holds `images_deepfunneled/`.
    pub root: PathBuf,
    /// Identities sorted by name (byte order), each with its `.jpg` file names sorted.
    pub identities: Vec<(String, Vec<String>)>,
}

impl LfwIndex {
    /// Lists `root/images_deepfunneled/<Name>/*.jpg`.
    pub fn scan(root: &Path) -> Result<Self, ProtocolError> {
        let images = root.join("images_deepfunneled");
        if !images.is_dir() {
            return Err(ProtocolError::MissingLfw {
                path: root.to_path_buf(),
            });
        }
        let list = |p: &Path| -> Result<Vec<std::fs::DirEntry>, ProtocolError> {
            std::fs::read_dir(p)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|source| ProtocolError::List {
                    path: p.to_path_buf(),
                    source,
                })
        };
        let mut identities = Vec::new();
        for entry in list(&images)? {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| ProtocolError::BadName { path: path.clone() })?;
            let mut files = Vec::new();
            for f in list(&path)? {
                let fname = f
                    .file_name()
                    .into_string()
                    .map_err(|_| ProtocolError::BadName { path: f.path() })?;
                if fname.ends_with(".jpg") && f.path().is_file() {
                    files.push(fname);
                }
            }
            files.sort();
            if !files.is_empty() {
                identities.push((name, files));
            }
        }
        identities.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(Self {
            root: root.to_path_buf(),
            identities,
        })
    }

    /// Path of an image: `root/images_deepfunneled/<name>/<file>`.
    pub fn image_path(&self, name: &str, file: &str) -> PathBuf {
        self.root.join("images_deepfunneled").join(name).join(file)
    }

    /// Number of images.
    pub fn image_count(&self) -> usize {
        self.identities.iter().map(|(_, f)| f.len()).sum()
    }
}

/// The crops-relative path of an LFW image: `<Name>/<stem>.png`.
pub fn crop_rel_path(name: &str, file: &str) -> String {
    let stem = file.strip_suffix(".jpg").unwrap_or(file);
    format!("{name}/{stem}.png")
}

/// The protocol derived from an LFW index.
#[derive(Debug, Clone)]
pub struct Protocol {
    /// Attack identities, sorted by name (byte order), with their sorted file names.
    pub attack: Vec<(String, Vec<String>)>,
    /// Every image of every other identity: `(name, file)`, sorted.
    pub pool: Vec<(String, String)>,
    /// All pairs, in protocol order.
    pub pairs: Vec<Pair>,
}

impl Protocol {
    /// Applies PROTOCOL.md to an index.
    pub fn from_index(index: &LfwIndex) -> Self {
        let mut attack = Vec::new();
        let mut pool = Vec::new();
        for (name, files) in &index.identities {
            if files.len() >= MIN_ATTACK_IMAGES && is_attack_identity(name) {
                attack.push((name.clone(), files.clone()));
            } else {
                pool.extend(files.iter().map(|f| (name.clone(), f.clone())));
            }
        }
        let n = attack.len();
        let side = |i: usize| -> Vec<String> {
            let (name, files) = &attack[i];
            files[..IMAGES_PER_SIDE]
                .iter()
                .map(|f| crop_rel_path(name, f))
                .collect()
        };
        let pairs = (0..n)
            .map(|i| Pair {
                sources: side(i),
                targets: side((i + n / 2) % n),
            })
            .collect();
        Self {
            attack,
            pool,
            pairs,
        }
    }

    /// Number of attack images (all images of all attack identities).
    pub fn attack_image_count(&self) -> usize {
        self.attack.iter().map(|(_, f)| f.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_hash_rule() {
        // SHA-256("Aaron_Peirsol") starts with 0x16? whatever it is, the rule is the first
        // byte of the digest compared with 0x80; check against an independent computation.
        for name in ["Aaron_Peirsol", "George_W_Bush", "Colin_Powell", "Zico"] {
            let first = Sha256::digest(name.as_bytes())[0];
            assert_eq!(is_attack_identity(name), first < 0x80, "{name}");
        }
    }

    #[test]
    fn pairs_follow_the_protocol_rule() {
        let mut ids = Vec::new();
        // Make 6 attack-eligible names and 1 small identity.
        let mut k = 0;
        while ids.len() < 6 {
            let name = format!("Person_{k:03}");
            if is_attack_identity(&name) {
                let files = (1..=6).map(|i| format!("{name}_{i:04}.jpg")).collect();
                ids.push((name, files));
            }
            k += 1;
        }
        ids.push(("Solo".to_string(), vec!["Solo_0001.jpg".to_string()]));
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        let index = LfwIndex {
            root: PathBuf::from("/nowhere"),
            identities: ids,
        };
        let p = Protocol::from_index(&index);
        assert_eq!(p.attack.len(), 6);
        assert_eq!(
            p.pool,
            vec![("Solo".to_string(), "Solo_0001.jpg".to_string())]
        );
        assert_eq!(p.pairs.len(), 6);
        // n = 6: pair i has target (i + 3) % 6.
        let name = |i: usize| p.attack[i].0.clone();
        assert_eq!(
            p.pairs[4].targets[0],
            format!("{}/{}_0001.png", name(1), name(1))
        );
        assert_eq!(
            p.pairs[0].sources[4],
            format!("{}/{}_0005.png", name(0), name(0))
        );
    }
}
