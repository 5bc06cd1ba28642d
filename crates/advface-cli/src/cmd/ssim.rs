use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// The original image (PNG or JPEG).
    pub a: PathBuf,
    /// The changed image, same size.
    pub b: PathBuf,
    /// Also print the SSIM of each channel.
    #[arg(long)]
    pub per_channel: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let a = advface_image::read_image(&args.a)?;
    let b = advface_image::read_image(&args.b)?;
    let s = advface_image::ssim(&a, &b).with_context(|| {
        format!(
            "cannot compare {} with {}",
            args.a.display(),
            args.b.display()
        )
    })?;
    if args.per_channel {
        println!(
            "r {:.10} g {:.10} b {:.10}",
            s.per_channel[0], s.per_channel[1], s.per_channel[2]
        );
    }
    println!("{:.10}", s.mean);
    Ok(ExitCode::SUCCESS)
}
