use std::path::PathBuf;
use std::process::ExitCode;

use advface_data::{prepare, PrepareConfig, PrepareEvent};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    /// LFW folder holding images_deepfunneled/ (e.g. ../shared/data/lfw).
    #[arg(long)]
    pub lfw: PathBuf,
    /// Output folder: crops/, pairs_list.csv, distill_list.txt, manifest.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep only the first N pairs in pairs_list.csv.
    #[arg(long)]
    pub n: Option<usize>,
    /// Crop only the attack identities, not the distillation pool.
    #[arg(long)]
    pub attack_only: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let cfg = PrepareConfig {
        lfw: args.lfw,
        out: args.out,
        n: args.n,
        attack_only: args.attack_only,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} crops  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    let observer = |e: PrepareEvent| match e {
        PrepareEvent::Start { total } => bar.set_length(total as u64),
        PrepareEvent::Image => bar.inc(1),
    };
    let report = prepare(&cfg, &observer)?;
    bar.finish_and_clear();
    println!(
        "LFW: {} identities, {} images; attack: {} identities, {} images; pool: {} images",
        report.identities,
        report.images,
        report.attack_identities,
        report.attack_images,
        report.pool_images
    );
    println!(
        "wrote {} crops, {} of {} pairs -> {}",
        report.crops_written,
        report.pairs_written,
        report.pairs_total,
        cfg.out.display()
    );
    if !report.skipped.is_empty() {
        eprintln!("skipped {} unreadable image(s):", report.skipped.len());
        for s in &report.skipped {
            eprintln!("  {}: {}", s.path.display(), s.reason);
        }
    }
    println!("manifest: {}", report.manifest.display());
    Ok(ExitCode::SUCCESS)
}
