//! Training a tiny student on a tiny random store: the run folder, resume after a stop
//! (same final weights as an uninterrupted run), a changed config on resume, and a run
//! that starts from trained weights (`init`).

use std::path::{Path, PathBuf};

use advface_distill::{
    epoch_order, split_by_identity, train, AugmentConfig, DescriptorStore, InitWeights, SampleRef,
    Samples, StoreSpec, TrainConfig, TrainError, TrainEvent,
};
use advface_models::{StudentError, StudentTrainer};

const N: usize = 40;
const D: usize = 16;

/// A store of `N` samples (10 identities x 4) with random crops and descriptors.
fn make_store(dir: &Path) {
    let spec = StoreSpec {
        identity: "test".into(),
        descriptor_len: D,
        crop_width: 112,
        crop_height: 112,
        recipe: AugmentConfig::default().recipe(),
    };
    let mut store = DescriptorStore::open(dir, spec).unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..N {
        let key = format!("Person_{:02}/Person_{:02}_{:04}.png#0", i / 4, i / 4, i);
        let crop: Vec<u8> = (0..112 * 112 * 3).map(|_| next() as u8).collect();
        let descriptor: Vec<f32> = (0..D)
            .map(|_| (next() % 1000) as f32 / 5000.0 - 0.1)
            .collect();
        store
            .append(&[SampleRef {
                key: &key,
                crop: &crop,
                descriptor: &descriptor,
            }])
            .unwrap();
    }
}

fn tiny() -> TrainConfig {
    TrainConfig {
        width: 8,
        batch: 8,
        epochs: 2,
        lr_steps: vec![1],
        val_percent: 20,
        ..TrainConfig::default()
    }
}

/// A temporary folder holding the store of [`make_store`] (at `store`).
fn tmp_with_store() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_store(&store);
    (tmp, store)
}

/// The student saved in `weights`, with the config stored in the file.
fn load_student(weights: &Path) -> StudentTrainer {
    StudentTrainer::load(StudentTrainer::read_config(weights).unwrap(), weights).unwrap()
}

fn load_samples(store: &Path) -> Samples {
    DescriptorStore::open_existing(store)
        .unwrap()
        .load_all()
        .unwrap()
}

/// The bits of the descriptors that the student in `weights` gives to every crop of the
/// store: equal for equal weights.
fn outputs(weights: &Path, store: &Path) -> Vec<u32> {
    let samples = load_samples(store);
    let out = load_student(weights)
        .predict(&samples.crops, samples.len())
        .unwrap();
    out.iter().map(|v| v.to_bits()).collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn run_folder_is_written_and_a_stopped_run_resumes_to_the_same_weights() {
    let (tmp, store) = tmp_with_store();

    // Uninterrupted.
    let full = tmp.path().join("full");
    let mut steps = 0;
    let mut epochs = 0;
    let report = train(&store, &full, &tiny(), |e| match e {
        TrainEvent::Step { images_per_sec, .. } => {
            assert!(images_per_sec > 0.0);
            steps += 1
        }
        TrainEvent::Epoch(row) => {
            epochs += 1;
            assert!(row.val.is_some(), "20% of 10 identities are held out");
        }
        _ => {}
    })
    .unwrap();
    assert!(report.finished);
    assert_eq!(epochs, 2);
    assert!(steps >= 4, "{steps} steps");
    for f in [
        "config.json",
        "log.csv",
        "student.weights",
        "weights.sha256",
    ] {
        assert!(full.join(f).is_file(), "{f} missing");
    }
    assert!(full.join("checkpoint/state.json").is_file());
    let log = read(&full.join("log.csv"));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,step,images_seen,lr,train_mse,val_mse,val_r2,val_cos,elapsed_s"
    );
    assert_eq!(lines.len(), 3, "{log}");
    assert!(lines[1].starts_with("1,"), "{log}");
    let sha = report.sha256.clone().unwrap();
    assert!(read(&full.join("weights.sha256")).starts_with(&sha));
    // Checkpoint files of old steps are cleaned up: one weights, one optimizer, the state.
    assert_eq!(
        std::fs::read_dir(full.join("checkpoint")).unwrap().count(),
        3
    );

    // Stopped after 1, 3 and 5 steps (mid-epoch), then resumed to the end.
    let part = tmp.path().join("part");
    let stop = |n| TrainConfig {
        max_steps: Some(n),
        ..tiny()
    };
    // --max-minutes 0: stops (after a checkpoint) after the first step.
    let no_time = TrainConfig {
        max_minutes: Some(0.0),
        ..tiny()
    };
    let r0 = train(&store, &part, &no_time, |_| {}).unwrap();
    assert!(!r0.finished);
    assert_eq!(r0.state.step, 1);
    let r1 = train(&store, &part, &stop(2), |_| {}).unwrap();
    assert!(!r1.finished);
    assert_eq!(r1.state.step, 3);
    assert!(!part.join("student.weights").exists());
    let r2 = train(&store, &part, &stop(2), |_| {}).unwrap();
    assert_eq!(r2.state.step, 5);
    let mut resumed = None;
    let r3 = train(&store, &part, &tiny(), |e| {
        if let TrainEvent::Start { resumed: r, .. } = e {
            resumed = r;
        }
    })
    .unwrap();
    assert_eq!(resumed.unwrap().step, 5);
    assert!(r3.finished);
    assert_eq!(r3.state.step, report.state.step);
    // burn writes a random parameter id beside each tensor, so the files' bytes (and
    // hashes) differ between any two runs; the weights themselves must be bit-identical.
    assert_eq!(
        outputs(&full.join("student.weights"), &store),
        outputs(&part.join("student.weights"), &store),
        "resumed run must end with the same weights"
    );
    let part_log = read(&part.join("log.csv"));
    // Same rows apart from the elapsed time.
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(strip(&part_log), strip(&log));

    // A finished run rerun does nothing and reports the same weights.
    let again = train(&store, &part, &tiny(), |_| {}).unwrap();
    assert!(again.finished && again.epochs.is_empty());
    assert_eq!(again.sha256, r3.sha256);
}

#[test]
fn a_changed_config_on_resume_is_a_clear_error() {
    let (tmp, store) = tmp_with_store();
    let run = tmp.path().join("run");
    let stop = TrainConfig {
        max_steps: Some(1),
        ..tiny()
    };
    train(&store, &run, &stop, |_| {}).unwrap();
    let changed = TrainConfig { lr: 5e-4, ..tiny() };
    let err = train(&store, &run, &changed, |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::ConfigMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("another config") && msg.contains("0.0005"),
        "{msg}"
    );
    // Run-control options may change.
    let more_often = TrainConfig {
        checkpoint_minutes: 1.0,
        max_steps: Some(1),
        ..tiny()
    };
    train(&store, &run, &more_often, |_| {}).unwrap();
}

/// The batch MSE of the first step of a run of `cfg`, stopped after it.
fn first_step_mse(store: &Path, run: &Path, cfg: &TrainConfig) -> Result<f32, TrainError> {
    let mut mse = None;
    let stop = TrainConfig {
        max_steps: Some(1),
        ..cfg.clone()
    };
    train(store, run, &stop, |e| {
        if let TrainEvent::Step { mse: m, .. } = e {
            mse.get_or_insert(m);
        }
    })?;
    Ok(mse.expect("one step"))
}

#[test]
fn a_run_can_start_from_trained_weights_and_a_resume_checks_them() {
    let (tmp, store) = tmp_with_store();
    let trained = tmp.path().join("trained");
    train(&store, &trained, &tiny(), |_| {}).unwrap();
    let weights = trained.join("student.weights");
    let init = |path: &Path| TrainConfig {
        init: Some(InitWeights {
            path: path.to_path_buf(),
            sha256: String::new(),
        }),
        ..tiny()
    };

    // The first step of the warm run is the trained student's step on the run's first
    // batch: its loss is bit for bit what the trained weights give that batch, and not what
    // the seeded random weights give.
    let warm = tmp.path().join("warm");
    let warm_mse = first_step_mse(&store, &warm, &init(&weights)).unwrap();
    let cold_mse = first_step_mse(&store, &tmp.path().join("cold"), &tiny()).unwrap();
    let samples = load_samples(&store);
    let split = split_by_identity(&samples.keys, tiny().val_percent);
    let order = epoch_order(&split.train, tiny().seed, 0);
    let (mut crops, mut targets) = (Vec::new(), Vec::new());
    for &i in &order[..tiny().batch] {
        crops.extend_from_slice(samples.crop(i));
        targets.extend_from_slice(samples.descriptor(i));
    }
    let direct_mse = load_student(&weights)
        .step(&crops, &targets, tiny().lr)
        .unwrap();
    assert_eq!(warm_mse.to_bits(), direct_mse.to_bits());
    assert_ne!(warm_mse.to_bits(), cold_mse.to_bits());

    // config.json names the file and its hash.
    let sha = read(&trained.join("weights.sha256"));
    let sha = sha.split_whitespace().next().unwrap();
    let config = read(&warm.join("config.json"));
    assert!(config.contains(sha), "{config}");

    // Resuming with the same weights under another path goes on; other weights are refused.
    let copy = tmp.path().join("copy.weights");
    std::fs::copy(&weights, &copy).unwrap();
    train(
        &store,
        &warm,
        &TrainConfig {
            max_steps: Some(1),
            ..init(&copy)
        },
        |_| {},
    )
    .unwrap();
    let other = tmp.path().join("other.weights");
    StudentTrainer::new(
        TrainConfig {
            descriptor_len: D,
            ..tiny()
        }
        .student(),
        7,
    )
    .unwrap()
    .save(&other)
    .unwrap();
    let err = train(&store, &warm, &init(&other), |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::ConfigMismatch { .. }), "{err}");

    // Weights of another architecture, or no file at all: clear errors naming the file.
    let wide = tmp.path().join("wide.weights");
    StudentTrainer::new(
        TrainConfig {
            width: 16,
            descriptor_len: D,
            ..tiny()
        }
        .student(),
        7,
    )
    .unwrap()
    .save(&wide)
    .unwrap();
    let err = train(&store, &tmp.path().join("w"), &init(&wide), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Student(StudentError::ConfigMismatch { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("wide.weights"), "{err}");
    // Nothing was written, so the corrected command can use the same run folder.
    assert!(!tmp.path().join("w").exists());
    let missing = tmp.path().join("missing.weights");
    let err = train(&store, &tmp.path().join("m"), &init(&missing), |_| {}).unwrap_err();
    assert!(err.to_string().contains("missing.weights"), "{err}");
}

/// log.csv's rows without the elapsed time (the only field that differs between runs).
fn rows_without_time(log: &str) -> Vec<String> {
    log.lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

/// Regression: training wrote the end-of-epoch checkpoint before the epoch's log row, so a
/// kill between the two left a run whose checkpoint counted the epoch done and whose log
/// never got its row. The kill is a panic in the observer when the checkpoint is reported.
#[test]
fn training_checkpoint_before_log_row_a_kill_after_the_checkpoint_loses_no_row() {
    let (tmp, store) = tmp_with_store();
    let full = tmp.path().join("full");
    train(&store, &full, &tiny(), |_| {}).unwrap();
    let want = rows_without_time(&read(&full.join("log.csv")));
    assert_eq!(want.len(), 3, "header and 2 rows");

    let run = tmp.path().join("run");
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&store, &run, &tiny(), |e| {
            if let TrainEvent::Checkpoint { .. } = e {
                panic!("killed right after the end-of-epoch checkpoint");
            }
        })
    }));
    assert!(killed.is_err(), "the observer's panic stops the run");
    let state: serde_json::Value =
        serde_json::from_str(&read(&run.join("checkpoint/state.json"))).unwrap();
    assert_eq!(state["epoch"], 1, "the checkpoint counts epoch 1 done");
    assert_eq!(
        rows_without_time(&read(&run.join("log.csv"))),
        want[..2],
        "epoch 1's row is on disk before its checkpoint"
    );

    let report = train(&store, &run, &tiny(), |_| {}).unwrap();
    assert!(report.finished);
    assert_eq!(rows_without_time(&read(&run.join("log.csv"))), want);
}

/// The other side of the same fix: a row written just before a kill, whose epoch the
/// checkpoint does not count as done, is dropped on resume (with a torn line after it)
/// and written once when the epoch ends again; a torn header is rewritten.
#[test]
fn training_checkpoint_before_log_row_a_row_past_the_checkpoint_is_not_repeated() {
    let (tmp, store) = tmp_with_store();
    let full = tmp.path().join("full");
    train(&store, &full, &tiny(), |_| {}).unwrap();
    let full_log = read(&full.join("log.csv"));
    let want = rows_without_time(&full_log);
    let header_and_row_1: String = full_log.lines().take(2).map(|l| format!("{l}\n")).collect();

    for (name, left_by_the_kill) in [
        ("row", format!("{header_and_row_1}2,9,7")),
        ("header", "epoch,step,ima".to_string()),
    ] {
        let run = tmp.path().join(name);
        // Stopped mid-epoch 1: the checkpoint in force counts no epoch done.
        let stop = TrainConfig {
            max_steps: Some(1),
            ..tiny()
        };
        assert!(!train(&store, &run, &stop, |_| {}).unwrap().finished);
        std::fs::write(run.join("log.csv"), &left_by_the_kill).unwrap();
        let report = train(&store, &run, &tiny(), |_| {}).unwrap();
        assert!(report.finished);
        assert_eq!(
            rows_without_time(&read(&run.join("log.csv"))),
            want,
            "{name}"
        );
    }
}
