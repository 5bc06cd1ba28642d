//! Running pairs from files: outputs, records, resume, shards, and bad input named.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::{face, Linear};
use advface_attacks::{
    read_record, run_pairs, select_pairs, Acceptance, AttackConfig, Ensemble, Member, RunConfig,
    RunEvent, RunPaths,
};
use advface_core::{Differentiable, Oracle, Shard, SSIM_LIMIT};
use advface_data::Pair;
use advface_oracle::LocalOracle;

fn names(person: &str) -> Vec<String> {
    (1..=5)
        .map(|i| format!("{person}/{person}_{i:04}.png"))
        .collect()
}

/// Crops for people A, B, C, D (112 x 112) and pairs A->B, C->D.
fn fixture(dir: &Path) -> Vec<Pair> {
    for (k, p) in ["A", "B", "C", "D"].iter().enumerate() {
        std::fs::create_dir_all(dir.join(p)).unwrap();
        for (i, rel) in names(p).iter().enumerate() {
            advface_image::write_png_atomic(&dir.join(rel), &face(112, (k * 10 + i) as u64))
                .unwrap();
        }
    }
    vec![
        Pair {
            sources: names("A"),
            targets: names("B"),
        },
        Pair {
            sources: names("C"),
            targets: names("D"),
        },
    ]
}

struct Setup {
    _tmp: tempfile::TempDir,
    paths: RunPaths,
    pairs: Vec<Pair>,
    ensemble: Ensemble,
    oracle: Arc<dyn Oracle>,
    config: RunConfig,
}

fn setup(budget: Option<u64>) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let crops = tmp.path().join("crops");
    let pairs = fixture(&crops);
    let model = Arc::new(Linear::new(16, 3 * 112 * 112, 7));
    let m: Arc<dyn Differentiable> = model.clone();
    let ensemble = Ensemble::new(vec![Member {
        model: m,
        weight: 1.0,
    }])
    .unwrap();
    let oracle: Arc<dyn Oracle> = Arc::new(LocalOracle::new(model));
    let config = RunConfig {
        method: "fgvm".into(),
        white_box: false,
        attack: AttackConfig {
            steps: 12,
            acceptance: match budget {
                Some(_) => Acceptance::BlackBox {
                    patience: 3,
                    check_every: 0,
                    adaptive: true,
                },
                None => Acceptance::None,
            },
            ..AttackConfig::default()
        },
        refine: None,
        budget_per_image: budget,
        models: Vec::new(),
        mirror: false,
        diversity: None,
        oracle: "linear".into(),
        metric: Default::default(),
        pairs_file: "pairs.csv".into(),
        crops: crops.clone(),
    };
    let paths = RunPaths {
        pairs_file: "pairs.csv".into(),
        crops,
        out: tmp.path().join("out"),
    };
    Setup {
        _tmp: tmp,
        paths,
        pairs,
        ensemble,
        oracle,
        config,
    }
}

/// `run_pairs` on one thread, without events, with the setup's paths and pairs.
fn run_with(
    s: &Setup,
    selected: &[usize],
    ensemble: Option<&Ensemble>,
    oracle: Arc<dyn Oracle>,
    config: &RunConfig,
) -> Result<advface_attacks::RunReport, advface_attacks::AttackError> {
    run_pairs(
        &s.pairs,
        selected,
        &s.paths,
        ensemble,
        oracle,
        config,
        1,
        &|_| {},
    )
}

fn run(s: &Setup, selected: &[usize]) -> (advface_attacks::RunReport, Vec<String>) {
    let events = Mutex::new(Vec::new());
    let report = run_pairs(
        &s.pairs,
        selected,
        &s.paths,
        Some(&s.ensemble),
        s.oracle.clone(),
        &s.config,
        2,
        &|e| {
            if let RunEvent::PairFailed { index, error } = e {
                events.lock().unwrap().push(format!("{index}: {error}"));
            }
        },
    )
    .unwrap();
    (report, events.into_inner().unwrap())
}

#[test]
fn writes_every_source_resumes_and_counts_queries_exactly() {
    let s = setup(Some(6));
    let (report, failed) = run(&s, &[0, 1]);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(report.attacked, 2);
    // 6 queries per image, targets included, every one spent (12 steps > 6 queries).
    assert_eq!(report.queries, 2 * 5 * 6);
    for (i, p) in s.pairs.iter().enumerate() {
        let rec = read_record(&s.paths.out, i).expect("record");
        assert_eq!(rec.sources, p.sources);
        for (rel, o) in p.sources.iter().zip(&rec.outcomes) {
            assert_eq!(o.queries, 6);
            let orig = advface_image::read_image(&s.paths.crops.join(rel)).unwrap();
            let adv = advface_image::read_image(&s.paths.out.join(rel)).unwrap();
            let ssim = advface_image::ssim(&orig, &adv).unwrap().mean;
            assert!(ssim >= SSIM_LIMIT);
            assert!((ssim - o.ssim).abs() < 1e-12);
        }
    }
    // the default metric is not written: config.json reads as before it was a setting
    let config = std::fs::read_to_string(s.paths.out.join("config.json")).unwrap();
    assert!(!config.contains("metric"), "{config}");
    // A rerun does nothing and asks nothing.
    let (again, _) = run(&s, &[0, 1]);
    assert_eq!((again.attacked, again.resumed, again.queries), (0, 2, 0));
}

#[test]
fn a_corrupt_or_missing_image_fails_its_pair_only() {
    let s = setup(None);
    std::fs::write(s.paths.crops.join("C/C_0003.png"), b"not a png").unwrap();
    let (report, failed) = run(&s, &[0, 1]);
    assert_eq!(report.attacked, 1);
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with("1:") && failed[0].contains("C_0003.png"),
        "{failed:?}"
    );
    std::fs::remove_file(s.paths.crops.join("C/C_0003.png")).unwrap();
    let (_, failed) = run(&s, &[1]);
    assert!(failed[0].contains("C_0003.png"), "{failed:?}");
}

#[test]
fn a_pair_with_four_images_is_named() {
    let mut s = setup(None);
    s.pairs[1].sources.pop();
    let (report, failed) = run(&s, &[0, 1]);
    assert_eq!(report.attacked, 1);
    assert!(
        failed[0].contains("4 source image(s)") && failed[0].contains("C/C_0001.png"),
        "{failed:?}"
    );
}

#[test]
fn output_inside_the_crops_and_a_changed_config_are_refused() {
    let mut s = setup(None);
    s.paths.out = s.paths.crops.join("adv");
    let err = run_with(&s, &[0], Some(&s.ensemble), s.oracle.clone(), &s.config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("inside the crops folder"), "{err}");
    let s = setup(None);
    run(&s, &[0]);
    let mut other = s.config.clone();
    other.attack.steps = 13;
    let err = run_with(&s, &[1], Some(&s.ensemble), s.oracle.clone(), &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("another configuration"), "{err}");
}

#[test]
fn a_black_box_of_another_length_is_refused_before_any_query() {
    let s = setup(Some(5));
    let other: Arc<dyn Oracle> = Arc::new(LocalOracle::new(Arc::new(Linear::new(
        128,
        3 * 112 * 112,
        9,
    ))));
    let err = run_with(&s, &[0], Some(&s.ensemble), other.clone(), &s.config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("128") && err.contains("16"), "{err}");
    assert_eq!(other.stats().queries, 0);
}

#[test]
fn shards_partition_the_selection() {
    let all = select_pairs(10, Some(7), Shard::ALL);
    assert_eq!(all, (0..7).collect::<Vec<_>>());
    let mut merged: Vec<usize> = (0..3)
        .flat_map(|k| select_pairs(10, Some(7), Shard::new(k, 3).unwrap()))
        .collect();
    merged.sort();
    assert_eq!(merged, all);
    assert_eq!(
        select_pairs(10, None, Shard::new(1, 3).unwrap()),
        vec![1, 4, 7]
    );
}

#[test]
fn the_query_stage_spends_the_rest_of_each_budget_and_never_more() {
    for (steps, ensemble) in [(0usize, false), (5, true)] {
        let mut s = setup(Some(20));
        s.config.attack.steps = steps;
        s.config.attack.acceptance = Acceptance::None;
        s.config.refine = Some(advface_attacks::Refine::Square(Default::default()));
        let before = s.oracle.stats().queries;
        let report = run_pairs(
            &s.pairs,
            &[0, 1],
            &s.paths,
            ensemble.then_some(&s.ensemble),
            s.oracle.clone(),
            &s.config,
            2,
            &|_| {},
        )
        .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        let mut total = 0;
        for i in 0..2 {
            let rec = read_record(&s.paths.out, i).unwrap();
            assert_eq!(rec.refined.len(), 5);
            for (o, r) in rec.outcomes.iter().zip(&rec.refined) {
                assert!(o.queries <= 20, "{o:?}");
                assert!(o.ssim >= SSIM_LIMIT);
                assert!(r.end.unwrap() <= r.start.unwrap());
                total += o.queries;
            }
        }
        assert_eq!(total, s.oracle.stats().queries - before);
    }
}

#[test]
fn the_estimator_stage_needs_students_for_its_prior_and_records_their_share() {
    let mut s = setup(Some(16));
    s.config.attack.steps = 0;
    s.config.attack.acceptance = Acceptance::None;
    s.config.refine = Some(advface_attacks::Refine::Nes(Default::default()));
    let e = run_with(&s, &[0], None, s.oracle.clone(), &s.config).unwrap_err();
    assert!(e.to_string().contains("prior"), "{e}");
    let before = s.oracle.stats().queries;
    let report = run_with(&s, &[0], Some(&s.ensemble), s.oracle.clone(), &s.config).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let rec = read_record(&s.paths.out, 0).unwrap();
    let mut total = 0;
    for (o, r) in rec.outcomes.iter().zip(&rec.refined) {
        assert!(o.queries <= 16 && o.queries + 2 >= 16, "{o:?}");
        assert!(o.ssim >= SSIM_LIMIT);
        assert!(r.end.unwrap() <= r.start.unwrap());
        let share = r
            .prior_share
            .expect("the estimator records the prior's share");
        assert!((0.0..=1.0 + 1e-9).contains(&share), "{share}");
        total += o.queries;
    }
    assert_eq!(total, s.oracle.stats().queries - before);
}
