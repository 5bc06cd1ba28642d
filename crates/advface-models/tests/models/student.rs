//! Student networks: shapes, learning on a tiny batch, save/load, and their errors.

use std::path::PathBuf;

use advface_models::student::{
    Arch, StudentConfig, StudentError, StudentTrainer, STUDENT_INPUT_SIZE,
};

/// Deterministic pseudo-random numbers (SplitMix64), so the test needs no rng crate.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

const CROP: usize = STUDENT_INPUT_SIZE * STUDENT_INPUT_SIZE * 3;

fn small() -> StudentConfig {
    StudentConfig {
        width: 8,
        ..StudentConfig::default()
    }
}

fn crops(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    (0..n * CROP).map(|_| (rng.next() >> 56) as u8).collect()
}

fn targets(n: usize, len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix(seed);
    (0..n * len).map(|_| (rng.unit() - 0.5) * 0.3).collect()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advface-student-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn student_defaults_are_the_second_place_recipe() {
    let c = StudentConfig::default();
    assert_eq!(c.arch, Arch::ResNet18);
    assert_eq!(c.width, 64);
    assert_eq!(c.stop_after_layer, 3);
    assert_eq!(c.descriptor_len, 128);
    assert!(!c.output_batch_norm);
    assert_eq!(c.feature_channels(), 256);
    // Serde: missing fields take the defaults; unknown fields are refused.
    let parsed: StudentConfig = serde_json::from_str(r#"{"arch":"resnet34"}"#).unwrap();
    assert_eq!(parsed.arch, Arch::ResNet34);
    assert_eq!(parsed.width, 64);
    assert!(serde_json::from_str::<StudentConfig>(r#"{"widht":8}"#).is_err());
}

#[test]
fn student_bad_config_is_an_error() {
    for c in [
        StudentConfig {
            width: 0,
            ..small()
        },
        StudentConfig {
            stop_after_layer: 5,
            ..small()
        },
        StudentConfig {
            descriptor_len: 0,
            ..small()
        },
    ] {
        assert!(matches!(
            StudentTrainer::new(c, 1),
            Err(StudentError::BadConfig(_))
        ));
    }
}

#[test]
fn student_output_shape_and_param_count() {
    for config in [
        small(),
        StudentConfig {
            arch: Arch::ResNet34,
            output_batch_norm: true,
            descriptor_len: 64,
            ..small()
        },
    ] {
        let t = StudentTrainer::new(config.clone(), 7).unwrap();
        let out = t.predict(&crops(3, 1), 3).unwrap();
        assert_eq!(out.len(), 3 * config.descriptor_len);
        assert!(out.iter().all(|v| v.is_finite()));
        // burn counts the batch norm running mean and variance too: as many values as the
        // batch norm scales and shifts, so num_params = trainable + (bn scale + shift).
        let trainable = config.trainable_params();
        assert!(
            t.num_params() > trainable,
            "{} vs {trainable}",
            t.num_params()
        );
    }
    // Full-width ResNet-18 cut after layer3: torchvision's resnet18 up to layer3 has
    // 2,782,784 parameters (conv1, bn1, layer1..3); plus the 256 x 128 linear layer and bias.
    assert_eq!(
        StudentConfig::default().trainable_params(),
        2_782_784 + 256 * 128 + 128
    );
}

#[test]
fn student_bad_input_is_an_error() {
    let mut t = StudentTrainer::new(small(), 1).unwrap();
    assert!(matches!(
        t.predict(&[0u8; 10], 1),
        Err(StudentError::BadInput(_))
    ));
    assert!(matches!(
        t.predict(&crops(2, 1), 3),
        Err(StudentError::BadInput(_))
    ));
    assert!(matches!(
        t.step(&crops(2, 1), &targets(1, 128, 2), 1e-3),
        Err(StudentError::BadInput(_))
    ));
    let mut bad = targets(2, 128, 2);
    bad[5] = f32::NAN;
    assert!(matches!(
        t.step(&crops(2, 1), &bad, 1e-3),
        Err(StudentError::BadInput(_))
    ));
    assert!(matches!(
        t.step(&crops(2, 1), &targets(2, 128, 2), -1.0),
        Err(StudentError::BadInput(_))
    ));
}

#[test]
fn student_training_reduces_mse_on_a_tiny_batch() {
    let n = 8;
    let x = crops(n, 11);
    let y = targets(n, 128, 12);
    let mut t = StudentTrainer::new(small(), 3).unwrap();
    let mut losses = Vec::new();
    for _ in 0..40 {
        losses.push(t.step(&x, &y, 3e-3).unwrap());
    }
    let first = losses[0];
    let last = *losses.last().unwrap();
    eprintln!(
        "MSE per element over {} steps: {first} -> {last}",
        losses.len()
    );
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(last < 0.3 * first, "MSE {first} -> {last}: {losses:?}");
    assert_eq!(t.steps(), 40);
    // Eval mode (running statistics) also fits the batch better than at the start.
    let pred = t.predict(&x, n).unwrap();
    let mse: f32 = pred
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        / y.len() as f32;
    assert!(mse.is_finite());
}

#[test]
fn student_save_load_is_bit_identical() {
    let config = StudentConfig {
        output_batch_norm: true,
        ..small()
    };
    let mut t = StudentTrainer::new(config.clone(), 5).unwrap();
    let x = crops(4, 21);
    let y = targets(4, 128, 22);
    for _ in 0..3 {
        t.step(&x, &y, 1e-3).unwrap();
    }
    let path = tmp("roundtrip.student");
    t.save(&path).unwrap();
    assert_eq!(StudentTrainer::read_config(&path).unwrap(), config);
    let loaded = StudentTrainer::load(config, &path).unwrap();
    let a = t.predict(&x, 4).unwrap();
    let b = loaded.predict(&x, 4).unwrap();
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // A fresh student with another seed predicts differently (the load did something).
    let other = StudentTrainer::new(t.config().clone(), 99).unwrap();
    assert_ne!(other.predict(&x, 4).unwrap(), a);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn student_wrong_config_load_is_a_clear_error() {
    let t = StudentTrainer::new(small(), 5).unwrap();
    let path = tmp("wrong.student");
    t.save(&path).unwrap();
    let err = StudentTrainer::load(
        StudentConfig {
            descriptor_len: 64,
            ..small()
        },
        &path,
    )
    .unwrap_err();
    assert!(matches!(err, StudentError::ConfigMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"descriptor_len\":64") && msg.contains("\"descriptor_len\":128"),
        "{msg}"
    );

    let missing = StudentTrainer::load(small(), &tmp("missing.student")).unwrap_err();
    assert!(matches!(missing, StudentError::Io { .. }), "{missing}");

    let garbage = tmp("garbage.student");
    std::fs::write(&garbage, b"not a student").unwrap();
    let err = StudentTrainer::load(small(), &garbage).unwrap_err();
    assert!(matches!(err, StudentError::BadFile { .. }), "{err}");

    // Truncated weights: the header is fine, the record is not.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&garbage, &bytes[..bytes.len() / 2]).unwrap();
    let err = StudentTrainer::load(small(), &garbage).unwrap_err();
    assert!(matches!(err, StudentError::BadFile { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&garbage).unwrap();
}

#[test]
fn student_input_gradient_matches_finite_differences() {
    let t = StudentTrainer::new(small(), 8).unwrap();
    let shape = [1, 3, 112, 112];
    let mut rng = SplitMix(31);
    let pixels: Vec<f32> = (0..3 * 112 * 112).map(|_| rng.unit()).collect();
    let cot = targets(1, 128, 32);
    let (d, g) = t.descriptors_and_grad(&pixels, shape, &cot).unwrap();
    assert_eq!(d.len(), 128);
    assert_eq!(g.len(), pixels.len());
    // Eval-mode descriptors agree with predict's (same weights, same statistics).
    let f = |p: &[f32]| -> f64 {
        let (d, _) = t.descriptors_and_grad(p, shape, &cot).unwrap();
        d.iter()
            .zip(&cot)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum()
    };
    // Directional derivative along the gradient itself.
    let norm: f64 = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    assert!(norm > 0.0);
    let eps = 1e-2 / norm;
    let plus: Vec<f32> = pixels
        .iter()
        .zip(&g)
        .map(|(p, v)| p + (eps * *v as f64) as f32)
        .collect();
    let minus: Vec<f32> = pixels
        .iter()
        .zip(&g)
        .map(|(p, v)| p - (eps * *v as f64) as f32)
        .collect();
    let numeric = (f(&plus) - f(&minus)) / (2.0 * eps);
    let analytic = norm * norm;
    assert!(
        (numeric - analytic).abs() < 0.05 * analytic,
        "numeric {numeric} vs analytic {analytic}"
    );
}

#[test]
fn student_resume_from_weights_and_optimizer_continues_identically() {
    let config = small();
    let x = crops(4, 41);
    let y = targets(4, 128, 42);
    let mut a = StudentTrainer::new(config.clone(), 6).unwrap();
    for _ in 0..3 {
        a.step(&x, &y, 1e-3).unwrap();
    }
    let weights = tmp("resume.student");
    let optim = tmp("resume.adam");
    a.save(&weights).unwrap();
    a.save_optimizer(&optim).unwrap();
    let mut b = StudentTrainer::load(config, &weights).unwrap();
    b.load_optimizer(&optim).unwrap();
    assert_eq!(b.steps(), 3);
    for _ in 0..2 {
        let la = a.step(&x, &y, 1e-3).unwrap();
        let lb = b.step(&x, &y, 1e-3).unwrap();
        assert_eq!(la.to_bits(), lb.to_bits());
    }
    assert_eq!(a.predict(&x, 4).unwrap(), b.predict(&x, 4).unwrap());

    // A damaged optimizer file is an error, not a crash.
    std::fs::write(&optim, b"ADVFOPT1\0\0\0\0\0\0\0\0garbage").unwrap();
    assert!(matches!(
        b.load_optimizer(&optim),
        Err(StudentError::BadFile { .. })
    ));
    std::fs::remove_file(&weights).unwrap();
    std::fs::remove_file(&optim).unwrap();
}

#[test]
fn student_same_seed_same_weights() {
    let x = crops(2, 51);
    let a = StudentTrainer::new(small(), 77)
        .unwrap()
        .predict(&x, 2)
        .unwrap();
    let b = StudentTrainer::new(small(), 77)
        .unwrap()
        .predict(&x, 2)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_saved_student_loads_as_an_embedder_with_the_same_answers() {
    use advface_core::{Embedder, PixelBatch, RgbImage};
    let config = StudentConfig {
        width: 8,
        ..StudentConfig::default()
    };
    let trainer = StudentTrainer::new(config, 3).unwrap();
    let path = tmp("embedder-student.weights");
    trainer.save(&path).unwrap();
    let mut s = 17u32;
    let images: Vec<RgbImage> = (0..3)
        .map(|_| {
            let data = (0..112 * 112 * 3)
                .map(|_| {
                    s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (s >> 24) as u8
                })
                .collect();
            RgbImage::new(112, 112, data).unwrap()
        })
        .collect();
    let crops: Vec<u8> = images
        .iter()
        .flat_map(|im| im.as_bytes().to_vec())
        .collect();
    let want = trainer.predict(&crops, 3).unwrap();
    let embedder = advface_models::StudentEmbedder::load(&path).unwrap();
    assert_eq!(embedder.descriptor_len(), 128);
    assert_eq!(embedder.fixed_input_size(), Some((112, 112)));
    let got = embedder
        .embed(&PixelBatch::from_images(&images).unwrap())
        .unwrap();
    let got: Vec<f32> = got.into_iter().flat_map(|d| d.0).collect();
    assert_eq!(got, want);
}

/// Every architecture at width 8, with the input at full size.
fn every_arch() -> [StudentConfig; 4] {
    [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::Dlib,
        Arch::MobileFaceNet,
    ]
    .map(|arch| StudentConfig { arch, ..small() })
}

#[test]
fn student_arch_serde_names() {
    for (arch, name) in [
        (Arch::ResNet18, "resnet18"),
        (Arch::ResNet34, "resnet34"),
        (Arch::Dlib, "dlib"),
        (Arch::MobileFaceNet, "mobilefacenet"),
    ] {
        assert_eq!(serde_json::to_string(&arch).unwrap(), format!("\"{name}\""));
        assert_eq!(arch.name(), name);
        assert_eq!(arch.to_string(), name);
        let parsed: StudentConfig =
            serde_json::from_str(&format!(r#"{{"arch":"{name}"}}"#)).unwrap();
        assert_eq!(parsed.arch, arch);
    }
    assert_eq!(Arch::Dlib.default_width(), 32);
    assert_eq!(Arch::MobileFaceNet.default_width(), 64);
    // A config from before the architecture choice (no `arch`, no `input_downsample`)
    // loads as ResNet-18 at full size.
    let old: StudentConfig = serde_json::from_str(
        r#"{"width":32,"stop_after_layer":3,"descriptor_len":128,"output_batch_norm":false}"#,
    )
    .unwrap();
    assert_eq!(
        old,
        StudentConfig {
            width: 32,
            ..StudentConfig::default()
        }
    );
}

#[test]
fn student_trainable_params_are_exact_for_every_arch() {
    for base in every_arch() {
        for width in [4, 8] {
            for input_downsample in [1, 2] {
                for output_batch_norm in [false, true] {
                    if output_batch_norm && base.arch == Arch::MobileFaceNet {
                        continue;
                    }
                    let config = StudentConfig {
                        width,
                        input_downsample,
                        output_batch_norm,
                        stop_after_layer: if width == 4 { 4 } else { 3 },
                        descriptor_len: 32,
                        ..base.clone()
                    };
                    let t = StudentTrainer::new(config.clone(), 2).unwrap();
                    assert_eq!(
                        t.num_trainable_params(),
                        config.trainable_params(),
                        "{config:?}"
                    );
                    assert!(t.num_params() > t.num_trainable_params());
                }
            }
        }
    }
    // The ResNet counts are the torchvision ones (see student_output_shape_and_param_count).
    let r18 = StudentConfig::default();
    assert_eq!(
        StudentTrainer::new(r18.clone(), 1)
            .unwrap()
            .num_trainable_params(),
        r18.trainable_params()
    );
    // MobileFaceNet at the paper's width: "0.99 million parameters" (Chen et al. 2018; the
    // count here includes the batch norm and PReLU parameters too).
    let mfn = StudentConfig {
        arch: Arch::MobileFaceNet,
        ..StudentConfig::default()
    };
    let p = mfn.trainable_params();
    assert!((980_000..1_020_000).contains(&p), "{p}");
    assert_eq!(mfn.gdconv_kernel(), 7);
    assert_eq!(
        StudentConfig {
            input_downsample: 2,
            ..mfn
        }
        .gdconv_kernel(),
        4
    );
}

#[test]
fn student_new_archs_shapes_and_input_gradients() {
    for base in every_arch().into_iter().skip(2) {
        for input_downsample in [1, 2] {
            let config = StudentConfig {
                input_downsample,
                ..base.clone()
            };
            let t = StudentTrainer::new(config.clone(), 4).unwrap();
            let out = t.predict(&crops(3, 61), 3).unwrap();
            assert_eq!(out.len(), 3 * 128, "{config:?}");
            assert!(out.iter().all(|v| v.is_finite()));
            // Input gradients at the crop size and at other sizes (MobileFaceNet's GDConv
            // pads a smaller final map and averages over a larger one).
            for side in [112, 48, 160] {
                let shape = [2, 3, side, side];
                let mut rng = SplitMix(62);
                let pixels: Vec<f32> = (0..2 * 3 * side * side).map(|_| rng.unit()).collect();
                let (d, g) = t
                    .descriptors_and_grad(&pixels, shape, &targets(2, 128, 63))
                    .unwrap();
                assert_eq!(d.len(), 2 * 128);
                assert_eq!(g.len(), pixels.len(), "{config:?} at {side} px");
                assert!(g.iter().all(|v| v.is_finite()));
                assert!(g.iter().any(|v| *v != 0.0), "{config:?} at {side} px");
            }
        }
    }
}

#[test]
fn student_new_archs_training_reduces_mse_on_four_images() {
    let n = 4;
    let x = crops(n, 71);
    let y = targets(n, 128, 72);
    for config in every_arch().into_iter().skip(2) {
        let mut t = StudentTrainer::new(config.clone(), 3).unwrap();
        let losses: Vec<f32> = (0..8).map(|_| t.step(&x, &y, 3e-3).unwrap()).collect();
        eprintln!("{}: MSE {losses:?}", config.arch);
        assert!(losses.iter().all(|l| l.is_finite()));
        let (first, last) = (losses[0], *losses.last().unwrap());
        // MobileFaceNet ends in batch norm, whose outputs start at unit variance per
        // dimension (targets: 0.0075); shrinking its scale takes more than 8 steps, so its
        // loss falls more slowly here (1.02 -> 0.85; dlib: 0.52 -> 0.06).
        let want = if config.arch == Arch::MobileFaceNet {
            0.9
        } else {
            0.5
        };
        assert!(
            last < want * first,
            "{}: MSE {first} -> {last}",
            config.arch
        );
        assert!(
            losses.windows(2).all(|w| w[1] < w[0]),
            "{}: {losses:?}",
            config.arch
        );
        assert_eq!(t.steps(), 8);
    }
}

#[test]
fn student_new_archs_save_load_and_seeds() {
    let x = crops(4, 81);
    let y = targets(4, 128, 82);
    for base in every_arch().into_iter().skip(2) {
        for config in [
            base.clone(),
            StudentConfig {
                input_downsample: 2,
                output_batch_norm: base.arch == Arch::Dlib,
                ..base.clone()
            },
        ] {
            let mut t = StudentTrainer::new(config.clone(), 5).unwrap();
            for _ in 0..2 {
                t.step(&x, &y, 1e-3).unwrap();
            }
            let path = tmp(&format!(
                "{}-{}.student",
                config.arch, config.input_downsample
            ));
            t.save(&path).unwrap();
            assert_eq!(StudentTrainer::read_config(&path).unwrap(), config);
            let loaded = StudentTrainer::load(config.clone(), &path).unwrap();
            let a = t.predict(&x, 4).unwrap();
            let b = loaded.predict(&x, 4).unwrap();
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{config:?}"
            );
            // Another architecture's config is refused before the weights are read.
            let other = StudentConfig {
                arch: Arch::ResNet18,
                ..config.clone()
            };
            assert!(matches!(
                StudentTrainer::load(other, &path),
                Err(StudentError::ConfigMismatch { .. })
            ));
            std::fs::remove_file(&path).unwrap();
            // Seeded: the same seed gives the same weights, another seed others.
            let p = |seed| {
                StudentTrainer::new(config.clone(), seed)
                    .unwrap()
                    .predict(&x, 4)
                    .unwrap()
            };
            assert_eq!(p(9), p(9));
            assert_ne!(p(9), p(10));
        }
    }
}

#[test]
fn student_mobilefacenet_refuses_output_bn_and_batches_of_one() {
    let config = StudentConfig {
        arch: Arch::MobileFaceNet,
        ..small()
    };
    assert!(config.needs_batch_of_two());
    assert!(matches!(
        StudentTrainer::new(
            StudentConfig {
                output_batch_norm: true,
                ..config.clone()
            },
            1
        ),
        Err(StudentError::BadConfig(_))
    ));
    let mut t = StudentTrainer::new(config, 1).unwrap();
    assert!(matches!(
        t.step(&crops(1, 91), &targets(1, 128, 92), 1e-3),
        Err(StudentError::BadInput(_))
    ));
    // Inference on one image is fine.
    assert_eq!(t.predict(&crops(1, 91), 1).unwrap().len(), 128);
    assert!(!StudentConfig {
        arch: Arch::Dlib,
        ..small()
    }
    .needs_batch_of_two());
}

/// The committed students load with the architecture their README names: the shipped
/// dlib-like one (built into the binary) and the two earlier ones, whose files predate
/// later format changes.
#[test]
fn the_committed_student_weights_load_with_their_architectures() {
    use advface_core::{Embedder, PixelBatch, RgbImage};
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    for (folder, arch) in [
        ("student", Arch::Dlib),
        ("student-dlib", Arch::Dlib),
        ("student-r18", Arch::ResNet18),
    ] {
        let path = models.join(folder).join("student.weights");
        let config = StudentTrainer::read_config(&path).unwrap();
        assert_eq!(config.arch, arch, "{folder}");
        let embedder = advface_models::StudentEmbedder::load(&path).unwrap();
        assert_eq!(embedder.config(), &config);
        let image = RgbImage::new(112, 112, crops(1, 101)).unwrap();
        let d = embedder
            .embed(&PixelBatch::from_images(&[image]).unwrap())
            .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0.len(), config.descriptor_len);
        assert!(d[0].0.iter().all(|v| v.is_finite()), "{folder}");
    }
}
