//! `advface curves`: score against queries per image from scored attack runs, as a CSV
//! table and a PNG chart (issue 6).

use std::path::PathBuf;
use std::process::ExitCode;

use advface_eval::curves::{chart, read_point, to_csv};
use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Run folders (`advface attack --out`), each scored with `advface score --json
    /// RUN/score.json`.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// Name of the score file inside each run folder.
    #[arg(long, default_value = "score.json")]
    pub score_file: String,
    /// Write the table here (default: print it).
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// Write the chart here.
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut points = Vec::with_capacity(args.runs.len());
    for r in &args.runs {
        points.push(read_point(r, &args.score_file)?);
    }
    let pairs: Vec<u64> = points.iter().map(|p| p.pairs).collect();
    if pairs.iter().any(|&p| p != pairs[0]) {
        bail!(
            "the runs scored different numbers of pairs ({pairs:?}): score them all with the \
             same --n so their points compare"
        );
    }
    let csv = to_csv(&points);
    match &args.csv {
        Some(path) => {
            advface_image::write_atomic(path, csv.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{csv}"),
    }
    if let Some(path) = &args.png {
        advface_image::write_png_atomic(path, &chart(&points).render())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
