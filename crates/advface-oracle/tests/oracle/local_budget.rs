//! LocalOracle counting and checks; Budgeted's hard limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use advface_core::{Descriptor, EmbedError, Embedder, Oracle, OracleError, PixelBatch, RgbImage};
use advface_oracle::{Budgeted, Cached, LocalOracle};
use advface_testkit::{bits, face, faces, local, FakeEmbedder};

#[test]
fn local_counts_every_image_and_batches_in_chunks() {
    let fake = Arc::new(FakeEmbedder::new());
    let oracle = LocalOracle::new(fake.clone()).with_chunk(16);
    let images = faces(40);
    let all = oracle.describe(&images).unwrap();
    assert_eq!(all.len(), 40);
    assert_eq!(*fake.batches.lock().unwrap(), vec![16, 16, 8]);
    assert_eq!(oracle.stats().queries, 40);
    assert_eq!(oracle.stats().cached, 0);
    // Batching changes nothing in the answers.
    let one_by_one: Vec<Descriptor> = images
        .iter()
        .map(|im| oracle.describe(std::slice::from_ref(im)).unwrap().remove(0))
        .collect();
    assert_eq!(bits(&all), bits(&one_by_one));
    assert_eq!(oracle.stats().queries, 80);
    assert_eq!(all[0].len(), 128);
    assert_ne!(bits(&all[..1]), bits(&all[1..2]));
}

#[test]
fn local_batches_runs_of_one_size_when_the_model_takes_any_square() {
    let fake = Arc::new(FakeEmbedder::new());
    let oracle = LocalOracle::new(fake.clone());
    let images = vec![face(1, 8), face(2, 8), face(3, 16), face(4, 8)];
    assert_eq!(oracle.describe(&images).unwrap().len(), 4);
    assert_eq!(*fake.batches.lock().unwrap(), vec![2, 1, 1]);
    assert_eq!(oracle.stats().queries, 4);
}

#[test]
fn local_refuses_bad_images_before_any_query() {
    let fake = Arc::new(FakeEmbedder::new().fixed(112, 112));
    let oracle = LocalOracle::new(fake.clone());
    let cases = [
        (RgbImage::new(0, 0, vec![]).unwrap(), "empty"),
        (face(1, 64), "64x64, the model takes 112x112"),
        (RgbImage::filled(112, 100, [0, 0, 0]), "112x100"),
    ];
    for (bad, want) in cases {
        let err = oracle.describe(&[face(9, 112), bad]).unwrap_err();
        assert!(matches!(err, OracleError::BadInput { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("image 1") && msg.contains(want), "{msg}");
        assert!(msg.contains("fake-embedder"), "{msg}");
    }
    assert_eq!(oracle.stats().queries, 0);
    assert!(fake.batches.lock().unwrap().is_empty());

    let any_square = LocalOracle::new(Arc::new(FakeEmbedder::new()));
    let err = any_square
        .describe(&[RgbImage::filled(10, 12, [1, 1, 1])])
        .unwrap_err();
    assert!(err.to_string().contains("square"), "{err}");
    assert!(any_square.describe(&[]).unwrap().is_empty());
}

/// A model that answers the wrong number of components, or fails.
struct Broken {
    mode: u8,
}

impl Embedder for Broken {
    fn name(&self) -> String {
        "broken".into()
    }
    fn descriptor_len(&self) -> usize {
        128
    }
    fn embed(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError> {
        match self.mode {
            0 => Ok(vec![Descriptor(vec![0.0; 64]); batch.len()]),
            1 => Ok(vec![Descriptor(vec![0.0; 128]); batch.len() + 1]),
            2 => Ok(vec![Descriptor(vec![f32::NAN; 128]); batch.len()]),
            _ => Err(EmbedError::Failed {
                model: "broken".into(),
                reason: "out of memory".into(),
            }),
        }
    }
}

#[test]
fn local_checks_what_the_model_answers() {
    let want = [
        "expected 128, got 64",
        "2 descriptors for a batch of 1",
        "non-finite",
        "out of memory",
    ];
    for (mode, want) in want.iter().enumerate() {
        let oracle = LocalOracle::new(Arc::new(Broken { mode: mode as u8 }));
        let err = oracle.describe(&[face(1, 4)]).unwrap_err();
        assert!(matches!(err, OracleError::Model { .. }), "{err}");
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[test]
fn a_budget_of_n_answers_exactly_n_queries() {
    let (_, inner) = local();
    let oracle = Budgeted::new(inner.clone(), 10);
    let images = faces(4);
    oracle.describe(&images).unwrap();
    oracle.describe(&images).unwrap();
    assert_eq!(oracle.remaining(), 2);
    let err = oracle.describe(&images).unwrap_err();
    match &err {
        OracleError::BudgetExhausted {
            budget,
            used,
            requested,
            ..
        } => assert_eq!((*budget, *used, *requested), (10, 8, 4)),
        other => panic!("expected BudgetExhausted, got {other}"),
    }
    assert!(err.to_string().contains("--budget"), "{err}");
    // The refused call answered nothing and cost nothing.
    assert_eq!(inner.stats().queries, 8);
    oracle.describe(&images[..2]).unwrap();
    assert_eq!(oracle.remaining(), 0);
    assert!(oracle.describe(&images[..1]).is_err());
    assert!(oracle.describe(&[]).unwrap().is_empty());
    assert_eq!(inner.stats().queries, 10);
    assert_eq!(oracle.stats().queries, 10);
}

#[test]
fn a_failed_call_gives_its_reservation_back() {
    let fake = Arc::new(FakeEmbedder::new().fixed(112, 112));
    let oracle = Budgeted::new(LocalOracle::new(fake), 3);
    let err = oracle.describe(&[face(1, 112), face(2, 50)]).unwrap_err();
    assert!(matches!(err, OracleError::BadInput { .. }), "{err}");
    assert_eq!(oracle.remaining(), 3);
    assert_eq!(oracle.describe(&faces(3)).unwrap().len(), 3);
    assert_eq!(oracle.remaining(), 0);
}

#[test]
fn concurrent_callers_never_exceed_the_budget() {
    let (_, inner) = local();
    let oracle = Budgeted::new(inner.clone(), 100);
    let answered = AtomicU64::new(0);
    let images = faces(3);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (oracle, answered, images) = (&oracle, &answered, &images);
            s.spawn(move || {
                for i in 0..30 {
                    let k = 1 + (t + i) % 3;
                    match oracle.describe(&images[..k]) {
                        Ok(d) => {
                            answered.fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                        Err(OracleError::BudgetExhausted { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered <= 100, "{answered}");
    assert_eq!(answered, inner.stats().queries);
    // Single-image calls mop up whatever multi-image calls could not fit.
    while oracle.describe(&images[..1]).is_ok() {}
    assert_eq!(inner.stats().queries, 100);
    assert_eq!(oracle.used(), 100);
}

#[test]
fn a_cache_outside_the_budget_spends_it_only_on_new_images() {
    let (_, inner) = local();
    let oracle = Cached::in_memory(Budgeted::new(inner.clone(), 4));
    let images = faces(4);
    oracle.describe(&images).unwrap();
    // All cached: free, although the budget is spent.
    oracle.describe(&images).unwrap();
    oracle.describe(&images[1..3]).unwrap();
    assert_eq!(oracle.stats().queries, 4);
    assert_eq!(oracle.stats().cached, 6);
    let err = oracle.describe(&[face(99, 112)]).unwrap_err();
    assert!(matches!(err, OracleError::BudgetExhausted { .. }), "{err}");
}

#[test]
fn a_budget_outside_a_cache_charges_only_real_queries() {
    let (_, inner) = local();
    let oracle = Budgeted::new(Cached::in_memory(inner.clone()), 4);
    let images = faces(2);
    oracle.describe(&images).unwrap();
    oracle.describe(&images).unwrap();
    assert_eq!(oracle.used(), 2);
    assert_eq!(inner.stats().queries, 2);
}

/// An oracle that forgets to count what it answers.
struct Uncounted(Arc<LocalOracle>);

impl Oracle for Uncounted {
    fn name(&self) -> String {
        "uncounted".into()
    }
    fn descriptor_len(&self) -> Option<usize> {
        Some(128)
    }
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        self.0.describe(images)
    }
    fn stats(&self) -> advface_core::QueryStats {
        Default::default()
    }
}

#[test]
fn an_oracle_that_does_not_count_is_still_held_to_the_budget() {
    let (_, inner) = local();
    let oracle = Budgeted::new(Uncounted(inner.clone()), 3);
    let images = faces(2);
    oracle.describe(&images).unwrap();
    oracle.describe(&images[..1]).unwrap();
    assert!(matches!(
        oracle.describe(&images[..1]).unwrap_err(),
        OracleError::BudgetExhausted { .. }
    ));
    assert_eq!(inner.stats().queries, 3);
}
