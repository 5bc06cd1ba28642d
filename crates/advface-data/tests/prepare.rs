//! `prepare` on a small LFW tree made of the committed fixture JPEGs.

use std::path::Path;

use advface_data::{prepare, read_pairs, PrepareConfig, PrepareError};
use advface_testkit::{all_files, copy_lfw, fixture_lfw, pillow_crops};
use sha2::{Digest, Sha256};

#[test]
fn prepare_writes_the_protocol_deterministically_and_crops_equal_pillow() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        let cfg = PrepareConfig {
            lfw: fixture_lfw(),
            out: out.clone(),
            n: None,
            attack_only: false,
        };
        let report = prepare(&cfg, &|_| {}).unwrap();
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert_eq!(report.crops_written, report.images);
    }
    let fa = all_files(&a);
    assert_eq!(fa, all_files(&b), "two runs differ");

    // Pair 0 of the protocol is Al_Sharpton -> Jose_Maria_Aznar; the fixture holds exactly
    // their first 5 images, so in this small tree they are the only attack identities.
    let pairs = read_pairs(&a.join("pairs_list.csv")).unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0].sources[0], "Al_Sharpton/Al_Sharpton_0001.png");
    assert_eq!(
        pairs[0].targets[4],
        "Jose_Maria_Aznar/Jose_Maria_Aznar_0005.png"
    );
    assert_eq!(pairs[1].sources, pairs[0].targets);
    let distill = String::from_utf8(fa[Path::new("distill_list.txt")].clone()).unwrap();
    assert!(!distill.contains("Al_Sharpton") && !distill.contains("Jose_Maria_Aznar"));
    assert_eq!(
        distill.lines().count() + 10,
        fa.keys().filter(|k| k.starts_with("crops")).count()
    );

    // Every crop, decoded again, equals Pillow's crop.
    for case in pillow_crops() {
        let rel = case.path.replace(".jpg", ".png");
        let im = advface_image::read_image(&a.join("crops").join(&rel)).unwrap();
        assert_eq!((im.width(), im.height()), (112, 112));
        assert_eq!(
            hex::encode(Sha256::digest(im.as_bytes())),
            case.sha256_rgb,
            "{rel}"
        );
    }
}

#[test]
fn first_n_pairs_and_attack_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PrepareConfig {
        lfw: fixture_lfw(),
        out: tmp.path().to_path_buf(),
        n: Some(1),
        attack_only: true,
    };
    let report = prepare(&cfg, &|_| {}).unwrap();
    assert_eq!(report.pairs_written, 1);
    assert_eq!(report.crops_written, 10);
    assert_eq!(
        read_pairs(&tmp.path().join("pairs_list.csv"))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn corrupt_and_wrong_size_images_are_named_skipped_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let lfw = tmp.path().join("lfw");
    copy_lfw(&lfw);
    let dir = lfw.join("images_deepfunneled/Zz_Bad");
    std::fs::create_dir_all(&dir).unwrap();
    let good =
        std::fs::read(lfw.join("images_deepfunneled/Al_Sharpton/Al_Sharpton_0001.jpg")).unwrap();
    std::fs::write(dir.join("Zz_Bad_0001.jpg"), &good[..good.len() / 2]).unwrap();
    std::fs::write(dir.join("Zz_Bad_0002.jpg"), b"not a jpeg at all").unwrap();
    // A valid JPEG of the wrong size: encode a 100x100 image with mozjpeg via the image crate.
    let small = image::RgbImage::from_pixel(100, 100, image::Rgb([10, 200, 30]));
    let mut jpg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpg)
        .encode_image(&small)
        .unwrap();
    std::fs::write(dir.join("Zz_Bad_0003.jpg"), jpg).unwrap();

    let out = tmp.path().join("out");
    let cfg = PrepareConfig {
        lfw: lfw.clone(),
        out: out.clone(),
        n: None,
        attack_only: false,
    };
    let report = prepare(&cfg, &|_| {}).unwrap();
    let names: Vec<String> = report
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["Zz_Bad_0001.jpg", "Zz_Bad_0002.jpg", "Zz_Bad_0003.jpg"]
    );
    assert!(
        report.skipped[2].reason.contains("250x250"),
        "{:?}",
        report.skipped[2]
    );
    assert_eq!(report.crops_written, report.images - 3);
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(manifest.contains("Zz_Bad_0001.jpg"));
    assert!(!std::fs::read_to_string(out.join("distill_list.txt"))
        .unwrap()
        .contains("Zz_Bad"));
}

#[test]
fn missing_lfw_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PrepareConfig {
        lfw: tmp.path().join("no-such-lfw"),
        out: tmp.path().join("out"),
        n: None,
        attack_only: false,
    };
    let err = prepare(&cfg, &|_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-lfw") && msg.contains("--lfw"),
        "{msg}"
    );
}

#[test]
fn unwritable_output_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // A regular file where the output folder should be: fails even for root.
    let blocker = tmp.path().join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let cfg = PrepareConfig {
        lfw: fixture_lfw(),
        out: blocker.join("out"),
        n: None,
        attack_only: false,
    };
    let err = prepare(&cfg, &|_| {}).unwrap_err();
    assert!(matches!(err, PrepareError::CreateOut { .. }), "{err}");
    assert!(err.to_string().contains("blocker"), "{err}");
}

#[test]
fn output_inside_the_lfw_images_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lfw = tmp.path().join("lfw");
    copy_lfw(&lfw);
    let cfg = PrepareConfig {
        lfw: lfw.clone(),
        out: lfw.join("images_deepfunneled/out"),
        n: None,
        attack_only: false,
    };
    assert!(matches!(
        prepare(&cfg, &|_| {}),
        Err(PrepareError::OutInsideInput { .. })
    ));
}

/// The full protocol on the real LFW, when `../shared` is beside the clone (CI has it;
/// a bare clone does not, and then this checks nothing and says so).
#[test]
fn full_lfw_protocol_counts() {
    let lfw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/lfw");
    if !lfw.join("images_deepfunneled").is_dir() {
        eprintln!("skipped: {} not present", lfw.display());
        return;
    }
    let index = advface_data::LfwIndex::scan(&lfw).unwrap();
    let p = advface_data::Protocol::from_index(&index);
    assert_eq!(index.image_count(), 13_233);
    assert_eq!(index.identities.len(), 5_749);
    assert_eq!(p.attack.len(), 227);
    assert_eq!(p.attack_image_count(), 3_205);
    assert_eq!(p.pool.len(), 10_028);
    assert_eq!(p.pairs.len(), 227);
    assert_eq!(p.pairs[0].sources[0], "Al_Sharpton/Al_Sharpton_0001.png");
    assert_eq!(
        p.pairs[0].targets[0],
        "Jose_Maria_Aznar/Jose_Maria_Aznar_0001.png"
    );
}
