//! The repository's committed files, found from this crate's manifest (so any crate's test,
//! run from anywhere, finds them), and copies a test may change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The committed golden data, `fixtures/` (each file made by a script under `tools/`).
pub fn fixtures() -> PathBuf {
    repo_root().join("fixtures")
}

/// The fixture LFW tree, `fixtures/lfw` (43 deep-funneled JPEGs under
/// `images_deepfunneled/`; Al_Sharpton and Jose_Maria_Aznar, 5 images each, are its attack
/// identities, the other 33 images its distillation pool).
pub fn fixture_lfw() -> PathBuf {
    fixtures().join("lfw")
}

/// Copies the fixture LFW tree's `images_deepfunneled/` to `dst/images_deepfunneled/`, so a
/// test can add or damage files.
pub fn copy_lfw(dst: &Path) {
    copy_dir(
        &fixture_lfw().join("images_deepfunneled"),
        &dst.join("images_deepfunneled"),
    );
}

/// Copies the folder `from` to `to` (created), recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes, by path relative to `dir`.
pub fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// One image of `fixtures/lfw/pillow_crops.json` (made by tools/make_crop_fixture.py):
/// what Pillow decodes and crops.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PillowCrop {
    /// The JPEG, relative to `images_deepfunneled/` (`Name/Name_0001.jpg`).
    pub path: String,
    /// SHA-256 (hex) of the 112 x 112 protocol crop's RGB bytes.
    pub sha256_rgb: String,
    /// SHA-256 (hex) of the full 250 x 250 image's RGB bytes.
    pub sha256_full_rgb: String,
}

/// Every image of `fixtures/lfw/pillow_crops.json`.
pub fn pillow_crops() -> Vec<PillowCrop> {
    #[derive(serde::Deserialize)]
    struct File {
        images: Vec<PillowCrop>,
    }
    let path = fixture_lfw().join("pillow_crops.json");
    let f: File = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f.images
}
