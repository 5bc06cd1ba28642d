//! `advface describe`: one JSON line per image, `{"path": .., "descriptor": [..]}`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use super::blackbox::{open_oracle, OracleArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub oracle: OracleArgs,
    /// Images (PNG or JPEG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    path: &'a str,
    descriptor: &'a [f32],
}

pub fn run(args: Args) -> Result<ExitCode> {
    let oracle = open_oracle(&args.oracle)?;
    // Read every image first: a bad one is reported by name and the others still run.
    let mut ok = Vec::new();
    let mut failed = 0usize;
    for p in &args.images {
        match advface_image::read_image(p) {
            Ok(im) => ok.push((p, im)),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Ask in chunks so the first lines appear early and memory stays flat. A remote black
    // box is asked one image a call: a failed multi-image call could have spent queries on
    // answers that are then lost.
    let chunk_size = if args.oracle.oracle.is_some() { 1 } else { 32 };
    let mut stopped: Option<String> = None;
    for chunk in ok.chunks(chunk_size) {
        if let Some(reason) = &stopped {
            for (p, _) in chunk {
                eprintln!("error: {}: not asked: {reason}", p.display());
                failed += 1;
            }
            continue;
        }
        let images: Vec<_> = chunk.iter().map(|(_, im)| im.clone()).collect();
        match oracle.describe(&images) {
            Ok(ds) => {
                for ((p, _), d) in chunk.iter().zip(ds) {
                    let line = Line {
                        path: &p.to_string_lossy(),
                        descriptor: d.as_slice(),
                    };
                    serde_json::to_writer(&mut out, &line)?;
                    out.write_all(b"\n")?;
                }
            }
            Err(e @ advface_core::OracleError::BudgetExhausted { .. })
            | Err(e @ advface_core::OracleError::Transport { .. }) => {
                for (p, _) in chunk {
                    eprintln!("error: {}: {e}", p.display());
                    failed += 1;
                }
                stopped = Some(e.to_string());
            }
            Err(e) if chunk.len() > 1 => {
                // Find the culprit(s) one at a time so good images are still answered.
                drop(e);
                for (p, im) in chunk {
                    match oracle.describe(std::slice::from_ref(im)) {
                        Ok(ds) => {
                            let line = Line {
                                path: &p.to_string_lossy(),
                                descriptor: ds[0].as_slice(),
                            };
                            serde_json::to_writer(&mut out, &line)?;
                            out.write_all(b"\n")?;
                        }
                        Err(e) => {
                            eprintln!("error: {}: {e}", p.display());
                            failed += 1;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {}: {e}", chunk[0].0.display());
                failed += 1;
            }
        }
        out.flush()?;
    }
    let stats = oracle.stats();
    eprintln!(
        "{} image(s) described by {} ({} queries{}), {} failed",
        args.images.len() - failed,
        oracle.name(),
        stats.queries,
        if stats.cached > 0 {
            format!(", {} cached", stats.cached)
        } else {
            String::new()
        },
        failed
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
