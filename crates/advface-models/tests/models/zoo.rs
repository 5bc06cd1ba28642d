//! The zoo: every name a command accepts resolves to the model and the provenance strings
//! runs record, and every bad name is an error that names the file and the fix.

use std::path::{Path, PathBuf};

use advface_core::{PixelBatch, RgbImage};
use advface_models::faceapi::{BIN_FILE, FACEAPI_BIN_SHA256, MANIFEST_FILE};
use advface_models::tfjs::sha256_hex;
use advface_models::zoo::{ModelSource, Zoo, ZooError, SHIPPED_STUDENT, SHIPPED_STUDENT_NAME};

/// The shipped student's hash as the committed benchmark runs record it
/// (`benchmarks/runs/*/config.json`, `models/student/weights.sha256`).
const SHIPPED_STUDENT_SHA256: &str =
    "78492b27a71b6125295dc4ec082bbf209715d6cdd5d95e1a3829b3aa70d3489c";

/// face-api.js's manifest and shard hashes as the committed white-box run records them.
const FACEAPI_SHA256: &str = "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b,\
                              b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589";

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advface-zoo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn grey() -> PixelBatch {
    PixelBatch::from_images(&[RgbImage::filled(112, 112, [128, 128, 128])]).unwrap()
}

#[test]
fn faceapi_is_the_embedded_network_recorded_with_the_hashes_of_its_two_files() {
    let zoo = Zoo::new();
    assert_eq!(zoo.source("faceapi").unwrap(), ModelSource::FaceApi);
    let loaded = zoo.embedder("faceapi").unwrap();
    assert_eq!(loaded.model.name(), "faceapi");
    assert_eq!(loaded.provenance.name, "faceapi");
    assert_eq!(loaded.provenance.sha256, FACEAPI_SHA256);
    assert!(loaded.provenance.sha256.ends_with(FACEAPI_BIN_SHA256));
    assert_eq!(loaded.model.embed(&grey()).unwrap()[0].len(), 128);
}

#[test]
fn faceapi_resolves_for_gradients_but_not_as_a_student() {
    let zoo = Zoo::new();
    let loaded = zoo.differentiable("faceapi").unwrap();
    assert_eq!(loaded.provenance.sha256, FACEAPI_SHA256);
    let err = zoo.student("faceapi").unwrap_err();
    assert!(matches!(err, ZooError::NotAStudent { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("'faceapi' is not a student"), "{msg}");
    assert!(
        msg.contains("student.weights") && msg.contains(".weights file"),
        "{msg}"
    );
}

#[test]
fn student_is_the_shipped_student_recorded_with_the_hash_of_the_benchmark_runs() {
    let zoo = Zoo::new();
    assert_eq!(zoo.source("student").unwrap(), ModelSource::ShippedStudent);
    assert_eq!(sha256_hex(SHIPPED_STUDENT), SHIPPED_STUDENT_SHA256);
    for loaded in [
        zoo.student("student").unwrap(),
        zoo.differentiable("student").unwrap(),
    ] {
        assert_eq!(loaded.provenance.name, "student (shipped)");
        assert_eq!(loaded.provenance.name, SHIPPED_STUDENT_NAME);
        assert_eq!(loaded.provenance.sha256, SHIPPED_STUDENT_SHA256);
        assert_eq!(loaded.model.name(), "student (shipped)");
    }
    let e = zoo.embedder("student").unwrap();
    assert_eq!(e.model.embed(&grey()).unwrap()[0].len(), 128);
}

#[test]
fn the_shipped_student_gives_the_same_descriptors_as_its_committed_file() {
    let zoo = Zoo::new();
    let shipped = zoo.embedder("student").unwrap();
    let file = zoo
        .embedder(models().join("student").to_str().unwrap())
        .unwrap();
    assert_eq!(shipped.provenance.sha256, file.provenance.sha256);
    let batch = grey();
    assert_eq!(
        shipped.model.embed(&batch).unwrap(),
        file.model.embed(&batch).unwrap()
    );
}

#[test]
fn student_names_the_file_a_zoo_is_given_instead_of_the_shipped_one() {
    let file = models().join("student-r18/student.weights");
    let zoo = Zoo::new().with_student_file(&file);
    assert_eq!(
        zoo.source("student").unwrap(),
        ModelSource::StudentFile(file.clone())
    );
    let loaded = zoo.student("student").unwrap();
    assert_eq!(
        loaded.provenance.name,
        format!("student:{}", file.display())
    );
    assert_eq!(
        loaded.provenance.sha256,
        sha256_hex(&std::fs::read(&file).unwrap())
    );
}

#[test]
fn a_run_folder_resolves_to_its_student_weights() {
    let folder = models().join("student-dlib");
    let name = folder.to_str().unwrap();
    let file = folder.join("student.weights");
    let zoo = Zoo::new();
    assert_eq!(
        zoo.source(name).unwrap(),
        ModelSource::StudentFile(file.clone())
    );
    let loaded = zoo.student(name).unwrap();
    assert_eq!(
        loaded.provenance.name,
        format!("student:{}", file.display())
    );
    assert_eq!(
        loaded.provenance.sha256,
        sha256_hex(&std::fs::read(&file).unwrap())
    );
    assert_eq!(loaded.model.embed(&grey()).unwrap()[0].len(), 128);
}

#[test]
fn a_weights_file_resolves_to_a_student_named_by_its_path() {
    let file = models().join("student-r18/student.weights");
    let zoo = Zoo::new();
    let loaded = zoo.embedder(file.to_str().unwrap()).unwrap();
    assert_eq!(loaded.source, ModelSource::StudentFile(file.clone()));
    assert_eq!(loaded.model.name(), format!("student:{}", file.display()));
    assert_eq!(loaded.provenance.name, loaded.model.name());
}

#[test]
fn a_face_api_manifest_resolves_to_face_api_with_the_embedded_hashes() {
    let manifest = models().join("faceapi").join(MANIFEST_FILE);
    let zoo = Zoo::new();
    let loaded = zoo.embedder(manifest.to_str().unwrap()).unwrap();
    assert_eq!(
        loaded.source,
        ModelSource::FaceApiManifest(manifest.clone())
    );
    assert_eq!(loaded.provenance.sha256, FACEAPI_SHA256);
    let err = zoo.student(manifest.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, ZooError::NotAStudent { .. }), "{err}");
}

#[test]
fn a_run_folder_without_weights_is_an_error_that_names_the_folder_and_the_fix() {
    let folder = tmp("empty-run");
    std::fs::create_dir_all(&folder).unwrap();
    let name = folder.to_str().unwrap();
    for err in [
        Zoo::new().source(name).unwrap_err(),
        Zoo::new().embedder(name).unwrap_err(),
        Zoo::new().student(name).unwrap_err(),
    ] {
        assert!(matches!(err, ZooError::NoWeightsInFolder { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("no student.weights"), "{msg}");
        assert!(
            msg.contains("run folder") && msg.contains(".weights file"),
            "{msg}"
        );
    }
}

#[test]
fn a_missing_path_is_an_error_that_names_it_and_the_ways_to_name_a_model() {
    let missing = tmp("no-such-run/student.weights");
    let name = missing.to_str().unwrap();
    let err = Zoo::new().embedder(name).unwrap_err();
    assert!(matches!(err, ZooError::UnknownModel { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(name), "{msg}");
    for fix in [
        "faceapi",
        "student",
        "run folder",
        ".weights file",
        "manifest",
    ] {
        assert!(msg.contains(fix), "{fix}: {msg}");
    }
    let err = Zoo::new().student(name).unwrap_err();
    assert!(matches!(err, ZooError::NotAStudent { .. }), "{err}");
    assert!(err.to_string().contains(name), "{err}");
}

#[test]
fn a_missing_student_file_for_student_is_a_read_error_naming_the_file() {
    let missing = tmp("missing.weights");
    let err = Zoo::new()
        .with_student_file(&missing)
        .student("student")
        .unwrap_err();
    assert!(matches!(err, ZooError::Read { .. }), "{err}");
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
}

#[test]
fn a_damaged_weights_file_is_an_error_naming_the_file_and_the_damage() {
    let file = tmp("garbage.weights");
    std::fs::write(&file, b"not a student at all").unwrap();
    let err = Zoo::new().embedder(file.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, ZooError::Student { .. }), "{err}");
    assert!(err.to_string().contains(file.to_str().unwrap()), "{err}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("not a student weight file"), "{cause}");
}

#[test]
fn a_damaged_manifest_is_an_error_naming_the_manifest() {
    let manifest = tmp("broken").join(MANIFEST_FILE);
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(&manifest, b"{").unwrap();
    std::fs::write(manifest.with_file_name(BIN_FILE), b"").unwrap();
    let err = Zoo::new().embedder(manifest.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, ZooError::FaceApi { .. }), "{err}");
    assert!(
        err.to_string().contains(manifest.to_str().unwrap()),
        "{err}"
    );
}
