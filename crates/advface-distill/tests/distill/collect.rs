//! Augmentation, the descriptor store and collection, on real files: the committed
//! fixture LFW tree (43 images; Al_Sharpton and Jose_Maria_Aznar, 5 images each, are its
//! attack identities, the other 33 images form the pool) and stores in temp folders.
//! The only fake is the black box.

use std::collections::HashSet;
use std::path::Path;

use advface_core::{Oracle, RgbImage};
use advface_data::{crop_rel_path, LfwIndex, Protocol};
use advface_distill::{
    augment, collect, collect_store_spec, lfw_source_path, read_lfw_jpeg, sample_key,
    AugmentConfig, CollectConfig, CollectError, CollectEvent, DescriptorStore, SampleRef,
    StoreError, StoreSpec, STORE_FILE_NAME,
};
use advface_testkit::{copy_lfw, fixture_lfw, pillow_crops, sha256 as sha, FakeOracle};

/// The fixture's distillation pool, as crops-relative paths.
fn fixture_pool() -> Vec<String> {
    let index = LfwIndex::scan(&fixture_lfw()).unwrap();
    Protocol::from_index(&index)
        .pool
        .iter()
        .map(|(n, f)| crop_rel_path(n, f))
        .collect()
}

fn open_store(dir: &Path, cfg: &CollectConfig) -> DescriptorStore {
    DescriptorStore::open(dir, collect_store_spec("fake", 4, &cfg.augment)).unwrap()
}

fn full_image(rel: &str) -> RgbImage {
    read_lfw_jpeg(&lfw_source_path(&fixture_lfw(), rel).unwrap()).unwrap()
}

// ---------------------------------------------------------------- augmentation

#[test]
fn copy_0_equals_the_prepared_crop_and_pillow() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prepared");
    advface_data::prepare(
        &advface_data::PrepareConfig {
            lfw: fixture_lfw(),
            out: out.clone(),
            n: None,
            attack_only: false,
        },
        &|_| {},
    )
    .unwrap();

    let fixture = pillow_crops();
    assert_eq!(fixture.len(), 43);
    let cfg = AugmentConfig::default();
    for case in &fixture {
        let rel = case.path.replace(".jpg", ".png");
        let crop = augment(&full_image(&rel), &rel, 0, &cfg).unwrap();
        let prepared = advface_image::read_image(&out.join("crops").join(&rel)).unwrap();
        assert_eq!(crop, prepared, "{rel}");
        assert_eq!(hex::encode(sha(crop.as_bytes())), case.sha256_rgb, "{rel}");
    }
}

#[test]
fn copies_are_deterministic_and_differ_between_indices_and_seeds() {
    let rel = "Bob_Geldof/Bob_Geldof_0001.png";
    let full = full_image(rel);
    let cfg = AugmentConfig::default();
    let copies: Vec<RgbImage> = (0..8)
        .map(|k| augment(&full, rel, k, &cfg).unwrap())
        .collect();
    let again: Vec<RgbImage> = (0..8)
        .map(|k| augment(&full, rel, k, &cfg).unwrap())
        .collect();
    assert_eq!(copies, again);
    let distinct: HashSet<[u8; 32]> = copies.iter().map(|c| sha(c.as_bytes())).collect();
    assert_eq!(distinct.len(), 8, "every copy differs from the others");
    for c in &copies {
        assert_eq!((c.width(), c.height()), (112, 112));
    }
    // A copy is still mostly the same face: mean absolute difference to copy 0 is small.
    for c in &copies[1..] {
        let mad: f64 = c
            .as_bytes()
            .iter()
            .zip(copies[0].as_bytes())
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / c.as_bytes().len() as f64;
        assert!(mad > 0.5 && mad < 80.0, "{mad}");
    }
    let other_seed = AugmentConfig {
        seed: 1,
        ..Default::default()
    };
    assert_eq!(augment(&full, rel, 0, &other_seed).unwrap(), copies[0]);
    assert_ne!(augment(&full, rel, 3, &other_seed).unwrap(), copies[3]);
    // The key, not the order of calls, decides a copy: another image's copy 3 differs.
    let rel2 = "Hank_Aaron/Hank_Aaron_0001.png";
    let a = augment(&full_image(rel2), rel2, 3, &cfg).unwrap();
    assert_eq!(a, augment(&full_image(rel2), rel2, 3, &cfg).unwrap());
}

#[test]
fn a_wrong_size_image_is_an_error_naming_it() {
    let im = RgbImage::filled(100, 100, [1, 2, 3]);
    let err = augment(&im, "X/X_0001.png", 2, &AugmentConfig::default()).unwrap_err();
    assert!(err.to_string().contains("X/X_0001.png") && err.to_string().contains("250x250"));
}

// ---------------------------------------------------------------- store

fn spec(identity: &str, len: usize) -> StoreSpec {
    StoreSpec {
        identity: identity.into(),
        descriptor_len: len,
        crop_width: 112,
        crop_height: 112,
        recipe: AugmentConfig::default().recipe(),
    }
}

fn samples(n: usize, len: usize) -> Vec<(String, Vec<u8>, Vec<f32>)> {
    (0..n)
        .map(|i| {
            (
                sample_key(&format!("P{i}/P{i}_0001.png"), (i % 3) as u32),
                (0..112 * 112 * 3)
                    .map(|v| ((v * 31 + i * 7) % 256) as u8)
                    .collect(),
                (0..len)
                    .map(|j| (i * 1000 + j) as f32 * 1e-3 - 0.5)
                    .collect(),
            )
        })
        .collect()
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
fn store_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = samples(10, 128);
    {
        let mut store = DescriptorStore::open(dir.path(), spec("faceapi", 128)).unwrap();
        assert!(store.is_empty());
        store.append(&refs(&data[..4])).unwrap();
        store.append(&refs(&data[4..])).unwrap();
        assert_eq!(store.len(), 10);
    }
    let store = DescriptorStore::open(dir.path(), spec("faceapi", 128)).unwrap();
    assert_eq!((store.len(), store.recovered_bytes()), (10, 0));
    for (k, _, _) in &data {
        assert!(store.contains(k));
    }
    assert!(!store.contains("P0/P0_0001.png#1"));
    let all = store.load_all().unwrap();
    assert_eq!(all.len(), 10);
    for (i, (k, c, d)) in data.iter().enumerate() {
        assert_eq!(&all.keys[i], k);
        assert_eq!(all.crop(i), &c[..]);
        assert_eq!(all.descriptor(i), &d[..]);
    }
    let streamed: Vec<_> = store.iter().unwrap().map(Result::unwrap).collect();
    assert_eq!(streamed.len(), 10);
    assert_eq!(streamed[7].descriptor, data[7].2);
    let ro = DescriptorStore::open_existing(dir.path()).unwrap();
    assert_eq!(ro.spec(), &spec("faceapi", 128));
    assert_eq!(ro.load_all().unwrap(), all);
}

#[test]
fn torn_tail_is_cut_off_on_open_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = samples(5, 128);
    let path = dir.path().join(STORE_FILE_NAME);
    {
        let mut store = DescriptorStore::open(dir.path(), spec("faceapi", 128)).unwrap();
        store.append(&refs(&data[..4])).unwrap();
    }
    let whole = std::fs::metadata(&path).unwrap().len();
    // A crash mid-write: half of a fifth record.
    {
        let mut store = DescriptorStore::open(dir.path(), spec("faceapi", 128)).unwrap();
        store.append(&refs(&data[4..])).unwrap();
    }
    let with_fifth = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(whole + (with_fifth - whole) / 2).unwrap();
    drop(f);

    let mut store = DescriptorStore::open(dir.path(), spec("faceapi", 128)).unwrap();
    assert_eq!(store.len(), 4);
    assert_eq!(store.recovered_bytes(), (with_fifth - whole) / 2);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    store.append(&refs(&data[4..])).unwrap();
    drop(store);

    // A whole-length last record with garbage in it (the checksum catches it).
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x5A;
    std::fs::write(&path, &bytes).unwrap();
    let store = DescriptorStore::open(dir.path(), spec("faceapi", 128)).unwrap();
    assert_eq!(store.len(), 4);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    assert_eq!(store.load_all().unwrap().len(), 4);
}

#[test]
fn a_store_of_another_black_box_or_shape_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = samples(2, 128);
    DescriptorStore::open(dir.path(), spec("faceapi", 128))
        .unwrap()
        .append(&refs(&data))
        .unwrap();
    let path = dir.path().join(STORE_FILE_NAME);
    let before = std::fs::read(&path).unwrap();
    let cases = [
        (spec("http:other", 128), "black box 'faceapi'"),
        (spec("faceapi", 512), "descriptor length 128"),
        (
            StoreSpec {
                crop_width: 96,
                ..spec("faceapi", 128)
            },
            "crop size 112x112",
        ),
        (
            StoreSpec {
                recipe: AugmentConfig {
                    seed: 9,
                    ..Default::default()
                }
                .recipe(),
                ..spec("faceapi", 128)
            },
            "augmentation recipe",
        ),
    ];
    for (s, expect) in cases {
        let err = DescriptorStore::open(dir.path(), s).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Mismatch { .. }), "{msg}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(expect),
            "{msg}"
        );
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused store is untouched"
    );

    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join(STORE_FILE_NAME),
        b"hello, this is not a store at all",
    )
    .unwrap();
    let err = DescriptorStore::open(other.path(), spec("faceapi", 128)).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = DescriptorStore::open_existing(empty.path()).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
}

#[test]
fn an_unwritable_store_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = DescriptorStore::open(&file.join("store"), spec("faceapi", 128)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Io { .. }), "{msg}");
    assert!(
        msg.contains("create the store folder") && msg.contains("a-file"),
        "{msg}"
    );

    // A read-only folder (meaningless as root, who may write anywhere).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"x").is_err() {
            let err = DescriptorStore::open(&ro, spec("faceapi", 128)).unwrap_err();
            assert!(err.to_string().contains(STORE_FILE_NAME), "{err}");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

// ---------------------------------------------------------------- collect

#[test]
fn collect_stores_every_sample_and_copy_0_is_the_crop() {
    let pool = fixture_pool();
    assert_eq!(pool.len(), 33);
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectConfig {
        copies: 2,
        batch: 8,
        ..Default::default()
    };
    let mut store = open_store(dir.path(), &cfg);
    let oracle = FakeOracle::new(None);
    let mut stored_events = 0;
    let mut start = None;
    let report = collect(
        &pool,
        &fixture_lfw(),
        &oracle,
        &mut store,
        &cfg,
        &mut |e| match e {
            CollectEvent::Start { to_ask, .. } => start = Some(to_ask),
            CollectEvent::Stored { samples } => stored_events += samples,
            _ => {}
        },
    )
    .unwrap();
    assert_eq!(start, Some(99));
    assert_eq!(stored_events, 99);
    assert_eq!(report.images, 33);
    assert_eq!(report.samples_wanted, 99);
    assert_eq!((report.stored_before, report.stored_after), (0, 99));
    assert_eq!((report.new_samples, report.queries), (99, 99));
    assert!(report.skipped.is_empty());

    let all = store.load_all().unwrap();
    for (i, key) in all.keys.iter().enumerate() {
        let (rel, k) = advface_distill::parse_sample_key(key).unwrap();
        let expect = augment(&full_image(rel), rel, k, &cfg.augment).unwrap();
        assert_eq!(all.crop(i), expect.as_bytes(), "{key}");
        assert_eq!(
            all.descriptor(i),
            FakeOracle::descriptor(&expect).as_slice()
        );
    }
}

#[test]
fn an_interrupted_run_resumes_without_asking_again() {
    let pool = fixture_pool();
    let cfg = CollectConfig {
        copies: 2,
        batch: 8,
        ..Default::default()
    };
    let total = 33 * 3;
    let dir = tempfile::tempdir().unwrap();

    // First run: the black box fails once it has answered 30 queries, during the 4th
    // batch; the 3 batches before it (24 samples) are stored, the 6 answers of the 4th
    // are lost.
    let first = FakeOracle::new(Some(30));
    let mut store = open_store(dir.path(), &cfg);
    let err = collect(&pool, &fixture_lfw(), &first, &mut store, &cfg, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, CollectError::Oracle { stored: 24, .. }) && msg.contains("rerun"),
        "{msg}"
    );
    assert_eq!(first.stats().queries, 30);
    drop(store);
    let stored_crops: HashSet<[u8; 32]> = {
        let store = DescriptorStore::open_existing(dir.path()).unwrap();
        assert_eq!(store.len(), 24);
        let all = store.load_all().unwrap();
        (0..all.len()).map(|i| sha(all.crop(i))).collect()
    };

    // Rerun: exactly the missing samples are asked, none of the stored ones.
    let second = FakeOracle::new(None);
    let mut store = open_store(dir.path(), &cfg);
    let report = collect(
        &pool,
        &fixture_lfw(),
        &second,
        &mut store,
        &cfg,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.queries, (total - 24) as u64);
    assert_eq!((report.stored_before, report.stored_after), (24, total));
    let asked: HashSet<[u8; 32]> = second.asked.lock().unwrap().iter().copied().collect();
    assert_eq!(asked.len(), total - 24);
    assert!(asked.is_disjoint(&stored_crops));

    // A third run asks nothing.
    let third = FakeOracle::new(None);
    let report = collect(&pool, &fixture_lfw(), &third, &mut store, &cfg, &mut |_| {}).unwrap();
    assert_eq!(
        (report.queries, report.new_samples, report.stored_after),
        (0, 0, total)
    );

    // More copies later: only the new copies are asked.
    let more = CollectConfig {
        copies: 3,
        ..cfg.clone()
    };
    let fourth = FakeOracle::new(None);
    let report = collect(
        &pool,
        &fixture_lfw(),
        &fourth,
        &mut store,
        &more,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.queries, 33);

    // The interrupted-then-resumed store holds the same samples as one straight run.
    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = open_store(straight_dir.path(), &cfg);
    collect(
        &pool,
        &fixture_lfw(),
        &FakeOracle::new(None),
        &mut straight,
        &more,
        &mut |_| {},
    )
    .unwrap();
    let sorted = |s: &DescriptorStore| {
        let mut v: Vec<_> = s
            .iter()
            .unwrap()
            .map(Result::unwrap)
            .map(|s| (s.key.clone(), s))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(sorted(&store), sorted(&straight));
}

#[test]
fn a_pool_with_an_attack_identity_is_refused_before_any_query() {
    let mut pool = fixture_pool();
    pool.insert(3, "Al_Sharpton/Al_Sharpton_0002.png".to_string());
    pool.push("Jose_Maria_Aznar/Jose_Maria_Aznar_0005.png".to_string());
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectConfig::default();
    let mut store = open_store(dir.path(), &cfg);
    let oracle = FakeOracle::new(None);
    let err = collect(
        &pool,
        &fixture_lfw(),
        &oracle,
        &mut store,
        &cfg,
        &mut |_| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, CollectError::AttackIdentity { count: 2, .. }),
        "{msg}"
    );
    for name in [
        "Al_Sharpton/Al_Sharpton_0002.png",
        "Jose_Maria_Aznar",
        "PROTOCOL.md",
    ] {
        assert!(msg.contains(name), "{msg}");
    }
    assert_eq!(oracle.stats().queries, 0);
    assert!(store.is_empty());
}

#[test]
fn a_bad_pool_entry_or_a_mismatched_store_is_refused_before_any_query() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CollectConfig::default();
    let mut store = open_store(dir.path(), &cfg);
    let oracle = FakeOracle::new(None);
    let pool = vec!["../../etc/passwd.png".to_string()];
    let err = collect(
        &pool,
        &fixture_lfw(),
        &oracle,
        &mut store,
        &cfg,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, CollectError::BadPool { count: 1, .. }),
        "{err}"
    );

    // The same store with another seed: copies 1.. would not match their keys.
    let other = CollectConfig {
        augment: AugmentConfig {
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
    };
    let err = collect(
        &fixture_pool(),
        &fixture_lfw(),
        &oracle,
        &mut store,
        &other,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("augmentation recipe"), "{err}");

    // A black box with another descriptor length.
    let mut long = FakeOracle::new(None);
    long.len = 128;
    let err = collect(
        &fixture_pool(),
        &fixture_lfw(),
        &long,
        &mut store,
        &cfg,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("descriptor length"), "{err}");
    assert_eq!(oracle.stats().queries + long.stats().queries, 0);

    let zero = CollectConfig {
        batch: 0,
        ..Default::default()
    };
    assert!(collect(
        &fixture_pool(),
        &fixture_lfw(),
        &oracle,
        &mut store,
        &zero,
        &mut |_| {}
    )
    .is_err());
}

#[test]
fn a_corrupt_or_missing_jpeg_is_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let lfw = tmp.path().join("lfw");
    copy_lfw(&lfw);
    let victim = "Elvis_Presley/Elvis_Presley_0002.png";
    let jpg = lfw_source_path(&lfw, victim).unwrap();
    let bytes = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &bytes[..bytes.len() / 2]).unwrap();
    let mut pool = fixture_pool();
    pool.push("Nobody_Here/Nobody_Here_0001.png".to_string());

    let cfg = CollectConfig {
        copies: 1,
        batch: 5,
        ..Default::default()
    };
    let dir = tmp.path().join("store");
    let mut store = open_store(&dir, &cfg);
    let oracle = FakeOracle::new(None);
    let mut skipped_events = Vec::new();
    let report = collect(&pool, &lfw, &oracle, &mut store, &cfg, &mut |e| {
        if let CollectEvent::Skipped { image, samples } = e {
            skipped_events.push((image.rel.clone(), samples));
        }
    })
    .unwrap();
    let names: Vec<&str> = report.skipped.iter().map(|s| s.rel.as_str()).collect();
    assert_eq!(names, vec![victim, "Nobody_Here/Nobody_Here_0001.png"]);
    assert!(
        report.skipped[0].reason.contains("Elvis_Presley_0002.jpg"),
        "{}",
        report.skipped[0].reason
    );
    assert_eq!(skipped_events.len(), 2);
    assert_eq!(skipped_events[0].1, 2);
    assert_eq!((report.new_samples, report.queries), (64, 64));
    assert!(!store.contains(&sample_key(victim, 0)));
}
