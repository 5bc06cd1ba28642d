//! `advface bench` moved out of the shipped binary: the speed tables spawn node and Python
//! for their peer columns, so they live in the development tool `advface-bench`
//! (crates/advface-bench). This hidden stub tells old scripts the new command line.

use std::process::ExitCode;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Whatever followed `bench`, passed on to the message.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub rest: Vec<String>,
}

/// The command line that replaces `advface bench REST...`.
pub fn replacement(rest: &[String]) -> String {
    let mut line = String::from("cargo run --release -p advface-bench --");
    for a in rest {
        line.push(' ');
        line.push_str(a);
    }
    line
}

pub fn run(args: Args) -> Result<ExitCode> {
    bail!(
        "`advface bench` moved to the development tool advface-bench (it spawns node and \
         Python, which the shipped binary does not); run: {}",
        replacement(&args.rest)
    )
}
