//! `advface`: adversarial attacks on black-box face recognition. Glue only: parse the
//! command line, call the libraries, print the error chain, exit with a status.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "advface",
    version,
    about = "Adversarial attacks on black-box face-recognition models (LFW-MCS benchmark)",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the LFW-MCS crops, pairs file and distillation list from LFW deep-funneled.
    Prepare(cmd::prepare::Args),
    /// SSIM of two images, exactly as scikit-image (MCS2018 settings); value on the last line.
    Ssim(cmd::ssim::Args),
    /// Descriptors of images from a model or a remote black box, one JSON line each.
    Describe(cmd::describe::Args),
    /// Serve a model as an HTTP black box (PNG in, JSON descriptor out).
    Serve(cmd::serve::Args),
    /// Student distillation: collect the black box's descriptors of the pool, train a
    /// student on them (both resumable).
    Distill(cmd::distill::Args),
    /// Moved to the development tool `advface-bench`; says the new command line.
    #[command(hide = true, disable_help_flag = true)]
    Bench(cmd::bench::Args),
    /// Attack pairs: transfer from student ensembles, judged by the black box under a
    /// per-image budget, or the white-box reference; resumable, sharded.
    Attack(cmd::attack::Args),
    /// Score a folder of adversarial images afresh: SSIM, black-box distances, match rate.
    Score(cmd::score::Args),
    /// Score against queries per image from scored runs: a CSV table and a PNG chart.
    Curves(cmd::curves::Args),
    /// The main job on the embedded defaults: attack the committed demo pairs with the
    /// shipped student and the bundled black box, score, and draw side-by-side pictures.
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Prepare(a) => cmd::prepare::run(a),
        Command::Ssim(a) => cmd::ssim::run(a),
        Command::Describe(a) => cmd::describe::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Distill(a) => cmd::distill::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Attack(a) => cmd::attack::run(a),
        Command::Score(a) => cmd::score::run(a),
        Command::Curves(a) => cmd::curves::run(a),
        Command::Demo(a) => cmd::demo::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            // Library errors often quote their source already; print a cause only when it
            // adds something.
            let mut shown = err.to_string();
            for cause in err.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                shown = text;
            }
            ExitCode::from(1)
        }
    }
}
