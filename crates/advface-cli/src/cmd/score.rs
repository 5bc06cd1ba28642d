//! `advface score`: the MCS2018 score of a folder of adversarial images, measured afresh.

use std::path::PathBuf;
use std::process::ExitCode;

use advface_attacks::select_pairs;
use advface_eval::merge::covered_pairs;
use advface_eval::{merge_scores, score_run, Metric, RunScore};
use anyhow::{bail, Context, Result};

use super::attack::parse_shard;
use super::blackbox::{open_oracle, OracleArgs};

/// Exit status when an image is below the SSIM limit (the submission is invalid).
pub const EXIT_SSIM_VIOLATION: u8 = 3;

#[derive(clap::Args)]
pub struct Args {
    /// Pairs file (MCS2018 pairs_list.csv).
    #[arg(long, value_name = "CSV", required_unless_present = "merge")]
    pub pairs: Option<PathBuf>,
    /// Folder of the original crops.
    #[arg(long, value_name = "DIR", required_unless_present = "merge")]
    pub crops: Option<PathBuf>,
    /// Folder of the adversarial images (an `advface attack` output, shards merged).
    #[arg(long, value_name = "DIR", required_unless_present = "merge")]
    pub adv: Option<PathBuf>,
    /// Score only the first N pairs (with --merge: check the reports cover exactly them).
    #[arg(long)]
    pub n: Option<usize>,
    /// Score only every N-th pair starting at K (K/N, 0-based), the pairs of `advface
    /// attack --shard K/N`; merge the shards' reports with --merge.
    #[arg(long, value_name = "K/N", value_parser = parse_shard, conflicts_with = "merge")]
    pub shard: Option<advface_core::Shard>,
    /// Merge these `score --json` reports of disjoint shards into one report, as if the
    /// whole run had been scored at once (nothing is asked of the black box).
    #[arg(
        long,
        value_name = "JSON",
        num_args = 1..,
        conflicts_with_all = ["pairs", "crops", "adv"]
    )]
    pub merge: Vec<PathBuf>,
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

fn read_report(path: &PathBuf) -> Result<RunScore> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not a report of `advface score --json` (write one with `advface score ... \
             --shard K/N --json FILE`)",
            path.display()
        )
    })
}

/// `--merge`: the shards' reports as one; with `--n`, they must cover exactly pairs 0..n.
fn merged(args: &Args) -> Result<RunScore> {
    let reports: Vec<RunScore> = args.merge.iter().map(read_report).collect::<Result<_>>()?;
    let report = merge_scores(&reports).map_err(|e| {
        let names: Vec<String> = args
            .merge
            .iter()
            .enumerate()
            .map(|(i, p)| format!("report {i} = {}", p.display()))
            .collect();
        anyhow::anyhow!("{e} ({})", names.join(", "))
    })?;
    if let Some(n) = args.n {
        let covered = covered_pairs(&report);
        let missing: Vec<usize> = (0..n).filter(|i| !covered.contains(i)).collect();
        let extra: Vec<usize> = covered.iter().copied().filter(|&i| i >= n).collect();
        if !missing.is_empty() || !extra.is_empty() {
            bail!(
                "the reports do not cover exactly pairs 0..{n}: missing {missing:?}, beyond \
                 {extra:?}; score the missing shards with `advface score --n {n} --shard K/N`"
            );
        }
    }
    Ok(report)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let report = if args.merge.is_empty() {
        // clap makes these present without --merge.
        let (Some(pairs_file), Some(crops), Some(adv)) = (&args.pairs, &args.crops, &args.adv)
        else {
            bail!("give --pairs, --crops and --adv, or --merge");
        };
        let pairs = advface_data::read_pairs(pairs_file)?;
        let selected = select_pairs(pairs.len(), args.n, args.shard.unwrap_or_default());
        if selected.is_empty() {
            bail!("{} lists no pair to score", pairs_file.display());
        }
        if !adv.is_dir() {
            bail!(
                "{} is not a folder: give the --out folder of `advface attack`",
                adv.display()
            );
        }
        let oracle = open_oracle(&args.oracle)?;
        score_run(
            &pairs,
            &selected,
            crops,
            adv,
            oracle.as_ref(),
            &Metric::FACE_API,
        )
    } else {
        merged(&args)?
    };
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
