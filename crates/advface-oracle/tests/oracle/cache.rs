//! The descriptor cache: hits are not queries, answers persist, crashes are survived,
//! another oracle's cache is refused.

use std::io::Write;
use std::sync::Arc;

use advface_core::{Oracle, OracleError};
use advface_oracle::{cache_key, Cached, LocalOracle, CACHE_FILE_NAME};
use advface_testkit::{bits, face, faces, local, FakeEmbedder};

#[test]
fn hits_are_not_queries_and_only_misses_are_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, inner) = local();
    let cache = Cached::open(inner.clone(), dir.path()).unwrap();
    let images = faces(6);
    let first = cache.describe(&images[..4]).unwrap();
    assert_eq!(inner.stats().queries, 4);
    // Two hits, two misses: the inner oracle sees only the misses, in one call.
    let second = cache.describe(&images[2..6]).unwrap();
    assert_eq!(inner.stats().queries, 6);
    assert_eq!(fake.batches.lock().unwrap().last(), Some(&2));
    assert_eq!(bits(&first[2..4]), bits(&second[..2]));
    assert_eq!(bits(&second), bits(&inner.describe(&images[2..6]).unwrap()));
    let s = cache.stats();
    assert_eq!((s.queries, s.cached), (10, 2));
    assert_eq!(cache.len(), 6);
}

#[test]
fn an_image_repeated_in_one_call_is_asked_once() {
    let (_, inner) = local();
    let cache = Cached::in_memory(inner.clone());
    let a = face(1, 112);
    let b = face(2, 112);
    let out = cache
        .describe(&[a.clone(), b.clone(), a.clone(), a])
        .unwrap();
    assert_eq!(inner.stats().queries, 2);
    assert_eq!(cache.stats().cached, 2);
    assert_eq!(bits(&out[..1]), bits(&out[2..3]));
    assert_eq!(bits(&out[..1]), bits(&out[3..4]));
}

#[test]
fn answers_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let images = faces(5);
    let first = {
        let (_, inner) = local();
        let cache = Cached::open(inner, dir.path()).unwrap();
        cache.describe(&images).unwrap()
    };
    let (_, inner) = local();
    let cache = Cached::open(inner.clone(), dir.path()).unwrap();
    assert_eq!(cache.len(), 5);
    assert_eq!(cache.recovered_bytes(), 0);
    let again = cache.describe(&images).unwrap();
    assert_eq!(bits(&first), bits(&again));
    assert_eq!(inner.stats().queries, 0);
    assert_eq!(cache.stats().cached, 5);
    assert_eq!(
        cache.path().unwrap(),
        dir.path().join(CACHE_FILE_NAME).as_path()
    );
}

#[test]
fn a_torn_final_record_is_dropped_and_the_cache_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CACHE_FILE_NAME);
    let images = faces(4);
    {
        let (_, inner) = local();
        Cached::open(inner, dir.path())
            .unwrap()
            .describe(&images[..3])
            .unwrap();
    }
    let whole = std::fs::metadata(&path).unwrap().len();
    // A crash halfway through the third record.
    let record = 32 + 4 + 4 * 128;
    let torn = whole - (record as u64) / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(torn)
        .unwrap();
    let (_, inner) = local();
    let cache = Cached::open(inner.clone(), dir.path()).unwrap();
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.recovered_bytes(), record as u64 / 2);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        whole - record as u64
    );
    cache.describe(&images).unwrap();
    assert_eq!(inner.stats().queries, 2);
    drop(cache);
    // A few stray bytes after whole records (a crash inside the key).
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[7; 10])
        .unwrap();
    let (_, inner) = local();
    let cache = Cached::open(inner.clone(), dir.path()).unwrap();
    assert_eq!((cache.len(), cache.recovered_bytes()), (4, 10));
    cache.describe(&images).unwrap();
    assert_eq!(inner.stats().queries, 0);
}

#[test]
fn a_torn_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CACHE_FILE_NAME), b"ADVFD").unwrap();
    let (_, inner) = local();
    let cache = Cached::open(inner, dir.path()).unwrap();
    assert_eq!(cache.recovered_bytes(), 5);
    cache.describe(&faces(1)).unwrap();
    let (_, inner) = local();
    assert_eq!(Cached::open(inner, dir.path()).unwrap().len(), 1);
}

#[test]
fn a_cache_of_another_oracle_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, inner) = local();
    Cached::open(inner, dir.path())
        .unwrap()
        .describe(&faces(1))
        .unwrap();
    let path = dir.path().join(CACHE_FILE_NAME).display().to_string();

    let other = Arc::new(LocalOracle::new(Arc::new(
        FakeEmbedder::new().named("student-r18"),
    )));
    let err = Cached::open(other, dir.path()).unwrap_err();
    assert!(matches!(err, OracleError::Cache { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path), "{msg}");
    assert!(
        msg.contains("fake-embedder") && msg.contains("student-r18"),
        "{msg}"
    );

    let shorter = Arc::new(LocalOracle::new(Arc::new(FakeEmbedder::new().with_len(64))));
    let msg = Cached::open(shorter, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("length 128") && msg.contains("64"), "{msg}");

    // The identity can be given explicitly (an HTTP black box on another port).
    let (_, inner) = local();
    let err = Cached::open_as(inner, dir.path(), "http://127.0.0.1:9999").unwrap_err();
    assert!(err.to_string().contains("http://127.0.0.1:9999"), "{err}");
    let (_, inner) = local();
    assert_eq!(
        Cached::open_as(inner, dir.path(), "fake-embedder")
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_file_that_is_not_a_cache_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(CACHE_FILE_NAME),
        b"some other file, long enough",
    )
    .unwrap();
    let (_, inner) = local();
    let msg = Cached::open(inner, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("not an advface descriptor cache"), "{msg}");
    assert!(msg.contains(CACHE_FILE_NAME), "{msg}");
}

#[test]
fn a_corrupt_record_inside_the_file_is_an_error_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CACHE_FILE_NAME);
    {
        let (_, inner) = local();
        Cached::open(inner, dir.path())
            .unwrap()
            .describe(&faces(3))
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let record = 32 + 4 + 4 * 128;
    let header = bytes.len() - 3 * record;
    let at = header + record; // second record
    bytes[at + 32..at + 36].copy_from_slice(&999u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (_, inner) = local();
    let msg = Cached::open(inner, dir.path()).unwrap_err().to_string();
    assert!(msg.contains(&format!("byte {at}")), "{msg}");
}

#[test]
fn keys_depend_on_size_and_pixels() {
    let a = advface_core::RgbImage::filled(2, 3, [1, 2, 3]);
    let b = advface_core::RgbImage::filled(3, 2, [1, 2, 3]);
    assert_ne!(cache_key(&a), cache_key(&b));
    let mut c = a.clone();
    assert_eq!(cache_key(&a), cache_key(&c));
    c.as_bytes_mut()[5] ^= 1;
    assert_ne!(cache_key(&a), cache_key(&c));
}

#[test]
fn concurrent_callers_share_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (_, inner) = local();
    let cache = Cached::open(inner.clone(), dir.path()).unwrap();
    let images = faces(8);
    let reference = bits(&inner.describe(&images).unwrap());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (cache, images, reference) = (&cache, &images, &reference);
            s.spawn(move || {
                for i in 0..10 {
                    let k = (t + i) % 8;
                    let d = cache.describe(&images[k..k + 1]).unwrap();
                    assert_eq!(bits(&d)[0], reference[k]);
                }
            });
        }
    });
    let s = cache.stats();
    // 8 reference queries; each distinct image was missed at least once and at most by
    // every thread at the same moment.
    let misses = s.queries - 8;
    assert!((8..=32).contains(&misses), "{s:?}");
    assert_eq!(misses + s.cached, 40);
    drop(cache);
    let (_, inner) = local();
    assert_eq!(Cached::open(inner, dir.path()).unwrap().len(), 8);
}
