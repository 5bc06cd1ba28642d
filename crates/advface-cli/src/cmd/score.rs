//! `advface score`: the MCS2018 score of a folder of adversarial images, measured afresh.

use std::path::PathBuf;
use std::process::ExitCode;

use advface_eval::{default_threshold, score_run, RunScore};
use anyhow::{bail, Context, Result};

use super::blackbox::{open_oracle, OracleArgs};

/// Exit status when an image is below the SSIM limit (the submission is invalid).
pub const EXIT_SSIM_VIOLATION: u8 = 3;

#[derive(clap::Args)]
pub struct Args {
    /// Pairs file (MCS2018 pairs_list.csv).
    #[arg(long, value_name = "CSV")]
    pub pairs: PathBuf,
    /// Folder of the original crops.
    #[arg(long, value_name = "DIR")]
    pub crops: PathBuf,
    /// Folder of the adversarial images (an `advface attack` output, shards merged).
    #[arg(long, value_name = "DIR")]
    pub adv: PathBuf,
    /// Score only the first N pairs.
    #[arg(long)]
    pub n: Option<usize>,
    /// Also write the full report (per pair, violations, counts) as JSON here.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub oracle: OracleArgs,
}

/// The report as a table of what PROTOCOL.md asks for.
pub fn table(r: &RunScore) -> String {
    let mut s = String::new();
    let pct = |a: f64, b: f64| 100.0 * (a - b) / b;
    s += "| quantity | value |\n|---|---:|\n";
    s += &format!("| pairs scored | {} |\n", r.attacked.pairs);
    s += &format!(
        "| score (mean L2, attacked) | **{:.4}** |\n",
        r.attacked.score
    );
    s += &format!(
        "| clean score (same pairs, no attack) | {:.4} |\n",
        r.clean.score
    );
    s += &format!(
        "| change | {:+.1}% |\n",
        pct(r.attacked.score, r.clean.score)
    );
    s += &format!(
        "| floor (targets' geometric median: no attack can score lower) | {:.4} |\n",
        r.floor
    );
    s += &format!(
        "| match rate (L2 < {}) | {:.1}% (clean {:.1}%) |\n",
        r.attacked.threshold,
        100.0 * r.attacked.match_rate,
        100.0 * r.clean.match_rate
    );
    s += &format!(
        "| SSIM min / mean | {:.4} / {:.4} |\n",
        r.ssim_min, r.ssim_mean
    );
    s += &format!("| images below 0.95 | {} |\n", r.violations.len());
    match &r.attack {
        Some(a) => {
            s += &format!(
                "| black-box queries per image (mean / max, targets included) | {:.1} / {} |\n",
                a.queries_mean, a.queries_max
            );
            s += &format!(
                "| attack time (sum over pairs) | {:.0} s |\n",
                a.pair_seconds
            );
        }
        None => s += "| black-box queries per image | (no attack records) |\n",
    }
    s += &format!("| scoring time | {:.1} s |\n", r.wall_s);
    s += &format!("| machine | {} |\n", r.machine);
    s
}

pub fn run(args: Args) -> Result<ExitCode> {
    let pairs = advface_data::read_pairs(&args.pairs)?;
    let selected: Vec<usize> = (0..args.n.map_or(pairs.len(), |n| n.min(pairs.len()))).collect();
    if selected.is_empty() {
        bail!("{} lists no pair", args.pairs.display());
    }
    if !args.adv.is_dir() {
        bail!(
            "{} is not a folder: give the --out folder of `advface attack`",
            args.adv.display()
        );
    }
    let oracle = open_oracle(&args.oracle)?;
    let report = score_run(
        &pairs,
        &selected,
        &args.crops,
        &args.adv,
        oracle.as_ref(),
        default_threshold(),
    );
    for (i, e) in &report.failed {
        eprintln!("error: pair {i}: {e}");
    }
    for v in &report.violations {
        eprintln!("error: {}: SSIM {:.5} below 0.95", v.image, v.ssim);
    }
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        advface_image::write_atomic(path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if !report.violations.is_empty() {
        ExitCode::from(EXIT_SSIM_VIOLATION)
    } else if !report.failed.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
