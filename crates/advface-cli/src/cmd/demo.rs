//! `advface demo`: the main job on the embedded defaults. The committed LFW-MCS crops of a few
//! pairs, the bundled face-api.js black box and the shipped student: attack, score, and a
//! side-by-side picture (original, adversarial, amplified difference) per source image.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use advface_core::RgbImage;
use anyhow::{Context, Result};

use super::attack;
use super::blackbox::OracleArgs;
use super::score;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder (adversarial images, records, compare/ pictures, score.json).
    #[arg(long, value_name = "DIR", default_value = "out/demo")]
    pub out: PathBuf,
    /// Pairs file (default: the committed demo pairs).
    #[arg(long, value_name = "CSV")]
    pub pairs: Option<PathBuf>,
    /// Crops folder (default: the committed demo crops).
    #[arg(long, value_name = "DIR")]
    pub crops: Option<PathBuf>,
    /// Attack method (as `advface attack --method`).
    #[arg(long, default_value = advface_attacks::plan::AUTO, value_parser = attack::method_parser())]
    pub method: String,
    /// Black-box queries per source image, targets included.
    #[arg(long, default_value_t = 100)]
    pub budget: u64,
    /// Students (default: the shipped one).
    #[arg(long, value_delimiter = ',', default_value = "student")]
    pub students: Vec<String>,
    /// Gradient steps per image.
    #[arg(long)]
    pub steps: Option<usize>,
}

/// The committed demo data: `fixtures/demo` in the source tree.
fn demo_dir() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/demo");
    p.canonicalize().unwrap_or(p)
}

/// Original, adversarial and the difference amplified 10x around grey, side by side with a
/// 4-pixel white gap.
pub fn side_by_side(original: &RgbImage, adversarial: &RgbImage) -> RgbImage {
    let (w, h) = (original.width() as usize, original.height() as usize);
    let gap = 4;
    let total = 3 * w + 2 * gap;
    let mut data = vec![255u8; total * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let o = original.get(x as u32, y as u32, c);
                let a = adversarial.get(x as u32, y as u32, c);
                let diff = (128.0 + 10.0 * (f64::from(a) - f64::from(o))).clamp(0.0, 255.0) as u8;
                for (k, v) in [o, a, diff].into_iter().enumerate() {
                    data[(y * total + k * (w + gap) + x) * 3 + c] = v;
                }
            }
        }
    }
    RgbImage::new(total as u32, h as u32, data).expect("sizes agree")
}

pub fn run(args: Args) -> Result<ExitCode> {
    let dir = demo_dir();
    let pairs_file = args
        .pairs
        .clone()
        .unwrap_or_else(|| dir.join("pairs_list.csv"));
    let crops = args.crops.clone().unwrap_or_else(|| dir.join("crops"));
    let oracle = OracleArgs {
        model: "faceapi".into(),
        oracle: None,
        token: None,
        budget: Some(args.budget),
        cache: None,
    };
    eprintln!(
        "demo: {} with the bundled face-api.js black box, {} queries per image, students {}",
        pairs_file.display(),
        args.budget,
        args.students.join(",")
    );
    let code = attack::run(attack::Args {
        pairs: pairs_file.clone(),
        crops: crops.clone(),
        out: args.out.clone(),
        method: args.method.clone(),
        students: args.students.clone(),
        weights: Vec::new(),
        no_oracle: false,
        steps: args.steps,
        eps: None,
        ssim_margin: 0.002,
        no_mirror: false,
        diversity: 0,
        patience: 10,
        check_every: 0,
        n: None,
        shard: None,
        threads: None,
        directions: None,
        no_prior: false,
        no_history: false,
        no_ssim_weight: false,
        seed: 0,
        oracle: oracle.clone(),
    })?;
    if code != ExitCode::SUCCESS {
        anyhow::bail!("the attack failed on some pair (see above)");
    }
    // Pictures a person can look at.
    let pairs = advface_data::read_pairs(&pairs_file)?;
    let compare = args.out.join("compare");
    std::fs::create_dir_all(&compare).with_context(|| format!("creating {}", compare.display()))?;
    for p in &pairs {
        for rel in &p.sources {
            let orig = advface_image::read_image(&crops.join(rel))?;
            let adv = advface_image::read_image(&args.out.join(rel).with_extension("png"))?;
            let name = Path::new(rel)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| rel.replace('/', "_"));
            advface_image::write_png_atomic(
                &compare.join(format!("{name}.png")),
                &side_by_side(&orig, &adv),
            )?;
        }
    }
    eprintln!(
        "side-by-side pictures (original | adversarial | difference x10): {}",
        compare.display()
    );
    score::run(score::Args {
        pairs: Some(pairs_file),
        crops: Some(crops),
        adv: Some(args.out.clone()),
        n: None,
        shard: None,
        merge: Vec::new(),
        json: Some(args.out.join("score.json")),
        oracle: OracleArgs {
            budget: None,
            ..oracle
        },
    })
}
