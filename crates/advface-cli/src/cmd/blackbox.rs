//! Choosing the black box or model a command talks to: `--model NAME|PATH` and
//! `--oracle URL` (shared by every command that asks a black box).

use std::sync::Arc;

use advface_core::{Embedder, Oracle};
use advface_models::zoo::Zoo;
use advface_oracle::{Budgeted, Cached, HttpConfig, HttpOracle, LocalOracle};
use anyhow::{Context, Result};

/// Flags naming the black box, flattened into commands.
#[derive(clap::Args, Debug, Clone)]
pub struct OracleArgs {
    /// The model: `faceapi` (the embedded face-api.js FaceRecognitionNet, the benchmark's
    /// black box), a student (a `distill train` run folder or its `.weights` file), or the
    /// path of a TF.js weights manifest of the face-api.js network.
    #[arg(long, default_value = "faceapi")]
    pub model: String,
    /// Ask a remote black box (`advface serve`) instead of a local model, e.g.
    /// http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub oracle: Option<String>,
    /// Bearer token for --oracle (or the ADVFACE_TOKEN environment variable).
    #[arg(long, env = "ADVFACE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Hard limit on black-box queries for this run: a query past it is an error, never
    /// answered. Cached answers do not count.
    #[arg(long)]
    pub budget: Option<u64>,
    /// Remember answers in this folder (keyed by the image pixels' SHA-256): an image asked
    /// again is answered from disk and is not a new query.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<std::path::PathBuf>,
}

/// Loads a student by name or path (`student`, a run folder, a `.weights` file) for
/// gradients; returns it with the SHA-256 of its weights file. `student` is the shipped
/// one (or the file `ADVFACE_STUDENT` names). Resolved by [`advface_models::zoo`].
pub fn load_differentiable(name: &str) -> Result<(Arc<dyn advface_core::Differentiable>, String)> {
    let loaded = Zoo::from_env().student(name)?;
    Ok((loaded.model, loaded.provenance.sha256))
}

/// Loads a local model by name or path (see [`advface_models::zoo`] for the names).
pub fn load_embedder(model: &str) -> Result<Arc<dyn Embedder>> {
    Ok(Zoo::from_env().embedder(model)?.model)
}

/// The oracle the flags name: remote when `--oracle` is given, else the local model
/// counted as a black box; then the budget, then the cache (so the budget is spent only
/// on images the cache does not know).
pub fn open_oracle(args: &OracleArgs) -> Result<Arc<dyn Oracle>> {
    let (base, identity): (Arc<dyn Oracle>, String) = if let Some(url) = &args.oracle {
        let mut cfg = HttpConfig::new(url.clone());
        cfg.token = args.token.clone();
        let client = HttpOracle::new(cfg)?;
        // The cache is tied to the served model, not to the host and port it is on today.
        let identity = match (&args.cache, client.health()) {
            (Some(_), Ok(h)) => format!("http:{}", h.model),
            (Some(_), Err(e)) => return Err(e).context("asking the black box for its model name"),
            (None, _) => url.clone(),
        };
        (Arc::new(client), identity)
    } else {
        let e = load_embedder(&args.model)?;
        let identity = e.name();
        (Arc::new(LocalOracle::new(e)), identity)
    };
    let budgeted: Arc<dyn Oracle> = match args.budget {
        Some(b) => Arc::new(Budgeted::new(base, b)),
        None => base,
    };
    Ok(match &args.cache {
        Some(dir) => Arc::new(
            Cached::open_as(budgeted, dir, &identity)
                .with_context(|| format!("opening the descriptor cache in {}", dir.display()))?,
        ),
        None => budgeted,
    })
}
