//! `advface attack`: transfer attacks from student ensembles (optionally judged by the black
//! box under a per-image query budget), and the white-box reference through the black box's
//! own network.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use advface_attacks::plan::{self, Models, Plan, PlanOptions};
use advface_attacks::{
    run_pairs, select_pairs, Diversity, Ensemble, Member, ModelRecord, RunConfig, RunEvent,
    RunPaths,
};
use advface_core::{Differentiable, Shard};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::blackbox::{load_differentiable, open_oracle, OracleArgs};

/// `--method`'s parser: the names of the plan registry, with their help.
pub fn method_parser() -> clap::builder::PossibleValuesParser {
    use clap::builder::PossibleValue;
    let mut values = vec![PossibleValue::new(plan::AUTO).help(plan::AUTO_HELP)];
    values.extend(
        plan::PRESETS
            .iter()
            .map(|p| PossibleValue::new(p.name).help(p.help)),
    );
    clap::builder::PossibleValuesParser::new(values)
}

#[derive(clap::Args)]
pub struct Args {
    /// Pairs file (MCS2018 pairs_list.csv, written by `advface prepare`).
    #[arg(long, value_name = "CSV")]
    pub pairs: PathBuf,
    /// Folder the pairs file's paths are relative to (the prepared crops).
    #[arg(long, value_name = "DIR")]
    pub crops: PathBuf,
    /// Output folder: adversarial PNGs under the pairs file's names, records/, config.json.
    /// Rerun the same command to resume.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Attack method (the plan registry of advface-attacks).
    #[arg(long, default_value = plan::AUTO, value_parser = method_parser())]
    pub method: String,
    /// Students to take gradients from: `student` (the shipped one), run folders or
    /// .weights files, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "student")]
    pub students: Vec<String>,
    /// Ensemble weights, one per student (default: equal).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f32>,
    /// Pure transfer: no query beyond the target descriptors (`--no-oracle`, the old
    /// spelling, still works).
    #[arg(long = "transfer-only", alias = "no-oracle", conflicts_with = "budget")]
    pub no_oracle: bool,
    /// Gradient steps per image (default: 200; 40 for nesterov, 100 for fgsm).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Step size in [0, 1] pixel units (default: the method's paper value).
    #[arg(long)]
    pub eps: Option<f32>,
    /// Safety margin above SSIM 0.95 that every image keeps.
    #[arg(long, default_value_t = 0.002)]
    pub ssim_margin: f64,
    /// Do not mirror inputs (mirroring is on for fgvm, momentum, nesterov, adam and auto).
    #[arg(long)]
    pub no_mirror: bool,
    /// Input diversity: random shifts of up to this many pixels (0: off).
    #[arg(long, default_value_t = 0)]
    pub diversity: i32,
    /// Refusals in a row before a step is forced (black-box acceptance).
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Gradient steps between black-box checks (0: spread the budget over the steps).
    #[arg(long, default_value_t = 0)]
    pub check_every: usize,
    /// Attack only the first N pairs.
    #[arg(long)]
    pub n: Option<usize>,
    /// Attack every N-th pair starting at K (K/N, 0-based), for job arrays; `score` reads
    /// the merged folder.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Pairs attacked in parallel (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Random directions per gradient estimate (`nes`, `hybrid-nes`), besides the prior
    /// (default: from the budget, 16 at 100 queries, about 50 at 1,000).
    #[arg(long)]
    pub directions: Option<usize>,
    /// Estimate from random directions alone, without the students' gradient as the first
    /// direction (`nes`, `hybrid-nes`; the baseline the prior is measured against).
    #[arg(long)]
    pub no_prior: bool,
    /// Do not probe the last estimate's direction again (`nes`, `hybrid-nes`; an ablation).
    #[arg(long)]
    pub no_history: bool,
    /// Probe isotropic directions instead of ones shaped by where SSIM tolerates change
    /// (`nes`, `hybrid-nes`; an ablation).
    #[arg(long)]
    pub no_ssim_weight: bool,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub oracle: OracleArgs,
}

/// `--shard K/N` ([`Shard`]'s syntax).
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

impl Args {
    /// The plan settings these flags give.
    pub fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            transfer_only: self.no_oracle,
            budget: self.oracle.budget,
            patience: self.patience,
            check_every: self.check_every,
            ssim_margin: self.ssim_margin,
            seed: self.seed,
            directions: self.directions,
            prior: !self.no_prior,
            history: !self.no_history,
            ssim_weighted: !self.no_ssim_weight,
        }
    }
}

/// The plan `--method` stands for with these flags, `--steps` and `--eps` applied; refuses
/// flags the plan has no use for.
pub fn resolve_plan(args: &Args) -> Result<Plan> {
    let mut plan = plan::plan(&args.method, &args.plan_options())?;
    if args.no_oracle && plan.asks_black_box() {
        bail!(
            "--method {} asks the black box: it cannot run with --transfer-only (--no-oracle)",
            plan.name
        );
    }
    if (args.steps.is_some() || args.eps.is_some()) && !plan.has_gradient_stage() {
        bail!(
            "--steps and --eps set the gradient stage, and --method {} has none (it only \
             queries the black box); drop them or choose a method with a gradient stage",
            plan.name
        );
    }
    if (args.no_prior || args.no_history || args.no_ssim_weight || args.directions.is_some())
        && !plan.has_estimator()
    {
        bail!(
            "--no-prior, --no-history, --no-ssim-weight and --directions are settings of \
             --method nes and hybrid-nes"
        );
    }
    if plan.needs_budget() && args.oracle.budget.is_none() {
        bail!(
            "--method {} needs --budget B (queries per source image, targets included)",
            plan.name
        );
    }
    if let Some(s) = args.steps {
        plan.set_steps(s)?;
    }
    if let Some(e) = args.eps {
        plan.set_eps(e)?;
    }
    Ok(plan)
}

/// The white-box reference's model: the black box's own network, the one `--model` names
/// (`faceapi`, a TF.js manifest of it, or a student standing in as the black box). A
/// remote black box (`--oracle URL`) has no network here to differentiate: refused.
pub fn white_box_model(
    plan: &Plan,
    oracle: &OracleArgs,
) -> Result<(Arc<dyn Differentiable>, ModelRecord)> {
    if let Some(url) = &oracle.oracle {
        bail!(
            "--method {} takes gradients through the black box's own network, and --oracle \
             {url} is a remote black box with no network here to differentiate; run it on \
             the local model with --model (faceapi, a TF.js manifest, or a student)",
            plan.name
        );
    }
    // The zoo resolves the name, as for every other command: `faceapi`, a TF.js manifest
    // (recorded under the path given, as before), or a student.
    let loaded = advface_models::zoo::Zoo::from_env()
        .differentiable(&oracle.model)
        .with_context(|| {
            format!(
                "loading --model {} for the white-box reference",
                oracle.model
            )
        })?;
    let shown = match &loaded.source {
        advface_models::ModelSource::FaceApiManifest(_) => oracle.model.clone(),
        _ => loaded.provenance.name.clone(),
    };
    let record = ModelRecord {
        name: format!("{shown} (white-box reference)"),
        sha256: loaded.provenance.sha256.clone(),
        weight: 1.0,
    };
    Ok((loaded.model, record))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let pairs = advface_data::read_pairs(&args.pairs)?;
    if pairs.is_empty() {
        bail!("{} lists no pair", args.pairs.display());
    }
    let selected = select_pairs(pairs.len(), args.n, args.shard.unwrap_or_default());
    let plan = resolve_plan(&args)?;
    // The ensemble.
    let mut members = Vec::new();
    let mut records = Vec::new();
    if plan.white_box() {
        let (model, record) = white_box_model(&plan, &args.oracle)?;
        members.push(Member { model, weight: 1.0 });
        records.push(record);
    } else if plan.uses_students() {
        let students: Vec<String> = if plan.models == Models::FirstStudent {
            args.students.iter().take(1).cloned().collect()
        } else {
            args.students.clone()
        };
        if !args.weights.is_empty() && args.weights.len() != students.len() {
            bail!(
                "--weights gives {} value(s) for {} student(s); give one per student",
                args.weights.len(),
                students.len()
            );
        }
        let total: f32 = if args.weights.is_empty() {
            students.len() as f32
        } else {
            args.weights.iter().sum()
        };
        for (k, s) in students.iter().enumerate() {
            let (model, sha256) = load_differentiable(s)?;
            let weight = args.weights.get(k).copied().unwrap_or(1.0);
            records.push(ModelRecord {
                name: model.name(),
                sha256,
                weight: weight / total,
            });
            members.push(Member { model, weight });
        }
    }
    let ensemble = if members.is_empty() {
        None
    } else {
        let mut e = Ensemble::new(members)?;
        e.mirror = !args.no_mirror && plan.mirror;
        e.diversity = (args.diversity > 0).then_some(Diversity {
            max_shift: args.diversity,
            prob: 0.7,
        });
        Some(e)
    };
    // The run's black box: the budget is per image inside the run, not on the oracle.
    let oracle_args = OracleArgs {
        budget: None,
        ..args.oracle.clone()
    };
    let oracle = open_oracle(&oracle_args)?;
    let config = RunConfig {
        method: plan.name.into(),
        white_box: plan.white_box(),
        attack: plan.attack.clone(),
        refine: plan.query.clone(),
        budget_per_image: args.oracle.budget,
        models: records,
        mirror: ensemble.as_ref().is_some_and(|e| e.mirror),
        diversity: ensemble.as_ref().and_then(|e| e.diversity),
        oracle: oracle.name(),
        metric: advface_core::Metric::FACE_API,
        pairs_file: args.pairs.clone(),
        crops: args.crops.clone(),
    };
    let paths = RunPaths {
        pairs_file: args.pairs.clone(),
        crops: args.crops.clone(),
        out: args.out.clone(),
    };
    if config.white_box {
        eprintln!("WHITE-BOX REFERENCE: gradients through the black box's own network");
    }
    let bar = ProgressBar::new(selected.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} pairs  {elapsed_precise}  {msg}")
            .expect("valid template"),
    );
    let observer = |e: RunEvent| match e {
        RunEvent::Start { todo, done } => {
            bar.set_position(done as u64);
            if done > 0 {
                bar.suspend(|| eprintln!("resuming: {done} pair(s) already done, {todo} to go"));
            }
        }
        RunEvent::PairDone(rec) => {
            bar.inc(1);
            let q: Vec<String> = rec.outcomes.iter().map(|o| o.queries.to_string()).collect();
            let bb: Vec<String> = rec
                .outcomes
                .iter()
                .map(|o| match (o.blackbox_before, o.blackbox_after) {
                    (Some(b), Some(a)) => format!("{b:.3}->{a:.3}"),
                    (None, Some(a)) => format!("->{a:.3}"),
                    _ => o
                        .surrogate_after
                        .map_or_else(|| "-".into(), |d| format!("~{d:.3}")),
                })
                .collect();
            // Without black-box numbers (pure transfer) the figures are the attacked
            // model's own distance to the targets' mean descriptor, not the score.
            let label = if rec.outcomes.iter().any(|o| o.blackbox_after.is_some()) {
                "distance"
            } else {
                "surrogate distance to the targets' mean"
            };
            bar.set_message(format!("pair {} done", rec.index));
            bar.suspend(|| {
                eprintln!(
                    "pair {:>4}: {label} {}  queries {}  min SSIM {:.4}  {:.0} s",
                    rec.index,
                    bb.join(" "),
                    q.join(","),
                    rec.outcomes.iter().map(|o| o.ssim).fold(1.0, f64::min),
                    rec.wall_s
                )
            });
        }
        RunEvent::PairFailed { index, error } => {
            bar.inc(1);
            bar.suspend(|| eprintln!("error: pair {index}: {error}"));
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let report = run_pairs(
        &pairs,
        &selected,
        &paths,
        ensemble.as_ref(),
        oracle,
        &config,
        threads,
        &observer,
    )?;
    bar.finish_and_clear();
    eprintln!(
        "{} pair(s) attacked, {} resumed, {} failed; {} black-box queries; {:.0} s",
        report.attacked,
        report.resumed,
        report.failed.len(),
        report.queries,
        report.wall_s
    );
    eprintln!(
        "score it: advface score --pairs {} --crops {} --adv {}{}",
        args.pairs.display(),
        args.crops.display(),
        args.out.display(),
        args.n.map(|n| format!(" --n {n}")).unwrap_or_default()
    );
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(flags: &[&str]) -> Args {
        let mut argv = vec!["attack", "--pairs", "p.csv", "--crops", "c", "--out", "o"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).expect("flags parse").args
    }

    fn refused(flags: &[&str]) -> String {
        resolve_plan(&args(flags)).expect_err("refused").to_string()
    }

    #[test]
    fn method_names_come_from_the_registry() {
        for name in plan::names() {
            assert_eq!(args(&["--method", name, "--budget", "9"]).method, name);
        }
        let argv = [
            "attack", "--pairs", "p", "--crops", "c", "--out", "o", "--method", "fgvn",
        ];
        let err = Cli::try_parse_from(argv)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("fgvn") && err.contains("hybrid-nes"), "{err}");
    }

    #[test]
    fn flag_checks_read_the_plan() {
        let e = refused(&["--method", "square", "--no-oracle"]);
        assert!(
            e.contains("cannot run with --transfer-only (--no-oracle)"),
            "{e}"
        );
        let e = refused(&["--method", "pixel", "--budget", "10", "--steps", "3"]);
        assert!(e.contains("--method pixel has none"), "{e}");
        let e = refused(&["--method", "fgvm", "--no-prior"]);
        assert!(e.contains("settings of --method nes and hybrid-nes"), "{e}");
        let e = refused(&["--method", "hybrid"]);
        assert!(e.contains("needs --budget"), "{e}");
        // auto resolves before the checks, as before
        let p = resolve_plan(&args(&["--no-oracle"])).unwrap();
        assert_eq!(p.name, "nesterov");
        // the issue-22 spelling and the old one are the same flag
        let p = resolve_plan(&args(&["--transfer-only"])).unwrap();
        assert_eq!(p.name, "nesterov");
        let e = refused(&["--method", "nes", "--transfer-only"]);
        assert!(e.contains("cannot run with --transfer-only"), "{e}");
        let p = resolve_plan(&args(&["--budget", "100", "--no-prior"])).unwrap();
        assert_eq!(p.name, "hybrid-nes");
        let p = resolve_plan(&args(&["--method", "adam", "--steps", "7", "--eps", "0.5"])).unwrap();
        assert_eq!(p.attack.steps, 7);
        assert_eq!(p.attack.rule.eps(), 0.5);
    }

    /// Issue 22: the white-box methods took gradients from the embedded face-api.js whatever
    /// `--model` named. They follow the model now, and refuse a remote black box.
    #[test]
    fn white_box_methods_follow_the_model_or_refuse() {
        let a = args(&[
            "--method",
            "whitebox-fgvm",
            "--oracle",
            "http://127.0.0.1:9",
        ]);
        let plan = resolve_plan(&a).unwrap();
        let e = white_box_model(&plan, &a.oracle)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("--oracle") && e.contains("no network"), "{e}");
        let a = args(&["--method", "whitebox-adam", "--model", "student"]);
        let plan = resolve_plan(&a).unwrap();
        let (model, record) = white_box_model(&plan, &a.oracle).unwrap();
        assert!(model.name().contains("student"), "{}", model.name());
        assert!(record.name.contains("student") && record.name.contains("white-box"));
        let a = args(&["--method", "whitebox-fgvm", "--model", "no/such/model"]);
        assert!(white_box_model(&resolve_plan(&a).unwrap(), &a.oracle).is_err());
    }

    #[test]
    fn white_box_faceapi_is_recorded_as_in_the_published_run() {
        // Resolved by the zoo now; the record must stay what benchmarks/runs/whitebox-adam
        // holds, or a rerun into that folder would be refused as another configuration.
        let a = args(&["--method", "whitebox-adam"]);
        let (_, record) = white_box_model(&resolve_plan(&a).unwrap(), &a.oracle).unwrap();
        let published: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../benchmarks/runs/whitebox-adam/config.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let m = &published["models"][0];
        assert_eq!(record.name, m["name"].as_str().unwrap());
        assert_eq!(record.sha256, m["sha256"].as_str().unwrap());
    }
}
