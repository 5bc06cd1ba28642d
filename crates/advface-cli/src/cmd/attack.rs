//! `advface attack`: transfer attacks from student ensembles (optionally judged by the black
//! box under a per-image query budget), and the white-box reference through the black box's
//! own network.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use advface_attacks::{
    run_pairs, select_pairs, Acceptance, AttackConfig, Diversity, Ensemble, Member, ModelRecord,
    Refine, RunConfig, RunEvent, RunPaths, StepRule,
};
use advface_core::Differentiable;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::blackbox::{load_differentiable, open_oracle, OracleArgs};

/// Attack methods: parts of one iterative loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// The strongest method measured for the budget given (BENCHMARKS.md): `hybrid-nes`
    /// under a budget, `nesterov` in pure transfer, `fgvm` with acceptance when queries are
    /// unlimited.
    Auto,
    /// The organisers' baseline: 1e-2 sign steps on one student towards the mean target,
    /// stopping at the first SSIM failure.
    Fgsm,
    /// FGSM with the 2nd-place heuristic: only components above mean + std move.
    FgsmTop,
    /// FGVM with the 2nd-place heuristics (step eps * clamp(g/std(g), -2, 2), target
    /// combinations, acceptance, patience, step halving).
    Fgvm,
    /// MI-FGSM: momentum 0.9 on the normalised gradient.
    Momentum,
    /// The 3rd-place team's Nesterov steps (mu 0.9, step decay 0.98).
    Nesterov,
    /// Adam on the perturbation with an SSIM penalty (Carlini-Wagner style).
    Adam,
    /// White-box reference: FGVM through the black box's own network (labelled as such).
    WhiteboxFgvm,
    /// White-box reference: Adam with an SSIM penalty through the black box's own network.
    WhiteboxAdam,
    /// Queries only: the MCS2018 2nd-place one-pixel differential evolution on the black box
    /// (population 150, 3 generations a round, recombination 1), no students.
    Pixel,
    /// Queries only: the Square attack with the SSIM limit, no students.
    Square,
    /// Transfer from the students (Nesterov, mirrored, SSIM held at 0.96 to leave room),
    /// then the Square attack on the black box with the rest of the budget.
    Hybrid,
    /// Queries guided by the students: gradient estimation on the black box from random
    /// directions with the students' gradient as a prior (`--no-prior`: without it).
    Nes,
    /// Transfer from the students as `hybrid`, then the student-guided estimator (`nes`)
    /// with the rest of the budget.
    HybridNes,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Fgsm => "fgsm",
            Method::FgsmTop => "fgsm-top",
            Method::Fgvm => "fgvm",
            Method::Momentum => "momentum",
            Method::Nesterov => "nesterov",
            Method::Adam => "adam",
            Method::WhiteboxFgvm => "whitebox-fgvm",
            Method::WhiteboxAdam => "whitebox-adam",
            Method::Pixel => "pixel",
            Method::Square => "square",
            Method::Hybrid => "hybrid",
            Method::Nes => "nes",
            Method::HybridNes => "hybrid-nes",
        }
    }

    fn white_box(self) -> bool {
        matches!(self, Method::WhiteboxFgvm | Method::WhiteboxAdam)
    }

    /// Methods that use no student.
    fn queries_only(self) -> bool {
        matches!(self, Method::Pixel | Method::Square)
    }

    /// Whether the method takes gradients from students (`nes` only for its prior).
    fn uses_students(self, no_prior: bool) -> bool {
        !(self.queries_only() || (self == Method::Nes && no_prior))
    }
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
    /// Attack method.
    #[arg(long, value_enum, default_value = "auto")]
    pub method: Method,
    /// Students to take gradients from: `student` (the shipped one), run folders or
    /// .weights files, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "student")]
    pub students: Vec<String>,
    /// Ensemble weights, one per student (default: equal).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f32>,
    /// Pure transfer: no query beyond the target descriptors.
    #[arg(long, conflicts_with = "budget")]
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
    pub shard: Option<(usize, usize)>,
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

pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}': give K/N, e.g. 0/4"))?;
    let k: usize = k
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': K is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': N is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("'{s}': need 0 <= K < N"));
    }
    Ok((k, n))
}

/// The loop configuration a method stands for.
pub fn method_config(method: Method, acceptance: Acceptance, args: &Args) -> AttackConfig {
    let base = AttackConfig {
        acceptance,
        ssim_margin: args.ssim_margin,
        seed: args.seed,
        ..AttackConfig::default()
    };
    let mut cfg = match method {
        Method::Fgsm => AttackConfig {
            rule: StepRule::fgsm_baseline(),
            steps: 100,
            cycle_combinations: false,
            stop_at_ssim_failure: true,
            ..base
        },
        Method::FgsmTop => AttackConfig {
            rule: StepRule::Fgsm {
                eps: 0.01 * advface_attacks::NORMALISED_UNIT,
                top: true,
            },
            steps: 100,
            cycle_combinations: false,
            stop_at_ssim_failure: true,
            ..base
        },
        Method::Fgvm | Method::WhiteboxFgvm | Method::Auto => AttackConfig {
            rule: StepRule::fgvm(),
            ..base
        },
        Method::Momentum => AttackConfig {
            rule: StepRule::momentum(),
            ..base
        },
        Method::Nesterov => AttackConfig {
            rule: StepRule::nesterov(),
            steps: 40,
            cycle_combinations: false,
            ..base
        },
        Method::Adam | Method::WhiteboxAdam => AttackConfig {
            rule: StepRule::adam(),
            cycle_combinations: false,
            ssim_penalty: 1.0,
            ..base
        },
        Method::Pixel | Method::Square | Method::Nes => AttackConfig { steps: 0, ..base },
        Method::Hybrid | Method::HybridNes => AttackConfig {
            rule: StepRule::nesterov(),
            steps: 40,
            cycle_combinations: false,
            acceptance: Acceptance::None,
            ssim_margin: args.ssim_margin.max(0.01),
            ..base
        },
    };
    if let Some(s) = args.steps {
        cfg.steps = s;
    }
    if let Some(e) = args.eps {
        cfg.rule = match cfg.rule {
            StepRule::Fgsm { top, .. } => StepRule::Fgsm { eps: e, top },
            StepRule::Fgvm { .. } => StepRule::Fgvm { eps: e },
            StepRule::Momentum { mu, .. } => StepRule::Momentum { eps: e, mu },
            StepRule::Nesterov { mu, decay, .. } => StepRule::Nesterov { eps: e, mu, decay },
            StepRule::Adam { beta1, beta2, .. } => StepRule::Adam {
                lr: e,
                beta1,
                beta2,
            },
        };
    }
    cfg
}

pub fn run(args: Args) -> Result<ExitCode> {
    let pairs = advface_data::read_pairs(&args.pairs)?;
    if pairs.is_empty() {
        bail!("{} lists no pair", args.pairs.display());
    }
    let selected = select_pairs(pairs.len(), args.n, args.shard.unwrap_or((0, 1)));
    let method = match args.method {
        Method::Auto if args.no_oracle => Method::Nesterov,
        Method::Auto if args.oracle.budget.is_some() => Method::HybridNes,
        Method::Auto => Method::Fgvm,
        m => m,
    };
    // The ensemble.
    let mut members = Vec::new();
    let mut records = Vec::new();
    if method.white_box() {
        let fa: Arc<dyn Differentiable> = Arc::new(
            advface_models::FaceApi::embedded().context("loading the embedded face-api.js")?,
        );
        members.push(Member {
            model: fa,
            weight: 1.0,
        });
        records.push(ModelRecord {
            name: "faceapi (white-box reference)".into(),
            sha256: advface_models::FaceApi::embedded()?
                .files()
                .iter()
                .map(|f| f.sha256.clone())
                .collect::<Vec<_>>()
                .join(","),
            weight: 1.0,
        });
    } else if method.uses_students(args.no_prior) {
        let students: Vec<String> = if matches!(method, Method::Fgsm | Method::FgsmTop) {
            // The organisers' baseline uses one student.
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
        e.mirror = !args.no_mirror && !matches!(method, Method::Fgsm | Method::FgsmTop);
        e.diversity = (args.diversity > 0).then_some(Diversity {
            max_shift: args.diversity,
            prob: 0.7,
        });
        Some(e)
    };
    if args.no_oracle
        && (method.queries_only()
            || matches!(method, Method::Hybrid | Method::HybridNes | Method::Nes))
    {
        bail!(
            "--method {} asks the black box: it cannot run with --no-oracle",
            method.name()
        );
    }
    let refine = match method {
        Method::Pixel => Some(Refine::Pixel(advface_search::PixelAttackConfig {
            ssim_margin: args.ssim_margin,
            ..Default::default()
        })),
        Method::Square | Method::Hybrid => {
            Some(Refine::Square(advface_search::SquareAttackConfig {
                ssim_margin: args.ssim_margin,
                ..Default::default()
            }))
        }
        Method::Nes | Method::HybridNes => Some(Refine::Nes(advface_attacks::NesConfig {
            directions: args.directions.unwrap_or_else(|| {
                advface_attacks::NesConfig::directions_for_budget(args.oracle.budget.unwrap_or(0))
            }),
            prior: !args.no_prior,
            history: !args.no_history,
            ssim_weighted: !args.no_ssim_weight,
            ssim_margin: args.ssim_margin,
            ..Default::default()
        })),
        _ => None,
    };
    if (args.steps.is_some() || args.eps.is_some())
        && matches!(method, Method::Pixel | Method::Square | Method::Nes)
    {
        bail!(
            "--steps and --eps set the gradient stage, and --method {} has none (it only \
             queries the black box); drop them or choose a method with a gradient stage",
            method.name()
        );
    }
    if (args.no_prior || args.no_history || args.no_ssim_weight || args.directions.is_some())
        && !matches!(method, Method::Nes | Method::HybridNes)
    {
        bail!(
            "--no-prior, --no-history, --no-ssim-weight and --directions are settings of \
             --method nes and hybrid-nes"
        );
    }
    if refine.is_some() && args.oracle.budget.is_none() {
        bail!(
            "--method {} needs --budget B (queries per source image, targets included)",
            method.name()
        );
    }
    let acceptance = if args.no_oracle {
        Acceptance::None
    } else {
        Acceptance::BlackBox {
            patience: args.patience,
            check_every: args.check_every,
            adaptive: true,
        }
    };
    let attack = method_config(method, acceptance, &args);
    // The run's black box: the budget is per image inside the run, not on the oracle.
    let oracle_args = OracleArgs {
        budget: None,
        ..args.oracle.clone()
    };
    let oracle = open_oracle(&oracle_args)?;
    let config = RunConfig {
        method: method.name().into(),
        white_box: method.white_box(),
        attack,
        refine,
        budget_per_image: args.oracle.budget,
        models: records,
        mirror: ensemble.as_ref().is_some_and(|e| e.mirror),
        diversity: ensemble.as_ref().and_then(|e| e.diversity),
        oracle: oracle.name(),
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
