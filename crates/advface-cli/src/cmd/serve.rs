//! `advface serve`: the black box as an HTTP service.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use advface_image::Limits;
use advface_oracle::{serve, LocalOracle, ServeConfig};
use anyhow::{Context, Result};

use super::blackbox::load_embedder;

#[derive(clap::Args)]
pub struct Args {
    /// The model to serve, as `--model` of the other commands names it: `faceapi`, `student`,
    /// a `distill train` run folder, a `.weights` file, or a TF.js manifest path.
    #[arg(long, default_value = "faceapi")]
    pub model: String,
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Allow a non-loopback --addr (then set --token).
    #[arg(long)]
    pub allow_remote: bool,
    /// Queries this server answers in its lifetime; past it, HTTP 429.
    #[arg(long)]
    pub budget: Option<u64>,
    /// Require `Authorization: Bearer <token>` (or set ADVFACE_TOKEN).
    #[arg(long, env = "ADVFACE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = advface_oracle::http::server::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest image side in pixels.
    #[arg(long, default_value_t = Limits::default().max_side)]
    pub max_side: u32,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let embedder = load_embedder(&args.model)?;
    let oracle = Arc::new(LocalOracle::new(embedder));
    let cfg = ServeConfig {
        addr: args.addr,
        allow_remote: args.allow_remote,
        budget: args.budget,
        max_body_bytes: args.max_body_bytes,
        limits: Limits {
            max_side: args.max_side,
        },
        token: args.token,
        workers: args.workers,
    };
    let handle = serve(oracle, cfg).with_context(|| format!("serving on {}", args.addr))?;
    // The one line scripts wait for: the actual address (port 0 resolved).
    println!("listening on {}", handle.url());
    eprintln!(
        "model {}; budget {}; POST /describe (PNG body), GET /health; Ctrl-C stops",
        args.model,
        args.budget
            .map(|b| b.to_string())
            .unwrap_or_else(|| "unlimited".into())
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    handle.join();
    Ok(ExitCode::SUCCESS)
}
