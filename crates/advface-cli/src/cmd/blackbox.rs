//! Choosing the black box or model a command talks to: `--model NAME|PATH` and
//! `--oracle URL` (shared by every command that asks a black box).

use std::path::Path;
use std::sync::Arc;

use advface_core::{Embedder, Oracle};
use advface_oracle::{Budgeted, Cached, HttpConfig, HttpOracle, LocalOracle};
use anyhow::{bail, Context, Result};

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

/// The names `--model` understands, for messages.
pub const MODEL_NAMES: &str = "faceapi, student";

/// The shipped student's weights, built into the binary: trained by `advface distill
/// train` on the distillation pool; its run folder (config, log, command) is committed in
/// `models/student`.
const SHIPPED_STUDENT: &[u8] = include_bytes!("../../../../models/student/student.weights");

/// Loads a student by name or path (`student`, a run folder, a `.weights` file) for
/// gradients; returns it with the SHA-256 of its weights file. `student` is the shipped
/// one (or the file `ADVFACE_STUDENT` names).
pub fn load_differentiable(name: &str) -> Result<(Arc<dyn advface_core::Differentiable>, String)> {
    let sha = |bytes: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    if name == "student" && std::env::var_os("ADVFACE_STUDENT").is_none() {
        let origin = Path::new("models/student/student.weights");
        let student = advface_models::StudentEmbedder::from_bytes(
            SHIPPED_STUDENT,
            origin,
            "student (shipped)".into(),
        )
        .context("loading the shipped student")?;
        return Ok((Arc::new(student), sha(SHIPPED_STUDENT)));
    }
    let file = if name == "student" {
        std::path::PathBuf::from(std::env::var_os("ADVFACE_STUDENT").expect("checked above"))
    } else {
        student_weights(Path::new(name)).ok_or_else(|| {
            anyhow::anyhow!(
                "'{name}' is not a student: give `student`, a `distill train` run folder \
                 holding student.weights, or a .weights file"
            )
        })?
    };
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let student = advface_models::StudentEmbedder::load(&file)
        .with_context(|| format!("loading the student {}", file.display()))?;
    Ok((Arc::new(student), sha(&bytes)))
}

/// Loads a local model by name or path.
pub fn load_embedder(model: &str) -> Result<Arc<dyn Embedder>> {
    match model {
        "faceapi" => Ok(Arc::new(
            advface_models::FaceApi::embedded()
                .context("loading the embedded face-api.js model")?,
        )),
        "student" => {
            let (student, _) = load_differentiable("student")?;
            // Trait upcasting (Rust 1.86).
            Ok(student)
        }
        path if student_weights(Path::new(path)).is_some() => {
            let file = student_weights(Path::new(path)).expect("checked by the guard");
            let student = advface_models::StudentEmbedder::load(&file)
                .with_context(|| format!("loading the student {}", file.display()))?;
            Ok(Arc::new(student))
        }
        path if Path::new(path).is_file() => {
            let fa = advface_models::FaceApi::from_manifest(Path::new(path))
                .with_context(|| format!("loading the TF.js model {path}"))?;
            Ok(Arc::new(fa))
        }
        other => bail!(
            "unknown model '{other}': give one of {MODEL_NAMES}, a training run folder \
             (holding student.weights), a .weights file, or the path of a TF.js weights \
             manifest (face_recognition_model-weights_manifest.json)"
        ),
    }
}

/// The student weights a `--model` path names: a run folder's `student.weights`, or a
/// `.weights` file.
fn student_weights(path: &Path) -> Option<std::path::PathBuf> {
    if path.is_dir() {
        let f = path.join("student.weights");
        return f.is_file().then_some(f);
    }
    (path.is_file() && path.extension().is_some_and(|e| e == "weights")).then(|| path.to_path_buf())
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
