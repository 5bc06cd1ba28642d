//! Attack plans: what a method name (`fgvm`, `hybrid-nes`, ...) stands for, as data.
//!
//! A [`Plan`] is an optional gradient stage (the [`AttackConfig`] of the one iterative loop),
//! an optional query stage (a [`Refine`]: pixel, square, the estimator), where the gradients
//! come from ([`Models`]: the students, the first student only, the black box's own network
//! in the white-box reference, or none) and whether inputs are mirrored. The registry
//! ([`PRESETS`]) maps each name to the function that builds its plan from the run's
//! [`PlanOptions`]; [`plan`] resolves a name, `auto` included. The CLI, `demo` and library
//! users all go through it, and flag checks read the plan, never lists of names.
//!
//! A new gradient attack is one file (its step rule or config) and one line here plus its
//! build function. A new query attack is its file (config and [`crate::QueryAttack`]), a
//! `pub mod` line, a [`Refine`] variant and its arm in `query/mod.rs` (`Refine` is what
//! `config.json` records), and its line here.
//!
//! ```
//! use advface_attacks::plan::{plan, PlanOptions};
//!
//! let opts = PlanOptions { budget: Some(1000), ..PlanOptions::default() };
//! let p = plan("auto", &opts).unwrap();
//! assert_eq!(p.name, "hybrid-nes");
//! assert!(p.has_gradient_stage() && p.query.is_some() && !p.white_box());
//! ```

use crate::iterative::{Acceptance, AttackConfig};
use crate::nes::NesConfig;
use crate::step::{StepRule, NORMALISED_UNIT};
use crate::{AttackError, PixelAttackConfig, Refine, SquareAttackConfig};

/// Where a plan's gradients come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// No gradient at all (queries only).
    None,
    /// The ensemble of students given (`--students`).
    Students,
    /// The first student given only (the organisers' FGSM baseline used one).
    FirstStudent,
    /// The black box's own network: the labelled white-box reference, never a black-box
    /// result.
    WhiteBox,
}

/// What a method stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The method's name, as recorded (`auto` resolved: `hybrid-nes`, `nesterov`, `fgvm`).
    pub name: &'static str,
    /// The gradient loop's configuration; `steps: 0` when the plan has no gradient stage
    /// (what `config.json` records then).
    pub attack: AttackConfig,
    /// The query stage after the gradient loop, if any.
    pub query: Option<Refine>,
    /// Where gradients come from (the gradient stage's, or a query stage's prior).
    pub models: Models,
    /// Mirrored inputs by default (off for the FGSM baselines).
    pub mirror: bool,
    gradient_stage: bool,
}

impl Plan {
    /// Whether the plan runs the gradient loop (`--steps`, `--eps` apply to it).
    pub fn has_gradient_stage(&self) -> bool {
        self.gradient_stage
    }

    /// Whether gradients come from the black box's own network (the white-box reference).
    pub fn white_box(&self) -> bool {
        self.models == Models::WhiteBox
    }

    /// Whether the plan takes gradients from students (the estimator only for its prior).
    pub fn uses_students(&self) -> bool {
        matches!(self.models, Models::Students | Models::FirstStudent)
    }

    /// Whether the plan queries the black box beyond the target descriptors in any case (a
    /// query stage): it cannot run in pure transfer.
    pub fn asks_black_box(&self) -> bool {
        self.query.is_some()
    }

    /// Whether the plan needs a per-image query budget (a query stage spends what is left).
    pub fn needs_budget(&self) -> bool {
        self.query.is_some()
    }

    /// Whether the estimator's settings (directions, prior, history, SSIM weighting) apply.
    pub fn has_estimator(&self) -> bool {
        matches!(self.query, Some(Refine::Nes(_)))
    }

    /// Sets the gradient stage's number of steps.
    ///
    /// # Errors
    /// [`AttackError::BadInput`] when the plan has no gradient stage.
    pub fn set_steps(&mut self, steps: usize) -> Result<(), AttackError> {
        self.need_gradient_stage("steps")?;
        self.attack.steps = steps;
        Ok(())
    }

    /// Sets the gradient stage's step size (`[0, 1]` units; Adam's learning rate).
    ///
    /// # Errors
    /// [`AttackError::BadInput`] when the plan has no gradient stage.
    pub fn set_eps(&mut self, eps: f32) -> Result<(), AttackError> {
        self.need_gradient_stage("eps")?;
        self.attack.rule = self.attack.rule.with_eps(eps);
        Ok(())
    }

    fn need_gradient_stage(&self, what: &str) -> Result<(), AttackError> {
        if self.gradient_stage {
            Ok(())
        } else {
            Err(AttackError::BadInput(format!(
                "{what} sets the gradient stage, and plan '{}' has none (it only queries the \
                 black box)",
                self.name
            )))
        }
    }
}

/// The run's settings a plan is built from (the CLI's flags; defaults as the CLI's).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// Pure transfer: no query beyond the target descriptors (`--no-oracle`).
    pub transfer_only: bool,
    /// Queries per source image, targets included (`--budget`); `None`: unlimited.
    pub budget: Option<u64>,
    /// Refusals in a row before a step is forced under black-box acceptance (10).
    pub patience: usize,
    /// Gradient steps between black-box checks; 0 spreads the budget over the steps (0).
    pub check_every: usize,
    /// Safety margin above SSIM 0.95 that every image keeps (0.002).
    pub ssim_margin: f64,
    /// Seed of the random choices (0).
    pub seed: u64,
    /// The estimator's random directions per estimate; `None`: from the budget
    /// ([`NesConfig::directions_for_budget`]).
    pub directions: Option<usize>,
    /// The estimator uses the students' gradient as a prior (`true`).
    pub prior: bool,
    /// The estimator probes its last estimate again (`true`).
    pub history: bool,
    /// The estimator shapes directions by where SSIM tolerates change (`true`).
    pub ssim_weighted: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            transfer_only: false,
            budget: None,
            patience: 10,
            check_every: 0,
            ssim_margin: 0.002,
            seed: 0,
            directions: None,
            prior: true,
            history: true,
            ssim_weighted: true,
        }
    }
}

impl PlanOptions {
    /// Black-box acceptance of the gradient steps, unless in pure transfer.
    pub fn acceptance(&self) -> Acceptance {
        if self.transfer_only {
            Acceptance::None
        } else {
            Acceptance::BlackBox {
                patience: self.patience,
                check_every: self.check_every,
                adaptive: true,
            }
        }
    }

    /// The loop's configuration every plan starts from: the defaults with the run's
    /// acceptance, margin and seed.
    pub fn base(&self) -> AttackConfig {
        AttackConfig {
            acceptance: self.acceptance(),
            ssim_margin: self.ssim_margin,
            seed: self.seed,
            ..AttackConfig::default()
        }
    }
}

/// A registered method: its name, a line of help, and how its plan is built.
#[derive(Clone, Copy)]
pub struct Preset {
    /// The name `--method` takes.
    pub name: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Builds the plan from the run's settings.
    pub build: fn(&'static str, &PlanOptions) -> Plan,
}

/// The name that resolves by budget and transfer ([`resolve`]).
pub const AUTO: &str = "auto";

/// What `auto` does, for `--help`.
pub const AUTO_HELP: &str = "The strongest method measured for the budget given (BENCHMARKS.md): \
     `hybrid-nes` under a budget, `nesterov` in pure transfer, `fgvm` with acceptance when \
     queries are unlimited";

/// The registry: every method by name.
pub const PRESETS: &[Preset] = &[
    Preset { name: "fgsm", help: "The organisers' baseline: 1e-2 sign steps on one student towards the mean target, stopping at the first SSIM failure", build: fgsm },
    Preset { name: "fgsm-top", help: "FGSM with the 2nd-place heuristic: only components above mean + std move", build: fgsm_top },
    Preset { name: "fgvm", help: "FGVM with the 2nd-place heuristics (step eps * clamp(g/std(g), -2, 2), target combinations, acceptance, patience, step halving)", build: fgvm },
    Preset { name: "momentum", help: "MI-FGSM: momentum 0.9 on the normalised gradient", build: momentum },
    Preset { name: "nesterov", help: "The 3rd-place team's Nesterov steps (mu 0.9, step decay 0.98)", build: nesterov },
    Preset { name: "adam", help: "Adam on the perturbation with an SSIM penalty (Carlini-Wagner style)", build: adam },
    Preset { name: "whitebox-fgvm", help: "White-box reference: FGVM through the black box's own network (labelled as such)", build: whitebox_fgvm },
    Preset { name: "whitebox-adam", help: "White-box reference: Adam with an SSIM penalty through the black box's own network", build: whitebox_adam },
    Preset { name: "pixel", help: "Queries only: the MCS2018 2nd-place one-pixel differential evolution on the black box (population 150, 3 generations a round, recombination 1), no students", build: pixel },
    Preset { name: "square", help: "Queries only: the Square attack with the SSIM limit, no students", build: square },
    Preset { name: "hybrid", help: "Transfer from the students (Nesterov, mirrored, SSIM held at 0.96 to leave room), then the Square attack on the black box with the rest of the budget", build: hybrid },
    Preset { name: "nes", help: "Queries guided by the students: gradient estimation on the black box from random directions with the students' gradient as a prior (--no-prior: without it)", build: nes },
    Preset { name: "hybrid-nes", help: "Transfer from the students as `hybrid`, then the student-guided estimator (`nes`) with the rest of the budget", build: hybrid_nes },
];

/// Every name [`plan`] takes: `auto` first, then the registry's.
pub fn names() -> Vec<&'static str> {
    std::iter::once(AUTO)
        .chain(PRESETS.iter().map(|p| p.name))
        .collect()
}

/// The registered method `name`, `auto` resolved ([`resolve`]).
pub fn preset(name: &str, opts: &PlanOptions) -> Option<&'static Preset> {
    let name = resolve(name, opts);
    PRESETS.iter().find(|p| p.name == name)
}

/// The method `auto` stands for under `opts` (BENCHMARKS.md): `nesterov` in pure transfer,
/// `hybrid-nes` under a budget, `fgvm` with acceptance when queries are unlimited; any other
/// name is itself.
pub fn resolve<'a>(name: &'a str, opts: &PlanOptions) -> &'a str {
    if name != AUTO {
        name
    } else if opts.transfer_only {
        "nesterov"
    } else if opts.budget.is_some() {
        "hybrid-nes"
    } else {
        "fgvm"
    }
}

/// The plan of method `name` (`auto` resolved) for the run's settings.
///
/// # Errors
/// [`AttackError::BadInput`] for a name not in the registry (the message lists them).
pub fn plan(name: &str, opts: &PlanOptions) -> Result<Plan, AttackError> {
    let p = preset(name, opts).ok_or_else(|| {
        AttackError::BadInput(format!(
            "unknown attack method '{name}': give one of {}",
            names().join(", ")
        ))
    })?;
    Ok((p.build)(p.name, opts))
}

fn gradient(name: &'static str, attack: AttackConfig, models: Models) -> Plan {
    Plan {
        name,
        attack,
        query: None,
        models,
        mirror: true,
        gradient_stage: true,
    }
}

fn fgsm(name: &'static str, o: &PlanOptions) -> Plan {
    Plan {
        mirror: false,
        ..gradient(
            name,
            AttackConfig {
                rule: StepRule::fgsm_baseline(),
                steps: 100,
                cycle_combinations: false,
                stop_at_ssim_failure: true,
                ..o.base()
            },
            Models::FirstStudent,
        )
    }
}

fn fgsm_top(name: &'static str, o: &PlanOptions) -> Plan {
    let mut p = fgsm(name, o);
    p.attack.rule = StepRule::Fgsm {
        eps: 0.01 * NORMALISED_UNIT,
        top: true,
    };
    p
}

fn fgvm_config(o: &PlanOptions) -> AttackConfig {
    AttackConfig {
        rule: StepRule::fgvm(),
        ..o.base()
    }
}

fn fgvm(name: &'static str, o: &PlanOptions) -> Plan {
    gradient(name, fgvm_config(o), Models::Students)
}

fn momentum(name: &'static str, o: &PlanOptions) -> Plan {
    let attack = AttackConfig {
        rule: StepRule::momentum(),
        ..o.base()
    };
    gradient(name, attack, Models::Students)
}

fn nesterov_config(o: &PlanOptions) -> AttackConfig {
    AttackConfig {
        rule: StepRule::nesterov(),
        steps: 40,
        cycle_combinations: false,
        ..o.base()
    }
}

fn nesterov(name: &'static str, o: &PlanOptions) -> Plan {
    gradient(name, nesterov_config(o), Models::Students)
}

fn adam_config(o: &PlanOptions) -> AttackConfig {
    AttackConfig {
        rule: StepRule::adam(),
        cycle_combinations: false,
        ssim_penalty: 1.0,
        ..o.base()
    }
}

fn adam(name: &'static str, o: &PlanOptions) -> Plan {
    gradient(name, adam_config(o), Models::Students)
}

fn whitebox_fgvm(name: &'static str, o: &PlanOptions) -> Plan {
    gradient(name, fgvm_config(o), Models::WhiteBox)
}

fn whitebox_adam(name: &'static str, o: &PlanOptions) -> Plan {
    gradient(name, adam_config(o), Models::WhiteBox)
}

/// A plan of a query stage alone: the loop recorded with no step.
fn queries_only(name: &'static str, o: &PlanOptions, query: Refine, models: Models) -> Plan {
    Plan {
        name,
        attack: AttackConfig {
            steps: 0,
            ..o.base()
        },
        query: Some(query),
        models,
        mirror: true,
        gradient_stage: false,
    }
}

/// The transfer stage of the hybrids: Nesterov without acceptance, SSIM held at
/// 0.95 + max(margin, 0.01) to leave the query stage room.
fn hybrid_transfer(name: &'static str, o: &PlanOptions, query: Refine) -> Plan {
    let attack = AttackConfig {
        acceptance: Acceptance::None,
        ssim_margin: o.ssim_margin.max(0.01),
        ..nesterov_config(o)
    };
    Plan {
        query: Some(query),
        ..gradient(name, attack, Models::Students)
    }
}

fn pixel_stage(o: &PlanOptions) -> Refine {
    Refine::Pixel(PixelAttackConfig {
        ssim_margin: o.ssim_margin,
        ..Default::default()
    })
}

fn square_stage(o: &PlanOptions) -> Refine {
    Refine::Square(SquareAttackConfig {
        ssim_margin: o.ssim_margin,
        ..Default::default()
    })
}

fn nes_stage(o: &PlanOptions) -> Refine {
    Refine::Nes(NesConfig {
        directions: o
            .directions
            .unwrap_or_else(|| NesConfig::directions_for_budget(o.budget.unwrap_or(0))),
        prior: o.prior,
        history: o.history,
        ssim_weighted: o.ssim_weighted,
        ssim_margin: o.ssim_margin,
        ..Default::default()
    })
}

fn pixel(name: &'static str, o: &PlanOptions) -> Plan {
    queries_only(name, o, pixel_stage(o), Models::None)
}

fn square(name: &'static str, o: &PlanOptions) -> Plan {
    queries_only(name, o, square_stage(o), Models::None)
}

fn nes(name: &'static str, o: &PlanOptions) -> Plan {
    let models = if o.prior {
        Models::Students
    } else {
        Models::None
    };
    queries_only(name, o, nes_stage(o), models)
}

fn hybrid(name: &'static str, o: &PlanOptions) -> Plan {
    hybrid_transfer(name, o, square_stage(o))
}

fn hybrid_nes(name: &'static str, o: &PlanOptions) -> Plan {
    hybrid_transfer(name, o, nes_stage(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_resolves_by_budget_and_transfer() {
        let o = PlanOptions::default();
        assert_eq!(plan("auto", &o).unwrap().name, "fgvm");
        let t = PlanOptions {
            transfer_only: true,
            ..o.clone()
        };
        assert_eq!(plan("auto", &t).unwrap().name, "nesterov");
        let b = PlanOptions {
            budget: Some(100),
            ..o
        };
        assert_eq!(plan("auto", &b).unwrap().name, "hybrid-nes");
    }

    #[test]
    fn every_name_builds_a_plan_under_its_own_name() {
        let o = PlanOptions {
            budget: Some(1000),
            ..PlanOptions::default()
        };
        for name in names() {
            let p = plan(name, &o).unwrap();
            if name != AUTO {
                assert_eq!(p.name, name);
            }
            // a plan does something
            assert!(p.has_gradient_stage() || p.query.is_some(), "{name}");
            // queries-only plans record a loop with no step
            if !p.has_gradient_stage() {
                assert_eq!(p.attack.steps, 0, "{name}");
            }
        }
        let e = plan("fgvn", &o).unwrap_err().to_string();
        assert!(e.contains("'fgvn'") && e.contains("hybrid-nes"), "{e}");
    }

    #[test]
    fn the_plans_stand_for_what_the_methods_did() {
        let o = PlanOptions {
            budget: Some(1000),
            ..PlanOptions::default()
        };
        let p = |n| plan(n, &o).unwrap();
        assert!(p("whitebox-fgvm").white_box() && p("whitebox-adam").white_box());
        assert!(!p("fgvm").white_box());
        assert_eq!(p("fgsm").models, Models::FirstStudent);
        assert!(!p("fgsm").mirror && !p("fgsm-top").mirror && p("fgvm").mirror);
        assert!(p("fgsm").attack.stop_at_ssim_failure);
        for q in ["pixel", "square"] {
            assert!(!p(q).uses_students() && !p(q).has_gradient_stage() && p(q).needs_budget());
        }
        assert!(p("nes").uses_students() && p("nes").has_estimator());
        let no_prior = PlanOptions {
            prior: false,
            ..o.clone()
        };
        assert!(!plan("nes", &no_prior).unwrap().uses_students());
        assert!(plan("hybrid-nes", &no_prior).unwrap().uses_students());
        let h = p("hybrid");
        assert_eq!(h.attack.acceptance, Acceptance::None);
        assert_eq!(h.attack.ssim_margin, 0.01);
        assert_eq!(h.attack.steps, 40);
        assert!(matches!(h.query, Some(Refine::Square(_))));
        match p("hybrid-nes").query {
            Some(Refine::Nes(c)) => assert_eq!(c.directions, 51),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn steps_and_eps_need_a_gradient_stage() {
        let o = PlanOptions {
            budget: Some(10),
            ..PlanOptions::default()
        };
        let mut f = plan("nesterov", &o).unwrap();
        f.set_steps(7).unwrap();
        f.set_eps(0.5).unwrap();
        assert_eq!(f.attack.steps, 7);
        assert!(
            matches!(f.attack.rule, StepRule::Nesterov { eps, mu, .. } if eps == 0.5 && mu == 0.9)
        );
        let mut s = plan("square", &o).unwrap();
        assert!(s.set_steps(3).is_err() && s.set_eps(0.1).is_err());
    }
}
